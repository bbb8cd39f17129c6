"""GGUF → Hugging Face fp32 directory, with transformers 5 (needs `gguf` and `accelerate`).

The conversion runs in a subprocess (`python -m tokenwire.prepare.gguf_to_hf`): torch and
transformers are never imported into the caller, which may be a serving install.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tokenwire.prepare._extras import GGUF_TO_HF_MODULES, require_modules
from tokenwire.prepare._subprocess import run_logged

_INFO_FILE = "gguf-tokenizer-info.json"


@dataclass(frozen=True, slots=True)
class GgufTokenizerInfo:
    """What the GGUF says about its tokenizer that transformers' loader drops."""

    pre_tokenizer: str | None
    add_bos_token: bool | None


def convert_gguf_to_hf(gguf_file: Path, out_dir: Path, log_file: Path) -> GgufTokenizerInfo:
    """Dequantize `gguf_file` into an fp32 Hugging Face model dir at `out_dir`.

    Raises:
        MissingExtraError: the `prepare` extra is not installed.
        PrepareError: the conversion failed (the message ends with its log's tail).
    """
    require_modules(GGUF_TO_HF_MODULES)
    info_file = out_dir.with_name(_INFO_FILE)
    run_logged(
        [sys.executable, "-m", __name__, str(gguf_file), str(out_dir), str(info_file)],
        log_file,
        what="the GGUF to Hugging Face conversion (transformers)",
    )
    return GgufTokenizerInfo(**json.loads(info_file.read_text(encoding="utf-8")))


def read_gguf_tokenizer_info(gguf_file: Path) -> GgufTokenizerInfo:
    reader = importlib.import_module("gguf").GGUFReader(gguf_file)

    def field(key: str) -> Any:
        found = reader.fields.get(key)
        return None if found is None else found.contents()

    pre = field("tokenizer.ggml.pre")
    add_bos = field("tokenizer.ggml.add_bos_token")
    return GgufTokenizerInfo(
        pre_tokenizer=str(pre) if pre is not None else None,
        add_bos_token=bool(add_bos) if add_bos is not None else None,
    )


def convert_in_process(gguf_file: Path, out_dir: Path) -> GgufTokenizerInfo:
    """The conversion itself; imports torch and transformers (the subprocess's entry point)."""
    # Imported by name: typed as Any, so mypy passes with or without the extra installed.
    torch = importlib.import_module("torch")
    transformers = importlib.import_module("transformers")
    transformers.utils.logging.disable_progress_bar()
    directory, name = str(gguf_file.parent), gguf_file.name
    tokenizer = transformers.AutoTokenizer.from_pretrained(directory, gguf_file=name)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        directory, gguf_file=name, dtype=torch.float32
    )
    # transformers 5 refuses to save a GGUF-loaded model as "quantized" although its weights
    # were dequantized to fp32 on load (FACTS.md); clearing the markers lets it save.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    _drop_loader_leftovers(out_dir)
    return read_gguf_tokenizer_info(gguf_file)


def _drop_loader_leftovers(out_dir: Path) -> None:
    # The loader records where it loaded from; neither key describes the model.
    path = out_dir / "tokenizer_config.json"
    if path.is_file():
        data = json.loads(path.read_text(encoding="utf-8"))
        for key in ("is_local", "local_files_only"):
            data.pop(key, None)
        path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def main(argv: Sequence[str]) -> int:
    gguf_file, out_dir, info_file = (Path(a) for a in argv)
    info = convert_in_process(gguf_file, out_dir)
    info_file.write_text(json.dumps(asdict(info)), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
