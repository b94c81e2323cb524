"""onnxslim.io: validated lazy loads, atomic saves, the external-data switch."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from helpers import (
    FLOAT,
    REPO,
    assert_same_outputs,
    const,
    external_data_model,
    make_model,
    run,
    vi,
)
from onnx import TensorProto, helper, numpy_helper
from test_api import external_model

import onnxslim
from onnxslim.errors import OnnxSlimError
from onnxslim.model import external, files, io, validate
from onnxslim.model.stats import model_info

N = helper.make_node
DEMO = REPO / "models" / "demo.onnx"


def test_load_is_lazy_and_survives_a_change_of_directory(tmp_path, monkeypatch):
    path = external_model(tmp_path / "m")
    monkeypatch.chdir(tmp_path / "m")
    model = io.load("model.onnx")  # a relative path
    tensor = model.graph.initializers["w1"].const_value
    assert isinstance(tensor, ir.ExternalTensor)
    monkeypatch.chdir("/")
    assert tensor.numpy().shape == (
        16,
        32,
    )  # read from the model's folder, not the working directory
    io.save(model, tmp_path / "out.onnx", external_data=False)
    assert_same_outputs(path, tmp_path / "out.onnx")


def test_weights_over_the_limit_switch_to_external_data(tmp_path, monkeypatch):
    model = io.load(DEMO)
    io.save(model, tmp_path / "small.onnx")
    assert os.listdir(tmp_path) == ["small.onnx"]
    monkeypatch.setattr(
        io, "PROTOBUF_LIMIT", external.weight_bytes(model) + 64 * 1024**2
    )  # "2 GB" = these weights
    io.save(model, tmp_path / "big.onnx")
    assert sorted(os.listdir(tmp_path)) == ["big.onnx", "big.onnx.data", "small.onnx"]
    assert_same_outputs(DEMO, tmp_path / "big.onnx")


def test_a_failed_save_leaves_the_previous_file_and_no_staging_folder(tmp_path, monkeypatch):
    target = tmp_path / "out.onnx"
    target.write_bytes(b"previous")
    real_save = ir.save

    def failing_save(model, path, *args, **kwargs):
        real_save(model, path, *args, **kwargs)  # the staged file is complete...
        raise OSError(28, "No space left on device")  # ...and then the disk fills up

    monkeypatch.setattr(ir, "save", failing_save)
    with pytest.raises(OnnxSlimError, match="out.onnx: cannot write: No space left on device"):
        io.save(io.load(DEMO), target, external_data=True)
    assert target.read_bytes() == b"previous"
    assert os.listdir(tmp_path) == ["out.onnx"]


def test_save_onto_a_folder_is_a_user_error(tmp_path):
    (tmp_path / "out.onnx").mkdir()
    with pytest.raises(OnnxSlimError, match="out.onnx: cannot write"):
        io.save(io.load(DEMO), tmp_path / "out.onnx")
    assert os.listdir(tmp_path) == ["out.onnx"]


def test_save_keeps_the_model_usable(tmp_path):
    """Saving swaps tensors in and out; the model must stay whole and savable again afterwards."""
    source = external_model(tmp_path / "src")
    model = io.load(source)
    io.save(model, tmp_path / "a.onnx", external_data=True)
    io.save(model, tmp_path / "b.onnx", external_data=False)
    assert isinstance(model.graph.initializers["w2"].const_value, ir.ExternalTensor)
    for name in ("a.onnx", "b.onnx"):
        assert_same_outputs(source, tmp_path / name)


def test_external_tensor_at_an_offset_in_a_shared_file(tmp_path):
    rng = np.random.default_rng(0)
    a, b = (
        rng.standard_normal((4, 4)).astype(np.float32),
        rng.standard_normal((4, 4)).astype(np.float32),
    )
    model = make_model(
        [N("MatMul", ["x", "a"], ["t"]), N("MatMul", ["t", "b"], ["y"])],
        [vi("x", FLOAT, [2, 4])],
        [vi("y", FLOAT, [2, 4])],
        [const("a", a), const("b", b)],
    )
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "all.bin").write_bytes(b"\0" * 100 + a.tobytes() + b.tobytes())
    for tensor, offset in zip(model.graph.initializer, (100, 164)):
        tensor.ClearField("raw_data")
        tensor.data_location = TensorProto.EXTERNAL
        for key, value in (("location", "sub/all.bin"), ("offset", str(offset)), ("length", "64")):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
    onnx.save(model, tmp_path / "m.onnx")
    loaded = io.load(tmp_path / "m.onnx")
    np.testing.assert_array_equal(loaded.graph.initializers["b"].const_value.numpy(), b)
    x = {"x": np.ones((2, 4), np.float32)}
    np.testing.assert_allclose(run(io.to_proto(loaded), x)[0], x["x"] @ a @ b, rtol=1e-5)


@pytest.mark.parametrize("weight", [(16, 100), (4, 4)])
def test_external_data_keeps_tensors_under_1_kib_in_the_model_file(tmp_path, weight):
    """A 6 KiB weight stays external; a 64-byte one, and a 400-byte bias, go inline, as onnx's
    save_model writes them; with nothing left external, no empty data file is written."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal(weight).astype(np.float32)
    model = make_model(
        [N("MatMul", ["x", "w"], ["t"]), N("Add", ["t", "b"], ["y"])],
        [vi("x", FLOAT, [2, weight[0]])],
        [vi("y", FLOAT, [2, weight[1]])],
        [const("w", w), const("b", np.ones(weight[1], np.float32))],
    )
    threshold = 1024 if w.nbytes >= 1024 else 0  # (the bias given inline, or all external)
    onnx.save(model, tmp_path / "m.onnx", save_as_external_data=True, size_threshold=threshold)
    (tmp_path / "out").mkdir()
    loaded = io.load(tmp_path / "m.onnx")
    bias = loaded.graph.initializers["b"]  # made anew, as a fold would: not the loaded bytes
    bias.const_value = ir.tensor(np.ones(weight[1], np.float32), name="b")
    io.save(loaded, tmp_path / "out" / "o.onnx")
    written = onnx.load(tmp_path / "out" / "o.onnx", load_external_data=False)
    outside = {t.name for t in written.graph.initializer if t.data_location == TensorProto.EXTERNAL}
    assert outside == ({"w"} if w.nbytes >= 1024 else set())
    assert sorted(os.listdir(tmp_path / "out")) == ["o.onnx", "o.onnx.data"][: 1 + len(outside)]
    x = {"x": np.ones((2, weight[0]), np.float32)}
    expected = x["x"] @ w + 1
    np.testing.assert_allclose(run(tmp_path / "out" / "o.onnx", x)[0], expected, rtol=1e-5)


def test_to_ir_accepts_the_three_kinds_and_nothing_else(tmp_path):
    proto = onnx.load(DEMO)
    assert isinstance(io.to_ir(proto), ir.Model)
    assert isinstance(io.to_ir(DEMO), ir.Model)
    model = io.load(DEMO)
    assert io.to_ir(model) is model
    with pytest.raises(OnnxSlimError, match="got bytes"):
        io.to_ir(DEMO.read_bytes())


def test_validate_reports_the_first_problem_in_one_line():
    cyclic = make_model(
        [N("Relu", ["b"], ["a"]), N("Relu", ["a"], ["b"]), N("Add", ["x", "a"], ["y"])],
        [vi("x", FLOAT, [2])],
        [vi("y", FLOAT, [2])],
        check=False,
    )
    with pytest.raises(
        OnnxSlimError,
        match=r"^cycle\.onnx: the graph has a cycle \(through an unnamed Relu node\)$",
    ):
        validate.validate_model(ir.from_proto(cyclic), "cycle.onnx")


def test_a_subgraph_reading_a_later_outer_value_is_a_cycle_only_when_it_is_one():
    """Nodes out of order are fine (sorted later); a subgraph that reads its own node's
    output is a cycle."""
    then = helper.make_graph([N("Identity", ["late"], ["t"])], "then", [], [vi("t", FLOAT, [2])])
    other = helper.make_graph([N("Identity", ["x"], ["e"])], "else", [], [vi("e", FLOAT, [2])])
    unsorted = make_model(
        [N("If", ["c"], ["y"], then_branch=then, else_branch=other), N("Neg", ["x"], ["late"])],
        [vi("x", FLOAT, [2]), vi("c", TensorProto.BOOL, [])],
        [vi("y", FLOAT, [2])],
        check=False,
    )
    validate.validate_model(ir.from_proto(unsorted))
    loop = make_model(
        [
            N(
                "If",
                ["c"],
                ["y"],
                then_branch=helper.make_graph(
                    [N("Identity", ["y"], ["t"])], "then", [], [vi("t", FLOAT, [2])]
                ),
                else_branch=other,
            )
        ],
        [vi("x", FLOAT, [2]), vi("c", TensorProto.BOOL, [])],
        [vi("y", FLOAT, [2])],
        check=False,
    )
    with pytest.raises(OnnxSlimError, match="cycle"):
        validate.validate_model(ir.from_proto(loop))


def test_same_file():
    assert files.same_file(DEMO, Path(str(DEMO).replace("/models/", "/models/./")))
    assert not files.same_file(DEMO, DEMO.parent / "missing.onnx")


def test_saving_over_the_models_own_data_file_keeps_the_model_usable(tmp_path):
    onnx.save(external_data_model(tmp_path, "m.onnx.data"), tmp_path / "m.onnx")
    model = onnxslim.load(tmp_path / "m.onnx")
    onnxslim.save(model, tmp_path / "m.onnx", external_data=True)
    np.testing.assert_array_equal(
        model.graph.initializers["w"].const_value.numpy(), np.ones(64, np.float32)
    )
    reloaded = onnxslim.load(tmp_path / "m.onnx")
    np.testing.assert_array_equal(
        reloaded.graph.initializers["w"].const_value.numpy(), np.ones(64, np.float32)
    )


def _chain_of_adds(count: int, big: tuple[int, ...] = ()) -> onnx.ModelProto:
    """x + c0 + c1 + ...: `count` initializers, 2x2 floats each, those in `big` 32x32 floats."""
    inits = [
        const(f"c{i}", np.full((32, 32) if i in big else (2, 2), i, np.float32))
        for i in range(count)
    ]
    nodes = [N("Add", ["x" if i == 0 else f"a{i - 1}", f"c{i}"], [f"a{i}"]) for i in range(count)]
    return make_model(
        nodes, [vi("x", FLOAT, [32, 32])], [vi(f"a{count - 1}", FLOAT, [32, 32])], inits
    )


def test_call_onnx_api_leaves_large_weights_out_and_the_model_as_it_was():
    proto = _chain_of_adds(4, big=(1, 2))
    proto.graph.input.append(vi("c3", FLOAT, [2, 2]))  # an overridable initializer
    model = ir.from_proto(proto)
    before = [(v.name, v.const_value) for v in model.graph.initializers.values()]
    inputs = list(model.graph.inputs)
    seen = external.call_onnx_api(lambda p: p, model)
    assert [t.name for t in seen.graph.initializer] == ["c0", "c3"]
    assert [i.name for i in seen.graph.input] == ["x", "c3", "c0", "c1", "c2"]
    onnx.checker.check_model(seen)
    assert [(v.name, v.const_value) for v in model.graph.initializers.values()] == before
    assert list(model.graph.inputs) == inputs
    assert all(v.is_initializer() for v in model.graph.initializers.values())
    assert not model.graph.initializers["c1"].is_graph_input()


def test_call_onnx_api_restores_the_model_when_the_call_fails():
    model = ir.from_proto(_chain_of_adds(3, big=(0,)))
    before = [(v.name, v.const_value) for v in model.graph.initializers.values()]

    def fail(_proto):
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        external.call_onnx_api(fail, model)
    assert [(v.name, v.const_value) for v in model.graph.initializers.values()] == before
    assert [v.name for v in model.graph.inputs] == ["x"]


def test_call_onnx_api_never_searches_the_input_list(monkeypatch):
    """onnx-ir's version looks each initializer up in the growing input list: quadratic, seconds
    for the checker and shape inference of a 14k-node CNN (benchmarks/scaling.py)."""
    model = ir.from_proto(_chain_of_adds(50))

    def no_search(self, item):
        raise AssertionError("linear search of the graph inputs")

    monkeypatch.setattr(type(model.graph.inputs), "__contains__", no_search)
    proto = external.call_onnx_api(lambda p: p, model)
    assert len(proto.graph.initializer) == 50


def _zipmap_classifier() -> onnx.ModelProto:
    """scikit-learn's usual classifier export: LinearClassifier, then ZipMap to a list of
    {class: probability} maps (a seq(map) output, a type onnx-ir cannot represent)."""
    ml = helper.make_operatorsetid("ai.onnx.ml", 1)
    nodes = [
        helper.make_node(
            "LinearClassifier",
            ["x"],
            ["label", "scores"],
            domain="ai.onnx.ml",
            classlabels_ints=[0, 1, 2],
            coefficients=[0.5, -1.0, 1.0, 0.2, -0.3, 0.8],
            intercepts=[0.1, 0.0, -0.1],
            post_transform="SOFTMAX",
        ),
        helper.make_node("Identity", ["scores"], ["scores2"]),  # something to remove
        helper.make_node(
            "ZipMap",
            ["scores2"],
            ["probabilities"],
            domain="ai.onnx.ml",
            classlabels_int64s=[0, 1, 2],
        ),
    ]
    maps = helper.make_sequence_type_proto(
        helper.make_map_type_proto(TensorProto.INT64, helper.make_tensor_type_proto(1, []))
    )
    graph = helper.make_graph(
        nodes,
        "zipmap",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [3, 2])],
        [
            helper.make_tensor_value_info("label", TensorProto.INT64, [3]),
            helper.make_value_info("probabilities", maps),
        ],
    )
    return helper.make_model(
        graph, opset_imports=[helper.make_operatorsetid("", 13), ml], ir_version=8
    )


def test_a_model_with_map_outputs_is_optimized_and_keeps_their_type(tmp_path):
    source, out = tmp_path / "zipmap.onnx", tmp_path / "out.onnx"
    onnx.save(_zipmap_classifier(), source)
    kept = onnxslim.optimize(source)  # checked on ORT, seq(map) outputs compared
    onnxslim.save(kept, out)
    saved = onnx.load(out)
    onnx.checker.check_model(saved, full_check=True)
    assert saved.graph.output[1] == _zipmap_classifier().graph.output[1]
    assert [n.op_type for n in saved.graph.node] == ["LinearClassifier", "ZipMap"]
    assert io.to_proto(kept).graph.output[1] == saved.graph.output[1]
    x = {"x": np.random.default_rng(0).random((3, 2), np.float32)}
    (label, maps), (label_before, maps_before) = run(saved, x), run(_zipmap_classifier(), x)
    np.testing.assert_array_equal(label, label_before)
    assert maps == maps_before and len(maps) == 3 and set(maps[0]) == {0, 1, 2}


def test_a_no_op_cast_beside_a_map_output_is_removed(tmp_path):
    """skl2onnx's TF-IDF pipeline casts its LinearClassifier's int64 label to int64 for its
    output. Past ORT's Tokenizer (no onnx schema) only onnx's whole-graph inference types the
    label, and its one map output made onnx-ir refuse the inferred graph: no type reached the
    label and the Cast stayed (onnxsim removed it)."""
    ml = helper.make_operatorsetid("ai.onnx.ml", 1)
    ms = helper.make_operatorsetid("com.microsoft", 1)
    tfidf = {"min_gram_length": 1, "max_gram_length": 1, "max_skip_count": 0}
    nodes = [
        helper.make_node(
            "Tokenizer",
            ["text"],
            ["tokens"],
            domain="com.microsoft",
            mark=0,
            pad_value="#",
            separators=[" "],
            mincharnum=1,
        ),
        helper.make_node(
            "TfIdfVectorizer",
            ["tokens"],
            ["x"],
            mode="TF",
            ngram_counts=[0],
            ngram_indexes=[0, 1],
            pool_strings=["cat", "dog"],
            **tfidf,
        ),
        *_zipmap_classifier().graph.node,
        helper.make_node("Cast", ["label"], ["output_label"], to=TensorProto.INT64),
    ]
    zipmap = _zipmap_classifier().graph
    graph = helper.make_graph(
        nodes,
        "tfidf",
        [helper.make_tensor_value_info("text", TensorProto.STRING, [3])],
        [helper.make_tensor_value_info("output_label", TensorProto.INT64, [3]), zipmap.output[1]],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_operatorsetid("", 13), ml, ms], ir_version=8
    )
    source, out = tmp_path / "tfidf.onnx", tmp_path / "out.onnx"
    onnx.save(model, source)
    onnxslim.save(onnxslim.optimize(source), out)
    saved = onnx.load(out)
    ops = ["Tokenizer", "TfIdfVectorizer", "LinearClassifier", "ZipMap"]
    assert [n.op_type for n in saved.graph.node] == ops
    assert [o.name for o in saved.graph.output] == ["output_label", "probabilities"]
    x = {"text": np.array(["cat dog dog", "cat", "dog dog bird"], dtype=object)}
    np.testing.assert_array_equal(run(saved, x)[0], run(model, x)[0])


def test_inspect_shows_the_map_types_of_a_zipmap_classifier(tmp_path):
    source = tmp_path / "zipmap.onnx"
    onnx.save(_zipmap_classifier(), source)
    info = model_info(io.load(source), source)
    assert [o.describe() for o in info.outputs] == ["int64[3]", "seq(map(int64,float32))"]


def test_bench_and_int8_take_a_zipmap_classifier(tmp_path):
    """Both loaded it with onnx-ir directly: 'not a valid ONNX model' and an internal error."""
    from onnxslim.bench import benchmark
    from onnxslim.quantization.api import quantize

    source = tmp_path / "zipmap.onnx"
    onnx.save(_zipmap_classifier(), source)
    report = benchmark([source, source], runs=3, warmup=1, measure_memory=False, progress=False)
    assert [m.nodes for m in report.models] == [3, 3]
    rng = np.random.default_rng(0)
    samples = [{"x": rng.random((3, 2), np.float32)} for _ in range(8)]
    result = quantize(source, samples, measure_latency=False, progress=False, target="vnni")
    io.save(result.model, tmp_path / "int8.onnx")
    saved = onnx.load(tmp_path / "int8.onnx")
    assert saved.graph.output[1] == _zipmap_classifier().graph.output[1]


def _zipmap_mlp() -> onnx.ModelProto:
    """MatMul -> Relu -> MatMul -> Softmax -> ZipMap: a classifier INT8 quantizes, whose
    probabilities come out as a seq(map) (scikit-learn's MLP export)."""
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("MatMul", ["x", "w1"], ["h"]),
        helper.make_node("Relu", ["h"], ["r"]),
        helper.make_node("MatMul", ["r", "w2"], ["z"]),
        helper.make_node("Softmax", ["z"], ["p"], axis=1),
        helper.make_node("ZipMap", ["p"], ["probabilities"], domain="ai.onnx.ml",
                         classlabels_int64s=list(range(10))),
    ]  # fmt: skip
    maps = helper.make_sequence_type_proto(
        helper.make_map_type_proto(TensorProto.INT64, helper.make_tensor_type_proto(1, []))
    )
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64])],
        [helper.make_value_info("probabilities", maps)],
        [
            numpy_helper.from_array(rng.normal(size=(64, 256)).astype(np.float32) * 0.3, "w1"),
            numpy_helper.from_array(rng.normal(size=(256, 10)).astype(np.float32) * 0.3, "w2"),
        ],
    )
    ml = helper.make_operatorsetid("ai.onnx.ml", 3)
    return helper.make_model(
        graph, opset_imports=[helper.make_operatorsetid("", 17), ml], ir_version=8
    )


@pytest.mark.parametrize("mode", ["auto", "dynamic"])
def test_int8_measures_and_budgets_the_drift_of_zipmap_probabilities(tmp_path, mode):
    """ZipMap's {class: probability} maps are compared as the probabilities' array (they went
    unmeasured: a budget never applied), and dynamic INT8's smoothing loads such a model."""
    from onnxslim.quantization.api import quantize

    rng = np.random.default_rng(1)
    samples = [{"x": rng.normal(size=(4, 64)).astype(np.float32)} for _ in range(40)]
    options = dict(measure_latency=False, progress=False, target="vnni", mode=mode)
    result = quantize(_zipmap_mlp(), samples, **options)
    drift = result.report.drift["probabilities"]
    assert 0.9 < drift.cosine < 1.0 and drift.top1_agreement is not None
    strict = quantize(_zipmap_mlp(), samples, **options, max_drift="cosine>=0.99999")
    assert strict.report.drift["probabilities"].min_cosine >= 0.99999


def test_a_single_file_is_written_one_large_tensor_at_a_time(tmp_path, monkeypatch):
    """`onnx.save` of a 1.6 GB model held a second proto and its serialized bytes (peak 4.6 GB,
    15 s): large initializers are spliced in one at a time, the file parsing to the same model
    (fields in another order), float_data-stored tensors as raw_data."""
    rng = np.random.default_rng(0)
    big = rng.normal(size=(128, 256)).astype(np.float32)  # 128 KiB: streamed
    ints = rng.integers(-128, 127, size=(300, 300)).astype(np.int8)
    as_floats = numpy_helper.from_array(rng.normal(size=(256, 64)).astype(np.float32), "f")
    as_floats.float_data.extend(numpy_helper.to_array(as_floats).ravel().tolist())
    as_floats.ClearField("raw_data")
    model = make_model(
        [
            helper.make_node("MatMul", ["x", "big"], ["a"]),
            helper.make_node("Add", ["a", "small"], ["b"]),
            helper.make_node("MatMul", ["b", "f"], ["y"]),
            helper.make_node("Cast", ["ints"], ["z"], to=TensorProto.FLOAT),
        ],
        [vi("x", FLOAT, [1, 128])],
        [vi("y", FLOAT, [1, 64]), vi("z", FLOAT, [300, 300])],
        [
            const("big", big),
            const("small", np.ones(256, np.float32)),
            const("ints", ints),
            as_floats,
        ],
    )
    model.graph.initializer[0].doc_string = "kept"
    loaded = io.from_proto(model)
    sizes = []  # of the protos built whole: without the large tensors' bytes
    serialize = io._serialized

    def serialized(m):
        proto = serialize(m)
        sizes.append(proto.ByteSize())
        return proto

    monkeypatch.setattr(io, "_serialized", serialized)
    written = io.save(loaded, tmp_path / "m.onnx")
    assert len(sizes) == 1 and sizes[0] < 64 * 1024 < big.nbytes
    assert written == (tmp_path / "m.onnx").stat().st_size
    back = onnx.load(tmp_path / "m.onnx")
    onnx.checker.check_model(back, full_check=True)
    arrays = {t.name: numpy_helper.to_array(t) for t in back.graph.initializer}
    assert np.array_equal(arrays["big"], big) and np.array_equal(arrays["ints"], ints)
    assert np.array_equal(arrays["f"], numpy_helper.to_array(as_floats))
    assert back.graph.initializer[0].doc_string == "kept"
    assert_same_outputs(model, back)
    expected = io.to_proto(loaded)  # as onnx.save wrote it, but for the tensors' storage
    for proto in (back, expected):
        assert [t.name for t in proto.graph.initializer] == ["big", "small", "ints", "f"]
        del proto.graph.initializer[:]
    assert back == expected
    # over protobuf's limit (onnx.save refused it): refused, not written unreadable
    monkeypatch.setattr(io, "PROTOBUF_LIMIT", written)
    refused = r"cannot serialize the model: .* over protobuf's 2 GiB"
    with pytest.raises(OnnxSlimError, match=refused):
        io.save(loaded, tmp_path / "over.onnx", external_data=False)
    assert not list(tmp_path.glob("*over*"))


@pytest.mark.parametrize("external_data", [False, True])
def test_a_tensors_metadata_is_written_once(tmp_path, external_data):
    """onnx-ir wrote a loaded tensor's metadata_props twice (its proto's, then its own): each
    load and save of an initializer or Constant with metadata added one more copy."""
    weight = numpy_helper.from_array(np.ones(4, np.float32), "w")
    weight.metadata_props.add(key="source", value="layer1")
    value = numpy_helper.from_array(np.full(4, 2, np.float32), "v")
    value.metadata_props.add(key="source", value="constant")
    model = make_model(
        [
            helper.make_node("Constant", [], ["c"], value=value),
            helper.make_node("Add", ["x", "w"], ["a"]),
            helper.make_node("Mul", ["a", "c"], ["y"]),
        ],
        [vi("x", FLOAT, [4])],
        [vi("y", FLOAT, [4])],
        [weight],
    )
    path = tmp_path / "m0.onnx"
    onnx.save(model, path)
    for index in (1, 2):
        path, previous = tmp_path / f"m{index}.onnx", path
        io.save(io.load(previous), path, external_data=external_data)
    saved = onnx.load(path)
    (constant,) = [node.attribute[0].t for node in saved.graph.node if node.op_type == "Constant"]
    for tensor, source in ((saved.graph.initializer[0], "layer1"), (constant, "constant")):
        assert [(p.key, p.value) for p in tensor.metadata_props] == [("source", source)]
    assert_same_outputs(model, saved)
