"""Stream a message with the official anthropic SDK."""

import os

from anthropic import Anthropic

client = Anthropic(
    base_url=os.environ.get("TOKENWIRE_URL", "http://127.0.0.1:8000"), api_key="none"
)
with client.messages.stream(
    model=os.environ.get("TOKENWIRE_MODEL", "smollm2-135m-instruct-int8"),
    max_tokens=128,
    system="You are concise.",
    messages=[{"role": "user", "content": "What is the capital of Japan?"}],
) as stream:
    for text in stream.text_stream:
        print(text, end="", flush=True)
    print(f"\n[{stream.get_final_message().stop_reason}]")
