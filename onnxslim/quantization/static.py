"""Static QDQ INT8: calibrate, choose CLE, bias correction and the activation ranges on the
selection samples, make the timed speed/accuracy choices, return nodes to float for a budget;
and the same model computing in float on its int8-stored weights."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable

import onnx_ir as ir

from onnxslim.drift import Budget, closer_on_every_sample, compared_samples, with_parts
from onnxslim.model import io
from onnxslim.model.graph import OutputKinds
from onnxslim.quantization import exact, levers, trades
from onnxslim.quantization.builder import BuildInfo, QuantBuilder, gptq_candidates, gptq_memory_note
from onnxslim.quantization.config import QuantizeConfig
from onnxslim.quantization.equalize import EqualizePass, find_pairs
from onnxslim.quantization.layers import layer_errors
from onnxslim.quantization.ops import RECURRENT_WEIGHTS
from onnxslim.quantization.plan import SHARED_FLOAT, STORED_COMPUTE, QuantOptions
from onnxslim.quantization.recovery import fall_back
from onnxslim.quantization.report import WEIGHT_ONLY_MODE, Outcome, int8_stored
from onnxslim.render.progress import progress_bar

#: each reason, or its start (trades.INT8_NOT_WORTH; how the weights are kept)
CHOICE_REASONS = frozenset(
    {
        trades.INPUT_FLOAT_WEIGHTS,
        trades.INPUT_INT8_WEIGHTS,
        trades.OUTPUT_FLOAT_WEIGHTS,
        trades.OUTPUT_INT8_WEIGHTS,
        trades.NEAR_INPUT_FLOAT_WEIGHTS,
        trades.NEAR_INPUT_INT8_WEIGHTS,
        trades.DEPTHWISE_EXACT,
        trades.INT8_NOT_WORTH,
    }
)

#: why a node of an op with no int8 kernel (ConvTranspose) is listed in float
NO_INT8_KERNEL = f"no int8 kernel: {STORED_COMPUTE}"


def static_int8(
    float_model: ir.Model,
    calib: list,
    selection: list,
    ref_outputs: list,
    test: list,
    config: QuantizeConfig,
    profile,
    kinds: OutputKinds,
) -> tuple[Outcome, Outcome | None]:
    """Static QDQ INT8 of the prepared `float_model`: calibrate, choose CLE, bias correction and
    the activation ranges (levers.py), return the noisiest nodes to float until the budget
    holds on `selection` (where the original gives `ref_outputs`). Mode auto with timed choices:
    also the same model computing in float on its int8-stored weights (`float_compute_twin`).
    `kinds`: the softmax and score outputs of the model before `prepare` (what every choice
    compares at its logits or in its parts, as dynamic INT8's do)."""
    quant_options = QuantOptions(
        activation_type=config.activation_type,
        weight_pair_limit=profile.pair_limit,
        per_channel=config.per_channel,
        quantize_ops=config.static_ops,
        exclude_ops=config.exclude_ops - RECURRENT_WEIGHTS.keys(),  # (dynamic INT8's)
        exclude_nodes=config.exclude_nodes,
        skip_depthwise=profile.skip_depthwise,
        min_macs=config.min_macs,
        weight_range=config.weight_range,
        weight_rounding="nearest" if config.weight_rounding == "auto" else config.weight_rounding,
        gptq_float_compute=not config.random_inputs,
    )
    unknown = sorted(set(quant_options.exclude_nodes) - {n.name for n in float_model.graph})
    notes = (
        [f"--exclude-node (exclude_nodes= in Python): no node named {', '.join(unknown)}"]
        if unknown
        else []
    )
    pairs = len(find_pairs(float_model.graph))
    # (the builder not chosen is not held: an equalized one's Hessians, 1 GiB at most, go with it)
    choice = levers.choose(
        _builders(float_model, calib, quant_options, config, bool(pairs), kinds),
        _choices(config.bias_correction),
        selection,
        ref_outputs,
    )
    notes += [choice.note] if choice.note else []
    if _chooses_ranges(config):
        choice = levers.choose_activation_range(choice, selection, ref_outputs)
        notes.append(choice.note)
    if config.weight_rounding == "auto" and levers.rounds_with_gptq(choice):
        choice = levers.choose_rounding(choice, selection, ref_outputs)
        notes.append(choice.note)
    builder, quantized, info = choice.builder, choice.model, choice.info
    first = _measured(choice, selection, ref_outputs)
    with progress_bar(
        "INT8: speed/accuracy choices: timed runs", None, config.progress and config.times_choices
    ):
        chosen, trade_notes = trades.speed_accuracy_choices(
            builder,
            first,
            selection,
            ref_outputs,
            _asks_int8_compute(config),
            timed=config.times_choices,
        )
    notes += trade_notes
    again = []  # (layers the choices returned to float change what the levers' settings give)
    if chosen is not first and _chooses_ranges(config):
        again.append(levers.choose_activation_range)
    if chosen is not first and config.bias_correction == "auto":
        again.append(levers.choose_bias_correction_again)
    for lever in again:
        chosen, note = _chosen_again(lever, builder, chosen, selection, ref_outputs)
        notes.append(note)
    quantized, info, drift, scored = chosen.model, chosen.info, chosen.drift, chosen.scored
    # (a detector's scores judged apart from its boxes too)
    violations = config.max_drift.check(with_parts(drift, scored)) if config.max_drift else []
    fallback: list[dict] = []
    all_int8 = None
    if violations:
        all_int8 = quantized
        chosen = {
            n: why for n, why in info.kept_float.items() if why.startswith(tuple(CHOICE_REASONS))
        }
        quantized, info, drift, violations, fallback, scored = fall_back(
            builder, quantized, info, selection, ref_outputs, config.max_drift
        )
        scored = None if violations else scored
        # the rebuilt plan gives them generic reasons, unless the budget took them further; how
        # their weights are kept, it says (float where others now read them in float)
        returned = {item["node"] for item in fallback}
        info.kept_float.update(
            {
                n: why.replace(STORED_COMPUTE, SHARED_FLOAT)
                if SHARED_FLOAT in info.kept_float.get(n, "")
                else why
                for n, why in chosen.items()
                if n not in returned
            }
        )
    nearest = builder.gptq_skipped & gptq_candidates(info.plan, builder.options)
    if nearest:
        notes.append(gptq_memory_note(len(nearest), "node(s)", builder.gptq_memory))
    layers = (
        layer_errors(builder, quantized, info, test or selection) if config.debug_layers else []
    )
    stored_only = trades.stored_only_nodes(info)
    outcome = Outcome(
        model=quantized,
        quantized=dict(Counter(info.op_types[n] for n in info.plan.nodes if n not in stored_only)),
        kept_float={**info.kept_float, **dict.fromkeys(stored_only, NO_INT8_KERNEL)},
        fallback=fallback,
        drift=drift,
        violations=violations,
        notes=notes,
        equalized_pairs=pairs if builder.equalized else 0,
        bias_correction=builder.options.bias_correction,
        weight_rounding=builder.options.weight_rounding,
        method=levers.method_label(builder),
        layers=[dataclasses.asdict(layer) for layer in layers],
        all_int8=all_int8 if fallback else None,
        scored=scored,
    )
    timed = config.mode == "auto" and config.times_choices
    if violations or not timed or exact.enabled():  # drift as another CPU computes it
        return outcome, None
    asked = _asks_int8_compute(config)
    if asked:
        outcome.notes.append(
            f"INT8 compute kept, as {asked} asks: not timed against float compute on "
            "int8-stored weights"
        )
        return outcome, None
    float_compute = float_compute_twin(
        builder, outcome, info, (selection, ref_outputs), config.max_drift, config.bias_correction
    )
    return outcome, float_compute


def _asks_int8_compute(config: QuantizeConfig) -> str | None:
    """The option that asks for INT8 compute (mode static, per-layer errors, a speedup), or None:
    then mode auto does not hand back float compute (`int8_or_float`), and no speed/accuracy
    choice leaves every weighted node in float (`trades.speed_accuracy_choices`)."""
    asked = {
        "--int8 static": config.mode == "static",
        "--debug-layers": config.debug_layers,
        "--require-speedup": config.require_speedup,
    }
    return next((option for option, given in asked.items() if given), None)


def _chooses_ranges(config: QuantizeConfig) -> bool:
    """Whether the activation ranges are chosen (`levers.choose_activation_range`): by default,
    not where the user gave a method or a percentile."""
    return config.method == "percentile" and config.percentile is None


def _chosen_again(
    lever: Callable[[levers.Choice, list, list], levers.Choice],
    builder: QuantBuilder,
    chosen: trades.Variant,
    selection: list,
    ref_outputs: list,
) -> tuple[trades.Variant, str]:
    """A `levers` choice (`lever`: the activation ranges, bias correction) made once more on
    `chosen`, the speed/accuracy choices' variant (`builder` set to it), and its note."""
    whole = compared_samples(chosen.scored) <= levers.CHOICE_SAMPLES  # (else scored again)
    first = levers.Choice(
        builder, chosen.model, chosen.info, *((chosen.drift, chosen.scored) if whole else ())
    )
    choice = lever(first, selection, ref_outputs)
    again = chosen if choice.model is chosen.model else _measured(choice, selection, ref_outputs)
    again.info.kept_float.update(chosen.info.kept_float)  # (the choices' reasons)
    return again, f"with the speed/accuracy choices made: {choice.note}"


def _measured(choice: levers.Choice, selection: list, ref_outputs: list) -> trades.Variant:
    """`choice` as a Variant with its drift on all the selection samples (`levers` scores a
    choice on at most CHOICE_SAMPLES of them)."""
    builder = choice.builder
    if choice.scored is None or compared_samples(choice.scored) != len(selection):
        return trades.measured_variant(
            builder.kinds, builder.options, choice.model, choice.info, selection, ref_outputs
        )
    return trades.Variant(builder.options, choice.model, choice.info, choice.drift, choice.scored)


def _holds_as_closer(judged: dict, built: Outcome, budget: Budget) -> bool:
    """Whether a drift (`judged`, over the selection samples) holds `budget` for being closer to
    float on every sample than `built`, which holds it."""
    held = built.judged
    return not budget.check(held) and closer_on_every_sample(judged, held)


def float_compute_twin(
    builder: QuantBuilder,
    built: Outcome,
    info: BuildInfo,
    data: tuple[list, list],
    budget: Budget | None,
    bias_correction: bool | str,
) -> Outcome | None:
    """`built` (whose build `info` describes) with every weighted node it computes in int8
    computing in float on int8-stored weights, as its other stored ones do: a file as small (ORT
    folds the weights back to float at load), with bias correction chosen again on the selection
    samples where `bias_correction` is "auto" (`levers.choose_float_bias_correction`, which leaves
    `builder` set to the one kept); None when no weighted node computes in int8, or when the
    result misses `budget` on the selection samples (`data`: they and the float model's outputs
    on them) while not closer to float than `built`, which holds it, on every sample (a text
    reader's float compute at 38 dB missed a cosine budget's margin for new samples that its
    spread over 9 samples set, and its static INT8 at 28 dB was kept)."""
    int8 = trades.int8_nodes(info)
    if not int8:
        return None
    selection, ref_outputs = data
    stored = {*int8, *trades.stored_only_nodes(info), *info.plan.weight_only}
    build = {
        "exclude": [n.name for n in builder.model.graph if n.name not in stored],
        "weight_only": stored,
    }
    if bias_correction == "auto":
        choice = levers.choose_float_bias_correction(builder, build, selection, ref_outputs)
    else:
        choice = levers.Choice(builder, *builder.build(**build))
    kept = _measured(choice, selection, ref_outputs)
    model, float_info, drift = kept.model, kept.info, kept.drift
    # (the other bias correction is not tried for the budget)
    judged = with_parts(drift, kept.scored)
    if budget and budget.check(judged) and not _holds_as_closer(judged, built, budget):
        return None
    weights = set(float_info.plan.weight_only)  # not a MatMul of two activations
    stored_only = trades.stored_only_nodes(float_info)
    kept_float = {
        **info.kept_float,
        **{
            n: trades.INT8_NOT_WORTH + (f"; {STORED_COMPUTE}" if n in weights else "") for n in int8
        },
        **dict.fromkeys(stored_only, NO_INT8_KERNEL),
    }
    # (with no int8-stored weight, the bias correction chosen corrected nothing)
    chose = bias_correction == "auto" and int8_stored(kept_float)
    return dataclasses.replace(
        built,
        model=model,
        quantized={},
        kept_float=kept_float,
        fallback=[],
        drift=drift,
        scored=kept.scored,
        notes=[f"float compute on int8-stored weights: {choice.note}"] if chose else [],
        layers=[],
        bias_correction=builder.options.bias_correction,
        mode=WEIGHT_ONLY_MODE,  # NO_INT8_MODE where nothing is int8-stored: `_as_made`
        method="none (float compute)",
        # (GPTQ rounds int8-stored weights too, but not on synthesized samples)
        weight_rounding=built.weight_rounding if builder.options.gptq_float_compute else "nearest",
        all_int8=None,
    )


def _choices(setting: bool | str) -> list[bool]:
    return [False, True] if setting == "auto" else [setting]


def _builders(
    float_model: ir.Model,
    calib: list,
    options: QuantOptions,
    config: QuantizeConfig,
    pairs: bool,
    kinds: OutputKinds,
) -> dict[bool, QuantBuilder]:
    """A builder per equalization `levers.choose` tries (False: the model as it is; True: a
    cross-layer-equalized copy, when the model has conv `pairs`); the equalized one derives GPTQ's
    layer input statistics from the other's."""
    percentile = levers.PERCENTILES[0] if config.percentile is None else config.percentile
    method_options = {"pct": percentile} if config.method == "percentile" else {}
    builders: dict[bool, QuantBuilder] = {}
    for eq in _choices(config.equalize if pairs else False):
        model = float_model
        if eq:
            model, equalize = io.from_proto(io.to_proto(float_model)), EqualizePass()
            equalize(model)
        builders[eq] = QuantBuilder(
            model,
            calib,
            options,
            config.method,
            method_options,
            config.progress,
            equalized=eq,
            kinds=kinds,
        )
        builders[eq].may_correct_bias = config.bias_correction == "auto"
        if eq and False in builders:
            builders[eq].hessian_source = (builders[False], equalize.input_scales)
            # (a layer CLE leaves alone: the same weight and Hessian, rounded once for both)
            builders[eq].rounded = builders[False].rounded
    return builders
