"""A plain numpy greedy loop over a prepared model, for either KV contract.

Deliberately naive (present fed back as past, full logits read): it checks what `prepare`
wrote, independently of the backend's IOBinding loop.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from tokenwire.backends.onnx.manifest import ModelManifest


def greedy_chat(directory: Path, prompt: str, *, max_new_tokens: int = 24) -> str:
    manifest = ModelManifest.read(directory)
    tokenizer = Tokenizer.from_file(str(directory / manifest.tokenizer_file))
    assert manifest.chat_template_file is not None
    template = (directory / manifest.chat_template_file).read_text()
    text = (
        jinja2.Environment()
        .from_string(template)
        .render(messages=[{"role": "user", "content": prompt}], add_generation_prompt=True)
    )
    ids = tokenizer.encode(text).ids
    session = ort.InferenceSession(
        str(directory / manifest.model_file), providers=["CPUExecutionProvider"]
    )
    kv = manifest.kv
    empty = np.zeros((1, kv.num_kv_heads, 0, kv.head_size), np.float32)
    past: dict[str, Any] = {
        name.format(i=i): empty
        for i in range(kv.num_layers)
        for name in (kv.past_key, kv.past_value)
    }
    output_names = [o.name for o in session.get_outputs()]
    generated: list[int] = []
    step, total = ids, len(ids)
    for _ in range(max_new_tokens):
        feeds = {
            "input_ids": np.array([step], np.int64),
            "attention_mask": np.ones((1, total), np.int64),
            **past,
        }
        if kv.position_ids:
            feeds["position_ids"] = np.arange(total - len(step), total, dtype=np.int64)[None, :]
        result = dict(zip(output_names, session.run(None, feeds), strict=True))
        token = int(result["logits"][0, -1].argmax())
        if token in manifest.eos_token_ids:
            break
        generated.append(token)
        for i in range(kv.num_layers):
            past[kv.past_key.format(i=i)] = result[kv.present_key.format(i=i)]
            past[kv.past_value.format(i=i)] = result[kv.present_value.format(i=i)]
        step, total = [token], total + 1
    answer: str = tokenizer.decode(generated)
    return answer
