"""The three sample splits INT8 works on: calibration (ranges), selection (every automatic
choice and the drift budget) and test (the drift reported), and what the report says of them."""

from __future__ import annotations

import math
from collections.abc import Sequence

from onnxslim.drift import (
    GAIN_CONFIDENCE,
    MIN_PREDICTION_SAMPLES,
    NEW_SAMPLE_COVERAGE,
    PER_SAMPLE,
    Budget,
    criterion_text,
)
from onnxslim.errors import OnnxSlimError

MIN_EVAL_SAMPLES = 2
DEFAULT_EVAL_SPLIT = 0.2  # `eval_split` None: this share, raised (see split_samples)
MIN_CALIBRATION_SAMPLES = 16  # the default selection split is raised while this many are left
MIN_BUDGET_SAMPLES = 16  # fewer selection samples make a drift budget overfit them
MIN_TEST_SAMPLES = 32  # fewer test samples rarely hold the rare input INT8 gets wrong
TOP1_DOUBT = 0.1  # see _samples_for_top1

#: How the held-out samples are picked: evenly through the data, or its last samples.
HELD_OUT = ("spread", "last")


def check_split(selection_share: float | None, test_share: float, held_out: str) -> None:
    """OnnxSlimError unless the shares are numbers in [0, 1) (`selection_share` may be None: the
    default) whose sum is below 1, and `held_out` is one of HELD_OUT."""
    for name, share in (("eval split", selection_share), ("test split", test_share)):
        if share is None and name == "eval split":
            continue
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 <= share < 1:
            raise OnnxSlimError(f"{name} must be a number in [0, 1), got {share!r}")
    if held_out not in HELD_OUT:
        raise OnnxSlimError(f"held-out samples {held_out!r}: choose {', '.join(HELD_OUT)}")
    held = DEFAULT_EVAL_SPLIT if selection_share is None else selection_share
    if held + test_share >= 1:
        default = " (its default)" if selection_share is None else ""
        raise OnnxSlimError(
            f"eval split {held:g}{default} and test split {test_share:g} leave no samples to "
            "calibrate on: their sum must be below 1"
        )


def split_samples(
    samples: Sequence,
    selection_share: float | None,
    test_share: float = 0.0,
    held_out: str = "spread",
    fewest: int = MIN_PREDICTION_SAMPLES,
) -> tuple[list, list, list]:
    """Calibration, selection and test samples: `test_share` and `selection_share` of them (each
    at least MIN_EVAL_SAMPLES when its share is > 0) held out, "spread" evenly through the data (a
    folder sorted by name or class then gives every split some of each) or the "last" ones (test
    last); the test split is dropped when the samples are too few for it and MIN_EVAL_SAMPLES
    calibration samples. `selection_share` None: DEFAULT_EVAL_SPLIT, and at least `fewest`
    (MIN_BUDGET_SAMPLES for a budget), else MIN_PREDICTION_SAMPLES (the fewest the automatic
    choices and a cosine budget are made on), while MIN_CALIBRATION_SAMPLES are left (32
    samples: 18 / 8 / 6, not 20 / 6 / 6; 64 with a budget: 35 / 16 / 13, not 38 / 13 / 13,
    which warned that the budget wants 16). Each split keeps the data's order."""
    check_split(selection_share, test_share, held_out)
    automatic = selection_share is None
    selection_share = DEFAULT_EVAL_SPLIT if automatic else selection_share
    samples = list(samples)

    def size(share: float) -> int:
        return max(MIN_EVAL_SAMPLES, int(round(len(samples) * share))) if share > 0 else 0

    n_select, n_test = size(selection_share), size(test_share)
    if n_test and len(samples) - n_select - n_test < max(MIN_EVAL_SAMPLES, 1):
        n_select, n_test = size(selection_share), 0  # too few for a separate test split
    for floor in (fewest, MIN_PREDICTION_SAMPLES) if automatic else ():
        if n_select < floor and len(samples) - floor - n_test >= MIN_CALIBRATION_SAMPLES:
            n_select = floor
            break
    if len(samples) - n_select - n_test < 1:
        raise OnnxSlimError(
            f"{len(samples)} samples are too few to hold out {n_select} for drift and calibrate on "
            f"the rest: give at least {n_select + 1}, or eval_split=0"
        )
    held, n = n_select + n_test, len(samples)
    if held_out == "last":
        positions = list(range(n - held, n))
        test_at = set(positions[n_select:])
    else:  # the middle of each of `held` equal stretches; test and selection alternate over them
        positions = [(2 * k + 1) * n // (2 * held) for k in range(held)]
        test_at = {positions[held - 1 - k * held // n_test] for k in range(n_test)}
    selection_at = set(positions) - test_at
    return (
        [x for i, x in enumerate(samples) if i not in test_at and i not in selection_at],
        [x for i, x in enumerate(samples) if i in selection_at],
        [x for i, x in enumerate(samples) if i in test_at],
    )


def protocol_notes(
    calib: list,
    selection: list,
    test: list,
    budget: Budget | None,
    held_out: str,
    chooses: bool,
) -> list[str]:
    """What each sample split was used for, and where the figures cannot be trusted (`held_out`:
    where they came from, QuantizeConfig.held_out; `chooses`: whether choices are made on the
    selection samples, QuantizeConfig.chooses)."""
    where = "spread through the data" if held_out == "spread" else "the last ones given"
    notes = [
        f"samples: {len(calib)} calibration (ranges), {len(selection)} selection (automatic "
        f"choices{' and the drift budget' if budget else ''}), {len(test)} test (the drift "
        f"reported: no decision saw them); held out: {where}"
    ]
    if not selection:
        notes.append("no selection samples: choices and drift use the calibration samples")
    elif not test:
        notes.append(
            "no test samples: the drift reported is on the selection samples the choices used; "
            "give more samples, or measure on new data with `onnxslim bench`"
        )
    else:
        notes += few_test_samples_note(len(test))
    if 0 < len(selection) < MIN_PREDICTION_SAMPLES and chooses:
        notes.append(
            f"the automatic choices rest on {len(selection)} selection samples, too few to tell a "
            f"gain from noise (at least {MIN_PREDICTION_SAMPLES}): the accuracy choices keep "
            "their defaults, the timed ones read the drift as measured; give more samples, or "
            "--eval-split (eval_split= in Python)"
        )
    if budget and len(selection) < MIN_BUDGET_SAMPLES:
        notes.append(
            f"warning: the budget {budget} is held on only {len(selection)} selection samples: "
            "it may not hold on new data, or its margin for new samples sends more nodes to "
            f"float than more samples would (give at least {MIN_BUDGET_SAMPLES})"
        )
    per_sample = [c for c in (budget.criteria if budget else ()) if c[0] in PER_SAMPLE]
    if per_sample:
        notes.append(
            f"{criterion_text(*per_sample[0])} is held with a margin for new samples: the "
            f"{len(selection or calib)} {'selection' if selection else 'calibration'} samples' "
            f"cosines must predict it for {NEW_SAMPLE_COVERAGE:.1%} of new ones (log-normal fit "
            "of 1 - cosine, Student-t prediction bound: the fewer or more spread the samples, the "
            "wider the margin; optimistic, as these samples also chose the nodes in float)"
        )
    held = len(selection or calib)
    pooled = [c for c in (budget.criteria if budget else ()) if c[0] == "snr"]
    if pooled and held >= MIN_PREDICTION_SAMPLES:
        notes.append(
            f"{criterion_text(*pooled[0])} is held with a margin for new samples: the SNR "
            f"{GAIN_CONFIDENCE:.0%} of bootstrap resamples of the {held} samples reach"
        )
    return notes


def few_test_samples_note(
    count: int, more: str = "more samples, or --test-split: test_split= in Python"
) -> list[str]:
    """A note when the drift reported rests on fewer than MIN_TEST_SAMPLES test samples; `more`:
    how to hold out more."""
    if count >= MIN_TEST_SAMPLES:
        return []
    return [
        f"the drift reported rests on {count} test samples: a rarer input can drift much "
        f"further; hold out {MIN_TEST_SAMPLES} or more for test ({more}), or check on your data "
        "with `onnxslim bench MODEL INT8_MODEL --inputs DATA` (onnxslim.benchmark in Python)"
    ]


def refuse_unbelievable_budget(budget: Budget | None, selection: list, total: int) -> None:
    """A top-1 budget needs enough selection samples to mean anything (see _samples_for_top1), a
    per-sample cosine budget enough to predict new samples from (MIN_PREDICTION_SAMPLES); `total`:
    the samples given, to say what --eval-split holds out enough."""
    for metric, _, threshold in budget.criteria if budget else ():
        if metric in PER_SAMPLE and len(selection) < MIN_PREDICTION_SAMPLES:
            share = math.ceil(100 * MIN_PREDICTION_SAMPLES / total) / 100
            split = (
                f"--eval-split {share:g} of these {total}: eval_split= in Python; "
                if share < 0.5
                else ""
            )
            raise OnnxSlimError(
                f"the budget {criterion_text(metric, '>=', threshold)} cannot be held for new "
                f"samples on {len(selection)} selection samples (too few to predict from): give "
                f"at least {MIN_PREDICTION_SAMPLES} ({split}or more data), or an snr budget"
            )
        needed = _samples_for_top1(threshold) if metric == "top1" else 0
        if len(selection) < needed:
            chance = threshold ** len(selection)
            raise OnnxSlimError(
                f"the budget {criterion_text(metric, '>=', threshold)} cannot be checked on "
                f"{len(selection)} selection samples (a model that disagrees with float on "
                f"{1 - threshold:.0%} of inputs agrees on all {len(selection)} {chance:.0%} of the "
                f"time): give at least {needed} (--eval-split, eval_split= in Python), or a "
                "cosine or snr budget"
            )


def _samples_for_top1(threshold: float) -> int:
    """Selection samples that must all agree for a top-1 budget `threshold` to be believable: a
    model agreeing on only `threshold` of inputs agrees on n of them with chance threshold**n,
    which must be at most TOP1_DOUBT."""
    if threshold >= 1:
        return 0  # exact agreement: one disagreeing sample disproves it, nothing to believe
    return math.ceil(math.log(TOP1_DOUBT) / math.log(threshold)) if threshold > 0 else 0
