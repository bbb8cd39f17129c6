"""API keys: who may call, and how many streams each caller may run at once."""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from urllib.parse import parse_qsl

from starlette.types import Scope

from tokenwire.errors import AuthenticationError, RateLimitError

# Where clients put keys: OpenAI SDKs send a bearer token, Anthropic's x-api-key, the
# google-genai SDK x-goog-api-key. Browsers cannot set WebSocket headers, so a query
# parameter is accepted there (and for Gemini's REST `?key=`).
_KEY_HEADERS = (b"x-api-key", b"x-goog-api-key")
_KEY_PARAMS = ("api_key", "key")


class ApiKeys:
    """A set of accepted keys, compared in constant time. Empty means auth is off."""

    def __init__(self, keys: Iterable[str] = ()) -> None:
        self._keys = tuple(key.encode() for key in keys if key)

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def authenticate(self, scope: Scope) -> str:
        """The caller's key.

        Raises:
            AuthenticationError: auth is on and no accepted key was presented.
        """
        if not self._keys:
            return ""
        for candidate in _candidates(scope):
            # Compare against every key, so timing reveals neither a match nor its position.
            matched = [hmac.compare_digest(candidate, key) for key in self._keys]
            if any(matched):
                return candidate.decode("latin-1")
        raise AuthenticationError(
            "A valid API key is required: send 'Authorization: Bearer <key>' or 'x-api-key: <key>'."
        )


def _candidates(scope: Scope) -> Iterable[bytes]:
    for name, value in scope.get("headers", ()):
        if name == b"authorization" and value[:7].lower() == b"bearer ":
            yield value[7:].strip()
        elif name in _KEY_HEADERS:
            yield value.strip()
    query = scope.get("query_string", b"").decode("latin-1")
    for name, value in parse_qsl(query):
        if name in _KEY_PARAMS:
            yield value.encode("latin-1")


class ConcurrencyLimit:
    """At most `limit` running requests per key; `None` means no limit."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.running: dict[str, int] = {}

    def acquire(self, key: str) -> None:
        """Raises:
        RateLimitError: the key already runs `limit` requests.
        """
        count = self.running.get(key, 0)
        if self.limit is not None and count >= self.limit:
            raise RateLimitError(
                f"This API key already runs {count} requests, the most allowed at once.",
                retry_after=1.0,
            )
        self.running[key] = count + 1

    def release(self, key: str) -> None:
        count = self.running[key] - 1
        if count:
            self.running[key] = count
        else:
            del self.running[key]
