"""The error document each dialect answers a 4xx with, as its official SDKs read it."""

from __future__ import annotations

from typing import Any


def error_shape_problem(dialect: str, status: int, body: Any) -> str | None:
    """Why `body` is not `dialect`'s error document for `status` (None when it is)."""
    if not isinstance(body, dict):
        return "the body is not a JSON object"
    error = body.get("error")
    if not isinstance(error, dict):
        return "no 'error' object"
    if not isinstance(error.get("message"), str):
        return "error.message is not a string"
    if dialect == "openai" and not isinstance(error.get("type"), str):
        return "error.type is not a string"
    if dialect == "anthropic" and (
        body.get("type") != "error" or not isinstance(error.get("type"), str)
    ):
        return "not {'type': 'error', 'error': {'type': ..., 'message': ...}}"
    if dialect == "gemini" and (
        error.get("code") != status or not isinstance(error.get("status"), str)
    ):
        return "not {'error': {'code': <status>, 'message': ..., 'status': ...}}"
    return None
