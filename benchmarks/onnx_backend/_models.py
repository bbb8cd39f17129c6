"""The ONNX benchmark's models and prompts: prepared model dirs, and chat prompts rendered the
way tokenwire renders them (so in-process workers tokenize exactly what the server does)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer

BASE_NAME = "smollm2-135m-instruct"


def model_dirs(precisions: tuple[str, ...]) -> dict[str, Path]:
    """Precision → prepared model dir; `TOKENWIRE_BENCH_MODEL` names a single one."""
    override = os.environ.get("TOKENWIRE_BENCH_MODEL")
    if override:
        manifest = json.loads((Path(override) / "manifest.json").read_text())
        return {str(manifest["precision"]): Path(override)}
    from tokenwire.backends.onnx.manifest import models_dir

    found = {}
    tokenwire = Path(sys.executable).parent / "tokenwire"
    for precision in precisions:
        directory = models_dir() / f"{BASE_NAME}-{precision}"
        # A no-op when the build is up to date; rebuilds one an older recipe made.
        subprocess.run([str(tokenwire), "prepare", "--precision", precision], check=True)
        found[precision] = directory
    return found


@dataclass(frozen=True, slots=True)
class Prompt:
    user: str
    rendered: str
    tokens: int


def render(model_dir: Path, user: str) -> Prompt:
    """The prompt as tokenwire renders it: the model's own chat template, then its tokenizer."""
    from tokenwire.backends.onnx.chat_template import ChatTemplate
    from tokenwire.requests import ChatMessage

    manifest = json.loads((model_dir / "manifest.json").read_text())
    tokenizer = Tokenizer.from_file(str(model_dir / manifest["tokenizer_file"]))
    eos = tokenizer.id_to_token(manifest["eos_token_ids"][0])
    bos = manifest.get("bos_token_id")
    template = ChatTemplate(
        (model_dir / manifest["chat_template_file"]).read_text(),
        bos_token=tokenizer.id_to_token(bos) if bos is not None else None,
        eos_token=eos,
    )
    text = template.render([ChatMessage("user", user)])
    return Prompt(user, text, len(tokenizer.encode(text, add_special_tokens=False).ids))


_PASSAGE = (
    "The river town kept its old stone bridge long after the railway came. Every spring the "
    "water rose to the second arch, and the children counted the days until it fell again. "
    "Merchants crossed at dawn with carts of apples, wool and salted fish, and the toll "
    "keeper wrote each one into a ledger that is still kept in the town hall. "
)


def long_prompt(model_dir: Path, target: int) -> Prompt:
    """A summarization request of about `target` tokens once rendered."""
    user = "Summarize the following text in one sentence.\n\n"
    sentences = [s.strip() + "." for s in _PASSAGE.split(".") if s.strip()]
    prompt = render(model_dir, user)
    i = 0
    while prompt.tokens < target:
        user += sentences[i % len(sentences)] + " "
        i += 1
        prompt = render(model_dir, user)
    return prompt
