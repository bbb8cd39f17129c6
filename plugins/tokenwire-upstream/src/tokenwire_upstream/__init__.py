"""tokenwire-upstream: serve any OpenAI-compatible server through tokenwire's dialects."""

from __future__ import annotations

from tokenwire_upstream.backend import UpstreamBackend

__all__ = ["UpstreamBackend"]
