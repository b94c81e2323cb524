"""Written-out LayerNorm and Gelu fused into their ops; a residual sum before LayerNormalization.

Each model is built with onnx.helper, optimized, and compared with the original on ORT.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import pytest
from helpers import FLOAT, assert_same_outputs, const, make_model, op_counts, optimized_proto, vi
from onnx import helper

import onnxslim

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

    def layernorm(
        self,
        x,
        *,
        square="pow",
        divide="div",
        gamma=True,
        beta=True,
        swap=False,
        eps=1e-5,
        axes=(-1,),
        eps_input=None,
    ):
        """The written-out form; `swap` puts every commutative op's operands the other way round."""

        def add(a, b):
            return self.op("Add", *((b, a) if swap else (a, b)))

        def mul(a, b):
            return self.op("Mul", *((b, a) if swap else (a, b)))

        d = self.op("Sub", x, self.reduce_mean(x, axes))
        sq = self.op("Pow", d, self.const(2.0)) if square == "pow" else self.op("Mul", d, d)
        std = self.op("Sqrt", add(self.reduce_mean(sq, axes), eps_input or self.const(eps)))
        if divide == "scaled":  # torch: g * (x - u) / sqrt(v + eps), gamma before the division
            y = self.op("Div", mul(self.const(rand(H) + 1), d), std)
        elif divide == "div":
            y = self.op("Div", d, std)
        else:  # torch.rsqrt exports as 1 / Sqrt
            one = self.op("Div", self.const(1.0), std) if divide == "one_div" else None
            y = mul(d, one or self.op("Reciprocal", std))
        if gamma and divide != "scaled":
            y = mul(y, self.const(rand(H) + 1))
        if beta:
            y = add(y, self.const(rand(H)))
        return y

    def model(self, out, shape=("B", "S", H), extra_inputs=(), check=True):
        elem = helper.np_dtype_to_tensor_dtype(np.dtype(self.dtype))
        self.nodes[-1].output[0] = "y"
        for node in self.nodes:
            node.input[:] = ["y" if i == out else i for i in node.input]
        inputs = [vi("x", elem, list(shape)), *extra_inputs]
        return make_model(
            self.nodes,
            inputs,
            [vi("y", elem, list(shape))],
            self.inits,
            opset=self.opset,
            check=check,
        )


def written_layernorm(opset=17, dtype=np.float32, **options):
    g = Graph(opset, dtype)
    return g.model(g.layernorm("x", **options))


# --- LayerNorm ----------------------------------------------------------------------------------


@pytest.mark.parametrize("opset", [17, 18])
@pytest.mark.parametrize("square", ["pow", "mul"])
@pytest.mark.parametrize("divide", ["div", "reciprocal", "one_div", "scaled"])
@pytest.mark.parametrize("swap", [False, True])
def test_layernorm_fused(opset, square, divide, swap):
    counts = slim(written_layernorm(opset, square=square, divide=divide, swap=swap))
    assert counts == {"LayerNormalization": 1}


@pytest.mark.parametrize("gamma, beta", [(True, False), (False, True), (False, False)])
def test_layernorm_without_gamma_or_beta(gamma, beta):
    model = written_layernorm(gamma=gamma, beta=beta)
    optimized = optimized_proto(model)
    assert_same_outputs(model, optimized, seeds=(0, 1))
    assert op_counts(optimized) == {"LayerNormalization": 1}
    (node,) = optimized.graph.node
    assert len(node.input) == (3 if beta else 2)
    attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    assert attributes["epsilon"] == pytest.approx(1e-5)


@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_layernorm_other_float_types(dtype):
    model = written_layernorm(dtype=dtype)
    optimized = optimized_proto(model)
    assert op_counts(optimized) == {"LayerNormalization": 1}
    tol = 1e-2 if dtype == np.float16 else 1e-9
    assert_same_outputs(model, optimized, rtol=tol, atol=tol, seeds=(0, 1))


def test_layernorm_positive_last_axis():
    assert slim(written_layernorm(axes=(2,))) == {"LayerNormalization": 1}


def moments_layernorm(g, x, clamp=0.0, swap=False):
    """Flax's fast variance: (x - mean) / Sqrt(Max(mean(x * x) - mean * mean, clamp) + eps)."""
    mean = g.reduce_mean(x)
    variance = g.op("Sub", g.reduce_mean(g.op("Mul", x, x)), g.op("Mul", mean, mean))
    if clamp is not None:
        c = g.const(clamp)
        variance = g.op("Max", *((c, variance) if swap else (variance, c)))
    eps = g.const(1e-6)
    std = g.op("Sqrt", g.op("Add", *((eps, variance) if swap else (variance, eps))))
    return g.op("Div", g.op("Sub", x, mean), std)


@pytest.mark.parametrize("clamp", [None, 0.0])
@pytest.mark.parametrize("swap", [False, True])
def test_moments_layernorm_fused(clamp, swap):
    g = Graph(17)
    y = g.op("Mul", moments_layernorm(g, "x", clamp, swap), g.const(rand(H) + 1))
    assert slim(g.model(y)) == {"LayerNormalization": 1}


def test_moments_layernorm_closer_where_the_moments_lose_digits():
    """A mean of 300 against a spread of 1: x * x loses the digits the variance is made of."""
    g = Graph(17)
    model = g.model(moments_layernorm(g, "x"))
    x = (300 + rand(2, 4, H)).astype(np.float32)
    d = x.astype(np.float64) - x.mean(-1, keepdims=True, dtype=np.float64)
    exact = d / np.sqrt((d * d).mean(-1, keepdims=True) + 1e-6)

    def error(proto):
        (y,) = ort.InferenceSession(proto.SerializeToString()).run(None, {"x": x})
        return np.abs(y - exact).max()

    optimized = optimized_proto(model)
    assert op_counts(optimized) == {"LayerNormalization": 1}
    assert error(optimized) < 1e-4 < error(model)


def test_moments_layernorm_clamped_elsewhere_stays():
    g = Graph(17)
    counts = slim(g.model(moments_layernorm(g, "x", clamp=0.5)))
    assert "LayerNormalization" not in counts and counts["ReduceMean"] == 2


@pytest.mark.parametrize(
    "case", ["wrong axis", "two axes", "eps input", "opset 16", "dynamic hidden"]
)
def test_layernorm_not_fused(case):
    g = Graph(16 if case == "opset 16" else 17)
    axes = {"wrong axis": (1,), "two axes": (1, 2)}.get(case, (-1,))
    extra = [vi("eps", FLOAT, [])] if case == "eps input" else []
    out = g.layernorm("x", axes=axes, eps_input="eps" if extra else None)
    shape = ("B", "S", "H") if case == "dynamic hidden" else ("B", "S", H)
    if case == "dynamic hidden":
        g.inits = [i for i in g.inits if i.dims != [H]]  # gamma/beta [H] would not broadcast
        for node in g.nodes[-2:]:
            node.op_type = "Identity"
            del node.input[1:]
    model = g.model(out, shape, extra)
    counts = slim(model)
    assert "LayerNormalization" not in counts and counts["ReduceMean"] == 2


@pytest.mark.parametrize("case", ["2 / Sqrt", "scale along another axis"])
def test_layernorm_forms_that_are_not_one_stay_written_out(case):
    """d * (2 / Sqrt(...)) is twice a LayerNorm; (g * d) / Sqrt(...) with g [4, 1] scales rows."""
    g = Graph(17)
    d = g.op("Sub", "x", g.reduce_mean("x"))
    std = g.op("Sqrt", g.op("Add", g.reduce_mean(g.op("Mul", d, d)), g.const(1e-5)))
    if case == "2 / Sqrt":
        y = g.op("Mul", d, g.op("Div", g.const(2.0), std))
    else:
        y = g.op("Div", g.op("Mul", g.const(rand(4, 1)), d), std)
    counts = slim(g.model(y, ("B", 4, H)))
    assert "LayerNormalization" not in counts and counts["ReduceMean"] == 2, counts


def test_layernorm_folds_only_per_channel_affine():
    """A gamma varying along another axis is not a LayerNormalization scale: it stays a Mul."""
    g = Graph(17)
    y = g.op("Mul", g.layernorm("x", gamma=False, beta=False), g.const(rand(4, 1)))
    counts = slim(g.model(y, ("B", 4, H)))
    assert counts == {"LayerNormalization": 1, "Mul": 1}


def encoder_chain(layers=12, opset=17):
    """x -> (MatMul W, Add bias, written-out LayerNorm with gamma, beta) x layers: 11 nodes each."""
    g, t = Graph(opset), "x"
    for _ in range(layers):
        t = g.op("Add", g.op("MatMul", t, g.const(rand(H, H) / 4)), g.const(rand(H)))
        t = g.layernorm(t)
    return g.model(t)


def test_encoder_chain_node_count():
    model = encoder_chain()
    assert len(model.graph.node) == 12 * 11
    counts = slim(model)
    assert counts == {"MatMul": 12, "Add": 12, "LayerNormalization": 12}


# --- Gelu ---------------------------------------------------------------------------------------


def gelu_graph(
    kind="erf", grouping="(x*h)*c", *, swap=False, divide=True, power=True, opset=20, constants=None
):
    g = Graph(opset)
    c = {
        "half": 0.5,
        "one": 1.0,
        "sqrt2": math.sqrt(2),
        "k": math.sqrt(2 / math.pi),
        "cubic": 0.044715,
        **(constants or {}),
    }

    def bin_(op_type, a, b):
        return g.op(op_type, *((b, a) if swap else (a, b)))

    x = "x"
    if kind == "erf":
        if divide:
            scaled = g.op("Div", x, g.const(c["sqrt2"]))
        else:
            scaled = bin_("Mul", x, g.const(1 / c["sqrt2"]))
        cdf = bin_("Add", g.op("Erf", scaled), g.const(c["one"]))
    else:
        cube = g.op("Pow", x, g.const(3.0)) if power else bin_("Mul", x, g.op("Mul", x, x))
        inner = bin_("Mul", bin_("Add", x, bin_("Mul", cube, g.const(c["cubic"]))), g.const(c["k"]))
        cdf = bin_("Add", g.op("Tanh", inner), g.const(c["one"]))
    half = g.const(c["half"])
    if grouping == "(x*h)*c":
        y = bin_("Mul", bin_("Mul", x, half), cdf)
    elif grouping == "x*(h*c)":
        y = bin_("Mul", x, bin_("Mul", half, cdf))
    else:
        y = bin_("Mul", bin_("Mul", x, cdf), half)
    return g.model(y, ("B", H))


@pytest.mark.parametrize("grouping", ["(x*h)*c", "x*(h*c)", "(x*c)*h"])
@pytest.mark.parametrize("swap", [False, True])
@pytest.mark.parametrize("divide", [True, False])
def test_erf_gelu_fused(grouping, swap, divide):
    model = gelu_graph("erf", grouping, swap=swap, divide=divide)
    optimized = optimized_proto(model)
    assert_same_outputs(model, optimized, seeds=(0, 1))
    assert op_counts(optimized) == {"Gelu": 1}
    assert not optimized.graph.node[0].attribute  # approximate="none", the default


@pytest.mark.parametrize("grouping", ["(x*h)*c", "x*(h*c)", "(x*c)*h"])
@pytest.mark.parametrize("swap", [False, True])
@pytest.mark.parametrize("power", [True, False])
def test_tanh_gelu_fused(grouping, swap, power):
    model = gelu_graph("tanh", grouping, swap=swap, power=power)
    optimized = optimized_proto(model)
    assert_same_outputs(model, optimized, seeds=(0, 1))
    assert op_counts(optimized) == {"Gelu": 1}
    (attr,) = optimized.graph.node[0].attribute
    assert (attr.name, attr.s) == ("approximate", b"tanh")


@pytest.mark.parametrize(
    "kind, options",
    [
        ("erf", {"opset": 19}),
        ("tanh", {"opset": 19}),
        ("erf", {"constants": {"half": 0.4}}),
        ("erf", {"constants": {"sqrt2": 1.4}}),
        ("tanh", {"constants": {"cubic": 0.05}}),
        ("tanh", {"constants": {"k": 0.8}}),
    ],
)
def test_gelu_not_fused(kind, options):
    counts = slim(gelu_graph(kind, **options))
    assert "Gelu" not in counts and counts["Erf" if kind == "erf" else "Tanh"] == 1


# --- Residual sum before LayerNormalization: Sum, which ORT does not fuse into SkipLayerNorm ----


def residual_block(reshape=True, opset=17):
    """MatMul + bias, a residual Add of x, LayerNormalization. With `reshape` the branch goes
    through a Reshape to a computed shape (Shape/Concat) that ORT cannot follow but the optimizer
    folds away. Below opset 17 the LayerNormalization is ONNX Runtime's own (onnx's checker
    refuses it), as its transformer optimizer writes it."""
    g = Graph(opset)
    h = g.op("Add", g.op("MatMul", "x", g.const(rand(H, H))), g.const(rand(H)))
    if reshape:
        shape = g.op("Concat", g.op("Shape", "x", end=2), g.const([H], np.int64), axis=0)
        h = g.op("Reshape", h, shape)
    y = g.op("LayerNormalization", g.op("Add", h, "x"), g.const(rand(H)), g.const(rand(H)), axis=-1)
    return g.model(y, check=opset >= 17)


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


@pytest.mark.parametrize(("reshape", "opset"), [(True, 17), (False, 17), (False, 14)])
def test_residual_sum_before_layernorm(reshape, opset, tmp_path):
    """The property that keeps ORT CPU from SkipLayerNormalization: no Add of two tensors feeds a
    LayerNormalization (the bias Add stays an Add). At opset 14 too, on ORT's own
    LayerNormalization: an ORT-optimized RoBERTa ran 1.06-1.11x slower without it."""
    model = residual_block(reshape, opset)
    optimized = optimized_proto(model) if opset >= 17 else ir.to_proto(onnxslim.optimize(model))
    assert_same_outputs(model, optimized, seeds=(0, 1))
    assert normalized_sums(optimized) == ["Sum"]
    assert op_counts(optimized) == {"MatMul": 1, "Add": 1, "Sum": 1, "LayerNormalization": 1}
    assert "SkipLayerNormalization" not in ort_op_types(optimized, tmp_path)
    # ORT follows the shapes of the original only without the computed Reshape
    assert ("SkipLayerNormalization" in ort_op_types(model, tmp_path)) == (not reshape)


def test_residual_sum_after_fused_layernorm(tmp_path):
    """A written-out LayerNorm of a residual sum: fused, and the sum before it is a Sum."""
    g, t = Graph(17), "x"
    for _ in range(3):
        h = g.op("Add", g.op("MatMul", t, g.const(rand(H, H) / 4)), g.const(rand(H)))
        t = g.layernorm(g.op("Add", h, t))
    model = g.model(t)
    optimized = optimized_proto(model)
    assert_same_outputs(model, optimized, seeds=(0, 1))
    assert normalized_sums(optimized) == ["Sum"] * 3
    assert "SkipLayerNormalization" not in ort_op_types(optimized, tmp_path)


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


def test_a_scale_after_layernorm_in_a_function_whose_values_have_no_type():
    """A function's values have no dtype until it is called: folding the scale read it and
    crashed (exit 3; found probing functions whose attributes the caller gives)."""
    opsets = [helper.make_opsetid("", 17)]
    body = [
        helper.make_node("LayerNormalization", ["a", "s"], ["n"], axis=-1),
        helper.make_node("Mul", ["n", "g"], ["b"]),
    ]
    constants = [
        helper.make_node("Constant", [], [name], value=const(name, rand(H) + 1))
        for name in ("s", "g")
    ]
    function = helper.make_function("local", "Norm", ["a"], ["b"], constants + body, opsets)
    model = make_model(
        [helper.make_node("Norm", ["x"], ["y"], domain="local")],
        [vi("x", FLOAT, ["N", H])],
        [vi("y", FLOAT, ["N", H])],
        opsets={"local": 1},
        functions=[function],
    )
    optimized = optimized_proto(model)
    assert_same_outputs(model, optimized, seeds=(0, 1))
