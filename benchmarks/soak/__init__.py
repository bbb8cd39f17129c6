"""The soak: thousands of streams with clients that vanish and stall; nothing may leak.

`benchmark.main` runs it. Imports nothing: the server is `python -m benchmarks.soak._server`,
and its memory is what the soak measures.
"""
