"""The built-in dialects: the OpenAI, Anthropic and Gemini APIs' request and response shapes."""

from tokenwire.dialects.anthropic import AnthropicDialect
from tokenwire.dialects.gemini import GeminiDialect
from tokenwire.dialects.openai_chat import OpenAIChatDialect
from tokenwire.dialects.openai_completions import OpenAICompletionsDialect
from tokenwire.dialects.openai_responses import OpenAIResponsesDialect

__all__ = [
    "AnthropicDialect",
    "GeminiDialect",
    "OpenAIChatDialect",
    "OpenAICompletionsDialect",
    "OpenAIResponsesDialect",
]
