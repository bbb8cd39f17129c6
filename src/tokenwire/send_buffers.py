"""`SendBuffers`: bytes held for slow clients across every stream of an app.

Shared by an app's endpoints and counted by each stream's buffer (see
`transports._backpressure`); exported as a gauge when a metrics registry is at hand.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge


class SendBuffers:
    """Bytes held for clients across every stream of an app.

    `register(registry)` exports the total as the `tokenwire_stream_buffered_bytes` gauge
    (livesum across workers); without a registry the count is kept but not exported.
    """

    __slots__ = ("_gauge", "bytes")

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.bytes = 0
        self._gauge: Gauge | None = None
        if registry is not None:
            self.register(registry)

    def register(self, registry: CollectorRegistry) -> None:
        self._gauge = Gauge(
            "tokenwire_stream_buffered_bytes",
            "Bytes held for clients that read slower than tokens arrive: framed payloads "
            "waiting for the socket, and text waiting to be merged into a delta.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self._gauge.set(self.bytes)

    def add(self, size: int) -> None:
        self.bytes += size
        if self._gauge is not None:
            self._gauge.inc(size)
