"""TTFT under load: the prefill plan before and after batching fresh prompts."""
