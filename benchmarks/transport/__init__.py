"""The transport ceiling: tokenwire against a raw ASGI floor and sse-starlette.

`benchmark.main` runs it. Imports nothing: each server under test is `python -m
benchmarks.transport._servers`, and must not load the client side too.
"""
