"""Calibration statistics and range methods, checked against hand-computed values."""

import numpy as np
import pytest
from onnx import TensorProto, helper

from onnxslim.errors import OnnxSlimError
from onnxslim.quantization.calibration import (
    Histogram,
    collect,
    collect_hessians,
    compute_range,
)
from onnxslim.runtime import Session


def hist_of(*batches, bins=2048):
    h = Histogram(bins=bins)
    for b in batches:
        h.update(np.asarray(b, np.float64))
    return h


def test_histogram_grows_exactly():
    rng = np.random.default_rng(0)
    batches = [
        rng.normal(size=500) * 0.01,
        rng.normal(size=500) * 5 + 3,
        -rng.exponential(size=500) * 50,
        [1e4],
    ]
    h = hist_of(*batches)
    everything = np.concatenate([np.ravel(b) for b in batches])
    expected, _ = np.histogram(everything, bins=h.edges)
    assert (expected == h.counts).all()
    assert h.min == everything.min() and h.max == everything.max()
    assert h.edges[h.zero_bin] == pytest.approx(0.0, abs=1e-9)
    assert h.counts.size == 2048


def test_histogram_ignores_nan_and_inf():
    h = hist_of([1.0, np.nan, np.inf, -2.0])
    assert h.total == 2 and h.min == -2.0 and h.max == 1.0


def test_abs_counts_fold_around_zero():
    # bins of 1.5 from -1.5: [-1.5, 0) [0, 1.5) [1.5, 3) [3, 4.5)
    h = hist_of([-1.0, -0.5, 0.5, 2.0], bins=4)
    assert h.width == pytest.approx(1.5) and h.zero_bin == 1
    assert h.abs_counts().tolist() == [3, 1, 0]


def test_minmax_includes_zero():
    assert compute_range(hist_of([1.0, 3.0]), "minmax") == (0.0, 3.0)
    assert compute_range(hist_of([-2.0, 1.0]), "minmax", symmetric=True) == (-2.0, 2.0)


def test_mean_minmax_averages_each_samples_extremes():
    h = hist_of([-1.0, 2.0], [-3.0, 4.0], [0.5, 6.0], [np.nan])  # a sample without finite values
    assert compute_range(h, "mean_minmax") == pytest.approx((-3.5 / 3, 4.0))
    assert compute_range(h, "mean_minmax", symmetric=True) == pytest.approx((-4.0, 4.0))
    assert compute_range(hist_of([1.0, 2.0], [3.0, 4.0]), "mean_minmax") == (0.0, 3.0)


def test_percentile_hand_computed():
    # 0..9999 uniformly: the 99% percentile, with 0.5% per tail when asymmetric.
    h = hist_of(np.arange(10000.0), bins=10000)
    lo, hi = compute_range(h, "percentile", pct=99.0)
    assert lo == 0.0  # range keeps zero
    assert hi == pytest.approx(9950, abs=2)
    h = hist_of(np.arange(-5000.0, 5000.0), bins=10000)
    lo, hi = compute_range(h, "percentile", pct=99.0)
    assert lo == pytest.approx(-4950, abs=2) and hi == pytest.approx(4950, abs=2)
    lo, hi = compute_range(h, "percentile", pct=99.0, symmetric=True)
    assert hi == pytest.approx(4950, abs=2) and lo == -hi


def test_percentile_rejects_bad_value():
    with pytest.raises(OnnxSlimError, match="percentile"):
        compute_range(hist_of([1.0]), "percentile", pct=0)


def test_mse_clips_a_rare_small_outlier_cluster():
    # 10000 values in [0, 1) and 1 value at 100: keeping the outlier costs 10000 * (100/255)^2 / 12
    # ~ 128 of rounding error; clipping near 1 costs (100 - 1)^2 ~ 9800. So MSE keeps the outlier...
    bulk = np.linspace(0, 1, 10000, endpoint=False)
    assert compute_range(hist_of(bulk, [100.0]), "mse")[1] == pytest.approx(100.0, rel=0.02)
    # ...while with 1e6 bulk values, minimizing (100 - t)^2 + 1e6 * (t / 255)^2 / 12 gives
    # t = 100 / (1 + 1e6 / (255^2 * 12)) = 43.8.
    many = np.tile(bulk, 100)
    assert compute_range(hist_of(many, [100.0]), "mse")[1] == pytest.approx(43.8, rel=0.02)


def test_mse_hand_computed_two_points():
    # Half the mass at 0, half at x: any range below x clips; the full range [0, x] only rounds
    # (step^2 / 12).
    h = hist_of(np.r_[np.zeros(1000), np.full(1000, 2.55)], bins=256)
    assert compute_range(h, "mse") == pytest.approx((0.0, 2.55), rel=0.01)


def test_entropy_uniform_keeps_full_range_and_clips_a_lone_outlier():
    bulk = np.linspace(0, 1, 100000, endpoint=False)
    lo, hi = compute_range(hist_of(bulk), "entropy")
    assert lo == 0.0 and hi == pytest.approx(1.0, rel=0.01)
    lo, hi = compute_range(hist_of(bulk, [3.0]), "entropy")
    assert hi < 2.0  # KL ignores one value out of 1e5


def test_entropy_symmetric_search_on_abs_values():
    rng = np.random.default_rng(1)
    x = rng.normal(size=200000)
    lo, hi = compute_range(hist_of(x, [40.0]), "entropy", symmetric=True)
    assert lo == -hi and 2.5 < hi < 6.0


def test_unknown_method_and_empty():
    with pytest.raises(OnnxSlimError, match="unknown calibration method"):
        compute_range(hist_of([1.0]), "kl")
    with pytest.raises(OnnxSlimError, match="no finite values"):
        compute_range(Histogram(), "minmax")


def _relu_model():
    node = helper.make_node("Relu", ["x"], ["r"])
    node2 = helper.make_node("Neg", ["r"], ["y"])
    graph = helper.make_graph(
        [node, node2],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 4])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def test_histograms_stream_every_sample():
    samples = [
        {"x": np.array([[-1.0, 2.0, 3.0, 4.0]], np.float32)},
        {"x": np.array([[5.0, -6.0, 0.0, 1.0]], np.float32)},
    ]
    stats = collect(_relu_model(), iter(samples), histograms=["r", "x"], progress=False).stats
    assert stats["r"].min == 0.0 and stats["r"].max == 5.0 and stats["r"].total == 8
    assert stats["x"].min == -6.0 and stats["x"].max == 5.0


def test_observing_empty_data_is_an_error():
    with pytest.raises(OnnxSlimError, match="empty"):
        collect(_relu_model(), [], histograms=["r"], progress=False)


def test_channel_means_over_every_other_axis():
    rng = np.random.default_rng(0)
    samples = [{"x": rng.normal(size=(3, 4)).astype(np.float32)} for _ in range(5)]
    means = collect(_relu_model(), samples, means={"r": 1, "x": 0}, progress=False).means
    relu = np.concatenate([np.maximum(s["x"], 0) for s in samples])
    np.testing.assert_allclose(means["r"], relu.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(
        means["x"], np.mean([s["x"].mean(axis=1) for s in samples], axis=0), rtol=1e-6
    )


def test_onnx_runtime_errors_while_observing_are_onnxslim_errors():
    samples = [{"x": np.zeros((1, 4), np.int64)}]  # wrong dtype: ORT refuses the run
    for asked in ({"histograms": ["r"]}, {"means": {"r": 1}}):
        with pytest.raises(OnnxSlimError, match="ONNX Runtime") as err:
            collect(_relu_model(), samples, progress=False, **asked)
        assert "\n" not in str(err.value)


def test_histograms_means_and_hessians_are_observed_in_one_run_per_sample(monkeypatch):
    """The builder observed histograms, channel means and GPTQ's X X^T in a run of the model
    over the samples each (Mask R-CNN: 70-110 s a run): one run per sample gives all three, as
    each alone gives it."""
    rng = np.random.default_rng(1)
    samples = [{"x": rng.normal(size=(3, 4)).astype(np.float32)} for _ in range(5)]
    layers = {"layer": [("r", lambda x: x.reshape(-1, 4).T)]}
    runs = []
    real = Session.run
    monkeypatch.setattr(Session, "run", lambda self, feed: runs.append(1) or real(self, feed))
    both = collect(
        _relu_model(),
        samples,
        histograms=["r"],
        means={"x": 1},
        hessians=layers,
        progress=False,
    )
    assert len(runs) == len(samples)
    relu = np.concatenate([np.maximum(s["x"], 0) for s in samples])
    assert both.stats["r"].max == relu.max() and both.stats["r"].total == relu.size
    np.testing.assert_allclose(
        both.means["x"], np.concatenate([s["x"] for s in samples]).mean(0), rtol=1e-6
    )
    alone = collect_hessians(_relu_model(), samples, layers, progress=False)["layer"]
    np.testing.assert_allclose(both.hessians["layer"], alone)
    np.testing.assert_allclose(alone, relu.T.astype(np.float64) @ relu, rtol=1e-5)
