"""onnxruntime-genai's own `og.Generator` on a builder model: a baseline worker.

Greedy, one token per `generate_next_token()`, each streamed through the genai tokenizer
stream as its own app would. Run as `python -m benchmarks.onnx_backend._genai_worker --model DIR
[--threads N]`, speaking `benchmarks.onnx_backend._worker_protocol`.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import onnxruntime_genai as og  # type: ignore[import-untyped]

from benchmarks.onnx_backend._worker_protocol import Generated, serve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--threads", type=int)
    args = parser.parse_args()
    config = og.Config(str(args.model))
    if args.threads is not None:
        overlay = {"model": {"decoder": {"session_options": {"intra_op_num_threads": args.threads}}}}
        config.overlay(json.dumps(overlay))
    model = og.Model(config)
    tokenizer = og.Tokenizer(model)

    def generate(prompt: str, max_tokens: int, batch: int) -> Generated:
        if batch != 1:
            raise ValueError("the genai worker decodes one sequence")
        ids = tokenizer.encode(prompt)
        params = og.GeneratorParams(model)
        params.set_search_options(do_sample=False, max_length=len(ids) + max_tokens)
        generator = og.Generator(model, params)
        generator.append_tokens(ids)
        stream = tokenizer.create_stream()
        arrivals: list[float] = []
        pieces: list[str] = []
        while not generator.is_done() and len(arrivals) < max_tokens:
            generator.generate_next_token()
            pieces.append(stream.decode(int(generator.get_next_tokens()[0])))
            arrivals.append(time.perf_counter())
        return Generated(len(ids), arrivals, "".join(pieces))

    serve(generate)


if __name__ == "__main__":
    main()
