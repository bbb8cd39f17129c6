"""Mount tokenwire into an existing FastAPI app under /llm.

Run: uvicorn examples.mount_in_fastapi:app  (then POST to /llm/v1/chat/completions)

Starlette runs no lifespan for mounted apps: tokenwire starts its backend on the first
request instead, so nothing else is needed here.
"""

from fastapi import FastAPI

from tokenwire import create_app
from tokenwire.backends.echo import EchoBackend

app = FastAPI(title="My product")


@app.get("/")
def home() -> dict[str, str]:
    return {"service": "my product", "llm": "/llm/v1/chat/completions"}


app.mount("/llm", create_app(EchoBackend(delay=0.01)))
