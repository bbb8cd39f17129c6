"""Export with optimum (`text-generation-with-past`) in its own virtual environment.

optimum-onnx pins transformers < 4.58 while the builder path needs transformers 5, so the
two toolchains can never share an environment: this one lives in
`$TOKENWIRE_HOME/envs/optimum`, created on first use. Quantized precisions use 8- or 4-bit
MatMulNBits block weights — never `quantize_dynamic`, which wrecks this model's output
(FACTS.md: top-1 agreement 0.55).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tokenwire.backends.onnx.manifest import KVContract, tokenwire_home
from tokenwire.prepare._subprocess import run_logged
from tokenwire.prepare.errors import PrepareError
from tokenwire.prepare.progress import ProgressReporter

# onnx-ir: onnxruntime's MatMulNBits quantizer imports it but does not depend on it.
OPTIMUM_REQUIREMENTS = ("optimum-onnx[onnxruntime]==0.1.0", "torch==2.13.0", "onnx-ir==1.1.0")
OPTIMUM_DISTRIBUTIONS = ("optimum-onnx", "optimum", "transformers", "torch", "onnxruntime", "onnx")
_MARKER = ".tokenwire-requirements"
_PAST_KEY = re.compile(r"^past_key_values\.(\d+)\.key$")

# Runs inside the optimum environment, which has onnx and onnxruntime. accuracy_level=4
# (int8 activations) is what makes the CPU kernel fast: without it an 8-bit MatMulNBits
# graph decodes far slower than fp32 at the same quality (docs/benchmarks.md has the figure).
_QUANTIZE_SCRIPT = """
import sys
import onnx
from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer
source, target, bits = sys.argv[1], sys.argv[2], int(sys.argv[3])
quantizer = MatMulNBitsQuantizer(
    onnx.load(source), bits=bits, block_size=32, is_symmetric=True, accuracy_level=4
)
quantizer.process()
quantizer.model.save_model_to_file(target, use_external_data_format=True)
"""

_VERSIONS_SCRIPT = """
import importlib.metadata, json, sys
found = {}
for name in sys.argv[1:]:
    try:
        found[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        pass
print(json.dumps(found))
"""


def optimum_env_dir() -> Path:
    return tokenwire_home() / "envs" / "optimum"


def env_python(env_dir: Path) -> Path:
    return env_dir / "bin" / "python"


def ensure_optimum_env(env_dir: Path, progress: ProgressReporter) -> Path:
    """Create (once) or update the optimum environment; return its Python.

    A new environment is built in a sibling temp dir and renamed, so an interrupted first
    install is never taken for a working one; an existing one whose pins changed is updated
    in place by pip.
    Raises:
        PrepareError: venv creation or `pip install` failed.
    """
    wanted = "\n".join(OPTIMUM_REQUIREMENTS) + "\n"
    marker = env_dir / _MARKER
    if marker.is_file() and marker.read_text(encoding="utf-8") == wanted:
        return env_python(env_dir)
    log_file = env_dir.with_name(env_dir.name + "-install.log")
    log_file.parent.mkdir(parents=True, exist_ok=True)
    log_file.unlink(missing_ok=True)
    install = ["-m", "pip", "install", *OPTIMUM_REQUIREMENTS]
    what = f"pip install {' '.join(OPTIMUM_REQUIREMENTS)} (log: {log_file})"
    if marker.is_file():
        progress.note(f"updating the optimum toolchain environment in {env_dir}")
        run_logged([str(env_python(env_dir)), *install], log_file, what=what)
        marker.write_text(wanted, encoding="utf-8")
        return env_python(env_dir)
    progress.note(
        f"creating the optimum toolchain environment in {env_dir} (one time; about 1.5 GB): "
        + " ".join(OPTIMUM_REQUIREMENTS)
    )
    staging = env_dir.with_name(env_dir.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    run_logged([sys.executable, "-m", "venv", str(staging)], log_file, what="creating the venv")
    run_logged([str(env_python(staging)), *install], log_file, what=what)
    (staging / _MARKER).write_text(wanted, encoding="utf-8")
    shutil.rmtree(env_dir, ignore_errors=True)
    staging.rename(env_dir)
    _fix_venv_paths(staging, env_dir)
    return env_python(env_dir)


def _fix_venv_paths(old: Path, new: Path) -> None:
    # Console scripts carry the absolute interpreter path of the dir they were installed in;
    # we always call `python -m`, so only pyvenv.cfg-free scripts would break. Rewrite them
    # anyway so the environment stays usable by hand.
    for script in (new / "bin").iterdir():
        if script.is_file() and not script.is_symlink():
            try:
                text = script.read_text(encoding="utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            if str(old) in text:
                script.write_text(text.replace(str(old), str(new)), encoding="utf-8")


def make_config_compatible(hf_dir: Path) -> None:
    """Let transformers 4.x read a config and tokenizer written by transformers 5.

    transformers 5 writes `rope_parameters` where 4.x reads `rope_theta`/`rope_scaling`
    (a silently wrong RoPE base otherwise), and names its tokenizer class
    `TokenizersBackend`, unknown to 4.x.
    """
    config_path = hf_dir / "config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    rope = config.get("rope_parameters")
    if isinstance(rope, dict) and "rope_theta" not in config:
        config["rope_theta"] = rope.get("rope_theta")
        if rope.get("rope_type", "default") != "default":
            config["rope_scaling"] = {k: v for k, v in rope.items() if k != "rope_theta"}
    if "torch_dtype" not in config and "dtype" in config:
        config["torch_dtype"] = config["dtype"]
    config_path.write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    tokenizer_config_path = hf_dir / "tokenizer_config.json"
    if tokenizer_config_path.is_file():
        data = json.loads(tokenizer_config_path.read_text(encoding="utf-8"))
        if data.get("tokenizer_class") == "TokenizersBackend":
            data["tokenizer_class"] = "PreTrainedTokenizerFast"
            tokenizer_config_path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def run_optimum_export(python: Path, hf_dir: Path, out_dir: Path, log_file: Path) -> None:
    run_logged(
        [
            str(python), "-m", "optimum.commands.optimum_cli", "export", "onnx",
            "--model", str(hf_dir), "--task", "text-generation-with-past", str(out_dir),
        ],
        log_file,
        what="optimum-cli export onnx",
    )  # fmt: skip
    if not (out_dir / "model.onnx").is_file():
        raise PrepareError(f"optimum wrote no model.onnx into {out_dir}")


def quantize_matmul_nbits(
    python: Path, source: Path, target: Path, bits: int, log_file: Path
) -> None:
    """Block-quantize every MatMul weight of `source` to `bits` (MatMulNBits, block 32)."""
    run_logged(
        [str(python), "-c", _QUANTIZE_SCRIPT, str(source), str(target), str(bits)],
        log_file,
        what=f"MatMulNBits {bits}-bit quantization",
    )


def env_versions(python: Path) -> dict[str, str]:
    completed = subprocess.run(
        [str(python), "-c", _VERSIONS_SCRIPT, *OPTIMUM_DISTRIBUTIONS],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if completed.returncode != 0:
        return {}
    versions: dict[str, str] = json.loads(completed.stdout)
    return versions


def read_concat_kv_contract(model_file: Path, max_context: int) -> KVContract:
    """The KV contract of an optimum graph, read from its declared inputs."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])
    inputs = {i.name: i for i in session.get_inputs()}
    layers = sorted(int(m.group(1)) for name in inputs if (m := _PAST_KEY.match(name)))
    if not layers or layers != list(range(len(layers))):
        raise PrepareError(f"{model_file} has no past_key_values.{{i}}.key inputs numbered from 0")
    shape = inputs["past_key_values.0.key"].shape
    heads, head_size = shape[1], shape[3]
    if not (isinstance(heads, int) and isinstance(head_size, int)):
        raise PrepareError(
            f"{model_file} declares a KV shape without fixed heads/head size: {shape}"
        )
    dtype = "float16" if inputs["past_key_values.0.key"].type == "tensor(float16)" else "float32"
    return KVContract(
        layout="concat",
        position_ids="position_ids" in inputs,
        num_layers=len(layers),
        num_kv_heads=heads,
        head_size=head_size,
        max_context=max_context,
        dtype=dtype,
    )
