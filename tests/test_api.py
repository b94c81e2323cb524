"""The Python API: optimize (path, ModelProto, onnx_ir.Model), save, slim, and their errors."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from helpers import (
    FLOAT,
    assert_same_outputs,
    const,
    interface,
    make_model,
    op_counts,
    run,
    vi,
)
from onnx import TensorProto, helper
from onnx.external_data_helper import set_external_data

import onnxslim
import onnxslim.optimizer
from onnxslim.passes import registry as passes

N = helper.make_node


def small_model() -> onnx.ModelProto:
    """Identity, a foldable Constant chain and a dead node around one MatMul."""
    w = np.arange(12, dtype=np.float32).reshape(3, 4) / 10
    return make_model(
        [
            N("Identity", ["x"], ["a"]),
            N("Constant", [], ["two"], value=const("v", np.float32(2))),
            N("Mul", ["w", "two"], ["w2"]),
            N("MatMul", ["a", "w2"], ["y"]),
            N("Relu", ["x"], ["dead"]),
        ],
        [vi("x", FLOAT, ["N", 3])],
        [vi("y", FLOAT, ["N", 4])],
        [const("w", w)],
    )


def external_model(folder: Path) -> Path:
    """A model whose two weights live in external files under `folder/weights/`."""
    (folder / "weights").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    model = make_model(
        [N("MatMul", ["x", "w1"], ["a"]), N("Relu", ["a"], ["r"]), N("MatMul", ["r", "w2"], ["y"])],
        [vi("x", FLOAT, ["N", 16])],
        [vi("y", FLOAT, ["N", 16])],
        [
            const("w1", rng.standard_normal((16, 32)).astype(np.float32)),
            const("w2", rng.standard_normal((32, 16)).astype(np.float32)),
        ],
    )
    for tensor in model.graph.initializer:
        (folder / "weights" / f"{tensor.name}.bin").write_bytes(tensor.raw_data)
        set_external_data(tensor, f"weights/{tensor.name}.bin")
        tensor.ClearField("raw_data")
        tensor.data_location = TensorProto.EXTERNAL
    onnx.save(model, folder / "model.onnx")
    return folder / "model.onnx"


def test_optimize_accepts_a_path(tmp_path):
    model = small_model()
    onnx.save(model, tmp_path / "m.onnx")
    for given in (tmp_path / "m.onnx", str(tmp_path / "m.onnx")):
        result = onnxslim.optimize(given)
        assert isinstance(result, ir.Model)
        assert op_counts(result) == {"MatMul": 1}
        assert_same_outputs(model, result)


def test_optimize_accepts_a_model_proto_and_leaves_it_alone():
    model = small_model()
    before = model.SerializeToString()
    result = onnxslim.optimize(model)
    assert isinstance(result, ir.Model)
    assert op_counts(result) == {"MatMul": 1}
    assert model.SerializeToString() == before
    assert_same_outputs(model, result)


def test_optimize_changes_an_onnx_ir_model_in_place():
    model = small_model()
    ir_model = ir.from_proto(model)
    result = onnxslim.optimize(ir_model)
    assert result is ir_model
    assert op_counts(ir_model) == {"MatMul": 1}
    assert_same_outputs(model, ir_model)


def test_optimize_options_are_keyword_only_and_validated():
    with pytest.raises(TypeError):
        onnxslim.optimize(small_model(), ["prune"])
    with pytest.raises(onnxslim.OnnxSlimError, match="unknown pass"):
        onnxslim.optimize(small_model(), skip=["no-such-pass"])


def test_optimize_without_check_skips_ort(monkeypatch):
    from onnxslim import verify

    def boom(*args, **kwargs):
        raise AssertionError("the check ran")

    monkeypatch.setattr(verify, "check", boom)
    onnxslim.optimize(small_model(), check=False)
    with pytest.raises(AssertionError, match="the check ran"):
        onnxslim.optimize(small_model())


class _BreakRelu(ir.passes.InPlacePass):
    """A wrong pass: turns every Relu into Neg."""

    def call(self, model):
        modified = False
        for node in model.graph:
            if node.op_type == "Relu":
                node.op_type = "Neg"  # the point of the test
                modified = True
        return ir.passes.PassResult(model, modified)


def test_a_pass_that_changes_results_fails_the_check(monkeypatch):
    broken = passes.PassSpec(
        "break-relu", "wrong on purpose", lambda options: _BreakRelu(), stage="setup"
    )
    monkeypatch.setattr(passes, "REGISTRY", (broken, *passes.REGISTRY))
    model = make_model(
        [N("Relu", ["x"], ["y"])], [vi("x", FLOAT, [4, 5])], [vi("y", FLOAT, [4, 5])]
    )
    with pytest.raises(
        onnxslim.CheckFailedError, match="differs from the original: y: max abs difference"
    ):
        onnxslim.optimize(model)
    assert op_counts(onnxslim.optimize(model, check=False)) == {"Neg": 1}


@pytest.mark.parametrize(
    "bad, message",
    [
        (42, "expected a path, onnx.ModelProto or onnx_ir.Model, got int"),
        ("/nonexistent/model.onnx", "no such file"),
        (onnx.ModelProto(), "no outputs"),
    ],
)
def test_optimize_rejects_what_is_not_a_model(bad, message):
    with pytest.raises(onnxslim.OnnxSlimError, match=message):
        onnxslim.optimize(bad)


def test_save_writes_an_ir_model_or_a_proto(tmp_path):
    model = small_model()
    result = onnxslim.optimize(model)
    written = onnxslim.save(result, tmp_path / "a.onnx")
    assert written == (tmp_path / "a.onnx").stat().st_size
    onnxslim.save(model, tmp_path / "b.onnx")
    assert sorted(os.listdir(tmp_path)) == [
        "a.onnx",
        "b.onnx",
    ]  # nothing left from the staging folder
    assert_same_outputs(model, tmp_path / "a.onnx")
    assert_same_outputs(model, tmp_path / "b.onnx")


def test_save_with_external_data(tmp_path):
    source = external_model(tmp_path / "src")
    onnxslim.save(onnxslim.optimize(source), tmp_path / "a.onnx", external_data=True)
    assert sorted(os.listdir(tmp_path)) == ["a.onnx", "a.onnx.data", "src"]
    proto = onnx.load(tmp_path / "a.onnx", load_external_data=False)
    assert [t.data_location for t in proto.graph.initializer] == [TensorProto.EXTERNAL] * 2
    assert (tmp_path / "a.onnx.data").stat().st_size >= 2 * 16 * 32 * 4
    assert_same_outputs(source, tmp_path / "a.onnx")


def test_save_errors(tmp_path):
    with pytest.raises(onnxslim.OnnxSlimError, match="output folder .* does not exist"):
        onnxslim.save(small_model(), tmp_path / "missing" / "a.onnx")
    with pytest.raises(
        onnxslim.OnnxSlimError, match="expected an onnx_ir.Model or onnx.ModelProto, got str"
    ):
        onnxslim.save("model.onnx", tmp_path / "a.onnx")


def test_slim_returns_a_model_proto_or_writes(tmp_path):
    model = small_model()
    proto = onnxslim.slim(model)
    assert isinstance(proto, onnx.ModelProto)
    onnx.checker.check_model(proto)
    assert op_counts(proto) == {"MatMul": 1}
    assert interface(proto) == interface(model)
    assert_same_outputs(model, proto)
    assert onnxslim.slim(model, tmp_path / "out.onnx") is None
    assert_same_outputs(model, tmp_path / "out.onnx")
    assert (
        onnxslim.slim(
            model, str(tmp_path / "ext.onnx"), external_data=True, skip=["fuse-matmul-add"]
        )
        is None
    )
    assert (tmp_path / "ext.onnx.data").is_file()


def test_an_export_script_written_for_onnxslim_pypi_runs(tmp_path):
    """Ultralytics' ONNX export: `import onnxslim`, log `onnxslim.__version__`, then
    `onnxslim.slim(proto)`; an AttributeError there made it skip the slimming."""
    import importlib.metadata

    model = small_model()
    assert onnxslim.__version__ == importlib.metadata.version("onnxslim")
    assert op_counts(onnxslim.slim(model)) == {"MatMul": 1}
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        onnxslim.not_a_name  # noqa: B018


def test_optimize_and_save_an_external_data_model_from_another_folder(tmp_path, monkeypatch):
    path = external_model(tmp_path / "src")
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    # paths resolve against the model's folder, not the working directory
    monkeypatch.chdir(elsewhere)
    result = onnxslim.optimize(path)
    onnxslim.save(result, "kept.onnx")  # a model that came with external data keeps that layout
    onnxslim.save(result, "inline.onnx", external_data=False)
    assert sorted(os.listdir(elsewhere)) == ["inline.onnx", "kept.onnx", "kept.onnx.data"]
    proto = onnx.load(elsewhere / "inline.onnx", load_external_data=False)
    assert all(t.data_location == TensorProto.DEFAULT for t in proto.graph.initializer)
    assert_same_outputs(path, elsewhere / "inline.onnx")
    assert_same_outputs(path, elsewhere / "kept.onnx")


def test_slim_of_an_external_data_model_returns_a_self_contained_proto(tmp_path, monkeypatch):
    path = external_model(tmp_path)
    monkeypatch.chdir("/")
    proto = onnxslim.slim(path)
    x = {"x": np.ones((2, 16), np.float32)}
    np.testing.assert_allclose(run(proto, x)[0], run(path, x)[0], rtol=1e-5)


def test_io_to_proto_reads_external_tensors_in(tmp_path, monkeypatch):
    from onnxslim.model import io

    path = external_model(tmp_path)
    model = onnxslim.optimize(path)
    monkeypatch.chdir("/")
    proto = io.to_proto(model)
    assert all(t.data_location == TensorProto.DEFAULT for t in proto.graph.initializer)
    x = {"x": np.ones((2, 16), np.float32)}
    np.testing.assert_allclose(run(proto, x)[0], run(path, x)[0], rtol=1e-5)
    assert isinstance(next(iter(model.graph.initializers.values())).const_value, ir.ExternalTensor)


@pytest.mark.parametrize("opset", range(1, 7))
def test_models_below_opset_7_are_converted(opset):
    model = make_model(
        [N("Relu", ["x"], ["y"])],
        [vi("x", FLOAT, [2])],
        [vi("y", FLOAT, [2])],
        opset=opset,
        ir_version=3,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = onnxslim.optimizer.optimize_with_report(model)
    assert result.notes == [f"converted from opset {opset} to 7"]
    # ORT has no kernel for some opset-1 ops: then the result says so, with a warning
    assert result.checked or "does not load in ONNX Runtime" in result.check_skipped
    assert bool(caught) != result.checked
    assert result.model.opset_imports[""] == 7


def test_sparse_initializers_are_densified():
    values = onnx.numpy_helper.from_array(np.array([1.0, 2.0], np.float32), "w")
    indices = onnx.numpy_helper.from_array(np.array([0, 3], np.int64), "w_idx")
    sparse = helper.make_sparse_tensor(values, indices, [4])
    graph = helper.make_graph(
        [N("Add", ["x", "w"], ["y"])],
        "g",
        [vi("x", FLOAT, [4])],
        [vi("y", FLOAT, [4])],
        sparse_initializer=[sparse],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    out = onnxslim.slim(model)
    x = np.arange(4, dtype=np.float32)
    np.testing.assert_allclose(run(out, {"x": x})[0], x + np.array([1, 0, 0, 2], np.float32))


def test_sparse_constants_are_densified():
    """A Constant's sparse_value (onnx-ir has no sparse tensors: the model was refused as
    invalid), in the main graph and in an If's branch."""

    def sparse(name, value, index):
        values = onnx.numpy_helper.from_array(np.array([value], np.float32), name)
        indices = onnx.numpy_helper.from_array(np.array([index], np.int64), f"{name}_idx")
        return helper.make_sparse_tensor(values, indices, [4])

    def branch(name, value):
        constant = N("Constant", [], [name], sparse_value=sparse(f"{name}_v", value, 1))
        return helper.make_graph([constant], name, [], [vi(name, FLOAT, [4])])

    nodes = [
        N("Constant", [], ["k"], sparse_value=sparse("kv", 7.0, 2)),
        N("Add", ["x", "k"], ["s"]),
        N("If", ["c"], ["b"], then_branch=branch("t", 1.0), else_branch=branch("e", 2.0)),
        N("Add", ["s", "b"], ["y"]),
    ]
    model = make_model(
        nodes, [vi("x", FLOAT, [4]), vi("c", TensorProto.BOOL, [])], [vi("y", FLOAT, [4])]
    )
    out = onnxslim.slim(model)
    x = np.arange(4, dtype=np.float32)
    expected = x + np.array([0, 1, 7, 0], np.float32)
    np.testing.assert_allclose(run(out, {"x": x, "c": np.array(True)})[0], expected)


def test_training_info_and_metadata_are_kept(tmp_path):
    model = make_model([N("Relu", ["x"], ["y"])], [vi("x", FLOAT, [2])], [vi("y", FLOAT, [2])])
    algorithm = helper.make_graph(
        [N("Identity", ["x"], ["z"])], "train", [vi("x", FLOAT, [2])], [vi("z", FLOAT, [2])]
    )
    model.training_info.add().algorithm.CopyFrom(algorithm)
    model.metadata_props.add(key="author", value="me")
    onnxslim.slim(model, tmp_path / "out.onnx")
    saved = onnx.load(tmp_path / "out.onnx")
    assert [info.algorithm.name for info in saved.training_info] == ["train"]
    assert {p.key: p.value for p in saved.metadata_props} == {"author": "me"}
    assert [info.algorithm.name for info in onnxslim.slim(model).training_info] == ["train"]


@pytest.mark.parametrize("outputs", [["y", "y"], ["y", "r", "y"], ["x", "x"]])
def test_the_same_tensor_listed_twice_as_an_output(outputs):
    nodes = [N("Relu", ["x"], ["r"]), N("Identity", ["r"], ["y"])]
    model = make_model(nodes, [vi("x", FLOAT, [2])], [vi(name, FLOAT, [2]) for name in outputs])
    out = onnxslim.slim(model)
    assert [o.name for o in out.graph.output] == outputs
    x = np.array([-1.0, 2.0], np.float32)
    for got, want in zip(run(out, {"x": x}), run(model, {"x": x})):
        np.testing.assert_array_equal(got, want)
