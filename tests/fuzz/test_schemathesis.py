"""Schemathesis against a live server: every operation of `/openapi.json`, valid and invalid data.

Each operation gets schemathesis's examples, coverage and fuzzing phases in both generation
modes (positive: schema-valid requests, which must be accepted; negative: invalid ones, which
must be refused with a 4xx). On every response: schemathesis's checks (no 5xx; status, content
type, headers and body as documented, SSE events included) and ours: every 4xx is JSON in the
error shape of the dialect that owns the path, and every NDJSON line is a documented payload.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator

import httpx
import hypothesis
import jsonschema
import pytest
import schemathesis
from schemathesis import Case, CheckContext, GenerationMode, Response
from schemathesis.specs.openapi.checks import (
    allow_header_conformance,
    unsupported_method,
)

from tests._support.server import running_server
from tests.fuzz._shapes import error_shape_problem
from tokenwire import create_app
from tokenwire.backends.echo import EchoBackend
from tokenwire.middlewares import CancellationMiddleware, MetricsMiddleware
from tokenwire.openapi import build_openapi, openapi_routes

MODEL = "echo"
MAX_EXAMPLES = 50  # fuzzed requests per operation and mode; the file takes ~40 s on 2 cores
MIN_EXAMPLES = 20  # per operation with inputs: fewer means generation quietly failed
REPORT_ENV = "TOKENWIRE_FUZZ_REPORT"  # a path: write examples run and statuses seen there
_NDJSON = "application/x-ndjson"

# Gemini's `/v1/models/{target:path}` routes share their paths with OpenAI's
# `GET /v1/models/{model_id}`: another method on a model-card path reaches Gemini's route,
# which answers it (a POST: 400/404) or refuses it with `Allow: POST`, not GET. That follows
# from the two APIs' paths; see docs/reliability.md.
_OVERLAP_EXCLUSIONS = {
    "GET /v1/models/{model_id}": [unsupported_method, allow_header_conformance],
}

examples_run: Counter[str] = Counter()
statuses: Counter[str] = Counter()


def fuzz_config() -> schemathesis.Config:
    config = schemathesis.Config()
    config.projects.default.generation.update(
        modes=list(GenerationMode),  # positive and negative
        max_examples=MAX_EXAMPLES,
        deterministic=True,  # the same requests on every run: CI failures reproduce
        database="none",
    )
    config.projects.default.update(request_timeout=10.0)
    config.output.sanitization.update(enabled=False)  # "max_tokens" is not a secret
    return config


# The document the server serves, built here too so pytest can collect one test per operation
# (schemathesis's fixture loader fails under pytest 9); `live_url` proves the two are equal.
DOCUMENT = build_openapi(MODEL)
schema = schemathesis.openapi.from_dict(DOCUMENT, config=fuzz_config())


def dialect_of(method: str, path: str) -> str:
    """Which dialect's error shape a request answers in (OpenAI's for tokenwire's own routes)."""
    if path in ("/v1/messages", "/v1/messages/count_tokens"):
        return "anthropic"
    # Gemini's routes own every path under /v1beta/models/ and /v1/models/, but for GET and
    # HEAD on /v1/models/{model_id}, OpenAI's model card.
    if path.startswith("/v1beta/models/"):
        return "gemini"
    if path.startswith("/v1/models/") and method not in ("GET", "HEAD"):
        return "gemini"
    return "openai"


def _content_type(response: Response) -> str:
    values = response.headers.get("content-type") or [""]
    return values[0]


@schemathesis.check
def dialect_error_shape(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """Every 4xx is JSON in the error shape of the dialect that owns the path."""
    status = response.status_code
    if not 400 <= status < 500:
        return None
    content_type = _content_type(response)
    assert content_type.startswith("application/json"), (
        f"{status} answered as {content_type!r}, not JSON: {response.content[:200]!r}"
    )
    dialect = dialect_of(response.request.method or "", case.operation.path)
    problem = error_shape_problem(dialect, status, json.loads(response.content))
    assert problem is None, f"{status} is not in the {dialect} error shape: {problem}"
    return None


@schemathesis.check
def ndjson_lines_conform(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """Each NDJSON line is one payload the document names (schemathesis reads SSE only)."""
    if not _content_type(response).startswith(_NDJSON):
        return None
    media = DOCUMENT["paths"][case.operation.path][case.method.lower()]["responses"]["200"]
    line_schema = {
        **media["content"][_NDJSON]["x-tokenwire-line"],
        "components": DOCUMENT["components"],
    }
    # Lines end at LF only: U+2028 and friends are valid inside JSON strings.
    lines = response.content.decode().removesuffix("\n").split("\n")
    assert lines, "an empty NDJSON stream"
    for number, line in enumerate(lines):
        try:
            jsonschema.validate(json.loads(line), line_schema)
        except (ValueError, jsonschema.ValidationError) as exc:
            raise AssertionError(
                f"NDJSON line {number} is not a documented payload: {exc}"
            ) from exc
    return None


@pytest.fixture(scope="module")
def live_url() -> Iterator[str]:
    app = create_app(
        EchoBackend(),
        middlewares=[MetricsMiddleware, CancellationMiddleware],
    )
    # create_app hands everything to one catch-all route: routes put before it win.
    app.router.routes[:0] = openapi_routes(MODEL)
    with running_server(app) as url:
        served = httpx.get(f"{url}/openapi.json").json()
        assert served == DOCUMENT, "the live /openapi.json is not the document under test"
        yield url


@schema.parametrize()
# Explicit: the settings profile's max_examples would otherwise override schemathesis's.
@hypothesis.settings(
    max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(hypothesis.HealthCheck)
)
def test_operation_never_fails_and_answers_in_its_dialect(case: Case, live_url: str) -> None:
    label = case.operation.label
    examples_run[label] += 1
    # Every other call asks for NDJSON, so both HTTP transports see every operation.
    headers = {"accept": _NDJSON} if examples_run[label] % 2 else None
    response = case.call(base_url=live_url, headers=headers)
    statuses[f"{label} -> {response.status_code}"] += 1
    case.validate_response(
        response,
        additional_checks=[dialect_error_shape, ndjson_lines_conform],
        excluded_checks=_OVERLAP_EXCLUSIONS.get(label, []),
    )


def test_every_operation_ran_enough_examples() -> None:
    operations = [result.ok() for result in schema.get_all_operations()]
    assert operations, "the document has no operations"
    # Operations without inputs have only a handful of distinct requests (other methods).
    wanted = {
        op.label: MIN_EXAMPLES if op.body or list(op.iter_parameters()) else 1 for op in operations
    }
    too_few = {label: examples_run[label] for label, n in wanted.items() if examples_run[label] < n}
    assert not too_few, f"operations with fewer than the examples wanted: {too_few}"
    if REPORT_ENV in os.environ:
        with open(os.environ[REPORT_ENV], "w", encoding="utf-8") as report:
            json.dump(
                {"examples": examples_run, "statuses": dict(sorted(statuses.items()))},
                report,
                indent=1,
            )
