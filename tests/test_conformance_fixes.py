"""Bugs found by scripts/conformance.py on ONNX's backend test models, each on a tiny model:
the optimized model loads in ORT, passes the checker, and gives the original's outputs."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import onnx
import onnx_ir
import pytest
from helpers import FLOAT, INT64, const, make_model, vi
from onnx import TensorProto, helper

import onnxslim
from onnxslim import verify
from onnxslim.errors import CheckFailedError
from onnxslim.optimizer import optimize_with_report
from onnxslim.runtime import Session

N = helper.make_node
FLOAT8 = TensorProto.FLOAT8E4M3FN


def slimmed(model: onnx.ModelProto) -> onnx.ModelProto:
    """slim with its check required (a model it cannot check is an error), then the checker."""
    result = onnxslim.slim(model, require_check=True)
    onnx.checker.check_model(result, full_check=True)
    return result


def outputs(model: onnx.ModelProto, feeds: dict) -> list:
    return Session(model).run(feeds)


def assert_same(original: onnx.ModelProto, optimized: onnx.ModelProto, feeds: dict) -> None:
    want, got = outputs(original, feeds), outputs(optimized, feeds)
    assert len(want) == len(got)
    for a, b in zip(want, got):
        for x, y in zip(a if isinstance(a, list) else [a], b if isinstance(b, list) else [b]):
            assert x.dtype == y.dtype and x.shape == y.shape
            wide = np.float32 if x.dtype.kind in "fV" else np.int64
            np.testing.assert_array_equal(x.astype(wide), y.astype(wide))


# ---------------------------------------------------------------- CastLike saturate


@pytest.mark.parametrize("folded", [False, True], ids=["input", "constant"])
def test_castlike_without_saturation_keeps_it_as_a_cast(folded):
    """CastLike(x, like, saturate=0) became Cast(x, to=float8) with the default saturate=1:
    values out of float8's range were clamped instead of becoming NaN."""
    values = np.array([1e6, -1e6, 1.5, np.inf, 300.0], np.float32)
    node = N("CastLike", ["x", "like"], ["y"], saturate=0)
    inputs = [vi("like", FLOAT8, [0])]
    initializers = [const("x", values)] if folded else []
    if not folded:
        inputs.insert(0, vi("x", FLOAT, [5]))
    model = make_model([node], inputs, [vi("y", FLOAT8, [5])], initializers, opset=19)
    feeds = {"like": np.zeros(0, ml_dtypes.float8_e4m3fn)}
    if not folded:
        feeds["x"] = values
    result = slimmed(model)
    assert np.isnan(outputs(result, feeds)[0].astype(np.float32)[:2]).all()
    assert_same(model, result, feeds)
    casts = [n for n in result.graph.node if n.op_type == "Cast"]
    if not folded:
        assert [a.i for a in casts[0].attribute if a.name == "saturate"] == [0]


# ---------------------------------------------------------------- folder crashes


def test_range_of_one_element_tensors_is_folded_without_crashing():
    """ORT takes Range's scalars as shape [1] when their shape is not known statically
    (AffineGrid's expansion picks them in an If); once the If is inlined, the folder's size
    estimate called float() on them."""
    then_branch = helper.make_graph(
        [N("Identity", ["four"], ["l_then"])], "then", [], [vi("l_then", INT64, ["n"])]
    )
    else_branch = helper.make_graph(
        [N("Identity", ["other"], ["l_else"])], "else", [], [vi("l_else", INT64, ["n"])]
    )
    nodes = [
        N("If", ["yes"], ["limit"], then_branch=then_branch, else_branch=else_branch),
        N("Range", ["zero", "limit", "one"], ["r"]),
        N("Add", ["x", "r"], ["y"]),
    ]
    inits = [const("yes", np.array(True)), const("four", np.array([4]))]
    inits += [const("zero", np.array(0)), const("one", np.array(1))]
    model = make_model(
        nodes, [vi("x", INT64, [4]), vi("other", INT64, ["n"])], [vi("y", INT64, [4])], inits
    )
    feeds = {"x": np.arange(4), "other": np.array([4])}
    result = onnxslim.slim(model, check_inputs=[feeds], require_check=True)
    assert_same(model, result, feeds)


def test_split_to_sequence_whose_split_is_an_input_is_left_as_is():
    """onnxscript's SplitToSequence evaluator raised on a scalar `split` graph input, aborting the
    whole fold; a node whose evaluator fails is now just not folded."""
    node = N("SplitToSequence", ["data", "split"], ["seq"], axis=1)
    seq = helper.make_tensor_sequence_value_info("seq", FLOAT, None)
    model = make_model([node], [vi("data", FLOAT, [3, 6]), vi("split", INT64, [])], [seq])
    feeds = {"data": np.arange(18, dtype=np.float32).reshape(3, 6), "split": np.array(2)}
    result = onnxslim.slim(model, check_inputs=[feeds], require_check=True)
    assert [n.op_type for n in result.graph.node] == ["SplitToSequence"]
    assert_same(model, result, feeds)


# ---------------------------------------------------------------- opset of emitted nodes


def test_concat_from_sequence_at_opset_12_is_not_rewritten_to_opset_13_unsqueeze():
    """The folder rewrote ConcatFromSequence(new_axis=1) into Unsqueeze(x, axes) + Concat: at
    opset 12 Unsqueeze takes `axes` as an attribute, so the checker refused the result."""
    nodes = [
        N("SequenceConstruct", ["a", "b", "c"], ["seq"]),
        N("ConcatFromSequence", ["seq"], ["y"], axis=-1, new_axis=1),
    ]
    inputs = [vi(name, FLOAT, [2, 3]) for name in "abc"]
    model = make_model(nodes, inputs, [vi("y", FLOAT, [2, 3, 3])], opset=12)
    rng = np.random.default_rng(0)
    feeds = {name: rng.standard_normal((2, 3)).astype(np.float32) for name in "abc"}
    assert_same(model, slimmed(model), feeds)


def test_split_to_sequence_at_opset_12_is_not_rewritten_to_opset_13_split():
    """Likewise Split with a `split` input (an attribute before opset 13)."""
    nodes = [N("SplitToSequence", ["x", "sizes"], ["seq"]), N("SequenceLength", ["seq"], ["n"])]
    model = make_model(
        nodes,
        [vi("x", FLOAT, ["n"]), vi("sizes", INT64, [3])],
        [vi("n", INT64, [])],
        opset=12,
    )
    feeds = {"x": np.arange(6, dtype=np.float32), "sizes": np.array([1, 2, 3])}
    result = onnxslim.slim(model, check_inputs=[feeds], require_check=True)
    onnx.checker.check_model(result, full_check=True)
    assert_same(model, result, feeds)


def test_emitted_nodes_are_checked_against_the_opset():
    from onnxslim.passes.fold import _fits_opset

    unsqueeze = ir_node("Unsqueeze", 2)
    assert not _fits_opset(unsqueeze, {"": 12}, is_function=False)
    assert _fits_opset(unsqueeze, {"": 13}, is_function=False)
    cast = ir_node("Cast", 1, saturate=0)
    assert not _fits_opset(cast, {"": 18}, is_function=False)
    assert _fits_opset(cast, {"": 19}, is_function=False)


def ir_node(op_type: str, inputs: int, **attributes):
    import onnx_ir as ir

    values = [ir.Value(name=f"i{i}") for i in range(inputs)]
    attrs = [ir.AttrInt64(name, value) for name, value in attributes.items()]
    return ir.Node("", op_type, values, attrs)


# ---------------------------------------------------------------- shape inference keeps types


def test_a_sequence_made_by_an_if_in_a_loop_body_stays_a_sequence():
    """onnx-ir's shape inference merge copied only the element type: the If's sequence output got
    the type tensor(float) and ORT refused the Loop body."""
    then_branch = helper.make_graph(
        [N("SequenceConstruct", ["one"], ["s_then"])],
        "then",
        [],
        [helper.make_tensor_sequence_value_info("s_then", FLOAT, [])],
        [const("one", np.array(1.0, np.float32))],
    )
    else_branch = helper.make_graph(
        [N("SequenceEmpty", [], ["s_else"], dtype=FLOAT)],
        "else",
        [],
        [helper.make_tensor_sequence_value_info("s_else", FLOAT, [])],
    )
    body = helper.make_graph(
        [
            N("Identity", ["cond_in"], ["cond_out"]),
            N("If", ["cond_in"], ["seq"], then_branch=then_branch, else_branch=else_branch),
            N("SequenceLength", ["seq"], ["n"]),
            N("Add", ["acc_in", "n"], ["acc_out"]),
        ],
        "body",
        [vi("i", INT64, []), vi("cond_in", TensorProto.BOOL, []), vi("acc_in", INT64, [])],
        [vi("cond_out", TensorProto.BOOL, []), vi("acc_out", INT64, [])],
    )
    model = make_model(
        [N("Loop", ["trips", "cond", "acc"], ["total"], body=body)],
        [vi("trips", INT64, []), vi("cond", TensorProto.BOOL, []), vi("acc", INT64, [])],
        [vi("total", INT64, [])],
    )
    feeds = {"trips": np.array(3), "cond": np.array(True), "acc": np.array(0)}
    assert_same(model, slimmed(model), feeds)


# ---------------------------------------------------------------- checking bfloat16/float8/int4


@pytest.mark.parametrize(
    "to",
    [TensorProto.BFLOAT16, FLOAT8, TensorProto.FLOAT8E5M2FNUZ, TensorProto.INT4, TensorProto.UINT2],
    ids=lambda to: TensorProto.DataType.Name(to),
)
def test_outputs_numpy_has_no_type_for_are_checked(to):
    """ORT's numpy bridge cannot return bfloat16, float8, int4 ... outputs: the check now reads
    them as ml_dtypes arrays instead of giving up ("not checked")."""
    nodes = [N("Mul", ["x", "one"], ["x2"]), N("Cast", ["x2"], ["y"], to=to)]
    model = make_model(
        nodes,
        [vi("x", FLOAT, [6])],
        [vi("y", to, [6])],
        [const("one", np.array(1.0, np.float32))],
        opset=25,
        ir_version=11,
    )
    result = slimmed(model)  # require_check: raises if the check could not run
    assert [n.op_type for n in result.graph.node] == ["Cast"]
    feeds = {"x": np.array([0.5, -1, 2, 3, np.nan, 1], np.float32)}
    assert_same(model, result, feeds)


def test_a_difference_in_a_bfloat16_output_is_found_and_nan_matches_nan():
    def model(factor: float) -> onnx.ModelProto:
        nodes = [N("Mul", ["x", "k"], ["x2"]), N("Cast", ["x2"], ["y"], to=TensorProto.BFLOAT16)]
        return make_model(
            nodes,
            [vi("x", FLOAT, [3])],
            [vi("y", TensorProto.BFLOAT16, [3])],
            [const("k", np.array(factor, np.float32))],
            opset=21,
            ir_version=10,
        )

    samples = [{"x": np.array([1.0, np.nan, -2.0], np.float32)}]
    assert verify.compare(model(1.0), model(1.0), samples)[0] == []
    with pytest.raises(CheckFailedError, match="y: max abs difference"):
        verify.check(model(1.0), model(1.5), samples)


def test_optional_nodes_with_a_type_attribute_are_compared_by_it():
    """onnx-ir's common subexpression pass cannot hash a type attribute (Optional's `type`): the
    default command exited 3 on such a model (found on ONNX's Optional node tests). Two Optionals
    of the same type and input are one after it; none is lost."""
    float_type = helper.make_tensor_type_proto(TensorProto.FLOAT, [2])
    nodes = [
        N("Optional", ["x"], ["o1"], type=float_type),
        N("Optional", ["x"], ["o2"], type=float_type),
        N("OptionalHasElement", ["o1"], ["h1"]),
        N("OptionalGetElement", ["o2"], ["y"]),
        N("Relu", ["y"], ["r"]),
    ]
    model = make_model(
        nodes,
        [vi("x", FLOAT, [2])],
        [vi("h1", TensorProto.BOOL, []), vi("r", FLOAT, [2])],
        opset=18,
    )
    result = slimmed(model)
    assert [n.op_type for n in result.graph.node].count("Optional") == 1
    assert_same(model, result, {"x": np.array([-1.0, 2.0], np.float32)})


@pytest.mark.parametrize("source", ["SequenceConstruct", "SplitToSequence", "Optional"])
def test_a_constant_sequence_or_optional_read_at_run_time_stays_one(source):
    """A sequence (or optional) of constants that a node reading a graph input takes was folded
    into one stacked tensor (onnx's reference evaluator gives it as a list): the model no longer
    loaded, exit 1 (found folding ONNX's sequence node tests). It stays computed."""
    c = const("c", np.arange(6, dtype=np.float32).reshape(3, 2))
    if source == "Optional":
        nodes = [
            N("Optional", ["c"], ["o"]),
            N("OptionalGetElement", ["o"], ["e"]),
            N("Add", ["e", "x"], ["y"]),
        ]
        x_shape = y_shape = [3, 2]
    else:
        first = (
            N("SequenceConstruct", ["c", "c"], ["s"])
            if source == "SequenceConstruct"
            else N("SplitToSequence", ["c"], ["s"], axis=0, keepdims=0)
        )
        nodes = [
            first,
            N("SequenceInsert", ["s", "x"], ["s2"]),
            N("ConcatFromSequence", ["s2"], ["y"], axis=0),
        ]
        x_shape, y_shape = ([3, 2], [9, 2]) if source == "SequenceConstruct" else ([2], [8])
    model = make_model(nodes, [vi("x", FLOAT, x_shape)], [vi("y", FLOAT, y_shape)], [c], opset=18)
    result = slimmed(model)
    assert_same(model, result, {"x": np.full(x_shape, 0.5, np.float32)})


def test_a_fold_onnx_runtime_computes_otherwise_is_made_again_without_folding():
    """onnx's reference evaluator and ORT downsample with align_corners differently ([1, 3.14]
    against ORT's [1, 4] on ONNX's own Resize test): folding such constants made the check fail,
    and the default command refused a valid model (exit 1). The result is made again without
    fold-constants, which matches, and says so."""
    data = np.array([[[[1, 2, 3, 4], [5, 6, 7, 8]]]], np.float32)
    nodes = [
        N(
            "Resize",
            ["data", "", "scales"],
            ["r"],
            mode="linear",
            coordinate_transformation_mode="align_corners",
        ),
        N("Add", ["r", "x"], ["y"]),
    ]
    inits = [const("data", data), const("scales", np.array([1, 1, 0.6, 0.6], np.float32))]
    model = make_model(nodes, [vi("x", FLOAT, [1, 1, 1, 2])], [vi("y", FLOAT, [1, 1, 1, 2])], inits)
    result = optimize_with_report(model)
    assert any(
        note.startswith("made again without fold-constants: the full result's outputs differed")
        for note in result.notes
    )
    optimized = result.model
    assert "Resize" in [n.op_type for n in optimized.graph]
    assert_same(model, onnx_ir.to_proto(optimized), {"x": np.zeros((1, 1, 1, 2), np.float32)})
