"""The line protocol between the benchmark driver and an in-process generator ("worker").

Stdlib only: the optimum worker runs in its own environment, which lacks tokenwire's
dependencies. A worker loads its model, prints `READY`, then answers each JSON request line
(`{"prompt": text, "max_tokens": n, "batch": b}`; b copies of the prompt decoded as one
batch, where the worker supports it) with one JSON line: the prompt length in tokens, the
time each new token became available (seconds after the request was read, tokenization
included) and the generated text. An empty line or EOF ends it.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Generated:
    """What a worker's `generate` returns: arrival times are `time.perf_counter()` values."""

    prompt_tokens: int
    arrivals: list[float]
    text: str


Generate = Callable[[str, int, int], Generated]


def serve(generate: Generate) -> None:
    """Answer requests from stdin until EOF; stdout carries only protocol lines."""
    out = sys.stdout
    # Libraries that print (progress bars, warnings) must not corrupt the protocol.
    sys.stdout = sys.stderr
    print("READY", file=out, flush=True)
    for line in sys.stdin:
        if not line.strip():
            break
        request = json.loads(line)
        started = time.perf_counter()
        result = generate(request["prompt"], int(request["max_tokens"]), int(request.get("batch", 1)))
        answer = {
            "prompt_tokens": result.prompt_tokens,
            "arrivals": [t - started for t in result.arrivals],
            "text": result.text,
        }
        print(json.dumps(answer), file=out, flush=True)
