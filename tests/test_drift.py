"""Drift metrics against hand-computed values, and drift budgets."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from onnx import TensorProto, helper

from onnxslim.drift import (
    Budget,
    Drift,
    TensorSnr,
    closer_on_every_sample,
    compare_outputs,
    compared_samples,
    logit_views,
    lowest_cosine,
    parse_max_drift,
    predicted_cosine,
    predicted_snr_db,
    probability_channels,
    scored_drift,
    significantly_closer,
    snr_gain_bound,
    student_t_quantile,
    with_parts,
)
from onnxslim.errors import OnnxSlimError
from onnxslim.model import io
from onnxslim.model.graph import OutputKinds, output_kinds, softmax_axes
from onnxslim.quantization.caveats import parts_notes

F32 = np.float32
SCORES = np.array([[1, 2, 3], [3, 2, 1]], F32)


def one(ref, other, name="y") -> Drift:
    return compare_outputs({name: np.asarray(ref)}, {name: np.asarray(other)})[name]


def test_identical_outputs():
    d = one(SCORES, SCORES.copy())
    assert (d.max_abs, d.mean_abs, d.cosine, d.top1_agreement) == (0.0, 0.0, 1.0, 1.0)
    assert d.snr_db == math.inf
    assert d.exact_match is None and d.mismatch is None and d.nonfinite_mismatches == 0
    assert (d.dtype, d.shape) == ("float32", (2, 3))


def test_sign_flip():
    d = one(SCORES, -SCORES)
    assert d.max_abs == 6.0  # |3 - (-3)|
    assert d.mean_abs == 4.0  # mean of 2*|a| = 2 * 2
    assert d.cosine == -1.0
    assert d.snr_db == pytest.approx(10 * math.log10(1 / 4))  # error = 2a
    assert d.top1_agreement == 0.0  # argmax flips to the other end in both rows


def test_small_error_hand_computed():
    d = one(np.array([3, 4], F32), np.array([3, 4.5], F32))
    assert d.max_abs == 0.5 and d.mean_abs == 0.25
    assert d.cosine == pytest.approx(27 / (5 * math.sqrt(29.25)))
    assert d.snr_db == pytest.approx(20.0)  # 25 / 0.25 = 100
    assert d.rel_error == pytest.approx(0.1)  # sqrt(0.25 / 25)
    assert d.top1_agreement is None  # 1-D: not [batch, classes]


def test_zero_outputs():
    zeros = np.zeros(4, F32)
    assert one(zeros, zeros).cosine == 1.0
    assert one(zeros, zeros).snr_db == math.inf
    d = one(zeros, np.ones(4, F32))
    assert d.cosine == 0.0 and d.snr_db == -math.inf and d.max_abs == 1.0


def test_nan_and_inf():
    ref = np.array([1, np.nan, np.inf, -np.inf, 2, 5], F32)
    other = np.array([1, np.nan, np.inf, np.inf, np.nan, 7], F32)
    d = one(ref, other)
    # matching NaN and matching +inf are equal; -inf vs +inf and 2 vs NaN are mismatches
    assert d.nonfinite_mismatches == 2
    # metrics over the finite positions only: (1, 1) and (5, 7)
    assert d.max_abs == 2.0 and d.mean_abs == 1.0
    assert d.cosine == pytest.approx(36 / (math.sqrt(26) * math.sqrt(50)))
    assert d.snr_db == pytest.approx(10 * math.log10(26 / 4))
    assert Budget(()).check({"y": d}) == ["output 'y': 2 NaN/Inf values differ from the reference"]


def test_matching_nonfinite_is_not_a_mismatch():
    values = np.array([np.nan, np.inf, -np.inf, 1.5], F32)
    d = one(values, values.copy())
    assert d.nonfinite_mismatches == 0 and d.max_abs == 0.0 and d.cosine == 1.0


def test_integer_outputs_compared_exactly():
    d = one(np.array([1, 2, 3]), np.array([1, 2, 5]))
    assert d.exact_match is False
    assert d.max_abs == 2.0 and d.mean_abs == pytest.approx(2 / 3)
    assert d.cosine is None and d.snr_db is None and d.top1_agreement is None
    assert one(np.array([[1, 2]]), np.array([[1, 2]])).exact_match is True
    assert one(np.array([True, False]), np.array([True, True])).exact_match is False


def test_string_outputs_compared_exactly():
    d = one(np.array(["cat", "dog"]), np.array(["cat", "dog"]))
    assert d.exact_match is True and d.max_abs is None


def test_shape_mismatch_reported_not_raised():
    d = one(np.zeros((1, 3), F32), np.zeros((1, 4), F32))
    assert d.mismatch == "shape [1, 4] vs reference [1, 3] (sample 0)"
    assert d.max_abs is None and d.cosine is None
    assert parse_max_drift("cosine>=0.9").check({"y": d}) == [f"output 'y': {d.mismatch}"]


def test_missing_output_and_dtype_kind_mismatch():
    drifts = compare_outputs({"a": SCORES, "b": SCORES}, {"a": SCORES})
    assert drifts["b"].mismatch == "output missing"
    assert one(SCORES, SCORES.astype(np.int64)).mismatch == "dtype int64 vs reference float32"


def test_float_dtypes_may_differ():
    d = one(SCORES, SCORES.astype(np.float16))
    assert d.dtype == "float32/float16" and d.max_abs == 0.0


def test_aggregates_over_samples_not_per_sample_means():
    ref = [{"y": np.array([1, 0], F32)}, {"y": np.array([0, 2], F32)}]
    other = [{"y": np.array([1, 0], F32)}, {"y": np.array([0, -2], F32)}]
    d = compare_outputs(ref, other)["y"]
    # cosine of the concatenations [1,0,0,2] and [1,0,0,-2]: (1 - 4) / 5
    assert d.cosine == pytest.approx(-0.6)
    assert d.max_abs == 4.0 and d.mean_abs == 1.0
    assert d.top1_agreement is None  # 1-D outputs have no [batch, classes] rows
    ref2d = [{"y": r["y"][None]} for r in ref]
    other2d = [{"y": o["y"][None]} for o in other]
    assert compare_outputs(ref2d, other2d)["y"].top1_agreement == 0.5  # agrees, then disagrees


def test_top1_over_all_rows():
    ref = [
        {"y": np.array([[0, 1, 0], [1, 0, 0]], F32)},
        {"y": np.array([[0, 0, 1], [0, 1, 0]], F32)},
    ]
    other = [
        {"y": np.array([[0, 1, 0], [1, 0, 0]], F32)},
        {"y": np.array([[0, 0, 1], [1, 0, 0]], F32)},
    ]
    assert compare_outputs(ref, other)["y"].top1_agreement == 0.75


def test_top1_only_for_class_like_outputs():
    assert one(np.ones((4, 1), F32), np.ones((4, 1), F32)).top1_agreement is None
    assert one(np.float32(2.0), np.float32(2.0)).top1_agreement is None
    feature_map = np.random.default_rng(0).standard_normal((1, 4, 8, 8)).astype(F32)
    assert one(feature_map, feature_map).top1_agreement is None  # 4-D: no classes axis
    assert one(feature_map[0, 0], feature_map[0, 0]).top1_agreement == 1.0  # 2-D


def test_relative_error_reads_right_near_zero():
    """An output near zero: max abs looks tiny, the relative error says it is all noise."""
    ref = np.full(100, 1e-6, F32)
    noisy = ref + np.float32(1e-6) * np.where(np.arange(100) % 2, 1, -1).astype(F32)
    d = one(ref, noisy)
    assert d.max_abs < 2e-6 and d.rel_error == pytest.approx(1.0, rel=1e-3)
    assert one(ref, ref).rel_error == 0.0
    assert one(np.zeros(3, F32), np.ones(3, F32)).rel_error == math.inf
    large = one(SCORES * 1e6, SCORES * 1e6 + 1)
    assert large.max_abs == 1.0 and large.rel_error < 1e-6
    assert parse_max_drift("rel_err<=0.01").check({"y": d}) == [
        "output 'y': rel_err 1 fails rel_err<=0.01"
    ]
    assert json.loads(json.dumps(d.to_dict()))["rel_error"] == pytest.approx(1.0, rel=1e-3)


def test_sample_counts_must_match():
    with pytest.raises(OnnxSlimError, match="1 samples with 2"):
        compare_outputs([{"y": SCORES}], [{"y": SCORES}, {"y": SCORES}])


def test_to_dict_is_strict_json():
    d = one(SCORES, SCORES)
    data = json.loads(json.dumps(d.to_dict(), allow_nan=False))
    assert data["snr_db"] == "inf" and data["shape"] == [2, 3] and data["cosine"] == 1.0


def test_parse_max_drift():
    budget = parse_max_drift("cosine>=0.99, snr>=30,top1>=0.9,max_abs<=1e-3,mean_abs<=1e-4")
    assert budget.criteria == (
        ("cosine", ">=", 0.99),
        ("snr", ">=", 30.0),
        ("top1", ">=", 0.9),
        ("max_abs", "<=", 1e-3),
        ("mean_abs", "<=", 1e-4),
    )
    assert parse_max_drift("0.01").criteria == (("max_abs", "<=", 0.01),)
    assert str(parse_max_drift("COSINE >= 0.5")) == "cosine>=0.5"


@pytest.mark.parametrize(
    "text", ["", "cosine<=0.9", "max_abs>=1", "psnr>=3", "cosine>=abc", "cosine=0.9", "snr>=1,"]
)
def test_parse_max_drift_errors(text):
    with pytest.raises(OnnxSlimError, match="bad drift limit"):
        parse_max_drift(text)


def test_budget_check():
    drifts = compare_outputs(
        {"scores": SCORES, "label": np.array([2, 0])},
        {"scores": SCORES + np.float32(0.5), "label": np.array([2, 1])},
    )
    # label is not float: cosine/top1 skip it
    assert parse_max_drift("cosine>=0.9,top1>=1").check(drifts) == []
    assert parse_max_drift("max_abs<=0.5").check(drifts) == [
        "output 'label': max_abs 1 fails max_abs<=0.5"
    ]
    failures = parse_max_drift("snr>=40,cosine>=0.99999").check(drifts["scores"])
    assert failures == [
        f"output 'scores': snr {drifts['scores'].snr_db:.6g} fails snr>=40",
        f"output 'scores': worst-sample cosine {drifts['scores'].min_cosine:.6g} fails "
        "cosine>=0.99999",
    ]


def test_min_cosine_is_the_worst_sample_skipping_near_zero_references():
    ref = [
        {"y": np.array([1, 0], F32)},
        {"y": np.array([0, 2], F32)},
        {"y": np.array([1e-6, 0], F32)},  # ~0: its cosine would measure noise
    ]
    other = [
        {"y": np.array([1, 0], F32)},
        {"y": np.array([2, 2], F32)},
        {"y": np.array([0, 1e-6], F32)},
    ]
    d = compare_outputs(ref, other)["y"]
    assert d.min_cosine == pytest.approx(1 / math.sqrt(2))  # the second sample
    assert d.cosine > d.min_cosine  # pooled: the first sample's agreement hides it
    assert Budget.check(parse_max_drift("min_cosine>=0.9"), d) == [
        "output 'y': worst-sample cosine 0.707107 fails min_cosine>=0.9"
    ]
    # a cosine budget holds every sample to it: the pooled cosine (0.745) would pass 0.72
    assert d.cosine > 0.72 and Budget.check(parse_max_drift("cosine>=0.72"), d) == [
        "output 'y': worst-sample cosine 0.707107 fails cosine>=0.72"
    ]
    assert compare_outputs(ref[2], other[2])["y"].min_cosine == 0.0  # alone, it is the scale


def test_an_output_of_one_value_per_sample_is_held_to_the_cosine_of_its_values():
    """A VAD probability or a score: each sample's cosine is only the value's sign (always 1
    here), so the budget and the display read the cosine of the samples' values instead."""
    ref = [{"p": np.array([[v]], F32)} for v in (0.9, 0.1, 0.8, 0.05)]
    other = [{"p": np.array([[v]], F32)} for v in (0.5, 0.4, 0.45, 0.5)]  # same signs
    d = compare_outputs(ref, other)["p"]
    assert d.min_cosine is None and d.predicted_cosine is None
    assert d.worst_cosine() == d.cosine == pytest.approx(0.7791, abs=1e-4)
    for budget in (parse_max_drift("cosine>=0.99"), Budget((("cosine", ">=", 0.99),), True)):
        assert budget.check(d) == [
            f"output 'p': cosine over the samples' values {d.cosine:.6g} (one per sample) fails "
            "cosine>=0.99"
        ]
    assert lowest_cosine({"p": d}) == d.cosine
    assert compare_outputs(ref, ref)["p"].worst_cosine() == pytest.approx(1.0)
    # a sample with no value leaves the rule as it is; a sample of one value among longer ones
    # has no cosine of its own
    empty = {"p": np.zeros((0, 1), F32)}
    assert compare_outputs([*ref, empty], [*other, empty])["p"].budget_cosine() == d.cosine
    mixed = compare_outputs(
        [{"p": np.array([1, 0], F32)}, {"p": np.array([0.9], F32)}],
        [{"p": np.array([1, 1], F32)}, {"p": np.array([0.1], F32)}],
    )["p"]
    assert mixed.min_cosine == pytest.approx(1 / math.sqrt(2)) and not mixed.one_value_each


def test_an_output_whose_reference_is_all_zero_is_not_held_to_a_cosine():
    """Every reference exactly zero: the pooled cosine is 0 or 1, which says nothing."""
    d = compare_outputs({"y": np.zeros((1, 4), F32)}, {"y": np.full((1, 4), 1e-9, F32)})["y"]
    assert d.min_cosine is None and d.budget_cosine() is None
    assert parse_max_drift("cosine>=0.99").check(d) == []
    assert parse_max_drift("max_abs<=1e-12").check(d) != []  # other metrics still see it


def test_a_budget_prints_its_thresholds_as_given():
    """cosine>=0.9999999 must not print as cosine>=1 (a budget nothing can meet)."""
    assert str(parse_max_drift("cosine>=0.9999999,max_abs<=1e-3,snr>=30")) == (
        "cosine>=0.9999999,max_abs<=0.001,snr>=30"
    )
    assert str(parse_max_drift("cosine>=0.99999999999")) == "cosine>=0.99999999999"


def test_predicted_cosine_is_the_student_t_prediction_bound_of_the_log_gaps():
    gaps = np.array([1e-4, 2e-4, 4e-4, 2e-4] * 2)  # 1 - cosine of eight samples
    logs = np.log10(gaps)
    bound = logs.mean() + 3.4995 * logs.std(ddof=1) * math.sqrt(1 + 1 / 8)  # t(0.995, 7 dof)
    assert predicted_cosine(1 - gaps, coverage=0.995) == pytest.approx(1 - 10**bound, rel=1e-4)
    assert predicted_cosine([0.9] * 8) == pytest.approx(0.9)  # no spread: the worst
    assert predicted_cosine([0.95] * 7) is None  # fewer than 8 predict nothing (-1 before)
    assert predicted_cosine([1.0, 0.9, 0.1] * 3) == -1.0  # the bound stops at the lowest cosine
    agreeing, spread = [0.999, 0.998] * 8, [0.99999, 0.998] * 8
    assert predicted_cosine(spread) < predicted_cosine(agreeing) < 0.998  # same worst sample


def test_a_drift_no_worse_on_any_sample_is_closer_on_every_sample():
    """A text reader's float compute (38 dB) missed a cosine budget's margin for new samples that
    its spread set, while its static INT8 (28 dB) held it: closer on every sample, it holds the
    budget as well (static.float_compute_twin)."""
    rng = np.random.default_rng(0)
    ref = [{"y": rng.standard_normal(64).astype(np.float32)} for _ in range(9)]
    noise = [rng.standard_normal(64).astype(np.float32) for _ in ref]

    def drift(scales):
        return compare_outputs(ref, [{"y": r["y"] + s * n} for r, s, n in zip(ref, scales, noise)])

    loud = drift([0.1] * 9)
    assert closer_on_every_sample(drift([0.01, 1e-7, *[0.05] * 7]), loud)
    assert not closer_on_every_sample(drift([0.2, *[0.01] * 8]), loud)  # one sample worse
    assert not closer_on_every_sample({}, loud)  # an output it does not measure


@pytest.mark.parametrize(
    "p, dof, quantile",
    [(0.975, 1, 12.706), (0.975, 2, 4.303), (0.999, 3, 10.215), (0.95, 5, 2.015),
     (0.975, 10, 2.228), (0.999, 23, 3.485), (0.999, 100, 3.174)],
)  # fmt: skip
def test_student_t_quantile_matches_the_tables(p, dof, quantile):
    assert student_t_quantile(p, dof) == pytest.approx(quantile, abs=1e-3)


def test_a_budget_for_new_samples_reads_the_predicted_cosine():
    rng = np.random.default_rng(0)
    ref = [{"y": rng.normal(size=64)} for _ in range(16)]
    other = [{"y": r["y"] + rng.normal(size=64) * 0.1 * (1 + i % 2)} for i, r in enumerate(ref)]
    d = compare_outputs(ref, other)["y"]
    budget = parse_max_drift(f"cosine>={d.min_cosine - 1e-4}")
    assert budget.check(d) == []  # every sample meets it
    (failure,) = Budget(budget.criteria, for_new_samples=True).check(d)
    assert failure == (
        f"output 'y': cosine predicted for new samples {d.predicted_cosine:.6g} (worst sample "
        f"seen {d.min_cosine:.6g}) fails cosine>={d.min_cosine - 1e-4:.10g}"
    )


def _off_by(errors_db_below_before: list[float]) -> tuple[list, list, list]:
    """Float outputs, outputs off by 0.1 each, and outputs whose error is lower by the given dB."""
    ref = [{"y": np.full(4, float(i + 1))} for i in range(len(errors_db_below_before))]
    before = [{"y": r["y"] + 0.1} for r in ref]
    after = [
        {"y": r["y"] + 0.1 * 10 ** (-gain / 20)} for r, gain in zip(ref, errors_db_below_before)
    ]
    return ref, before, after


def _closer(ref, before, after, name="y") -> bool:
    return significantly_closer(compare_outputs(ref, before), compare_outputs(ref, after), name)


def _bound(ref, before, after, names=None) -> float | None:
    return snr_gain_bound(compare_outputs(ref, before), compare_outputs(ref, after), names)


@pytest.mark.parametrize(
    ("gains", "closer"),
    [
        ([0.2] * 8, True),  # small, but every sample gains it
        ([3.0, -1.0, 2.0, 0.0] * 4, True),  # 16 samples, the pooled squared error 15% lower
        ([3.0, -1.0, 2.0, 0.0] * 2, False),  # the same on 8: 8% of resamples lose
        ([20.0] + [-0.4] * 7, False),  # 4% lower pooled, from one sample
        ([1.0] * 7, False),  # every sample gains, but 7 predict nothing (MIN_PREDICTION_SAMPLES)
    ],
)
def test_significantly_closer_bootstraps_the_pooled_squared_error(gains, closer):
    ref, before, after = _off_by(gains)
    assert _closer(ref, before, after) is closer
    assert not _closer(ref, after, before)


def test_a_sample_broken_in_both_counts_for_neither():
    """NaN in both on one sample of 16, 6 dB closer on the others: closer. (Counting that sample's
    infinite errors made every resample holding it a non-gain: never closer.)"""
    ref, before, after = _off_by([6.0] * 16)
    for outputs in (before, after):
        outputs[0]["y"] = np.where(np.arange(4) == 0, np.nan, outputs[0]["y"])
    assert _closer(ref, before, after)
    assert _bound(ref, before, after) == pytest.approx(6.0, abs=1e-6)


def test_a_nan_where_float_is_finite_is_never_closer():
    ref, before, after = _off_by([6.0] * 8)
    assert _closer(ref, before, after)
    after[0]["y"] = np.where(np.arange(4) == 0, np.nan, after[0]["y"])  # the rest: 6 dB closer
    assert not _closer(ref, before, after)


def test_snr_gain_bound_is_what_new_samples_are_likely_to_see():
    """Every sample 2 dB closer: about 2 dB for new ones too. One sample of 8 20 dB closer and the
    rest 0.4 dB worse (4% lower pooled error): a measured gain, yet a loss for new samples."""
    ref, before, after = _off_by([2.0] * 16)
    assert _bound(ref, before, after) == pytest.approx(2.0, abs=1e-6)
    ref, before, after = _off_by([20.0] + [-0.4] * 7)
    measured = 10 * np.log10(
        sum(float(np.sum((b["y"] - r["y"]) ** 2)) for r, b in zip(ref, before))
        / sum(float(np.sum((a["y"] - r["y"]) ** 2)) for r, a in zip(ref, after))
    )
    assert measured > 0.1
    assert _bound(ref, before, after) < 0
    assert _bound(ref[:7], before[:7], after[:7]) is None  # MIN_PREDICTION_SAMPLES


def test_snr_gain_bound_takes_the_worst_output_in_each_resample():
    """A second output 10 dB worse in `after` is what its worst output loses."""
    ref, before, after = _off_by([0.0] * 8)
    for r, b, a in zip(ref, before, after):
        r["z"], b["z"] = r["y"], b["y"]
        a["z"] = r["y"] + 0.1 * 10 ** (10 / 20)
    assert _bound(ref, before, after) == pytest.approx(-10.0, abs=1e-6)
    assert _bound(ref, before, after, ["y"]) == pytest.approx(0.0, abs=1e-6)


def test_predicted_snr_is_what_95_percent_of_resamples_reach():
    """24 samples at 30 dB: 30 dB predicted. The same with one sample's error 100x louder (50 dB
    of signal for it): pooled 22.1 dB measured, and lower predicted, as resamples drawing that
    sample twice or more see; fewer than MIN_PREDICTION_SAMPLES predict nothing."""
    even = [(1.0, 1e-3)] * 24
    assert predicted_snr_db(even) == pytest.approx(30.0)
    loud = [(1.0, 1e-3)] * 23 + [(1.0, 1e-1)]
    measured = 10 * np.log10(24 / (23e-3 + 1e-1))
    assert predicted_snr_db(loud) < measured - 1
    assert predicted_snr_db(even[:7]) is None
    assert predicted_snr_db([(1.0, 0.0)] * 8) == np.inf  # identical


def test_an_snr_budget_for_new_samples_reads_the_predicted_snr():
    ref = [{"y": np.full(4, 1.0)} for _ in range(24)]
    out = [{"y": r["y"] + (0.2 if i == 0 else 0.01)} for i, r in enumerate(ref)]  # 27.5 dB
    drift = compare_outputs(ref, out)["y"]
    assert drift.snr_db > 25 > drift.predicted_snr_db
    assert not parse_max_drift("snr>=25").check(drift)
    (failure,) = dataclasses.replace(parse_max_drift("snr>=25"), for_new_samples=True).check(drift)
    assert "SNR predicted for new samples" in failure and "fails snr>=25" in failure


def test_a_gain_is_bounded_only_between_drifts_of_the_same_samples():
    ref, before, after = _off_by([2.0] * 8)
    assert compared_samples(compare_outputs(ref, before)) == 8
    with pytest.raises(OnnxSlimError, match=r"drifts over \[7, 8\] samples"):
        snr_gain_bound(compare_outputs(ref, before), compare_outputs(ref[:7], after[:7]))


def test_an_output_of_another_shape_than_float_is_an_infinite_error():
    """A length that depends on the values (a TTS model's audio) changed by one variant: that
    variant loses every resample (Kokoro's INT8 stopped with an error after 13 minutes); both
    changed: no sums to bound a gain on, an error that says so."""
    ref, before, after = _off_by([2.0] * 8)
    cut = [{"y": a["y"][:2]} for a in after]
    assert _bound(ref, before, cut) < -100 and _bound(ref, cut, before) > 100
    assert not _closer(ref, before, cut) and _closer(ref, cut, before)
    with pytest.raises(OnnxSlimError, match="output 'y': shape"):
        snr_gain_bound(compare_outputs(ref, cut), compare_outputs(ref, cut), ["y"])


def test_the_per_sample_sums_stay_out_of_the_json_report():
    ref, before, _ = _off_by([0.0] * 8)
    drift = compare_outputs(ref, before)["y"]
    assert len(drift.sample_errors) == 8
    assert "sample_errors" not in drift.to_dict() and drift.to_dict()["snr_db"] == drift.snr_db


def test_a_failing_value_is_shown_apart_from_the_threshold():
    """A cosine of 1 - 6e-9 against cosine>=0.999999995 read "worst-sample cosine 1 fails"."""
    ref = [{"y": np.array([1.0, 0.0], np.float64)}]
    other = [{"y": np.array([1.0, 1.1e-4], np.float64)}]  # cosine 1 - 6.05e-9
    d = compare_outputs(ref, other)["y"]
    [failure] = Budget.check(parse_max_drift("cosine>=0.999999995"), d)
    assert failure == "output 'y': worst-sample cosine 0.99999999 fails cosine>=0.999999995"


@pytest.mark.parametrize(("opset", "axes"), [(11, (1, 2)), (13, (2,))])
def test_softmax_outputs_compare_as_the_logits_they_came_from(opset, axes):
    nodes = [helper.make_node("Softmax", ["x"], ["p"]), helper.make_node("Relu", ["x"], ["r"])]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4])],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, [2, 3, 4]) for n in ("p", "r")],
    )
    model = io.from_proto(helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)]))
    assert softmax_axes(model) == {"p": axes}
    z = np.random.default_rng(0).normal(size=(2, 3, 4))
    p = np.exp(z) / np.exp(z).sum(axis=axes, keepdims=True)
    view, _ = logit_views({"p": p, "r": z}, {"p": p, "r": z}, softmax_axes(model))
    classes = 12 if opset == 11 else 4
    rows = np.moveaxis(z, axes, range(3 - len(axes), 3)).reshape(-1, classes)
    top = -np.sort(-rows, axis=1)[:, :5]  # the logits of float's most probable classes
    assert view["p"].shape == (rows.shape[0], 6 if classes > 5 else classes)  # + the rest's mass
    seen = -np.sort(-view["p"][:, : top.shape[1]], axis=1)
    np.testing.assert_allclose(seen - seen[:, :1], top - top[:, :1], atol=1e-12)  # up to a shift
    assert view["r"] is z


def test_a_softmax_behind_identity_nodes_is_found_one_behind_a_reshape_is_not():
    """Paddle exports end in Softmax -> Identity (ppocr_cls); a Reshape moves the axes."""
    nodes = [
        helper.make_node("Softmax", ["x"], ["p"], axis=-1),
        helper.make_node("Identity", ["p"], ["i1"]),
        helper.make_node("Identity", ["i1"], ["i2"]),
        helper.make_node("Reshape", ["p", "shape"], ["flat"]),
    ]
    out = [helper.make_tensor_value_info("i2", TensorProto.FLOAT, [2, 3])]
    out.append(helper.make_tensor_value_info("flat", TensorProto.FLOAT, [6]))
    x = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])]
    shape = [helper.make_tensor("shape", TensorProto.INT64, [1], [6])]
    graph = helper.make_graph(nodes, "g", x, out, shape)
    model = io.from_proto(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]))
    assert softmax_axes(model) == {"i2": (1,)}


def test_a_probability_float32_underflows_to_zero_is_a_logit_at_its_smallest_value():
    """0 against float32's smallest probability: logits log(1e-45) apart by nothing, not -708."""
    tiny = np.finfo(np.float32).smallest_subnormal
    p = np.array([[1.0, 0.0]], np.float32)
    q = np.array([[1.0, tiny]], np.float32)
    view = logit_views({"p": p}, {"p": q}, {"p": (1,)})
    np.testing.assert_allclose(view[0]["p"], view[1]["p"])
    ints = {"p": np.array([[3, 4]])}
    assert logit_views(ints, ints, {"p": (1,)})[0]["p"] is ints["p"]  # as it is
    assert logit_views({"p": p}, {}, {"p": (1,)}) == ({"p": p}, {})  # missing: compare_outputs
    cut = {"p": p[:, :1]}
    assert logit_views({"p": p}, cut, {"p": (1,)})[1] == cut  # another shape: as it is
    empty = {"p": np.zeros((1, 0), np.float32)}
    assert logit_views(empty, empty, {"p": (1,)})[0] == empty  # no classes: nothing to view


def test_mass_moving_to_a_class_outside_the_top_is_an_error():
    """A variant that makes class 7 (float's least likely) win: the top 5 classes' logits all drop
    by the same amount, which centring hides; the mass left to the others shows it."""
    z = np.array([[5.0, 4, 3, 2, 1, 0, -1, -2]])
    q = z.copy()
    q[0, 7] = 10.0

    def softmax(x):
        return np.exp(x) / np.exp(x).sum(axis=-1, keepdims=True)

    kinds = OutputKinds({"p": (1,)})
    scored = scored_drift([{"p": softmax(z)}], [{"p": softmax(q)}], kinds, {})["p"]
    assert scored.snr_db < 0  # scored as exact (307 dB) at the top 5 alone


def test_a_large_vocabulary_is_compared_at_its_most_probable_classes():
    """A recognizer's softmax over 6625 classes: variant A moves the two classes that decide (by
    0.5), B every class but float's 5 most probable (by 0.3). Over all logits A is the closer; at
    float's most probable ones B is, and only A changes which class wins."""
    rng = np.random.default_rng(0)
    z = rng.normal(size=(1, 8, 6625)) - 20
    z[..., 7], z[..., 9] = 3.0, 2.8
    a, b = z.copy(), z + rng.normal(scale=0.3, size=z.shape)
    a[..., 7] -= 0.5
    a[..., 9] += 0.5
    top = np.argsort(-z, axis=-1)[..., :5]
    np.put_along_axis(b, top, np.take_along_axis(z, top, axis=-1), axis=-1)

    def softmax(x):
        return np.exp(x) / np.exp(x).sum(axis=-1, keepdims=True)

    ref = [{"p": softmax(z)}]
    full = {
        name: compare_outputs([{"p": np.log(softmax(z))}], [{"p": np.log(softmax(x))}])["p"]
        for name, x in (("a", a), ("b", b))
    }
    assert full["a"].snr_db > full["b"].snr_db
    scored = {
        name: scored_drift(ref, [{"p": softmax(x)}], OutputKinds({"p": (2,)}), {})["p"]
        for name, x in (("a", a), ("b", b))
    }
    assert scored["b"].snr_db > scored["a"].snr_db + 10
    assert (softmax(a).argmax(-1) != 7).all() and (softmax(b).argmax(-1) == 7).all()


#: The kinds of `_detections`' output: a score op computes some of its channels.
DETECTOR = OutputKinds(score_outputs=frozenset({"output"}))


def _detections(rng, objectness_error: float = 0.0, classes: int = 1) -> dict:
    """A YOLOX-like output [1, 200, 5 + classes]: box coordinates in pixels, then an objectness
    and class probabilities, near 0 but at a few anchors."""
    boxes = rng.normal(0, 50, size=(1, 200, 4))
    scores = np.full((1, 200, 1 + classes), 0.01)
    scores[0, :5] = 0.9
    out = np.concatenate([boxes, scores], axis=2).astype(np.float32)
    out[0, :5, 4] -= objectness_error  # what clipping the objectness logits does to the positives
    return {"output": out}


def test_an_output_mixing_scores_with_coordinates_is_scored_per_part():
    """Pooled, the coordinates bury the scores' error, and the class score the objectness'
    (ddddocr's YOLOX at percentile 99.9: 18.1 dB on its two scores, 3.8 dB on its objectness):
    the choices compare the worst of its parts, each score of a few channels apart."""
    ref = [_detections(np.random.default_rng(i)) for i in range(4)]
    clipped = [_detections(np.random.default_rng(i), objectness_error=0.8) for i in range(4)]
    pooled = compare_outputs(ref, clipped)
    scored = scored_drift(ref, clipped, DETECTOR, pooled)
    assert pooled["output"].snr_db > 40
    objectness, score = "output (its [0, 1] channel 4)", "output (its [0, 1] channel 5)"
    assert set(scored) == {objectness, score, "output (its other channels)"}
    assert scored[objectness].snr_db < 2 and scored[score].snr_db == math.inf
    both = compare_outputs(*([{"s": x["output"][..., 4:]} for x in xs] for xs in (ref, clipped)))
    assert both["s"].snr_db > 3  # pooled with the class score, the objectness reads better
    assert scored["output (its other channels)"].snr_db == math.inf
    assert parts_notes(scored) == [
        "output 'output' in parts (as the choices compare it) on the test samples, output SNR: "
        f"its [0, 1] channel 4 {scored[objectness].snr_db:.1f} dB, its [0, 1] channel 5 exact, "
        "its other channels exact"
    ]


def test_the_scores_of_many_channels_are_scored_together():
    """80 classes: one part for the scores (a class that fires on one anchor would be noise)."""
    ref = [_detections(np.random.default_rng(i), classes=80) for i in range(4)]
    clipped = [_detections(np.random.default_rng(i), 0.8, classes=80) for i in range(4)]
    scored = scored_drift(ref, clipped, DETECTOR, compare_outputs(ref, clipped))
    assert set(scored) == {"output (its [0, 1] channels)", "output (its other channels)"}


@pytest.mark.parametrize(
    ("shape", "low", "high"),
    [
        ((1, 1000), 0, 1),  # a classifier's scores: no channel axis
        ((1, 1, 16, 16), 0, 1),  # a probability map: no channel axis (16 and 16 alike)
        ((1, 4, 50), 0, 1),  # every channel a score
        ((1, 4, 50), -1, 1),  # none
    ],
)
def test_outputs_without_scores_beside_other_channels_are_scored_whole(shape, low, high):
    rng = np.random.default_rng(0)
    ref = [{"y": rng.uniform(low, high, size=shape).astype(np.float32)} for _ in range(3)]
    noisy = [{"y": r["y"] + 0.01} for r in ref]
    drift = compare_outputs(ref, noisy)
    assert scored_drift(ref, noisy, OutputKinds(score_outputs=frozenset({"y"})), drift) is drift


def test_only_outputs_a_score_op_computes_are_compared_in_parts():
    """CRAFT's 32-channel ReLU feature map has 7 channels within [0, 1]: taken for a detector's
    scores, the choices compared it in parts. Only an output that a Sigmoid or Softmax computes
    some values of, through data movement, is; its data alone picks the score channels."""
    nodes = [
        helper.make_node("Relu", ["x"], ["feature"]),
        helper.make_node("Split", ["x", "sizes"], ["raw", "logits"], axis=1),
        helper.make_node("Sigmoid", ["logits"], ["scores"]),
        helper.make_node("Concat", ["raw", "scores"], ["cat"], axis=1),
        helper.make_node("Transpose", ["cat"], ["det"], perm=[0, 2, 1]),
        helper.make_node("Softmax", ["x"], ["p"], axis=1),
        # YOLOv5's in-place export: boxes written over the sigmoid's first channels, then a Cast
        helper.make_node("Sigmoid", ["x"], ["all"]),
        helper.make_node("ScatterND", ["all", "where", "feature"], ["written"]),
        helper.make_node("Cast", ["written"], ["inplace"], to=TensorProto.FLOAT),
        # objectness times class is a score; a sigmoid times a feature is not
        helper.make_node("Mul", ["scores", "scores"], ["both"]),
        helper.make_node("Concat", ["raw", "both"], ["yolox"], axis=1),
        helper.make_node("Mul", ["all", "feature"], ["gated"]),
    ]
    shape, extra = [1, 6, 50], ("inplace", "yolox", "gated")
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [
            helper.make_tensor_value_info("feature", TensorProto.FLOAT, shape),
            helper.make_tensor_value_info("det", TensorProto.FLOAT, [1, 50, 6]),
            helper.make_tensor_value_info("p", TensorProto.FLOAT, shape),
            *(helper.make_tensor_value_info(n, TensorProto.FLOAT, shape) for n in extra),
        ],
        [
            helper.make_tensor("sizes", TensorProto.INT64, [2], [4, 2]),
            helper.make_tensor("where", TensorProto.INT64, [1, 1, 1], [0]),
        ],
    )
    kinds = output_kinds(io.from_proto(helper.make_model(graph)))
    assert kinds.score_outputs == {"det", "p", "inplace", "yolox"}
    assert kinds.logit_axes == {"p": (1,)}
    rng = np.random.default_rng(0)
    feature = rng.uniform(-3, 3, size=(1, 6, 50)).astype(np.float32)
    feature[0, 1] = np.linspace(0, 1, 50)  # a ReLU channel within [0, 1]
    ref = [{"feature": np.maximum(feature, 0)}]
    noisy = [{"feature": ref[0]["feature"] + 0.01}]
    assert probability_channels(ref, "feature") is not None  # its data alone would split it
    assert set(scored_drift(ref, noisy, kinds, compare_outputs(ref, noisy))) == {"feature"}


def test_a_dead_or_constant_channel_is_no_score():
    """A ReLU map's dead channel lies in [0, 1] too; a score varies (and fires: spans half of
    [0, 1], to be compared apart)."""
    rng = np.random.default_rng(0)
    y = rng.uniform(-3, 3, size=(1, 4, 50)).astype(np.float32)
    y[0, 1] = 0.0  # dead
    y[0, 2] = 0.3  # constant
    assert probability_channels([{"y": y}], "y") is None
    y[0, 3] = np.linspace(0, 1, 50)
    axis, scores, apart = probability_channels([{"y": y}], "y")
    assert axis == 1 and scores.tolist() == [False, False, False, True] and apart


@pytest.mark.parametrize("classes", [1, 18])
def test_scores_that_never_fire_are_still_scored_apart_from_the_boxes(classes):
    """Nudenet's 18-class YOLOv8 on 12 pictures: no class reached half of [0, 1], so its output
    was scored whole, its boxes (pixels) burying its scores' error (43 dB against 9). Scores
    that do not fire are compared together (one of a few alone would be noise), never whole."""
    ref = [_detections(np.random.default_rng(i), classes=classes) for i in range(4)]
    for r in ref:
        r["output"][..., 4:] *= 0.2  # peaks of 0.18: nothing fires
    noisy = [{"output": r["output"] + np.float32(0.02)} for r in ref]
    pooled = compare_outputs(ref, noisy)
    scored = scored_drift(ref, noisy, DETECTOR, pooled)
    assert set(scored) == {"output (its [0, 1] channels)", "output (its other channels)"}
    assert scored["output (its [0, 1] channels)"].snr_db < 20 < pooled["output"].snr_db
    # parts are no [anchors, classes] table: no top-1 over anchors (a top1 budget judged it)
    assert all(d.top1_agreement is None for d in scored.values())


def test_an_output_of_scores_alone_is_scored_whole():
    """basic-pitch's outputs are a Sigmoid's, reshaped: the channels that never fired were taken
    for "other channels" beside the ones that did. Every channel in [0, 1] (one constant, a
    saturated sigmoid's: as "other channels" it had no signal, an SNR no budget meets): one
    output."""
    rng = np.random.default_rng(0)
    ref = [{"y": rng.uniform(0, 0.1, size=(1, 50, 8)).astype(np.float32)} for _ in range(3)]
    ref[0]["y"][0, :, 5] = 0.9  # two channels fire
    ref[1]["y"][0, :, 6] = 0.8
    for r in ref:
        r["y"][0, :, 7] = 0.0
    noisy = [{"y": r["y"] + np.float32(0.01)} for r in ref]
    drift = compare_outputs(ref, noisy)
    assert scored_drift(ref, noisy, OutputKinds(score_outputs=frozenset({"y"})), drift) is drift


def test_a_mixed_output_of_another_shape_is_a_mismatch_not_an_error():
    """A detector whose INT8 keeps fewer boxes on one picture (NMS inside): every part of that
    output is named as mismatched, not a KeyError; the other samples compare as usual."""
    ref = [_detections(np.random.default_rng(i)) for i in range(3)]
    other = [dict(r) for r in ref]
    other[1] = {"output": ref[1]["output"][:, :150]}
    scored = scored_drift(ref, other, DETECTOR, compare_outputs(ref, other))
    assert len(scored) == 3 and all(name.startswith("output (its ") for name in scored)
    assert all(d.mismatch for d in scored.values())
    assert scored_drift(ref, [{} for _ in ref], DETECTOR, {})  # missing everywhere: named, no error
    # judged with its parts, the mismatch is said once (the output's), not once per part
    drift = compare_outputs(ref, other)
    assert set(with_parts(drift, scored)) == {"output"} and drift["output"].mismatch


def test_a_tensor_of_another_shape_counts_as_unrelated_noise():
    """A random op's length (VITS): the INT8 tensor of another shape than float's; subtracting
    them crashed (exit 3). Its noise is both tensors' energy: a negative SNR, not a crash."""
    snr = TensorSnr()
    snr.add("t", np.ones(4, np.float32), np.ones(6, np.float32))
    assert snr.db("t") == pytest.approx(10 * math.log10(4 / 10))
    snr.add("u", np.ones(4, np.float32), np.full(4, 1.1, np.float32))
    assert snr.db("u") == pytest.approx(20.0, abs=1e-4)
