"""`StoreErrors`: failed calls to the shared stream store, by operation."""

from __future__ import annotations

import logging
from collections import Counter as Tally

from prometheus_client import CollectorRegistry, Counter

from tokenwire.stores.stream_store import StreamStoreError

logger = logging.getLogger("tokenwire.resume")


class StoreErrors:
    """Counts store failures; `register(registry)` exports them as
    `tokenwire_stream_store_errors_total{operation}`."""

    __slots__ = ("_counter", "counts")

    def __init__(self) -> None:
        self.counts: Tally[str] = Tally()
        self._counter: Counter | None = None

    def register(self, registry: object) -> None:
        if not isinstance(registry, CollectorRegistry):
            return
        self._counter = Counter(
            "tokenwire_stream_store_errors",
            "Calls to the shared stream store that failed, by operation (create, append, read, "
            "presence, control, cancel); the streams concerned went on unresumable elsewhere.",
            ["operation"],
            registry=registry,
        )
        for operation, count in self.counts.items():
            self._counter.labels(operation).inc(count)

    def count(self, operation: str) -> None:
        self.counts[operation] += 1
        if self._counter is not None:
            self._counter.labels(operation).inc()

    def failed(self, operation: str, exc: StreamStoreError) -> None:
        """Count a failed call and warn: the streams concerned go on, unresumable elsewhere."""
        self.count(operation)
        logger.warning(
            "stream store: %s failed; streams go on, unresumable elsewhere (%s)", operation, exc
        )
