"""How closely the int8 graphs follow fp32, teacher-forced: the decode graph (MatMulNBits),
the int8 prefill graph as `tokenwire prepare --prefill-graph` writes it (smoothed, see
`tokenwire.prepare.smoothing`) and the same graph unsmoothed, built here from the fp32 build.

Every prompt position of 50 short chats (about 40 tokens each) and the first 545 tokens of
README.md, one forward pass each; mean KL(fp32 || graph) and top-1 agreement over all
positions, and top-1 at each chat's last position (the first token a user is sent). Each
graph runs under ONNX Runtime as the backend builds its session: the prefill graphs
without GQA's CPU flash path. The fp32 reference is `tokenwire prepare --precision fp32`,
prepared beside `--model` when missing; graphs that return their last positions only are
widened to all of them (`LAST_POSITIONS`).
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from benchmarks._shared import report
from benchmarks._shared.paths import REPO
from benchmarks._shared.standalone import run_standalone
from tokenwire.backends.onnx._graph_io import last_positions
from tokenwire.backends.onnx.chat_template import ChatTemplate
from tokenwire.backends.onnx.manifest import DEFAULT_MODEL_NAME, ModelManifest
from tokenwire.backends.onnx.session import create_session, resolve_device
from tokenwire.prepare import PrepareOptions, prepare_model
from tokenwire.prepare.prefill_graph import build_prefill_graph
from tokenwire.prepare.quality import encode_text, log_softmax, prompt_feeds
from tokenwire.requests import ChatMessage

SECTION = "prefill-quality"
TOPICS = ("the sea", "a robot", "autumn", "coffee", "mountains", "the moon", "a library",
          "trains", "rain", "a cat")  # fmt: skip
ASKS = ("Write a haiku about {}.", "Give me three facts about {}.",
        "Describe {} in one sentence.", "Write a short story opening about {}.",
        "Why do people like {}?")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Agreement:
    chat_kl: float
    chat_top1: float
    first_token_top1: float
    text_kl: float
    text_top1: float


def chat_prompts(model: Path, count: int) -> list[list[int]]:
    """The first `count` of the 50 chats, rendered as the backend renders them."""
    manifest = ModelManifest.read(model)
    assert manifest.chat_template_file is not None
    template = ChatTemplate((model / manifest.chat_template_file).read_text(encoding="utf-8"))
    questions = [ask.format(topic) for ask in ASKS for topic in TOPICS][:count]
    return [encode_text(model / manifest.tokenizer_file, template.render([ChatMessage("user", q)]))
            for q in questions]  # fmt: skip


def all_logits(
    graph: Path, model: Path, texts: Sequence[Sequence[int]], flash: bool
) -> list[np.ndarray]:
    """Logits `[tokens, vocab]` of each text, the graph widened to every position."""
    manifest = ModelManifest.read(model)
    session, _ = create_session(graph, resolve_device("cpu"), initializers=last_positions(1 << 16),
                                gqa_flash_attention=flash)  # fmt: skip
    return [np.asarray(session.run(["logits"], prompt_feeds(session, manifest.kv, ids, graph))[0][0])
            for ids in texts]  # fmt: skip


def agreement(reference: list[np.ndarray], candidate: list[np.ndarray]) -> Agreement:
    def kl(r: np.ndarray, c: np.ndarray) -> float:
        p = log_softmax(r)
        return float(np.mean(np.sum(np.exp(p) * (p - log_softmax(c)), axis=-1)))

    chats = list(zip(reference[:-1], candidate[:-1], strict=True))
    text_ref, text = reference[-1], candidate[-1]
    return Agreement(
        chat_kl=float(np.mean([kl(r, c) for r, c in chats])),
        chat_top1=float(np.mean([np.mean(r.argmax(-1) == c.argmax(-1)) for r, c in chats])),
        first_token_top1=float(np.mean([r[-1].argmax() == c[-1].argmax() for r, c in chats])),
        text_kl=kl(text_ref, text),
        text_top1=float(np.mean(text_ref.argmax(-1) == text.argmax(-1))),
    )


def measure(model: Path, fp32_graph: Path, texts: Sequence[Sequence[int]]) -> dict[str, Agreement]:
    """Each int8 graph of `model` (and its prefill graph unsmoothed, built from
    `fp32_graph`) against `fp32_graph` over `texts`; the last text is the long one."""
    manifest = ModelManifest.read(model)
    assert manifest.prefill_model_file is not None
    reference = all_logits(fp32_graph, model, texts, flash=True)
    found: dict[str, Agreement] = {}
    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / "model.prefill.onnx"
        build_prefill_graph(fp32_graph, plain)
        graphs = {
            "int8 decode graph (MatMulNBits, the default)": (model / manifest.model_file, True),
            "int8 prefill graph, smoothed (as prepared)": (model / manifest.prefill_model_file,
                                                           False),
            "int8 prefill graph, unsmoothed": (plain, False),
        }  # fmt: skip
        for name, (graph, flash) in graphs.items():
            found[name] = agreement(reference, all_logits(graph, model, texts, flash))
    return found


def fp32_beside(model: Path) -> Path:
    """The fp32 build of the same source, prepared beside `model` when missing."""
    options = PrepareOptions(precision="fp32", output=model.parent / f"{DEFAULT_MODEL_NAME}-fp32")
    return prepare_model(options, stream=io.StringIO()).directory


def main(*, quick: bool, results_dir: Path, docs: Path | None, command: str,
         model: Path | None = None) -> dict[str, Agreement]:  # fmt: skip
    model = model or REPO / ".cache" / "models" / f"{DEFAULT_MODEL_NAME}-prefill"
    if not (model / "manifest.json").is_file():
        prepare_model(PrepareOptions(output=model, prefill_graph=True), stream=io.StringIO())
    manifest = ModelManifest.read(model)
    if manifest.prefill_model_file is None:
        raise FileNotFoundError(f"{model} has no int8 prefill graph: prepare it with --prefill-graph")
    fp32 = fp32_beside(model)
    text = (REPO / "README.md").read_text()
    texts = [*chat_prompts(model, 10 if quick else 50),
             encode_text(model / manifest.tokenizer_file, text)[: 128 if quick else 545]]  # fmt: skip
    found = measure(model, fp32 / ModelManifest.read(fp32).model_file, texts)
    lines = ["| graph | 50 chats: mean KL | top-1 | first token top-1 | README: mean KL | top-1 |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for name, a in found.items():
        lines.append(f"| {name} | {a.chat_kl:.4f} | {a.chat_top1:.3f} | {a.first_token_top1:.2f} "
                     f"| {a.text_kl:.4f} | {a.text_top1:.3f} |")  # fmt: skip
    table = "\n".join(lines)
    print(table)
    machine = report.Machine.current()
    path = report.write_json(results_dir / "prefill-quality.json", {
        "machine": asdict(machine), "command": command, "model": model.name,
        "graphs": {name: asdict(a) for name, a in found.items()}})  # fmt: skip
    print(f"prefill quality: results in {path}")
    if docs is not None:
        header = (f"Measured {machine.date} on {machine.cpu}. Command: `{command}` — {model.name} "
                  f"against its fp32 build, {len(texts) - 1} chats and {len(texts[-1])} tokens "
                  "of README.md.")  # fmt: skip
        report.update_docs(docs, SECTION, header + "\n\n" + table)
    return found


def cli(argv: list[str] | None = None) -> None:
    run_standalone("prefill.quality", __doc__, main, argv)


if __name__ == "__main__":
    cli()
