"""How far a model's outputs drift from a reference's, per output, aggregated over samples.

Float outputs: max/mean absolute error, relative error (error RMS / reference RMS, which reads
right for outputs near zero, where absolute errors look small), cosine similarity and SNR (dB) over
positions where both values are finite; top-1 agreement for 2-D [batch, classes] outputs only.
Non-finite values: matching NaNs and matching infinities count as equal; any other NaN/Inf
disagreement is counted in `nonfinite_mismatches`. Non-float outputs: compared exactly
(`exact_match`), plus max/mean abs and relative error.
"""

from __future__ import annotations

import functools
import math
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from operator import attrgetter, methodcaller

import numpy as np

from onnxslim.errors import OnnxSlimError
from onnxslim.model.graph import OutputKinds

Outputs = Mapping[str, np.ndarray]


@dataclass
class Drift:
    """Drift of one output. Metrics that do not apply (or cannot be computed) are None."""

    name: str
    dtype: str
    shape: tuple[int, ...] | None = None
    max_abs: float | None = None
    mean_abs: float | None = None
    #: RMS of the error over RMS of the reference (0: identical; inf: reference all zeros).
    rel_error: float | None = None
    #: RMS of the reference where both outputs are finite: the output's scale
    reference_rms: float | None = None
    cosine: float | None = None  # over all samples pooled
    #: the worst sample's cosine, over samples of two values or more whose reference is not ~0
    #: (see NEAR_ZERO): one value's cosine is only its sign
    min_cosine: float | None = None
    #: the cosine a new sample is predicted to meet (see predicted_cosine); at most min_cosine,
    #: None with fewer than MIN_PREDICTION_SAMPLES samples
    predicted_cosine: float | None = None
    snr_db: float | None = None
    #: the pooled SNR (dB) new samples are predicted to reach (see predicted_snr_db); at most snr_db
    predicted_snr_db: float | None = None
    top1_agreement: float | None = None
    #: every sample gives one value (a probability, a score): cosine budgets read `cosine`
    one_value_each: bool = False
    #: the reference gives only values within SATURATED of 0 or 1, some near 1, some not exactly
    #: 0 or 1 (a binary mask is not): a saturated softmax or sigmoid, whose drift says little
    saturated: bool = False
    exact_match: bool | None = None
    nonfinite_mismatches: int = 0
    mismatch: str | None = None  # shape or dtype-kind mismatch, or missing output
    #: each sample's (signal, squared error) sums, what `snr_gain_bound` resamples: over the
    #: positions where float is finite, the error infinite where the output is not and float is
    sample_errors: tuple[tuple[float, float], ...] | None = field(
        default=None, repr=False, compare=False
    )

    def to_dict(self) -> dict:
        """JSON-able: non-finite floats become the strings "inf", "-inf", "nan"; without the
        per-sample sums."""
        return {
            f.name: json_value(getattr(self, f.name))
            for f in fields(self)
            if f.name != "sample_errors"
        }

    def worst_cosine(self) -> float | None:
        """The worst sample's cosine for display, or the pooled one when no sample has one (each
        gives one value: the cosine of the samples' values; every reference exactly zero: 0 or 1,
        meaningless for a budget, see `budget_cosine`)."""
        return self.min_cosine if self.min_cosine is not None else self.cosine

    def budget_cosine(self) -> float | None:
        """What a cosine budget holds this output to: the worst sample's cosine, or on an output
        of one value per sample the cosine of the samples' values (None: no cosine applies)."""
        if self.min_cosine is not None:
            return self.min_cosine
        return self.cosine if self.one_value_each else None


def lowest_cosine(drifts: Mapping[str, Drift]) -> float | None:
    """The lowest worst-sample cosine (Drift.worst_cosine) over the float outputs; None if none."""
    cosines = [d.worst_cosine() for d in drifts.values() if d.cosine is not None]
    return min(cosines) if cosines else None


def json_value(value):
    """`value` as JSON carries it: non-finite floats as "inf", "-inf", "nan"; tuples as lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return list(value) if isinstance(value, tuple) else value


def compare_outputs(
    ref: Outputs | Sequence[Outputs], other: Outputs | Sequence[Outputs]
) -> dict[str, Drift]:
    """Drift of every reference output in `other`, over samples (one dict of outputs per sample)."""
    ref = [ref] if isinstance(ref, Mapping) else list(ref)
    other = [other] if isinstance(other, Mapping) else list(other)
    if len(ref) != len(other):
        raise OnnxSlimError(f"cannot compare outputs of {len(ref)} samples with {len(other)}")
    if not ref:
        raise OnnxSlimError("no outputs to compare")
    return {
        name: _compare_one(name, [r[name] for r in ref], [o.get(name) for o in other])
        for name in ref[0]
    }


def _compare_one(name: str, refs: list[np.ndarray], others: list[np.ndarray | None]) -> Drift:
    refs = [_as_array(r) for r in refs]
    first = refs[0]
    drift = Drift(name=name, dtype=str(first.dtype), shape=tuple(first.shape))
    if any(o is None for o in others):
        drift.mismatch = "output missing"
        return drift
    others = [_as_array(o) for o in others]
    for index, (r, o) in enumerate(zip(refs, others)):
        if r.shape != o.shape:
            drift.mismatch = f"shape {list(o.shape)} vs reference {list(r.shape)} (sample {index})"
            return drift
    is_float = [r.dtype.kind == "f" or o.dtype.kind == "f" for r, o in zip(refs, others)]
    if any(is_float) and not all(
        r.dtype.kind == "f" and o.dtype.kind == "f" for r, o in zip(refs, others)
    ):
        drift.mismatch = f"dtype {others[0].dtype} vs reference {first.dtype}"
        return drift
    if others[0].dtype != first.dtype:
        drift.dtype = f"{first.dtype}/{others[0].dtype}"
    stats = _Stats()
    for r, o in zip(refs, others):
        stats.add(r, o, is_float[0])
    stats.fill(drift, is_float[0])
    return drift


def _as_array(value) -> np.ndarray:
    """`value` as an array; a sequence of maps with the same keys (ZipMap's class probabilities,
    as scikit-learn converters write them) as ``[rows, keys]`` in the first map's key order, so
    that its drift is measured as the probabilities' array would be."""
    if (
        isinstance(value, (list, tuple))
        and value
        and all(isinstance(row, Mapping) for row in value)
        and all(row.keys() == value[0].keys() for row in value)
    ):
        keys = list(value[0])
        return np.asarray([[row[key] for key in keys] for row in value])
    return np.asarray(value)


#: How close to 0 or 1 every value of a saturated output is (Drift.saturated).
SATURATED = 1e-6
#: A sample whose reference norm is below this share of the samples' RMS norm has no meaningful
#: cosine (two near-zero vectors: e.g. a text detector's map of a picture without text).
NEAR_ZERO = 1e-3


class _Stats:
    """Running sums, so drift over many samples needs no concatenated copies."""

    def __init__(self):
        self.count = self.nonfinite = self.rows = self.agree = 0
        self.abs_sum = self.max_abs = self.dot = self.ref_sq = self.other_sq = self.err_sq = 0.0
        #: (dot, ref_sq, other_sq, err_sq) of each sample, over the positions finite in both: the
        #: metrics measured leave a broken position out
        self.per_sample: list[tuple[float, float, float, float]] = []
        #: Drift.sample_errors: a bound for new samples counts a broken position as infinite error
        self.sample_errors: list[tuple[float, float]] = []
        self.exact = True
        self.hard = True  # every value so far within SATURATED of 0 or 1 ...
        self.soft = False  # ... and not all of them exactly 0 or 1 (a mask is not saturated)
        self.near_one = False  # ... and some near 1 (tiny values are not saturated either)
        self.has_rows = False
        self.sizes: list[int] = []  # finite positions of each sample in per_sample

    def add(self, ref: np.ndarray, other: np.ndarray, is_float: bool) -> None:
        self.exact = self.exact and bool(np.array_equal(ref, other, equal_nan=is_float))
        if ref.dtype.kind not in "biuf" or other.dtype.kind not in "biuf":
            return  # strings and other non-numeric outputs: exact comparison only
        a = ref.astype(np.float64).ravel()
        b = other.astype(np.float64).ravel()
        ref_finite, other_finite = np.isfinite(a), np.isfinite(b)
        finite = ref_finite & other_finite
        same_nonfinite = ~finite & ((a == b) | (np.isnan(a) & np.isnan(b)))
        self.nonfinite += int((~finite & ~same_nonfinite).sum())
        if is_float:  # the bound's sums: all of float's signal, and whether a position broke
            signal = float(np.sum(np.square(a[ref_finite])))
            broken = bool(np.any(ref_finite & ~other_finite))
            values = a[ref_finite]
            self.hard = self.hard and bool(
                np.all((np.abs(values) <= SATURATED) | (np.abs(values - 1) <= SATURATED))
            )
            self.soft = self.soft or bool(np.any((values != 0) & (values != 1)))
            self.near_one = self.near_one or bool(np.any(np.abs(values - 1) <= SATURATED))
        a, b = a[finite], b[finite]
        err_sq = 0.0
        if a.size:
            err = np.abs(a - b)
            self.count += a.size
            self.abs_sum += float(err.sum())
            self.max_abs = max(self.max_abs, float(err.max()))
            sample = (float(a @ b), float(a @ a), float(b @ b), float(err @ err))
            self.per_sample.append(sample)
            self.sizes.append(a.size)
            self.dot += sample[0]
            self.ref_sq += sample[1]
            self.other_sq += sample[2]
            self.err_sq += sample[3]
            err_sq = sample[3]
        if is_float:
            self.sample_errors.append((signal, math.inf if broken else err_sq))
        if is_float and ref.ndim == 2 and ref.shape[-1] > 1 and ref.size:  # [batch, classes]
            self.has_rows = True
            rows_a = ref.reshape(-1, ref.shape[-1]).argmax(axis=1)
            rows_b = other.reshape(-1, other.shape[-1]).argmax(axis=1)
            self.rows += rows_a.size
            self.agree += int((rows_a == rows_b).sum())

    def fill(self, drift: Drift, is_float: bool) -> None:
        drift.nonfinite_mismatches = self.nonfinite
        if self.count:
            drift.max_abs = self.max_abs
            drift.mean_abs = self.abs_sum / self.count
            drift.rel_error = _relative(self.err_sq, self.ref_sq)
            drift.reference_rms = math.sqrt(self.ref_sq / self.count)
        if not is_float:
            drift.exact_match = self.exact
            return
        if self.count:
            drift.cosine = _cosine(self.dot, self.ref_sq, self.other_sq)
            cosines = self._cosines()
            drift.min_cosine = min(cosines) if cosines else None
            drift.predicted_cosine = predicted_cosine(cosines)
            drift.one_value_each = max(self.sizes) == 1
            drift.snr_db = _snr_db(self.ref_sq, self.err_sq)
            drift.predicted_snr_db = predicted_snr_db([(s[1], s[3]) for s in self.per_sample])
        drift.sample_errors = tuple(self.sample_errors)
        drift.saturated = self.hard and self.soft and self.near_one
        if self.has_rows:
            drift.top1_agreement = self.agree / self.rows

    def _cosines(self) -> list[float]:
        """Each sample's cosine, leaving out samples whose reference is ~0 and those of one value
        (its cosine is 1 or -1, the sign, whatever the error)."""
        floor = NEAR_ZERO**2 * self.ref_sq / len(self.per_sample)  # squared norms
        return [
            _cosine(*sample[:3])
            for sample, size in zip(self.per_sample, self.sizes)
            if sample[1] > floor and size > 1
        ]


#: The classes a softmax output is compared at: float's most probable ones at each position.
TOP_LOGITS = 5
#: What a choice's note adds to "output SNR" where it compared a softmax output (`scored_drift`).
AT_LOGITS = " (a softmax output: of its logits)"


def logit_views(
    ref: Outputs, other: Outputs, axes: Mapping[str, tuple[int, ...]]
) -> tuple[dict, dict]:
    """`ref` and `other` with each output of `axes` (a softmax's probabilities over those axes)
    as the logits it came from (``log p`` up to a constant) of `ref`'s TOP_LOGITS most probable
    classes at each position and the log of the probability left to the others (where there are
    others: mass moving to a class outside the top is an error too), centred over them:
    ``[positions, min(TOP_LOGITS + 1, classes)]``.

    Why: a saturated softmax (0.9999 against 0.99999) hides the error of the logits that decide
    the class and how sure it is; all the logits of a large vocabulary would bury them under the
    errors of thousands of classes no decision reads (a text recognizer's 6625: there the variant
    closer in every logit was the one whose decoded text agreed with float's less often). The
    automatic choices compare these. An output missing, not float, empty or of another shape in
    `other` is left as it is (compare_outputs names the mismatch)."""
    ref_view, other_view = dict(ref), dict(other)
    for name, over in axes.items():
        p, q = ref.get(name), other.get(name)
        if not all(isinstance(x, np.ndarray) and x.dtype.kind == "f" for x in (p, q)):
            continue
        if p.shape != q.shape or not p.size:
            continue
        rows_p, rows_q = (_class_rows(x, over) for x in (p, q))
        k = min(TOP_LOGITS, rows_p.shape[1])
        top = np.argpartition(-rows_p, k - 1, axis=1)[:, :k]
        rest = np.ones_like(rows_p, dtype=bool)
        np.put_along_axis(rest, top, False, axis=1)
        floor = float(np.finfo(p.dtype).smallest_subnormal)  # where the dtype underflows to 0
        views = []
        for rows in (rows_p, rows_q):
            kept = np.take_along_axis(rows, top, axis=1)
            if k < rows.shape[1]:  # summed where they are, not 1 - the top (0 when saturated)
                kept = np.concatenate([kept, (rows * rest).sum(axis=1, keepdims=True)], axis=1)
            z = np.log(np.maximum(kept, floor))
            views.append(z - z.mean(axis=1, keepdims=True))
        ref_view[name], other_view[name] = views
    return ref_view, other_view


def _class_rows(p: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    """`p` (float64) as one row per position, its columns the classes over `axes`."""
    moved = np.moveaxis(p.astype(np.float64), axes, range(p.ndim - len(axes), p.ndim))
    classes = math.prod(p.shape[a] for a in axes)
    return moved.reshape(-1, classes)


#: How `kind_views` names an output's parts: its score channels together, or each apart
#: (SCORE_CHANNEL, with its index, up to FEW_CHANNELS along the axis), and the others together.
_PART = " (its {})"  # an output's name, then this: the name of one of its parts
PROBABILITY_PART = _PART.format("[0, 1] channels")
SCORE_CHANNEL = _PART.format("[0, 1] channel {}")
OTHER_PART = _PART.format("other channels")
#: An output with at most FEW_CHANNELS channels, FEW_SCORES of them scores, has each score channel
#: scored apart: a few distinct quantities (a box's x, y, w, h, its objectness, its class), where
#: pooling hid one that broke; more classes are pooled (one that fires on one anchor is noise).
FEW_CHANNELS = 16
FEW_SCORES = 4
#: What a choice's note adds to "output SNR" where it compared an output in those parts.
IN_PARTS = " (scores and other channels of an output apart)"


def probability_channels(
    ref_outputs: Sequence[Outputs], name: str
) -> tuple[int, np.ndarray, bool] | None:
    """Where output `name` mixes probabilities with other quantities (a detector's scores beside
    its box coordinates): its channel axis (of its axes past the first with more than one entry,
    at least two, the one strictly smallest), which channels are scores on `ref_outputs` (every
    value in [0, 1], not one constant value: a dead or constant channel is not one) and whether
    they are few enough to compare each apart (FEW_SCORES of FEW_CHANNELS at most, each spanning
    half of [0, 1] or more: a score that fires; one that does not compares as noise). None where
    none are, or every channel lies in [0, 1], or there is no such axis. (Nudenet's 18-class
    YOLOv8: no class fired on half of 12 pictures, so its scores went unseen beside its boxes,
    9 dB against 43.)"""
    arrays = [r.get(name) for r in ref_outputs]
    if not arrays or not all(isinstance(a, np.ndarray) and a.dtype.kind == "f" for a in arrays):
        return None
    shape = arrays[0].shape
    sizes = {axis: shape[axis] for axis in range(1, len(shape)) if shape[axis] > 1}
    if len(sizes) < 2 or any(a.ndim != len(shape) for a in arrays):
        return None
    axis = min(sizes, key=sizes.get)
    if sorted(sizes.values())[1] == sizes[axis] or any(
        a.shape[axis] != shape[axis] for a in arrays
    ):
        return None
    low, high = np.full(shape[axis], np.inf), np.full(shape[axis], -np.inf)
    for a in arrays:
        rows = np.moveaxis(a, axis, -1).reshape(-1, shape[axis])
        if rows.size:
            low, high = np.minimum(low, rows.min(axis=0)), np.maximum(high, rows.max(axis=0))
    in_unit = (low >= 0) & (high <= 1)
    scores = in_unit & (high > low)
    if not scores.any() or in_unit.all():  # (a Sigmoid map with a channel at 0: one output)
        return None
    fires = high - low >= 0.5
    apart = scores.size <= FEW_CHANNELS and scores.sum() <= FEW_SCORES and fires[scores].all()
    return axis, scores, bool(apart)


def score_parts(scores: np.ndarray, apart: bool) -> list[tuple[str, np.ndarray]]:
    """An output's parts by `probability_channels`' mask of score channels, (name suffix, channels
    mask): its score channels, each `apart` or together, and its other channels."""
    if apart:
        parts = [
            (SCORE_CHANNEL.format(i), np.arange(scores.size) == i) for i in scores.nonzero()[0]
        ]
    else:
        parts = [(PROBABILITY_PART, scores)]
    return [*parts, (OTHER_PART, ~scores)]


def kind_views(
    ref: Outputs, other: Outputs, parts: Mapping[str, tuple[int, np.ndarray, bool]]
) -> tuple[dict, dict]:
    """`ref` and `other` with each output of `parts` (`probability_channels`) in its
    `score_parts`, so that a choice sees each part's error (the coordinates' would bury the
    scores': ddddocr's YOLOX at percentile 99.9 had 21.7 dB of output SNR and 6 dB on its
    objectness, 3 of 10 pictures' detections kept; its objectness and class pooled, 18.1 dB and
    3.8 dB on the objectness, a quarter of them kept). Where `other`'s output is missing, not float
    or of another shape, every part is it as it is (compare_outputs names the mismatch)."""
    ref_view, other_view = dict(ref), dict(other)
    for name, (axis, scores, apart) in parts.items():
        p, q = ref[name], other.get(name)
        same = isinstance(q, np.ndarray) and q.dtype.kind == "f" and q.shape == p.shape
        for view, x in ((ref_view, p), (other_view, q if same else None)):
            view.pop(name, None)
            rows = np.moveaxis(x, axis, -1).reshape(-1, scores.size) if x is not None else None
            for part, columns in score_parts(scores, apart):
                if rows is not None:
                    view[name + part] = rows[None, :, columns]  # (3-D: no top-1 of anchors)
                elif name in other:
                    view[name + part] = q
    return ref_view, other_view


def scored_drift(
    ref_outputs: Sequence[Outputs],
    outputs: Sequence[Outputs],
    kinds: OutputKinds,
    drift: dict[str, Drift],
) -> dict[str, Drift]:
    """The drift the automatic choices compare of `outputs` against `ref_outputs` (`drift` as
    the model outputs them): each output a Softmax computes (`kinds.logit_axes`) at the logits of
    float's most probable classes (`logit_views`), each score output (`kinds.score_outputs`)
    mixing probabilities with other quantities in its parts (`kind_views`); `drift` itself where
    neither is."""
    logit_axes = kinds.logit_axes
    parts = {
        name: found
        for name in kinds.score_outputs
        if name not in logit_axes and (found := probability_channels(ref_outputs, name))
    }
    if not logit_axes and not parts:
        return drift
    pairs = [
        kind_views(*logit_views(r, o, logit_axes), parts)
        for r, o in zip(ref_outputs, outputs, strict=True)
    ]
    return compare_outputs([r for r, _ in pairs], [o for _, o in pairs])


def output_parts(scored: Mapping[str, Drift]) -> dict[str, list[tuple[str, Drift]]]:
    """Each output `scored` (scored_drift's) compared in parts: its parts' labels ("[0, 1]
    channel 4", "other channels") and drifts."""
    head, tail = _PART.split("{}")
    found: dict[str, list[tuple[str, Drift]]] = {}
    for key in scored:
        if key.endswith(OTHER_PART):
            name = key[: -len(OTHER_PART)]
            found[name] = [
                (part[len(name + head) : -len(tail)], drift)
                for part, drift in scored.items()
                if part.startswith(name + head) and part.endswith(tail)
            ]
    return found


def with_parts(drift: Mapping[str, Drift], scored: Mapping[str, Drift] | None) -> dict[str, Drift]:
    """`drift` (as the model outputs them) with the parts of each output `scored` (scored_drift's)
    compares in parts beside it: a detector's scores judged apart from its box coordinates; not
    those of an output missing or of another shape (its own entry says so, once)."""
    parts = {
        d.name: d
        for name, found in output_parts(scored or {}).items()
        if name in drift and not drift[name].mismatch
        for _, d in found
    }
    return {**drift, **parts}


def closer_on_every_sample(drift: Mapping[str, Drift], than: Mapping[str, Drift]) -> bool:
    """Whether `drift` errs no more than `than` (drifts over the same samples) on every sample of
    every output `than` measures (`Drift.sample_errors`): what holds a budget for `than` then
    holds it for `drift` too, whatever its samples' spread predicts."""
    for name, other in than.items():
        mine = drift.get(name)
        if other.sample_errors is None:
            continue
        if mine is None or mine.sample_errors is None:
            return False
        if len(mine.sample_errors) != len(other.sample_errors) or any(
            err > other_err
            for (_, err), (_, other_err) in zip(mine.sample_errors, other.sample_errors)
        ):
            return False
    return True


def split_in_parts(scored: Mapping[str, Drift]) -> bool:
    """Whether `scored` (scored_drift's) compared an output in parts (`kind_views`)."""
    return any(name.endswith(OTHER_PART) for name in scored)


def worst_snr(drift: Mapping[str, Drift]) -> float:
    """The lowest SNR (dB) over the float outputs (-inf when there are none)."""
    return min((d.snr_db for d in drift.values() if d.snr_db is not None), default=-math.inf)


def worst_output(drift: Mapping[str, Drift]) -> str | None:
    """The float output of lowest SNR (None when there is none)."""
    scored = [name for name, d in drift.items() if d.snr_db is not None]
    return min(scored, key=lambda name: drift[name].snr_db, default=None)


#: The share of new samples a budget held "for new samples" is predicted to hold for.
NEW_SAMPLE_COVERAGE = 0.999
#: 1 - cosine below this reads as this: a relative error near 1e-6, above where float32 rounding
#: of the outputs counts (1 - cosine about 1e-14).
_GAP_FLOOR = 1e-12


def predicted_cosine(
    cosines: Sequence[float], coverage: float = NEW_SAMPLE_COVERAGE
) -> float | None:
    """The cosine a new sample meets with probability `coverage`, from the cosines of `cosines`'
    samples; never above the worst of them. None with fewer than MIN_PREDICTION_SAMPLES (the
    Student-t quantile of 3 samples is 22: the bound is -1 for most spreads, it predicts nothing).

    Math: the gaps g = log10(1 - cosine) of n samples are taken as normal, mean m, standard
    deviation s (an empirical assumption: INT8's error varies by input over orders of magnitude,
    and on the zoo this bound was above every test split's worst gap). A new sample's gap is then
    below m + t * s * sqrt(1 + 1/n) with probability `coverage`, t the Student-t quantile with
    n - 1 degrees of freedom (the one-sided prediction bound): wide when the samples are few or
    spread, close to the worst sample when they agree. Spread counts as risk, so making the good
    samples better can lower the prediction: a saturated classifier's near-perfect samples next to
    a few worse ones predict a long tail, as open_nsfw's one bad test photo showed.
    """
    if len(cosines) < MIN_PREDICTION_SAMPLES:
        return None
    worst = min(cosines)
    gaps = np.log10(np.maximum(1.0 - np.asarray(cosines, dtype=np.float64), _GAP_FLOOR))
    n = gaps.size
    bound = gaps.mean() + student_t_quantile(coverage, n - 1) * gaps.std(ddof=1) * math.sqrt(
        1 + 1 / n
    )
    return min(worst, 1.0 - 10.0 ** min(bound, math.log10(2.0)))  # cosines are >= -1


#: how sure a lever's gain on the selection samples must make it that it also helps new ones
GAIN_CONFIDENCE = 0.95
BOOTSTRAP_RESAMPLES = 2000
#: fewer samples predict nothing about new ones (Student-t quantile 4.8 at 8, 22 at 3)
MIN_PREDICTION_SAMPLES = 8
_HUGE_DB = 1e6


def significantly_closer(
    before: Mapping[str, Drift],
    after: Mapping[str, Drift],
    name: str,
    confidence: float = GAIN_CONFIDENCE,
) -> bool:
    """Whether `after` is closer to float than `before` (drifts over the same samples) on output
    `name` for new samples too, with `confidence` (`snr_gain_bound` above 0: its squared error
    summed over the samples, what SNR pools, is lower on all but a `1 - confidence` share of
    bootstrap resamples)."""
    bound = snr_gain_bound(before, after, [name], confidence)
    return bound is not None and bound > 0


def snr_gain_bound(
    before: Mapping[str, Drift],
    after: Mapping[str, Drift],
    names: Sequence[str] | None = None,
    confidence: float = GAIN_CONFIDENCE,
) -> float | None:
    """The output SNR (dB) `after` gains over `before` (drifts over the same samples) with
    `confidence` on new samples: the `1 - confidence` quantile of the gain over bootstrap
    resamples of the samples (paired, a fixed seed), the SNR pooled over a resample's samples
    and taken on the worst of `names` (None: the float outputs) for each. A non-finite value
    where float is finite is an infinite error (Drift.sample_errors).

    An output one of them gives in another shape than float (`Drift.mismatch`: a length that
    depends on the values, as a TTS model's audio) has an infinite error on every sample there.

    None with fewer than MIN_PREDICTION_SAMPLES samples (a few samples that agree pass every
    resample) or no float output; OnnxSlimError when an output named has no per-sample sums in
    either, or the two cover different numbers of samples."""
    if names is None:  # the float outputs of either
        names = [n for n in {**before, **after} if _has_sums(before, n) or _has_sums(after, n)]
    sums = [_paired_errors(before, after, n) for n in names]
    counts = {len(errors) for pair in sums for errors in pair}
    if len(counts) > 1:
        raise OnnxSlimError(f"cannot bound a gain between drifts over {sorted(counts)} samples")
    if not sums or counts.pop() < MIN_PREDICTION_SAMPLES:
        return None
    picks = _resamples(len(sums[0][0]))
    worst_before = np.full(BOOTSTRAP_RESAMPLES, np.inf)
    worst_after = worst_before.copy()
    for errors_before, errors_after in sums:
        signal, noise_before = np.array(errors_before, dtype=np.float64).T
        noise_after = np.array(errors_after, dtype=np.float64)[:, 1]
        both = np.isinf(noise_before) & np.isinf(noise_after)  # broken in both: counts for neither
        noise_before[both] = noise_after[both] = signal[both] = 0.0
        worst_before = np.minimum(worst_before, _resampled_db(signal, noise_before, picks))
        worst_after = np.minimum(worst_after, _resampled_db(signal, noise_after, picks))
    with np.errstate(invalid="ignore"):  # inf - inf: identical in both counts as no gain
        gains = worst_after - worst_before
    # finite for the quantile's interpolation: a sample broken in one only is a huge gain or loss
    gains = np.nan_to_num(gains, nan=0.0, posinf=_HUGE_DB, neginf=-_HUGE_DB)
    return float(np.quantile(gains, 1 - confidence))


def _has_sums(drift: Mapping[str, Drift], name: str) -> bool:
    return name in drift and drift[name].sample_errors is not None


def _paired_errors(before: Mapping[str, Drift], after: Mapping[str, Drift], name: str) -> tuple:
    """Output `name`'s per-sample (signal, squared error) sums in `before` and in `after`; where
    one of them has it in another shape than float, an infinite error on the other's signals."""
    for mismatched, other in ((before, after), (after, before)):
        found = mismatched.get(name)
        if found is not None and found.mismatch and _has_sums(other, name):
            broken = tuple((signal, math.inf) for signal, _ in other[name].sample_errors)
            pair = (broken, other[name].sample_errors)
            return pair if mismatched is before else pair[::-1]
    return _sample_errors(before, name), _sample_errors(after, name)


def _sample_errors(drift: Mapping[str, Drift], name: str) -> tuple[tuple[float, float], ...]:
    """Output `name`'s per-sample (signal, squared error) sums; OnnxSlimError when it has none."""
    found = drift.get(name)
    if found is None or found.sample_errors is None:
        why = "missing" if found is None else found.mismatch or f"not float ({found.dtype})"
        raise OnnxSlimError(f"cannot bound a gain on output {name!r}: {why}")
    return found.sample_errors


def compared_samples(drift: Mapping[str, Drift]) -> int | None:
    """How many samples `drift` covers (None: it has no float output to tell)."""
    counts = [len(d.sample_errors) for d in drift.values() if d.sample_errors is not None]
    return counts[0] if counts else None


def _resamples(n: int) -> np.ndarray:
    """BOOTSTRAP_RESAMPLES draws of n sample indices with replacement (a fixed seed)."""
    return np.random.default_rng(0).integers(0, n, (BOOTSTRAP_RESAMPLES, n))


def _resampled_db(signal: np.ndarray, noise: np.ndarray, picks: np.ndarray) -> np.ndarray:
    """The pooled SNR (dB) of each resample (`picks`: rows of sample indices); inf where a
    resample has neither signal nor noise (identical)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        db = 10 * np.log10(signal[picks].sum(axis=1) / noise[picks].sum(axis=1))
    return np.nan_to_num(db, nan=np.inf)


def predicted_snr_db(
    signal_noise: Sequence[tuple[float, float]], confidence: float = GAIN_CONFIDENCE
) -> float | None:
    """The output SNR (dB) new samples, pooled, are predicted to reach with `confidence`, from each
    sample's (signal, noise) sums of squares: the `1 - confidence` quantile of the pooled SNR over
    bootstrap resamples of the samples (a fixed seed), never above the SNR measured. None with
    fewer than MIN_PREDICTION_SAMPLES samples (a few that agree pass every resample).

    Math: pooled SNR = 10 log10(sum signal / sum noise); a resample draws the samples with
    replacement, so one loud error among quiet ones is in some resamples twice and in some not
    at all: the spread of the resampled SNRs is what new samples may see."""
    if len(signal_noise) < MIN_PREDICTION_SAMPLES:
        return None
    signal, noise = np.asarray(signal_noise, dtype=np.float64).T
    measured = _snr_db(float(signal.sum()), float(noise.sum()))
    if math.isinf(measured):  # identical (or all signal lost) in every resample too
        return measured
    db = _resampled_db(signal, noise, _resamples(signal.size))
    db = np.nan_to_num(db, posinf=_HUGE_DB, neginf=-_HUGE_DB)  # finite for the interpolation
    return min(measured, float(np.quantile(db, 1 - confidence)))


@functools.lru_cache(maxsize=64)
def student_t_quantile(p: float, dof: int) -> float:
    """The `p` quantile (0.5 <= p < 1) of Student's t with `dof` >= 1 degrees of freedom, by
    bisection on its distribution function (Abramowitz & Stegun 26.7.3-4, exact for integer dof)."""
    if not 0.5 <= p < 1 or dof < 1:
        raise ValueError(f"Student-t quantile: need 0.5 <= p < 1 and dof >= 1, got {p}, {dof}")
    lo, hi = 0.0, 1.0
    while _student_t_cdf(hi, dof) < p:
        lo, hi = hi, hi * 2
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _student_t_cdf(mid, dof) < p else (lo, mid)
    return hi


def _student_t_cdf(t: float, dof: int) -> float:
    """P(T <= t) for t >= 0: (1 + A(t|dof)) / 2, A a finite series in cos(theta) (A&S 26.7.3-4),
    theta = atan(t / sqrt(dof))."""
    theta = math.atan(t / math.sqrt(dof))
    cos, sin = math.cos(theta), math.sin(theta)
    # odd: (2/pi)(theta + sin(cos + 2/3 cos^3 + ... + 2*4..(dof-3)/1*3..(dof-2) cos^(dof-2)))
    if dof % 2:
        term = total = cos if dof > 1 else 0.0
        for j in range(1, (dof - 1) // 2):
            term *= cos * cos * (2 * j) / (2 * j + 1)
            total += term
        spread = 2 / math.pi * (theta + sin * total)
    else:  # even: sin(1 + 1/2 cos^2 + 1*3/2*4 cos^4 + ... + 1*3..(dof-3)/2*4..(dof-2) cos^(dof-2))
        term = total = 1.0
        for j in range(1, dof // 2):
            term *= cos * cos * (2 * j - 1) / (2 * j)
            total += term
        spread = sin * total
    return (1 + spread) / 2


def _relative(error_sq: float, ref_sq: float) -> float:
    if error_sq == 0:
        return 0.0
    if ref_sq == 0:
        return math.inf
    return math.sqrt(error_sq / ref_sq)


def _cosine(dot: float, ref_sq: float, other_sq: float) -> float:
    if ref_sq == 0 and other_sq == 0:
        return 1.0
    if ref_sq == 0 or other_sq == 0:
        return 0.0
    return max(-1.0, min(1.0, dot / math.sqrt(ref_sq * other_sq)))


class TensorSnr:
    """SNR (dB) of tensors against their references over all elements of all samples, added one
    sample at a time (a detector's feature maps for every layer and sample do not fit in memory)."""

    def __init__(self) -> None:
        self.signal: dict[str, float] = defaultdict(float)
        self.noise: dict[str, float] = defaultdict(float)

    def add(self, name: str, reference: np.ndarray, other: np.ndarray) -> None:
        """Add a sample; `other` of another shape (a random op's length) counts as unrelated."""
        reference, other = _as_array(reference).astype(np.float64), _as_array(other)
        self.signal[name] += float(np.sum(np.square(reference)))
        if reference.shape != other.shape:
            noise = np.sum(np.square(reference)) + np.sum(np.square(other.astype(np.float64)))
        else:
            noise = np.sum(np.square(reference - other))
        self.noise[name] += float(noise)

    def db(self, name: str) -> float:
        """The SNR of `name` so far (inf: identical)."""
        return _snr_db(self.signal[name], self.noise[name])


def added_noise_db(output_db: float, input_db: float) -> float:
    """SNR (dB) of the noise a node adds, from the SNR of its output and of its noisiest input
    (noise powers add); inf when it adds none. Lower is worse."""
    added = 10 ** (-output_db / 10) - 10 ** (-input_db / 10)
    return -10 * math.log10(added) if added > 0 else math.inf


def _snr_db(signal_sq: float, noise_sq: float) -> float:
    if noise_sq == 0:
        return math.inf
    if signal_sq == 0:
        return -math.inf
    return 10 * math.log10(signal_sq / noise_sq)


# Budget: what each metric name reads from a Drift, and whether larger is better. A cosine budget
# holds every sample to it (`min_cosine`: the same, its older name): the worst sample seen, or the
# cosine predicted for new samples (Budget.for_new_samples); on an output of one value per sample,
# the cosine of the samples' values, as measured (Drift.budget_cosine).
METRICS = {
    "cosine": (methodcaller("budget_cosine"), ">="),
    "min_cosine": (methodcaller("budget_cosine"), ">="),
    "snr": (attrgetter("snr_db"), ">="),
    "top1": (attrgetter("top1_agreement"), ">="),
    "max_abs": (attrgetter("max_abs"), "<="),
    "mean_abs": (attrgetter("mean_abs"), "<="),
    "rel_err": (attrgetter("rel_error"), "<="),
}
#: Budget metrics every sample must meet (the worst sample seen, or the one predicted).
PER_SAMPLE = frozenset({"cosine", "min_cosine"})
#: What a budget held for new samples reads for a metric (Budget.for_new_samples).
PREDICTED = {
    "cosine": attrgetter("predicted_cosine"),
    "min_cosine": attrgetter("predicted_cosine"),
    "snr": attrgetter("predicted_snr_db"),
}
_CRITERION = re.compile(r"^\s*([a-z0-9_]+)\s*(>=|<=)\s*(\S+)\s*$")


@dataclass(frozen=True)
class Budget:
    """Limits on drift, e.g. cosine >= 0.99 and max_abs <= 1e-3. Each is (metric, op, threshold).

    `for_new_samples`: cosine criteria read the cosine predicted for new samples
    (Drift.predicted_cosine) instead of the worst sample's, snr criteria the SNR predicted for them
    (Drift.predicted_snr_db, when there are enough samples) instead of the one measured: for
    choices made on some samples that must hold on others.
    """

    criteria: tuple[tuple[str, str, float], ...]
    for_new_samples: bool = False

    def __str__(self) -> str:
        return ",".join(criterion_text(*criterion) for criterion in self.criteria)

    def check(self, drift: Drift | Mapping[str, Drift]) -> list[str]:
        """Violations, one line each. Shape mismatches, missing outputs and NaN/Inf mismatches
        always count as violations.

        A criterion applies to the outputs that have its metric (top1: 2-D [batch, classes] float
        outputs; cosine/snr: float outputs; max_abs/mean_abs/rel_err: every numeric output).
        """
        drifts = [drift] if isinstance(drift, Drift) else list(drift.values())
        failures = []
        for d in drifts:
            if d.mismatch:
                failures.append(f"output {d.name!r}: {d.mismatch}")
                continue
            if d.nonfinite_mismatches:
                failures.append(
                    f"output {d.name!r}: {d.nonfinite_mismatches} NaN/Inf values "
                    "differ from the reference"
                )
            for metric, op, threshold in self.criteria:
                predicted = (
                    self.for_new_samples
                    and metric in PREDICTED
                    and PREDICTED[metric](d) is not None
                )
                value = PREDICTED[metric](d) if predicted else METRICS[metric][0](d)
                if value is None:
                    continue
                if (value < threshold) if op == ">=" else (value > threshold):
                    shown = _beside(value, threshold)
                    found = f"{metric} {shown}"
                    if predicted and metric == "snr":
                        found = (
                            f"SNR predicted for new samples {value:.3g} dB (pooled over the "
                            f"samples seen {d.snr_db:.3g} dB)"
                        )
                    elif predicted:
                        found = (
                            f"cosine predicted for new samples {shown} (worst sample seen "
                            f"{d.min_cosine:.6g})"
                        )
                    elif metric in PER_SAMPLE and d.one_value_each:
                        found = f"cosine over the samples' values {shown} (one per sample)"
                    elif metric in PER_SAMPLE:
                        found = f"worst-sample cosine {shown}"
                    failures.append(
                        f"output {d.name!r}: {found} fails {criterion_text(metric, op, threshold)}"
                    )
        return failures


def _beside(value: float, threshold: float) -> str:
    """`value` to 6 significant digits, or as many more as tell it from `threshold` (a cosine of
    0.999999994 against 0.99999999 read "1")."""
    for digits in range(6, 17):
        if f"{value:.{digits}g}" != f"{threshold:.{digits}g}" and float(
            f"{value:.{digits}g}"
        ) != float(f"{threshold:.10g}"):
            return f"{value:.{digits}g}"
    return repr(value)


def criterion_text(metric: str, op: str, threshold: float) -> str:
    """One budget criterion as written: `cosine>=0.9999999` (to 10 digits, or all of them where
    10 would round it to a whole number: `cosine>=0.99999999999` is not `cosine>=1`)."""
    shown = f"{threshold:.10g}"
    if float(shown).is_integer() and not float(threshold).is_integer():
        shown = repr(float(threshold))
    return f"{metric}{op}{shown}"


def parse_max_drift(text: str) -> Budget:
    """Parse comma-separated limits: `cosine>=0.99` (every sample's cosine: see Budget),
    `snr>=30`, `top1>=0.98`, `max_abs<=1e-3`, `rel_err<=0.01`, ...

    A bare number X means max_abs<=X.
    """
    criteria = []
    for item in text.split(","):
        try:
            criteria.append(("max_abs", "<=", float(item)))
            continue
        except ValueError:
            pass
        match = _CRITERION.match(item.lower())
        metric, op, value = match.groups() if match else (None, None, None)
        if metric not in METRICS or op != METRICS[metric][1]:
            raise OnnxSlimError(
                f"bad drift limit {item.strip()!r}: "
                "expected cosine>=X, snr>=DB, top1>=X, max_abs<=X, mean_abs<=X "
                "or rel_err<=X"
            )
        try:
            criteria.append((metric, op, float(value)))
        except ValueError as err:
            raise OnnxSlimError(
                f"bad drift limit {item.strip()!r}: {value!r} is not a number"
            ) from err
    return Budget(tuple(criteria))
