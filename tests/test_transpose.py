"""Transpose sinking (`sink-transposes`) and Transpose pairs (`fuse-chains`): each rule on a tiny
graph, outputs compared on ORT before/after; TF-style NHWC blocks; the zoo's open_nsfw."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from conftest import ZOO_DIR
from helpers import (
    FLOAT,
    assert_same_outputs,
    const,
    make_model,
    node_count,
    op_counts,
    optimized_proto,
    run,
    vi,
)
from onnx import TensorProto, helper

import onnxslim

RNG = np.random.default_rng(0)
NCHW_TO_NHWC = (0, 2, 3, 1)
NHWC_TO_NCHW = (0, 3, 1, 2)


def slim(model, **options):
    """Optimize, assert ORT outputs match on two random inputs; return (op counts, proto)."""
    optimized = optimized_proto(model, **options)
    assert_same_outputs(model, optimized, seeds=(0, 1))
    return op_counts(optimized), optimized


def rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def out(name, rank=4, dtype=FLOAT):
    """A graph output of known rank, dims unknown."""
    return vi(name, dtype, [None] * rank)


def node(op_type, inputs, output, **attrs):
    return helper.make_node(op_type, inputs, [output], **attrs)


def transposed_then(ops, *, x_shape=(1, 3, 4, 5), perm=NCHW_TO_NHWC, back=True, rank=4):
    """x -> Transpose(perm) -> ops... -> [Transpose(perm^-1)] -> y; each op (op_type, constant or
    None, constant_first, attrs)."""
    nodes, inits, last = [node("Transpose", ["x"], "t0", perm=list(perm))], [], "t0"
    for i, (op_type, value, const_first, attrs) in enumerate(ops):
        inputs = [last]
        if value is not None:
            inits.append(const(f"c{i}", value))
            inputs = [f"c{i}", last] if const_first else [last, f"c{i}"]
        nodes.append(node(op_type, inputs, f"t{i + 1}", **attrs))
        last = f"t{i + 1}"
    if back:
        inverse = list(np.argsort(perm))
        nodes.append(node("Transpose", [last], "y", perm=inverse))
    else:
        nodes[-1].output[0] = "y"
    return make_model(nodes, [vi("x", FLOAT, x_shape)], [out("y", rank)], inits)


@pytest.mark.parametrize(
    ("op_type", "attrs"),
    [
        ("Relu", {}),
        ("LeakyRelu", {"alpha": 0.2}),
        ("Sigmoid", {}),
        ("Tanh", {}),
        ("Neg", {}),
        ("Abs", {}),
        ("Exp", {}),
        ("Erf", {}),
        ("HardSigmoid", {"alpha": 0.3}),
        ("HardSwish", {}),
    ],
)
def test_unary_op_between_inverse_transposes_leaves_no_transpose(op_type, attrs):
    counts, _ = slim(transposed_then([(op_type, None, False, attrs)]))
    assert counts == {op_type: 1}


def test_clip_cast_and_sqrt_chain_keep_their_other_inputs():
    nodes = [
        node("Transpose", ["x"], "t", perm=list(NCHW_TO_NHWC)),
        node("Abs", ["t"], "a"),
        node("Sqrt", ["a"], "s"),
        helper.make_node("Clip", ["s", "", "hi"], ["c"]),
        node("Cast", ["c"], "d", to=TensorProto.DOUBLE),
        node("Transpose", ["d"], "y", perm=list(NHWC_TO_NCHW)),
    ]
    model = make_model(
        nodes,
        [vi("x", FLOAT, (1, 3, 4, 5))],
        [out("y", dtype=TensorProto.DOUBLE)],
        [const("hi", np.float32(1.5))],
    )
    counts, _ = slim(model)
    assert counts == {"Abs": 1, "Sqrt": 1, "Clip": 1, "Cast": 1}


@pytest.mark.parametrize("op_type", ["Add", "Sub", "Mul", "Div", "Max", "Min", "Pow"])
@pytest.mark.parametrize("const_first", [False, True])
@pytest.mark.parametrize("shape", [(3,), (1, 1, 3), (4, 1, 1), (1, 4, 5, 3), ()])
def test_binary_op_with_constant_between_inverse_transposes(op_type, const_first, shape):
    value = np.abs(rand(*shape)) + 0.5  # positive: Div and Pow stay finite
    counts, _ = slim(transposed_then([(op_type, value, const_first, {})]))
    assert counts == {op_type: 1}


def test_prelu_slope_moves_with_the_layout():
    counts, _ = slim(transposed_then([("PRelu", rand(1, 1, 3), False, {})]))
    assert counts == {"PRelu": 1}


def test_constant_that_would_broadcast_the_tensor_stops_the_sinking():
    # [2, 1, 1, 1, 1] has more dims than the transposed tensor: the result is rank 5
    counts, _ = slim(transposed_then([("Add", rand(2, 1, 1, 1, 1), False, {})], back=False, rank=5))
    assert counts == {"Transpose": 1, "Add": 1}


def test_binary_op_of_two_equal_transposes_keeps_one():
    nodes = [
        node("Transpose", ["a"], "ta", perm=list(NCHW_TO_NHWC)),
        node("Transpose", ["b"], "tb", perm=list(NCHW_TO_NHWC)),
        node("Sub", ["ta", "tb"], "y"),
    ]
    model = make_model(
        nodes,
        [vi("a", FLOAT, (1, 3, 4, 5)), vi("b", FLOAT, (1, 3, 1, 5))],
        [out("y")],
    )
    counts, optimized = slim(model)
    assert counts == {"Sub": 1, "Transpose": 1}
    assert optimized.graph.node[-1].op_type == "Transpose"  # the output keeps its layout


def test_different_perms_are_left_alone():
    nodes = [
        node("Transpose", ["a"], "ta", perm=[0, 2, 3, 1]),
        node("Transpose", ["b"], "tb", perm=[0, 1, 3, 2]),
        node("Add", ["ta", "tb"], "y"),
    ]
    model = make_model(
        nodes, [vi("a", FLOAT, (1, 4, 4, 4)), vi("b", FLOAT, (1, 4, 4, 4))], [out("y")]
    )
    counts, _ = slim(model)
    assert counts == {"Transpose": 2, "Add": 1}


@pytest.mark.parametrize("keepdims", [0, 1])
@pytest.mark.parametrize("opset", [13, 18])
def test_reduce_over_spatial_axes_of_nhwc_drops_the_transpose(keepdims, opset):
    nodes = [node("Transpose", ["x"], "t", perm=list(NCHW_TO_NHWC))]
    inits = []
    if opset >= 18:
        inits.append(const("axes", np.array([1, 2], dtype=np.int64)))
        nodes.append(node("ReduceMean", ["t", "axes"], "y", keepdims=keepdims))
    else:
        nodes.append(node("ReduceMean", ["t"], "y", axes=[1, 2], keepdims=keepdims))
    model = make_model(
        nodes, [vi("x", FLOAT, (2, 3, 4, 5))], [out("y", 4 if keepdims else 2)], inits, opset=opset
    )
    counts, _ = slim(model)
    # without keepdims the kept axes (N, C) come out in the same order: no Transpose is needed
    assert counts == ({"ReduceMean": 1} if not keepdims else {"ReduceMean": 1, "Transpose": 1})


def test_reduce_whose_kept_axes_change_order_keeps_a_transpose():
    nodes = [
        node("Transpose", ["x"], "t", perm=[2, 0, 1]),
        node("ReduceSum", ["t", "axes"], "y", keepdims=0),
    ]
    model = make_model(
        nodes,
        [vi("x", FLOAT, (2, 3, 4))],
        [out("y", 2)],
        [const("axes", np.array([1], dtype=np.int64))],
    )
    counts, _ = slim(model)
    assert counts == {"ReduceSum": 1, "Transpose": 1}


def test_transpose_with_two_consumers_is_not_duplicated():
    nodes = [
        node("Transpose", ["x"], "t", perm=list(NCHW_TO_NHWC)),
        node("Relu", ["t"], "y"),
        node("Sigmoid", ["t"], "z"),
    ]
    model = make_model(nodes, [vi("x", FLOAT, (1, 3, 4, 5))], [out("y"), out("z")])
    counts, _ = slim(model)
    assert counts == {"Transpose": 1, "Relu": 1, "Sigmoid": 1}


def test_transpose_feeding_a_graph_output_stays():
    nodes = [
        node("Transpose", ["x"], "t", perm=list(NCHW_TO_NHWC)),
        node("Relu", ["t"], "y"),
        node("Transpose", ["y"], "z", perm=list(NHWC_TO_NCHW)),
    ]
    model = make_model(nodes, [vi("x", FLOAT, (1, 3, 4, 5))], [out("t"), out("z")])
    counts, optimized = slim(model)
    assert counts == {"Transpose": 2, "Relu": 1}  # t is needed as it is: nothing moves past it
    assert [o.name for o in optimized.graph.output] == ["t", "z"]


def test_inverse_pair_cancels_when_the_inner_transpose_has_other_consumers():
    nodes = [
        node("Transpose", ["x"], "t", perm=list(NCHW_TO_NHWC)),
        node("Transpose", ["t"], "back", perm=list(NHWC_TO_NCHW)),
        node("Relu", ["back"], "y"),
        node("Sigmoid", ["t"], "z"),
    ]
    model = make_model(nodes, [vi("x", FLOAT, (1, 3, 4, 5))], [out("y"), out("z")])
    counts, _ = slim(model)
    assert counts == {"Transpose": 1, "Relu": 1, "Sigmoid": 1}


def tf_block(blocks=2, channels=4, size=6):
    """A tf2onnx-style NHWC residual net: a stem, then per block Transpose -> Conv -> Transpose ->
    Sub/Mul/Add (BatchNorm written out) -> Relu -> residual Add of the block input."""
    nodes, inits, last = [], [], "x"
    for b in range(blocks + 1):
        nodes += [
            node("Transpose", [last], f"in{b}", perm=list(NHWC_TO_NCHW)),
            helper.make_node("Conv", [f"in{b}", f"w{b}"], [f"conv{b}"], pads=[1, 1, 1, 1]),
            node("Transpose", [f"conv{b}"], f"out{b}", perm=list(NCHW_TO_NHWC)),
            node("Sub", [f"out{b}", f"mean{b}"], f"sub{b}"),
            node("Mul", [f"sub{b}", f"scale{b}"], f"mul{b}"),
            node("Add", [f"mul{b}", f"beta{b}"], f"bn{b}"),
            node("Relu", [f"bn{b}"], f"relu{b}"),
        ]
        if b:  # the stem (b = 0) has no residual
            nodes.append(node("Add", [f"relu{b}", last], f"res{b}"))
        inits += [
            const(f"w{b}", rand(channels, channels, 3, 3) * 0.3),
            const(f"mean{b}", rand(channels)),
            const(f"scale{b}", np.abs(rand(channels)) + 0.5),
            const(f"beta{b}", rand(channels)),
        ]
        last = f"res{b}" if b else f"relu{b}"
    nodes.append(node("Relu", [last], "y"))
    return make_model(nodes, [vi("x", FLOAT, (1, size, size, channels))], [out("y")], inits)


def test_tf_style_blocks_collapse_to_conv_relu_with_transposes_only_at_the_boundary():
    counts, optimized = slim(tf_block(blocks=2))
    # Conv + Relu per block and the stem, the residual Adds; one Transpose in and one out
    assert counts == {"Transpose": 2, "Conv": 3, "Relu": 4, "Add": 2}
    assert optimized.graph.node[0].op_type == "Transpose"
    assert optimized.graph.node[0].input[0] == "x"
    assert optimized.graph.node[-1].op_type == "Transpose"
    assert [o.name for o in optimized.graph.output] == ["y"]


def test_sinking_can_be_skipped():
    counts, _ = slim(tf_block(blocks=1), skip=["sink-transposes"])
    assert counts["Transpose"] == 4 and counts["Sub"] == 2


@pytest.mark.zoo
def test_open_nsfw_has_fewer_nodes_than_ort_basic_and_same_outputs():
    path = ZOO_DIR / "open_nsfw.onnx"
    if not path.is_file():
        pytest.skip(f"{path} not built: run `python models/zoo.py`")
    optimized = optimized_proto(onnxslim.optimize(path, check=False))
    counts = op_counts(optimized)
    assert node_count(optimized) < 318  # ONNX Runtime's basic offline optimizer writes 318
    assert counts.get("Transpose", 0) <= 1  # the NHWC input's
    assert "Sub" not in counts and "Mul" not in counts  # BatchNorm folded into the Convs
    rng = np.random.default_rng(0)
    feeds = {"input_0": rng.uniform(0, 255, (2, 224, 224, 3)).astype(np.float32)}
    for want, got in zip(run(path, feeds), run(optimized, feeds)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("op", [("Relu", None, False, {}), ("Mul", np.float32(2), False, {})])
def test_sunk_transposes_leave_no_value_sharing_a_type_object(op):
    """A type object two values share changes for both when one is retyped (fp16 set a kept
    float32 Transpose's output to float16 that way): every value keeps a type of its own."""
    model = onnxslim.optimize(transposed_then([op], back=False, rank=4), check=False)
    values = [v for node in model.graph for v in node.outputs if v.type is not None]
    assert "Transpose" in {node.op_type for node in model.graph}
    assert len({id(v.type) for v in values}) == len(values)


def test_a_scale_orts_matmul_fusion_takes_stays_on_the_matmul():
    """torch's attention export scales q and k^T by a scalar right before their MatMul: ORT folds
    those Muls into FusedMatMul's alpha. Sinking the head Transposes below them would cancel
    nothing and keep the scales apart (1.08x the time on this graph)."""
    from onnxslim.runtime import ort_graph

    s, h, d = 16, 2, 8
    model = make_model(
        [
            helper.make_node("Reshape", ["q", "shape"], ["q4"]),
            helper.make_node("Transpose", ["q4"], ["qt"], perm=[0, 2, 1, 3]),
            helper.make_node("Mul", ["qt", "scale"], ["qs"]),
            helper.make_node("Reshape", ["k", "shape"], ["k4"]),
            helper.make_node("Transpose", ["k4"], ["kt"], perm=[0, 2, 3, 1]),
            helper.make_node("Div", ["kt", "root"], ["ks"]),
            helper.make_node("MatMul", ["qs", "ks"], ["scores"]),
        ],
        [vi("q", FLOAT, [1, s, h * d]), vi("k", FLOAT, [1, s, h * d])],
        [vi("scores", FLOAT, [1, h, s, s])],
        [
            const("shape", np.array([1, s, h, d], np.int64)),
            const("scale", np.array(0.35, np.float32)),
            const("root", np.array(2.8, np.float32)),
        ],
    )
    counts, optimized = slim(model)
    assert counts == op_counts(model)
    ours = ort_graph(optimized.SerializeToString()).counts
    assert (
        ours["com.microsoft.FusedMatMul"]
        == ort_graph(model.SerializeToString()).counts["com.microsoft.FusedMatMul"]
        == 1
    )
    assert ours["Mul"] == ours["Div"] == 0


def test_a_sunk_transpose_keeps_the_shapes_the_file_gave_for_orts_fusions(tmp_path):
    """A dynamo STFT export: ORT infers no shape past the STFT and reads the exporter's
    value_info. The two Transposes cancel, and the values computed in the other layout are new:
    they take the file's shapes moved, so ORT still folds the scale into FusedMatMul (it needs
    the shape of the Mul's other input); without them it ran Mul + MatMul (FusedMatMul 1 -> 0)."""
    from onnx import numpy_helper

    from onnxslim.optimizer import optimize_with_report
    from onnxslim.runtime import ort_op_counts

    frames = "(N - 512)//128 + 1"
    shapes = {
        "spec_t": ["B", 257, frames, 2],
        "mag": ["B", 257, frames],
        "log": ["B", 257, frames],
        "db": ["B", 257, frames],
        "db_t": ["B", frames, 257],
    }
    model = make_model(
        [
            helper.make_node("STFT", ["wav", "step", "window", "length"], ["spec"]),
            helper.make_node("Transpose", ["spec"], ["spec_t"], perm=[0, 2, 1, 3]),
            helper.make_node("ReduceL2", ["spec_t", "last"], ["mag"], keepdims=0),
            helper.make_node("Log", ["mag"], ["log"]),
            helper.make_node("Mul", ["log", "twenty"], ["db"]),
            helper.make_node("Transpose", ["db"], ["db_t"], perm=[0, 2, 1]),
            helper.make_node("MatMul", ["db_t", "w"], ["y"]),
        ],
        [vi("wav", FLOAT, ["B", "N", 1])],
        [vi("y", FLOAT, ["B", frames, 16])],
        [
            const("step", np.array(128, np.int64)),
            const("window", np.hanning(512).astype(np.float32)),
            const("length", np.array(512, np.int64)),
            const("last", np.array([-1], np.int64)),
            const("twenty", np.array(20, np.float32)),
            numpy_helper.from_array(rand(257, 16), "w"),
        ],
        opset=18,
        value_info=[vi(name, FLOAT, dims) for name, dims in shapes.items()],
    )
    path, written = tmp_path / "stft.onnx", tmp_path / "out.onnx"
    onnx.save(model, path)
    result = optimize_with_report(path, output=written)
    assert result.checked and result.fusions_lost == {}
    written_ops = op_counts(onnx.load(written))
    assert written_ops == {"STFT": 1, "ReduceL2": 1, "Log": 1, "Mul": 1, "MatMul": 1}
    assert ort_op_counts(written) == ort_op_counts(path)  # FusedMatMul: 1, no Mul left


def test_a_moved_shape_is_the_files_only_while_the_value_keeps_it():
    """`moved_shape` names the input file's value a shape came from, through moves of moves, and
    nothing once a later pass gave the value another shape (then inferred, not the file's)."""
    from onnx_ir import Shape, Value

    from onnxslim.model.graph import move_shape, moved_shape

    given = Value(name="given", shape=Shape(["B", 257, "T"]))
    moved, again = Value(name="moved"), Value(name="again")
    move_shape(moved, given, [0, 2, 1])
    move_shape(again, moved, [0, 2, 1])
    assert moved.shape == Shape(["B", "T", 257]) and again.shape == given.shape
    assert moved_shape(moved) == moved_shape(again) == "given"
    assert moved_shape(given) is None
    again.shape = Shape(["B", 256, "T"])
    assert moved_shape(again) is None
    other_rank = Value(name="other rank")
    move_shape(other_rank, given, [1, 0])  # axes of another rank than the source's: no shape
    assert other_rank.shape is None and moved_shape(other_rank) is None


def test_a_per_channel_constant_stays_off_the_innermost_axis_of_an_hwc_image():
    # an image pipeline's HWC -> CHW, then (x - mean) / std per channel: sunk, the constants
    # would broadcast over runs of 3 (ORT: 2x the model's time); no inverse Transpose to cancel
    nodes = [
        node("Transpose", ["x"], "chw", perm=[2, 0, 1]),
        node("Sub", ["chw", "mean"], "centred"),
        node("Div", ["centred", "std"], "y"),
    ]
    inits = [const("mean", rand(3, 1, 1)), const("std", np.abs(rand(3, 1, 1)) + 0.5)]
    model = make_model(nodes, [vi("x", FLOAT, (8, 6, 3))], [out("y", 3)], inits)
    _, optimized = slim(model)
    assert [n.op_type for n in optimized.graph.node] == ["Transpose", "Sub", "Div"]


def test_a_constant_along_the_innermost_axis_moves_where_the_transposes_cancel():
    # varying along W: in x's layout its innermost axis, but the pair around it cancels
    counts, _ = slim(transposed_then([("Add", rand(1, 1, 5, 1), False, {})]))
    assert counts == {"Add": 1}


def test_an_innermost_constant_moves_where_every_path_cancels_its_transpose():
    # (found in review) read by two inverse Transposes, and through a reduction keeping its dims
    # to one: each pair cancels, as before the innermost-axis guard
    fan_out = [
        node("Transpose", ["x"], "t", perm=[0, 3, 1, 2]),
        node("Mul", ["t", "c"], "m"),
        node("Transpose", ["m"], "a", perm=[0, 2, 3, 1]),
        node("Transpose", ["m"], "b", perm=[0, 2, 3, 1]),
        node("Relu", ["a"], "y"),
        node("Sigmoid", ["b"], "z"),
    ]
    inits = [const("c", rand(3, 1, 1))]
    model = make_model(fan_out, [vi("x", FLOAT, (1, 4, 5, 3))], [out("y"), out("z")], inits)
    counts, _ = slim(model)
    assert counts == {"Mul": 1, "Relu": 1, "Sigmoid": 1}
    reduced = [
        node("Transpose", ["x"], "t", perm=[0, 3, 1, 2]),
        node("Sub", ["t", "c"], "s"),
        node("ReduceMean", ["s"], "r", axes=[2], keepdims=1),
        node("Transpose", ["r"], "y", perm=[0, 2, 3, 1]),
    ]
    counts, _ = slim(make_model(reduced, [vi("x", FLOAT, (1, 4, 5, 3))], [out("y")], inits))
    assert counts == {"Sub": 1, "ReduceMean": 1}


def test_an_innermost_constant_stays_where_a_path_cannot_cancel():
    # the Add of a graph input in between: nothing cancels, the Transpose stays above the Sub
    nodes = [
        node("Transpose", ["x"], "t", perm=[2, 0, 1]),
        node("Sub", ["t", "c"], "s"),
        node("Add", ["s", "z"], "a"),
        node("Transpose", ["a"], "y", perm=[1, 2, 0]),
    ]
    inputs = [vi("x", FLOAT, (8, 6, 3)), vi("z", FLOAT, (3, 8, 6))]
    _, optimized = slim(make_model(nodes, inputs, [out("y", 3)], [const("c", rand(3, 1, 1))]))
    assert [n.op_type for n in optimized.graph.node][:2] == ["Transpose", "Sub"]
