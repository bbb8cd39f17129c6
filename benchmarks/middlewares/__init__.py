"""Middlewares: their throughput cost, disconnect-to-free latency and resume latency.

`benchmark.main` runs it; `python -m benchmarks.middlewares` runs it alone.
"""
