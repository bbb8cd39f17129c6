"""Prompt cache: time to first token with a long shared system prompt, cache hit vs miss.

`benchmark.main` runs it; `python -m benchmarks.prompt_cache` runs it alone.
"""
