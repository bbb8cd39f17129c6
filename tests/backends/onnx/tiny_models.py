"""Tiny random-weight Llama decoders and a byte-level BPE tokenizer, built without torch.

Two twins share one set of weights: the onnxruntime-genai builder contract (GroupQueryAttention
with a KV buffer shared between past and present, no position ids) and the optimum contract
(position ids, present = Concat(past, new), plain ops). `write_model_dir` writes either one as a
prepared model directory with a manifest (exporter "fixture").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from tokenwire.backends.onnx.manifest import KVContract, KVLayout, ModelManifest

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
EOS_ID = 2  # <|im_end|>, as in SmolLM2

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

_CORPUS = [
    "The capital city of France is Paris. The capital of Japan is Tokyo.",
    "Streaming tokens one by one, the model writes a story about a small robot.",
    "Numbers: 0 1 2 3 4 5 6 7 8 9 10 100 1000, and punctuation: .,;:!?()[]{}",
    "Unicode: café naïve résumé — 東京 日本語 中文 한국어 😀 🚀 🇫🇷 e\u0301 n\u0303",
    "def main():\n    print('hello, world')\n    return 0\n",
    "Once upon a time there was a tiny language model that liked to count sheep.",
] * 4


@dataclass(frozen=True, slots=True)
class TinyConfig:
    vocab: int = 320
    hidden: int = 64
    heads: int = 4
    kv_heads: int = 2
    layers: int = 2
    intermediate: int = 128
    max_context: int = 256
    seed: int = 0
    added_tokens: tuple[str, ...] = ()

    @property
    def head_size(self) -> int:
        return self.hidden // self.heads


def build_tokenizer(vocab: int = 320, added_tokens: tuple[str, ...] = ()) -> Tokenizer:
    """A byte-level BPE tokenizer with ChatML special tokens (ids 0, 1, 2), and
    `added_tokens` (plain text, not special) as its last ids."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab - len(added_tokens),
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_CORPUS, trainer=trainer)
    tokenizer.add_tokens(list(added_tokens))
    return tokenizer


def _weights(config: TinyConfig) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(config.seed)
    h, hd, inter = config.hidden, config.head_size, config.intermediate

    def mat(rows: int, cols: int, gain: float = 1.0) -> np.ndarray:
        return (rng.standard_normal((rows, cols)) * gain / np.sqrt(rows)).astype(np.float32)

    # Large gains keep logits well spread, so greedy choices are far from ties and
    # token-for-token comparisons are not at the mercy of float rounding.
    w = {
        "embed": rng.standard_normal((config.vocab, h)).astype(np.float32),
        "final_norm": (1.0 + 0.1 * rng.standard_normal(h)).astype(np.float32),
        "lm_head": mat(h, config.vocab, 4.0),
    }
    for i in range(config.layers):
        w[f"l{i}.norm1"] = (1.0 + 0.1 * rng.standard_normal(h)).astype(np.float32)
        w[f"l{i}.norm2"] = (1.0 + 0.1 * rng.standard_normal(h)).astype(np.float32)
        w[f"l{i}.q"] = mat(h, config.heads * hd, 2.0)
        w[f"l{i}.k"] = mat(h, config.kv_heads * hd, 2.0)
        w[f"l{i}.v"] = mat(h, config.kv_heads * hd)
        w[f"l{i}.o"] = mat(config.heads * hd, h)
        w[f"l{i}.gate"] = mat(h, inter)
        w[f"l{i}.up"] = mat(h, inter)
        w[f"l{i}.down"] = mat(inter, h)
    inv = 1.0 / (10000.0 ** (np.arange(0, hd, 2, dtype=np.float64) / hd))
    angles = np.outer(np.arange(config.max_context, dtype=np.float64), inv)
    w["cos_cache"] = np.cos(angles).astype(np.float32)
    w["sin_cache"] = np.sin(angles).astype(np.float32)
    return w


class _Graph:
    """Accumulates nodes and initializers with unique names."""

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits = [numpy_helper.from_array(v, name=k) for k, v in weights.items()]
        self._count = 0

    def const(self, value: np.ndarray, name: str | None = None) -> str:
        name = name or self._name("const")
        self.inits.append(numpy_helper.from_array(value, name=name))
        return name

    def _name(self, op: str) -> str:
        self._count += 1
        return f"{op.lower()}_{self._count}"

    def op(self, op: str, *inputs: str, outputs: int = 1, domain: str = "", **attrs: object) -> str:
        names = [self._name(op) for _ in range(outputs)]
        self.nodes.append(helper.make_node(op, list(inputs), names, domain=domain, **attrs))
        return names[0] if outputs == 1 else ",".join(names)

    def node(
        self, op: str, inputs: list[str], outputs: list[str], domain: str = "", **attrs: object
    ) -> None:
        self.nodes.append(helper.make_node(op, inputs, outputs, domain=domain, **attrs))


def _rms_norm(g: _Graph, x: str, weight: str) -> str:
    square = g.op("Mul", x, x)
    mean = g.op("ReduceMean", square, g.const(np.array([-1], dtype=np.int64)), keepdims=1)
    eps = g.const(np.array(1e-5, dtype=np.float32))
    inv = g.op("Reciprocal", g.op("Sqrt", g.op("Add", mean, eps)))
    return g.op("Mul", g.op("Mul", x, inv), weight)


def _mlp(g: _Graph, x: str, i: int) -> str:
    gate = g.op("MatMul", x, f"l{i}.gate")
    up = g.op("MatMul", x, f"l{i}.up")
    act = g.op("Mul", gate, g.op("Sigmoid", gate))
    return g.op("MatMul", g.op("Mul", act, up), f"l{i}.down")


def _rotate(g: _Graph, x: str, cos: str, sin: str, half: int) -> str:
    """Non-interleaved rotary embedding (rotate_half), x [B, N, S, D], cos/sin [B, 1, S, D/2]."""
    split = g.const(np.array([half, half], dtype=np.int64))
    x1, x2 = g.op("Split", x, split, outputs=2, axis=-1).split(",")
    first = g.op("Sub", g.op("Mul", x1, cos), g.op("Mul", x2, sin))
    second = g.op("Add", g.op("Mul", x2, cos), g.op("Mul", x1, sin))
    return g.op("Concat", first, second, axis=-1)


def _concat_attention(g: _Graph, config: TinyConfig, xn: str, i: int, ctx: dict[str, str]) -> str:
    n, kvn, hd = config.heads, config.kv_heads, config.head_size

    def heads(x: str, count: int) -> str:
        shape = g.const(np.array([0, 0, count, hd], dtype=np.int64))
        return g.op("Transpose", g.op("Reshape", x, shape), perm=[0, 2, 1, 3])

    q = _rotate(g, heads(g.op("MatMul", xn, f"l{i}.q"), n), ctx["cos"], ctx["sin"], hd // 2)
    k = _rotate(g, heads(g.op("MatMul", xn, f"l{i}.k"), kvn), ctx["cos"], ctx["sin"], hd // 2)
    v = heads(g.op("MatMul", xn, f"l{i}.v"), kvn)
    present_k, present_v = f"present.{i}.key", f"present.{i}.value"
    g.node("Concat", [f"past_key_values.{i}.key", k], [present_k], axis=2)
    g.node("Concat", [f"past_key_values.{i}.value", v], [present_v], axis=2)

    def repeat(x: str) -> str:
        # [B, kvn, T, D] -> [B, kvn, groups, T, D] -> [B, n, T, D]: query head h reads kv head h // groups.
        expanded = g.op("Expand", g.op("Unsqueeze", x, ctx["axis2"]), ctx["repeat_shape"])
        return g.op("Reshape", expanded, g.const(np.array([0, n, -1, hd], dtype=np.int64)))

    keys, values = repeat(present_k), repeat(present_v)
    scores = g.op("MatMul", q, g.op("Transpose", keys, perm=[0, 1, 3, 2]))
    scores = g.op("Add", g.op("Mul", scores, ctx["scale"]), ctx["bias"])
    attn = g.op("MatMul", g.op("Softmax", scores, axis=-1), values)
    merged = g.op(
        "Reshape",
        g.op("Transpose", attn, perm=[0, 2, 1, 3]),
        g.const(np.array([0, 0, n * hd], dtype=np.int64)),
    )
    return g.op("MatMul", merged, f"l{i}.o")


def _concat_context(g: _Graph, config: TinyConfig) -> dict[str, str]:
    """Rotary tables, the additive mask bias and shapes shared by every concat-KV layer."""
    half_axis = g.const(np.array([1], dtype=np.int64))
    cos = g.op("Unsqueeze", g.op("Gather", "cos_cache", "position_ids", axis=0), half_axis)
    sin = g.op("Unsqueeze", g.op("Gather", "sin_cache", "position_ids", axis=0), half_axis)
    ids_shape = g.op("Shape", "input_ids")
    mask_shape = g.op("Shape", "attention_mask")
    seq = g.op("Gather", ids_shape, g.const(np.array(1, dtype=np.int64)), axis=0)
    total = g.op("Gather", mask_shape, g.const(np.array(1, dtype=np.int64)), axis=0)
    past = g.op("Sub", total, seq)
    zero, one = g.const(np.array(0, dtype=np.int64)), g.const(np.array(1, dtype=np.int64))
    cols = g.op("Range", zero, total, one)  # key positions j
    rows = g.op("Add", g.op("Range", zero, seq, one), past)  # query positions past + i
    causal = g.op(
        "LessOrEqual",
        g.op("Unsqueeze", cols, g.const(np.array([0], dtype=np.int64))),
        g.op("Unsqueeze", rows, g.const(np.array([1], dtype=np.int64))),
    )
    padding = g.op("Equal", "attention_mask", one)
    padding = g.op("Unsqueeze", padding, g.const(np.array([1, 2], dtype=np.int64)))
    allowed = g.op("And", causal, padding)  # [B, 1, S, T]
    bias = g.op(
        "Where",
        allowed,
        g.const(np.array(0.0, dtype=np.float32)),
        g.const(np.array(-1e9, dtype=np.float32)),
    )
    repeat_shape = g.const(np.array([1, 1, config.heads // config.kv_heads, 1, 1], dtype=np.int64))
    return {
        "cos": cos,
        "sin": sin,
        "bias": bias,
        "repeat_shape": repeat_shape,
        "axis2": g.const(np.array([2], dtype=np.int64)),
        "scale": g.const(np.array(1.0 / np.sqrt(config.head_size), dtype=np.float32)),
    }


def build_model(config: TinyConfig, layout: KVLayout) -> onnx.ModelProto:
    """The decoder in one KV contract: `shared` (builder, GQA) or `concat` (optimum)."""
    g = _Graph(_weights(config))
    kvn, hd = config.kv_heads, config.head_size
    inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
        helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "total"]),
    ]
    if layout == "concat":
        inputs.append(
            helper.make_tensor_value_info("position_ids", TensorProto.INT64, ["batch", "seq"])
        )
    outputs = [
        helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "seq", config.vocab])
    ]
    for i in range(config.layers):
        for kind in ("key", "value"):
            inputs.append(
                helper.make_tensor_value_info(
                    f"past_key_values.{i}.{kind}", TensorProto.FLOAT, ["batch", kvn, "past", hd]
                )
            )
            outputs.append(
                helper.make_tensor_value_info(
                    f"present.{i}.{kind}", TensorProto.FLOAT, ["batch", kvn, "present", hd]
                )
            )

    x = g.op("Gather", "embed", "input_ids", axis=0)
    if layout == "shared":
        # As the builder does: GQA takes per-row lengths - 1 and the mask width as the total.
        one = g.const(np.array(1, dtype=np.int64))
        lengths = g.op(
            "ReduceSum", "attention_mask", g.const(np.array([1], dtype=np.int64)), keepdims=0
        )
        seqlens_k = g.op("Cast", g.op("Sub", lengths, one), to=TensorProto.INT32)
        width = g.op("Gather", g.op("Shape", "attention_mask"), one, axis=0)
        total = g.op("Cast", width, to=TensorProto.INT32)
    else:
        ctx = _concat_context(g, config)
    for i in range(config.layers):
        xn = _rms_norm(g, x, f"l{i}.norm1")
        if layout == "shared":
            attn = g.op(
                "GroupQueryAttention",
                g.op("MatMul", xn, f"l{i}.q"),
                g.op("MatMul", xn, f"l{i}.k"),
                g.op("MatMul", xn, f"l{i}.v"),
                f"past_key_values.{i}.key",
                f"past_key_values.{i}.value",
                seqlens_k,
                total,
                "cos_cache",
                "sin_cache",
                outputs=3,
                domain="com.microsoft",
                num_heads=config.heads,
                kv_num_heads=kvn,
                do_rotary=1,
            ).split(",")
            # Name the present outputs by renaming the node's outputs in place.
            node = g.nodes[-1]
            node.output[1], node.output[2] = f"present.{i}.key", f"present.{i}.value"
            attn_out = g.op("MatMul", attn[0], f"l{i}.o")
        else:
            attn_out = _concat_attention(g, config, xn, i, ctx)
        x = g.op("Add", x, attn_out)
        x = g.op("Add", x, _mlp(g, _rms_norm(g, x, f"l{i}.norm2"), i))
    g.node("MatMul", [_rms_norm(g, x, "final_norm"), "lm_head"], ["logits"])
    graph = helper.make_graph(g.nodes, f"tiny_llama_{layout}", inputs, outputs, g.inits)
    # Opset 21, as the builder's graphs (22): the prefill graph's blocked QuantizeLinear.
    opsets = [helper.make_opsetid("", 21), helper.make_opsetid("com.microsoft", 1)]
    return helper.make_model(graph, opset_imports=opsets, ir_version=10)


def write_model_dir(directory: Path, layout: KVLayout, config: TinyConfig = TinyConfig()) -> Path:
    """Write model.onnx, tokenizer.json, chat_template.jinja and manifest.json into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(config.vocab, config.added_tokens)
    assert tokenizer.get_vocab_size() == config.vocab, tokenizer.get_vocab_size()
    assert tokenizer.token_to_id("<|im_end|>") == EOS_ID
    tokenizer.save(str(directory / "tokenizer.json"))
    (directory / "chat_template.jinja").write_text(CHAT_TEMPLATE, encoding="utf-8")
    onnx.save(build_model(config, layout), str(directory / "model.onnx"))
    manifest = ModelManifest(
        name=f"tiny-{layout}",
        model_id=f"tiny-llama-{layout}",
        exporter="fixture",
        precision="fp32",
        kv=KVContract(
            layout=layout,
            position_ids=layout == "concat",
            num_layers=config.layers,
            num_kv_heads=config.kv_heads,
            head_size=config.head_size,
            max_context=config.max_context,
        ),
        eos_token_ids=(EOS_ID,),
        pad_token_id=EOS_ID,
        generation_config_file=None,
    )
    manifest.write(directory)
    return directory


class ReferenceModel:
    """The same model run the plain way: `session.run` on numpy arrays, no IOBinding."""

    def __init__(self, directory: Path) -> None:
        self.manifest = ModelManifest.read(directory)
        self.session = ort.InferenceSession(
            str(directory / "model.onnx"), providers=["CPUExecutionProvider"]
        )

    def _feeds(self, ids: list[int], past: list[np.ndarray] | None) -> dict[str, np.ndarray]:
        kv = self.manifest.kv
        start = 0 if past is None else past[0].shape[2]
        input_ids = np.array([ids], dtype=np.int64)
        feeds = {
            "input_ids": input_ids,
            "attention_mask": np.ones((1, start + len(ids)), dtype=np.int64),
        }
        if kv.position_ids:
            feeds["position_ids"] = np.arange(start, start + len(ids), dtype=np.int64)[None]
        empty = np.zeros((1, kv.num_kv_heads, 0, kv.head_size), dtype=np.float32)
        for i in range(kv.num_layers):
            for j, kind in enumerate(("key", "value")):
                feeds[f"past_key_values.{i}.{kind}"] = empty if past is None else past[2 * i + j]
        return feeds

    def logits(self, ids: list[int]) -> np.ndarray:
        """Last-position logits of `ids` recomputed from scratch (no cache)."""
        return self.session.run(["logits"], self._feeds(ids, None))[0][0, -1]

    def greedy(self, ids: list[int], count: int) -> list[int]:
        """`count` greedy tokens, each recomputed over the whole sequence."""
        ids, out = list(ids), []
        for _ in range(count):
            token = int(np.argmax(self.logits(ids)))
            ids.append(token)
            out.append(token)
        return out

    def cached_logits(self, prompt: list[int], continuation: list[int]) -> list[np.ndarray]:
        """Logits after the prompt, then after each continuation token, KV fed back as numpy."""
        outputs = self.session.run(None, self._feeds(prompt, None))
        steps = [outputs[0][0, -1]]
        for token in continuation:
            outputs = self.session.run(None, self._feeds([token], list(outputs[1:])))
            steps.append(outputs[0][0, -1])
        return steps
