"""A BERT-shaped encoder built with onnx.helper, its weights streamed to external files (never
whole in memory).

`build_encoder(folder, ...)`: word/position embeddings, then `layers` encoder layers exported the
way torch does it (MatMul + Add, Shape/Gather/Concat arithmetic for the head reshapes, Softmax
attention, Erf GELU, LayerNormalization, inference Dropout), one external file per tensor in a
`weights/` subfolder (as torch writes them) or one shared file with offsets (`layout="single"`).
Used by `benchmarks/large.py` (~2.9 GB by default) and by the tests (a few MB).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper


class _Weights:
    """Streams random float32 tensors to external files; returns TensorProtos referencing them."""

    def __init__(self, folder: Path, layout: str, seed: int) -> None:
        self.folder, self.layout = folder, layout
        self.rng = np.random.default_rng(seed)
        self.total = 0
        self.shared_offset = 0
        (folder / "weights").mkdir(parents=True, exist_ok=True)

    def __call__(
        self, name: str, shape: tuple[int, ...], scale: float = 0.02, fill: float | None = None
    ):
        count = math.prod(shape)
        if self.layout == "single":
            location, offset = "weights/model.bin", self.shared_offset
        else:
            location, offset = f"weights/{name}", 0
        with open(self.folder / location, "ab" if self.layout == "single" else "wb") as file:
            done = 0
            while done < count:  # in chunks: never the whole tensor's random source at once
                n = min(count - done, 8 * 1024 * 1024)
                chunk = (
                    np.full(n, fill, np.float32)
                    if fill is not None
                    else (self.rng.standard_normal(n, dtype=np.float32) * scale)
                )
                file.write(chunk.tobytes())
                done += n
        tensor = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=list(shape))
        tensor.data_location = TensorProto.EXTERNAL
        for key, value in (
            ("location", location),
            ("offset", str(offset)),
            ("length", str(count * 4)),
        ):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
        self.shared_offset += count * 4
        self.total += count * 4
        return tensor


def build_encoder(
    folder: str | os.PathLike,
    *,
    hidden: int = 1536,
    layers: int = 24,
    heads: int = 16,
    ffn: int | None = None,
    vocab: int = 30522,
    max_len: int = 512,
    layout: str = "per-tensor",
    seed: int = 0,
    opset: int = 17,
) -> tuple[Path, int]:
    """Write `folder/model.onnx` and its weights; returns (model path, weight bytes)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ffn = ffn or 4 * hidden
    head_dim = hidden // heads
    weights = _Weights(folder, layout, seed)
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    small: list[onnx.TensorProto] = []

    def node(op, inputs, name, **attrs):
        nodes.append(helper.make_node(op, inputs, [name], name=f"n_{name}", **attrs))
        return name

    def constant(name, value):
        small.append(onnx.numpy_helper.from_array(np.asarray(value), name))
        return name

    def weight(name, shape, **kw):
        inits.append(weights(name, shape, **kw))
        return name

    def layer_norm(x, prefix):
        gamma = weight(f"{prefix}.weight", (hidden,), fill=1.0)
        beta = weight(f"{prefix}.bias", (hidden,), fill=0.0)
        return node("LayerNormalization", [x, gamma, beta], f"{prefix}.out", axis=-1, epsilon=1e-12)

    def linear(x, prefix, n_in, n_out):
        w = weight(f"{prefix}.weight", (n_in, n_out))
        b = weight(f"{prefix}.bias", (n_out,), fill=0.0)
        return node("Add", [node("MatMul", [x, w], f"{prefix}.mm"), b], f"{prefix}.out")

    for name, value in (
        ("c0", np.array(0)),
        ("c1", np.array(1)),
        ("ax0", np.array([0])),
        ("heads", np.array([heads])),
        ("head_dim", np.array([head_dim])),
        ("hidden_dim", np.array([hidden])),
        ("sqrt_d", np.array(math.sqrt(head_dim), np.float32)),
        ("half", np.array(0.5, np.float32)),
        ("one", np.array(1.0, np.float32)),
        ("sqrt2", np.array(math.sqrt(2.0), np.float32)),
        ("start", np.array(0)),
    ):
        constant(name, value)

    # embeddings: word + position (positions from Range over the dynamic sequence length)
    ids_shape = node("Shape", ["input_ids"], "ids_shape")
    seq = node("Gather", [ids_shape, "c1"], "seq", axis=0)
    positions = node("Range", ["start", seq, "c1"], "positions")
    words = node("Gather", [weight("embeddings.word", (vocab, hidden)), "input_ids"], "word_emb")
    pos = node("Gather", [weight("embeddings.position", (max_len, hidden)), positions], "pos_emb")
    h = layer_norm(node("Add", [words, pos], "emb_sum"), "embeddings.norm")
    h = node("Dropout", [h], "embeddings.dropout")

    for i in range(layers):
        p = f"layer{i}"
        shape = node("Shape", [h], f"{p}.shape")  # torch re-reads the shape in every layer
        batch = node(
            "Unsqueeze", [node("Gather", [shape, "c0"], f"{p}.b", axis=0), "ax0"], f"{p}.b1"
        )
        length = node(
            "Unsqueeze", [node("Gather", [shape, "c1"], f"{p}.s", axis=0), "ax0"], f"{p}.s1"
        )
        split = node("Concat", [batch, length, "heads", "head_dim"], f"{p}.split_shape", axis=0)
        merged = node("Concat", [batch, length, "hidden_dim"], f"{p}.merge_shape", axis=0)

        def heads_of(x, name, perm, split=split):
            return node(
                "Transpose", [node("Reshape", [x, split], f"{name}.r")], f"{name}.t", perm=perm
            )

        q = heads_of(linear(h, f"{p}.attn.q", hidden, hidden), f"{p}.q", [0, 2, 1, 3])
        k = heads_of(linear(h, f"{p}.attn.k", hidden, hidden), f"{p}.k", [0, 2, 3, 1])
        v = heads_of(linear(h, f"{p}.attn.v", hidden, hidden), f"{p}.v", [0, 2, 1, 3])
        scores = node("Div", [node("MatMul", [q, k], f"{p}.qk"), "sqrt_d"], f"{p}.scores")
        probs = node("Dropout", [node("Softmax", [scores], f"{p}.softmax", axis=-1)], f"{p}.probs")
        context = node(
            "Transpose", [node("MatMul", [probs, v], f"{p}.ctx")], f"{p}.ctx_t", perm=[0, 2, 1, 3]
        )
        context = node("Reshape", [context, merged], f"{p}.ctx_r")
        attn = node("Dropout", [linear(context, f"{p}.attn.out", hidden, hidden)], f"{p}.attn_drop")
        h = layer_norm(node("Add", [attn, h], f"{p}.res1"), f"{p}.norm1")
        up = linear(h, f"{p}.ffn.up", hidden, ffn)
        erf = node("Erf", [node("Div", [up, "sqrt2"], f"{p}.gelu.div")], f"{p}.gelu.erf")
        gelu = node(
            "Mul",
            [
                node("Mul", [up, "half"], f"{p}.gelu.half"),
                node("Add", [erf, "one"], f"{p}.gelu.add"),
            ],
            f"{p}.gelu",
        )
        down = node("Dropout", [linear(gelu, f"{p}.ffn.down", ffn, hidden)], f"{p}.ffn_drop")
        h = layer_norm(node("Add", [down, h], f"{p}.res2"), f"{p}.norm2")
    nodes.append(helper.make_node("Identity", [h], ["last_hidden_state"], name="output"))

    graph = helper.make_graph(
        nodes,
        "encoder",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"])],
        [
            helper.make_tensor_value_info(
                "last_hidden_state", TensorProto.FLOAT, ["batch", "sequence", hidden]
            )
        ],
        small + inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="large.py"
    )
    model.ir_version = 8
    path = folder / "model.onnx"
    onnx.save(model, path)
    return path, weights.total


# ---------------------------------------------------------------- measuring
