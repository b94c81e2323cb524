"""INT8 weights: the MSE clip range per channel and GPTQ rounding against calibration inputs."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import pytest
from helpers import FLOAT, INT64, const, make_model, vi
from onnx import helper
from test_quantize import (
    FAST,
    _conv_pair_samples,
    _neighbour_sums,
    cnn,
    conv_lstm,
    conv_pair,
    matmul_chain,
    samples,
)

from onnxslim.drift import compare_outputs
from onnxslim.errors import OnnxSlimError
from onnxslim.model.graph import OutputKinds
from onnxslim.passes.prune import DeduplicateInitializers
from onnxslim.quantization import builder as builder_module
from onnxslim.quantization import dynamic, gptq, levers, modes, quantize, trades
from onnxslim.quantization.builder import run_samples
from onnxslim.quantization.calibration import collect_hessians
from onnxslim.quantization.plan import QuantOptions, prepare
from onnxslim.quantization.qdq import dequantize, quantize_bias, quantize_weight
from onnxslim.quantization.report import Outcome


def _weight_error(w, axis, bits, method):
    q, qp = quantize_weight(w, axis, bits, method)
    return float(np.square(dequantize(q, qp) - w).sum())


@pytest.mark.parametrize("bits", [4, 7, 8])
def test_mse_weight_range_never_worse_than_minmax_and_clips_an_outlier(bits):
    rng = np.random.default_rng(0)
    w = rng.normal(size=(16, 64, 3, 3)).astype(np.float32)
    w[3] = rng.laplace(size=w[3].shape)
    w[3, 0, 0, 0] = 15.0  # channel 3: heavy tails and an outlier weight
    assert _weight_error(w, None, bits, "mse") <= _weight_error(w, None, bits, "minmax")
    err = {
        m: np.square(dequantize(*quantize_weight(w, 0, bits, m)) - w).reshape(16, -1).sum(axis=1)
        for m in ("minmax", "mse")
    }
    assert np.all(err["mse"] <= err["minmax"])
    if bits < 8:  # at 8 bits the steps are already fine enough: clipping costs more than it buys
        assert err["mse"][3] < (0.6 if bits == 4 else 0.97) * err["minmax"][3]


def test_unknown_weight_options_are_errors():
    with pytest.raises(OnnxSlimError, match="weight range"):
        QuantOptions(weight_range="kl")
    with pytest.raises(OnnxSlimError, match="weight rounding"):
        QuantOptions(weight_rounding="adaround")
    with pytest.raises(OnnxSlimError, match="unknown weight rounding 'adaround': choose nearest"):
        quantize(cnn(), samples(4), **{**FAST, "weight_rounding": "adaround"})


def test_auto_rounding_keeps_gptq_only_where_closer_on_the_selection_samples():
    """The same model and samples with each rounding: auto keeps the one `_closest` finds closer
    by its bootstrap rule (GPTQ on this model), says so and reports it."""
    data = samples(40)
    reports = {
        rounding: quantize(cnn(), data, **{**FAST, "weight_rounding": rounding}).report
        for rounding in ("nearest", "gptq", "auto")
    }
    note = next(n for n in reports["auto"].notes if n.startswith("kept GPTQ rounding ("))
    assert "nearest rounding:" in note and "bootstrap resamples" in note
    assert reports["auto"].weight_rounding == "gptq"
    snr = {rounding: report.drift["y"].snr_db for rounding, report in reports.items()}
    assert snr["auto"] == snr["gptq"] != snr["nearest"]


def _conv_node(w, **attrs):
    x = ir.Value(name="x")
    weight = ir.Value(name="w", const_value=ir.tensor(w))
    return ir.node("Conv", [x, weight], attributes=attrs)


@pytest.mark.parametrize(
    "attrs",
    [
        {},
        {"pads": [1, 1, 1, 1]},
        {"strides": [2, 2], "pads": [0, 1, 2, 1], "dilations": [2, 1]},
        {"auto_pad": "SAME_UPPER"},
        {"auto_pad": "SAME_LOWER", "strides": [2, 3]},
        {"auto_pad": "SAME_UPPER", "strides": [2, 2]},  # ORT: no dilations with SAME_*
        {"auto_pad": "VALID", "strides": [2, 1]},
    ],
)
def test_input_columns_are_the_conv_as_a_matrix_product(attrs):
    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 3, 3, 2)).astype(np.float32)
    x = rng.normal(size=(2, 3, 9, 8)).astype(np.float32)
    model = make_model(
        [helper.make_node("Conv", ["x", "w"], ["y"], **attrs)],
        [vi("x", shape=list(x.shape))],
        [vi("y")],
        [const("w", w)],
        opset=13,
    )
    y = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    node = _conv_node(w, **attrs)
    columns = gptq.input_columns(node, x)  # [C * kh * kw, N * positions]
    product = gptq.weight_matrix(node, w) @ columns  # [C_out, N * positions]
    expected = y.transpose(1, 0, 2, 3).reshape(4, -1)
    np.testing.assert_allclose(product, expected, rtol=1e-4, atol=1e-4)


def test_gptq_rounding_lowers_the_layer_output_error_of_a_conv():
    """On correlated inputs (what a layer sees after a previous one), rounding with error
    compensation moves the conv output less than rounding each weight to its nearest level."""
    rng = np.random.default_rng(0)
    w = rng.normal(size=(16, 8, 3, 3)).astype(np.float32)
    mix = rng.normal(size=(8, 8))
    x = np.einsum("ij,njhw->nihw", mix, rng.normal(size=(4, 8, 12, 12))).astype(np.float32)
    node = _conv_node(w, pads=[1, 1, 1, 1])
    columns = gptq.input_columns(node, x)
    hessian = columns @ columns.T
    matrix = gptq.weight_matrix(node, w)

    def output_error(rounding):
        q, qp = quantize_weight(w, 0, 7, rounding=rounding)
        delta = gptq.weight_matrix(node, dequantize(q, qp) - w)
        return float(np.square(delta @ columns).sum())

    def rounded(weight, scale, qmax):
        return gptq.from_matrix(node, gptq.gptq_round(matrix, hessian, scale, qmax), weight.shape)

    nearest, compensated = output_error(None), output_error(rounded)
    assert compensated < 0.8 * nearest


def test_quantize_bias_keeps_the_given_rounding_unless_the_scale_grows():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 3, 1, 1)).astype(np.float32)
    q, qp = quantize_weight(w, 0, 8)
    other = np.clip(q.astype(np.int16) + 1, -127, 127).astype(np.int8)  # some other rounding
    scale = np.array(0.1, np.float32)
    _, _, kept, _ = quantize_bias(np.zeros(4, np.float32), scale, w, qp, 8, other)
    np.testing.assert_array_equal(kept, other)
    huge = np.full(4, 1e9, np.float32)  # overflows int32 at this scale: weights re-rounded
    _, _, redone, wq = quantize_bias(huge, scale, w, qp, 8, other)
    assert np.all(wq.scale > qp.scale)
    expected = np.clip(np.round(w / wq.scale[:, None, None, None]), -127, 127)
    np.testing.assert_array_equal(redone, expected)


@pytest.mark.parametrize("options", [{"weight_rounding": "gptq"}, {"weight_range": "mse"}])
def test_quantized_model_with_weight_options_stays_close_to_float(options):
    data = samples(16)
    result = quantize(cnn(), data, **{**FAST, **options})
    ref = ort.InferenceSession(cnn().SerializeToString())
    session = ort.InferenceSession(ir.to_proto(result.model).SerializeToString())
    refs = [{"y": ref.run(None, s)[0]} for s in data]
    outs = [{"y": session.run(None, s)[0]} for s in data]
    assert compare_outputs(refs, outs)["y"].cosine > 0.99


def test_relu6_output_range_stays_within_its_bounds():
    """A Clip(0, 6) folded into the conv before it gives the conv's output a range in [0, 6]: zero
    point 0 and 255 steps of at most 6 / 255."""
    from test_quantize import depthwise_cnn

    rng = np.random.default_rng(4)
    data = [{"x": 3 * rng.normal(size=(1, 8, 16, 16)).astype(np.float32)} for _ in range(16)]
    model = quantize(depthwise_cnn(), data, **FAST).model
    quantizes = {n.inputs[0].name: n for n in model.graph if n.op_type == "QuantizeLinear"}
    for name in ("r1", "r2"):
        scale, zero_point = (quantizes[name].inputs[i].const_value.numpy() for i in (1, 2))
        assert int(zero_point) == 0 and float(scale) * 255 <= 6.0 + 1e-5


def test_gptq_is_the_default_rounding_of_int8_compute():
    options = {key: value for key, value in FAST.items() if key != "weight_rounding"}
    report = quantize(cnn(), samples(16), **options).report
    assert report.weight_rounding == "gptq"


@pytest.mark.parametrize(
    ("shape", "kernel", "attrs"),
    [
        ((2, 3, 12, 10), (3, 3), {"pads": [1, 1, 1, 1]}),
        ((1, 2, 13, 11), (3, 2), {"strides": [2, 1], "dilations": [1, 2]}),
        ((1, 2, 1, 200), (1, 3), {}),  # a long, thin map: strided along its long axis
    ],
)
def test_input_columns_are_conv_patches_at_strided_positions(monkeypatch, shape, kernel, attrs):
    """With at most MAX_COLUMNS positions per sample, W @ columns is the conv's output at a grid
    of its positions, strided along each axis (checked against ORT's Conv)."""
    monkeypatch.setattr(gptq, "MAX_COLUMNS", 16)
    rng = np.random.default_rng(4)
    w = rng.normal(size=(5, shape[1], *kernel)).astype(np.float32)
    x = rng.normal(size=shape).astype(np.float32)
    model = make_model(
        [helper.make_node("Conv", ["x", "w"], ["y"], name="conv", **attrs)],
        [vi("x", shape=list(shape))],
        [vi("y", shape=[None] * 4)],
        [const("w", w)],
    )
    (y,) = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})
    node = next(iter(ir.from_proto(model).graph))
    columns = gptq.input_columns(node, x)
    steps = gptq._steps(y.shape[2:])
    expected = y[:, :, :: steps[0], :: steps[1]]
    assert expected.shape[2] * expected.shape[3] <= 16
    got = (gptq.weight_matrix(node, w) @ columns).reshape(5, shape[0], *expected.shape[2:])
    np.testing.assert_allclose(got.transpose(1, 0, 2, 3), expected, rtol=1e-4, atol=1e-4)


def test_gptq_rounds_each_layer_once_for_all_builds(monkeypatch):
    """The variants one quantization builds (bias correction, percentiles, timed choices) round
    the same weights at the same scales: GPTQ runs once per layer and scale."""
    calls = []
    real = gptq.gptq_round
    monkeypatch.setattr(gptq, "gptq_round", lambda *a: calls.append(a[0].shape) or real(*a))
    options = {key: value for key, value in FAST.items() if key != "weight_rounding"}
    quantize(cnn(), samples(16), **options)
    assert calls and len(calls) == len({shape for shape in calls}) <= 3  # conv1, conv2, fc


def test_gptq_factorizes_each_hessian_once_for_every_weight_and_scale(monkeypatch):
    """A Hessian's factorization (cubic in its width: 37 s of a 9216-wide conv's rounding) is made
    once for every rounding against it: INT8 compute's pair-limited scales (avx2) and float
    compute's full ones, and the CLE variant's (conv_pair's first conv: its Hessian, weights CLE
    rescaled); the roundings are those made without the cache."""
    from onnxslim.bench import Latency
    from onnxslim.quantization import targets, trades
    from onnxslim.quantization.targets import CpuInfo

    rng = np.random.default_rng(0)
    x = rng.normal(size=(24, 200))
    hessian, w = x @ x.T, rng.normal(size=(8, 24))
    scales = [(np.abs(w).max(1) / qmax, qmax) for qmax in (127, 63)]
    expected = [gptq.gptq_round(w, hessian, scale, qmax) for scale, qmax in scales]
    factored, rounds = [], []
    real_factorize, real_round = gptq.factorize, gptq.gptq_round
    monkeypatch.setattr(gptq, "factorize", lambda h: factored.append(id(h)) or real_factorize(h))

    def spy(w, hessian, scale, qmax, factors=None):
        rounds.append(id(hessian))
        return real_round(w, hessian, scale, qmax, factors)

    monkeypatch.setattr(gptq, "gptq_round", spy)
    rounding = gptq.cached_rounding(hessian, gptq.RoundingCache(), np.asarray, lambda q, _shape: q)
    for (scale, qmax), q in zip(scales, expected, strict=True):
        np.testing.assert_array_equal(rounding(w, scale, qmax), q)
    assert factored == [id(hessian)] and len(rounds) == 2

    factored.clear()
    rounds.clear()
    monkeypatch.setattr(targets, "cpu_info", lambda: CpuInfo("m", "x86_64", {"avx2": True}))
    monkeypatch.setattr(trades, "side_by_side", lambda *a: [Latency(1.0, 1.0, 1.0, 1.0)] * 2)
    options = {**FAST, "weight_rounding": "gptq", "target": "auto", "measure_latency": True}
    report = quantize(conv_pair(), _conv_pair_samples(16), **options).report
    assert report.mode == "weight-only"  # (float compute's scales: not pair-limited)
    assert len(rounds) > len(set(rounds)) and sorted(factored) == sorted(set(rounds))


def test_the_rounding_cache_lets_go_of_what_a_dropped_hessian_made():
    """The equalized builder's Hessians (1 GiB at most) and their factorizations stayed in the
    cache it shares with the plain builder after the plain one was chosen: what a Hessian made
    goes with it, and a new Hessian is rounded afresh."""
    rng = np.random.default_rng(5)
    x, w = rng.normal(size=(24, 200)), rng.normal(size=(8, 24))
    scale = np.abs(w).max(1) / 127
    cache = gptq.RoundingCache()
    hessian = x @ x.T
    q = gptq.cached_rounding(hessian, cache, np.asarray, lambda q, _shape: q)(w, scale, 127)
    assert len(cache.factors) == 1 and len(cache.rounded) == 1
    del hessian
    assert not cache.factors and not cache.rounded
    other = x[:, :30] @ x[:, :30].T  # (another Hessian, whatever id it gets)
    again = gptq.cached_rounding(other, cache, np.asarray, lambda q, _shape: q)(w, scale, 127)
    np.testing.assert_array_equal(again, gptq.gptq_round(w, other, scale, 127))
    assert not np.array_equal(again, q)


def test_gptq_past_its_memory_limit_rounds_to_nearest_and_says_so(monkeypatch):
    """Layer input statistics are inputs x inputs float64 each: past the limit (a large
    transformer's would not fit in memory) the later nodes round to nearest, and a note says so."""
    model = cnn()
    by_name = {n.name: n for n in ir.from_proto(model).graph}
    first = gptq.hessian_bytes(by_name["conv1"])
    monkeypatch.setattr(builder_module, "GPTQ_MEMORY", first)  # room for conv1's only
    options = {key: value for key, value in FAST.items() if key != "weight_rounding"}
    report = quantize(model, samples(16), **options).report
    (note,) = [n for n in report.notes if n.startswith("GPTQ rounding left out")]
    assert note.startswith("GPTQ rounding left out for 2 node(s) past its memory limit")
    assert report.weight_rounding == "gptq"


def _textbook_gptq(w, hessian, scale, qmax):
    """GPTQ column by column in float64 from an explicit inverse (no blocks, no float32)."""
    h = hessian.copy()
    diag = np.diag(h).copy()
    h[np.diag_indices(len(h))] = np.where(diag > 0, diag, 1.0)
    order = np.argsort(-np.diag(h), kind="stable")
    h = h[np.ix_(order, order)] + gptq.DAMP * np.mean(np.diag(h)) * np.eye(len(h))
    upper = np.linalg.cholesky(np.linalg.inv(h)).T
    w, q = w[:, order].copy(), np.zeros_like(w)
    for i in range(w.shape[1]):
        q[:, i] = np.clip(np.round(w[:, i] / scale), -qmax, qmax)
        err = (w[:, i] - q[:, i] * scale) / upper[i, i]
        w[:, i:] -= np.outer(err, upper[i, i:])
    out = np.empty_like(q)
    out[:, order] = q
    return out


def test_gptq_on_a_wide_layer_matches_the_textbook_algorithm():
    """600 inputs (the inverse factor is built by halves past 256), 5 never active: the output
    error ``(W - Q) X`` matches GPTQ's column-by-column definition and beats nearest rounding."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(600, 900)) * rng.uniform(0.1, 3.0, size=(600, 1))
    x[[3, 100, 300, 450, 599]] = 0.0
    w = rng.normal(size=(24, 600))
    scale = np.abs(w).max(axis=1) / 127
    hessian = x @ x.T

    def output_error(q):
        return float(np.square((w - q * scale[:, None]) @ x).sum())

    fast = gptq.gptq_round(w, hessian, scale, 127)
    textbook = _textbook_gptq(w, hessian, scale, 127)
    nearest = np.round(w / scale[:, None])
    assert np.mean(fast != textbook) < 0.01
    assert output_error(fast) == pytest.approx(output_error(textbook), rel=0.01)
    assert output_error(fast) < 0.75 * output_error(nearest)


def _shared_weight_model(users: int = 4) -> onnx.ModelProto:
    """A chain of `users` 3x3 convs (with Relu) that all read one weight."""
    w = np.random.default_rng(8).normal(size=(32, 32, 3, 3)).astype(np.float32) * 0.05
    nodes, x = [], "x"
    for i in range(users):
        nodes += [
            helper.make_node("Conv", [x, "w"], [f"c{i}"], name=f"conv{i}", pads=[1, 1, 1, 1]),
            helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"relu{i}"),
        ]
        x = f"r{i}"
    return make_model(
        nodes, [vi("x", shape=[1, 32, 12, 12])], [vi(x, shape=[1, 32, 12, 12])], [const("w", w)]
    )


@pytest.mark.parametrize(
    ("mode", "rounding"), [("static", "gptq"), ("static", "nearest"), ("auto", "gptq")]
)
def test_a_weight_several_nodes_share_is_stored_once(mode, rounding):
    """Four convs reading one float weight: one int8 copy of it in the file (GPTQ rounds it once,
    against the sum of its users' Hessians), a quarter of the float file or less."""
    model = _shared_weight_model()
    rng = np.random.default_rng(9)
    data = [{"x": rng.normal(size=(1, 32, 12, 12)).astype(np.float32)} for _ in range(24)]
    options = {**FAST, "weight_rounding": rounding, "mode": mode, "min_macs": 0}
    result = quantize(model, data, **options)
    proto = ir.to_proto(result.model)
    int8 = [t for t in proto.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert [tuple(t.dims) for t in int8] == [(32, 32, 3, 3)]
    assert proto.ByteSize() < 0.35 * model.ByteSize()
    assert result.report.quantized == {"Conv": 4}
    runs = [ort.InferenceSession(m.SerializeToString()) for m in (model, proto)]
    ref, out = ([dict(zip(["y"], s.run(None, x))) for x in data[:4]] for s in runs)
    assert min(d.min_cosine for d in compare_outputs(ref, out).values()) > 0.99


def test_a_shared_weights_statistics_are_collected_summed_within_gptqs_memory_limit(monkeypatch):
    """The four convs' ``X X^T`` are collected as one sum: room for one conv's suffices for GPTQ
    to round the shared weight once; without it, all four round it to nearest, still one int8
    copy (a captcha CRNN's LSTM: nine copies of two shared weights, 0.86x the float file)."""
    model = _shared_weight_model()
    rng = np.random.default_rng(9)
    data = [{"x": rng.normal(size=(1, 32, 12, 12)).astype(np.float32)} for _ in range(24)]
    options = {**FAST, "weight_rounding": "gptq", "mode": "static"}
    one = 8 * (32 * 9) ** 2  # one conv's X X^T in float64
    weights, skipped = {}, {}
    for room in (one - 1, one):
        monkeypatch.setattr(builder_module, "GPTQ_MEMORY", room)
        result = quantize(model, data, **options)
        proto = ir.to_proto(result.model)
        int8 = [t for t in proto.graph.initializer if t.data_type == onnx.TensorProto.INT8]
        assert len(int8) == 1
        weights[room] = onnx.numpy_helper.to_array(int8[0])
        skipped[room] = any(
            "GPTQ rounding left out for 4 node(s)" in n for n in result.report.notes
        )
    assert skipped == {one - 1: True, one: False}
    nearest = ir.to_proto(quantize(model, data, **{**options, "weight_rounding": "nearest"}).model)
    (rounded,) = (t for t in nearest.graph.initializer if t.data_type == onnx.TensorProto.INT8)
    np.testing.assert_array_equal(weights[one - 1], onnx.numpy_helper.to_array(rounded))
    assert np.mean(weights[one] != weights[one - 1]) > 0.05  # GPTQ's rounding


@pytest.mark.parametrize("room", [1.5, 0.5])
def test_a_shared_weight_rounds_alike_in_every_build(monkeypatch, room):
    """The budget's fallback builds with some readers of a shared weight in float: its GPTQ
    statistics (all four convs', summed) are collected once and serve every build, and where
    they pass the memory limit every build rounds it to nearest; so the model the fallback
    measured is the one it hands back."""
    model = _shared_weight_model()
    rng = np.random.default_rng(9)
    data = [{"x": rng.normal(size=(1, 32, 12, 12)).astype(np.float32)} for _ in range(8)]
    monkeypatch.setattr(builder_module, "GPTQ_MEMORY", int(room * 8 * (32 * 9) ** 2))
    collected = []
    real = builder_module.collect

    def collect(*args, hessians=None, **kwargs):
        collected.extend([1] if hessians else [])
        return real(*args, hessians=hessians, **kwargs)

    monkeypatch.setattr(builder_module, "collect", collect)
    options = QuantOptions(weight_rounding="gptq", min_macs=0)
    builder = builder_module.QuantBuilder(ir.from_proto(model), data, options, "minmax", {}, False)
    weights = [
        {
            t.name: onnx.numpy_helper.to_array(t)
            for t in ir.to_proto(builder.build(exclude=excluded)[0]).graph.initializer
            if t.data_type == onnx.TensorProto.INT8
        }
        for excluded in ([], ["conv3"], ["conv0", "conv3"], [])
    ]
    assert len(collected) == (1 if room > 1 else 0)
    assert len({w.tobytes() for build in weights for w in build.values()}) == 1
    assert (builder.gptq_skipped == {"conv0", "conv1", "conv2", "conv3"}) == (room < 1)


def test_a_shared_weight_read_in_float_compute_too_is_gptq_rounded_once():
    """One of the four convs computes in float on the int8-stored weight (weight-only): GPTQ
    rounds the weight once for all four, against their summed statistics, the same int8 copy as
    when all four compute in INT8, and not nearest rounding's."""
    model = _shared_weight_model()
    rng = np.random.default_rng(9)
    data = [{"x": rng.normal(size=(1, 32, 12, 12)).astype(np.float32)} for _ in range(8)]
    copies = {}
    for rounding, weight_only in (("gptq", []), ("gptq", ["conv3"]), ("nearest", ["conv3"])):
        options = QuantOptions(weight_rounding=rounding, min_macs=0)
        builder = builder_module.QuantBuilder(
            ir.from_proto(model), data, options, "minmax", {}, False
        )
        built, _ = builder.build(weight_only=weight_only)
        DeduplicateInitializers()(built)  # as quantize does
        proto = ir.to_proto(built)
        (copies[rounding, bool(weight_only)],) = (
            onnx.numpy_helper.to_array(t)
            for t in proto.graph.initializer
            if t.data_type == onnx.TensorProto.INT8
        )
        assert list(builder.hessians) == (
            [("conv0", "conv1", "conv2", "conv3")] * (rounding == "gptq")
        )
    np.testing.assert_array_equal(copies["gptq", True], copies["gptq", False])
    assert not np.array_equal(copies["gptq", True], copies["nearest", True])


def test_int8_stored_weights_of_a_conv_computing_in_float_are_gptq_rounded():
    """A conv computing in float on int8-stored weights (weight-only INT8): with GPTQ rounding its
    output on the calibration samples, as ONNX Runtime computes it, moves less than with nearest
    rounding; not so where GPTQ is off for float compute (synthesized samples)."""
    model, _ = _depthwise(group=1, pads=[1, 1, 1, 1])
    data = _smooth_maps(np.random.default_rng(24), 8, 6)
    ref = ort.InferenceSession(model.SerializeToString()).run(None, {"x": _stacked(data)})[0]
    errors = {}
    for rounding, in_float in (("nearest", True), ("gptq", True), ("gptq", False)):
        options = QuantOptions(weight_rounding=rounding, min_macs=0, gptq_float_compute=in_float)
        builder = builder_module.QuantBuilder(
            ir.from_proto(model), data, options, "minmax", {}, False
        )
        built, info = builder.build(weight_only=["dw"])
        assert info.plan.weight_only == ["dw"] and not info.plan.nodes
        session = ort.InferenceSession(ir.to_proto(built).SerializeToString())
        output = session.run(None, {"x": _stacked(data)})[0]
        errors[rounding, in_float] = float(np.square(output - ref).sum())
    assert errors["gptq", True] < 0.9 * errors["nearest", True]
    assert errors["gptq", False] == errors["nearest", True]


@pytest.mark.parametrize("random_inputs", [False, True])
def test_weight_only_int8_says_how_its_weights_were_rounded(monkeypatch, random_inputs):
    """Mode auto handing back float compute on int8-stored weights: GPTQ-rounded on given samples,
    to nearest on random ones (GPTQ fitted to synthesized samples moved PP-OCRv5 cls's float
    compute further from float on real pictures: 30.9 -> 25.0 dB); the report says which, and
    what bias correction it chose for float compute."""
    monkeypatch.setattr(modes, "int8_or_float", lambda int8, float_compute, *_, **__: float_compute)
    options = {**FAST, "weight_rounding": "gptq", "target": "auto", "measure_latency": True}
    report = quantize(cnn(), samples(20), **options, random_inputs=random_inputs).report
    assert report.mode == "weight-only"
    assert report.weight_rounding == ("nearest" if random_inputs else "gptq")
    (note,) = [n for n in report.notes if n.startswith("float compute on int8-stored weights: ")]
    kept = "bias correction" if report.bias_correction else "plain"
    assert note.startswith(f"float compute on int8-stored weights: kept {kept} (output SNR")


def test_a_tied_embedding_is_stored_once_in_weight_only_int8():
    """A table read by a Gather (word embeddings) and by a Gemm (the tied output projection),
    both on int8-stored weights: GPTQ cannot round it for the Gather, so both round it to
    nearest alike, and the file holds one int8 copy."""
    table = np.random.default_rng(26).normal(size=(128, 64)).astype(np.float32)
    nodes = [
        helper.make_node("Gather", ["table", "ids"], ["embedded"], name="gather"),
        helper.make_node("Gemm", ["x", "table"], ["logits"], name="gemm", transB=1),
    ]
    model = make_model(
        nodes,
        [vi("ids", onnx.TensorProto.INT64, [1, 8]), vi("x", shape=[1, 64])],
        [vi("embedded", shape=[1, 8, 64]), vi("logits", shape=[1, 128])],
        [const("table", table)],
    )
    rng = np.random.default_rng(27)
    data = [
        {"ids": rng.integers(0, 128, (1, 8)), "x": rng.normal(size=(1, 64)).astype(np.float32)}
        for _ in range(8)
    ]
    options = QuantOptions(weight_rounding="gptq", min_macs=0)
    builder = builder_module.QuantBuilder(ir.from_proto(model), data, options, "minmax", {}, False)
    built, info = builder.build(weight_only=["gather", "gemm"])
    assert sorted(info.plan.weight_only) == ["gather", "gemm"] and not builder.hessians
    DeduplicateInitializers()(built)  # as quantize does
    int8 = [t for t in ir.to_proto(built).graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert [tuple(t.dims) for t in int8] == [(128, 64)]


def _stacked(feeds: list[dict]) -> np.ndarray:
    return np.concatenate([f["x"] for f in feeds])


def test_an_equalized_models_gptq_statistics_derive_from_the_plain_models():
    """CLE divides a pair's second conv's input channels by its scales: the equalized model's
    ``X X^T`` taken from the plain model's (no second pass over the calibration samples) equals
    the one collected on the equalized model. Three convs: the middle one is the second conv of
    one pair and the first of the next, so CLE takes several rounds."""
    from onnxslim.quantization.equalize import EqualizePass

    rng = np.random.default_rng(11)
    nodes, weights, x = [], [], "x"
    for i, c_in in enumerate((3, 8, 8)):
        spread = rng.uniform(0.05, 3.0, size=(8, 1, 1, 1))  # rows of very different ranges
        w = (rng.normal(size=(8, c_in, 3, 3)) * spread).astype(np.float32)
        nodes += [
            helper.make_node("Conv", [x, f"w{i}"], [f"c{i}"], name=f"conv{i}", pads=[1, 1, 1, 1]),
            helper.make_node("Relu", [f"c{i}"], [f"r{i}"], name=f"relu{i}"),
        ]
        weights.append(const(f"w{i}", w))
        x = f"r{i}"
    proto = make_model(
        nodes, [vi("x", shape=[1, 3, 12, 12])], [vi(x, shape=[1, 8, 12, 12])], weights
    )
    data = [{"x": rng.normal(size=(1, 3, 12, 12)).astype(np.float32)} for _ in range(6)]
    options = QuantOptions(weight_rounding="gptq")

    def builder(model, equalized=False):
        return builder_module.QuantBuilder(
            model, data, options, "percentile", {"pct": 99.99}, False, equalized
        )

    plain = builder(prepare(ir.from_proto(proto)))
    equalize = EqualizePass()
    equalized = prepare(ir.from_proto(proto))
    equalize(equalized)
    derived, collected = builder(equalized, True), builder(equalized, True)
    derived.hessian_source = (plain, equalize.input_scales)
    for each in (plain, derived, collected):
        each.build()
    assert set(equalize.input_scales) == {"conv1", "conv2"}
    assert all(s.max() / s.min() > 3 for s in equalize.input_scales.values())  # CLE moved a lot
    assert set(derived.hessians) == set(collected.hessians) == {("conv0",), ("conv1",), ("conv2",)}
    for name, hessian in collected.hessians.items():
        np.testing.assert_allclose(derived.hessians[name], hessian, rtol=1e-4, atol=1e-6)


def test_a_build_runs_the_model_over_the_samples_once(monkeypatch):
    """Histograms, bias correction's channel means and GPTQ's X X^T were three runs of the model
    over the samples (Mask R-CNN: 70-110 s each), and the variant trying bias correction a fourth:
    a build observes all of them in one, the variant none."""
    model = prepare(ir.from_proto(cnn()))
    rng = np.random.default_rng(2)
    data = [{"x": rng.normal(size=(1, 3, 16, 16)).astype(np.float32)} for _ in range(6)]
    runs = []
    real = builder_module.collect

    def collect(proto, samples, **asked):
        runs.append(sorted(key for key in ("histograms", "means", "hessians") if asked[key]))
        return real(proto, samples, **asked)

    monkeypatch.setattr(builder_module, "collect", collect)
    options = QuantOptions(weight_rounding="gptq", min_macs=0)
    builder = builder_module.QuantBuilder(model, data, options, "minmax", {}, False)
    builder.may_correct_bias = True  # (bias correction "auto": a variant tries it)
    builder.build()
    assert runs == [["hessians", "histograms", "means"]]
    builder.options = dataclasses.replace(options, bias_correction=True)
    builder.build()
    assert len(runs) == 1


def test_a_transpose_made_float_takes_its_inputs_histogram_without_a_run(monkeypatch):
    """ppocrv4_rec: a Transpose that passes its input's range on in the first plan is float in
    the final one (its producer too small for INT8), and the MatMul reading it needs its range:
    a run over the samples for that one tensor. Its values are its input's, reordered."""
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),  # 262144 MACs: too small
        helper.make_node("Transpose", ["c"], ["t"], name="transpose", perm=[0, 2, 3, 1]),
        helper.make_node("MatMul", ["t", "m"], ["y"], name="matmul"),
    ]
    weights = [
        const("w", rng.normal(size=(64, 64, 1, 1)).astype(np.float32)),
        const("m", rng.normal(size=(64, 512)).astype(np.float32)),
    ]
    proto = make_model(
        nodes, [vi("x", shape=[1, 64, 8, 8])], [vi("y", shape=[1, 8, 8, 512])], weights
    )
    data = [{"x": rng.normal(size=(1, 64, 8, 8)).astype(np.float32)} for _ in range(4)]
    runs = []
    real = builder_module.collect

    def collect(*args, **kwargs):
        runs.append(list(kwargs["histograms"]))
        return real(*args, **kwargs)

    monkeypatch.setattr(builder_module, "collect", collect)
    options = QuantOptions(min_macs=1 << 20)
    builder = builder_module.QuantBuilder(
        prepare(ir.from_proto(proto)), data, options, "minmax", {}, False
    )
    _, info = builder.build()
    assert info.plan.nodes == ["matmul"] and "t" in info.plan.observed
    assert runs == [["c", "x"]]
    observed = real(proto, data, histograms=["t"], progress=False).stats["t"]
    assert (builder.stats["t"].min, builder.stats["t"].max) == (observed.min, observed.max)
    np.testing.assert_array_equal(builder.stats["t"].counts, observed.counts)


def test_gptq_statistics_of_nodes_too_small_for_int8_are_not_taken_on_random_inputs():
    """On random inputs a node too small for INT8 computes in float on weights rounded to
    nearest, but the plan made before sizes are known has it in INT8: its X X^T, observed then,
    counted against the memory limit and pushed the one INT8 node's past it."""
    model = prepare(ir.from_proto(cnn()))
    by_name = {n.name: n for n in model.graph}
    rng = np.random.default_rng(2)
    data = [{"x": rng.normal(size=(1, 3, 16, 16)).astype(np.float32)} for _ in range(6)]
    options = QuantOptions(weight_rounding="gptq", min_macs=1 << 20, gptq_float_compute=False)
    builder = builder_module.QuantBuilder(model, data, options, "minmax", {}, False)
    builder.gptq_memory = gptq.hessian_bytes(by_name["fc"]) + 1000  # fc's alone fits
    _, info = builder.build()
    assert set(info.plan.nodes) == {"fc"}  # (the convs too small for INT8)
    assert set(builder.hessians) == {("fc",)} and not builder.gptq_skipped


def test_inverse_hessian_factor_is_the_cholesky_factor_of_the_inverse():
    """``U`` upper triangular with ``U^T U = H^-1`` (H damped, in the columns' order, unseen inputs
    at a diagonal of 1), built by halves past 256 inputs."""
    rng = np.random.default_rng(12)
    x = rng.normal(size=(300, 700)) * rng.uniform(0.2, 2.0, size=(300, 1))
    x[[0, 150]] = 0.0
    hessian = x @ x.T
    order = rng.permutation(300)
    expected_h = hessian[np.ix_(order, order)].copy()
    dead = np.diag(expected_h) <= 0
    expected_h[dead, dead] = 1.0
    expected_h[np.diag_indices(300)] += gptq.DAMP * np.mean(np.diag(expected_h))
    expected = np.linalg.cholesky(np.linalg.inv(expected_h)).T
    got = gptq._inverse_cholesky(hessian, order)
    np.testing.assert_allclose(np.triu(got), got, atol=0)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())


def test_a_group_that_does_not_factorize_is_damped_alone():
    """A depthwise conv's groups factorize together; one not positive definite (eigenvalues -1
    and 3) gets more damping, its neighbour only the usual."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2, 50))
    good, bad = x @ x.T, np.array([[1.0, 2.0], [2.0, 1.0]])
    order = np.array([[0, 1], [1, 0]])
    both = gptq._inverse_cholesky(np.stack([bad, good]), order)
    np.testing.assert_allclose(both[1], gptq._inverse_cholesky(good, order[1]), rtol=1e-6)
    np.testing.assert_allclose(both[0], gptq._inverse_cholesky(bad, order[0]), rtol=1e-6)
    assert np.all(np.isfinite(both))


def test_layer_statistics_sum_every_samples_columns_whatever_their_grouping():
    """``collect_hessians`` multiplies a few samples' columns at a time (a deep conv's few
    positions each): its sums are ``sum X X^T`` over every sample, the ones left over included."""
    rng = np.random.default_rng(3)
    w = rng.normal(size=(4, 6, 3, 3)).astype(np.float32)  # 54 inputs, 9 positions per sample
    model = make_model(
        [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])],
        [vi("x", shape=[1, 6, 3, 3])],
        [vi("y")],
        [const("w", w)],
        opset=13,
    )
    xs = [{"x": rng.normal(size=(1, 6, 3, 3)).astype(np.float32)} for _ in range(8)]
    node = _conv_node(w, pads=[1, 1, 1, 1])
    layers = {"conv": [("x", lambda value: gptq.input_columns(node, value))]}
    got = collect_hessians(model, xs, layers, progress=False)["conv"]
    expected = sum(
        (c := gptq.input_columns(node, x["x"]).astype(np.float64)) @ c.T for x in xs
    )  # 72 columns: one product of 54 (6 samples) and the 18 left over
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)


def _depthwise(channels: int = 6, bias: np.ndarray | None = None, group: int = 6, **attrs):
    """A 3x3 conv (depthwise unless `group` says otherwise; weights and optional bias) as a
    model, and its weight."""
    shape = (channels, channels // group, 3, 3)
    w = np.random.default_rng(21).normal(size=shape).astype(np.float32)
    inputs, consts = ["x", "w"], [const("w", w)]
    if bias is not None:
        inputs.append("b")
        consts.append(const("b", bias.astype(np.float32)))
    conv = helper.make_node("Conv", inputs, ["y"], name="dw", group=group, **attrs)
    model = make_model(
        [conv], [vi("x", shape=["N", channels, 10, 10])], [vi("y")], consts, opset=13
    )
    return model, w


def _smooth_maps(rng, count: int, channels: int, mean: float = 0.0):
    """Feeds of spatially smooth maps (neighbouring taps correlated, as a layer's inputs are)."""
    x = rng.normal(size=(count, channels, 12, 12))
    x = (x[..., :-2, :-2] + x[..., 1:-1, 1:-1] + x[..., 2:, 2:]) / 3 + mean
    return [{"x": s[None].astype(np.float32)} for s in x]


def test_gptq_rounds_a_depthwise_conv_group_by_group():
    """A grouped conv is a layer per group: its columns are ``[groups, taps, positions]`` (each
    group's weights times its columns give its output channel), the batched rounding equals
    rounding each group on its own, and it moves the output less than nearest rounding."""
    model, w = _depthwise(pads=[1, 1, 1, 1])
    x = np.concatenate([f["x"] for f in _smooth_maps(np.random.default_rng(22), 4, 6)])
    y = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    node = _conv_node(w, group=6, pads=[1, 1, 1, 1])
    columns = gptq.input_columns(node, x)
    assert columns.shape == (6, 9, 4 * 100)
    matrix = gptq.weight_matrix(node, w)  # [6, 9]: a row per group
    np.testing.assert_allclose(
        np.einsum("gi,gip->gp", matrix, columns), y.transpose(1, 0, 2, 3).reshape(6, -1), atol=1e-4
    )
    assert gptq.hessian_bytes(node) == 8 * 9 * 9 * 6
    hessian = columns.astype(np.float64) @ np.swapaxes(columns, -1, -2)
    scale = np.abs(matrix).max(axis=1) / 127
    batched = gptq.gptq_round(matrix, hessian, scale, 127)
    alone = [
        gptq.gptq_round(matrix[g : g + 1], hessian[g], scale[g : g + 1], 127) for g in range(6)
    ]
    np.testing.assert_array_equal(batched, np.concatenate(alone))

    def output_error(q):
        delta = matrix - q * scale[:, None]
        return float(np.square(np.einsum("gi,gip->gp", delta, columns)).sum())

    assert output_error(batched) < 0.8 * output_error(np.round(matrix / scale[:, None]))


def _stored_weight(model: ir.Model, node_name: str) -> np.ndarray:
    """The float weight a node of a quantized model reads through its DequantizeLinear."""
    node = next(n for n in model.graph if n.name == node_name)
    dq = node.inputs[1].producer()
    q, scale = (dq.inputs[i].const_value.numpy() for i in (0, 1))
    return q.astype(np.float64) * scale.reshape(-1, *[1] * (q.ndim - 1))


def test_a_depthwise_conv_computing_in_int8_is_gptq_rounded():
    """Built with GPTQ, a depthwise conv's int8 weights move its output on the calibration
    samples less than nearest rounding's."""
    model, w = _depthwise()
    data = _smooth_maps(np.random.default_rng(23), 8, 6)
    x = np.concatenate([d["x"] for d in data]).astype(np.float64)
    errors = {}
    for rounding in ("nearest", "gptq"):
        options = QuantOptions(weight_rounding=rounding, min_macs=0)
        builder = builder_module.QuantBuilder(
            ir.from_proto(model), data, options, "minmax", {}, False
        )
        quantized, info = builder.build()
        assert info.plan.nodes == ["dw"]
        delta = _stored_weight(quantized, "dw") - w
        shift = sum(
            delta[:, 0, i, j, None, None] * x[:, :, i : i + 8, j : j + 8]
            for i in range(3)
            for j in range(3)
        )
        errors[rounding] = float(np.square(shift).sum())
    assert errors["gptq"] < 0.8 * errors["nearest"]


@pytest.mark.parametrize("group", [1, 6])
def test_a_bias_raising_the_weight_scale_is_corrected_for_the_weights_as_stored(group):
    """A channel whose large bias needs a larger weight scale gets the weights rounded afresh;
    bias correction then subtracts the output shift of the weights as stored, not of the GPTQ
    rounding they replaced."""
    bias = np.array([3e4, 0.5, -0.2, 0.1, 0.3, -0.4])  # channel 0 overflows int32 at its scale
    model, w = _depthwise(bias=bias, group=group)
    w[0] *= 1e-6  # a near-dead channel: a tiny weight scale
    model.graph.initializer[0].CopyFrom(const("w", w))
    data = _smooth_maps(np.random.default_rng(24), 8, 6, mean=2.0)
    options = QuantOptions(weight_rounding="gptq", bias_correction=True, min_macs=0)
    builder = builder_module.QuantBuilder(ir.from_proto(model), data, options, "minmax", {}, False)
    quantized, _ = builder.build()
    stored = _stored_weight(quantized, "dw")
    dq = next(n for n in quantized.graph if n.name == "dw").inputs[2].producer()
    step = dq.inputs[1].const_value.numpy().astype(np.float64)  # the int32 bias's scale
    written = dq.inputs[0].const_value.numpy() * step
    mean = np.concatenate([d["x"] for d in data]).mean(axis=(0, 2, 3))
    per_input = (stored - w).sum(axis=(2, 3))  # [6, 6 / group]
    expected = bias - (per_input * mean.reshape(group, -1).repeat(6 // group, axis=0)).sum(1)
    assert np.all(np.abs(written - expected) <= 0.5 * step + 1e-5 * np.abs(expected))


@pytest.mark.parametrize(("shift", "kept"), [(4.0, "bias correction"), (-4.0, "plain")])
def test_float_compute_chooses_bias_correction_again_on_the_selection_samples(shift, kept):
    """A dense conv on calibration inputs of mean 4, computing in float on int8 weights rounded to
    nearest: their rounding shifts its output mean, which bias correction takes out. Chosen for
    float compute on the selection samples, bias correction first, it is kept where they have the
    calibration's mean; where their mean is -4 it doubles the shift, and plain replaces it. The
    note says what was measured."""
    model, _ = _depthwise(group=1, pads=[1, 1, 1, 1])
    rng = np.random.default_rng(25)
    calibration, selection = _smooth_maps(rng, 8, 6, mean=4.0), _smooth_maps(rng, 16, 6, mean=shift)
    ref = builder_module.run_samples(model, selection, int8=False)
    options = QuantOptions(weight_rounding="nearest", min_macs=0)
    builder = builder_module.QuantBuilder(
        ir.from_proto(model), calibration, options, "minmax", {}, False
    )
    build = {"exclude": [], "weight_only": ["dw"]}
    choice = levers.choose_float_bias_correction(builder, build, selection, ref)
    assert choice.info.plan.weight_only == ["dw"]
    assert builder.options.bias_correction == (kept == "bias correction")
    assert choice.note.startswith(f"kept {kept} (output SNR on 16 selection samples: ")
    plain = compare_outputs(ref, builder_module.run_samples(_built(model, calibration), selection))
    gain = choice.drift["y"].snr_db - plain["y"].snr_db
    assert gain > 3 if kept == "bias correction" else gain == 0


def _built(model: onnx.ModelProto, calibration: list) -> ir.Model:
    """`model` with its conv computing in float on int8 weights rounded to nearest, uncorrected."""
    options = QuantOptions(weight_rounding="nearest", min_macs=0)
    builder = builder_module.QuantBuilder(
        ir.from_proto(model), calibration, options, "minmax", {}, False
    )
    return builder.build(weight_only=["dw"])[0]


def correlated_matmul(op: str = "MatMul") -> tuple[onnx.ModelProto, list[dict]]:
    """A MatMul (or the Gemm with transB that `quantize_dynamic` makes one of) whose 64 input
    features mix 6 latent ones, as a transformer's activations are low-rank: GPTQ moves rounding
    error onto directions the inputs hardly take; with 40 samples."""
    rng = np.random.default_rng(3)
    k, n = 64, 48
    mix = rng.normal(size=(6, k))
    w = rng.normal(size=(k, n)).astype(np.float32) * 0.2
    if op == "MatMul":
        node = helper.make_node("MatMul", ["x", "w"], ["y"], name="matmul")
        shapes, weight = ([1, 32, k], [1, 32, n]), w
    else:
        node = helper.make_node("Gemm", ["x", "w"], ["y"], name="fc", transB=1)
        shapes, weight = ([32, k], [32, n]), np.ascontiguousarray(w.T)
    model = make_model(
        [node], [vi("x", FLOAT, shapes[0])], [vi("y", FLOAT, shapes[1])], [const("w", weight)]
    )
    latent = [rng.normal(size=(*shapes[0][:-1], 6)) for _ in range(40)]
    noise = [0.05 * rng.normal(size=shapes[0]) for _ in range(40)]
    return model, [{"x": (z @ mix + e).astype(np.float32)} for z, e in zip(latent, noise)]


@pytest.mark.parametrize("op, target", [("MatMul", "vnni"), ("MatMul", "avx2"), ("Gemm", "avx2")])
def test_dynamic_int8_rounds_matmul_weights_by_gptq(op, target):
    """Dynamic INT8's MatMul weights GPTQ-rounded against their float inputs on the calibration
    samples (minilm_l3: 29.1 -> 30.0 dB on its test split) are closer to float on test samples
    than nearest rounding, stay within the pair limit on avx2, and the report says which."""
    model, data = correlated_matmul(op)
    options = {**FAST, "target": target, "test_split": 0.25}
    results = {
        rounding: quantize(model, data, mode="dynamic", **{**options, "weight_rounding": rounding})
        for rounding in ("nearest", "gptq")
    }
    reports = {rounding: result.report for rounding, result in results.items()}
    assert {r: report.weight_rounding for r, report in reports.items()} == {
        "nearest": "nearest",
        "gptq": "gptq",
    }
    assert reports["gptq"].test_samples == 10
    assert reports["gptq"].drift["y"].snr_db > reports["nearest"].drift["y"].snr_db + 1.5
    weight = next(
        t.const_value.numpy()
        for t in results["gptq"].model.graph.initializers.values()
        if t.dtype == ir.DataType.INT8 and len(t.shape) == 2
    )
    if target == "avx2":
        assert _neighbour_sums(weight.T).max() <= 128


def test_dynamic_int8_on_random_samples_rounds_to_nearest():
    """GPTQ fitted to synthesized inputs would fit the weights to noise: `random:N` dynamic INT8
    rounds its MatMul weights to nearest, and says so."""
    model, _ = correlated_matmul()
    options = {**FAST, "weight_rounding": "gptq"}
    report = quantize(model, "random:16", mode="dynamic", **options).report
    assert report.weight_rounding == "nearest" and report.mode == "dynamic"


def test_dynamic_gptq_past_its_memory_limit_rounds_to_nearest_and_says_so(monkeypatch):
    """Past GPTQ's memory limit for layer input statistics the later weights round to
    nearest, and a note says so."""
    monkeypatch.setattr(builder_module, "GPTQ_MEMORY", 32 * 32 * 8)  # matmul_chain: one weight's
    rng = np.random.default_rng(6)
    data = [{"x": rng.normal(size=(1, 16, 32)).astype(np.float32)} for _ in range(12)]
    results = {
        rounding: quantize(
            matmul_chain(), data, mode="dynamic", **{**FAST, "weight_rounding": rounding}
        )
        for rounding in ("gptq", "nearest")
    }
    report = results["gptq"].report
    (note,) = [n for n in report.notes if n.startswith("GPTQ rounding left out")]
    assert note.startswith("GPTQ rounding left out for 2 weight(s) past its memory limit")
    assert report.weight_rounding == "gptq" and report.quantized == {"MatMul": 3}
    gptq_weights, nearest = (_int8_weights(results[r].model) for r in ("gptq", "nearest"))
    same = [np.array_equal(gptq_weights[k], nearest[k]) for k in sorted(gptq_weights)]
    assert same == [False, True, True]  # w0 GPTQ-rounded, w1 and w2 to nearest


def _int8_weights(model: ir.Model) -> dict[str, np.ndarray]:
    """The 2-D int8 initializers of `model` by name."""
    return {
        name: value.const_value.numpy()
        for name, value in model.graph.initializers.items()
        if value.dtype == ir.DataType.INT8 and len(value.shape) == 2  # (not zero points)
    }


def test_dynamic_gptq_finds_each_matmul_its_own_statistics_past_a_name_clash(monkeypatch):
    """quantize_dynamic names a transB Gemm's transposed weight ``w_Transposed_1`` where
    ``w_Transposed`` is taken (here by another MatMul's weight): each weight is GPTQ-rounded
    against its own inputs (100x apart in scale here) and kept within the pair limit, and a
    Gather reading the float ``w`` (a tied embedding) still reads it as it was."""
    rng = np.random.default_rng(9)
    w, w_t = rng.normal(size=(48, 64)), rng.normal(size=(64, 48))
    model = make_model(
        [
            helper.make_node("Gemm", ["x", "w"], ["y1"], name="fc", transB=1),
            helper.make_node("MatMul", ["x2", "w_Transposed"], ["y2"], name="mm"),
            helper.make_node("Gather", ["w", "ids"], ["g"], name="gather"),
        ],
        [vi("x", FLOAT, [32, 64]), vi("x2", FLOAT, [32, 64]), vi("ids", INT64, [2])],
        [vi("y1", FLOAT, [32, 48]), vi("y2", FLOAT, [32, 48]), vi("g", FLOAT, [2, 64])],
        [const("w", w.astype(np.float32)), const("w_Transposed", w_t.astype(np.float32))],
    )
    data = [
        {
            "x": rng.normal(size=(32, 64)).astype(np.float32),
            "x2": (100 * rng.normal(size=(32, 64))).astype(np.float32),
            "ids": np.array([0, 5]),
        }
        for _ in range(12)
    ]
    traces = []
    real = gptq.gptq_round
    monkeypatch.setattr(
        gptq, "gptq_round", lambda w, h, *a: traces.append(np.trace(h)) or real(w, h, *a)
    )
    options = {**FAST, "weight_rounding": "gptq", "target": "avx2", "smooth": False}
    result = quantize(model, data, mode="dynamic", **options)
    assert result.report.quantized == {"Gemm": 1, "MatMul": 1}
    assert result.report.weight_rounding == "gptq"
    assert not [n for n in result.report.notes if "form onnxslim does not know" in n]
    assert len(traces) == 2 and max(traces) > 1000 * min(traces)
    for weight in _int8_weights(result.model).values():
        assert weight.shape == (64, 48) and _neighbour_sums(weight.T).max() <= 128
    (gathered,) = builder_module.run_samples(result.model, data[:1], ["g"])
    assert np.array_equal(gathered["g"], w.astype(np.float32)[[0, 5]])


def correlated_lstm() -> tuple[onnx.ModelProto, list[dict]]:
    """A bidirectional LSTM (12 steps, 24 features, 32 hidden) whose inputs mix 4 latent
    features, its Y the model's output; with 40 samples."""
    rng = np.random.default_rng(12)
    hidden, size, steps = 32, 24, 12
    mix = rng.normal(size=(4, size))
    lstm = helper.make_node(
        "LSTM", ["x", "W", "R"], ["y"], name="lstm", hidden_size=hidden, direction="bidirectional"
    )
    model = make_model(
        [lstm],
        [vi("x", FLOAT, [steps, 1, size])],
        [vi("y", FLOAT, [steps, 2, 1, hidden])],
        [
            const("W", (rng.normal(size=(2, 4 * hidden, size)) * 0.3).astype(np.float32)),
            const("R", (rng.normal(size=(2, 4 * hidden, hidden)) * 0.2).astype(np.float32)),
        ],
    )
    latent = [rng.normal(size=(steps, 1, 4)) for _ in range(40)]
    noise = [0.05 * rng.normal(size=(steps, 1, size)) for _ in range(40)]
    return model, [{"x": (z @ mix + e).astype(np.float32)} for z, e in zip(latent, noise)]


def test_dynamic_int8_rounds_lstm_weights_by_gptq(monkeypatch):
    """Dynamic INT8 rounds an LSTM's W by GPTQ against its inputs and R against each direction's
    previous hidden states (ddddocr's OCR, not tuned on: 40.7 -> 41.7 dB): closer to float on
    test samples than nearest rounding, and the report says so."""
    model, data = correlated_lstm()
    options = {**FAST, "target": "avx2", "test_split": 0.25}
    reports = {"nearest": quantize(model, data, mode="dynamic", **options).report}
    hessians = []
    real = gptq.gptq_round
    monkeypatch.setattr(gptq, "gptq_round", lambda w, h, *a: hessians.append(h) or real(w, h, *a))
    gptq_options = {**options, "weight_rounding": "gptq"}
    reports["gptq"] = quantize(model, data, mode="dynamic", **gptq_options).report
    assert [r.quantized for r in reports.values()] == [{"LSTM": 1}] * 2
    assert [r.weight_rounding for r in reports.values()] == ["nearest", "gptq"]
    assert reports["gptq"].drift["y"].snr_db > reports["nearest"].drift["y"].snr_db + 1.0
    w_forward, w_backward, r_forward, r_backward = sorted(hessians, key=len)
    assert w_forward.shape == (24, 24) and w_forward is w_backward  # one input for both
    assert r_forward.shape == (32, 32) and not np.allclose(r_forward, r_backward)


def test_lstm_r_statistics_are_the_states_before_each_step():
    """R multiplies the state before each step: a forward direction's previous one (Y[:-1]), a
    backward direction's next one (Y[1:]); initial_h is the state before the first step."""
    y = np.arange(4 * 2 * 1 * 3, dtype=np.float32).reshape(4, 2, 1, 3)  # [steps, dirs, batch, h]
    states = dynamic._previous_states((False, True), y)
    assert states.shape == (2, 3, 3)
    np.testing.assert_array_equal(states[0], y[:-1, 0, 0].T)
    np.testing.assert_array_equal(states[1], y[1:, 1, 0].T)
    initial = np.arange(2 * 1 * 3, dtype=np.float32).reshape(2, 1, 3)
    np.testing.assert_array_equal(dynamic._initial_states(initial)[1], initial[1].T)


def test_a_streaming_lstms_r_is_gptq_rounded_against_its_initial_state(monkeypatch):
    """An LSTM run one step a call, its state passed in as initial_h: R's statistics come from
    that state (from Y alone they would be empty, and GPTQ would be nearest rounding)."""
    rng = np.random.default_rng(13)
    hidden, size = 16, 8
    lstm = helper.make_node(
        "LSTM", ["x", "W", "R", "", "", "h0"], ["y"], name="lstm", hidden_size=hidden
    )
    model = make_model(
        [lstm],
        [vi("x", FLOAT, [1, 1, size]), vi("h0", FLOAT, [1, 1, hidden])],
        [vi("y", FLOAT, [1, 1, 1, hidden])],
        [
            const("W", (rng.normal(size=(1, 4 * hidden, size)) * 0.3).astype(np.float32)),
            const("R", (rng.normal(size=(1, 4 * hidden, hidden)) * 0.3).astype(np.float32)),
        ],
    )
    data = [
        {
            "x": rng.normal(size=(1, 1, size)).astype(np.float32),
            "h0": np.tanh(rng.normal(size=(1, 1, hidden))).astype(np.float32),
        }
        for _ in range(16)
    ]
    hessians = []
    real = gptq.gptq_round
    monkeypatch.setattr(gptq, "gptq_round", lambda w, h, *a: hessians.append(h) or real(w, h, *a))
    options = {**FAST, "weight_rounding": "gptq", "test_split": 0, "target": "avx2"}
    report = quantize(model, data, mode="dynamic", **options).report
    assert report.quantized == {"LSTM": 1} and report.weight_rounding == "gptq"
    (r_statistics,) = [h for h in hessians if h.shape == (hidden, hidden)]
    assert np.trace(r_statistics) > 0


def test_the_lstms_mode_auto_puts_beside_static_int8_are_gptq_rounded(monkeypatch):
    """Mode auto's LSTMs in dynamic INT8 beside static INT8 (a CRNN's convs static) round their
    W and R by GPTQ against their inputs in the static model, as `--int8 dynamic`'s: closer to
    float than nearest rounding, and the report says GPTQ; to nearest where GPTQ is off
    (`random:N`, `nearest`) or its statistics would pass its memory limit (a note says so). The
    conv and the head stay float here, so the drift is the LSTM's own (ddddocr's OCR, not tuned
    on: 27.0 dB either way, its convs' noise the most)."""
    model, _ = conv_lstm()
    model.graph.node[3].output[0] = "steps"  # Y named: R's statistics are its states
    rng = np.random.default_rng(14)  # its 8 channels mixing 2 latent ones: correlated
    mix = rng.normal(size=(8, 2))
    data = [{"x": (mix @ rng.normal(size=(2, 12))).astype(np.float32)[None]} for _ in range(16)]
    static_options = {**FAST, "target": "auto", "exclude_nodes": ["conv", "head"]}
    static = quantize(model, data, mode="static", **static_options)
    outcome = Outcome(static.model, dict(static.report.quantized), {}, [], static.report.drift, [])
    ref = run_samples(model, data, int8=False)
    monkeypatch.setattr(trades, "trade", lambda *args, **kwargs: (True, "mocked"))
    hessians = []
    real = gptq.gptq_round
    monkeypatch.setattr(gptq, "gptq_round", lambda w, h, *a: hessians.append(h) or real(w, h, *a))
    snr = {}
    for rounding in (False, True):
        options = dynamic.DynamicOptions(pair_limit=128, gptq=rounding)
        made, _ = modes.dynamic_lstms(outcome, (data, data, ref), None, options, OutputKinds())
        assert made.quantized["LSTM"] == 1
        assert made.weight_rounding == ("gptq" if rounding else "nearest")
        snr[rounding] = compare_outputs(ref, run_samples(made.model, data))["y"].snr_db
        assert sorted(h.shape for h in hessians) == ([(16, 16), (32, 32)] if rounding else [])
    assert snr[True] > snr[False] + 1.0
    monkeypatch.setattr(builder_module, "GPTQ_MEMORY", 1)
    made, _ = modes.dynamic_lstms(outcome, (data, data, ref), None, options, OutputKinds())
    assert made.weight_rounding == "nearest"
    assert any(n.startswith("GPTQ rounding left out for 2 LSTM weight(s)") for n in made.notes)
