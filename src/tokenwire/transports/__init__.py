"""Transports: how payloads are framed on the wire (SSE, NDJSON, WebSocket)."""

from tokenwire.transports.ndjson import NDJSONTransport
from tokenwire.transports.sse import SSETransport
from tokenwire.transports.websocket import WebSocketTransport

__all__ = ["NDJSONTransport", "SSETransport", "WebSocketTransport"]
