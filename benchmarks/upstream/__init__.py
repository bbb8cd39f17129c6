"""Upstream proxy latency: what tokenwire + UpstreamBackend adds to each token.

`benchmark.main` runs it; `python -m benchmarks.upstream` runs it alone.
"""
