"""optimum's `ORTModelForCausalLM.generate` + transformers' `TextIteratorStreamer`: a baseline.

Runs in its own environment (optimum-onnx pins transformers < 4.58, the builder needs 5),
so it imports nothing of tokenwire. `generate` runs in a thread and the caller iterates the
streamer, the way its documentation streams. The streamer releases text at word
boundaries, so each token's time is stamped where `generate` hands it over (`put`).
Run as `python -m benchmarks.onnx_backend._optimum_worker --model DIR [--threads N]`.
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path
from typing import Any

import onnxruntime as ort
from optimum.onnxruntime import ORTModelForCausalLM
from transformers import AutoTokenizer, TextIteratorStreamer

from benchmarks.onnx_backend._worker_protocol import Generated, serve


class _StampingStreamer(TextIteratorStreamer):  # type: ignore[misc]
    """A TextIteratorStreamer that also records when each new token was produced."""

    def __init__(self, tokenizer: Any) -> None:
        super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True)
        self.stamps: list[float] = []
        self._prompt_seen = False

    def put(self, value: Any) -> None:
        if self._prompt_seen:
            self.stamps.extend([time.perf_counter()] * int(value.numel()))
        self._prompt_seen = True
        super().put(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--threads", type=int)
    args = parser.parse_args()
    options = ort.SessionOptions()
    if args.threads is not None:
        options.intra_op_num_threads = args.threads
    model = ORTModelForCausalLM.from_pretrained(
        str(args.model), session_options=options, provider="CPUExecutionProvider"
    )
    tokenizer = AutoTokenizer.from_pretrained(str(args.model))

    def generate(prompt: str, max_tokens: int, batch: int) -> Generated:
        if batch != 1:
            raise ValueError("the optimum worker decodes one sequence")
        inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        streamer = _StampingStreamer(tokenizer)
        kwargs = dict(
            **inputs, max_new_tokens=max_tokens, do_sample=False, streamer=streamer
        )
        thread = threading.Thread(target=model.generate, kwargs=kwargs)
        thread.start()
        text = "".join(streamer)
        thread.join()
        return Generated(int(inputs["input_ids"].shape[1]), streamer.stamps, text)

    serve(generate)


if __name__ == "__main__":
    main()
