"""No-op removal (`remove-no-ops`): a tiny graph per case, outputs compared on ORT before/after."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import (
    FLOAT,
    INT64,
    assert_same_outputs,
    const,
    make_model,
    op_counts,
    optimized_proto,
    shape_pieces,
    vi,
)
from onnx import TensorProto, helper

from onnxslim.runtime import ort_op_counts

INT64_MAX = 2**63 - 1


def slim(model, **options):
    """Optimize, assert ORT outputs match the original on two random inputs; return op counts."""
    optimized = optimized_proto(model, **options)
    assert_same_outputs(model, optimized, seeds=(0, 1))
    return op_counts(optimized)


def unary(
    op_type, x_shape, *inputs, initializers=(), opset=17, out_shape=None, dtype=FLOAT, **attrs
):
    """x -> op_type(x, *inputs) -> Relu (or Neg for ints) -> y."""
    last = "Relu" if dtype == FLOAT else "Neg"
    nodes = [
        helper.make_node(op_type, ["x", *inputs], ["t"], **attrs),
        helper.make_node(last, ["t"], ["y"]),
    ]
    out_shape = out_shape if out_shape is not None else [None] * len(x_shape)
    return make_model(
        nodes,
        [vi("x", dtype, x_shape)],
        [vi("y", dtype, out_shape)],
        list(initializers),
        opset=opset,
    )


@pytest.mark.parametrize(
    "shape, target, allowzero",
    [
        ([2, 3, 4], [2, 3, 4], 0),
        (["N", 3, 4], [0, 3, -1], 0),
        (["N", 3, 4], [0, 0, 4], 0),
        ([2, 0, 4], [2, 0, 4], 1),
        (["N", 3, 4], [-1, 3, 4], 0),
    ],
)
def test_reshape_to_same_shape_removed(shape, target, allowzero):
    model = unary(
        "Reshape",
        shape,
        "s",
        initializers=[const("s", np.array(target, np.int64))],
        allowzero=allowzero,
    )
    assert slim(model)["Reshape"] == 0


@pytest.mark.parametrize(
    "shape, target",
    [
        ([2, 3, 4], [3, 2, 4]),  # same rank, other dims
        ([2, 3, 4], [6, 4]),  # rank changes
        (["N", 3, 4], [0, 4, 3]),  # static dims swapped
        ([2, 3, 4], [2, -1, 3]),  # -1 takes what is left: 4, not 3
    ],
)
def test_reshape_that_changes_shape_kept(shape, target):
    model = unary(
        "Reshape",
        shape,
        "s",
        initializers=[const("s", np.array(target, np.int64))],
        out_shape=[None] * len(target),
    )
    assert slim(model)["Reshape"] == 1


@pytest.mark.parametrize("mode", ["constant", "reflect", "edge"])
def test_zero_pad_removed_any_mode(mode):
    model = unary(
        "Pad", [1, 2, 4, 4], "p", initializers=[const("p", np.zeros(8, np.int64))], mode=mode
    )
    assert slim(model)["Pad"] == 0


def test_zero_pad_attribute_form_removed():
    model = unary("Pad", [1, 2, 4, 4], opset=10, pads=[0] * 8)
    assert slim(model)["Pad"] == 0


def test_nonzero_pad_kept():
    model = unary(
        "Pad",
        [1, 2, 4, 4],
        "p",
        initializers=[const("p", np.array([0, 0, 1, 0, 0, 0, 0, 0], np.int64))],
    )
    assert slim(model)["Pad"] == 1


def test_concat_of_one_removed():
    assert slim(unary("Concat", [2, 3], axis=1))["Concat"] == 0


def test_split_into_one_removed():
    assert slim(unary("Split", [2, 3], axis=1, num_outputs=1, opset=18))["Split"] == 0


def test_split_into_two_kept_even_if_one_output_is_unused():
    nodes = [helper.make_node("Split", ["x"], ["a", "b"], axis=1, num_outputs=2)]
    model = make_model(nodes, [vi("x", FLOAT, [2, 4])], [vi("a", FLOAT, [2, 2])], opset=18)
    assert slim(model)["Split"] == 1


@pytest.mark.parametrize(
    "shape, starts, ends, axes",
    [
        (["N", 5], [0, 0], [INT64_MAX, 5], [0, 1]),  # several axes (onnxscript handles one)
        ([4, 5], [-4, 0], [4, 100], [0, -1]),  # negative start reaching the front, end past the end
        (["N", 5], [0], [INT64_MAX], None),  # no axes/steps inputs
    ],
)
def test_full_slice_removed(shape, starts, ends, axes):
    inits = [const("s", np.array(starts, np.int64)), const("e", np.array(ends, np.int64))]
    inputs = ["s", "e"]
    if axes is not None:
        inits += [const("a", np.array(axes, np.int64)), const("st", np.ones(len(axes), np.int64))]
        inputs += ["a", "st"]
    assert slim(unary("Slice", shape, *inputs, initializers=inits))["Slice"] == 0


def test_full_slice_attribute_form_removed():
    model = unary("Slice", [3, 5], opset=9, starts=[0, 0], ends=[3, INT64_MAX], axes=[0, 1])
    assert slim(model)["Slice"] == 0


@pytest.mark.parametrize(
    "starts, ends, steps",
    [
        ([0], [4], [1]),  # cuts the last element
        ([-1], [-INT64_MAX], [-1]),  # full range, reversed
        ([0], [INT64_MAX], [2]),  # every other element
    ],
)
def test_cutting_slice_kept(starts, ends, steps):
    inits = [
        const(n, np.array(v, np.int64))
        for n, v in (("s", starts), ("e", ends), ("a", [1]), ("st", steps))
    ]
    assert slim(unary("Slice", [3, 5], "s", "e", "a", "st", initializers=inits))["Slice"] == 1


@pytest.mark.parametrize(
    "op_type, shape, axes, keepdims, opset, left",
    [
        ("ReduceSum", ["N", 1, 3], [1], 0, 17, "Reshape"),  # hummingbird's sum of one tree
        ("ReduceMax", ["N", 1, 3], [-2], 1, 18, None),
        ("ReduceMean", [2, 1, 1, "W"], [1, 2], 0, 13, "Reshape"),
        ("ReduceProd", ["N", "M", 1], [2], 0, 18, "Reshape"),  # N and M keep their places: [0, 0]
        ("ReduceMin", [1, 4], [0], 0, 11, "Reshape"),
    ],
)
def test_a_reduction_over_axes_of_size_1_is_a_reshape_or_nothing(
    op_type, shape, axes, keepdims, opset, left
):
    axes_first = op_type == "ReduceSum" or opset >= 18
    inputs = ["axes"] if axes_first else []
    initializers = [const("axes", np.array(axes, np.int64))] if axes_first else []
    extra = {} if axes_first else {"axes": axes}
    model = unary(
        op_type, shape, *inputs, initializers=initializers, opset=opset, keepdims=keepdims, **extra
    )
    counts = slim(model)
    assert counts[op_type] == 0 and counts["Reshape"] == (left == "Reshape")


@pytest.mark.parametrize(
    "op_type, shape, axes",
    [
        ("ReduceSum", ["N", 2, 3], [1]),  # two elements
        ("ReduceSum", ["N", "one", 3], [1]),  # a size not known to be 1
        ("ReduceL2", ["N", 1, 3], [1]),  # |x|, not x
        ("ReduceSum", [1, "N", 3, "M"], [0]),  # N moves to 0, M to 2: not said by one Reshape
    ],
)
def test_a_reduction_over_more_than_one_element_or_not_the_element_is_kept(op_type, shape, axes):
    model = unary(
        op_type,
        shape,
        "axes",
        initializers=[const("axes", np.array(axes, np.int64))],
        opset=18,
        keepdims=0,
    )
    assert slim(model)[op_type] == 1


@pytest.mark.parametrize(
    "op_type, value, const_first",
    [
        ("Mul", np.ones([4], np.float32), False),
        ("Mul", np.ones([3, 1], np.float32), True),
        ("Add", np.zeros([1, 3, 4], np.float32), False),
        ("Add", np.zeros([4], np.float32), True),
        ("Sub", np.zeros([3, 4], np.float32), False),
        ("Div", np.ones([1], np.float32), False),
    ],
)
def test_neutral_element_tensor_removed(op_type, value, const_first):
    inputs = ["c", "x"] if const_first else ["x", "c"]
    nodes = [helper.make_node(op_type, inputs, ["t"]), helper.make_node("Relu", ["t"], ["y"])]
    model = make_model(
        nodes, [vi("x", FLOAT, ["N", 3, 4])], [vi("y", FLOAT, ["N", 3, 4])], [const("c", value)]
    )
    assert slim(model)[op_type] == 0


@pytest.mark.parametrize("form", ["one over", "divide", "half", "scalar scale", "two over"])
def test_an_rmsnorms_scale_of_ones_is_kept_for_orts_fusion(form):
    """A random-init LLaMA's RMSNorm scale is all ones: without the Mul, ORT no longer fuses the
    norm into SimplifiedLayerNormalization (its RMSNorm + MatMul ran 1.07x the time); in half
    precision too (a Cast before the scale). A scalar scale or 2 / Sqrt ORT does not fuse: x*1
    goes."""
    nodes = [
        helper.make_node("Pow", ["x", "two"], ["p"]),
        helper.make_node("ReduceMean", ["p"], ["m"], axes=[-1]),
        helper.make_node("Add", ["m", "eps"], ["a"]),
        helper.make_node("Sqrt", ["a"], ["s"]),
    ]
    if form in ("divide", "half"):
        nodes.append(helper.make_node("Div", ["x", "s"], ["n"]))
    else:
        numerator = "two" if form == "two over" else "one"
        nodes += [
            helper.make_node("Div", [numerator, "s"], ["r"]),
            helper.make_node("Mul", ["x", "r"], ["n"]),
        ]
    dtype = TensorProto.FLOAT16 if form == "half" else FLOAT
    if form == "half":
        nodes.append(helper.make_node("Cast", ["n"], ["n16"], to=TensorProto.FLOAT16))
    nodes += [helper.make_node("Mul", ["n16" if form == "half" else "n", "g"], ["y"])]
    scale = np.ones((), np.float32) if form == "scalar scale" else np.ones(64, np.float32)
    constants = [
        const("two", np.array(2, np.float32)),
        const("eps", np.array(1e-6, np.float32)),
        const("one", np.array(1, np.float32)),
        const("g", scale.astype(np.float16 if form == "half" else np.float32)),
    ]
    model = make_model(nodes, [vi("x", FLOAT, [2, 5, 64])], [vi("y", dtype, [2, 5, 64])], constants)
    kept = form in ("one over", "divide", "half")
    assert slim(model)["Mul"] == int(kept) + (form not in ("divide", "half"))
    fused = ort_op_counts(optimized_proto(model))["SimplifiedLayerNormalization"]
    assert fused == int(kept)


def test_neutral_element_int_removed():
    model = unary(
        "Add", [2, 3], "c", initializers=[const("c", np.zeros([3], np.int64))], dtype=INT64
    )
    assert slim(model)["Add"] == 0


@pytest.mark.parametrize(
    "x_shape, c_shape, op_type, const_first",
    [
        ([3, 4], [2, 3, 4], "Mul", False),  # adds a dim
        (["N", 1], [4], "Mul", False),  # broadcasts the last dim from 1 to 4
        (["N", 4], [4], "Sub", True),  # 0 - x is not x
        (["N", 4], [4], "Div", True),  # 1 / x is not x
    ],
)
def test_neutral_element_that_changes_the_result_kept(x_shape, c_shape, op_type, const_first):
    value = (
        np.ones(c_shape, np.float32) if op_type in ("Mul", "Div") else np.zeros(c_shape, np.float32)
    )
    inputs = ["c", "x"] if const_first else ["x", "c"]
    nodes = [helper.make_node(op_type, inputs, ["t"]), helper.make_node("Relu", ["t"], ["y"])]
    out_rank = max(len(x_shape), len(c_shape))
    model = make_model(
        nodes, [vi("x", FLOAT, x_shape)], [vi("y", FLOAT, [None] * out_rank)], [const("c", value)]
    )
    assert slim(model)[op_type] == 1


@pytest.mark.parametrize(
    "op_type, value, c_shape, removed",
    [
        ("And", True, [], True),  # HF's causal mask: new_ones(...) & mask
        ("Or", False, [1, 4], True),
        ("And", False, [], False),  # x and False is all False
        ("And", True, [2, 1, 4], False),  # adds a dim
    ],
)
def test_logical_neutral_element(op_type, value, c_shape, removed):
    nodes = [helper.make_node(op_type, ["c", "x"], ["t"]), helper.make_node("Not", ["t"], ["y"])]
    model = make_model(
        nodes,
        [vi("x", BOOL, ["N", 4])],
        [vi("y", BOOL, [None] * max(2, len(c_shape)))],
        [const("c", np.full(c_shape, value))],
    )
    assert slim(model)[op_type] == (0 if removed else 1)


def test_not_neutral_kept():
    model = unary("Mul", ["N", 2], "c", initializers=[const("c", np.array([1, 2], np.float32))])
    assert slim(model)["Mul"] == 1


@pytest.mark.parametrize(
    ("op_type", "value"), [("Add", 1e-10), ("Sub", 1e-9), ("Mul", 1.000005), ("Div", 1.000005)]
)
def test_a_constant_near_the_neutral_element_is_kept(op_type, value):
    """Only an exact 0 or 1 is neutral: `Log(|x| + 1e-10)` guards log(0) (basic-pitch's
    spectrogram gave all-NaN windows when its epsilon was dropped as "+ 0")."""
    nodes = [
        helper.make_node("Abs", ["x"], ["sq"]),
        helper.make_node(op_type, ["sq", "c"], ["t"]),
        helper.make_node("Log", ["t"], ["y"]),
    ]
    model = make_model(
        nodes, [vi("x", FLOAT, [2, 3])], [vi("y", FLOAT, [2, 3])], [const("c", np.float32(value))]
    )
    optimized = optimized_proto(model)
    assert op_counts(optimized)[op_type] == 1
    zeros = {"x": np.zeros((2, 3), np.float32)}
    assert_same_outputs(model, optimized, feeds=zeros)


@pytest.mark.parametrize("c_shape", [[], [1], [1, 1]])
def test_an_exact_neutral_scalar_is_removed_whatever_the_dims(c_shape):
    """x + 0 with a scalar (or all-ones shape of no more axes than x) keeps x's shape even when
    x's dims are unknown."""
    model = make_model(
        [helper.make_node("Add", ["x", "c"], ["t"]), helper.make_node("Relu", ["t"], ["y"])],
        [vi("x", FLOAT, [None, None])],
        [vi("y", FLOAT, [None, None])],
        [const("c", np.zeros(c_shape, np.float32))],
    )
    assert slim(model)["Add"] == 0


# --- Expand: torch's expand / expand_as --------------------------------------------------------

BOOL = 9

#: Sizes for the symbolic dims of the Expand tests: all different, then some 1.
SIZES = ({"N": 2, "C": 3, "W": 5, "M": 4}, {"N": 1, "C": 3, "W": 1, "M": 2})


def concrete(shape, sizes):
    return [sizes[d] if isinstance(d, str) else d for d in shape]


def expand_shape(target, out="shape"):
    """Nodes and initializers computing `out`: a constant list; torch's `x.expand(x.size(0), ...)`
    (picks of x for `shape_pieces`, through Where(Equal(s, -1), 1, s) as torch writes it); or
    the name of a tensor whose Shape it is (`expand_as`)."""
    if isinstance(target, str):
        return [helper.make_node("Shape", [target], [out])], []
    if not any(isinstance(pick, tuple) for pick in target):
        return [], [const(out, np.array(target, np.int64))]
    nodes, inits = shape_pieces("x", target, out=f"{out}_s")
    inits += [
        const(f"{out}_m1", np.full(len(target), -1, np.int64)),
        const(f"{out}_one", np.ones(len(target), np.int64)),
    ]
    nodes += [
        helper.make_node("Equal", [f"{out}_s", f"{out}_m1"], [f"{out}_eq"]),
        helper.make_node("Where", [f"{out}_eq", f"{out}_one", f"{out}_s"], [out]),
    ]
    return nodes, inits


def expand_then_relu(x_shape, target, others=(), out_rank=None):
    """Relu(Expand(x, target)); `others`: more inputs (name, shape) the target may name."""
    nodes, inits = expand_shape(target)
    nodes += [
        helper.make_node("Expand", ["x", "shape"], ["e"]),
        helper.make_node("Relu", ["e"], ["y"]),
    ]
    inputs = [vi("x", FLOAT, x_shape), *(vi(name, FLOAT, shape) for name, shape in others)]
    rank = out_rank if out_rank is not None else len(x_shape)
    return make_model(nodes, inputs, [vi("y", FLOAT, [None] * rank)], inits)


def same_outputs_on_sizes(model, optimized, inputs, all_sizes=SIZES):
    """ORT outputs agree for each of `all_sizes`; `inputs`: (name, shape, dtype) of each input."""
    rng = np.random.default_rng(0)
    for sizes in all_sizes:
        feeds = {}
        for name, shape, dtype in inputs:
            data = rng.standard_normal(concrete(shape, sizes))
            feeds[name] = data > 0 if dtype == BOOL else data.astype(np.float32)
        assert_same_outputs(model, optimized, feeds)


@pytest.mark.parametrize(
    "x_shape, target, others",
    [
        ([2, 3, 4], [2, 3, 4], ()),
        (["N", 3, "W"], [1, 1, 1], ()),  # x.expand(-1, -1, -1), as torch leaves it
        (["N", 3, "W"], [3, 1], ()),  # fewer elements: aligned from the right
        (["N", 3, "W"], [], ()),
        (["N", 3, "W"], [("dim", 0), 3, ("dim", 2)], ()),  # x.expand(x.size(0), 3, x.size(2))
        (["N", "C", "W"], [1, ("dim", 1), ("dim", 2)], ()),
        (["N", "C", "W"], "z", [("z", ["N", "C", "W"])]),  # x.expand_as(z), z's dims named alike
    ],
)
def test_expand_to_its_own_shape_removed(x_shape, target, others):
    model = expand_then_relu(x_shape, target, others)
    optimized = optimized_proto(model)
    assert op_counts(optimized) == {"Relu": 1}
    inputs = [("x", x_shape, FLOAT), *((name, shape, FLOAT) for name, shape in others)]
    same_outputs_on_sizes(model, optimized, inputs)


@pytest.mark.parametrize(
    "x_shape, target, others, out_rank, sizes",
    [
        ([1, 3, "W"], [2, 3, 1], (), 3, SIZES),  # axis 0 grows
        ([3, "W"], [2, 1, 1], (), 3, SIZES),  # a new axis
        # swapped: [1, 3] -> [3, 3]
        (["N", "M"], [("dim", 1), ("dim", 0)], (), 2, ({"N": 1, "M": 3}, {"N": 2, "M": 2})),
        (["N", 1], "z", [("z", ["N", "M"])], 2, SIZES),  # expand_as a wider tensor
    ],
)
def test_expand_that_grows_kept(x_shape, target, others, out_rank, sizes):
    model = expand_then_relu(x_shape, target, others, out_rank)
    optimized = optimized_proto(model, check=False)  # random inputs may not broadcast
    assert op_counts(optimized)["Expand"] == 1
    inputs = [("x", x_shape, FLOAT), *((name, shape, FLOAT) for name, shape in others)]
    same_outputs_on_sizes(model, optimized, inputs, sizes)


def test_expand_by_a_size_only_known_at_run_time_kept():
    # x.expand(x.size(0), k): Where(Equal(s, -1), 1, s) cannot decide k == -1, nor k == 3
    nodes, inits = shape_pieces("x", [("dim", 0)], out="n")
    nodes += [
        helper.make_node("Concat", ["n", "k"], ["s"], axis=0),
        helper.make_node("Equal", ["s", "m1"], ["eq"]),
        helper.make_node("Where", ["eq", "ones", "s"], ["shape"]),
        helper.make_node("Expand", ["x", "shape"], ["e"]),
        helper.make_node("Relu", ["e"], ["y"]),
    ]
    inits += [const("m1", np.full(2, -1, np.int64)), const("ones", np.ones(2, np.int64))]
    model = make_model(
        nodes,
        [vi("x", FLOAT, ["N", 3]), vi("k", INT64, [1])],
        [vi("y", FLOAT, [None, None])],
        inits,
    )
    optimized = optimized_proto(model, check=False)  # its random k would not broadcast
    assert op_counts(optimized)["Expand"] == 1
    x = np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32)
    for k in (-1, 3):
        assert_same_outputs(model, optimized, {"x": x, "k": np.array([k], np.int64)})


def expand_into(op_type, operands, inputs, target, out_rank=3):
    """op_type(*operands) -> y, where the operand "e" is Expand(a, target)."""
    nodes, inits = expand_shape(target)
    nodes += [
        helper.make_node("Expand", ["a", "shape"], ["e"]),
        helper.make_node(op_type, operands, ["y"]),
    ]
    inits.append(const("fill", np.array(-1.0, np.float32)))
    values = [vi(name, dtype, shape) for name, shape, dtype in inputs]
    return make_model(nodes, values, [vi("y", FLOAT, [None] * out_rank)], inits)


@pytest.mark.parametrize(
    "op_type, operands, inputs, target",
    [
        # x * s.expand_as(x): squeeze-and-excitation
        ("Mul", ["b", "e"], [("a", ["N", 4, 1, 1], FLOAT), ("b", ["N", 4, "W", "W"], FLOAT)], "b"),
        ("Add", ["e", "b"], [("a", ["N", 1, "W"], FLOAT), ("b", ["N", "C", "W"], FLOAT)], "b"),
        # masked_fill of scores by mask.expand_as(scores)
        (
            "Where",
            ["e", "fill", "b"],
            [("a", ["N", 1, "W"], BOOL), ("b", ["N", "C", "W"], FLOAT)],
            "b",
        ),
        # the Shape of another tensor, its dims named as b's
        (
            "Sub",
            ["b", "e"],
            [
                ("a", ["N", 1, "W"], FLOAT),
                ("b", ["N", "C", "W"], FLOAT),
                ("z", ["N", "C", "W"], FLOAT),
            ],
            "z",
        ),
        # a.expand(b.size(0), b.size(1), b.size(2)) written by torch: "x" is b here
        (
            "Add",
            ["e", "x"],
            [("a", ["N", 1, "W"], FLOAT), ("x", ["N", "C", "W"], FLOAT)],
            [("dim", 0), ("dim", 1), ("dim", 2)],
        ),
    ],
)
def test_expand_before_a_broadcasting_op_removed(op_type, operands, inputs, target):
    model = expand_into(op_type, operands, inputs, target, out_rank=len(inputs[1][1]))
    optimized = optimized_proto(model)
    assert op_counts(optimized) == {op_type: 1}
    same_outputs_on_sizes(model, optimized, inputs)


def test_expand_with_another_consumer_stays_for_it():
    inputs = [("a", ["N", 1, "W"], FLOAT), ("b", ["N", "C", "W"], FLOAT)]
    model = expand_into("Mul", ["e", "b"], inputs, "b")
    model.graph.node.append(helper.make_node("Relu", ["e"], ["r"]))
    model.graph.output.append(vi("r", FLOAT, [None] * 3))
    optimized = optimized_proto(model)
    assert op_counts(optimized) == {"Shape": 1, "Expand": 1, "Mul": 1, "Relu": 1}
    mul = next(n for n in optimized.graph.node if n.op_type == "Mul")
    assert "a" in mul.input
    same_outputs_on_sizes(model, optimized, inputs)


@pytest.mark.parametrize(
    "op_type, operands, inputs, target",
    [
        # b supplies nothing of z's axis 1, where a has 1
        (
            "Mul",
            ["e", "b"],
            [("a", ["N", 1], FLOAT), ("b", ["N", 1], FLOAT), ("z", ["N", "M"], FLOAT)],
            "z",
        ),
        ("Add", ["e", "b"], [("a", [3], FLOAT), ("b", [3], FLOAT)], [2, 3]),  # a new axis
        # PRelu broadcasts its slope to x, not x to the slope
        ("PRelu", ["e", "b"], [("a", ["N", 1], FLOAT), ("b", ["N", 1], FLOAT)], [2, 1]),
    ],
)
def test_expand_the_broadcasting_op_needs_kept(op_type, operands, inputs, target):
    model = expand_into(op_type, operands, inputs, target, out_rank=2)
    optimized = optimized_proto(model, check=False)  # random inputs may not broadcast
    assert op_counts(optimized)["Expand"] == 1
    same_outputs_on_sizes(model, optimized, inputs)


def test_cast_to_same_type_removed():
    assert slim(unary("Cast", [2, 3], to=FLOAT))["Cast"] == 0


def test_no_ops_removed_inside_loop_body():
    body_nodes = [
        helper.make_node("Reshape", ["v_in", "shape"], ["r"]),
        helper.make_node("Mul", ["r", "ones"], ["m"]),
        helper.make_node("Relu", ["m"], ["v_out"]),
        helper.make_node("Identity", ["cond_in"], ["cond_out"]),
    ]
    body = helper.make_graph(
        body_nodes,
        "body",
        [vi("i", INT64, []), vi("cond_in", 9, []), vi("v_in", FLOAT, [2, 3])],
        [vi("cond_out", 9, []), vi("v_out", FLOAT, [2, 3])],
    )
    nodes = [helper.make_node("Loop", ["n", "", "x"], ["y"], body=body)]
    inits = [const("shape", np.array([2, 3], np.int64)), const("ones", np.ones([3], np.float32))]
    model = make_model(
        nodes, [vi("n", INT64, []), vi("x", FLOAT, [2, 3])], [vi("y", FLOAT, [2, 3])], inits
    )
    feeds = {
        "n": np.array(3, np.int64),
        "x": np.random.default_rng(0).standard_normal([2, 3]).astype(np.float32),
    }
    optimized = optimized_proto(model)
    assert_same_outputs(model, optimized, feeds)
    counts = op_counts(optimized)
    assert counts["Reshape"] == counts["Mul"] == 0 and counts["Loop"] == 1


@pytest.mark.parametrize("zero", [0.0, 0.5])
def test_an_lstm_state_of_computed_zeros_is_left_out(zero):
    """tf2onnx's LSTM: initial_h and initial_c = Unsqueeze(Expand(0, [batch, hidden])) from the
    input's Shape: the op's default (zeros) without those 8 nodes. A state of 0.5 stays."""
    hidden, rng = 4, np.random.default_rng(0)
    weights = [
        const("W", rng.standard_normal((1, 4 * hidden, 3)).astype(np.float32)),
        const("R", rng.standard_normal((1, 4 * hidden, hidden)).astype(np.float32)),
        const("fill", np.array(zero, np.float32)),
        const("hidden", np.array([hidden], np.int64)),
        const("axis0", np.array([0], np.int64)),
        const("one", np.array([1], np.int64)),
        const("two", np.array([2], np.int64)),
    ]
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Slice", ["shape", "one", "two"], ["batch"]),
        helper.make_node("Concat", ["batch", "hidden"], ["dims"], axis=0),
        helper.make_node("Expand", ["fill", "dims"], ["zeros"]),
        helper.make_node("Unsqueeze", ["zeros", "axis0"], ["state"]),
        helper.make_node(
            "LSTM", ["x", "W", "R", "", "", "state", "state"], ["all", "y"], hidden_size=hidden
        ),
    ]
    model = make_model(
        nodes, [vi("x", FLOAT, [5, "N", 3])], [vi("y", FLOAT, [1, None, hidden])], weights
    )
    counts = slim(model)
    assert counts == ({"LSTM": 1} if zero == 0 else {**counts, "Expand": 1})


@pytest.mark.parametrize("pick", ["Slice", "Gather", "Split"])
def test_lstm_states_sliced_from_computed_zeros_are_left_out(pick):
    """torch's exporter (resemblyzer's 3-layer LSTM, not tuned on): one ConstantOfShape(0) of
    [layers, batch, hidden] from the input's Shape, each layer's state a Slice of it (12 nodes
    for 3 LSTMs); a Gather or Split of it alike."""
    hidden, rng = 4, np.random.default_rng(0)
    weights = [
        const("W", rng.standard_normal((1, 4 * hidden, 3)).astype(np.float32)),
        const("R", rng.standard_normal((1, 4 * hidden, hidden)).astype(np.float32)),
        const("layers", np.array([2], np.int64)),
        const("hidden", np.array([hidden], np.int64)),
        const("zero", np.array([0], np.int64)),
        const("one", np.array([1], np.int64)),
        const("two", np.array([2], np.int64)),
    ]
    nodes = [
        helper.make_node("Shape", ["x"], ["shape"]),
        helper.make_node("Slice", ["shape", "one", "two"], ["batch"]),
        helper.make_node("Concat", ["layers", "batch", "hidden"], ["dims"], axis=0),
        helper.make_node("ConstantOfShape", ["dims"], ["zeros"]),
        *{
            "Slice": [
                helper.make_node("Slice", ["zeros", "zero", "one"], ["state0"]),
                helper.make_node("Slice", ["zeros", "one", "two"], ["state1"]),
            ],
            "Gather": [
                helper.make_node("Gather", ["zeros", "zero"], ["state0"]),
                helper.make_node("Gather", ["zeros", "one"], ["state1"]),
            ],
            "Split": [helper.make_node("Split", ["zeros"], ["state0", "state1"])],
        }[pick],
        helper.make_node(
            "LSTM", ["x", "W", "R", "", "", "state0", "state0"], ["", "h0"], hidden_size=hidden
        ),
        helper.make_node("Squeeze", ["h0", "zero"], ["x1"]),
        helper.make_node("Unsqueeze", ["x1", "zero"], ["x1s"]),
        helper.make_node(
            "LSTM", ["x1s", "W2", "R", "", "", "state1", "state1"], ["", "y"], hidden_size=hidden
        ),
    ]
    weights.append(const("W2", rng.standard_normal((1, 4 * hidden, hidden)).astype(np.float32)))
    model = make_model(
        nodes, [vi("x", FLOAT, [5, "N", 3])], [vi("y", FLOAT, [1, None, hidden])], weights
    )
    assert slim(model) == {"LSTM": 2}


def test_a_dropout_whose_mask_is_written_as_an_empty_name_goes():
    """Dropout(x) -> ["d", ""]: onnxscript's folder made the unnamed mask a ConstantOfShape, then
    folded it into an initializer without a name (an internal error, exit 3)."""
    model = make_model(
        [helper.make_node("Dropout", ["x"], ["d", ""]), helper.make_node("Relu", ["d"], ["y"])],
        [vi("x", FLOAT, [2, 8])],
        [vi("y", FLOAT, [2, 8])],
    )
    assert slim(model) == {"Relu": 1}


def test_an_unnamed_output_a_node_kept_has_stays_unnamed():
    """An LSTM's Y written as "" beside its Y_h: named, ORT would compute every step's output."""
    rng = np.random.default_rng(0)
    model = make_model(
        [helper.make_node("LSTM", ["x", "w", "r"], ["", "h"], hidden_size=2)],
        [vi("x", FLOAT, [3, 1, 2])],
        [vi("h", FLOAT, [1, 1, 2])],
        [
            const("w", rng.standard_normal((1, 8, 2)).astype(np.float32)),
            const("r", rng.standard_normal((1, 8, 2)).astype(np.float32)),
        ],
    )
    optimized = optimized_proto(model)
    assert_same_outputs(model, optimized, seeds=(0,))
    assert list(optimized.graph.node[0].output) == ["", "h"]
