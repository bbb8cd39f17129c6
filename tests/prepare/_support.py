"""Small real artefacts for the prepare tests, built in code in milliseconds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
_CORPUS = [
    "In 2024 there were 12345 apples and 678 pears.",
    "The year 1999 came before 2000 and 2001.",
    "hello world, hello tokenizer 42 4242 424242",
] * 20


def train_tokenizer() -> Tokenizer:
    """A byte-level BPE like a GGUF-derived one: digit runs merge, a BOS is prepended."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_CORPUS, trainer=trainer)
    tokenizer.post_processor = processors.TemplateProcessing(
        single="<|im_start|> $A", special_tokens=[("<|im_start|>", 1)]
    )
    return tokenizer


def write_hf_dir(directory: Path, *, template_in_config: bool = False) -> Path:
    """A GGUF-converted-looking HF dir: tokenizer, configs and a chat template; no weights."""
    directory.mkdir(parents=True, exist_ok=True)
    train_tokenizer().save(str(directory / "tokenizer.json"))
    tokenizer_config: dict[str, object] = {
        "bos_token": "<|im_start|>",
        "eos_token": "<|im_end|>",
        "pad_token": "<|im_end|>",
        "tokenizer_class": "TokenizersBackend",
    }
    if template_in_config:
        tokenizer_config["chat_template"] = CHAT_TEMPLATE
    else:
        (directory / "chat_template.jinja").write_text(CHAT_TEMPLATE, encoding="utf-8")
    (directory / "tokenizer_config.json").write_text(json.dumps(tokenizer_config), encoding="utf-8")
    (directory / "generation_config.json").write_text(
        json.dumps({"bos_token_id": 1, "eos_token_id": 0}), encoding="utf-8"
    )
    (directory / "config.json").write_text(
        json.dumps({"model_type": "llama", "eos_token_id": 0, "max_position_embeddings": 64}),
        encoding="utf-8",
    )
    return directory


def write_logits_model(
    path: Path,
    embedding: np.ndarray,
    *,
    num_layers: int = 2,
    heads: int = 2,
    head_size: int = 4,
    position_ids: bool = False,
) -> Path:
    """A decoder-shaped graph: logits = embedding[input_ids] (+ position_ids when declared).

    It declares the KV inputs and outputs of a real decoder so the feeding code is exercised;
    `present.i.*` echo `past_key_values.i.*`.
    """
    vocab = embedding.shape[0]
    inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
        helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "total"]),
    ]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "seq", vocab])]
    nodes = [helper.make_node("Gather", ["embedding", "input_ids"], ["gathered"], axis=0)]
    if position_ids:
        inputs.append(
            helper.make_tensor_value_info("position_ids", TensorProto.INT64, ["batch", "seq"])
        )
        nodes += [
            helper.make_node("Cast", ["position_ids"], ["pos_f"], to=TensorProto.FLOAT),
            helper.make_node("Unsqueeze", ["pos_f", "last_axis"], ["pos_col"]),
            helper.make_node("Add", ["gathered", "pos_col"], ["logits"]),
        ]
    else:
        nodes.append(helper.make_node("Identity", ["gathered"], ["logits"]))
    for i in range(num_layers):
        for kind in ("key", "value"):
            shape = ["batch", heads, "past", head_size]
            inputs.append(
                helper.make_tensor_value_info(
                    f"past_key_values.{i}.{kind}", TensorProto.FLOAT, shape
                )
            )
            outputs.append(
                helper.make_tensor_value_info(f"present.{i}.{kind}", TensorProto.FLOAT, shape)
            )
            nodes.append(
                helper.make_node(
                    "Identity", [f"past_key_values.{i}.{kind}"], [f"present.{i}.{kind}"]
                )
            )
    initializers = [
        numpy_helper.from_array(embedding.astype(np.float32), "embedding"),
        numpy_helper.from_array(np.array([-1], dtype=np.int64), "last_axis"),
    ]
    graph = helper.make_graph(nodes, "logits_model", inputs, outputs, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path
