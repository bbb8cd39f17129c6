"""The playground: one static page at `GET /` to try a tokenwire server in a browser."""

from tokenwire.playground.routes import PlaygroundPage, playground_routes

__all__ = ["PlaygroundPage", "playground_routes"]
