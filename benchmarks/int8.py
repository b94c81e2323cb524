"""INT8: onnxslim.quantize vs onnxruntime.quantization.quantize_static on the real-model zoo.

    python benchmarks/int8.py [--models NAME ...] [--budget NAME=SPEC ...] [--runs 60]
                              [--target auto]
                              [--ablation | --smoothing | --weight-only | --vnni | --check]
                              [--json FILE] [--markdown FILE]

Data: `models/zoo.py`'s `splits(name)`, three disjoint splits per model (no source picture, page
line or sentence in two of them): 'calibration' (48 images / 64 sentences), 'selection' (24 / 32)
and 'test' (192 / 128). Both quantizers get calibration + selection. onnxslim, with its default
options, calibrates its ranges on the calibration split and makes every automatic choice (static or
dynamic, cross-layer equalization, bias correction, smoothing, the speed/accuracy choices timed on
this CPU) on the selection split; run again with the model's drift budget, it returns nodes to float
until the budget holds on the selection split. ORT's `quantize_static` (QDQ, per-channel, MinMax)
calibrates on both, once with its other defaults (int8 activations) and once set for x86 without
VNNI (uint8 activations for ORT's u8s8 kernels, reduce_range: 7-bit weights).
Every figure in the table is measured on the test split, which no decision saw: drift against the
float model (the worst float output's lowest per-sample cosine, its SNR over the split, top-1
agreement for the classifiers), file size as a ratio to float, and single-thread latency as a ratio
to float (`onnxslim.bench.benchmark` on [float, onnxslim, ORT, ORT x86, onnxslim's lossless float
model, onnxslim with the budget], runs interleaved, on test samples).
`--ablation` instead compares range methods, cross-layer equalization, bias correction and the
weight levers (MSE weight range, GPTQ rounding; static INT8, no budget, no ORT, no timing) by their
drift on the same test split; `--smoothing` compares dynamic INT8 without and with smoothing (see
`onnxslim/quantization/smooth.py`) on the models with MatMul weights. `--weight-only` compares
the rounding of int8-stored weights (nearest, GPTQ; and GPTQ with bias correction) in weight-only
INT8 of every weight (float compute, what mode auto hands back where INT8 compute does not pay).
`--vnni` measures the accuracy a CPU with VNNI would give (see `vnni_accuracy`), on this CPU.
`--check` sets the default against levers it leaves off (other range methods, nearest rounding)
and ORT on photos of a source no split uses (`models.zoo.check_samples`), and the Softmax
classifiers at their logits (`logits_rows`).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import json
import math
import sys
import tempfile
import time
import unittest.mock
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from models.zoo import (  # noqa: E402
    IMAGE_MODELS,
    PIXEL_STEP,
    check_samples,
    is_thumbnail,
    picture_sources,
    splits,
)
from onnxslim.bench import benchmark  # noqa: E402
from onnxslim.cpu import cpu_info  # noqa: E402
from onnxslim.drift import (  # noqa: E402
    NEAR_ZERO,
    TensorSnr,
    compare_outputs,
    parse_max_drift,
    probability_channels,
    scored_drift,
    with_parts,
)
from onnxslim.errors import CheckFailedError  # noqa: E402
from onnxslim.model import io  # noqa: E402
from onnxslim.model.graph import output_kinds  # noqa: E402
from onnxslim.optimizer import optimize  # noqa: E402
from onnxslim.quantization import api, exact, modes, quantize, targets  # noqa: E402
from onnxslim.quantization.builder import QuantBuilder, run_samples  # noqa: E402
from onnxslim.quantization.ops import stored_weight  # noqa: E402
from onnxslim.quantization.plan import QuantOptions, prepare  # noqa: E402
from onnxslim.quantization.report import WEIGHT_ONLY_MODE, kept_float_counts  # noqa: E402
from onnxslim.quantization.targets import TARGETS, resolve_target, saturates_here  # noqa: E402

ZOO = ROOT / "models" / "zoo"
# Per-model drift budgets for onnxslim's fallback (held on the selection split), None: no budget.
BUDGETS = {
    "ppocr_cls": "cosine>=0.99",
    "ppocrv4_rec": "cosine>=0.99",
    "yolov8n_320": "cosine>=0.998",
    "ppocrv4_det": None,
    "transformer_encoder": "cosine>=0.99",
    # top-1 budgets are refused on 24 selection samples (top1>=0.97 needs 76)
    "efficientnet_lite1": "cosine>=0.99",
    "open_nsfw": "cosine>=0.99",
    "minilm_l3": "cosine>=0.99",
}
# Top-1 agreement means something only for these outputs (class scores).
CLASSIFIERS = {"ppocr_cls", "efficientnet_lite1", "open_nsfw"}
TIMING_SAMPLES = 16  # test samples the timed runs cycle through
# Segmentation maps: pixel threshold of the mask the model's users take from the output (PP-OCR
# det: text pixels at probability > 0.3), compared as IoU over the test split.
MASKS = {"ppocrv4_det": 0.3}
# CTC text recognizers: the blank class of their per-step softmax; compared as the text greedy
# decoding reads (the best class per step, repeats merged, blanks dropped).
CTC_BLANK = {"ppocrv4_rec": 0}
# Detectors: the score threshold their users keep detections at; compared as the SNR of the
# output's score channels alone (its box coordinates in pixels bury their error pooled) and as
# the (anchor, class) scores above it that INT8 keeps.
DETECTIONS = {"yolov8n_320": 0.25}
MAX_LISTED = 8  # fallback nodes named per model in the notes
# --ablation: quantize() options per column (static INT8, the levers one by one); the last is the
# default (mode auto).
_STATIC = {
    "mode": "static",
    "equalize": False,
    "bias_correction": False,
    "weight_rounding": "nearest",
}
_PERCENTILE = {**_STATIC, "percentile": 99.99}
ABLATIONS = {
    "minmax": {**_STATIC, "method": "minmax"},
    "mean_minmax": {**_STATIC, "method": "mean_minmax"},
    "percentile 99.99": _PERCENTILE,
    "entropy": {**_STATIC, "method": "entropy"},
    "mse": {**_STATIC, "method": "mse"},
    "percentile + CLE": {**_PERCENTILE, "equalize": True},
    "percentile + BC": {**_PERCENTILE, "bias_correction": True},
    "percentile + CLE + BC": {**_PERCENTILE, "equalize": True, "bias_correction": True},
    "percentile + BC, MSE weight range": {
        **_PERCENTILE,
        "bias_correction": True,
        "weight_range": "mse",
    },
    "percentile + BC, GPTQ weights": {
        **_PERCENTILE,
        "bias_correction": True,
        "weight_rounding": "gptq",
    },
    "default: percentile, CLE and BC auto": {},
}
# --smoothing: dynamic INT8 of the models with MatMul weights, without and with smoothing.
SMOOTHING = {
    "dynamic INT8": {"mode": "dynamic", "smooth": False},
    "dynamic INT8, smoothed": {"mode": "dynamic", "smooth": True},
    "default (mode auto, smoothing auto)": {},
}
SMOOTHING_MODELS = ["minilm_l3", "transformer_encoder", "ppocrv4_rec"]
# --weight-only: the rounding of int8-stored weights, every weighted node computing in float:
# (weight rounding, bias correction) per column
WEIGHT_ONLY = {
    "nearest rounding": ("nearest", False),
    "GPTQ rounding": ("gptq", False),
    "GPTQ rounding + bias correction": ("gptq", True),
}
# --check: the default against the levers it does not use, on photos of a source no split uses
# (models.zoo.CHECK_PICTURES), for the image models that take whole photos; ORT alongside.
CHECK = {
    "default": {},
    "mean_minmax ranges": {"method": "mean_minmax"},
    "minmax ranges": {"method": "minmax"},
    "nearest rounding": {"weight_rounding": "nearest"},
}
CHECK_MODELS = ["efficientnet_lite1", "open_nsfw", "yolov8n_320"]
# --check, second table: the classifiers whose output is a Softmax, at its input too
SOFTMAX_CLASSIFIERS = ["ppocr_cls", "open_nsfw"]
CHECKED = {*CHECK_MODELS, *SOFTMAX_CLASSIFIERS}  # the models --check measures


def ort_quantize(src: Path, dst: Path, calibration: list[dict], **options) -> float:
    """ORT's quantize_static (QDQ, per-channel, MinMax; `options` override its other defaults);
    returns the seconds it took."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter(calibration)

        def get_next(self):
            return next(self.items, None)

    started = time.perf_counter()
    quantize_static(
        str(src),
        str(dst),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        calibrate_method=CalibrationMethod.MinMax,
        **options,
    )
    return time.perf_counter() - started


def ort_x86_options() -> dict:
    """quantize_static options for x86 without VNNI: uint8 activations (ORT's u8s8 kernels instead
    of its default int8 activations) and 7-bit weights (reduce_range: no u8s8 saturation)."""
    from onnxruntime.quantization import QuantType

    return {"activation_type": QuantType.QUInt8, "reduce_range": True}


def onnxslim_quantize(name: str, data: dict, budget: str | None, target: str, **options):
    """onnxslim's quantize on calibration + selection: ranges from the calibration split, every
    automatic choice and the budget on the selection split, no test split of its own; otherwise
    its defaults (the speed/accuracy choices timed on this CPU included)."""
    calib, selection = data["calibration"], data["selection"]
    return quantize(
        ZOO / f"{name}.onnx",
        calib + selection,
        eval_split=len(selection) / (len(calib) + len(selection)),
        test_split=0,
        held_out="last",  # the selection split is the last samples given
        max_drift=budget,
        target=target,
        progress=False,
        **options,
    )


def test_drift(
    ref: list[dict], outputs: list[dict], classifier: bool, thumbnails: list[bool] | None = None
) -> dict:
    """Drift on the test split of the worst float output: the lowest per-sample cosine (over the
    samples whose float output is not ~0: a cosine of two near-zero vectors measures noise, e.g.
    PP-OCR det on a picture without text), the cosine and SNR over the whole split, and top-1
    agreement (classifiers only; given which samples are `thumbnails`, also apart on the photos
    and on those: `top1_by_kind`)."""
    pooled = {k: d for k, d in compare_outputs(ref, outputs).items() if d.cosine is not None}
    worst = min(pooled, key=lambda k: pooled[k].snr_db)
    skipped = 0
    for k in pooled:
        norms = [float(np.linalg.norm(r[k])) for r in ref]
        floor = NEAR_ZERO * float(np.sqrt(np.mean(np.square(norms))))
        skipped += sum(norm <= floor for norm in norms)
    return {
        "output": worst,
        "min_cosine": min(d.min_cosine for d in pooled.values() if d.min_cosine is not None),
        "near_zero_skipped": skipped,
        "cosine": pooled[worst].cosine,
        "snr_db": min(d.snr_db for d in pooled.values()),
        "top1": pooled[worst].top1_agreement if classifier else None,
        "flip_confidence": flip_confidence(ref, outputs, worst) if classifier else None,
        "drift": {k: d.to_dict() for k, d in pooled.items()},
        **(top1_by_kind(ref, outputs, worst, thumbnails) if classifier and thumbnails else {}),
    }


def top1_by_kind(ref: list[dict], outputs: list[dict], key: str, thumbnails: list[bool]) -> dict:
    """Top-1 agreement of output `key` on the photos and, apart, on the lfw thumbnails (25x25
    gray faces/non-faces blown up: an ImageNet classifier's near-ties) of an image split."""
    agree = np.array([r[key].argmax() == o[key].argmax() for r, o in zip(ref, outputs)])
    thumbs = np.array(thumbnails)
    return {
        "top1_photos": float(agree[~thumbs].mean()),
        "top1_thumbnails": float(agree[thumbs].mean()),
    }


def flip_confidence(ref: list[dict], outputs: list[dict], key: str) -> list[float]:
    """For each sample (batch 1) whose top-1 class differs from float's: the probability float
    gives its own top class (the output itself when it is a distribution, else its softmax). Low
    values mean the flipped samples are near-ties that any perturbation flips."""
    out = []
    for r, o in zip(ref, outputs):
        logits, other = r[key].reshape(-1).astype(np.float64), o[key].reshape(-1)
        if logits.argmax() == other.argmax():
            continue
        is_distribution = logits.min() >= 0 and abs(logits.sum() - 1) < 1e-3
        p = logits if is_distribution else np.exp(logits - logits.max())
        out.append(float(p.max() / p.sum()))
    return out


def pixel_noise(
    src: Path, test: list[dict], ref: list[dict], step: float, classifier: bool, thumbnails=None
):
    """Drift of the float model itself when each input pixel moves by up to half an 8-bit level
    (uniform noise of +-step/2, seeded): how far apart two equally valid decodings of the same
    picture already are, the floor INT8 is measured against."""
    rng = np.random.default_rng(0)
    noisy = [
        {k: (v + rng.uniform(-step / 2, step / 2, v.shape)).astype(v.dtype) for k, v in x.items()}
        for x in test
    ]
    return test_drift(ref, run_samples(src, noisy, int8=False), classifier, thumbnails)


def mask_agreement(ref: list[dict], outputs: list[dict], threshold: float) -> dict:
    """The first output thresholded at `threshold`: IoU of the INT8 and float masks over the test
    split, and how many samples with a non-empty float mask get an empty INT8 one."""
    key = next(iter(ref[0]))
    inter = union = with_mask = emptied = 0
    for r, o in zip(ref, outputs):
        a, b = r[key] > threshold, o[key] > threshold
        inter += int((a & b).sum())
        union += int((a | b).sum())
        if a.any():
            with_mask += 1
            emptied += not b.any()
    return {"iou": inter / union if union else 1.0, "with_mask": with_mask, "emptied": emptied}


def detection_agreement(ref: list[dict], outputs: list[dict], threshold: float) -> dict:
    """The first output's score channels (`drift.probability_channels` on float's outputs: all of
    them where it finds none apart): their SNR over the test split, and float's (anchor, class)
    scores above `threshold`, how many INT8 keeps above it and how many it adds."""
    key = next(iter(ref[0]))
    found = probability_channels(ref, key)
    axis, channels = (found[0], found[1]) if found else (-1, slice(None))

    def scores(out: dict) -> np.ndarray:
        return np.moveaxis(out[key], axis, -1)[..., channels]

    pairs = [(scores(r), scores(o)) for r, o in zip(ref, outputs)]
    drift = compare_outputs(*([{"s": x} for x in xs] for xs in zip(*pairs)))["s"]
    return {
        "snr_db": drift.snr_db,
        "found": sum(int((a > threshold).sum()) for a, _ in pairs),
        "kept": sum(int(((a > threshold) & (b > threshold)).sum()) for a, b in pairs),
        "added": sum(int(((a <= threshold) & (b > threshold)).sum()) for a, b in pairs),
    }


def text_agreement(ref: list[dict], outputs: list[dict], blank: int) -> dict:
    """The share of samples whose greedy CTC decoding of the first output (`blank` the blank
    class) reads the same text as float's, and of time steps with the same best class."""
    key = next(iter(ref[0]))

    def text(p: np.ndarray) -> list[int]:
        best = p.reshape(-1, p.shape[-1]).argmax(-1)
        merged = [c for i, c in enumerate(best) if i == 0 or c != best[i - 1]]
        return [int(c) for c in merged if c != blank]

    same = [text(r[key]) == text(o[key]) for r, o in zip(ref, outputs)]
    steps = [float((r[key].argmax(-1) == o[key].argmax(-1)).mean()) for r, o in zip(ref, outputs)]
    return {"texts": float(np.mean(same)), "steps": float(np.mean(steps))}


def run(name: str, budget: str | None, runs: int, work: Path, target: str) -> dict:
    src = ZOO / f"{name}.onnx"
    data = splits(name)
    calib, selection, test = data["calibration"], data["selection"], data["test"]
    started = time.perf_counter()
    result = onnxslim_quantize(name, data, None, target)
    ours_s = time.perf_counter() - started
    ours = work / f"{name}.onnxslim.int8.onnx"
    ir.save(result.model, ours)
    budgeted, error = None, None
    if budget:
        try:
            budgeted = onnxslim_quantize(name, data, budget, target)
        except CheckFailedError as err:  # the budget never held
            error = str(err)
    ours_budget = work / f"{name}.onnxslim-budget.int8.onnx"
    ir.save((budgeted or result).model, ours_budget)
    theirs = work / f"{name}.ort.int8.onnx"
    ort_s = ort_quantize(src, theirs, calib + selection)
    theirs_x86 = work / f"{name}.ort-u8.int8.onnx"
    ort_x86_s = ort_quantize(src, theirs_x86, calib + selection, **ort_x86_options())
    # onnxslim's INT8 models include its lossless rewrites: time them alone too, for the share
    # of the speedup that is not INT8's.
    lossless = work / f"{name}.onnxslim.float.onnx"
    ir.save(optimize(src, check=False), lossless)

    timing = benchmark(
        [src, ours, theirs, theirs_x86, lossless, ours_budget],
        inputs=test[:TIMING_SAMPLES],
        runs=runs,
        warmup=5,
        threads=1,
        measure_memory=False,
        progress=False,
    )
    ref_model, our_model, ort_model, ort_x86_model, lossless_model, budget_model = timing.models
    ref = run_samples(src, test, int8=False)
    classifier = name in CLASSIFIERS
    thumbnails = None
    if name in IMAGE_MODELS:
        thumbnails = [is_thumbnail(source) for source, _ in picture_sources(len(test), "test")]
    report = result.report
    row = {
        "model": name,
        "splits": {k: len(v) for k, v in data.items()},
        "float_mb": ref_model.file_size / 1e6,
        "float_ms": ref_model.latency.median,
        "lossless_latency_ratio": lossless_model.latency.median / ref_model.latency.median,
        "budget": budget,
        "budget_error": error,
        "fallback": budgeted.report.fallback if budgeted else [],
        "budget_mode": budgeted.report.mode if budgeted else None,
        "budget_notes": [n for n in budgeted.report.notes if n.startswith(modes.COMPUTE_NOTE)]
        if budgeted
        else [],
        "mode": report.mode,
        "kept_float": report.kept_float,
        "quantized": report.quantized,
        "notes": report.notes,
        "method": report.method,
        "target": report.target,
        "target_reason": report.target_reason,
        "weight_pair_limit": report.weight_pair_limit,
        "equalized_pairs": report.equalized_pairs,
        "bias_correction": report.bias_correction,
        "smoothed_inputs": report.smoothed_inputs,
    }
    outputs = {}
    for key, path, timed, seconds in (
        ("onnxslim", ours, our_model, ours_s),
        ("ort", theirs, ort_model, ort_s),
        ("ort_x86", theirs_x86, ort_x86_model, ort_x86_s),
        *([("onnxslim_budget", ours_budget, budget_model, None)] if budgeted else []),
    ):
        outputs[key] = run_samples(path, test)
        row[key] = {
            "size_ratio": timed.file_size / ref_model.file_size,
            "latency_ratio": timed.latency.median / ref_model.latency.median,
            "seconds": seconds,
            **test_drift(ref, outputs[key], classifier, thumbnails),
        }
        if name in MASKS:
            row[key]["mask"] = mask_agreement(ref, outputs[key], MASKS[name])
        if name in CTC_BLANK:
            row[key]["text"] = text_agreement(ref, outputs[key], CTC_BLANK[name])
        if name in DETECTIONS:
            row[key]["detections"] = detection_agreement(ref, outputs[key], DETECTIONS[name])
    if name in PIXEL_STEP:
        row["pixel_noise"] = pixel_noise(src, test, ref, PIXEL_STEP[name], classifier, thumbnails)
    if budgeted:
        # as the tool judges it: every output, and a detector's scores apart from its boxes
        drift = compare_outputs(ref, outputs["onnxslim_budget"])
        kinds = output_kinds(io.from_proto(onnx.load(src)))
        scored = scored_drift(ref, outputs["onnxslim_budget"], kinds, drift)
        missed = parse_max_drift(budget).check(with_parts(drift, scored))
        row["budget_on_test"] = missed[0] if missed else "holds"
    return row


def _fmt(value, spec: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and math.isinf(value):
        return "inf"
    return format(value, spec)


def markdown(rows: list[dict]) -> str:
    lines = [
        "| model | float | INT8 size vs float (ours / ORT) | latency vs float (ours / ORT) "
        "| onnxslim lossless alone (float) | min cosine (ours / ORT) | SNR dB (ours / ORT) "
        "| top-1 agreement (ours / ORT) "
        "| with a drift budget (held on selection): nodes back in float; on test: min cosine, "
        "top-1, latency vs float; the budget "
        "| ORT with uint8 activations and reduce_range: size, latency, min cosine, SNR dB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:

        def pair(key, spec, row=row):
            return " / ".join(_fmt(row[k][key], spec) for k in ("onnxslim", "ort"))

        x86 = row["ort_x86"]
        if row["budget_error"]:
            budget = f"{row['budget']}: never held, shown without"
        elif row["budget"]:
            held = row["onnxslim_budget"]
            on_test = "holds" if row["budget_on_test"] == "holds" else "**missed**"
            returned = len(row["fallback"])
            if row["budget_mode"] == WEIGHT_ONLY_MODE:  # every weighted node in float
                returned = WEIGHT_ONLY_MODE
            budget = (
                f"{row['budget']}: {returned}; {held['min_cosine']:.4f}, "
                f"{_fmt(held['top1'], '.3f')}, {held['latency_ratio']:.2f}x; {on_test}"
            )
        else:
            budget = "none"
        lines.append(
            f"| {row['model']}{' (weight-only)' if row['mode'] == WEIGHT_ONLY_MODE else ''} "
            f"| {row['float_mb']:.1f} MB, {row['float_ms']:.1f} ms "
            f"| {pair('size_ratio', '.2f')} | {pair('latency_ratio', '.2f')} "
            f"| {row['lossless_latency_ratio']:.2f} | {pair('min_cosine', '.4f')} "
            f"| {pair('snr_db', '.1f')} | {pair('top1', '.3f')} | {budget} "
            f"| {x86['size_ratio']:.2f}, {x86['latency_ratio']:.2f}, {x86['min_cosine']:.4f}, "
            f"{_fmt(x86['snr_db'], '.1f')}"
            + (f", top-1 {x86['top1']:.3f}" if x86["top1"] is not None else "")
            + " |"
        )
    return "\n".join(lines)


def _drift_cell(drift: dict, sep: str) -> str:
    """Min cosine, SNR dB and top-1 of a test drift, joined by `sep`."""
    return sep.join(
        (f"{drift['min_cosine']:.4f}", _fmt(drift["snr_db"], ".1f"), _fmt(drift["top1"], ".3f"))
    )


def noise_floor(rows: list[dict]) -> str:
    """The float model under half a pixel level of input noise, next to onnxslim's INT8; for the
    photo classifiers, each one's top-1 agreement on the photos and on the lfw thumbnails apart."""
    lines = [
        "| model | float, input pixels +-1/2 level: min cosine, SNR dB, top-1 "
        "| onnxslim INT8: min cosine, SNR dB, top-1 "
        "| top-1 on the photos / on the lfw thumbnails: float +-1/2 level; onnxslim; ORT; "
        "ORT uint8 |",
        "|---|---|---|---|",
    ]
    for row in rows:
        if "pixel_noise" not in row:
            continue
        cells = [_drift_cell(d, ", ") for d in (row["pixel_noise"], row["onnxslim"])]
        kinds = [row[k] for k in ("pixel_noise", "onnxslim", "ort", "ort_x86")]
        by_kind = "; ".join(
            f"{d['top1_photos']:.3f} / {d['top1_thumbnails']:.3f}"
            for d in kinds
            if "top1_photos" in d
        )
        lines.append(f"| {row['model']} | {cells[0]} | {cells[1]} | {by_kind or '-'} |")
    return "\n".join(lines)


def notes(rows: list[dict]) -> str:
    """Per model: what onnxslim's report says (choices, nodes kept in float, fallback) and the
    time each quantizer took."""
    out = []
    for row in rows:
        kept = kept_float_counts(row["kept_float"])
        fallback = ", ".join(
            f"`{f['node']}` ({f['op']}{', int8 weights' if f['int8_weights'] else ''})"
            for f in row["fallback"][:MAX_LISTED]
        )
        if len(row["fallback"]) > MAX_LISTED:
            ops = sorted({f["op"] for f in row["fallback"]})
            stored = sum(f["int8_weights"] for f in row["fallback"])
            fallback = (
                f"{len(row['fallback'])} nodes ({', '.join(ops)}; {stored} compute in float on "
                f"int8-stored weights, the others are entirely float), the most sensitive first: "
                f"{fallback}, ..."
            )
        ours, ort = row["onnxslim"], row["ort"]
        lines = [
            f"- **{row['model']}** ({row['splits']['calibration']} / {row['splits']['selection']}"
            f" / {row['splits']['test']} samples; worst output `{ours['output']}`): "
            f"{row['mode']} INT8, quantized {sum(row['quantized'].values())} nodes"
            + "".join(f", {n} {op}" for op, n in sorted(row["quantized"].items()))
            + "; kept in float: "
            + (", ".join(f"{n} {r}" for r, n in kept.items()) or "none")
            + f"; quantizing took {ours['seconds']:.1f} s (ORT {ort['seconds']:.1f} s, "
            f"{row['ort_x86']['seconds']:.1f} s with uint8 activations); "
            f"test cosine over the split {ours['cosine']:.4f} / {ort['cosine']:.4f}"
            + (
                f" (min cosine: {row['splits']['test'] - ours['near_zero_skipped']} test samples;"
                f" {ours['near_zero_skipped']} whose float output is ~0 skipped)"
                if ours["near_zero_skipped"]
                else ""
            )
            + "."
        ]
        if ours["flip_confidence"]:
            flips = ours["flip_confidence"]
            lines.append(
                f"  - top-1: {len(flips)} of {row['splits']['test']} test samples change class; "
                f"float gives its own top class {max(flips):.2f} probability or less on each "
                f"(median {float(np.median(flips)):.2f})"
            )
        if "mask" in ours:
            a, b, c = ours["mask"], ort["mask"], row["ort_x86"]["mask"]
            lines.append(
                f"  - mask (output > {MASKS[row['model']]}) IoU over the test split "
                f"{a['iou']:.3f} / {b['iou']:.3f} / {c['iou']:.3f} (ours / ORT / ORT uint8 "
                f"activations); of the {a['with_mask']} test samples with a non-empty float mask, "
                f"the INT8 mask is empty on {a['emptied']} / {b['emptied']} / {c['emptied']}"
            )
        if "text" in ours:
            a, b, c = ours["text"], ort["text"], row["ort_x86"]["text"]
            lines.append(
                f"  - text read (greedy CTC) the same as float's on {a['texts']:.3f} / "
                f"{b['texts']:.3f} / {c['texts']:.3f} of the test samples (ours / ORT / ORT uint8 "
                f"activations); the same best class at {a['steps']:.4f} / {b['steps']:.4f} / "
                f"{c['steps']:.4f} of the time steps"
            )
        if "detections" in ours:
            a, b, c = ours["detections"], ort["detections"], row["ort_x86"]["detections"]
            lines.append(
                f"  - scores (the output's [0, 1] channels alone) SNR over the test split "
                f"{_fmt(a['snr_db'], '.1f')} / {_fmt(b['snr_db'], '.1f')} / "
                f"{_fmt(c['snr_db'], '.1f')} dB (ours / ORT / ORT uint8 activations); of float's "
                f"{a['found']} scores above {DETECTIONS[row['model']]} (anchor and class), INT8 "
                f"keeps {a['kept']} / {b['kept']} / {c['kept']} and adds {a['added']} / "
                f"{b['added']} / {c['added']}"
            )
        if row["budget_error"]:
            lines.append(f"  - budget {row['budget']}: {row['budget_error']}")
        if fallback:
            lines.append(f"  - back in float for the budget: {fallback}")
        lines += [f"  - with the budget: {note}" for note in row["budget_notes"]]
        if row.get("budget_on_test", "holds") != "holds":
            lines.append(f"  - budget missed on the test split: {row['budget_on_test']}")
        # The protocol notes say what the splits served; this script measures on its own test split.
        skip = ("samples:", "no test samples:")
        lines += [f"  - {note}" for note in row["notes"] if not note.startswith(skip)]
        out += lines
    return "\n".join(out)


def header(target: str) -> str:
    cpu = cpu_info()
    profile, reason = resolve_target(target)
    return (
        f"CPU: {cpu.model} ({cpu.arch}; {', '.join(cpu.features) or 'no ISA flags found'}; "
        f"AVX-512 {'yes' if cpu.flags.get('avx512') else 'no'}, "
        f"VNNI {'yes' if cpu.flags.get('vnni') else 'no'}). onnxslim target `{target}` -> "
        f"{reason} ({profile.note})."
    )


def ablation(name: str, target: str = "auto", columns: dict = ABLATIONS) -> dict:
    """Drift on the test split of each of `columns`' configurations (no budget; ranges from the
    calibration split, the automatic choices of the last column on the selection split)."""
    data = splits(name)
    test = data["test"]
    ref = run_samples(ZOO / f"{name}.onnx", test, int8=False)
    row = {"model": name}
    for label, options in columns.items():
        result = onnxslim_quantize(name, data, None, target, **options)
        drift = test_drift(ref, run_samples(ir.to_proto(result.model), test), False)
        report = result.report
        levers = (
            ("CLE", report.equalized_pairs),
            ("BC", report.bias_correction),
            ("smoothing", report.smoothed_inputs),
        )
        kept = " + ".join(lever for lever, on in levers if on) or "neither"
        row[label] = {
            "min_cosine": drift["min_cosine"],
            "snr_db": drift["snr_db"],
            "kept": f"{report.mode}: {kept}"
            + (f", {report.method}" if report.mode == "static" else ""),
        }
    return row


def weight_only(name: str) -> dict:
    """Drift on the test split of weight-only INT8 of every weight (every weighted node computing
    in float on int8-stored weights, 8-bit per channel), rounded and bias-corrected as each of
    WEIGHT_ONLY says: GPTQ against layer input statistics, bias correction against the input
    channel means, both from the calibration split."""
    data = splits(name)
    test = data["test"]
    ref = run_samples(ZOO / f"{name}.onnx", test, int8=False)
    model = prepare(optimize(str(ZOO / f"{name}.onnx"), check=False))
    stored = [node.name for node in model.graph if stored_weight(node) is not None]
    row = {"model": name}
    for label, (rounding, bias_correction) in WEIGHT_ONLY.items():
        options = QuantOptions(
            weight_rounding=rounding, bias_correction=bias_correction, min_macs=0
        )
        builder = QuantBuilder(model, data["calibration"], options, "minmax", {}, False)
        built, info = builder.build(weight_only=stored)
        drift = test_drift(ref, run_samples(ir.to_proto(built), test), name in CLASSIFIERS)
        row[label] = {
            "min_cosine": drift["min_cosine"],
            "snr_db": drift["snr_db"],
            "top1": drift["top1"],
            "kept": f"{len(info.plan.weight_only)} int8-stored weights",
        }
    return row


def ablation_markdown(rows: list[dict], columns: dict = ABLATIONS) -> str:
    lines = ["| model | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for row in rows:
        cells = [
            f"{row[k]['min_cosine']:.4f} / {row[k]['snr_db']:.1f} dB"
            + (f" / top-1 {row[k]['top1']:.3f}" if row[k].get("top1") is not None else "")
            for k in columns
        ]
        cells[-1] += f" ({row[list(columns)[-1]]['kept']})"
        lines.append(f"| {row['model']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


@contextlib.contextmanager
def vnni_cpu():
    """onnxslim's `--target auto` sees this CPU with VNNI (the `vnni` profile: full 8-bit weights)
    and, as for any target whose weights this CPU's kernels would saturate, checks every INT8
    model by its own math (`onnxslim/quantization/exact.py`), as do the runs within; timing is
    this CPU's."""
    real = cpu_info()
    vnni = dataclasses.replace(real, flags={**real.flags, "vnni": True})
    with (
        unittest.mock.patch.object(targets, "cpu_info", lambda: vnni),
        unittest.mock.patch.object(api, "saturates_here", lambda _profile: True),
        exact.exact_math(),
    ):
        yield


def vnni_accuracy(name: str, work: Path) -> dict:
    """Drift on the test split on a CPU with VNNI, computed on this one (`vnni_cpu`). VNNI's u8 x
    s8 dot products accumulate in int32 without the int16 pair step that saturates on AVX2, so
    such a CPU computes each INT8 model's own math, up to the rounding of requantization.
    onnxslim: its defaults as `--target auto` picks them there (full 8-bit weights; every choice
    checked by that math, the timed ones timed on this CPU: a proxy); ORT: `quantize_static` with
    its defaults (its asymmetric int8 activations are uint8's grid shifted by 128)."""
    src, data = ZOO / f"{name}.onnx", splits(name)
    calib, selection, test = data["calibration"], data["selection"], data["test"]
    theirs = work / f"{name}.ort.vnni.onnx"
    ort_quantize(src, theirs, calib + selection)
    with vnni_cpu():
        result = onnxslim_quantize(name, data, None, "auto")
        assert result.report.target == "vnni", result.report.target_reason
        ref = run_samples(src, test, int8=False)
        outputs = {
            "onnxslim": run_samples(result.model, test),
            "ort": run_samples(theirs, test),
        }
    row = {
        "model": name,
        "splits": {k: len(v) for k, v in data.items()},
        "mode": result.report.mode,
        "notes": result.report.notes,
    }
    for key, out in outputs.items():
        drift = test_drift(ref, out, name in CLASSIFIERS)
        row[key] = {k: drift[k] for k in ("min_cosine", "snr_db", "top1")}
    return row


VNNI_COLUMNS = {"onnxslim": "onnxslim", "ort": "ORT quantize_static"}


def vnni_markdown(rows: list[dict]) -> str:
    heads = [f"{label}: min cosine / SNR dB / top-1" for label in VNNI_COLUMNS.values()]
    lines = [
        "| model | " + " | ".join(heads) + " |",
        "|---" * (len(VNNI_COLUMNS) + 1) + "|",
    ]
    for row in rows:
        cells = [_drift_cell(row[k], " / ") for k in VNNI_COLUMNS]
        lines.append(f"| {row['model']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def check(name: str, work: Path) -> tuple[dict | None, list[dict]]:
    """Drift of each CHECK configuration of onnxslim (ranges on the calibration split, choices on
    the selection split, as in the main table) and of ORT's `quantize_static` on `check_samples`:
    photos of a source that no split, choice or other figure uses (None for a model of text
    lines); and for a Softmax classifier, `logits_rows` of the default and ORT models."""
    src, data = ZOO / f"{name}.onnx", splits(name)
    theirs = work / f"{name}.ort.check.onnx"
    ort_quantize(src, theirs, data["calibration"] + data["selection"])
    if name not in CHECK_MODELS:  # a Softmax classifier of text lines: its logits only
        ours = ir.to_proto(onnxslim_quantize(name, data, None, "auto").model)
        return None, logits_rows(name, ours, theirs, {"test split": data["test"]})
    samples = check_samples(name)
    ref = run_samples(src, samples, int8=False)
    models, row = {}, {"model": name, "samples": len(samples)}
    for label, options in CHECK.items():
        result = onnxslim_quantize(name, data, None, "auto", **options)
        models[label] = ir.to_proto(result.model)
        row[label] = {"kept": result.report.method}
    models["ORT quantize_static"], row["ORT quantize_static"] = theirs, {}
    for label, model in models.items():
        drift = test_drift(ref, run_samples(model, samples), name in CLASSIFIERS)
        row[label].update({k: drift[k] for k in ("min_cosine", "snr_db", "top1")})
    sets = {"test split": data["test"], "check photos": samples}
    softmax = name in SOFTMAX_CLASSIFIERS
    return row, logits_rows(name, models["default"], theirs, sets) if softmax else []


def check_markdown(rows: list[dict]) -> str:
    columns = [*CHECK, "ORT quantize_static"]
    heads = [f"{label}: min cosine / SNR dB / top-1" for label in columns]
    lines = ["| model (samples) | " + " | ".join(heads) + " |", "|---" * (len(columns) + 1) + "|"]
    for row in rows:
        cells = [_drift_cell(row[k], " / ") for k in columns]
        lines.append(f"| {row['model']} ({row['samples']}) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def softmax_input(model: onnx.ModelProto) -> str | None:
    """The input of the Softmax that computes the model's first output, maybe through Identity
    nodes or a quantization of its output (None: no Softmax does)."""
    producers = {out: node for node in model.graph.node for out in node.output}
    node = producers.get(model.graph.output[0].name)
    while node is not None and node.op_type in ("Identity", "QuantizeLinear", "DequantizeLinear"):
        node = producers.get(node.input[0])
    return node.input[0] if node is not None and node.op_type == "Softmax" else None


def class_scores(model: onnx.ModelProto, samples: list[dict], int8: bool) -> tuple[list, list]:
    """Per sample: the first output (class probabilities; as ORT runs the model) and the Softmax's
    input, centred (the logits up to the shift a Softmax ignores; observed at ORT's basic level)."""
    output, logits_name = model.graph.output[0].name, softmax_input(model)
    probs = [run[output].reshape(-1) for run in run_samples(model, samples, int8=int8)]
    logits = [
        run[logits_name].reshape(-1)
        for run in run_samples(model, samples, [logits_name], int8=int8)
    ]
    return probs, [x - x.mean() for x in logits]


def logits_rows(name: str, ours, theirs, sets: dict[str, list]) -> list[dict]:
    """For a classifier whose output is a Softmax, onnxslim's INT8 model `ours` and ORT's `theirs`
    on each of `sets`: at the output, the largest change of a class probability and float's top
    probability on that sample; at the Softmax's input, the SNR of the centred logits and their
    largest error. A cosine of two-class probabilities is ~1 on saturated samples whatever the
    logits do: this says where each model's error lies."""
    src, models = onnx.load(ZOO / f"{name}.onnx"), {"onnxslim": ours, "ort": onnx.load(theirs)}
    rows = []
    for where, samples in sets.items():
        ref_probs, ref_logits = class_scores(src, samples, int8=False)
        row = {"model": name, "samples": f"{where}, {len(samples)}"}
        for key, model in models.items():
            probs, logits = class_scores(model, samples, int8=True)
            snr = TensorSnr()
            for a, b in zip(ref_logits, logits):
                snr.add("logits", a, b)
            changes = [float(np.abs(a - b).max()) for a, b in zip(ref_probs, probs)]
            worst = int(np.argmax(changes))
            row[key] = {
                "max_prob_change": changes[worst],
                "float_top_prob_there": float(ref_probs[worst].max()),
                "logit_snr_db": snr.db("logits"),
                "max_logit_error": _largest_change(ref_logits, logits),
            }
        rows.append(row)
    return rows


def _largest_change(before: list[np.ndarray], after: list[np.ndarray]) -> float:
    return max(float(np.abs(a - b).max()) for a, b in zip(before, after))


def logits_markdown(rows: list[dict]) -> str:
    lines = [
        "| model | samples | largest change of a class probability (ours / ORT) | float's top "
        "probability on that sample (ours / ORT) | logits SNR dB (ours / ORT) | largest logit "
        "error (ours / ORT) |",
        "|---|---|---|---|---|---|",
    ]
    for row in rows:
        cells = [
            f"{row['onnxslim'][k]:{spec}} / {row['ort'][k]:{spec}}"
            for k, spec in (
                ("max_prob_change", ".3f"),
                ("float_top_prob_there", ".3f"),
                ("logit_snr_db", ".1f"),
            )
        ]
        cells.append(
            f"{row['onnxslim']['max_logit_error']:.2f} / {row['ort']['max_logit_error']:.2f}"
        )
        lines.append(f"| {row['model']} | {row['samples']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--models",
        nargs="*",
        help="zoo models (default: all, or for --smoothing the ones with MatMul weights)",
    )
    parser.add_argument(
        "--budget",
        action="append",
        default=[],
        metavar="NAME=SPEC",
        help="override a model's drift budget (SPEC 'none': no budget)",
    )
    parser.add_argument("--runs", type=int, default=60, help="timed runs per model")
    parser.add_argument(
        "--target", default="auto", help="onnxslim's deployment CPU: auto, avx2, vnni, arm"
    )
    tables = parser.add_mutually_exclusive_group()
    tables.add_argument(
        "--ablation", action="store_true", help="compare range methods, CLE and bias correction"
    )
    tables.add_argument(
        "--smoothing", action="store_true", help="compare dynamic INT8 without and with smoothing"
    )
    tables.add_argument(
        "--weight-only",
        action="store_true",
        help="compare nearest and GPTQ rounding (and bias correction) in weight-only INT8",
    )
    tables.add_argument(
        "--vnni", action="store_true", help="accuracy on a CPU with VNNI, computed on this one"
    )
    tables.add_argument(
        "--check",
        action="store_true",
        help="the default against other levers on photos of a source no split uses; "
        "softmax classifiers at their logits",
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args(argv)
    columns = (
        SMOOTHING
        if args.smoothing
        else ABLATIONS
        if args.ablation
        else WEIGHT_ONLY
        if args.weight_only
        else None
    )
    if args.models is None:
        args.models = (
            SMOOTHING_MODELS
            if args.smoothing
            else sorted(CHECKED, key=list(BUDGETS).index)
            if args.check
            else list(BUDGETS)
        )
    budgets = dict(BUDGETS)
    for item in args.budget:
        name, _, spec = item.partition("=")
        budgets[name] = None if spec.lower() in ("", "none") else spec
    missing = [m for m in args.models if not (ZOO / f"{m}.onnx").exists()]
    if missing:
        print(f"missing zoo models {missing}: run `python models/zoo.py` first", file=sys.stderr)
        return 2
    if args.check and set(args.models) - CHECKED:
        parser.error(f"--check measures {', '.join(sorted(CHECKED))}")
    if (args.vnni or args.check) and args.target != "auto":
        parser.error("--vnni and --check measure what --target auto picks: leave --target out")
    if args.target in TARGETS and saturates_here(TARGETS[args.target]):
        parser.error(f"this CPU's kernels saturate the {args.target} target's weights: use --vnni")
    head = header(args.target)
    if args.vnni:
        head += " --vnni: onnxslim's target auto sees this CPU with VNNI -> the vnni profile."
    print(head, flush=True)
    rows, logit_rows = [], []
    if columns:
        table = functools.partial(ablation_markdown, columns=columns)
    else:
        table = vnni_markdown if args.vnni else check_markdown if args.check else markdown
    with tempfile.TemporaryDirectory(prefix="onnxslim-int8-") as tmp:
        for name in args.models:
            started = time.perf_counter()
            if args.check:
                row, logits = check(name, Path(tmp))
                logit_rows += logits
                rows += [row] if row is not None else []
                lines = logits_markdown(logits).splitlines()[2:]
                lines += table(rows[-1:]).splitlines()[-1:] if row is not None else []
            else:
                if args.weight_only:
                    rows.append(weight_only(name))
                elif columns:
                    rows.append(ablation(name, args.target, columns))
                elif args.vnni:
                    rows.append(vnni_accuracy(name, Path(tmp)))
                else:
                    rows.append(run(name, budgets.get(name), args.runs, Path(tmp), args.target))
                lines = table(rows[-1:]).splitlines()[-1:]
            print("\n".join(lines), flush=True)
            print(f"  ({name}: {time.perf_counter() - started:.0f} s)", flush=True)
    text = "\n\n".join(
        [table(rows)] * bool(rows) + [logits_markdown(logit_rows)] * bool(logit_rows)
    )
    if not columns and not args.vnni and not args.check:
        text += "\n\n" + noise_floor(rows) + "\n\n" + notes(rows)
    print(text)
    if args.json:
        data = {"header": head, "rows": rows, **({"logits": logit_rows} if args.check else {})}
        args.json.write_text(json.dumps(data, indent=2, default=str))
    if args.markdown:
        args.markdown.write_text(head + "\n\n" + text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
