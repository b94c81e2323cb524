"""Static INT8's accuracy levers, chosen on the selection samples: cross-layer equalization and
bias correction, the activation ranges, the weight rounding; each variant replaces the default
only when it is closer to float on new samples, as bootstrap resamples of these say."""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Collection, Mapping, Sequence

import onnx_ir as ir

from onnxslim.drift import (
    AT_LOGITS,
    GAIN_CONFIDENCE,
    IN_PARTS,
    MIN_PREDICTION_SAMPLES,
    Drift,
    compare_outputs,
    scored_drift,
    significantly_closer,
    split_in_parts,
    worst_output,
    worst_snr,
)
from onnxslim.quantization import gptq
from onnxslim.quantization.builder import BuildInfo, QuantBuilder, gptq_candidates, run_samples
from onnxslim.quantization.plan import WEIGHT_ROUNDINGS
from onnxslim.render.progress import progress_bar

CHOICE_SAMPLES = 64  # the most selection samples an accuracy choice (`_closest`) runs
#: The variants `choose` tries, (equalization, bias correction), from no lever to both.
_LABELS = {
    (False, False): "plain",
    (False, True): "bias correction",
    (True, False): "CLE",
    (True, True): "CLE + bias correction",
}
#: `percentile=None`: the first is the default, the others are tried on the selection samples.
PERCENTILES = (99.99, 99.9, 99.999)


@dataclasses.dataclass
class Choice:
    """A static INT8 variant kept: its builder (set to it), model and build info, its drift on
    the selection samples it was scored on (None: not run) and a note (None: no choice made)."""

    builder: QuantBuilder
    model: ir.Model
    info: BuildInfo
    drift: dict[str, Drift] | None = None
    #: the drift as `_closest` compares it (drift.scored_drift: a softmax output's logits)
    scored: dict[str, Drift] | None = None
    note: str | None = None


def choose(
    builders: Mapping[bool, QuantBuilder],
    bias_corrections: Sequence[bool],
    selection: Sequence,
    ref_outputs: Sequence,
) -> Choice:
    """The (equalization, bias correction) variant `_closest` keeps, from no lever to both."""

    def set_to(eq: bool, bc: bool) -> QuantBuilder:
        builders[eq].options = dataclasses.replace(builders[eq].options, bias_correction=bc)
        return builders[eq]

    variants = {
        label: functools.partial(set_to, *key)
        for key, label in _LABELS.items()
        if key[0] in builders and key[1] in bias_corrections
    }
    if len(variants) == 1:
        builder = next(iter(variants.values()))()
        return Choice(builder, *builder.build())
    shown = next(iter(builders.values())).progress
    return _closest(variants, "CLE and bias correction", selection, ref_outputs, shown)


def choose_activation_range(first: Choice, selection: Sequence, ref_outputs: Sequence) -> Choice:
    """The activation range `_closest` keeps for the variant `first` (built at its builder's
    range, tried first: the first of PERCENTILES, or the range kept before): a percentile of
    PERCENTILES, "mse" (each tensor's least quantization error: a heavy-tailed one gets a
    tighter clip than any one percentile gives all) or "minmax" (no clip: a detector's objectness
    logits fire on a few anchors in thousands, which a percentile may clip: ddddocr's YOLOX, its
    objectness at 3.8 dB of SNR at percentile 99.9). Chosen again where layers go back to float:
    DNSMOS's quality scorer (not tuned on) kept 99.9 on its all-INT8 model (14.1 dB against 11.8
    at 99.99), and with its first 3 layers in float 99.999 gave 38.0 dB, 99.9 26.5 (selection
    samples; test split 26.1 -> 38.9 dB, worst sample 0.981 -> 0.9998)."""
    builder = first.builder

    def set_to(method: str, options: dict) -> QuantBuilder:
        builder.method, builder.method_options = method, options
        return builder

    variants = {
        f"percentile {pct:.10g}": functools.partial(set_to, "percentile", {"pct": pct})
        for pct in PERCENTILES
    }
    variants["mse"] = functools.partial(set_to, "mse", {})
    variants["minmax"] = functools.partial(set_to, "minmax", {})
    current = method_label(builder)
    variants = {current: variants[current], **variants}  # (`first`'s, first)
    return _closest(variants, "activation ranges", selection, ref_outputs, builder.progress, first)


def choose_rounding(first: Choice, selection: Sequence, ref_outputs: Sequence) -> Choice:
    """Nearest or GPTQ weight rounding, whichever `_closest` keeps for the variant `first`, built
    with nearest rounding."""
    builder = first.builder

    def set_to(rounding: str) -> QuantBuilder:
        builder.options = dataclasses.replace(builder.options, weight_rounding=rounding)
        return builder

    labels = {"nearest": "nearest rounding", "gptq": "GPTQ rounding"}
    variants = {labels[r]: functools.partial(set_to, r) for r in WEIGHT_ROUNDINGS}
    return _closest(variants, "weight rounding", selection, ref_outputs, builder.progress, first)


def choose_float_bias_correction(
    builder: QuantBuilder,
    build: Mapping[str, Collection[str]],
    selection: Sequence,
    ref_outputs: Sequence,
) -> Choice:
    """Bias correction or none for a build computing in float on int8-stored weights (`build`:
    `QuantBuilder.build`'s arguments), whichever `_closest` keeps, bias correction first: on
    GPTQ-rounded weights it was closer to float or within 0.2 dB on nine of ten models
    (weight-only INT8 of every weight, test splits: PP-OCRv5 det, not tuned on, +5.0 dB, its worst
    sample 0.947 to 0.994) and 2.6 dB further on PP-OCR cls, whose INT8 compute gained by it."""

    variants = _bias_correction_variants(builder, (True, False))
    what = "bias correction for float compute"
    return _closest(variants, what, selection, ref_outputs, builder.progress, build=build)


def choose_bias_correction_again(
    first: Choice, selection: Sequence, ref_outputs: Sequence
) -> Choice:
    """Bias correction chosen once more, on the model the speed/accuracy choices made (`first`,
    built with the setting `choose` kept): layers they returned to float change what rounding
    shifts downstream. On two trained models not tuned on, EfficientNet-Lite0 and a MobileNetV2,
    `choose` kept plain on all-INT8 models (+0.3 dB for bias correction, within noise), and with
    their input layer in float bias correction was +3.7 and +1.2 dB on the selection samples
    (test split: +2.4 and +0.6 dB, worst sample 0.985 -> 0.995 and 0.988 -> 0.991)."""
    builder = first.builder
    kept = builder.options.bias_correction
    variants = _bias_correction_variants(builder, (kept, not kept))
    what = "bias correction on the speed/accuracy choices' model"
    return _closest(variants, what, selection, ref_outputs, builder.progress, first)


def _bias_correction_variants(
    builder: QuantBuilder, order: Sequence[bool]
) -> dict[str, Callable[[], QuantBuilder]]:
    """`_closest`'s variants of `builder` with bias correction on or off, in `order`."""

    def set_to(bias_correction: bool) -> QuantBuilder:
        builder.options = dataclasses.replace(builder.options, bias_correction=bias_correction)
        return builder

    return {_LABELS[builder.equalized, bc]: functools.partial(set_to, bc) for bc in order}


def rounds_with_gptq(choice: Choice) -> bool:
    """Whether GPTQ can round the weight of any of `choice`'s INT8 nodes, or of its nodes computing
    in float on int8-stored weights where it rounds those (`QuantOptions.gptq_float_compute`)."""
    nodes = {node.name: node for node in choice.builder.model.graph}
    rounded = gptq_candidates(choice.info.plan, choice.builder.options)
    return any(gptq.supports(nodes[name]) for name in rounded if name in nodes)


def _closest(
    variants: Mapping[str, Callable[[], QuantBuilder]],
    what: str,
    selection: Sequence,
    ref_outputs: Sequence,
    shown: bool,
    first: Choice | None = None,
    build: Mapping[str, Collection[str]] | None = None,
) -> Choice:
    """Build each variant (label: a function setting its builder up) in order, the default first,
    and keep the closest to the float model (`ref_outputs`; worst SNR over the float outputs, a
    softmax output's at its logits: drift.scored_drift) on up to CHOICE_SAMPLES selection samples,
    each replacing the one kept so far only when `significantly_closer`: closer on new samples, as
    bootstrap resamples of the selection samples say (a fraction of a dB on a few samples is
    noise); on fewer than MIN_PREDICTION_SAMPLES, which cannot say so, the default (where it
    runs) without building the others (a 1024x1024 segmenter's 5 selection samples: 285 s of
    builds for the default). `shown`: a progress bar; `first`: the first variant, when built (and
    scored) already; `build`: the arguments of each build (`QuantBuilder.build`).
    The choice kept carries its drift as the model outputs it (`drift`) besides `scored`."""
    samples, ref = list(selection)[:CHOICE_SAMPLES], list(ref_outputs)[:CHOICE_SAMPLES]
    scores, kept = {}, None  # kept: (label, the Choice, its worst output)
    with progress_bar(f"INT8: trying {what}", len(variants), shown) as bar:
        for label, set_up in variants.items():
            if first is not None and not scores:
                choice = dataclasses.replace(first)
            else:
                builder = set_up()
                choice = Choice(builder, *builder.build(**(build or {})))
            if choice.scored is None:
                outputs = run_samples(choice.model, samples)
                if choice.drift is None:
                    choice.drift = compare_outputs(ref, outputs)
                kinds = choice.builder.kinds
                choice.scored = scored_drift(ref, outputs, kinds, choice.drift)
            scores[label] = worst_snr(choice.scored)
            broken = mismatched(choice.scored)
            if (
                kept is None
                or (not broken and mismatched(kept[1].scored))
                or (
                    not broken
                    and scores[label] > scores[kept[0]]
                    and kept[2] is not None
                    and significantly_closer(kept[1].scored, choice.scored, kept[2])
                )
            ):
                kept = (label, choice, worst_output(choice.scored))
            bar.advance()
            if len(samples) < MIN_PREDICTION_SAMPLES and not mismatched(kept[1].scored):
                break  # too few samples to choose by: the default kept, the others not built
    label, choice, _ = kept
    # (a variant kept for a gain that rounds away at 0.1 dB: shown at 0.01 dB)
    others = [f"{snr:.1f}" for key, snr in scores.items() if key != label]
    digits = 2 if label != next(iter(scores)) and f"{scores[label]:.1f}" in others else 1
    tried = ", ".join(f"{key}: {snr:.{digits}f} dB" for key, snr in scores.items())
    rule = (
        f"a variant replaces an earlier one only when closer to float on {GAIN_CONFIDENCE:.0%} "
        f"of bootstrap resamples of those samples"
        if len(samples) >= MIN_PREDICTION_SAMPLES
        else f"too few to choose by: at least {MIN_PREDICTION_SAMPLES} are needed"
        + (", the others not tried" if len(scores) < len(variants) else "")
    )
    logits = AT_LOGITS if choice.builder.kinds.logit_axes else ""
    logits += IN_PARTS if split_in_parts(choice.scored) else ""
    measured = f"output SNR{logits} on {len(samples)} selection samples: {tried}; {rule}"
    shown_snrs = {f"{snr:.1f}" for snr in scores.values()}
    if all(snr == -math.inf for snr in scores.values()):  # no float output, or all broken
        measured = f"none of {', '.join(scores)} has an output SNR to compare: the first kept"
    elif len(scores) > 1 and len(shown_snrs) == 1 and label == next(iter(scores)):
        alike = "exact" if math.inf in scores.values() else f"{shown_snrs.pop()} dB output SNR"
        measured = (
            f"{', '.join(scores)} all {alike}{logits} on {len(samples)} selection samples: "
            "the first kept"
        )
    variants[label]()  # the builder back to the kept variant
    choice.note = f"kept {label} ({measured})"
    return choice


def method_label(builder: QuantBuilder) -> str:
    """The activation range method of `builder`, with its percentile."""
    pct = builder.method_options.get("pct")
    return f"{builder.method} {pct:.10g}" if pct is not None else builder.method


def mismatched(drift: Mapping[str, Drift]) -> bool:
    """Whether an output comes out in another shape (or kind) than float's (Drift.mismatch)."""
    return any(d.mismatch for d in drift.values())
