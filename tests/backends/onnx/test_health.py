"""Fault injection into the decode loop: a failing step fails only its requests, and a model
that keeps failing marks the backend unhealthy."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from tests.backends.onnx._helpers import Result, all_slots_free, collect, request, running
from tokenwire.backends.onnx import decode_loop
from tokenwire.errors import GenerationError

pytestmark = pytest.mark.anyio

PROMPT = "Once upon a time there was a tiny robot"


class FaultySession:
    """Wraps an ORT session; `run_with_iobinding` raises while `failures` is positive
    (or forever with `failures=None`), after `after` successful runs."""

    def __init__(self, session: Any, *, failures: int | None, after: int = 0) -> None:
        self.session, self.failures, self.after = session, failures, after
        self.failed = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.session, name)

    def run_with_iobinding(self, binding: Any, *args: Any) -> Any:
        if self.after > 0:
            self.after -= 1
        elif self.failures is None or self.failures > 0:
            if self.failures is not None:
                self.failures -= 1
            self.failed += 1
            raise RuntimeError("simulated ORT failure")
        return self.session.run_with_iobinding(binding, *args)


async def test_a_failing_decode_step_fails_only_the_requests_in_it(model_dir: Path) -> None:
    async with running(model_dir, max_batch=2) as backend:
        alone = await collect(backend, request(PROMPT, 12))
        loop = backend._loop
        assert loop is not None
        outcomes: dict[str, object] = {}
        in_step = anyio.Event()

        async def run(name: str, max_tokens: int) -> None:
            try:
                outcomes[name] = await collect(backend, request(PROMPT, max_tokens))
            except GenerationError as exc:
                outcomes[name] = exc

        real = loop.runner.decode
        failed_batches: list[int] = []

        def faulty(slots: Any, tokens: Any, *rest: Any) -> Any:
            # Fail the first step that runs both slots; the third request is still queued.
            if len(slots) == 2 and not failed_batches:
                failed_batches.append(len(slots))
                in_step.set()
                raise RuntimeError("simulated ORT failure")
            return real(slots, tokens, *rest)

        loop.runner.decode = faulty  # type: ignore[method-assign]
        async with anyio.create_task_group() as tg:
            tg.start_soon(run, "a", 40)
            tg.start_soon(run, "b", 40)
            await anyio.sleep(0.01)
            tg.start_soon(run, "queued", 12)
        assert failed_batches == [2]
        assert isinstance(outcomes["a"], GenerationError)
        assert isinstance(outcomes["b"], GenerationError)
        queued = outcomes["queued"]
        assert isinstance(queued, Result) and queued.ids == alone.ids
        # The loop went on: slots are free, and the next request runs normally.
        assert await all_slots_free(backend)
        assert (await collect(backend, request(PROMPT, 12))).ids == alone.ids
        assert backend.healthy


async def test_a_model_that_keeps_failing_marks_the_backend_unhealthy(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running(model_dir) as backend:
        loop = backend._loop
        assert loop is not None
        runner: Any = loop.runner
        faulty = FaultySession(runner.session, failures=None)
        runner.session = faulty
        for attempt in range(decode_loop.UNHEALTHY_AFTER):
            assert backend.healthy, attempt
            with pytest.raises(GenerationError):
                await collect(backend, request(PROMPT, 5))
        assert not backend.healthy
        # No failure for the recovery period: healthy again, so traffic may probe it.
        monkeypatch.setattr(decode_loop, "RECOVERY_SECONDS", 0.0)
        assert backend.healthy
        monkeypatch.undo()
        assert not backend.healthy
        # A run that works clears it at once.
        runner.session = faulty.session
        await collect(backend, request(PROMPT, 5))
        assert backend.healthy


async def test_a_few_failed_runs_between_good_ones_keep_the_backend_healthy(
    model_dir: Path,
) -> None:
    async with running(model_dir) as backend:
        loop = backend._loop
        assert loop is not None
        runner: Any = loop.runner
        for _ in range(decode_loop.UNHEALTHY_AFTER + 1):
            # One prefill fails, the next request's runs succeed: never N in a row.
            runner.session = FaultySession(runner.session, failures=1)
            with pytest.raises(GenerationError):
                await collect(backend, request(PROMPT, 3))
            await collect(backend, request(PROMPT, 3))
            runner.session = runner.session.session
            assert backend.healthy
