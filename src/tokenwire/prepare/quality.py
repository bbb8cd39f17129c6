"""The quality gate: teacher-forced logits of a quantized build against the fp32 build.

Both graphs read the same fixed chat text in one forward pass; at every position we compare
the argmax (top-1 agreement) and the full distributions (KL(fp32 || quantized), in nats).
Only onnxruntime and numpy are needed, so the gate runs in the serving environment too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from tokenwire.backends.onnx.manifest import KVContract, Quality

MIN_TOP1_AGREEMENT = 0.9

# A fixed conversation, rendered through the model's own chat template. It mixes prose,
# digits, code and a list so that each kind of token is exercised; do not edit it lightly,
# recorded figures (FACTS.md, docs/prepare.md) were measured on it.
QUALITY_MESSAGES: tuple[tuple[str, str], ...] = (
    ("system", "You are a concise assistant. Answer accurately."),
    (
        "user",
        "What is the boiling point of water at sea level, and why does it drop on a mountain?",
    ),
    (
        "assistant",
        "Water boils at 100 degrees Celsius (212 degrees Fahrenheit) at sea level. On a "
        "mountain the air pressure is lower, so the molecules need less energy to escape "
        "and water boils at a lower temperature: about 90 degrees at 3,000 metres.",
    ),
    ("user", "Write a Python function that returns the squares of a list of numbers."),
    ("assistant", "def squares(numbers):\n    return [n * n for n in numbers]"),
)

FloatArray = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class LogitComparison:
    top1_agreement: float
    mean_kl: float
    tokens: int


def log_softmax(logits: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    """Row-wise log-softmax in float64, stable for large logits."""
    x = np.asarray(logits, dtype=np.float64)
    shifted = x - x.max(axis=-1, keepdims=True)
    result: npt.NDArray[np.float64] = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return result


def compare_logits(reference: npt.NDArray[Any], candidate: npt.NDArray[Any]) -> LogitComparison:
    """Top-1 agreement and mean KL(reference || candidate) over positions `[tokens, vocab]`."""
    if reference.shape != candidate.shape or reference.ndim != 2:
        raise ValueError(
            f"logits must be two arrays of one shape [tokens, vocab]; got {reference.shape} "
            f"and {candidate.shape}"
        )
    agree = float(np.mean(reference.argmax(axis=-1) == candidate.argmax(axis=-1)))
    log_p = log_softmax(reference)
    log_q = log_softmax(candidate)
    kl = float(np.mean(np.sum(np.exp(log_p) * (log_p - log_q), axis=-1)))
    return LogitComparison(top1_agreement=agree, mean_kl=max(kl, 0.0), tokens=reference.shape[0])


def render_quality_text(chat_template: str) -> str:
    """The fixed conversation rendered by the model's template (without a generation prompt)."""
    return render_messages(chat_template, QUALITY_MESSAGES)


def render_messages(chat_template: str, messages: Sequence[tuple[str, str]]) -> str:
    """`messages` (role, content) rendered by `chat_template`, without a generation prompt."""
    import jinja2

    env = jinja2.Environment(autoescape=False, keep_trailing_newline=True)
    return env.from_string(chat_template).render(
        messages=[{"role": role, "content": content} for role, content in messages],
        add_generation_prompt=False,
        bos_token="",
        eos_token="",
    )


def encode_quality_text(tokenizer_file: Path, chat_template: str) -> list[int]:
    return encode_text(tokenizer_file, render_quality_text(chat_template))


def encode_text(tokenizer_file: Path, text: str) -> list[int]:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    ids: list[int] = tokenizer.encode(text, add_special_tokens=False).ids
    return ids


def teacher_forced_logits(model_file: Path, kv: KVContract, token_ids: Sequence[int]) -> FloatArray:
    """Logits `[tokens, vocab]` of one forward pass over `token_ids` with an empty KV cache.

    Feeds whichever of `position_ids` and the KV inputs the graph declares, so it drives both
    the shared-buffer (builder) and concat (optimum) contracts.
    """
    session = cpu_session(model_file)
    (logits,) = session.run(["logits"], prompt_feeds(session, kv, token_ids, model_file))
    result: FloatArray = np.asarray(logits[0], dtype=np.float32)
    return result


def cpu_session(model_file: Path) -> Any:
    """A quiet ONNX Runtime CPU session over `model_file` (an `ort.InferenceSession`)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(str(model_file), options, providers=["CPUExecutionProvider"])


def prompt_feeds(
    session: Any, kv: KVContract, token_ids: Sequence[int], model_file: Path
) -> dict[str, npt.NDArray[Any]]:
    """Feeds for one run of `session` over `token_ids` with an empty KV cache: whichever of
    `position_ids` and the KV inputs its graph (`model_file`) declares.

    Raises:
        ValueError: the graph declares an input this cannot feed.
    """
    n = len(token_ids)
    feeds: dict[str, npt.NDArray[Any]] = {
        "input_ids": np.asarray([token_ids], dtype=np.int64),
        "attention_mask": np.ones((1, n), dtype=np.int64),
    }
    declared = {i.name for i in session.get_inputs()}
    if "position_ids" in declared:
        feeds["position_ids"] = np.arange(n, dtype=np.int64)[None, :]
    empty = np.zeros((1, kv.num_kv_heads, 0, kv.head_size), dtype=np.dtype(kv.dtype))
    for layer in range(kv.num_layers):
        for template in (kv.past_key, kv.past_value):
            feeds[template.format(i=layer)] = empty
    missing = declared - feeds.keys()
    if missing:
        raise ValueError(
            f"{model_file} declares inputs the quality check cannot feed: {sorted(missing)}"
        )
    return _only(feeds, declared)


def _only(feeds: Mapping[str, npt.NDArray[Any]], names: set[str]) -> dict[str, npt.NDArray[Any]]:
    return {k: v for k, v in feeds.items() if k in names}


def measure_quality(
    candidate: Path, reference: Path, kv: KVContract, token_ids: Sequence[int]
) -> Quality:
    """Compare the model file `candidate` with the fp32 model file `reference`."""
    comparison = compare_logits(
        teacher_forced_logits(reference, kv, token_ids),
        teacher_forced_logits(candidate, kv, token_ids),
    )
    return Quality(
        top1_agreement=round(comparison.top1_agreement, 4),
        mean_kl=round(comparison.mean_kl, 5),
        reference="fp32",
        tokens=comparison.tokens,
    )
