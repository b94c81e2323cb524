"""`quantize`: the steps of INT8 quantization. The samples split (splits.py), the float model
optimized losslessly, INT8 made and chosen on the selection samples (static.py, dynamic.py,
modes.py), written, measured on the test samples, timed, and reported."""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections import Counter
from collections.abc import Mapping

import onnx
import onnx_ir as ir

from onnxslim import fp16
from onnxslim.bench import Latency
from onnxslim.cpu import available_memory
from onnxslim.data import (
    check_preprocess,
    defaulted_inputs,
    input_specs,
    is_random,
    load_samples,
    sample_shapes,
)
from onnxslim.drift import Budget, compare_outputs, scored_drift, with_parts
from onnxslim.errors import CheckFailedError, OnnxSlimError, ReportWarning
from onnxslim.model import external, io
from onnxslim.model.graph import OutputKinds, node_count, output_kinds
from onnxslim.passes.fold import restore_computations
from onnxslim.passes.pipeline import drop_contradicted_shapes
from onnxslim.passes.prune import DeduplicateInitializers, FreezeInitializerInputs
from onnxslim.quantization import dynamic, exact, integer_outputs, large, modes, trades
from onnxslim.quantization.builder import run_samples
from onnxslim.quantization.caveats import (
    QUALITY_BAR,
    bigger_file_warning,
    computes_int8,
    disturbed_timing_note,
    drift_warning,
    fallback_cost_note,
    integer_kernels,
    lossless_warning,
    memory_warning,
    missed_on_test_warning,
    nan_samples_warning,
    not_faster_note,
    nothing_int8_warning,
    one_size_note,
    ort_optimized_warning,
    parts_notes,
    picks_note,
    quantized_before_note,
    random_ops_warning,
    recurrent_note,
    reordered_outputs,
    reordered_outputs_note,
    rewrite_warning,
    saturated_outputs_warning,
    silent_outputs_warning,
)
from onnxslim.quantization.compact import CompactPass
from onnxslim.quantization.config import QuantizeConfig
from onnxslim.quantization.ops import RECURRENT_WEIGHTS
from onnxslim.quantization.plan import INT8_STORED, constant_weights, prepare, weighted_nodes
from onnxslim.quantization.report import (
    NO_INT8_MODE,
    WEIGHT_ONLY_MODE,
    Outcome,
    QuantizeReport,
    int8_stored,
)
from onnxslim.quantization.splits import (
    MIN_BUDGET_SAMPLES,
    MIN_PREDICTION_SAMPLES,
    few_test_samples_note,
    protocol_notes,
    refuse_unbelievable_budget,
    split_samples,
)
from onnxslim.quantization.static import static_int8
from onnxslim.quantization.targets import Target, resolve_target, saturates_here
from onnxslim.render.format import input_shapes
from onnxslim.render.progress import progress_bar
from onnxslim.runtime import Session, ort_op_counts

#: The models the final timing runs, as its notes name them.
TIMED_NAMES = {
    "float": "float",
    "int8": "the INT8 model",
    "all int8": "the INT8 model before nodes went back to float",
    "lossless": "onnxslim's lossless float model",
}


@dataclasses.dataclass
class QuantizeResult:
    """The quantized model and what quantization did and measured."""

    model: ir.Model
    report: QuantizeReport


def quantize(
    model: str | os.PathLike | onnx.ModelProto | ir.Model,
    calibration,
    config: QuantizeConfig | None = None,
    **options,
) -> QuantizeResult:
    """Quantize `model` to INT8 (static QDQ, or dynamic MatMul: `config.mode`) with `calibration`
    samples (an iterable of `{input: array}`, a CalibrationDataReader, or what the CLI's
    --calibration reads: a folder or .npz path, "random:N"), split into calibration,
    selection and test samples; keyword `options` override fields of `config` (`mode`, `method`,
    `max_drift`, `target`, `preprocess`, ...: see `help(onnxslim.QuantizeConfig)`). For a target
    whose weights this CPU's kernels would saturate, every check computes the model's own math
    (exact.py). A model over 2 GB gets dynamic INT8, made on files (large.py). The report's
    warnings (a result drifting far, slower, computing nothing in INT8) are raised as
    `onnxslim.errors.ReportWarning`s too."""
    fields = {field.name for field in dataclasses.fields(QuantizeConfig)}
    unknown = sorted(set(options) - fields)
    if unknown:
        raise OnnxSlimError(
            f"quantize() got unknown option(s) {', '.join(unknown)}; "
            f"QuantizeConfig has {', '.join(sorted(fields))}"
        )
    config = dataclasses.replace(config or QuantizeConfig(), **options)
    profile, target_reason = resolve_target(config.target)
    with exact.exact_math(saturates_here(profile)):
        result = _quantize(model, calibration, config, profile, target_reason)
    for warning in result.report.split_notes()[0]:  # (an export script may not print the report)
        warnings.warn(f"onnxslim: {warning}", ReportWarning, stacklevel=2)
    return result


@dataclasses.dataclass
class _Run:
    """What the steps of `_quantize` share: `config` as the choices read it (random inputs
    known; a budget predicted for new samples), `budget` as the user wrote it (what the test
    samples check), the float model as given (`given`: its size and latency) and as compared
    (`reference`: with the `extra` float outputs of integer ones), the float model INT8 starts
    from (`float_model`, optimized losslessly; `unnamed`: its nodes without a name, which INT8
    names and which lose it again where the lossless model is handed back; `before`: its
    integer kernels), the three splits (`selection`: the calibration samples where none are
    held out), the original's outputs on the selection samples, and the report's notes."""

    config: QuantizeConfig
    budget: Budget | None
    given: bytes
    reference: bytes
    extra: list[str]
    float_model: ir.Model
    unnamed: list[ir.Node]
    before: Counter
    calib: list
    selection: list
    test: list
    ref_outputs: list
    notes: list[str]


def _quantize(
    model, calibration, config: QuantizeConfig, profile: Target, target_reason: str
) -> QuantizeResult:
    """`quantize` for the resolved target `profile` (within exact math where it applies): the
    float model and the samples made ready (`_prepare`), INT8 chosen on them (`_choose`) and
    made ready to write (`_finish`), then measured on the test samples and reported (`_report`),
    and timed (`_time_models`)."""
    check_preprocess(calibration, config.preprocess, "calibration")  # before any work
    original = io.to_ir(model)
    reference = None if large.is_large(original) else io.serialized(original)
    if reference is None:
        samples = load_samples(  # random:N: plain random
            calibration, input_specs(original), preprocess=config.preprocess, what="calibration"
        )
        del original
        return _on_files(model, samples, config, profile, target_reason)
    nodes_before, original_meta = node_count(original.graph), original.meta
    del original  # the weights live on in `reference`: a model loaded here is freed now
    short = memory_warning(len(reference), available_memory())
    if short:
        warnings.warn(f"onnxslim: {short}", stacklevel=3)
    run = _prepare(reference, calibration, config, profile)
    outcome, static_model, tried, lstms_tried = _choose(run, profile)
    outcome = _finish(run, outcome, static_model, tried, lstms_tried)
    io.keep_aside_as(outcome.model, original_meta)  # map types onnx-ir cannot hold, for the file
    report = _report(run, outcome, profile, target_reason, nodes_before)
    if run.config.measure_latency:
        _time_models(run, outcome, report)
    return QuantizeResult(outcome.model, report)


def _prepare(reference: bytes, calibration, config: QuantizeConfig, profile: Target) -> _Run:
    """The samples loaded and split, the budget checked against them, integer outputs given
    float sources to measure, the float model optimized losslessly, the protocol's notes, and
    the original's outputs on the selection samples."""
    budget = config.max_drift
    if budget:  # as the user wrote it: the test split reads the worst sample seen
        budget = dataclasses.replace(budget, for_new_samples=False)
    session = Session(reference, what="the model (INT8 calibration runs it)")
    proto = onnx.ModelProto.FromString(reference)
    # random:N at dims the model runs with (a reflect Pad needs a long enough input, ...)
    run = session.run if is_random(calibration) else None
    samples = load_samples(
        calibration,
        input_specs(proto),
        preprocess=config.preprocess,
        model=proto,
        run=run,
        what="calibration",
    )
    del session, run
    random = is_random(calibration) or config.random_inputs
    config = dataclasses.replace(config, random_inputs=random)
    fewest = MIN_BUDGET_SAMPLES if budget else MIN_PREDICTION_SAMPLES
    calib, selection, test = split_samples(
        samples, config.eval_split, config.test_split, config.held_out, fewest
    )
    refuse_unbelievable_budget(budget, selection or calib, len(samples))
    sources = integer_outputs.float_sources(proto)
    integer_outputs.refuse_budget_without_float_outputs(budget, proto, len(sources))
    extra = integer_outputs.add_outputs(proto, sources.values())  # measured, not written
    given = reference  # the float model as given: its size and latency
    if extra:  # the float model, and every model made from it, gives them as outputs too
        reference = proto.SerializeToString()
    del proto
    if budget:  # the choices made on the selection samples must hold on new ones
        config = dataclasses.replace(
            config, max_drift=dataclasses.replace(budget, for_new_samples=True)
        )

    float_model, stale = _float_model(reference)
    crashed = None
    if config.optimize:
        from onnxslim import optimizer

        options = config.optimize_options or {}
        try:
            float_model = optimizer.optimize(float_model, check=False, **options)
        except optimizer.CrashingResult as err:  # made again (the model changed in place)
            if not err.rewrites:
                raise
            skip = (*optimizer.names(options.get("skip", ())), *err.rewrites)
            float_model = _float_model(reference)[0]
            float_model = optimizer.optimize(float_model, check=False, **{**options, "skip": skip})
            crashed = err.made_again
    unnamed = [node for node in float_model.graph if not node.name]  # (INT8 names them all)
    notes = protocol_notes(calib, selection, test, budget, config.held_out, config.chooses)
    notes += [crashed] if crashed else []
    if stale:
        notes.append(
            f"the file's value_info gives {stale} value(s) shapes the model does not compute "
            "(stale annotations): INT8 starts without them"
        )
    notes += nan_samples_warning(samples)
    notes += _frozen_inputs_note(float_model)
    notes += random_ops_warning(float_model)
    notes += ort_optimized_warning(float_model)
    if is_random(calibration):  # (the command line's random:N warns itself, with its dims)
        notes.append(
            "warning: calibrating on random data: the drift figures say little about real inputs"
        )
    notes += [integer_outputs.source_note(sources)] if sources else []
    if exact.enabled():
        notes.append(
            f"drift computed as the model's own math (ORT's graph optimizations off, integer "
            f"MatMuls exact), as the {profile.name} target's kernels compute it up to "
            f"requantization rounding: ORT's u8s8 kernels on this CPU may saturate its full 8-bit "
            f"weights, so `onnxslim bench` here can show more drift; ORT's load-time rewrites "
            f"were not checked"
        )
    inner = node_count(float_model.graph) - len(float_model.graph)
    if inner:
        notes.append(
            f"{inner} node(s) inside If/Loop/Scan bodies stay float: INT8 covers the main graph"
        )
    selection = selection or calib
    ref_outputs = run_samples(reference, selection, int8=False)  # what every choice compares with
    return _Run(
        config=config,
        budget=budget,
        given=given,
        reference=reference,
        extra=extra,
        float_model=float_model,
        unnamed=unnamed,
        before=integer_kernels(float_model),
        calib=calib,
        selection=selection,
        test=test,
        ref_outputs=ref_outputs,
        notes=notes,
    )


def _frozen_inputs_note(model: ir.Model) -> list[str]:
    """Initializers `model` still lists as graph inputs (overridable weights, kept by an option
    or an unoptimized model) made constants, as INT8 stores weights, and a note saying so:
    quantized beside their inputs, the float weights stayed in the file and overriding them
    changed nothing."""
    overridable = sum(value.name in model.graph.initializers for value in model.graph.inputs)
    if not overridable:
        return []
    FreezeInitializerInputs()(model)
    return [
        f"{overridable} initializer(s) listed as graph inputs made constants: INT8 stores "
        "weights as constants, which no input overrides"
    ]


def _float32(model: ir.Model, notes: list[str]) -> ir.Model:
    """`model`, or where a weighted node reads float16 weights (the model computes in float16)
    a float32 copy (`fp16.to_float32`, exact) for INT8 to start from, with a note; `model`, the
    lossless model, stays what a result without INT8 gives back. Not where the copy's weights
    could pass protobuf's 2 GB (a 1.2 GB float16 model: INT8 leaves it float, and says why)."""
    ops = {node.op_type for node in model.graph}
    if 2 * external.weight_bytes(model) >= io.PROTOBUF_LIMIT or not any(
        why and why.startswith("weight is float16")
        for why in weighted_nodes(model, ops, ()).values()
    ):
        return model
    copy = io.from_proto(io.to_proto(model))
    if not fp16.to_float32(copy):
        return model
    notes.append(
        "the model computes in float16: INT8 starts from it in float32 (its float16 weights "
        "and tensors made float32, exactly; its float16 inputs and outputs stay float16)"
    )
    return copy


def _choose(run: _Run, profile: Target) -> tuple[Outcome, ir.Model, Outcome | None, bool]:
    """The INT8 model `run.config` asks for, its automatic choices made on the selection
    samples: static, dynamic (or, mode auto, whichever `static_or_dynamic` keeps), float
    compute where INT8 compute does not pay for its drift, LSTMs in dynamic INT8 beside static
    INT8. Returns the outcome, the model static INT8 was made of (its names), the dynamic INT8
    outcome mode auto tried (if any), and whether LSTMs were tried in dynamic INT8."""
    config, selection = run.config, run.selection
    float_model = _float32(run.float_model, run.notes)
    dynamic_options = dynamic.DynamicOptions(
        config.dynamic_excluded(float_model),
        profile.pair_limit,
        config.smooth,
        config.progress,
        config.exclude_ops,
        # GPTQ fitted to random:N samples moves weights off float's on real ones
        gptq=config.weight_rounding != "nearest" and not config.random_inputs,
    )
    folded: dict[str, tuple] = {}  # weights folded for INT8 (FoldProducers.computations)
    # mode auto, timed: the static model computing in float (modes.int8_or_float)
    float_compute = None
    static_ops = config.static_ops - config.exclude_ops
    static_model = float_model
    if config.mode != "static":
        dynamic_model = constant_weights(
            float_model, dynamic.QUANTIZED_OPS, config.exclude_nodes, folded
        )
    dynamic_ops = (
        set(dynamic.WEIGHTED_OPS) - config.exclude_ops if config.mode != "static" else set()
    )
    weighted = weighted_nodes(float_model, static_ops | dynamic_ops, config.exclude_nodes)
    candidates = [name for name, why in weighted.items() if why is None]
    op_types = {node.name: node.op_type for node in float_model.graph}
    # nothing to calibrate or try (quantized already, float16), or only LSTMs (dynamic INT8's,
    # tried below): the lossless model
    if not candidates or (
        config.mode == "auto" and all(op_types[n] in RECURRENT_WEIGHTS for n in candidates)
    ):
        mode = "dynamic" if config.mode == "dynamic" else "static"
        unquantized = {name: why for name, why in weighted.items() if why is not None}
        outcome = modes.lossless_outcome(float_model, selection, run.ref_outputs, mode)
        outcome.kept_float = unquantized
    elif config.mode == "dynamic":
        outcome = dynamic.quantize_model(
            dynamic_model, run.calib, selection, run.ref_outputs, config.max_drift, dynamic_options
        )
    else:
        static_model = constant_weights(float_model, static_ops, config.exclude_nodes, folded)
        outcome, float_compute = static_int8(
            prepare(static_model, selection),
            run.calib,
            selection,
            run.ref_outputs,
            run.test,
            config,
            profile,
            output_kinds(static_model),
        )
    data = (run.calib, selection, run.ref_outputs)
    tried = None  # mode auto: the dynamic INT8 outcome tried, if any
    random = config.random_inputs
    with progress_bar(  # the timings' runs; a slow model's take minutes
        "INT8: static, dynamic or float compute: timed runs",
        None,
        config.progress and config.times_choices,
    ):
        static, untimed = outcome, False
        if config.mode == "auto" and candidates:
            outcome, tried, untimed = modes.static_or_dynamic(
                outcome,
                dynamic_model,
                data,
                config.max_drift,
                dynamic_options,
                config.times_choices,
            )
        if outcome.violations:
            raise CheckFailedError(
                f"INT8 drift over budget {run.budget} even with every sensitive node in float: "
                f"{outcome.violations[0]}"
            )
        bar = config.max_drift or QUALITY_BAR
        dynamic_timed = False  # dynamic INT8 timed against float compute
        if float_compute is not None and outcome.mode == "static":
            outcome = modes.int8_or_float(
                outcome, float_compute, selection[0], random_inputs=random
            )
        elif (
            float_compute is not None
            and outcome.mode == "dynamic"
            and not bar.check(float_compute.judged)
        ):  # dynamic INT8 replaced static INT8 (closer to float, or faster): worth it still?
            built = [modes.INT8_BUILT_WITH, *static.notes] if static.notes else []
            float_compute.notes += [*built, outcome.notes[-1]]  # (why dynamic replaced static)
            if outcome.quantized:
                outcome = modes.int8_or_float(
                    outcome, float_compute, selection[0], dynamic_int8=True, random_inputs=random
                )
            else:  # its MatMuls all in float (the lossless model): float compute, a small file
                float_compute.notes.append(modes.FLOAT_COMPUTE_MEETS.format(bar=bar))
                outcome = float_compute
            dynamic_timed = True
        elif untimed and config.times_choices and outcome.quantized:
            # dynamic INT8 replaced static INT8 untimed, and no float compute meets the bar to
            # time it against: the lossless model (its notes: why static INT8 was replaced)
            lossless = modes.lossless_outcome(float_model, selection, run.ref_outputs)
            lossless.notes = outcome.notes[-1:]
            outcome = modes.dynamic_for_speed(lossless, outcome, selection[0], bar, run.float_model)
            dynamic_timed = True
        lstms_tried = False  # (their own dynamic INT8 beside static's)
        if config.mode == "auto" and config.times_choices and outcome.method != "none":
            outcome, lstms_tried = modes.dynamic_lstms(
                outcome, data, config.max_drift, dynamic_options, output_kinds(float_model)
            )
        if (
            config.mode == "auto"
            and candidates
            and config.times_choices
            and outcome.mode != "dynamic"  # (its MatMuls all back in float for a budget)
            and not dynamic_timed
            and not computes_int8(outcome, run.before)
            # (its computed weights folded)
            and dynamic.covers_most_weights(dynamic_model, dynamic_options.exclude_nodes)
        ):  # float compute is as fast as static INT8; dynamic INT8's MatMuls may be faster
            tried = tried or dynamic.quantize_model(dynamic_model, *data, bar, dynamic_options)
            if not tried.violations:
                outcome = modes.dynamic_for_speed(
                    outcome, tried, selection[0], bar, run.float_model
                )
    outcome.model = restore_computations(outcome.model, folded)  # those left float
    return outcome, static_model, tried, lstms_tried


def _finish(
    run: _Run, outcome: Outcome, static_model: ir.Model, tried: Outcome | None, lstms_tried: bool
) -> Outcome:
    """`_choose`'s outcome as written: shared weights deduplicated, static INT8's names made
    short, its notes (and what it says of what stayed float) added to `run.notes`; the lossless
    model itself where nothing is INT8."""
    float_model, before = run.float_model, run.before
    DeduplicateInitializers()(outcome.model)  # a weight several nodes share, quantized for each
    if outcome.mode != "dynamic":
        CompactPass(_names(static_model))(outcome.model)
    made_as = _as_made(outcome, before, run.config.random_inputs)
    if made_as.mode == WEIGHT_ONLY_MODE and not _smaller(made_as.model, float_model):
        outcome = _lossless_instead(outcome)  # (before the notes and warnings that describe it)
    excluded = run.config.dynamic_excluded(float_model)  # (by the user: not for INT8)
    dynamic_untried = (  # (its hint names MatMuls; the recurrent note, LSTMs)
        run.config.mode == "auto"
        and outcome.mode == "static"
        and tried is None
        and dynamic.dynamic_weight_share(float_model, op_types=("MatMul",), excluded=excluded) > 0
    )
    made = outcome.notes  # the choices of an INT8 model a later choice turned to float compute
    # float compute on static INT8's weights (not the lossless model: nothing quantized)
    stored = outcome.method != "none" and int8_stored(outcome.kept_float)
    if outcome.mode == "static" and stored and made and not computes_int8(outcome, before):
        made = made if modes.INT8_BUILT_WITH in made else [modes.INT8_BUILT_WITH, *made]
    run.notes += made + nothing_int8_warning(outcome, before, dynamic_untried, run.budget)
    run.notes += recurrent_note(
        float_model,
        outcome.model,
        outcome.mode == "dynamic",
        tried is not None or lstms_tried,
        excluded,
    )
    outcome = _as_made(outcome, before, run.config.random_inputs)
    if outcome.mode == NO_INT8_MODE:  # the lossless model as made (at its own opset)
        outcome.model = float_model
        for node in run.unnamed:  # names no file needs: a bigger file than the lossless one
            node.name = ""
    elif _half_weights(float_model):  # INT8 started from float32 (`_float32`)
        fp16.half_stored(outcome.model)
    run.notes += quantized_before_note(outcome, before)
    return outcome


def _report(
    run: _Run, outcome: Outcome, profile: Target, target_reason: str, nodes_before: int
) -> QuantizeReport:
    """The report of `outcome`: its drift on the test samples (on the selection samples where
    there are none) and the warnings that drift calls for, and what was made and how."""
    config, budget, float_model, notes = run.config, run.budget, run.float_model, run.notes
    quantized, drift = outcome.model, outcome.drift
    selection, test = run.selection, run.test
    selection_judged = outcome.judged  # (a detector's scores apart too)
    judged, test_missed = selection_judged, []
    if test:  # the figures reported: on samples no decision saw
        drift, judged, test_notes = _test_drift(
            run.reference, quantized, test, output_kinds(float_model)
        )
        notes += test_notes
        test_missed = budget.check(judged) if budget else []
        notes += missed_on_test_warning(budget, len(selection), len(test), test_missed)
    for model in (quantized, outcome.all_int8, float_model):
        integer_outputs.drop_outputs(model, run.extra)
    split = "test" if test else "selection"
    held_out = selection is not run.calib  # else no selection split: the calibration samples
    selection_drift = selection_judged if held_out else None
    reordered = reordered_outputs(float_model, drift)
    notes += drift_warning(
        judged, budget, split, len(selection), selection_drift=selection_drift, reordered=reordered
    )
    notes += silent_outputs_warning(drift, split) + saturated_outputs_warning(drift, split)
    # random data: the picked dims have their own warning; no INT8: no drift
    if not config.random_inputs and outcome.mode != NO_INT8_MODE:
        notes += one_size_note(input_specs(float_model), test or selection, split)
    if outcome.mode != NO_INT8_MODE:  # (the lossless model: no drift to overstate)
        notes += reordered_outputs_note(reordered)
        notes += picks_note(float_model, len(test or selection), split)
    dynamic_used = outcome.mode == "dynamic"
    float_used = outcome.mode in (WEIGHT_ONLY_MODE, NO_INT8_MODE)
    activations = "uint8 (dynamic)" if dynamic_used else config.activation_type
    report = QuantizeReport(
        mode=outcome.mode,
        target=profile.name,
        target_reason=target_reason,
        method=outcome.method,
        activation_type="float" if float_used else activations,
        weight_pair_limit=None if float_used else profile.pair_limit,
        per_channel=config.per_channel,
        calibration_samples=len(run.calib),
        selection_samples=len(selection) if held_out else 0,
        test_samples=len(test),
        nodes_before=nodes_before,
        nodes_after=node_count(quantized.graph),
        size_before=len(run.given),
        size_after=io.to_proto(quantized).ByteSize(),
        quantized=outcome.quantized,
        kept_float=outcome.kept_float,
        fallback=outcome.fallback,
        drift=drift,
        budget=str(budget) if budget else None,
        violations=outcome.violations,
        test_violations=test_missed,
        notes=notes,
        equalized_pairs=outcome.equalized_pairs,
        bias_correction=outcome.bias_correction,
        smoothed_inputs=outcome.smoothed_inputs,
        weight_range="minmax" if dynamic_used else config.weight_range,  # quantize_dynamic's
        weight_rounding=outcome.weight_rounding,
        layers=outcome.layers,
        random_inputs=config.random_inputs,
    )
    if not report.unquantized:  # the lossless model: its own warning says INT8 added nothing
        report.notes += bigger_file_warning(report.size_before, report.size_after)
    return report


def _time_models(run: _Run, outcome: Outcome, report: QuantizeReport) -> None:
    """The latency of `outcome`'s model (and of its every-node-INT8 form, and of the lossless
    float model) against the float model as given, side by side, in `report` with what it
    calls for."""
    config, float_model = run.config, run.float_model
    float_used = outcome.mode in (WEIGHT_ONLY_MODE, NO_INT8_MODE)
    float_is_result = outcome.mode == NO_INT8_MODE
    timed_on = (run.test or run.selection)[0]
    with progress_bar("INT8: timing the models: runs", None, config.progress):
        timed = _latency(
            run.given,
            {
                "int8": outcome.model,
                "all int8": outcome.all_int8,
                # (not where it is the result)
                "lossless": float_model if config.optimize and not float_is_result else None,
            },
            timed_on,
        )
    # dynamic dims: other sizes time otherwise (where anything computes in INT8)
    if defaulted_inputs(input_specs(float_model)) and computes_int8(outcome, run.before):
        report.notes.append(
            f"latency timed on one sample ({input_shapes(sample_shapes([timed_on]))}): "
            "the model takes other sizes, where INT8 may save another share of the time"
        )
    report.notes += disturbed_timing_note(timed, TIMED_NAMES)
    report.latency_float_ms = timed["float"].median
    report.latency_int8_ms = timed["int8"].median
    report.latency_verdict = timed["int8"].versus(timed["float"])[1]
    if "all int8" in timed:
        report.notes.append(
            fallback_cost_note(
                len(outcome.fallback), timed["int8"], timed["all int8"], report.budget
            )
        )
    against_lossless, slower = [], False  # (than the lossless model)
    if "lossless" in timed:
        report.latency_lossless_ms = timed["lossless"].median
        verdict = timed["int8"].versus(timed["lossless"])[1]
        if verdict != "same" and float_used and _same_kernels(outcome.model, float_model):
            verdict = "same"  # a session's own 1-2% (PP-OCR cls, weight-only: 1.02x)
        report.latency_lossless_verdict = verdict
        slower = verdict == "slower"
        # float compute runs as fast (modes.int8_or_float said so); nothing added: the same model
        if (slower or not float_used) and not report.unquantized:
            against_lossless = lossless_warning(timed["int8"], timed["lossless"])
    note = not_faster_note(
        timed["int8"],
        timed["float"],
        report.speedup,
        config.require_speedup,
        weight_only=report.mode == WEIGHT_ONLY_MODE,
    )
    # the lossless model: its warning says so; INT8 slower than the lossless model too: one
    # warning, against the model to use instead (the latency row has float's)
    if not report.unquantized:
        report.notes += against_lossless if slower else against_lossless + note


def _same_kernels(model: ir.Model, other: ir.Model) -> bool:
    """Whether ORT runs the same ops for both models (`ort_op_counts`; False where it cannot tell:
    the timing then stands)."""
    try:
        return ort_op_counts(model) == ort_op_counts(other)
    except Exception:  # noqa: BLE001 ORT, onnx and the file system raise assorted types
        return False


def _on_files(
    model, samples: list, config: QuantizeConfig, profile: Target, target_reason: str
) -> QuantizeResult:
    """`large.quantize_large` of a model one protobuf cannot hold, on `samples`: no calibration,
    so a budget's selection samples and the rest test."""
    budget = config.max_drift
    share = config.eval_split if budget else 0.0
    test, selection, _ = split_samples(samples, share, 0.0, config.held_out)
    refuse_unbelievable_budget(budget, selection or test, len(samples))
    held = f"{len(selection)} selection (the drift budget), " if budget else ""
    notes = [
        f"samples: {held}{len(test)} test (the drift reported: no decision saw them)",
        *few_test_samples_note(len(test), "more samples"),
    ]
    quantized, report = large.quantize_large(
        model, (selection, test), notes, config, profile, target_reason
    )
    return QuantizeResult(quantized, report)


def _test_drift(
    reference: bytes, quantized: ir.Model, test: list, kinds: OutputKinds
) -> tuple[dict, dict, list[str]]:
    """Drift on the test samples as ORT runs the model, that drift `with_parts` (the parts of
    each output the choices compare in parts; `kinds`: the softmax and score outputs), and
    notes: those parts' SNRs (`caveats.parts_notes`), and a warning when ORT's graph
    optimizations change the quantized model's results (what ORT runs is not what was written).
    With exact math (exact.py) the drift is the model's own math and the rewrites go unchecked."""
    ref = run_samples(reference, test, int8=False)
    outputs = run_samples(quantized, test)
    drift = compare_outputs(ref, outputs)
    scored = scored_drift(ref, outputs, kinds, drift)
    notes = parts_notes(scored)
    if not exact.enabled():
        as_written = compare_outputs(ref, run_samples(quantized, test, opt_level="disable"))
        warning = rewrite_warning(drift, as_written)
        notes += [warning] if warning else []
    return drift, with_parts(drift, scored), notes


def _names(model: ir.Model) -> set[str]:
    """Names of the nodes and node outputs of ``model``'s main graph."""
    return {n.name for n in model.graph} | {v.name for n in model.graph for v in n.outputs}


def _latency(
    reference: bytes, models: Mapping[str, ir.Model | None], sample, runs: int = 30
) -> dict[str, Latency]:
    """Single-thread latency of the float model ("float") and of each of `models` given (None:
    skipped), by label, runs interleaved after warm-up, as many as the timed choices make
    (`trades.side_by_side`: more for a fast model, fewer for a slow one; 30 runs of PP-OCR cls,
    0.6 ms each, called its weight-only INT8 slower than the lossless model ORT runs alike)."""
    timed = {"float": reference, **{label: m for label, m in models.items() if m is not None}}
    return dict(zip(timed, trades.side_by_side(timed, sample, runs)))


def _float_model(reference: bytes) -> tuple[ir.Model, int]:
    """The float model of the file bytes `reference`, without the value_info entries its own
    inference contradicts (ORT ran the float model; INT8's QDQ nodes meet them), and how many."""
    proto = onnx.ModelProto.FromString(reference)
    stale = drop_contradicted_shapes(proto)
    return io.from_proto(proto), stale


def _lossless_instead(outcome: Outcome) -> Outcome:
    """`outcome`, weight-only INT8 whose file is no smaller than the lossless model's, as the
    lossless model: its nodes' reasons speak of float weights, a note says why."""
    note = (
        f"weight-only INT8 not kept: its int8-stored weights ({int8_stored(outcome.kept_float)} "
        "node(s)) make the file no smaller than the lossless model's, which is the result"
    )
    kept = {
        name: why.replace(INT8_STORED, "float weights") for name, why in outcome.kept_float.items()
    }
    return dataclasses.replace(
        outcome,
        mode=NO_INT8_MODE,
        method="none",
        weight_rounding="nearest",
        kept_float=kept,
        notes=[*outcome.notes, note],
    )


def _half_weights(model: ir.Model) -> bool:
    """Whether `model`'s main graph stores a weight in float16."""
    return any(v.dtype == ir.DataType.FLOAT16 for v in model.graph.initializers.values())


def _smaller(model: ir.Model, float_model: ir.Model) -> bool:
    """Whether `model`'s file is smaller than the lossless `float_model`'s (both as written)."""
    return io.to_proto(model).ByteSize() < io.to_proto(float_model).ByteSize()


def _as_made(outcome: Outcome, before: Counter, random_inputs: bool) -> Outcome:
    """`outcome` with the mode of what it holds: dynamic where only LSTMs compute in INT8
    (dynamic INT8's, beside weights computing in float); where no weighted node computes in INT8
    and none is listed as quantized, weight-only where weights are int8-stored (rounded to
    nearest on `random_inputs`: `QuantOptions.gptq_float_compute`), else NO_INT8_MODE (the
    lossless model); its mode otherwise."""
    if outcome.quantized.keys() <= RECURRENT_WEIGHTS.keys() and outcome.quantized:
        # (beside weights computing in float: `dynamic_lstms`)
        return dataclasses.replace(outcome, mode="dynamic", method="run time")
    if outcome.quantized or outcome.mode == NO_INT8_MODE or computes_int8(outcome, before):
        return outcome
    stored = int8_stored(outcome.kept_float)
    mode = WEIGHT_ONLY_MODE if stored else NO_INT8_MODE
    if mode == outcome.mode:
        return outcome
    method = "none (float compute)" if stored else "none"
    rounding = outcome.weight_rounding if stored and not random_inputs else "nearest"
    return dataclasses.replace(outcome, mode=mode, method=method, weight_rounding=rounding)
