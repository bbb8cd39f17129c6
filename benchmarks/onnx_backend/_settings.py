"""How much work one ONNX benchmark run does, and how tokenwire is configured for it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Settings:
    """How much work one run does, and how tokenwire is configured."""

    new_tokens: int = 128
    rounds: int = 5
    streams: tuple[int, ...] = (1, 4, 8, 16)
    scaling_rounds: int = 3
    ttft_samples: int = 20
    long_prompt_tokens: int = 540
    load_streams: int = 8
    gap_running: int = 4
    gap_quiet: float = 3.0
    gap_busy: float = 10.0
    prefill_chunk: int = 256
    """The most prompt tokens in one chunk (the backend's default)."""
    prefill_budget_ms: float = 30.0
    """The main server's prefill budget (the backend's default); the gap phase also tries
    `budget_sweep`, where 0 turns the budget off (whole `prefill_chunk`s)."""
    budget_sweep: tuple[float, ...] = (100.0, 60.0, 40.0, 30.0, 20.0, 0.0)
    threads: int = 2
    """intra-op threads for every runtime (ORT, genai, optimum, llama.cpp)."""
    max_batch: int = 16
    precisions: tuple[str, ...] = ("int8", "int4", "fp32")
    baselines: bool = True
    background_tokens: int = 4000
    spin_experiment: bool = True
    """Also serve the int8 model with `allow_spinning=false`."""

    @classmethod
    def quick(cls) -> Settings:
        """A smoke run, well under a minute: its numbers are not worth comparing."""
        return cls(
            new_tokens=16, rounds=1, streams=(1, 4), scaling_rounds=1, ttft_samples=2,
            long_prompt_tokens=200,
            load_streams=2, gap_running=2, gap_quiet=0.3, gap_busy=1.0, budget_sweep=(30.0,),
            precisions=("int8",), baselines=False, background_tokens=150,
            spin_experiment=False,
        )  # fmt: skip
