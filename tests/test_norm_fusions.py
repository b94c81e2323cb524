"""Normalization-related rewrites: the residual sum before a LayerNormalization.

Each model is built with onnx.helper, optimized, and compared with the original on ORT.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from helpers import assert_same_outputs, const, make_model, op_counts, optimized_proto, vi
from onnx import helper

RNG = np.random.default_rng(0)
H = 16


def rand(*shape, dtype=np.float32):
    return RNG.standard_normal(shape).astype(dtype)


def slim(model, **options):
    """Optimize, assert ORT outputs match the original on two random inputs; the op counts."""
    optimized = optimized_proto(model, **options)
    assert_same_outputs(model, optimized, seeds=(0, 1))
    return op_counts(optimized)


class Graph:
    """Nodes and initializers of a model under construction; `op` returns the output's name."""

    def __init__(self, opset: int, dtype=np.float32):
        self.opset, self.dtype = opset, dtype
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []

    def const(self, value, dtype=None) -> str:
        name = f"c{len(self.inits)}"
        self.inits.append(const(name, np.asarray(value, dtype=dtype or self.dtype)))
        return name

    def op(self, op_type, *inputs, **attrs) -> str:
        name = f"t{len(self.nodes)}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [name], **attrs))
        return name

    def reduce_mean(self, x, axes=(-1,)):
        if self.opset >= 18:
            return self.op("ReduceMean", x, self.const(list(axes), np.int64))
        return self.op("ReduceMean", x, axes=list(axes))

    def layernorm(self, x, *, square="pow", divide="div", gamma=True, beta=True, swap=False,
                  eps=1e-5, axes=(-1,), eps_input=None):
        """The written-out form; `swap` puts every commutative op's operands the other way round."""

        def add(a, b):
            return self.op("Add", *((b, a) if swap else (a, b)))

        def mul(a, b):
            return self.op("Mul", *((b, a) if swap else (a, b)))

        d = self.op("Sub", x, self.reduce_mean(x, axes))
        sq = self.op("Pow", d, self.const(2.0)) if square == "pow" else self.op("Mul", d, d)
        std = self.op("Sqrt", add(self.reduce_mean(sq, axes), eps_input or self.const(eps)))
        y = self.op("Div", d, std) if divide == "div" else mul(d, self.op("Reciprocal", std))
        if gamma:
            y = mul(y, self.const(rand(H) + 1))
        if beta:
            y = add(y, self.const(rand(H)))
        return y

    def model(self, out, shape=("B", "S", H), extra_inputs=()):
        elem = helper.np_dtype_to_tensor_dtype(np.dtype(self.dtype))
        self.nodes[-1].output[0] = "y"
        for node in self.nodes:
            node.input[:] = ["y" if i == out else i for i in node.input]
        inputs = [vi("x", elem, list(shape)), *extra_inputs]
        return make_model(self.nodes, inputs, [vi("y", elem, list(shape))], self.inits,
                          opset=self.opset)


# --- Residual sum before LayerNormalization: Sum, which ORT does not fuse into SkipLayerNorm ----

def residual_block(reshape=True):
    """MatMul + bias, a residual Add of x, LayerNormalization. With `reshape` the branch goes
    through a Reshape to a computed shape (Shape/Concat) that ORT cannot follow but the optimizer
    folds away."""
    g = Graph(17)
    h = g.op("Add", g.op("MatMul", "x", g.const(rand(H, H))), g.const(rand(H)))
    if reshape:
        shape = g.op("Concat", g.op("Shape", "x", end=2), g.const([H], np.int64), axis=0)
        h = g.op("Reshape", h, shape)
    y = g.op("LayerNormalization", g.op("Add", h, "x"), g.const(rand(H)), g.const(rand(H)), axis=-1)
    return g.model(y)


def ort_op_types(model, tmp_path) -> set[str]:
    """Op types of the graph ORT runs after its own optimizations (level all)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = str(tmp_path / "ort.onnx")
    options.log_severity_level = 3
    ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return {n.op_type for n in onnx.load(str(tmp_path / "ort.onnx")).graph.node}


def normalized_sums(model) -> list[str]:
    """Op types producing the input of each LayerNormalization."""
    producer = {o: n.op_type for n in model.graph.node for o in n.output}
    return [producer.get(n.input[0]) for n in model.graph.node if n.op_type == "LayerNormalization"]


@pytest.mark.parametrize("reshape", [True, False])
def test_residual_sum_before_layernorm(reshape, tmp_path):
    """The property that keeps ORT CPU from SkipLayerNormalization: no Add of two tensors feeds a
    LayerNormalization (the bias Add stays an Add)."""
    model = residual_block(reshape)
    optimized = optimized_proto(model)
    assert_same_outputs(model, optimized, seeds=(0, 1))
    assert normalized_sums(optimized) == ["Sum"]
    assert op_counts(optimized) == {"MatMul": 1, "Add": 1, "Sum": 1, "LayerNormalization": 1}
    assert "SkipLayerNormalization" not in ort_op_types(optimized, tmp_path)
    # ORT follows the shapes of the original only without the computed Reshape
    assert ("SkipLayerNormalization" in ort_op_types(model, tmp_path)) == (not reshape)


@pytest.mark.parametrize("case", ["bias", "two uses", "rank 2"])
def test_residual_sum_left_alone(case):
    g = Graph(17)
    shape = ("B", H) if case == "rank 2" else ("B", "S", H)
    other = g.const(rand(H)) if case == "bias" else g.op("Relu", "x")
    total = g.op("Add", "x", other)
    y = g.op("LayerNormalization", total, g.const(rand(H) + 1), axis=-1)
    if case == "two uses":
        y = g.op("Mul", y, total)
    counts = op_counts(optimized_proto(g.model(y, shape)))
    assert "Sum" not in counts and counts["Add"] == 1
