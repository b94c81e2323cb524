"""Fusions and chain rules: each case on a tiny graph, outputs compared on ORT before/after."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import (
    FLOAT,
    assert_same_outputs,
    const,
    gelu_then_conv,
    make_model,
    op_counts,
    optimized_proto,
    shape_pieces,
    vi,
)
from onnx import TensorProto, helper, numpy_helper

from onnxslim.runtime import ort_op_counts

RNG = np.random.default_rng(0)


def slim(model, **options):
    """Optimize, assert ORT outputs match the original on two random inputs; return op counts."""
    optimized = optimized_proto(model, **options)
    assert_same_outputs(model, optimized, seeds=(0, 1))
    return op_counts(optimized)


def rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def node(op_type, inputs, output, **attrs):
    return helper.make_node(op_type, inputs, [output], **attrs)


# --- Conv / ConvTranspose + per-channel Mul/Add -------------------------------------------------


def conv_then(
    ops,
    *,
    x_shape=(1, 4, 6, 6),
    weight=None,
    bias=True,
    conv="Conv",
    extra_nodes=(),
    weight_is_input=False,
    outputs=("y",),
    **conv_attrs,
):
    """x -> conv(x, W[, B]) -> ops[0] -> ... -> y, each op a (op_type, constant, constant_first)."""
    weight = (
        weight if weight is not None else rand(8, x_shape[1] // conv_attrs.get("group", 1), 3, 3)
    )
    inits = [] if weight_is_input else [const("W", weight)]
    conv_inputs = ["x", "W"] + (["B"] if bias else [])
    if bias:
        channels = (
            weight.shape[1] * conv_attrs.get("group", 1)
            if conv == "ConvTranspose"
            else weight.shape[0]
        )
        inits.append(const("B", rand(channels)))
    nodes = [node(conv, conv_inputs, "t0", **conv_attrs)]
    for i, (op_type, value, const_first) in enumerate(ops):
        inits.append(const(f"c{i}", value))
        inputs = [f"c{i}", f"t{i}"] if const_first else [f"t{i}", f"c{i}"]
        nodes.append(node(op_type, inputs, f"t{i + 1}"))
    nodes.append(node("Relu", [f"t{len(ops)}"], "y"))
    inputs = [vi("x", FLOAT, list(x_shape))] + (
        [vi("W", FLOAT, list(weight.shape))] if weight_is_input else []
    )
    return make_model(
        [*nodes, *extra_nodes],
        inputs,
        [vi(n, FLOAT, [None] * len(x_shape)) for n in outputs],
        inits,
    )


@pytest.mark.parametrize(
    "ops",
    [
        [("Mul", rand(8, 1, 1), False)],
        [("Add", rand(1, 8, 1, 1), True)],
        [("Mul", rand(8, 1, 1), True), ("Add", rand(8, 1, 1), False)],
        [("Sub", rand(8, 1, 1), False), ("Div", rand(8, 1, 1) + 3, False)],
        [("Mul", np.array(0.5, np.float32), False), ("Add", np.array([0.25], np.float32), False)],
    ],
)
def test_conv_affine_folded(ops):
    counts = slim(conv_then(ops))
    assert counts["Conv"] == 1 and sum(counts.values()) == 2  # Conv, Relu


@pytest.mark.parametrize(
    "attrs", [dict(group=2, dilations=[2, 2]), dict(group=4, auto_pad="SAME_UPPER")]
)
def test_conv_affine_folded_grouped_dilated_no_bias(attrs):
    model = conv_then(
        [("Mul", rand(8, 1, 1), False), ("Add", rand(8, 1, 1), False)], bias=False, **attrs
    )
    assert sum(slim(model).values()) == 2


def test_conv1d_affine_folded():
    model = conv_then([("Mul", rand(8, 1), False)], x_shape=(1, 4, 9), weight=rand(8, 4, 3))
    assert sum(slim(model).values()) == 2


@pytest.mark.parametrize("group", [1, 2])
def test_conv_transpose_affine_folded(group):
    model = conv_then(
        [("Mul", rand(1, 6, 1, 1), False), ("Add", rand(6, 1, 1), False)],
        conv="ConvTranspose",
        weight=rand(4, 6 // group, 3, 3),
        group=group,
        strides=[2, 2],
    )
    counts = slim(model)
    assert counts["ConvTranspose"] == 1 and sum(counts.values()) == 2


@pytest.mark.parametrize(
    "operand",
    [
        rand(8, 4, 4),  # varies over space
        rand(2, 8, 1, 1),  # broadcasts the batch
        rand(1, 1, 8, 1, 1),  # adds a dim
    ],
)
def test_conv_affine_not_per_channel_kept(operand):
    assert slim(conv_then([("Mul", operand, False)]))["Mul"] == 1


def test_conv_affine_shared_conv_output_kept():
    model = conv_then(
        [("Mul", rand(8, 1, 1), False)],
        extra_nodes=[node("Sigmoid", ["t0"], "z")],
        outputs=("y", "z"),
    )
    assert slim(model)["Mul"] == 1


def test_conv_affine_graph_input_weight_kept():
    model = conv_then([("Mul", rand(8, 1, 1), False)], weight_is_input=True)
    assert slim(model)["Mul"] == 1


def test_conv_affine_shared_weight_kept():
    second_conv = node("Conv", ["x", "W", "B"], "z")
    model = conv_then(
        [("Mul", rand(8, 1, 1), False)], extra_nodes=[second_conv], outputs=("y", "z")
    )
    assert slim(model)["Mul"] == 1


def test_conv_affine_with_a_weight_given_as_a_graph_output_kept():
    """The fold makes a new weight: the one given as an output would stay beside it (a
    16-channel conv's file: 9.3 -> 18.2 KiB)."""
    model = conv_then([("Mul", rand(8, 1, 1), False)])
    model.graph.output.append(vi("W", FLOAT, None))
    assert slim(model)["Mul"] == 1


@pytest.mark.parametrize(("operand", "folded"), [(rand(8, 1, 1), True), (rand(1), False)])
def test_conv_affine_with_a_bias_shared_by_another_conv(operand, folded):
    """Equal biases share one initializer (timm's zero biases): the fold gives the Conv a bias of
    its own when the operand that goes is as big (a per-channel layer scale), never for a scalar
    (the file would grow)."""
    second_weight = node("Constant", [], "W2", value=numpy_helper.from_array(rand(8, 4, 3, 3)))
    second_conv = node("Conv", ["x", "W2", "B"], "z")
    model = conv_then(
        [("Mul", operand, False)], extra_nodes=[second_weight, second_conv], outputs=("y", "z")
    )
    optimized = optimized_proto(model)
    assert_same_outputs(model, optimized, seeds=(0, 1))
    assert op_counts(optimized).get("Mul", 0) == (0 if folded else 1)
    weights = [
        sum(numpy_helper.to_array(t).nbytes for t in m.graph.initializer)
        + sum(a.t.ByteSize() for n in m.graph.node for a in n.attribute)
        for m in (model, optimized)
    ]
    assert weights[1] <= weights[0]


@pytest.mark.parametrize("before", [False, True])
def test_a_scale_that_keeps_a_shared_bias_folds(before):
    """A scale before a Conv leaves its bias as it is, and one after it leaves a zero bias zero:
    the Conv keeps sharing the bias (timm's NFNet scales each Conv's input by a scalar gamma, and
    its zero biases are stored once)."""
    bias = rand(8) if before else np.zeros(8, np.float32)
    scale = node("Mul", ["x" if before else "t", "s"], "xs" if before else "y")
    nodes = [
        *([scale] if before else []),
        node("Conv", ["xs" if before else "x", "W", "B"], "y" if before else "t"),
        *([] if before else [scale]),
        node("Conv", ["x", "W2", "B"], "z"),
    ]
    inits = [const(n, v) for n, v in (("W", rand(8, 4, 3, 3)), ("W2", rand(8, 4, 1, 1)))]
    inits += [const("B", bias), const("s", np.float32(1.7))]
    outputs = [vi(n, FLOAT, [None] * 4) for n in ("y", "z")]
    model = make_model(nodes, [vi("x", FLOAT, [1, 4, 6, 6])], outputs, inits)
    optimized = optimized_proto(model)
    assert_same_outputs(model, optimized, seeds=(0, 1))
    assert op_counts(optimized).get("Mul", 0) == 0
    assert len({n.input[2] for n in optimized.graph.node if n.op_type == "Conv"}) == 1


@pytest.mark.parametrize("bias_from", ["DequantizeLinear", "Relu"])
def test_conv_affine_with_a_computed_bias_kept(bias_from):
    """A bias computed at run time (a QDQ model's DequantizeLinear) cannot take the scale."""
    inputs = ["bq", "bs"] if bias_from == "DequantizeLinear" else ["bf"]
    nodes = [
        node(bias_from, inputs, "b"),
        node("Conv", ["x", "W", "b"], "c"),
        node("Mul", ["c", "s"], "y"),
    ]
    inits = [
        const("W", rand(4, 3, 3, 3)),
        const("bq", np.arange(4, dtype=np.int32)),
        const("bs", np.float32(0.1)),
        const("s", np.full((1, 4, 1, 1), 2.0, np.float32)),
    ]
    graph_inputs = [vi("x", FLOAT, [1, 3, 8, 8])] + [vi("bf", FLOAT, [4])] * (bias_from == "Relu")
    model = make_model(nodes, graph_inputs, [vi("y", FLOAT, [1, 4, 6, 6])], inits)
    assert slim(model)["Mul"] == 1


def test_conv_affine_with_a_shared_bias_and_a_shared_operand_kept():
    """The operand stays for its other reader: a new bias would only add to the file."""
    second_weight = node("Constant", [], "W2", value=numpy_helper.from_array(rand(8, 4, 3, 3)))
    second_conv = node("Conv", ["x", "W2", "B"], "z0")
    other_reader = node("Mul", ["z0", "c0"], "z")
    model = conv_then(
        [("Mul", rand(8, 1, 1), False)],
        extra_nodes=[second_weight, second_conv, other_reader],
        outputs=("y", "z"),
    )
    assert slim(model)["Mul"] == 2


def test_conv_affine_division_by_zero_kept():
    divisor = rand(8, 1, 1)
    divisor[3] = 0
    assert slim(conv_then([("Div", divisor, False)]))["Div"] == 1


def test_conv_affine_folded_inside_if_branch():
    then_branch = helper.make_graph(
        [
            node("Conv", ["x", "W", "B"], "t"),
            node("Mul", ["t", "s"], "u"),
            node("Relu", ["u"], "y_then"),
        ],
        "then",
        [],
        [vi("y_then", FLOAT, [1, 8, 4, 4])],
    )
    else_branch = helper.make_graph(
        [node("Neg", ["x"], "y_else")], "else", [], [vi("y_else", FLOAT, [1, 4, 6, 6])]
    )
    model = make_model(
        [node("If", ["cond"], "y", then_branch=then_branch, else_branch=else_branch)],
        [vi("cond", 9, []), vi("x", FLOAT, [1, 4, 6, 6])],
        [vi("y", FLOAT, [1, None, None, None])],
        [const("W", rand(8, 4, 3, 3)), const("B", rand(8)), const("s", rand(8, 1, 1))],
    )
    optimized = optimized_proto(model)
    for cond in (True, False):
        feeds = {"cond": np.array(cond), "x": rand(1, 4, 6, 6)}
        assert_same_outputs(model, optimized, feeds)
    counts = op_counts(optimized)
    assert counts["Mul"] == 0 and counts["Conv"] == 1


def affine_then_conv(ops, *, x_shape=(1, 4, 6, 6), weight=None, bias=True, **conv_attrs):
    """x -> ops[0] -> ops[1] ... -> Conv(W[, B]) -> y, each op a (op_type, constant)."""
    weight = (
        weight if weight is not None else rand(6, x_shape[1] // conv_attrs.get("group", 1), 3, 3)
    )
    nodes, inits, prev = [], [const("W", weight)], "x"
    for i, (op_type, value) in enumerate(ops):
        inits.append(const(f"c{i}", value))
        nodes.append(node(op_type, [prev, f"c{i}"], f"t{i}"))
        prev = f"t{i}"
    if bias:
        inits.append(const("B", rand(weight.shape[0])))
    nodes.append(node("Conv", [prev, "W"] + (["B"] if bias else []), "y", **conv_attrs))
    return make_model(
        nodes, [vi("x", FLOAT, list(x_shape))], [vi("y", FLOAT, [None] * len(x_shape))], inits
    )


@pytest.mark.parametrize(
    "ops, attrs",
    [
        ([("Mul", rand(4, 1, 1))], dict(pads=[1, 1, 1, 1])),  # a scale survives zero padding
        ([("Mul", rand(4, 1, 1)), ("Add", rand(1, 4, 1, 1))], dict(group=2)),
        (
            [("Sub", np.array([0.5], np.float32)), ("Div", rand(4, 1, 1) + 3)],
            dict(group=4, dilations=[2, 1]),
        ),
    ],
)
def test_affine_before_conv_folded(ops, attrs):
    weight = rand(8, 4 // attrs.get("group", 1), 3, 3)
    assert slim(affine_then_conv(ops, weight=weight, **attrs)) == {"Conv": 1}


@pytest.mark.parametrize(
    "ops, attrs, x_shape",
    [
        (
            [("Add", rand(4, 1, 1))],
            dict(pads=[1, 1, 1, 1]),
            (1, 4, 6, 6),
        ),  # padded zeros would have been shifted
        ([("Add", rand(4, 1, 1))], dict(auto_pad="SAME_UPPER"), (1, 4, 6, 6)),
        ([("Mul", rand(4, 1, 1))], {}, (1, 1, 6, 6)),  # the Mul broadcasts x's channels
    ],
)
def test_affine_before_conv_kept(ops, attrs, x_shape):
    counts = slim(affine_then_conv(ops, x_shape=x_shape, weight=rand(6, 4, 3, 3), **attrs))
    assert counts[ops[0][0]] == 1


def test_half_of_a_written_out_gelu_not_folded_into_the_next_conv():
    """Before opset 20 a Gelu stays written out; ORT fuses it into one kernel only with its * 0.5
    in place (PP-OCRv6: 16% slower when folded into the next Conv)."""
    model = gelu_then_conv()
    assert slim(model)["Mul"] == 2
    assert ort_op_counts(optimized_proto(model))["com.microsoft.Gelu"] == 1


# --- BatchNormalization, Pad, MatMul+Add (onnxscript's rules and ours, as wired) -----------------


def batchnorm_inits(channels):
    return [
        const("scale", rand(channels)),
        const("bias", rand(channels)),
        const("mean", rand(channels)),
        const("var", np.abs(rand(channels)) + 0.5),
    ]


def test_batchnorm_after_gemm_folded():
    nodes = [
        node("Gemm", ["x", "W", "b"], "t", transB=1),
        node("BatchNormalization", ["t", "scale", "bias", "mean", "var"], "y", epsilon=1e-3),
    ]
    model = make_model(
        nodes,
        [vi("x", FLOAT, ["N", 6])],
        [vi("y", FLOAT, ["N", 5])],
        [const("W", rand(5, 6)), const("b", rand(5)), *batchnorm_inits(5)],
    )
    assert slim(model) == {"Gemm": 1}


def test_batchnorm_after_gemm_with_a_bias_scale_and_no_bias_folded():
    """Gemm's `beta` scales its bias before BN: it is folded into the new bias, then dropped."""
    for inputs, extra, beta in (
        (["x", "W", "b"], [const("b", rand(5))], 0.5),
        (["x", "W"], [], 1.0),
    ):
        nodes = [
            node("Gemm", inputs, "t", transB=1, beta=beta),
            node("BatchNormalization", ["t", "scale", "bias", "mean", "var"], "y"),
        ]
        model = make_model(
            nodes,
            [vi("x", FLOAT, ["N", 6])],
            [vi("y", FLOAT, ["N", 5])],
            [const("W", rand(5, 6)), *extra, *batchnorm_inits(5)],
        )
        assert slim(model) == {"Gemm": 1}


def test_batchnorm_after_grouped_conv_transpose_folded():
    nodes = [
        node("ConvTranspose", ["x", "W", "b"], "t", group=2),
        node("BatchNormalization", ["t", "scale", "bias", "mean", "var"], "y"),
    ]
    model = make_model(
        nodes,
        [vi("x", FLOAT, [1, 4, 5, 5])],
        [vi("y", FLOAT, [1, 6, 7, 7])],
        [const("W", rand(4, 3, 3, 3)), const("b", rand(6)), *batchnorm_inits(6)],
    )
    assert slim(model) == {"ConvTranspose": 1}


@pytest.mark.parametrize(
    ("outputs", "counts"),
    [
        ((), {"Conv": 1}),
        # the fold scales the conv's weight in place: the output given as W changed with it (the
        # check then refused the model, exit 1)
        ((vi("W", FLOAT, [4, 3, 3, 3]),), {"Conv": 1, "BatchNormalization": 1}),
    ],
)
def test_batchnorm_after_conv_folded_unless_its_weight_is_a_graph_output(outputs, counts):
    nodes = [
        node("Conv", ["x", "W"], "t"),
        node("BatchNormalization", ["t", "scale", "bias", "mean", "var"], "y"),
    ]
    model = make_model(
        nodes,
        [vi("x", FLOAT, [1, 3, 5, 5])],
        [vi("y", FLOAT, [1, 4, 3, 3]), *outputs],
        [const("W", rand(4, 3, 3, 3)), *batchnorm_inits(4)],
    )
    assert slim(model) == counts


@pytest.mark.parametrize(
    "outputs, attributes, opset",
    [
        # training_mode=1: batch statistics, and running mean/var as extra outputs
        (["y", "rm", "rv"], {"training_mode": 1}, 15),
        # an opset-9 BN with its mean/var outputs (unread): ORT runs it in training mode
        (["y", "rm", "rv", "sm", "sv"], {}, 9),
    ],
)
def test_batchnorm_in_training_mode_kept(outputs, attributes, opset):
    """A BN that uses batch statistics: folding it into the conv would change the outputs."""
    nodes = [
        node("Conv", ["x", "W"], "t"),
        helper.make_node(
            "BatchNormalization", ["t", "scale", "bias", "mean", "var"], outputs, **attributes
        ),
    ]
    model = make_model(
        nodes,
        [vi("x", FLOAT, [2, 3, 5, 5])],
        [vi("y", FLOAT, [2, 4, 3, 3])],
        [const("W", rand(4, 3, 3, 3)), *batchnorm_inits(4)],
        opset=opset,
    )
    assert slim(model)["BatchNormalization"] == 1


def test_batchnorm_per_activation_kept():
    nodes = [
        node("Conv", ["x", "W"], "t"),
        node("BatchNormalization", ["t", "scale", "bias", "mean", "var"], "y", spatial=0),
    ]
    inits = [
        const("W", rand(2, 3, 3, 3)),
        const("scale", rand(2, 3, 3)),
        const("bias", rand(2, 3, 3)),
        const("mean", rand(2, 3, 3)),
        const("var", np.abs(rand(2, 3, 3)) + 0.5),
    ]
    model = make_model(
        nodes, [vi("x", FLOAT, [1, 3, 5, 5])], [vi("y", FLOAT, [1, 2, 3, 3])], inits, opset=7
    )
    assert slim(model)["BatchNormalization"] == 1


def test_batchnorm_folds_keep_names_dtypes_and_shared_weights():
    """Two BNs after two Convs (no bias; "W_bias" already taken): both fold, into equal biases
    stored once, the graph output keeps its name; a Conv whose weights another node shares keeps its
    BN; float16 weights stay float16 under float32 BN statistics."""
    model = make_model(
        [
            node("Conv", ["x", "W"], "t"),
            node("BatchNormalization", ["t", "scale", "bias", "mean", "var"], "u"),
            node("Conv", ["u", "W2"], "t2", pads=[1, 1, 1, 1]),
            node("BatchNormalization", ["t2", "scale", "bias", "mean", "var"], "y"),
            node("Add", ["x1", "W_bias"], "z"),
        ],
        [vi("x", FLOAT, [1, 4, 5, 5]), vi("x1", FLOAT, [4])],
        [vi("y", FLOAT, [1, 4, 5, 5]), vi("z", FLOAT, [4])],
        [const("W", rand(4, 4, 1, 1)), const("W2", rand(4, 4, 3, 3)), const("W_bias", rand(4))]
        + batchnorm_inits(4),
    )
    optimized = optimized_proto(model)
    assert_same_outputs(model, optimized, seeds=(0, 1))
    assert op_counts(optimized) == {"Conv": 2, "Add": 1}
    assert [o.name for o in optimized.graph.output] == ["y", "z"]
    assert {n.input[2] for n in optimized.graph.node if n.op_type == "Conv"} == {"W_bias_1"}

    shared = make_model(
        [
            node("Conv", ["x", "W"], "t"),
            node("BatchNormalization", ["t", "scale", "bias", "mean", "var"], "u"),
            node("Conv", ["x", "W"], "v"),
            node("Add", ["u", "v"], "y"),
        ],
        [vi("x", FLOAT, [1, 4, 5, 5])],
        [vi("y", FLOAT, [1, 4, 5, 5])],
        [const("W", rand(4, 4, 1, 1)), *batchnorm_inits(4)],
    )
    assert slim(shared)["BatchNormalization"] == 1

    half = make_model(
        [
            node("Conv", ["x", "W"], "t"),
            node("BatchNormalization", ["t", "scale", "bias", "mean", "var"], "y"),
        ],
        [vi("x", TensorProto.FLOAT16, [1, 4, 5, 5])],
        [vi("y", TensorProto.FLOAT16, [1, 4, 5, 5])],
        [const("W", rand(4, 4, 1, 1).astype(np.float16)), *batchnorm_inits(4)],
        opset=15,
    )
    optimized = optimized_proto(half)
    assert_same_outputs(half, optimized, seeds=(0, 1), atol=1e-2, rtol=1e-2)
    assert op_counts(optimized) == {"Conv": 1}
    dtypes = {i.data_type for i in optimized.graph.initializer}
    assert dtypes == {TensorProto.FLOAT16}


def test_batchnorm_in_an_if_branch_after_an_outer_conv_kept():
    """The BN is in the then-branch, the Conv it reads in the main graph: folding would wire a
    bias made in the branch into the outer Conv. A BN and Conv both in the branch fold."""
    then_branch = helper.make_graph(
        [node("BatchNormalization", ["t", "scale", "bias", "mean", "var"], "y_then")],
        "then",
        [],
        [vi("y_then", FLOAT, [1, 4, 3, 3])],
    )
    else_branch = helper.make_graph(
        [
            node("Conv", ["x", "W2"], "c"),
            node("BatchNormalization", ["c", "scale", "bias", "mean", "var"], "y_else"),
        ],
        "else",
        [],
        [vi("y_else", FLOAT, [1, 4, 3, 3])],
    )
    model = make_model(
        [
            node("Conv", ["x", "W"], "t"),
            node("If", ["cond"], "y", then_branch=then_branch, else_branch=else_branch),
        ],
        [vi("cond", TensorProto.BOOL, []), vi("x", FLOAT, [1, 3, 5, 5])],
        [vi("y", FLOAT, [1, 4, 3, 3])],
        [const("W", rand(4, 3, 3, 3)), const("W2", rand(4, 3, 3, 3)), *batchnorm_inits(4)],
    )
    optimized = optimized_proto(model)
    for cond in (True, False):
        assert_same_outputs(model, optimized, {"cond": np.array(cond), "x": rand(1, 3, 5, 5)})
    branches = {a.name: a.g for n in optimized.graph.node if n.op_type == "If" for a in n.attribute}
    assert [n.op_type for n in branches["then_branch"].node] == ["BatchNormalization"]
    assert [n.op_type for n in branches["else_branch"].node] == ["Conv"]


def test_batchnorm_after_gemm_with_a_broadcast_bias_and_as_graph_output_folded():
    """Gemm's C of shape [1] broadcasts: the folded bias has one value per output; the BN's
    output is the graph output, its name kept."""
    model = make_model(
        [
            node("Gemm", ["x", "W", "c"], "t"),
            node("BatchNormalization", ["t", "scale", "bias", "mean", "var"], "y"),
        ],
        [vi("x", FLOAT, ["N", 6])],
        [vi("y", FLOAT, ["N", 5])],
        [const("W", rand(6, 5)), const("c", rand(1)), *batchnorm_inits(5)],
    )
    optimized = optimized_proto(model)
    assert_same_outputs(model, optimized, seeds=(0, 1))
    assert op_counts(optimized) == {"Gemm": 1} and optimized.graph.output[0].name == "y"
    assert list(numpy_helper.to_array(_initializer(optimized, "c")).shape) == [5]


def _initializer(model, name):
    return next(i for i in model.graph.initializer if i.name == name)


def test_reflect_pad_not_folded_into_conv():
    nodes = [node("Pad", ["x", "p"], "t", mode="reflect"), node("Conv", ["t", "W"], "y")]
    model = make_model(
        nodes,
        [vi("x", FLOAT, [1, 3, 5, 5])],
        [vi("y", FLOAT, [1, 4, 5, 5])],
        [const("p", np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64)), const("W", rand(4, 3, 3, 3))],
    )
    assert slim(model) == {"Pad": 1, "Conv": 1}


def test_zero_pad_folded_into_conv():
    nodes = [node("Pad", ["x", "p"], "t"), node("Conv", ["t", "W"], "y")]
    model = make_model(
        nodes,
        [vi("x", FLOAT, [1, 3, 5, 5])],
        [vi("y", FLOAT, [1, 4, 5, 5])],
        [const("p", np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64)), const("W", rand(4, 3, 3, 3))],
    )
    assert slim(model) == {"Conv": 1}


@pytest.mark.parametrize("mode", ["reflect", "outer"])
def test_a_conv_keeps_its_auto_pad_when_no_pad_can_fold_into_it(mode):
    """Making pads explicit gains nothing unless a zero Pad of the Conv's own graph follows them
    in: a reflect Pad, or a Pad outside the If branch the Conv is in, stays."""
    out_shape = [1, 4, 7, 7]

    def conv(output):
        return node("Conv", ["t", "W"], output, auto_pad="SAME_UPPER")

    if mode == "reflect":
        nodes = [node("Pad", ["x", "p"], "t", mode="reflect"), conv("y")]
        inputs = [vi("x", FLOAT, [1, 3, 5, 5])]
    else:
        then, other = (
            helper.make_graph([conv(name)], name, [], [vi(name, FLOAT, out_shape)])
            for name in ("a", "b")
        )
        nodes = [
            node("Pad", ["x", "p"], "t"),
            helper.make_node("If", ["c"], ["y"], then_branch=then, else_branch=other),
        ]
        inputs = [vi("x", FLOAT, [1, 3, 5, 5]), vi("c", TensorProto.BOOL, [])]
    model = make_model(
        nodes,
        inputs,
        [vi("y", FLOAT, out_shape)],
        [const("p", np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64)), const("W", rand(4, 3, 3, 3))],
    )
    out = optimized_proto(model)
    graphs = [out.graph, *(a.g for n in out.graph.node for a in n.attribute if a.g.node)]
    convs = [n for g in graphs for n in g.node if n.op_type == "Conv"]
    assert convs and all(
        helper.get_attribute_value(a) == b"SAME_UPPER"
        for n in convs
        for a in n.attribute
        if a.name == "auto_pad"
    )
    assert all(any(a.name == "auto_pad" for a in n.attribute) for n in convs)


def test_matmul_add_to_gemm():
    nodes = [node("MatMul", ["x", "W"], "t"), node("Add", ["t", "b"], "y")]
    model = make_model(
        nodes,
        [vi("x", FLOAT, ["N", 6])],
        [vi("y", FLOAT, ["N", 5])],
        [const("W", rand(6, 5)), const("b", rand(5))],
    )
    assert slim(model) == {"Gemm": 1}


@pytest.mark.parametrize(
    "x_rows, bias_shape, fused",
    [
        (3, (1, 5), True),
        (3, (3, 5), True),
        ("N", (3, 5), False),
        (3, (3, 1), True),
    ],
)
def test_matmul_add_2d_bias_rows(x_rows, bias_shape, fused):
    nodes = [node("MatMul", ["x", "W"], "t"), node("Add", ["t", "b"], "y")]
    rows = 3 if bias_shape[0] == 3 else x_rows
    model = make_model(
        nodes,
        [vi("x", FLOAT, [x_rows, 6])],
        [vi("y", FLOAT, [rows, 5])],
        [const("W", rand(6, 5)), const("b", rand(*bias_shape))],
    )
    assert slim(model) == ({"Gemm": 1} if fused else {"MatMul": 1, "Add": 1})
    if fused:  # one row is written as the vector it is (the INT8 quantizer takes a 1-D bias)
        out = optimized_proto(model)
        bias = next(i for i in out.graph.initializer if i.name == out.graph.node[0].input[2])
        assert list(bias.dims) == ([5] if bias_shape == (1, 5) else list(bias_shape))


def test_matmul_add_3d_input_kept():
    nodes = [node("MatMul", ["x", "W"], "t"), node("Add", ["t", "b"], "y")]
    model = make_model(
        nodes,
        [vi("x", FLOAT, ["N", 2, 6])],
        [vi("y", FLOAT, ["N", 2, 5])],
        [const("W", rand(6, 5)), const("b", rand(5))],
    )
    assert slim(model) == {"MatMul": 1, "Add": 1}


def flattened_gemm(
    picks,
    *,
    trans_b=False,
    bias=(5,),
    shared_weight=False,
    flat=(-1, 6),
    x_dims=("N", 4, 6),
    opset=17,
    product_output=False,
):
    """onnx-simplifier's linear layer over x [N, 4, 6]: Reshape(x, [-1, 6]) -> Gemm ->
    Reshape back to the shape `picks` of x (`shape_pieces`); `flat`: the flattening shape's
    picks (constant, or x's last dim computed, as GPT-2's head merge); `product_output`: the
    2-D product is a graph output too."""
    gemm_inputs = ["flat", "W"] + (["b"] if bias else [])
    flat_nodes, flat_inits = shape_pieces("x", flat, out="flat_shape")
    nodes = [
        *flat_nodes,
        node("Reshape", ["x", "flat_shape"], "flat"),
        node("Gemm", gemm_inputs, "t", transB=int(trans_b)),
        *shape_pieces("x", picks)[0],
        node("Reshape", ["t", "shape"], "y"),
    ]
    weight = rand(5, 6) if trans_b else rand(6, 5)
    inits = [*flat_inits, const("W", weight)]
    inits += shape_pieces("x", picks)[1] + ([const("b", rand(*bias))] if bias else [])
    outputs = [vi("y", FLOAT, [f"d{i}" for i in range(len(picks))])]
    if shared_weight:  # another Gemm reads W
        nodes.append(node("Gemm", ["flat", "W"], "z", transB=int(trans_b)))
        outputs.append(vi("z", FLOAT, ["rows", 5]))
    if product_output:
        outputs.append(vi("t", FLOAT, ["rows", 5]))
    return make_model(nodes, [vi("x", FLOAT, list(x_dims))], outputs, inits, opset=opset)


@pytest.mark.parametrize(
    "picks, trans_b, bias, counts",
    [
        ([("dim", 0), ("dim", 1), 5], False, (5,), {"MatMul": 1, "Add": 1}),
        ([("dim", 0), ("dim", 1), 5], True, None, {"MatMul": 1}),
        ([("dim", 0), 4, 5], True, (1, 5), {"MatMul": 1, "Add": 1}),
        ([("dim", 0), ("dim", 1), 5, 1], False, (5,), {"MatMul": 1, "Add": 1, "Reshape": 1}),
        ([("dim", 0), 4, 1, 5], False, (5,), {"MatMul": 1, "Add": 1, "Reshape": 1}),
        # (the MatMul keeps x's dim 0: the shape left is made constant, [0, -1, 1, 5])
        ([("dim", 0), -1, 1, 5], False, (5,), {"MatMul": 1, "Add": 1, "Reshape": 1}),
    ],
)
def test_a_gemm_over_a_flattened_input_becomes_a_matmul(picks, trans_b, bias, counts):
    """onnxsim's Reshape -> Gemm -> Reshape for a 3-D linear layer is MatMul (+ Add) over x
    itself; the Reshape back goes where it is x's leading dims and N, else it stays (constant)."""
    assert slim(flattened_gemm(picks, trans_b=trans_b, bias=bias)) == counts


def test_a_gemm_over_an_input_flattened_by_its_own_last_dim_becomes_a_matmul():
    """GPT-2's head merge leaves x's last dim symbolic and flattens by it (computed): the Gemm
    holds it to K, so MatMul over x computes the same."""
    model = flattened_gemm([("dim", 0), ("dim", 1), 5], flat=(-1, ("dim", 2)), x_dims=("N", 4, "K"))
    feeds = {"x": rand(2, 4, 6)}
    optimized = optimized_proto(model, check_inputs=[feeds])
    assert_same_outputs(model, optimized, feeds)
    assert op_counts(optimized) == {"MatMul": 1, "Add": 1}


def test_a_gemm_over_an_input_of_another_last_dim_flattened_by_k_is_kept():
    """Reshape(x, [-1, 6]) of an x whose last dim is not known to be 6 (12 would make twice the
    rows): a MatMul over x would not take it, so the Gemm stays."""
    model = flattened_gemm([-1, 4, 5], x_dims=("N", 4, "K"))
    feeds = {"x": rand(2, 4, 6)}
    optimized = optimized_proto(model, check_inputs=[feeds])
    assert_same_outputs(model, optimized, feeds)
    assert op_counts(optimized).get("Gemm") == 1


def test_a_gemm_over_an_unsqueezed_input_waits_for_the_chain_rules():
    """tf2onnx's einsum: Unsqueeze, the flattening Reshape, Gemm, a Reshape back and a Squeeze.
    The chain rules make the Unsqueeze part of the flattening first (else it stayed a node of
    its own: a tf2onnx transformer 185 -> 195 nodes), then the Gemm is a MatMul over x."""
    nodes = [
        node("Unsqueeze", ["x", "axis2"], "u"),
        node("Reshape", ["u", "flat_shape"], "flat"),
        node("Gemm", ["flat", "W", "b"], "t"),
        node("Reshape", ["t", "shape"], "r"),
        node("Squeeze", ["r", "axis4"], "y"),
    ]
    inits = [
        const("axis2", np.array([2])),
        const("flat_shape", np.array([-1, 6])),
        const("W", rand(6, 20)),
        const("b", rand(20)),
        const("shape", np.array([-1, 4, 4, 5, 1])),
        const("axis4", np.array([4])),
    ]
    y = vi("y", FLOAT, ["N", 4, 4, 5])
    model = make_model(nodes, [vi("x", FLOAT, ["N", 4, 6])], [y], inits)
    assert slim(model) == {"MatMul": 1, "Add": 1, "Reshape": 1}


def test_a_gemm_over_a_flattened_input_at_opset_13_becomes_a_reshape_without_allowzero():
    """Reshape's allowzero came with opset 14: the Reshape back written at opset 13 has none."""
    optimized = optimized_proto(flattened_gemm([-1, 20], opset=13))
    assert op_counts(optimized) == {"MatMul": 1, "Add": 1, "Reshape": 1}
    reshape = next(n for n in optimized.graph.node if n.op_type == "Reshape")
    assert not reshape.attribute


@pytest.mark.parametrize(
    "picks, options",
    [
        ([("dim", 0), ("dim", 1), 5], {"product_output": True}),  # else computed twice
        ([("dim", 0), ("dim", 1), 5], {"shared_weight": True, "trans_b": True}),  # a W^T copy
        ([("dim", 0), ("dim", 1), 5], {"bias": (1,)}),  # a scalar bias
        ([("dim", 0), 0, 4], {}),  # a 0 copying the product's 5 columns: [N, 5, 4]
    ],
)
def test_a_gemm_over_a_flattened_input_kept(picks, options):
    counts = slim(flattened_gemm(picks, **options))
    assert counts["Gemm"] >= 1 and "MatMul" not in counts


# --- hard-swish / hard-sigmoid --------------------------------------------------------------------


def hardswish(opset, clip_max=6.0, divisor=6.0, mul_input="x"):
    nodes = [
        node("Add", ["x", "three"], "a"),
        node("Clip", ["a", "zero", "clip_max"], "c"),
        node("Mul", [mul_input, "c"], "m"),
        node("Div", ["m", "divisor"], "y"),
    ]
    inits = [
        const("three", np.array(3.0, np.float32)),
        const("zero", np.array(0.0, np.float32)),
        const("clip_max", np.array(clip_max, np.float32)),
        const("divisor", np.array(divisor, np.float32)),
    ]
    inputs = [vi("x", FLOAT, ["N", 8])] + ([vi("w", FLOAT, ["N", 8])] if mul_input == "w" else [])
    return make_model(nodes, inputs, [vi("y", FLOAT, ["N", 8])], inits, opset=opset)


def test_hardswish_fused_from_opset_14():
    assert slim(hardswish(14)) == {"HardSwish": 1}


@pytest.mark.parametrize("opset", [11, 13])
def test_hardswish_as_hardsigmoid_before_opset_14(opset):
    assert slim(hardswish(opset)) == {"HardSigmoid": 1, "Mul": 1}


@pytest.mark.parametrize("kwargs", [dict(clip_max=5.0), dict(divisor=5.0), dict(mul_input="w")])
def test_hardswish_lookalikes_kept(kwargs):
    counts = slim(hardswish(14, **kwargs))
    assert "HardSwish" not in counts and counts["Clip"] + counts["HardSigmoid"] == 1


def test_hardsigmoid_fused():
    nodes = [
        node("Add", ["x", "three"], "a"),
        node("Clip", ["a", "zero", "six"], "c"),
        node("Div", ["c", "six"], "y"),
    ]
    inits = [
        const("three", np.array(3.0, np.float32)),
        const("zero", np.array(0.0, np.float32)),
        const("six", np.array(6.0, np.float32)),
    ]
    model = make_model(
        nodes, [vi("x", FLOAT, ["N", 8])], [vi("y", FLOAT, ["N", 8])], inits, opset=11
    )
    assert slim(model) == {"HardSigmoid": 1}


# --- chains ---------------------------------------------------------------------------------------


def chain(steps, x_shape, out_rank, opset=17, initializers=()):
    """x -> steps (each (op_type, extra inputs, attrs)) -> Relu -> y."""
    nodes, prev = [], "x"
    for i, (op_type, extra, attrs) in enumerate(steps):
        nodes.append(node(op_type, [prev, *extra], f"t{i}", **attrs))
        prev = f"t{i}"
    nodes.append(node("Relu", [prev], "y"))
    return make_model(
        nodes,
        [vi("x", FLOAT, x_shape)],
        [vi("y", FLOAT, [None] * out_rank)],
        list(initializers),
        opset=opset,
    )


def axes(name, values):
    return const(name, np.array(values, np.int64))


@pytest.mark.parametrize("first, second", [("Unsqueeze", "Squeeze"), ("Squeeze", "Unsqueeze")])
def test_squeeze_unsqueeze_cancel(first, second):
    model = chain(
        [(first, ["a1"], {}), (second, ["a2"], {})],
        [2, 1, 3, 1],
        4,
        initializers=[axes("a1", [1, -1]), axes("a2", [-1, 1])],
    )
    assert slim(model) == {"Relu": 1}


def test_squeeze_unsqueeze_cancel_attribute_axes():
    model = chain(
        [("Squeeze", [], dict(axes=[1])), ("Unsqueeze", [], dict(axes=[1]))],
        ["N", 1, 3],
        3,
        opset=11,
    )
    assert slim(model) == {"Relu": 1}


def test_squeeze_unsqueeze_cancel_where_the_squeeze_has_other_readers():
    """paddle2onnx's shape arithmetic: a dim squeezed for a Mul, unsqueezed back for a Concat
    (a Paddle export 40 -> 34 nodes, as onnxsim); the Squeeze stays for the Neg."""
    model = make_model(
        [
            helper.make_node("Squeeze", ["x", "a"], ["s"]),
            helper.make_node("Neg", ["s"], ["z"]),
            helper.make_node("Unsqueeze", ["s", "a"], ["u"]),
            helper.make_node("Relu", ["u"], ["y"]),
        ],
        [vi("x", FLOAT, ["N", 1, 3])],
        [vi("y", FLOAT, ["N", 1, 3]), vi("z", FLOAT, ["N", 3])],
        [axes("a", [1])],
    )
    assert slim(model) == {"Squeeze": 1, "Neg": 1, "Relu": 1}


def test_squeeze_unsqueeze_on_other_axes_kept():
    model = chain(
        [("Squeeze", ["a1"], {}), ("Unsqueeze", ["a2"], {})],
        [2, 1, 3],
        3,
        initializers=[axes("a1", [1]), axes("a2", [2])],
    )
    counts = slim(model)
    assert counts["Squeeze"] + counts["Unsqueeze"] + counts["Reshape"] >= 1


@pytest.mark.parametrize(
    "x_shape, first, second, opset",
    [
        (["N"], [1, 2], [3], 17),  # HF's mask: arange[:, None, None, None]
        ([2, 3], [0, 3], [2, 1], 17),
        ([2, 3], [-1], [0, -2], 17),
        (["N", 3], [1], [0], 11),  # axes as an attribute
    ],
)
def test_unsqueeze_of_unsqueeze_merged(x_shape, first, second, opset):
    if opset < 13:
        steps = [("Unsqueeze", [], dict(axes=first)), ("Unsqueeze", [], dict(axes=second))]
        inits = []
    else:
        steps = [("Unsqueeze", ["a1"], {}), ("Unsqueeze", ["a2"], {})]
        inits = [axes("a1", first), axes("a2", second)]
    rank = len(x_shape) + len(first) + len(second)
    model = chain(steps, x_shape, rank, opset=opset, initializers=inits)
    assert slim(model) == {"Unsqueeze": 1, "Relu": 1}


@pytest.mark.parametrize("second", ["Unsqueeze", "Squeeze"])
def test_unsqueeze_with_scalar_axes(second):
    """Unsqueeze takes its axes as a scalar too (ORT accepts a 0-d tensor)."""
    model = chain(
        [("Unsqueeze", ["a1"], {}), (second, ["a2"], {})],
        [2, 3],
        4 if second == "Unsqueeze" else 2,
        initializers=[axes("a1", 0), axes("a2", [0])],
    )
    assert slim(model) == ({"Unsqueeze": 1, "Relu": 1} if second == "Unsqueeze" else {"Relu": 1})


def gpt2_mlp(exit_shape, constant, extra_reader=None):
    """HF GPT-2's MLP between its two addmm: Reshape(x: [B*S, 4], [B, S, 4]) -> Gelu written out
    (tanh form) -> Reshape(exit_shape); `constant` is the Gelu's 0.5; `extra_reader` another op
    reading the Gelu's inner value."""
    nodes = [
        node("Reshape", ["x", "bsh"], "v"),
        node("Mul", ["v", "half"], "hv"),
        node("Pow", ["v", "three"], "cube"),
        node("Mul", ["cube", "k"], "kc"),
        node("Add", ["v", "kc"], "inner"),
        node("Tanh", ["inner"], "t"),
        node("Add", ["t", "one"], "t1"),
        node("Mul", ["hv", "t1"], "g"),
        node("Reshape", ["g", "exit"], "y"),
    ]
    outputs = [vi("y", FLOAT, [None] * len(exit_shape))]
    if extra_reader is not None:
        nodes.append(node(extra_reader, ["inner"], "z"))
        outputs.append(vi("z", FLOAT, [None] * 3))
    inits = [
        axes("bsh", [2, 3, 4]),
        axes("exit", exit_shape),
        const("half", np.float32(constant)),
        const("three", np.float32(3)),
        const("k", np.float32(0.044715)),
        const("one", np.float32(1)),
    ]
    return make_model(nodes, [vi("x", FLOAT, [6, 4])], outputs, inits, opset=17)


@pytest.mark.parametrize(
    "exit_shape, constant, reshapes",
    [
        ([-1, 4], 0.5, 0),  # back to x's own shape: both Reshapes go
        ([3, 8], 0.5, 1),  # another shape: the first goes
        ([3, 2, 4], [0.5], 1),  # a [1] constant broadcasts alike in rank 2 and 3
    ],
)
def test_reshape_before_elementwise_work_removed(exit_shape, constant, reshapes):
    assert slim(gpt2_mlp(exit_shape, constant))["Reshape"] == reshapes


@pytest.mark.parametrize(
    "exit_shape, constant, extra_reader",
    [
        ([0, -1], 0.5, None),  # a 0 copies a dim of the exit's own input
        ([-1, 4], [[[0.5]]], None),  # a rank-3 constant makes x's result rank 3
        ([-1, 4], [0.5, 0.5, 0.5, 0.5], None),  # not a scalar
        ([-1, 4], 0.5, "Softmax"),  # a reader that is not elementwise
    ],
)
def test_reshape_before_elementwise_work_kept(exit_shape, constant, extra_reader):
    assert slim(gpt2_mlp(exit_shape, constant, extra_reader))["Reshape"] == 2


@pytest.mark.parametrize(
    "inner, extra, attrs, x_shape, target, expected",
    [
        # TF's squeeze-and-excite: GlobalAveragePool -> Squeeze -> Reshape back: a no-op
        ("Squeeze", ["a"], {}, ["N", 8, 1, 1], [-1, 8, 1, 1], {"Relu": 1}),
        ("Unsqueeze", ["a"], {}, [2, 16], [-1, 4, 8], {"Reshape": 1, "Relu": 1}),
        ("Flatten", [], {"axis": 2}, [2, 3, 4], [4, 6], {"Reshape": 1, "Relu": 1}),
    ],
)
def test_a_reshape_of_a_squeeze_unsqueeze_or_flatten_reads_its_input(
    inner, extra, attrs, x_shape, target, expected
):
    """Reshape(op(x), shape) -> Reshape(x, shape): the ops relabel dims only (tf2onnx's
    EfficientNetB0 296 -> 242 nodes, as onnxsim; a Conv1D model's Unsqueeze -> Reshape)."""
    model = chain(
        [(inner, extra, attrs), ("Reshape", ["shape"], {})],
        x_shape,
        len(target),
        initializers=[axes("a", [1, 2] if inner == "Unsqueeze" else [2, 3]), axes("shape", target)],
    )
    assert slim(model) == expected


@pytest.mark.parametrize(
    "steps, x_shape, target, rank, expected",
    [
        # tf2onnx's Keras attention: one Reshape to [-1, 4, 1, 16] (197 -> 183 nodes as onnxsim)
        (
            [("Squeeze", ["a3"]), ("Unsqueeze", ["a2"])],
            ["N", 64],
            [-1, 4, 16, 1],
            4,
            {"Reshape": 1},
        ),
        ([("Unsqueeze", ["a1"])], ["N", 64], [-1, 8, 8], 4, {"Reshape": 1}),  # TFLite's Conv1D
        ([("Unsqueeze", ["a-1"])], ["N", 64], [-1, 8, 8], 4, {"Reshape": 1}),
        ([("Squeeze", [])], [2, 64], [2, 1, 64], 2, {}),  # every 1: a no-op Reshape at last
        ([("Squeeze", ["a1"])], ["N", 1], [-1, 1, 1], 2, {}),  # [-1, 1]: a no-op too
        # kept: a 0 copies x's dim at its index; no axes where a -1 may be 1; empty axes, which
        # onnx reads as none and ORT's unoptimized kernel as every 1 (found in review)
        ([("Squeeze", ["a2"])], ["N", 64], [0, -1, 1], 2, {"Reshape": 1, "Squeeze": 1}),
        ([("Squeeze", ["none"])], ["N", 6], [-1, 1, 6], 3, {"Reshape": 1, "Squeeze": 1}),
        ([("Squeeze", [])], ["N", 1], [-1, 1, 1], 1, {"Reshape": 1, "Squeeze": 1}),
    ],
)
def test_a_squeeze_or_unsqueeze_of_a_reshape_is_one_reshape(steps, x_shape, target, rank, expected):
    """Squeeze/Unsqueeze(Reshape(x, shape)) -> Reshape(x, shape without or with the 1s)."""
    model = chain(
        [("Reshape", ["shape"], {}), *((op, extra, {}) for op, extra in steps)],
        x_shape,
        rank,
        initializers=[
            axes("shape", target),
            axes("none", []),
            *(axes(f"a{k}", [k]) for k in (-1, 1, 2, 3)),
        ],
    )
    assert slim(model) == {**expected, "Relu": 1}


def test_a_reshape_copying_a_dim_of_a_squeeze_keeps_it():
    """A 0 in the target copies the dim at that index of the Reshape's own input (the
    Squeeze's output), which x does not have there."""
    model = chain(
        [("Squeeze", ["a"], {}), ("Reshape", ["shape"], {})],
        [2, 1, 3, 4],
        2,
        initializers=[axes("a", [1]), axes("shape", [0, -1])],
    )
    assert slim(model) == {"Squeeze": 1, "Reshape": 1, "Relu": 1}


@pytest.mark.parametrize(
    "perm, squeeze, expected",
    [
        (
            [2, 1, 0, 3],
            [2],
            {"Transpose": 1, "Relu": 1},
        ),  # the inserted dim moves to 2 and is dropped there
        ([0, 1, 2, 3], [0], {"Relu": 1}),  # nothing moves: the identity
    ],
)
def test_unsqueeze_transpose_squeeze_becomes_transpose(perm, squeeze, expected):
    steps = [("Unsqueeze", ["a1"], {}), ("Transpose", [], dict(perm=perm)), ("Squeeze", ["a2"], {})]
    model = chain(steps, [2, 3, 4], 3, initializers=[axes("a1", [0]), axes("a2", squeeze)])
    assert slim(model) == expected


def test_unsqueeze_transpose_squeeze_of_another_dim_kept():
    steps = [
        ("Unsqueeze", ["a1"], {}),
        ("Transpose", [], dict(perm=[0, 2, 1, 3])),
        ("Squeeze", ["a2"], {}),
    ]
    model = chain(steps, [2, 1, 4], 3, initializers=[axes("a1", [0]), axes("a2", [1])])
    # the Squeeze drops x's own size-1 dim, not the inserted one
    assert slim(model)["Transpose"] == 1


@pytest.mark.parametrize(
    "inner, outer, a, b",
    [
        ("Mul", "Mul", 2.0, 0.2),  # timm NFNet's residual branch: * 2 * gain * alpha
        ("Div", "Mul", 4.0, 3.0),
        ("Mul", "Div", [0.5], 3.0),
        ("Div", "Div", 2.0, [[8.0]]),
    ],
)
def test_two_scalings_by_scalars_become_one(inner, outer, a, b):
    model = chain(
        [(inner, ["a"], {}), (outer, ["b"], {})],
        ["N", 3, 4],
        3,
        initializers=[const("a", np.float32(a)), const("b", np.asarray(b, np.float32))],
    )
    assert slim(model) == {"Mul": 1, "Relu": 1}


@pytest.mark.parametrize(
    "a, b",
    [
        (2.0, np.ones(4, np.float32) * 3),  # not a scalar
        (1e30, 1e30),  # the product overflows float32
        (2.0, np.float32(3).reshape(1, 1, 1, 1)),  # adds a dim
    ],
)
def test_two_scalings_kept(a, b):
    model = chain(
        [("Mul", ["a"], {}), ("Mul", ["b"], {})],
        ["N", 3, 4],
        3 + (np.ndim(b) > 3),
        initializers=[const("a", np.float32(a)), const("b", np.asarray(b, np.float32))],
    )
    assert slim(model)["Mul"] == 2


def test_two_float16_scalings_whose_product_is_subnormal_kept():
    """1e-3 * 1e-3 is subnormal in float16 (about 4 significant bits): x * k would lose ~1%."""
    model = make_model(
        [node("Mul", ["x", "a"], "t"), node("Mul", ["t", "a"], "y")],
        [vi("x", TensorProto.FLOAT16, ["N", 4])],
        [vi("y", TensorProto.FLOAT16, ["N", 4])],
        [const("a", np.float16(1e-3))],
    )
    assert op_counts(optimized_proto(model))["Mul"] == 2


def test_a_gelus_half_is_not_merged_with_the_next_scaling():
    """ORT fuses x * (1 + erf(x / sqrt2)) * 0.5 into one Gelu only with the 0.5 in place."""
    nodes = [
        node("Div", ["x", "root2"], "d"),
        node("Erf", ["d"], "e"),
        node("Add", ["e", "one"], "e1"),
        node("Mul", ["x", "e1"], "g"),
        node("Mul", ["g", "half"], "h"),
        node("Mul", ["h", "gamma"], "y"),
    ]
    inits = [const(n, np.float32(v)) for n, v in (("root2", 2**0.5), ("one", 1), ("half", 0.5))]
    model = make_model(
        nodes,
        [vi("x", FLOAT, ["N", 8])],
        [vi("y", FLOAT, ["N", 8])],
        [*inits, const("gamma", np.float32(1.7015))],
        opset=17,
    )
    assert slim(model)["Mul"] == 3


def slice_step(name, starts, ends, axes_, steps):
    values = dict(starts=starts, ends=ends, axes=axes_, steps=steps)
    names = [f"{name}_{key}" for key in values]
    return ("Slice", names, {}), [
        const(n, np.array(v, np.int64)) for n, v in zip(names, values.values())
    ]


@pytest.mark.parametrize(
    "first, second",
    [
        (([1], [-1], [0], [1]), ([0], [5], [2], [2])),
        (([-2], [-5], [-1], [-1]), ([1, 0], [3, 2], [1, 0], [1, 1])),
    ],
)
def test_slices_on_disjoint_axes_merged(first, second):
    (s1, i1), (s2, i2) = slice_step("a", *first), slice_step("b", *second)
    model = chain([s1, s2], [4, 5, 6], 3, initializers=[*i1, *i2])
    assert slim(model)["Slice"] == 1


@pytest.mark.parametrize(
    "first, second",
    [
        (([1], [5], [1], [1]), ([1], [3], [1], [1])),  # same axis
        (([1], [5], [2], [1]), ([1], [3], [-1], [1])),  # same axis, one of them negative
    ],
)
def test_slices_on_the_same_axis_not_merged_blindly(first, second):
    (s1, i1), (s2, i2) = slice_step("a", *first), slice_step("b", *second)
    model = chain([s1, s2], [4, 5, 6], 3, initializers=[*i1, *i2])
    slim(model)  # outputs compared inside: a wrong merge would fail here


@pytest.mark.parametrize("seed", range(20))
def test_random_slice_pairs_keep_outputs(seed):
    """Random starts/ends/steps (negative, out of range, reversed) on random axes, which may or
    may not overlap."""
    rng = np.random.default_rng(seed)
    shape = [int(d) for d in rng.integers(2, 6, size=3)]
    steps, inits = [], []
    for name in ("a", "b"):
        count = int(rng.integers(1, 3))
        axes_ = [int(a) for a in rng.choice([-3, -2, -1, 0, 1, 2], size=count, replace=False)]
        if len({a % 3 for a in axes_}) < count:
            axes_ = axes_[:1]
        starts = [int(v) for v in rng.integers(-7, 7, size=len(axes_))]
        ends = [int(v) for v in rng.choice([-7, -1, 0, 2, 4, 7, 2**63 - 1], size=len(axes_))]
        signs = rng.choice([-1, 1], size=len(axes_))
        step, init = slice_step(
            name, starts, ends, axes_, [int(v) for v in signs * rng.integers(1, 3, size=len(axes_))]
        )
        steps.append(step)
        inits += init
    slim(chain(steps, shape, 3, initializers=inits))


def concat_model(inner_axis, outer_axis, share_inner=False):
    """y = Concat(x, Concat(a, b, axis=inner_axis), c, axis=outer_axis); `share_inner` also
    outputs Relu(ab)."""
    nodes = [
        node("Concat", ["a", "b"], "ab", axis=inner_axis),
        node("Concat", ["x", "ab", "c"], "y", axis=outer_axis),
    ]
    outputs = [vi("y", FLOAT, [None] * 3)]
    if share_inner:
        nodes.append(node("Relu", ["ab"], "z"))
        outputs.append(vi("z", FLOAT, [None] * 3))
    joined = [2, 3, 4]
    joined[inner_axis] *= 2
    shapes = {"x": joined, "a": [2, 3, 4], "b": [2, 3, 4], "c": joined}
    return make_model(nodes, [vi(name, FLOAT, shape) for name, shape in shapes.items()], outputs)


@pytest.mark.parametrize("inner_axis, outer_axis", [(1, 1), (-1, 2)])
def test_nested_concat_flattened(inner_axis, outer_axis):
    assert slim(concat_model(inner_axis, outer_axis)) == {"Concat": 1}


def test_nested_concat_other_axis_kept():
    assert slim(concat_model(0, 1))["Concat"] == 2


def test_nested_concat_shared_inner_kept():
    assert slim(concat_model(1, 1, share_inner=True))["Concat"] == 2


@pytest.mark.parametrize(
    "picks, allowzero, source",
    [
        ([("dim", 0), 2, 3, ("dim", 2)], 0, "x"),  # copy dim 0, infer the last
        (
            [("dim", 0), 2, 3, ("dim", 2)],
            1,
            "x",
        ),  # allowzero without literal zeros: copying is the same
        ([("dim", 0), -1], 0, "r"),  # the dims of another tensor with the same symbolic names
    ],
)
def test_reshape_to_traced_shape_becomes_constant(picks, allowzero, source):
    nodes, inits = shape_pieces(source, picks)
    nodes = [
        node("Relu", ["x"], "r"),
        *nodes,
        node("Reshape", ["r", "shape"], "y", allowzero=allowzero),
    ]
    model = make_model(
        nodes, [vi("x", FLOAT, ["N", 6, "H"])], [vi("y", FLOAT, [None] * len(picks))], inits
    )
    optimized = optimized_proto(model)
    for shape in ([2, 6, 5], [3, 6, 1]):
        assert_same_outputs(model, optimized, {"x": rand(*shape)})
    assert op_counts(optimized) == {"Relu": 1, "Reshape": 1}


def _flatten_of_unknown_rank(picks: int, allowzero: int = 0, tail=(-1,), x=(2, 3, 4)):
    """r = Reshape(x, s) with s a graph input (r's rank is unknown), then torch's flatten/view of
    r + 0.5 through a Relu: Reshape(relu, Concat(Shape(r)[0], ..., Shape(r)[picks-1], *tail))."""
    nodes = [node("Reshape", ["x", "s"], "r"), node("Add", ["r", "half"], "a")]
    nodes += [node("Relu", ["a"], "relu")]
    names = []
    for k in range(picks):  # one Shape per size() call, as torch exports them
        nodes += [
            node("Shape", ["r"], f"sh{k}"),
            node("Gather", [f"sh{k}", f"i{k}"], f"g{k}", axis=0),
            node("Unsqueeze", [f"g{k}", "zero"], f"u{k}"),
        ]
        names.append(f"u{k}")
    nodes += [
        node("Concat", [*names, "tail"], "shape", axis=0),
        node("Reshape", ["relu", "shape"], "y", allowzero=allowzero),
    ]
    inits = [const(f"i{k}", np.array(k, np.int64)) for k in range(picks)]
    inits += [
        const("zero", np.array([0], np.int64)),
        const("tail", np.array(tail, np.int64)),
        const("half", np.array(0.5, np.float32)),
    ]
    return make_model(
        nodes,
        [vi("x", FLOAT, list(x)), vi("s", TensorProto.INT64, ["k"])],
        [vi("y", FLOAT, [None] * (picks + len(tail)))],
        inits,
    )


@pytest.mark.parametrize("picks, target", [(1, [0, -1]), (2, [0, 0, -1])])
def test_flatten_of_a_tensor_of_unknown_rank_becomes_zero_minus_one(picks, target):
    # the dims are known only as "dim i of r": r + 0.5 and its Relu have r's shape, so 0 copies them
    model = _flatten_of_unknown_rank(picks)
    optimized = optimized_proto(model)
    assert op_counts(optimized) == {"Reshape": 2, "Add": 1, "Relu": 1}
    shapes = {t.name: numpy_helper.to_array(t).tolist() for t in optimized.graph.initializer}
    assert target in shapes.values()  # what OnnxSlim and ORT's ReshapeFusion write
    for dims in ([2, 3, 4], [6, 4, 1], [24, 1, 1]):
        feeds = {"x": rand(2, 3, 4), "s": np.array(dims, np.int64)}
        assert_same_outputs(model, optimized, feeds)


def test_reshape_with_allowzero_and_a_literal_zero_kept():
    # allowzero=1 reads 0 as 0: a traced dim can be neither 0 (copy) nor -1 (invalid beside a 0)
    model = _flatten_of_unknown_rank(1, allowzero=1, tail=(0, 4), x=(0, 3, 4))
    optimized = optimized_proto(model, check=False)
    assert op_counts(optimized)["Shape"] == 1
    feeds = {"x": rand(0, 3, 4), "s": np.array([0, 3, 4], np.int64)}
    assert_same_outputs(model, optimized, feeds)


def test_reshape_to_swapped_dims_kept():
    nodes, inits = shape_pieces("x", [("dim", 1), ("dim", 0)])
    nodes.append(node("Reshape", ["x", "shape"], "y"))
    model = make_model(nodes, [vi("x", FLOAT, ["N", "M"])], [vi("y", FLOAT, [None, None])], inits)
    optimized = optimized_proto(model)
    assert_same_outputs(model, optimized, {"x": rand(2, 3)})
    assert op_counts(optimized)["Shape"] == 1


@pytest.mark.parametrize(
    "row",
    [
        [node("Reshape", ["sh", "two_by_two"], "m"), node("Gather", ["m", "one"], "shape", axis=0)],
        [
            node("Unsqueeze", ["sh", "zero"], "m"),
            node("Gather", ["m", "zero_scalar"], "g", axis=0),
            node("Slice", ["g", "two", "four"], "shape"),
        ],
    ],
)
def test_reshape_to_a_row_of_a_reshaped_shape_kept_right(row):
    # Shape(x) as a 2-D tensor: a row of it is [c, d], not one element of the flattened shape
    inits = [
        const("two_by_two", np.array([2, 2], np.int64)),
        const("one", np.array(1, np.int64)),
        const("zero", np.array([0], np.int64)),
        const("zero_scalar", np.array(0, np.int64)),
        const("two", np.array([2], np.int64)),
        const("four", np.array([4], np.int64)),
    ]
    nodes = [node("Shape", ["x"], "sh"), *row, node("Reshape", ["z", "shape"], "y")]
    model = make_model(
        nodes,
        [vi("x", FLOAT, ["a", "b", "c", "d"]), vi("z", FLOAT, [3, 4])],
        [vi("y", FLOAT, [None, None])],
        inits,
    )
    optimized = optimized_proto(model, check=False)  # its random inputs would not fit z
    assert_same_outputs(model, optimized, {"x": rand(1, 1, 3, 4), "z": rand(3, 4)})


def test_transpose_transpose_and_reshape_reshape_collapse():
    steps = [
        ("Transpose", [], dict(perm=[1, 0, 2])),
        ("Transpose", [], dict(perm=[1, 0, 2])),
        ("Reshape", ["s1"], {}),
        ("Reshape", ["s2"], {}),
    ]
    model = chain(steps, [2, 3, 4], 2, initializers=[axes("s1", [6, 4]), axes("s2", [4, 6])])
    assert slim(model) == {"Reshape": 1, "Relu": 1}


# --- size()-based views on a fully dynamic input: torch's x.view(x.size(0), x.size(1), -1)

#: Inputs [N, C, H, W] with every dim different, and with some dims 1.
DYNAMIC = ((2, 3, 4, 5), (1, 2, 1, 3))


def _reshapes(x_shape, *targets, allowzero=0):
    """x -> Reshape(., target) for each target -> Relu -> y. A target is a constant list, or
    picks for `shape_pieces` on x when it has a ("dim", i) in it."""
    nodes, inits, previous = [], [], "x"
    for k, target in enumerate(targets):
        if any(isinstance(pick, tuple) for pick in target):
            pieces, more = shape_pieces("x", target, out=f"s{k}")
            nodes, inits = nodes + pieces, inits + more
        else:
            inits.append(const(f"s{k}", np.array(target, np.int64)))
        nodes.append(node("Reshape", [previous, f"s{k}"], f"r{k}", allowzero=allowzero))
        previous = f"r{k}"
    nodes.append(node("Relu", [previous], "y"))
    outputs = [vi("y", FLOAT, [None] * len(targets[-1]))]
    return make_model(nodes, [vi("x", FLOAT, list(x_shape))], outputs, inits)


def _reshape_targets(model):
    """The constant shape (or None) of each Reshape, in order."""
    shapes = {t.name: numpy_helper.to_array(t).tolist() for t in model.graph.initializer}
    return [shapes.get(n.input[1]) for n in model.graph.node if n.op_type == "Reshape"]


@pytest.mark.parametrize(
    "picks, allowzero, targets",
    [
        ([("dim", 0), ("dim", 1), -1], 0, [[0, 0, -1]]),  # x.view(x.size(0), x.size(1), -1)
        ([("dim", 0), ("dim", 1), -1], 1, [[0, 0, -1]]),  # no literal 0: copying is the same
        ([1, ("dim", 1), -1], 0, [[1, 0, -1]]),  # axis 1 at position 1, after a constant
        ([("dim", 0), ("dim", 1), ("dim", 2), -1, 1], 0, [[0, 0, 0, -1, 1]]),
        ([-1, ("dim", 1), ("dim", 2), ("dim", 3)], 0, []),  # x's own shape: the Reshape goes
        ([("dim", 0), ("dim", 1), ("dim", 2), ("dim", 3)], 0, []),
    ],
)
def test_view_by_sizes_at_their_own_positions_becomes_constant(picks, allowzero, targets):
    model = _reshapes(["N", "C", "H", "W"], picks, allowzero=allowzero)
    optimized = optimized_proto(model)
    assert _reshape_targets(optimized) == targets
    assert not {"Shape", "Gather", "Concat"} & set(op_counts(optimized))
    for shape in DYNAMIC:
        assert_same_outputs(model, optimized, {"x": rand(*shape)})


@pytest.mark.parametrize(
    "picks",
    [
        [("dim", 1), ("dim", 0), -1],  # swapped: a 0 would copy the other dim
        [("dim", 0), ("dim", 2), -1],  # H at position 1, where x has C
        [("dim", 0), -1, ("dim", 3)],  # W at position 2, where x has H
    ],
)
def test_view_by_sizes_at_other_positions_kept(picks):
    model = _reshapes(["N", "C", "H", "W"], picks)
    optimized = optimized_proto(model)
    assert op_counts(optimized)["Shape"] == 1
    for shape in DYNAMIC:
        assert_same_outputs(model, optimized, {"x": rand(*shape)})


@pytest.mark.parametrize(
    "x_shape, picks, target",
    [
        (["N", "C", "H", "W"], [-1, ("dim", 1), ("prod", 2, 3)], [0, 0, -1]),  # the -1 is N
        ([1, "C", "H", "W"], [-1, ("dim", 1), ("prod", 2, 3)], [1, 0, -1]),  # ... a constant 1
        (["N", "C", "H", "W"], [("dim", 0), -1, ("prod", 2, 3)], [0, 0, -1]),  # ... C
        (["N", 3, "H", "W"], [("dim", 0), -1, ("prod", 2, 3)], [0, 3, -1]),
        ([2, "C", 3, "W"], [-1, ("prod", 1, 3)], [6, -1]),  # the -1 is 2 * 3
    ],
)
def test_view_by_products_of_sizes_resolved_by_the_element_count(x_shape, picks, target):
    model = _reshapes(x_shape, picks)
    optimized = optimized_proto(model)
    assert _reshape_targets(optimized) == [target]
    assert not {"Shape", "Gather", "Mul", "Concat"} & set(op_counts(optimized))
    for shape in ((2, 3, 4, 5), (1, 3, 1, 2)):
        shape = [d if isinstance(d, int) else n for d, n in zip(x_shape, shape)]
        assert_same_outputs(model, optimized, {"x": rand(*shape)})


@pytest.mark.parametrize(
    "picks",
    [
        [-1, ("prod", 2, 3)],  # the -1 is N * C, which no single dim or constant gives
        [("prod", 0, 1), ("dim", 2), -1],  # N * C at position 0: no 0 copies it
        [-1, ("dim", 2), ("prod", 1, 3)],  # H at position 1, where x has C
        [("prod", 0, 1), -1],  # the -1 is H * W, at position 1, where x has C
        [("dim", 0), ("prod", 1, 2), -1],  # the -1 is W, at position 2, where x has H
    ],
)
def test_view_by_products_of_sizes_that_the_count_cannot_decide_kept(picks):
    model = _reshapes(["N", "C", "H", "W"], picks)
    optimized = optimized_proto(model)
    assert op_counts(optimized)["Shape"] == 1
    for shape in ((2, 3, 4, 5), (1, 2, 1, 3)):
        assert_same_outputs(model, optimized, {"x": rand(*shape)})


@pytest.mark.parametrize(
    "conv, target",
    [
        ({"pads": [1, 1, 1, 1]}, [0, 6, -1]),  # 3x3 "same": y's H, W are x's
        ({"auto_pad": "SAME_UPPER"}, [0, 6, -1]),
        ({"pads": [2, 2, 2, 2], "dilations": [2, 2]}, [0, 6, -1]),
        ({"pads": [1, 1, 1, 1], "strides": [2, 2]}, None),  # stride 2: y's H is not x's
        ({"pads": [0, 0, 1, 1]}, None),  # pads 0 + 1 on H: H - 1
    ],
)
def test_view_by_input_sizes_after_same_convs(conv, target):
    """torch: `b, c, h, w = x.shape`, then `conv(x).view(b, -1, h * w)`."""
    weight = const("w", RNG.standard_normal((6, 3, 3, 3)).astype(np.float32))
    pieces, inits = shape_pieces("x", [("dim", 0), -1, ("prod", 2, 3)])
    nodes = [
        node("Conv", ["x", "w"], "c", kernel_shape=[3, 3], **conv),
        *pieces,
        node("Reshape", ["c", "shape"], "r"),
        node("Relu", ["r"], "y"),
    ]
    model = make_model(
        nodes, [vi("x", FLOAT, ["N", 3, "H", "W"])], [vi("y", FLOAT, [None] * 3)], [weight, *inits]
    )
    optimized = optimized_proto(model, check=False)  # stride 2: the view fails at run time
    assert _reshape_targets(optimized) == [target]
    if target is not None:
        for shape in ((2, 3, 6, 7), (1, 3, 5, 4)):
            assert_same_outputs(model, optimized, {"x": rand(*shape)})


@pytest.mark.parametrize(
    "picks, where_left",
    [
        ([("dim", 0), 4, ("dim", 2), ("dim", 3)], 0),  # no size is -1: the shape itself
        ([("dim", 0), -1, ("dim", 2), ("dim", 3)], 1),  # -1 at one place: the Where stays
    ],
)
def test_expand_shape_where_no_size_is_minus_one_becomes_the_shape(picks, where_left):
    """torch: `x.expand(y.size(0), 4, y.size(2), y.size(3))` writes the shape s as
    Where(Equal(s, -1), 1, s)."""
    pieces, inits = shape_pieces("y", picks)
    nodes = [
        *pieces,
        node("Equal", ["shape", "minus_one"], "is_free"),
        node("Where", ["is_free", "ones", "shape"], "sizes"),
        node("Expand", ["x", "sizes"], "e"),
        node("Relu", ["e"], "z"),  # an Add with y would make the Expand itself needless
    ]
    inits += [const("minus_one", np.array(-1, np.int64)), const("ones", np.ones(4, np.int64))]
    inputs = [vi("x", FLOAT, [1, 4, 1, 1]), vi("y", FLOAT, ["N", 4, "H", "W"])]
    model = make_model(nodes, inputs, [vi("z", FLOAT, [None] * 4)], inits)
    optimized = optimized_proto(model)
    counts = op_counts(optimized)
    assert (counts["Where"], counts["Equal"]) == (where_left, where_left)
    for shape in ((2, 4, 3, 5), (1, 4, 1, 2)):
        feeds = {"x": rand(1, 4, 1, 1), "y": rand(*shape)}
        assert_same_outputs(model, optimized, feeds)


@pytest.mark.parametrize(
    "x_shape, targets, expected",
    [
        # x.flatten(2) ... .reshape(b, c, h, w) with b, c, h, w = x.shape: back to x, no Reshape
        (
            ["N", "C", "H", "W"],
            [[("dim", 0), ("dim", 1), -1], [("dim", i) for i in range(4)]],
            [],
        ),
        (["N", 3, 4, "W"], [[0, 3, -1], [0, 3, 4, -1]], []),  # constant, a 0 beside a -1
        # x.flatten(1).view(x.size(0), x.size(1), -1): one Reshape of x
        (["N", "C", "H", "W"], [[0, -1], [("dim", 0), ("dim", 1), -1]], [[0, 0, -1]]),
    ],
)
def test_reshape_of_a_reshape_becomes_one_reshape(x_shape, targets, expected):
    model = _reshapes(x_shape, *targets)
    optimized = optimized_proto(model)
    assert _reshape_targets(optimized) == expected
    assert "Shape" not in op_counts(optimized)
    for shape in DYNAMIC if "C" in x_shape else ((2, 3, 4, 5), (1, 3, 4, 1)):
        assert_same_outputs(model, optimized, {"x": rand(*shape)})


def _size_flatten():
    """x.view(x.size(0), -1) as TorchScript writes it."""
    nodes, inits = shape_pieces("x", [("dim", 0), -1])
    return [*nodes, node("Reshape", ["x", "shape"], "r")], inits


def _flatten_op():
    """torch.flatten(x, 1) as TorchScript writes it."""
    return [node("Flatten", ["x"], "r", axis=1)], []


def _dynamo_flatten():
    """torch.flatten(x, 1) as torch's dynamo exporter writes it: Shape slices, the product of
    the flattened sizes, allowzero=1."""
    nodes = [node("Shape", ["x"], "d0", start=0, end=1)]
    for i in (1, 2, 3):
        nodes += [
            node("Shape", ["x"], f"d{i}", start=i, end=i + 1),
            node("Squeeze", [f"d{i}"], f"n{i}"),
        ]
    nodes += [
        node("Mul", ["n1", "n2"], "m"),
        node("Mul", ["m", "n3"], "p"),
        node("Reshape", ["p", "one"], "rest"),
        node("Concat", ["d0", "rest"], "shape", axis=0),
        node("Reshape", ["x", "shape"], "r", allowzero=1),
    ]
    return nodes, [const("one", np.array([1], np.int64))]


@pytest.mark.parametrize(
    "build, counts, targets",
    [
        (_size_flatten, {"Reshape": 1, "Relu": 1}, [[0, -1]]),
        (_flatten_op, {"Flatten": 1, "Relu": 1}, []),
        (_dynamo_flatten, {"Reshape": 1, "Relu": 1}, [[0, -1]]),
    ],
)
def test_flatten_forms_leave_no_shape_computation(build, counts, targets):
    nodes, inits = build()
    nodes.append(node("Relu", ["r"], "y"))
    model = make_model(
        nodes, [vi("x", FLOAT, ["N", "C", "H", "W"])], [vi("y", FLOAT, [None, None])], inits
    )
    optimized = optimized_proto(model)
    assert op_counts(optimized) == counts
    assert _reshape_targets(optimized) == targets
    for shape in DYNAMIC:
        assert_same_outputs(model, optimized, {"x": rand(*shape)})


def test_reshape_of_a_reshape_copying_an_inferred_dim_kept():
    # x.view(-1, 2, x.size(1)).view(... [0, -1]): the outer 0 copies the inner -1 (N / 2), which
    # no dim of x gives, and the outer -1 is 2 * M: [-1, -1] is not a shape
    model = _reshapes(["N", "M"], [-1, 2, ("dim", 1)], [0, -1])
    optimized = optimized_proto(model, check=False)  # its inputs need an even N
    assert op_counts(optimized)["Reshape"] == 2
    for shape in ((4, 3), (2, 1)):
        assert_same_outputs(model, optimized, {"x": rand(*shape)})


# --- Reshape to a dim proved equal through the graph (EfficientNet's x.view(bs, -1)) -----------


def _batch_flatten(body, inputs, source="x", extra=(), tail=(), dims=(0,)):
    """`body` (nodes ending in "p"), then Reshape(p, Concat(Shape(source)[d] for d in dims, -1))
    -> `tail`: with dims (0,) the flatten EfficientNet-PyTorch writes with `bs = inputs.size(0)`
    taken at the top of forward.

    No value_info: shape inference alone names (or loses) the dims of the tensors in between.
    """
    pieces, inits = shape_pieces(source, [*(("dim", d) for d in dims), -1], out="target")
    nodes = [*body, *pieces, node("Reshape", ["p", "target"], "flat" if tail else "y"), *tail]
    rank = 2 if tail else len(dims) + 1
    return make_model(nodes, inputs, [vi("y", FLOAT, [None] * rank)], [*inits, *extra])


def _conv(name, source, out, c_in, c_out, k, pads=None):
    weight = const(f"{name}_w", RNG.standard_normal((c_out, c_in, k, k)).astype(np.float32) * 0.3)
    bias = const(f"{name}_b", RNG.standard_normal(c_out).astype(np.float32))
    pads = [k // 2] * 4 if pads is None else pads
    return node("Conv", [source, f"{name}_w", f"{name}_b"], out, pads=pads), [weight, bias]


def _efficientnet_flatten():
    """x [N,3,8,8] -> Pad -> Conv -> Relu -> Add(Conv 1x1, Conv 3x3) -> GlobalAveragePool ->
    flatten by Shape(x)[0] -> Gemm.

    The pads are computed (ConstantOfShape, Concat: torch's ZeroPad2d), so shape inference names
    no dim of the padded tensor, nor the batch dim of anything after it: only the graph proves it.
    """
    stem, w0 = _conv("c0", "xp", "c0", 3, 4, 3, pads=[0, 0, 0, 0])
    left, w1 = _conv("c1", "r", "c1", 4, 4, 1)
    right, w2 = _conv("c2", "r", "c2", 4, 4, 3)
    body = [
        helper.make_node(
            "ConstantOfShape",
            ["four"],
            ["zeros"],
            value=helper.make_tensor("v", TensorProto.INT64, [1], [0]),
        ),
        node("Concat", ["zeros", "spatial"], "pads", axis=0),
        node("Pad", ["x", "pads"], "xp"),
        stem,
        node("Relu", ["c0"], "r"),
        left,
        right,
        node("Add", ["c1", "c2"], "s"),
        node("GlobalAveragePool", ["s"], "p"),
    ]
    fc = [
        const("four", np.array([4], np.int64)),
        const("spatial", np.array([0, 0, 1, 1], np.int64)),
        const("fc_w", RNG.standard_normal((4, 5)).astype(np.float32)),
        const("fc_b", RNG.standard_normal(5).astype(np.float32)),
    ]
    gemm = node("Gemm", ["flat", "fc_w", "fc_b"], "y")
    inputs = [vi("x", FLOAT, ["N", 3, 8, 8])]
    return _batch_flatten(body, inputs, extra=[*w0, *w1, *w2, *fc], tail=[gemm])


def test_flatten_by_the_input_batch_through_convs_and_a_residual_add_becomes_zero_minus_one():
    model = _efficientnet_flatten()
    optimized = optimized_proto(model)
    counts = op_counts(optimized)
    assert not {"Shape", "Gather", "Unsqueeze", "Concat"} & set(counts), counts
    reshape = next(n for n in optimized.graph.node if n.op_type == "Reshape")
    shapes = {t.name: numpy_helper.to_array(t).tolist() for t in optimized.graph.initializer}
    assert shapes[reshape.input[1]] == [0, -1]
    for batch in (1, 3):
        assert_same_outputs(model, optimized, {"x": rand(batch, 3, 8, 8)})


def _padded_flatten(body, extra_inputs=(), extra=(), dims=(0,), channels=3):
    """x [N,channels,8,8] -> Pad by computed pads to xp [N,channels,9,9] (no dim of it named) ->
    `body` (ending in "p") -> Reshape(p, Concat(Shape(x)[d] for d in dims, -1))."""
    pad = [
        helper.make_node(
            "ConstantOfShape",
            ["four"],
            ["zeros"],
            value=helper.make_tensor("v", TensorProto.INT64, [1], [0]),
        ),
        node("Concat", ["zeros", "spatial"], "pads", axis=0),
        node("Pad", ["x", "pads"], "xp"),
    ]
    inits = [
        const("four", np.array([4], np.int64)),
        const("spatial", np.array([0, 0, 1, 1], np.int64)),
        *extra,
    ]
    inputs = [vi("x", FLOAT, ["N", channels, 8, 8]), *extra_inputs]
    return _batch_flatten([*pad, *body], inputs, extra=inits, dims=dims)


def _transposes():
    return [
        node("Transpose", ["xp"], "t", perm=[2, 0, 1, 3]),  # [H, N, C, W]
        node("Relu", ["t"], "r"),
        node("Transpose", ["r"], "p", perm=[1, 2, 0, 3]),  # [N, C, H, W]
    ], []


def _channel_concat():
    left, w1 = _conv("c1", "xp", "c1", 3, 2, 3)
    right, w2 = _conv("c2", "xp", "c2", 3, 4, 1)
    body = [left, right, node("Concat", ["c1", "c2"], "c", axis=1)]
    return [*body, node("GlobalAveragePool", ["c"], "p")], [*w1, *w2]


def _zero_padded_on_batch():
    pads = const("pads2", np.array([0, 0, 1, 2, 0, 0, 2, 1], np.int64))
    return [
        node("Pad", ["xp", "pads2"], "q"),
        node("MaxPool", ["q"], "m", kernel_shape=[2, 2]),
        node("Mul", ["m", "bias"], "p"),
    ], [pads, const("bias", np.full((3, 1, 1), 0.5, np.float32))]


def _rows():
    # the Reshape of a Reshape is one Reshape of xp (the order of the elements is all it keeps)
    return [node("Reshape", ["xp", "rows"], "p")], [const("rows", np.array([-1, 9], np.int64))]


def _batch_moved():
    """p is [3, N, 9, 9]: the batch moved to axis 1, so no 0 copies it, but the element count
    gives the view as [-1, 243]."""
    return [node("Transpose", ["xp"], "t", perm=[1, 0, 2, 3]), node("Relu", ["t"], "p")], []


@pytest.mark.parametrize(
    "build", [_transposes, _channel_concat, _zero_padded_on_batch, _rows, _batch_moved]
)
def test_flatten_by_a_batch_traced_through_the_graph_becomes_constant(build):
    body, extra = build()
    model = _padded_flatten(body, extra=extra)
    optimized = optimized_proto(model)
    assert "Shape" not in op_counts(optimized), op_counts(optimized)
    for batch in (1, 3):
        assert_same_outputs(model, optimized, {"x": rand(batch, 3, 8, 8)})


@pytest.mark.parametrize("dims, target", [((0, 1), [0, 0, -1]), ((1, 0), None)])
def test_view_by_sizes_traced_through_the_graph_on_other_axes(dims, target):
    # p's axes 0 and 1 are x's through Pad (unpadded there) and two Transposes, whose names
    # shape inference loses: x.size(1) is still copied at position 1, and nowhere else
    body, extra = _transposes()
    model = _padded_flatten(body, extra=extra, dims=dims, channels="C")
    optimized = optimized_proto(model)
    assert _reshape_targets(optimized) == [target]
    for shape in ((1, 3, 8, 8), (3, 2, 8, 8)):
        assert_same_outputs(model, optimized, {"x": rand(*shape)})


def _batch_reshaped():
    # ... but after a Relu the Reshape to rows is the end of the proof: its dim 0 is inferred
    return [node("Reshape", ["xp", "rows"], "r"), node("Relu", ["r"], "p")], [
        const("rows", np.array([-1, 9], np.int64))
    ]


def _batch_padded():
    pads = const("pads2", np.array([1, 0, 0, 0, 0, 0, 0, 0], np.int64))
    return [node("Pad", ["xp", "pads2"], "p")], [pads]


def _batch_broadcast():
    # xp [N,...] + z [M,...]: with N = 1 the sum has z's batch, not x's
    return [node("Add", ["xp", "z"], "p")], []


def _batch_of_a_matmul():
    # [9,9] @ [N,3,9,9] is [N,3,9,9]: the rules do not trace MatMul, but onnx's inference, once
    # the pads fold, relates its batch to x's N (the Shape goes; outputs checked below)
    return [node("MatMul", ["square", "xp"], "p")], [
        const("square", RNG.standard_normal((9, 9)).astype(np.float32))
    ]


@pytest.mark.parametrize(
    ("build", "shapes"),
    [(_batch_reshaped, 1), (_batch_padded, 1), (_batch_broadcast, 1), (_batch_of_a_matmul, 0)],
)
def test_flatten_by_a_batch_the_reshaped_tensor_may_not_have_kept(build, shapes):
    body, extra = build()
    extra_inputs = [vi("z", FLOAT, ["M", 3, 9, 9])] if build is _batch_broadcast else []
    model = _padded_flatten(body, extra_inputs, extra)
    optimized = optimized_proto(model, check=False)
    assert op_counts(optimized)["Shape"] == shapes
    for batch in (1, 3):
        feeds = {"x": rand(batch, 3, 8, 8)}
        if extra_inputs:
            feeds["z"] = rand(4 - batch, 3, 9, 9)
        assert_same_outputs(model, optimized, feeds)


def test_flatten_after_hundreds_of_residual_adds_becomes_zero_minus_one():
    # each Add's operands both go back to the previous one: nested 200 deep, traced without
    # recursion, each op once
    body, weights, previous = [], [], "xp"
    for k in range(200):
        conv, w = _conv(f"b{k}", previous, f"b{k}", 3, 3, 1)
        weights += [const(w[0].name, numpy_helper.to_array(w[0]) * 0.03), w[1]]
        body += [conv, node("Add", [previous, f"b{k}"], f"s{k}")]
        previous = f"s{k}"
    body.append(node("GlobalAveragePool", [previous], "p"))
    model = _padded_flatten(body, extra=weights)
    optimized = optimized_proto(model)
    assert "Shape" not in op_counts(optimized)
    for batch in (1, 3):
        assert_same_outputs(model, optimized, {"x": rand(batch, 3, 8, 8)}, rtol=1e-3, atol=1e-4)


def test_reshape_to_more_dims_than_a_broadcast_output_has():
    """Reshape(Add(a, b), Shape(y)) with y of higher rank: the traced dims beyond x's rank prove
    nothing (this crashed the dim-root proof)."""
    nodes = [
        helper.make_node("Add", ["a", "b"], ["x"]),
        helper.make_node("Shape", ["y"], ["s"]),
        helper.make_node("Reshape", ["x", "s"], ["out"]),
    ]
    model = make_model(
        nodes,
        [vi("a", FLOAT, ["N", 64]), vi("b", FLOAT, ["N", 64]), vi("y", FLOAT, ["N", 4, "H", "W"])],
        [vi("out", FLOAT, ["N", 4, "H", "W"])],
    )
    optimized = optimized_proto(model, check=False)
    feeds = {"a": rand(2, 64), "b": rand(2, 64), "y": rand(2, 4, 4, 4)}
    assert_same_outputs(model, optimized, feeds)
