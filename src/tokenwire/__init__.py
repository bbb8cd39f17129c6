"""tokenwire: stream every LLM token to the client the moment the model produces it."""

from tokenwire.app import TokenwireMiddleware, create_app
from tokenwire.completion import Completion
from tokenwire.endpoint import Call, Endpoint, Transport
from tokenwire.errors import (
    AuthenticationError,
    ContextLengthExceededError,
    DeadlineExceededError,
    GenerationError,
    InvalidRequestError,
    MethodNotAllowedError,
    NotFoundError,
    QueueFullError,
    RateLimitError,
    RequestTooLargeError,
    ServiceUnavailableError,
    TokenwireError,
)
from tokenwire.events import (
    Channel,
    Event,
    Finish,
    FinishReason,
    PhaseName,
    Progress,
    TokenDelta,
    TokenLogprob,
    ToolCallDelta,
    Usage,
)
from tokenwire.host import BackendHost
from tokenwire.interfaces import (
    Backend,
    Dialect,
    ErrorBody,
    Exchange,
    ExportsMetrics,
    Generate,
    Middleware,
    MiddlewareFactory,
    ObservesFirstByte,
    Payload,
    ServesRoutes,
)
from tokenwire.pipeline import build_pipeline
from tokenwire.plugins import PluginError, list_plugins, load_plugin
from tokenwire.requests import (
    ChatMessage,
    GenerationRequest,
    OutputConstraint,
    Tool,
    ToolCall,
    ToolChoice,
)
from tokenwire.response_store import ResponseStoreConfig
from tokenwire.stream_store import ResumeConfig

__all__ = [
    "AuthenticationError",
    "Backend",
    "BackendHost",
    "Call",
    "Channel",
    "ChatMessage",
    "Completion",
    "ContextLengthExceededError",
    "DeadlineExceededError",
    "Dialect",
    "Endpoint",
    "ErrorBody",
    "Event",
    "Exchange",
    "ExportsMetrics",
    "Finish",
    "FinishReason",
    "Generate",
    "GenerationError",
    "GenerationRequest",
    "InvalidRequestError",
    "MethodNotAllowedError",
    "Middleware",
    "MiddlewareFactory",
    "NotFoundError",
    "ObservesFirstByte",
    "OutputConstraint",
    "Payload",
    "PhaseName",
    "PluginError",
    "Progress",
    "QueueFullError",
    "RateLimitError",
    "RequestTooLargeError",
    "ResponseStoreConfig",
    "ResumeConfig",
    "ServesRoutes",
    "ServiceUnavailableError",
    "TokenDelta",
    "TokenLogprob",
    "TokenwireError",
    "TokenwireMiddleware",
    "Tool",
    "ToolCall",
    "ToolCallDelta",
    "ToolChoice",
    "Transport",
    "Usage",
    "build_pipeline",
    "create_app",
    "list_plugins",
    "load_plugin",
]

__version__ = "0.1.0"
