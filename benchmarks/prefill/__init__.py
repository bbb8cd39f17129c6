"""Prefill and batch throughput: the prefill graph beside the decode graph, and vLLM-CPU."""
