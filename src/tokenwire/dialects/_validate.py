"""Read typed fields from a decoded JSON body, raising `InvalidRequestError` on anything else.

Every error names the field (as a path such as `messages[2].content`) and what is allowed,
and never echoes the value: a value may be prompt text, which must stay out of logs.
JSON `null` reads as "absent" for optional fields, as the OpenAI SDKs send it that way.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from typing import Any

from tokenwire.errors import InvalidRequestError, NotFoundError

MAX_TOKENS_LIMIT = 1_000_000
SEED_MIN = -(2**63)
SEED_MAX = 2**64 - 1
_MODEL_ECHO_CHARS = 100


def invalid(field: str, allowed: str) -> InvalidRequestError:
    """An error for `field` stating what is allowed, without echoing the value given."""
    return InvalidRequestError(f"Invalid value for '{field}': {allowed}.", param=field)


def missing(field: str) -> InvalidRequestError:
    return InvalidRequestError(f"Missing required field '{field}'.", param=field)


def as_object(value: Any, field: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise invalid(field, "expected an object")
    return value


def as_list(value: Any, field: str, *, non_empty: bool = False) -> list[Any]:
    if not isinstance(value, list):
        raise invalid(field, "expected an array")
    if non_empty and not value:
        raise invalid(field, "expected a non-empty array")
    return value


def objects(
    value: Any, field: str, *, non_empty: bool = False
) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """The items of the array `value` at `field`, each of which must be an object, with their
    paths: `("tools[0]", {...})`, ..."""
    for index, item in enumerate(as_list(value, field, non_empty=non_empty)):
        path = f"{field}[{index}]"
        yield path, as_object(item, path)


def as_str(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise invalid(field, "expected a string")
    return value


def require(body: Mapping[str, Any], key: str, prefix: str = "") -> Any:
    """The value of `key`, which must be present and not null."""
    value = body.get(key)
    if value is None:
        raise missing(prefix + key)
    return value


def matching(value: Any, field: str, pattern: re.Pattern[str], rule: str) -> str:
    """A string that `pattern` matches whole (its `$` alone would let a final newline by);
    `rule` says in words what it allows."""
    text = as_str(value, field)
    if pattern.fullmatch(text) is None:
        raise invalid(field, rule)
    return text


def joined_text(
    value: Any, field: str, *, kinds: tuple[str, ...] = ("text",), noun: str = "parts"
) -> str:
    """A string, or an array of `{"type": <one of kinds>, "text": ...}` parts (Anthropic's
    blocks) joined together."""
    if isinstance(value, str):
        return value
    if not isinstance(value, list):
        raise invalid(field, f"expected a string or an array of text {noun}")
    texts: list[str] = []
    for index, item in enumerate(value):
        path = f"{field}[{index}]"
        part = as_object(item, path)
        if part.get("type") not in kinds:
            raise invalid(f"{path}.type", f"only {' and '.join(kinds)} {noun} are supported")
        texts.append(as_str(require(part, "text", f"{path}."), f"{path}.text"))
    return "".join(texts)


def optional_str(body: Mapping[str, Any], key: str, prefix: str = "") -> str | None:
    value = body.get(key)
    return None if value is None else as_str(value, prefix + key)


def optional_bool(body: Mapping[str, Any], key: str, prefix: str = "") -> bool | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise invalid(prefix + key, "expected true or false")
    return value


def optional_int(
    body: Mapping[str, Any],
    key: str,
    *,
    minimum: int,
    maximum: int,
    prefix: str = "",
    integral_floats: bool = True,
) -> int | None:
    """An integer in `[minimum, maximum]`; 40.0 reads as 40, as JSON Schema's `integer` says
    (and protobuf JSON clients such as google-genai send some integer fields as floats)."""
    value = body.get(key)
    if value is None:
        return None
    field = prefix + key
    allowed = f"expected an integer from {minimum} to {maximum}"
    # bool is an int subclass: `true` must not pass as 1.
    if isinstance(value, bool):
        raise invalid(field, allowed)
    if integral_floats and isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or not minimum <= value <= maximum:
        raise invalid(field, allowed)
    return value


def optional_number(
    body: Mapping[str, Any],
    key: str,
    *,
    minimum: float,
    maximum: float,
    exclusive_minimum: bool = False,
    prefix: str = "",
) -> float | None:
    """A finite number in range (json.loads accepts NaN and Infinity; they fail the range)."""
    value = body.get(key)
    if value is None:
        return None
    field = prefix + key
    low = "greater than" if exclusive_minimum else "from"
    allowed = f"expected a number {low} {minimum:g} {'and at most' if exclusive_minimum else 'to'} {maximum:g}"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid(field, allowed)
    number = float(value)
    above = number > minimum if exclusive_minimum else number >= minimum
    if not (above and number <= maximum):
        raise invalid(field, allowed)
    return number


def max_tokens(body: Mapping[str, Any], key: str, prefix: str = "") -> int | None:
    return optional_int(body, key, minimum=1, maximum=MAX_TOKENS_LIMIT, prefix=prefix)


def seed(body: Mapping[str, Any], key: str = "seed", prefix: str = "") -> int | None:
    return optional_int(body, key, minimum=SEED_MIN, maximum=SEED_MAX, prefix=prefix)


def stop_sequences(
    value: Any, field: str, *, max_count: int, allow_string: bool
) -> tuple[str, ...]:
    """Stop strings: a list of non-empty strings (or, where the API allows, one string)."""
    if value is None:
        return ()
    if allow_string and isinstance(value, str):
        value = [value]
    shape = "a string or an array of strings" if allow_string else "an array of strings"
    if not isinstance(value, list):
        raise invalid(field, f"expected {shape}")
    if len(value) > max_count:
        raise invalid(field, f"expected at most {max_count} stop sequences")
    for item in value:
        if not isinstance(item, str) or not item:
            raise invalid(field, f"expected {shape}, each non-empty")
    return tuple(value)


def check_model(asked: str, model_id: str, field: str = "model") -> None:
    """Raise `NotFoundError` when the request names a model this server does not serve."""
    if asked != model_id:
        shown = asked if len(asked) <= _MODEL_ECHO_CHARS else asked[:_MODEL_ECHO_CHARS] + "…"
        raise NotFoundError(
            f"The model '{shown}' does not exist; this server serves '{model_id}'.", param=field
        )
