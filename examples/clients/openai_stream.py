"""Stream a chat completion with the official openai SDK."""

import os

from openai import OpenAI

client = OpenAI(
    base_url=os.environ.get("TOKENWIRE_URL", "http://127.0.0.1:8000") + "/v1", api_key="none"
)
stream = client.chat.completions.create(
    model=os.environ.get("TOKENWIRE_MODEL", "smollm2-135m-instruct-int8"),
    messages=[{"role": "user", "content": "Name the capital city of France."}],
    stream=True,
    stream_options={"include_usage": True},
)
for chunk in stream:
    if chunk.choices and chunk.choices[0].delta.content:
        print(chunk.choices[0].delta.content, end="", flush=True)
    if chunk.usage:
        print(f"\n[{chunk.usage.completion_tokens} tokens]")
