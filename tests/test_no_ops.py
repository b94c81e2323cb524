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
    vi,
)
from onnx import helper

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


def test_not_neutral_kept():
    model = unary("Mul", ["N", 2], "c", initializers=[const("c", np.array([1, 2], np.float32))])
    assert slim(model)["Mul"] == 1


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
