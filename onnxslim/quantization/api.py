"""Static INT8 quantization: calibrate on sample inputs, insert QDQ, check drift on held-out
samples, return the most sensitive nodes to float until a drift budget holds, and report speed
and drift."""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence

import onnx
import onnx_ir as ir

from onnxslim.bench import Latency, latencies
from onnxslim.cpu import available_memory
from onnxslim.data import (
    defaulted_inputs,
    input_specs,
    is_random,
    load_samples,
    parse_preprocess,
    sample_shapes,
)
from onnxslim.drift import (
    GAIN_CONFIDENCE,
    MIN_PREDICTION_SAMPLES,
    NEW_SAMPLE_COVERAGE,
    PER_SAMPLE,
    Budget,
    Drift,
    compare_outputs,
    compared_samples,
    criterion_text,
    parse_max_drift,
    scored_drift,
)
from onnxslim.errors import CheckFailedError, OnnxSlimError
from onnxslim.model import io
from onnxslim.model.graph import OutputKinds, node_count, output_kinds
from onnxslim.passes.fold import FoldProducers, restore_computations
from onnxslim.passes.prune import DeduplicateInitializers
from onnxslim.quantization import dynamic, exact, integer_outputs, large, levers, trades
from onnxslim.quantization.builder import (
    GPTQ_MEMORY,
    BuildInfo,
    QuantBuilder,
    gptq_candidates,
    gptq_memory_note,
    run_samples,
)
from onnxslim.quantization.calibration import RANGE_METHODS
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
    not_faster_note,
    nothing_int8_warning,
    one_size_note,
    parts_notes,
    recurrent_note,
    reordered_outputs_note,
    rewrite_warning,
    saturated_outputs_warning,
    says_nothing,
    silent_outputs_warning,
)
from onnxslim.quantization.compact import CompactPass
from onnxslim.quantization.equalize import EqualizePass, find_pairs
from onnxslim.quantization.layers import layer_errors
from onnxslim.quantization.ops import (
    DEFAULT_OPS,
    RECURRENT_WEIGHTS,
    RULES,
    WEIGHT_ONLY,
    WEIGHTED,
)
from onnxslim.quantization.plan import (
    ACTIVATION_TYPES,
    QUANTIZED_ALREADY,
    STORED_COMPUTE,
    WEIGHT_ROUNDINGS,
    QuantOptions,
    computed_weights,
    not_float32,
    prepare,
    quantized_already,
    weight_uses,
)
from onnxslim.quantization.recovery import fall_back
from onnxslim.quantization.report import (
    NO_INT8_MODE,
    WEIGHT_ONLY_MODE,
    Outcome,
    QuantizeReport,
    int8_stored,
)
from onnxslim.quantization.targets import CHOICES, Target, resolve_target, saturates_here
from onnxslim.render.format import input_shapes
from onnxslim.render.progress import progress
from onnxslim.runtime import Session

DEFAULT_METHOD = "percentile"
ROUNDING_CHOICES = (*WEIGHT_ROUNDINGS, "auto")
MIN_EVAL_SAMPLES = 2
DEFAULT_EVAL_SPLIT = 0.2  # `eval_split` None: this share, raised to MIN_PREDICTION_SAMPLES samples
MIN_CALIBRATION_SAMPLES = 16  # ... while this many or more are left to calibrate on
MIN_BUDGET_SAMPLES = 16  # fewer selection samples make a drift budget overfit them
MIN_TEST_SAMPLES = 32  # fewer test samples rarely hold the rare input INT8 gets wrong
TOP1_DOUBT = 0.1  # see _samples_for_top1
INT8_DB_PER_TIME = 100.0  # output SNR (dB) INT8 compute may cost per 1x of time it saves
#: ... but it takes the result under QUALITY_BAR, where float compute meets it or is closer to
#: float, only when it takes at most this much of float compute's time (torchvision's deeplabv3:
#: worst cosine 0.94 for 0.92x)
BELOW_BAR_RATIO = 0.8
COMPUTE_NOTE = "INT8 compute against float compute"  # how _int8_or_float's note on static starts
NOT_WORTH_IT = ": not worth it"  # _int8_or_float's verdict against INT8 compute
#: Heads the notes of the static INT8 model float compute replaced (a "kept" among them is its).
INT8_BUILT_WITH = "the INT8 model that float compute replaced (below) was built with these choices:"
#: mode auto: dynamic INT8 replaces float compute only with a file at most this much larger
DYNAMIC_SIZE_SLACK = 1.25
#: each reason, or its start (trades.INT8_NOT_WORTH; how the weights are kept)
CHOICE_REASONS = frozenset(
    {
        trades.INPUT_FLOAT_WEIGHTS,
        trades.INPUT_INT8_WEIGHTS,
        trades.NEAR_INPUT_FLOAT_WEIGHTS,
        trades.NEAR_INPUT_INT8_WEIGHTS,
        trades.DEPTHWISE_EXACT,
        trades.INT8_NOT_WORTH,
    }
)
MODES = ("static", "dynamic", "auto")
#: The models the final timing runs, as its notes name them.
TIMED_NAMES = {
    "float": "float",
    "int8": "the INT8 model",
    "all int8": "the INT8 model before nodes went back to float",
    "lossless": "onnxslim's lossless float model",
}


@dataclasses.dataclass(frozen=True)
class QuantizeConfig:
    """How to quantize.

    `mode`: "static" (calibrated QDQ), "dynamic" (MatMul weights int8, activations quantized at run
    time: for transformers) or "auto" (static, or dynamic where static falls short: see
    `_static_or_dynamic`); `method`: activation range method (see RANGE_METHODS), `percentile` its
    parameter (None: the first of levers.PERCENTILES, or another, or "mse" ranges, where levers.py
    finds it closer on the selection samples); `per_channel` weight scales; `activation_type`
    "uint8" (asymmetric) or "int8" (symmetric); `target` the CPU the model will run on (auto, avx2,
    vnni, arm); `exclude_ops`/`exclude_nodes` stay float, `quantize_ops` narrows the op types;
    `max_drift` (a Budget or text like "cosine>=0.99"): the most sensitive nodes go back to float
    until it holds on the selection samples, a cosine budget as predicted for new samples
    (`drift.predicted_cosine`; CheckFailedError if it never does); `eval_split` the share of samples
    held out for choices (at least 2; None: DEFAULT_EVAL_SPLIT, raised to 8 samples where the data
    allow), `test_split` for the drift reported, `held_out` where they come from ("spread" through
    the data or the "last" ones: see `split_samples`); `require_speedup` makes an INT8 model that is
    not faster than float on this CPU an error; `min_macs` leaves smaller weighted ops in float (at
    its default, target "auto" times them in int8 too and keeps that when worth it); `weight_range`
    the per-channel weight clip ("minmax" or "mse": least weight quantization error) and
    `weight_rounding` "gptq" (the int8 weights of Conv, Gemm and MatMul, computing in INT8 or in
    float, rounded to change each layer's output least on the calibration samples, see gptq.py;
    those computing in float to nearest on random samples; dynamic INT8's MatMul and LSTM
    weights with "auto" too, to nearest on random samples),
    "nearest" or "auto" (GPTQ where levers.py finds it closer on the selection samples);
    `equalize` (cross-layer equalization), `bias_correction` and `smooth` (dynamic INT8:
    SmoothQuant-style balancing of MatMul inputs, see smooth.py) are True, False or "auto" (the
    variant closest to float on the selection samples; for CLE and bias correction only when
    bootstrap resamples of them agree, see levers.py); `optimize` runs the lossless pipeline first,
    with `optimize_options` as keyword arguments of `onnxslim.optimize`; `measure_latency` times
    both models; `progress` shows bars; `preprocess` how an image folder given as the calibration
    data is read (the CLI's --preprocess: "resize=256,crop=224,scale=1/255,..."); `random_inputs`:
    the samples given were synthesized (the caller's random:N, which warns of it itself): the
    report's drift is marked as measured on random samples, and the choices take their drift for
    what it is worth (see `_int8_or_float`)."""

    mode: str = "auto"
    method: str = DEFAULT_METHOD
    percentile: float | None = None
    per_channel: bool = True
    activation_type: str = "uint8"
    target: str = "auto"
    exclude_ops: frozenset[str] = frozenset()
    exclude_nodes: frozenset[str] = frozenset()
    quantize_ops: frozenset[str] | None = None
    max_drift: Budget | str | None = None
    eval_split: float | None = None
    test_split: float = 0.2
    held_out: str = "spread"
    require_speedup: bool = False
    min_macs: int = trades.DEFAULT_MIN_MACS
    equalize: bool | str = "auto"
    bias_correction: bool | str = "auto"
    optimize: bool = True
    optimize_options: Mapping | None = None
    measure_latency: bool = True
    progress: bool = True
    debug_layers: bool = False
    weight_range: str = "minmax"
    weight_rounding: str = "gptq"
    smooth: bool | str = "auto"
    preprocess: str | None = None
    random_inputs: bool = False

    @property
    def chooses(self) -> bool:
        """Whether any choice is made on the selection samples (ranges, levers, timed trades)."""
        ranges = self.method == "percentile" and self.percentile is None
        levers = "auto" in (self.equalize, self.bias_correction, self.weight_rounding)
        return ranges or levers or self.times_choices

    @property
    def times_choices(self) -> bool:
        """Whether the speed/accuracy choices are timed here (target auto, latency measured)."""
        return self.target == "auto" and self.measure_latency

    def __post_init__(self):
        for name in ("exclude_ops", "exclude_nodes", "quantize_ops"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, frozenset):
                object.__setattr__(
                    self, name, frozenset([value] if isinstance(value, str) else value)
                )
        for name in ("equalize", "bias_correction", "smooth"):
            value = getattr(self, name)
            if not (value is True or value is False or value == "auto"):  # 0 and 1 are not
                raise OnnxSlimError(f"{name} must be True, False or 'auto', got {value!r}")
        if self.mode not in MODES:
            raise OnnxSlimError(f"unknown INT8 mode {self.mode!r}: choose {', '.join(MODES)}")
        parse_preprocess(self.preprocess)  # a bad spec: one clear error now, not after loading
        if self.smooth is True and self.mode == "static":
            raise OnnxSlimError(
                "smoothing (smooth=True, --smooth on) applies to dynamic INT8: "
                "use mode 'dynamic' or 'auto'"
            )
        if self.percentile is not None and self.method != "percentile":
            raise OnnxSlimError(
                f"a percentile applies to calibration method 'percentile', not {self.method!r}"
            )
        if self.method not in RANGE_METHODS:
            raise OnnxSlimError(
                f"unknown calibration method {self.method!r}; "
                f"choose from {', '.join(RANGE_METHODS)}"
            )
        if self.activation_type not in ACTIVATION_TYPES:
            raise OnnxSlimError(
                f"activation type must be one of {', '.join(ACTIVATION_TYPES)}, "
                f"got {self.activation_type!r}"
            )
        if self.target not in CHOICES:
            raise OnnxSlimError(f"unknown target {self.target!r}: choose {', '.join(CHOICES)}")
        if self.weight_rounding not in ROUNDING_CHOICES:
            raise OnnxSlimError(
                f"unknown weight rounding {self.weight_rounding!r}: "
                f"choose {', '.join(ROUNDING_CHOICES)}"
            )
        if isinstance(self.max_drift, str):
            object.__setattr__(self, "max_drift", parse_max_drift(self.max_drift))


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
    (exact.py). A model over 2 GB gets dynamic INT8, made on files (large.py)."""
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
        return _quantize(model, calibration, config, profile, target_reason)


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
    if config.preprocess is not None and (
        not isinstance(calibration, (str, os.PathLike)) or is_random(calibration)
    ):
        raise OnnxSlimError(
            "preprocess applies to an image folder (or image file) given as the calibration data, "
            "not to arrays or random:N"
        )
    original = io.to_ir(model)
    reference = None if large.is_large(original) else _one_protobuf(original)
    if reference is None:
        samples = load_samples(  # random:N: plain random
            calibration, input_specs(original), preprocess=config.preprocess
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
    elif run.config.require_speedup:
        raise OnnxSlimError("require_speedup needs the latency measurement")
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
        calibration, input_specs(proto), preprocess=config.preprocess, model=proto, run=run
    )
    del session, run
    random = is_random(calibration) or config.random_inputs
    config = dataclasses.replace(config, random_inputs=random)
    calib, selection, test = split_samples(
        samples, config.eval_split, config.test_split, config.held_out
    )
    _refuse_unbelievable_budget(budget, selection or calib, len(samples))
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

    float_model = io.from_proto(onnx.ModelProto.FromString(reference))
    if config.optimize:
        from onnxslim.optimizer import optimize as lossless

        float_model = lossless(float_model, check=False, **(config.optimize_options or {}))
    unnamed = [node for node in float_model.graph if not node.name]  # (INT8 names them all)
    notes = _protocol_notes(calib, selection, test, budget, config)
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


def _choose(run: _Run, profile: Target) -> tuple[Outcome, ir.Model, Outcome | None, bool]:
    """The INT8 model `run.config` asks for, its automatic choices made on the selection
    samples: static, dynamic (or, mode auto, whichever `_static_or_dynamic` keeps), float
    compute where INT8 compute does not pay for its drift, LSTMs in dynamic INT8 beside static
    INT8. Returns the outcome, the model static INT8 was made of (its names), the dynamic INT8
    outcome mode auto tried (if any), and whether LSTMs were tried in dynamic INT8."""
    config, float_model, selection = run.config, run.float_model, run.selection
    dynamic_options = dynamic.DynamicOptions(
        _dynamic_excluded(config, float_model),
        profile.pair_limit,
        config.smooth,
        config.progress,
        config.exclude_ops,
        # GPTQ fitted to random:N samples moves weights off float's on real ones
        gptq=config.weight_rounding != "nearest" and not config.random_inputs,
    )
    folded: dict[str, tuple] = {}  # weights folded for INT8 (FoldProducers.computations)
    float_compute = None  # mode auto, timed: the static model computing in float (_int8_or_float)
    static_ops = _quantize_ops(config) - config.exclude_ops
    static_model = float_model
    if config.mode != "static":
        dynamic_model = _constant_weights(
            float_model, dynamic.QUANTIZED_OPS, config.exclude_nodes, folded
        )
    dynamic_ops = (
        set(dynamic.WEIGHTED_OPS) - config.exclude_ops if config.mode != "static" else set()
    )
    weighted = _weighted_nodes(float_model, static_ops | dynamic_ops, config.exclude_nodes)
    candidates = [name for name, why in weighted.items() if why is None]
    op_types = {node.name: node.op_type for node in float_model.graph}
    # nothing to calibrate or try (quantized already, float16), or only LSTMs (dynamic INT8's,
    # tried below): the lossless model
    if not candidates or (
        config.mode == "auto" and all(op_types[n] in RECURRENT_WEIGHTS for n in candidates)
    ):
        drift = compare_outputs(run.ref_outputs, run_samples(float_model, selection))
        mode = "dynamic" if config.mode == "dynamic" else "static"
        unquantized = {name: why for name, why in weighted.items() if why is not None}
        outcome = Outcome(float_model, {}, unquantized, [], drift, [], mode=mode, method="none")
    elif config.mode == "dynamic":
        outcome = dynamic.quantize_model(
            dynamic_model, run.calib, selection, run.ref_outputs, config.max_drift, dynamic_options
        )
    else:
        static_model = _constant_weights(float_model, static_ops, config.exclude_nodes, folded)
        outcome, float_compute = _static(
            prepare(static_model),
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
    with progress(  # the timings' runs; a slow model's take minutes
        "INT8: static, dynamic or float compute: timed runs",
        None,
        config.progress and config.times_choices,
    ):
        static = outcome
        if config.mode == "auto" and candidates:
            outcome, tried = _static_or_dynamic(
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
            outcome = _int8_or_float(outcome, float_compute, selection[0], random_inputs=random)
        elif (
            float_compute is not None
            and outcome.mode == "dynamic"
            and not bar.check(float_compute.drift)
        ):  # dynamic INT8 replaced static INT8 (closer to float, or faster): worth it still?
            built = [INT8_BUILT_WITH, *static.notes] if static.notes else []
            float_compute.notes += [*built, outcome.notes[-1]]  # (why dynamic replaced static)
            outcome = _int8_or_float(
                outcome, float_compute, selection[0], dynamic_int8=True, random_inputs=random
            )
            dynamic_timed = True
        lstms_tried = False  # (their own dynamic INT8 beside static's)
        if config.mode == "auto" and config.times_choices and outcome.method != "none":
            outcome, lstms_tried = _dynamic_lstms(
                outcome, data, config.max_drift, dynamic_options, output_kinds(float_model)
            )
        if (
            config.mode == "auto"
            and candidates
            and config.times_choices
            and outcome.mode != "dynamic"  # (its MatMuls all back in float for a budget)
            and not dynamic_timed
            and not computes_int8(outcome, run.before)
            and dynamic.covers_most_weights(dynamic_model)  # (its computed weights folded)
        ):  # float compute is as fast as static INT8; dynamic INT8's MatMuls may be faster
            tried = tried or dynamic.quantize_model(dynamic_model, *data, bar, dynamic_options)
            if not tried.violations:
                outcome = _dynamic_for_speed(outcome, tried, selection[0], bar)
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
    dynamic_untried = (  # (its hint names MatMuls; the recurrent note, LSTMs)
        run.config.mode == "auto"
        and outcome.mode == "static"
        and tried is None
        and dynamic.dynamic_weight_share(float_model, op_types=("MatMul",)) > 0
    )
    made = outcome.notes  # the choices of an INT8 model a later choice turned to float compute
    # float compute on static INT8's weights (not the lossless model: nothing quantized)
    stored = outcome.method != "none" and int8_stored(outcome.kept_float)
    if outcome.mode == "static" and stored and made and not computes_int8(outcome, before):
        made = made if INT8_BUILT_WITH in made else [INT8_BUILT_WITH, *made]
    run.notes += made + nothing_int8_warning(outcome, before, dynamic_untried)
    run.notes += recurrent_note(
        float_model, outcome.model, outcome.mode == "dynamic", tried is not None or lstms_tried
    )
    outcome = _as_made(outcome, before, run.config.random_inputs)
    if outcome.mode == NO_INT8_MODE:  # the lossless model as made (at its own opset)
        outcome.model = float_model
        for node in run.unnamed:  # names no file needs: a bigger file than the lossless one
            node.name = ""
    return outcome


def _report(
    run: _Run, outcome: Outcome, profile: Target, target_reason: str, nodes_before: int
) -> QuantizeReport:
    """The report of `outcome`: its drift on the test samples (on the selection samples where
    there are none) and the warnings that drift calls for, and what was made and how."""
    config, budget, float_model, notes = run.config, run.budget, run.float_model, run.notes
    quantized, drift = outcome.model, outcome.drift
    selection, test = run.selection, run.test
    if test:  # the figures reported: on samples no decision saw
        drift, test_notes = _test_drift(run.reference, quantized, test, output_kinds(float_model))
        notes += test_notes
        missed = budget.check(drift) if budget else []
        if missed:
            notes.append(
                f"warning: the budget {budget} held on the {len(selection)} selection samples "
                f"but not on the {len(test)} test samples: {missed[0]}"
            )
    for model in (quantized, outcome.all_int8, float_model):
        integer_outputs.drop_outputs(model, run.extra)
    split = "test" if test else "selection"
    notes += drift_warning(drift, budget, split, len(selection))
    notes += silent_outputs_warning(drift, split) + saturated_outputs_warning(drift, split)
    # random data: the picked dims have their own warning; no INT8: no drift
    if not config.random_inputs and outcome.mode != NO_INT8_MODE:
        notes += one_size_note(input_specs(float_model), test or selection, split)
    if outcome.mode != NO_INT8_MODE:  # (the lossless model: no drift to overstate)
        notes += reordered_outputs_note(float_model, drift)
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
        selection_samples=len(selection) if selection is not run.calib else 0,
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
    timed_on = (run.test or run.selection)[0]
    with progress("INT8: timing the models: runs", None, config.progress):
        timed = _latency(
            run.given,
            {
                "int8": outcome.model,
                "all int8": outcome.all_int8,
                "lossless": float_model if config.optimize else None,
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
    if "lossless" in timed:
        report.latency_lossless_ms = timed["lossless"].median
        report.latency_lossless_verdict = timed["int8"].versus(timed["lossless"])[1]
        slower = report.latency_lossless_verdict == "slower"
        # float compute runs as fast (_int8_or_float said so); nothing added: the same model
        if (slower or not float_used) and not report.unquantized:
            report.notes += lossless_warning(timed["int8"], timed["lossless"])
    note = not_faster_note(
        timed["int8"],
        timed["float"],
        report.speedup,
        config.require_speedup,
        weight_only=report.mode == WEIGHT_ONLY_MODE,
    )
    if not report.unquantized:  # the lossless model: its warning says so
        report.notes += note


def _static_or_dynamic(
    static: Outcome,
    float_model: ir.Model,
    data: tuple[list, list, list],
    budget: Budget | None,
    options: dynamic.DynamicOptions,
    may_time: bool,
) -> tuple[Outcome, Outcome | None]:
    """Mode "auto": the static result, unless it falls short on the selection samples and dynamic
    INT8 does better there (`data`: calibration and selection samples, the original's outputs on
    the selection samples); and the dynamic INT8 outcome tried (None: not tried).

    With a budget, static falls short when it misses it even with its sensitive nodes in float,
    and dynamic replaces it when it meets it; when static met it only with nodes back in float,
    dynamic INT8 meeting it too replaces it where it runs faster (timed). Without a
    budget, static falls short when its worst sample misses QUALITY_BAR, and dynamic INT8 held to
    QUALITY_BAR replaces it when its worst sample is closer to float: where MatMuls hold most
    weights (transformers) as such, elsewhere (convs stay float in dynamic INT8, so it may be
    slower) when `trades.trade`, timing both on the first selection sample (`may_time`; else not
    tried), finds it the better trade. The share counts MatMuls and LSTMs only, not the Gemms
    dynamic INT8 turns into MatMuls: a CNN's classifier Gemm does not make it a candidate here
    (dynamic INT8 leaves the convs float: EfficientNet-Lite1 would trade its speed for accuracy).
    Where LSTMs hold most weights (static INT8 leaves them float), dynamic INT8 meeting the
    budget or QUALITY_BAR is timed against static INT8 meeting them too.
    """
    share = dynamic.dynamic_weight_share(float_model)
    most = share > dynamic.MOST_WEIGHTS
    timed = may_time and share > 0
    lstms = dynamic.recurrent_share(float_model)
    # static INT8 leaves LSTMs float: where they hold most weights, only dynamic INT8 speeds up
    recurrent = timed and lstms > dynamic.MOST_WEIGHTS and computes_int8(static, Counter())
    if budget:
        if not static.violations and not ((static.fallback or recurrent) and timed):
            return static, None
        outcome = dynamic.quantize_model(float_model, *data, budget, options)
        if outcome.violations:
            return static, outcome
        if static.violations:
            outcome.notes.append(f"static INT8 missed {budget}: dynamic INT8 (MatMul) meets it")
            return outcome, outcome
        lead = f"static INT8 met {budget} with {len(static.fallback)} node(s) back in float"
        if recurrent:
            lead = f"static INT8 met {budget} leaving the LSTMs ({lstms:.0%} of the weights) float"
        lead += "; dynamic INT8 (MatMul, LSTM) too, kept if faster"
        return _timed_choice(static, outcome, data[1][0], lead, speed_only=True), outcome
    if recurrent and not QUALITY_BAR.check(static.drift):
        outcome = dynamic.quantize_model(float_model, *data, QUALITY_BAR, options)
        if outcome.violations:
            return static, outcome
        lead = (
            f"static INT8 leaves the LSTMs ({lstms:.0%} of the weights) float; dynamic INT8 "
            f"(MatMul, LSTM) meets {QUALITY_BAR} on the selection samples"
        )
        return _timed_choice(static, outcome, data[1][0], lead), outcome
    if not QUALITY_BAR.check(static.drift) or not (most or timed):
        return static, None
    outcome = dynamic.quantize_model(float_model, *data, QUALITY_BAR, options)
    before, after = (_lowest_cosine(d) for d in (static.drift, outcome.drift))
    if outcome.violations or after <= before:
        return static, outcome
    mismatched = [f"{n!r}: {d.mismatch}" for n, d in static.drift.items() if d.mismatch]
    worst = (
        f"output {mismatched[0]} on the selection samples"
        if mismatched
        else f"worst selection sample has cosine {before:.4f} to float"
    )
    reason = f"static INT8's {worst} (auto wants {QUALITY_BAR}): dynamic INT8 (MatMul)"
    if not most:
        lead = f"{reason} reaches cosine {after:.4f}"
        return _timed_choice(static, outcome, data[1][0], lead), outcome
    in_float = f"{len(outcome.fallback)} MatMul(s) in float"
    if not outcome.quantized:
        note = f"{reason} reaches cosine {after:.4f} only with its {in_float}: no INT8 left"
    else:
        with_float = f", with {in_float}" if outcome.fallback else ""
        note = f"{reason} kept, cosine {after:.4f}{with_float}"
    outcome.notes.append(note)
    return outcome, outcome


def _dynamic_lstms(
    static: Outcome,
    data: tuple[list, list, list],
    budget: Budget | None,
    options: dynamic.DynamicOptions,
    kinds: OutputKinds,
) -> tuple[Outcome, bool]:
    """Mode auto, timed (so on this CPU's own kernels): a static INT8 model's LSTMs (which it
    leaves float) in dynamic INT8 too, as `options` say (GPTQ rounds their weights against their
    inputs in the static INT8 model: `dynamic.lstm_rounding`), kept where `trades.trade` finds
    it the better trade and `budget` (if any) still holds on the selection samples (`data`:
    calibration and selection samples, the original's outputs there): easyocr's CRNN (not tuned
    on), convs static and LSTMs dynamic, 0.49x -> 0.33x float's time at the same drift. `static`
    may compute nothing in INT8 (silero-vad: its small convs on int8-stored weights): kept, the
    LSTMs make it dynamic INT8. Returns the outcome kept and whether any LSTM was tried."""
    if static.mode not in ("static", WEIGHT_ONLY_MODE) or not any(
        n.op_type == "LSTM" for n in static.model.graph
    ):
        return static, False

    calib, selection, ref_outputs = data

    def folded(model: ir.Model) -> onnx.ModelProto:
        # the LSTM weights that constants compute (silero's Slice/Concat) folded; quantized,
        # nothing computes them any more (no computation to restore)
        return io.to_proto(_constant_weights(model, {"LSTM"}, options.exclude_nodes, {}))

    proto = folded(static.model)
    gptq_on, past_memory = dynamic.lstm_rounding(proto, options, calib)
    proto, count, left = dynamic.with_dynamic_lstms(proto, options, gptq_on)
    if not count:
        return static, False
    model = io.from_proto(proto)
    outputs = run_samples(model, selection)
    drift = compare_outputs(ref_outputs, outputs)
    beside = (
        "static INT8"
        if static.quantized
        else "the others on int8-stored weights"
        if static.mode == WEIGHT_ONLY_MODE
        else "the others in float"
    )
    what = f"{count} LSTM(s) in dynamic INT8 (ORT's DynamicQuantizeLSTM) beside {beside}"
    missed = budget.check(drift) if budget else []
    if missed:
        note = f"{what}: not kept ({missed[0]} on the selection samples)"
        return dataclasses.replace(static, notes=[*static.notes, note]), True
    quantized = Counter(static.quantized)
    quantized["LSTM"] += count
    candidate = dataclasses.replace(
        static,
        model=model,
        quantized=dict(quantized),
        drift=drift,
        # compared as static's own drift was (`scored`, or as the model outputs it)
        scored=None if static.scored is None else scored_drift(ref_outputs, outputs, kinds, drift),
        notes=list(static.notes),
        weight_rounding="gptq" if gptq_on else static.weight_rounding,
    )
    worth, measured = trades.trade(static, candidate, selection[0])
    if worth and static.all_int8 is not None:  # the nodes back in float, in INT8: LSTMs alike
        all_int8 = dynamic.with_dynamic_lstms(folded(static.all_int8), options, gptq_on)[0]
        candidate.all_int8 = io.from_proto(all_int8)
    kept = candidate if worth else dataclasses.replace(static, notes=list(static.notes))
    verdict = f"{what}: {'kept' if worth else 'not kept'} ({measured})"
    if worth and not static.quantized and kept.notes:  # the others' notes: float compute's
        kept.notes[:0] = [verdict, *([] if INT8_BUILT_WITH in kept.notes else [INT8_BUILT_WITH])]
    else:
        kept.notes.append(verdict)
    if worth:
        kept.notes += dynamic.unlimited_warning(left)
        if past_memory:
            kept.notes.append(gptq_memory_note(past_memory, "LSTM weight(s)", GPTQ_MEMORY))
    return kept, True


def _dynamic_excluded(config: QuantizeConfig, model: ir.Model) -> frozenset[str]:
    """The nodes dynamic INT8 leaves float: `config.exclude_nodes` and the nodes of
    `config.exclude_ops` (an LSTM, which static INT8 has no rule for, among them)."""
    typed = {node.name for node in model.graph if node.op_type in config.exclude_ops}
    return config.exclude_nodes | typed


def _timed_choice(
    static: Outcome,
    dynamic_int8: Outcome,
    timed_on: dict,
    lead: str,
    speed_only: bool = False,
) -> Outcome:
    """Static or dynamic INT8 (its other weighted ops float), whichever `trades.trade` finds the
    better trade on this CPU (`speed_only`: the faster, both meeting a budget; `timed_on`: a
    selection sample); the kept one's notes say what was measured."""
    worth, measured = trades.trade(static, dynamic_int8, timed_on, speed_only)
    kept = dynamic_int8 if worth else static
    kept.notes.append(f"{lead}: {'kept' if worth else 'not kept'} ({measured})")
    return kept


def _static(
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
    also the same model computing in float on its int8-stored weights (`_float_compute`).
    `kinds`: the softmax and score outputs of the model before `prepare` (what every choice
    compares at its logits or in its parts, as dynamic INT8's do)."""
    quant_options = QuantOptions(
        activation_type=config.activation_type,
        weight_pair_limit=profile.pair_limit,
        per_channel=config.per_channel,
        quantize_ops=_quantize_ops(config),
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
    builders = _builders(float_model, calib, quant_options, config, bool(pairs), kinds)
    choice = levers.choose(builders, _choices(config.bias_correction), selection, ref_outputs)
    notes += [choice.note] if choice.note else []
    if config.method == "percentile" and config.percentile is None:
        choice = levers.choose_activation_range(choice, selection, ref_outputs)
        notes.append(choice.note)
    if config.weight_rounding == "auto" and levers.rounds_with_gptq(choice):
        choice = levers.choose_rounding(choice, selection, ref_outputs)
        notes.append(choice.note)
    builder, quantized, info = choice.builder, choice.model, choice.info
    first = _measured(choice, selection, ref_outputs)
    with progress(
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
    quantized, info, drift, scored = chosen.model, chosen.info, chosen.drift, chosen.scored
    notes += trade_notes
    violations = config.max_drift.check(drift) if config.max_drift else []
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
        # the rebuilt plan gives them generic reasons, unless the budget took them further
        returned = {item["node"] for item in fallback}
        info.kept_float.update({n: why for n, why in chosen.items() if n not in returned})
    nearest = builder.gptq_skipped & gptq_candidates(info.plan, builder.options)
    if nearest:
        notes.append(gptq_memory_note(len(nearest), "node(s)", builder.gptq_memory))
    layers = (
        layer_errors(builder, quantized, info, test or selection) if config.debug_layers else []
    )
    outcome = Outcome(
        model=quantized,
        quantized=dict(Counter(info.op_types[n] for n in info.plan.nodes)),
        kept_float=info.kept_float,
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
    float_compute = _float_compute(
        builder, outcome, info, (selection, ref_outputs), config.max_drift, config.bias_correction
    )
    return outcome, float_compute


def _asks_int8_compute(config: QuantizeConfig) -> str | None:
    """The option that asks for INT8 compute (mode static, per-layer errors, a speedup), or None:
    then mode auto does not hand back float compute (`_int8_or_float`), and no speed/accuracy
    choice leaves every weighted node in float (`trades.speed_accuracy_choices`)."""
    asked = {
        "--int8 static": config.mode == "static",
        "--debug-layers": config.debug_layers,
        "--require-speedup": config.require_speedup,
    }
    return next((option for option, given in asked.items() if given), None)


def _measured(choice: levers.Choice, selection: list, ref_outputs: list) -> trades.Variant:
    """`choice` as a Variant with its drift on all the selection samples (`levers` scores a
    choice on at most CHOICE_SAMPLES of them)."""
    builder = choice.builder
    if choice.scored is None or compared_samples(choice.scored) != len(selection):
        return trades.measured_variant(
            builder.kinds, builder.options, choice.model, choice.info, selection, ref_outputs
        )
    return trades.Variant(builder.options, choice.model, choice.info, choice.drift, choice.scored)


def _float_compute(
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
    on them)."""
    int8 = trades.int8_nodes(info)
    if not int8:
        return None
    selection, ref_outputs = data
    stored = {n for n in info.plan.nodes if RULES[info.op_types[n]].kind in (WEIGHTED, WEIGHT_ONLY)}
    stored |= set(info.plan.weight_only)
    build = {
        "exclude": [n.name for n in builder.model.graph if n.name not in stored],
        "weight_only": stored,
    }
    notes = []
    if bias_correction == "auto":
        choice = levers.choose_float_bias_correction(builder, build, selection, ref_outputs)
        notes.append(f"float compute on int8-stored weights: {choice.note}")
    else:
        choice = levers.Choice(builder, *builder.build(**build))
    kept = _measured(choice, selection, ref_outputs)
    model, float_info, drift = kept.model, kept.info, kept.drift
    if budget and budget.check(drift):  # (the other bias correction is not tried for it)
        return None
    weights = set(float_info.plan.weight_only)  # not a MatMul of two activations
    # ops without an int8 kernel (ConvTranspose) computed in float on int8 weights already
    stored_only = [n for n in float_info.plan.nodes if n not in int8]
    return dataclasses.replace(
        built,
        model=model,
        quantized={},
        kept_float={
            **info.kept_float,
            **{
                n: trades.INT8_NOT_WORTH + (f"; {STORED_COMPUTE}" if n in weights else "")
                for n in int8
            },
            **{n: f"no int8 kernel: {STORED_COMPUTE}" for n in stored_only},
        },
        fallback=[],
        drift=drift,
        scored=kept.scored,
        notes=notes,
        layers=[],
        bias_correction=builder.options.bias_correction,
        mode=WEIGHT_ONLY_MODE,  # NO_INT8_MODE where nothing is int8-stored: `_as_made`
        method="none (float compute)",
        # (GPTQ rounds int8-stored weights too, but not on synthesized samples)
        weight_rounding=built.weight_rounding if builder.options.gptq_float_compute else "nearest",
        all_int8=None,
    )


def _dynamic_for_speed(
    current: Outcome, dynamic_int8: Outcome, timed_on: dict, bar: Budget
) -> Outcome:
    """Mode auto, timed, where `current` computes nothing in INT8: `dynamic_int8` replaces it
    only where its file is at most DYNAMIC_SIZE_SLACK times as large (dynamic INT8 leaves every
    weight but MatMul's and LSTM's float: an embedding table, a GRU) and, timed on `timed_on`, it
    is faster and worth its drift by `_int8_or_float`'s rule; else `current`, with a note. Against
    the lossless model (static INT8 had nothing to quantize: an LSTM alone), exact, no drift
    would be worth it: `dynamic_int8`, which meets `bar` (QUALITY_BAR or the budget), must be
    faster."""
    grows = _file_bytes(dynamic_int8.model) / _file_bytes(current.model)
    if grows > DYNAMIC_SIZE_SLACK:
        current.notes.append(
            f"dynamic INT8 not kept: its file would be {grows:.2f}x this one "
            "(it leaves every other weight float)"
        )
        return current
    if current.method == "none":
        worth, measured = trades.trade(current, dynamic_int8, timed_on, speed_only=True)
        kept = dynamic_int8 if worth else current
        kept.notes.append(
            f"dynamic INT8 (it meets {bar} on the selection samples) against the lossless "
            f"model: {'kept' if worth else 'not kept'} ({measured})"
        )
        return kept
    return _int8_or_float(dynamic_int8, current, timed_on, dynamic_int8=True, for_speed=True)


def _file_bytes(model: ir.Model) -> int:
    """The size of `model`'s file as written: a weight several nodes share stored once."""
    copy = io.from_proto(io.to_proto(model))
    DeduplicateInitializers()(copy)
    return io.to_proto(copy).ByteSize()


def _int8_or_float(
    int8: Outcome,
    float_compute: Outcome,
    timed_on: dict,
    dynamic_int8: bool = False,
    random_inputs: bool = False,
    for_speed: bool = False,
) -> Outcome:
    """Mode auto, timed: INT8 compute is there for speed, so it must pay for its drift in time
    saved (`int8_worth_it`; timed side by side with `float_compute` on `timed_on`, a selection
    sample, and judged as `trades.trade` judges: the time ratio and SNR gain least in its
    favour), and where it misses QUALITY_BAR that float compute meets, or misses it further from
    float than float compute (both below it: LEADER's fingerprint minutiae, INT8 -5.4 dB for
    0.91x on its selection samples), take at most BELOW_BAR_RATIO its time; else `float_compute`.
    Static INT8 (`int8`) against its twin computing in float on its int8-stored weights: the one
    kept has the notes of the choices that built them. `dynamic_int8` (which replaced static INT8,
    or is offered against what static INT8 gave, computing nothing in INT8, `for_speed`: it must
    be faster too): kept, with its own notes and static INT8's verdict. Where the float model
    gives every float output as zeros or nothing on the selection samples, nothing judges INT8's
    drift: `float_compute`; so too where INT8 is not faster and the samples are `random_inputs`
    (ranges and GPTQ fitted to noise: on random data an orientation classifier's INT8 was 5.8 dB
    closer, on pictures 14 dB further)."""
    what = "dynamic INT8" if dynamic_int8 else "INT8"
    floats, ints = trades.side_by_side(
        [float_compute.model, int8.model], timed_on, trades.TRADE_RUNS
    )
    ratio, verdict = ints.versus(floats)
    fastest = ints.min / floats.min
    speed = f"{what} {ratio:.2f}x the time ({fastest:.2f}x by the fastest runs)"
    if verdict != "faster":
        speed += ", not faster"
    gain_db, measured = trades.snr_gain(float_compute, int8)
    stored = " on int8-stored weights" if int8_stored(float_compute.kept_float) else ""
    lead = f"{what} compute against float compute{stored}: {speed}; {what} {measured}"
    missed = QUALITY_BAR.check(int8.drift)
    float_meets = not QUALITY_BAR.check(float_compute.drift)
    # float compute surely closer: as measured, and for new samples (not within noise)
    further = trades.measured_gain(float_compute, int8) <= -trades.MIN_GAIN_DB and gain_db < 0
    below_bar = bool(missed) and (float_meets or further)
    if says_nothing(int8.drift):
        lead += (
            "; but the float model gives every float output as zeros or nothing on the "
            "selection samples, so nothing tells how far INT8 drifts on inputs that drive it"
        )
    elif random_inputs and verdict != "faster":
        lead += "; on random inputs drift says little of real ones: kept only where faster"
    elif below_bar and max(ratio, fastest) > BELOW_BAR_RATIO:
        where = (
            f"where float compute meets {QUALITY_BAR}"
            if float_meets
            else "and is further from float than float compute"
        )
        lead += f"; {what}'s {missed[0]} {where}: kept only at <= {BELOW_BAR_RATIO}x the time"
    elif int8_worth_it(gain_db, max(ratio, fastest)) and (verdict == "faster" or not for_speed):
        why = "closer to float" if gain_db > 0 else "within the drift its time allows"
        why = "worth it" if verdict == "faster" else why
        static = [  # static INT8's verdict, without what it said it kept
            note.partition(NOT_WORTH_IT)[0] + NOT_WORTH_IT
            for note in float_compute.notes
            if dynamic_int8 and note.startswith(COMPUTE_NOTE)
        ]
        int8.notes = [*static, *int8.notes, f"{lead}: {why}, {what} kept"]
        return int8
    kept = (
        "every weighted node computes in float on int8-stored weights (a file as small"
        if int8_stored(float_compute.kept_float)
        else "the result is onnxslim's lossless model (no weight made int8 here"
    )
    built = [INT8_BUILT_WITH, *int8.notes] if int8.notes else []  # its choices: not what is kept
    float_compute.notes = [
        *(float_compute.notes if dynamic_int8 else [*float_compute.notes, *built]),
        f"{lead}{NOT_WORTH_IT}, so {kept}; --int8 static or dynamic, mode= in Python, computes "
        "in INT8)",
    ]
    return float_compute


def int8_required_gain(time_ratio: float) -> float:
    """The output SNR gain (dB) over float compute on the same weights that INT8 compute taking
    `time_ratio` its time must bring (mostly negative: what it may cost): where it saves time,
    INT8_DB_PER_TIME dB per 1x saved (1 dB per 1%: 0.5x the time may cost 49.5 dB, 0.95x 4.5);
    where it does not, as any timed choice (`trades.required_gain`). Continuous in the ratio, so a
    choice that flips with the machine's load flips only between trades of about the same worth
    (a 5% speedup is no reason to keep 10 dB more drift)."""
    saving = trades.MIN_GAIN_DB + INT8_DB_PER_TIME * (time_ratio - 1)
    return min(saving, trades.required_gain(time_ratio))


def int8_worth_it(gain_db: float, time_ratio: float) -> bool:
    """Whether INT8 compute `gain_db` closer to float than float compute on the same weights at
    `time_ratio` its time is worth keeping (`int8_required_gain`)."""
    return gain_db >= int8_required_gain(time_ratio)


#: How the held-out samples are picked: evenly through the data, or its last samples.
HELD_OUT = ("spread", "last")


def split_samples(
    samples: Sequence,
    selection_share: float | None,
    test_share: float = 0.0,
    held_out: str = "spread",
) -> tuple[list, list, list]:
    """Calibration, selection and test samples: `test_share` and `selection_share` of them (each
    at least MIN_EVAL_SAMPLES when its share is > 0) held out, "spread" evenly through the data (a
    folder sorted by name or class then gives every split some of each) or the "last" ones (test
    last); the test split is dropped when the samples are too few for it and MIN_EVAL_SAMPLES
    calibration samples. `selection_share` None: DEFAULT_EVAL_SPLIT, and at least
    MIN_PREDICTION_SAMPLES (the fewest the automatic choices and a cosine budget are made on)
    while MIN_CALIBRATION_SAMPLES are left (32 samples: 18 / 8 / 6, not 20 / 6 / 6). Each split
    keeps the data's order."""
    automatic = selection_share is None
    selection_share = DEFAULT_EVAL_SPLIT if automatic else selection_share
    for name, share in (("eval split", selection_share), ("test split", test_share)):
        if not 0.0 <= share < 1.0:
            raise OnnxSlimError(f"{name} must be in [0, 1), got {share}")
    if held_out not in HELD_OUT:
        raise OnnxSlimError(f"held-out samples {held_out!r}: choose {', '.join(HELD_OUT)}")
    samples = list(samples)

    def size(share: float) -> int:
        return max(MIN_EVAL_SAMPLES, int(round(len(samples) * share))) if share > 0 else 0

    n_select, n_test = size(selection_share), size(test_share)
    if n_test and len(samples) - n_select - n_test < max(MIN_EVAL_SAMPLES, 1):
        n_select, n_test = size(selection_share), 0  # too few for a separate test split
    left = len(samples) - MIN_PREDICTION_SAMPLES - n_test
    if automatic and n_select < MIN_PREDICTION_SAMPLES and left >= MIN_CALIBRATION_SAMPLES:
        n_select = MIN_PREDICTION_SAMPLES
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


def _protocol_notes(
    calib: list, selection: list, test: list, budget: Budget | None, config: QuantizeConfig
) -> list[str]:
    """What each sample split was used for, and where the figures cannot be trusted."""
    where = "spread through the data" if config.held_out == "spread" else "the last ones given"
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
        notes += _few_test_samples_note(len(test))
    if 0 < len(selection) < MIN_PREDICTION_SAMPLES and config.chooses:
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


def _on_files(
    model, samples: list, config: QuantizeConfig, profile: Target, target_reason: str
) -> QuantizeResult:
    """`large.quantize_large` of a model one protobuf cannot hold, on `samples`: no calibration,
    so a budget's selection samples and the rest test."""
    budget = config.max_drift
    share = config.eval_split if budget else 0.0
    test, selection, _ = split_samples(samples, share, 0.0, config.held_out)
    _refuse_unbelievable_budget(budget, selection or test, len(samples))
    held = f"{len(selection)} selection (the drift budget), " if budget else ""
    notes = [
        f"samples: {held}{len(test)} test (the drift reported: no decision saw them)",
        *_few_test_samples_note(len(test), "more samples"),
    ]
    quantized, report = large.quantize_large(
        model, (selection, test), notes, config, profile, target_reason
    )
    return QuantizeResult(quantized, report)


def _few_test_samples_note(
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


def _one_protobuf(model: ir.Model) -> bytes | None:
    """`model` serialized, or None where one protobuf cannot hold it (2 GB)."""
    try:
        return io.to_proto(model).SerializeToString()
    except (OnnxSlimError, ValueError):  # io's 2 GB guard, or protobuf's own at serialization
        return None


def _refuse_unbelievable_budget(budget: Budget | None, selection: list, total: int) -> None:
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


def _test_drift(
    reference: bytes, quantized: ir.Model, test: list, kinds: OutputKinds
) -> tuple[dict, list[str]]:
    """Drift on the test samples as ORT runs the model, and notes: the SNR of each part of an
    output the choices compare in parts (`caveats.parts_notes`; `kinds`: the softmax and
    score outputs), and a warning when ORT's graph optimizations change the
    quantized model's results (what ORT runs is not what was written). With exact math
    (exact.py) the drift is the model's own math and the rewrites go unchecked."""
    ref = run_samples(reference, test, int8=False)
    outputs = run_samples(quantized, test)
    drift = compare_outputs(ref, outputs)
    notes = parts_notes(scored_drift(ref, outputs, kinds, drift))
    if not exact.enabled():
        as_written = compare_outputs(ref, run_samples(quantized, test, opt_level="disable"))
        warning = rewrite_warning(drift, as_written)
        notes += [warning] if warning else []
    return drift, notes


def _weighted_nodes(model: ir.Model, op_types, exclude_nodes) -> dict[str, str | None]:
    """The main graph's nodes of `op_types` (but `exclude_nodes`) that INT8 computes or stores
    with weights (a weight, or MatMul's two activations), each with why it cannot (a constant
    weight not float32, in a QDQ unit already) or None."""
    found = {}
    for node in model.graph:
        rule = RULES.get(node.op_type)
        if rule is None or rule.kind not in (WEIGHTED, WEIGHT_ONLY):
            rule = None  # no weighted rule: an LSTM (dynamic INT8's) or an op to pass over
        index = RECURRENT_WEIGHTS.get(node.op_type, (None,))[0] if rule is None else rule.weight
        if (
            node.op_type not in op_types
            or node.domain not in ("", "ai.onnx")
            or index is None
            or node.name in exclude_nodes
        ):
            continue
        weight = node.inputs[index] if len(node.inputs) > index else None
        if rule is not None and quantized_already(node, rule):
            found[node.name] = QUANTIZED_ALREADY
        else:
            found[node.name] = not_float32(weight) if weight is not None else None
    return found


def _quantize_ops(config: QuantizeConfig) -> frozenset[str]:
    """The op types static INT8 may quantize: the caller's, else DEFAULT_OPS."""
    return config.quantize_ops if config.quantize_ops is not None else DEFAULT_OPS


def _constant_weights(
    model: ir.Model, op_types, exclude_nodes, folded: dict[str, tuple]
) -> ir.Model:
    """`model`, or a copy of it in which the weights constants compute for the nodes of
    `op_types` (but `exclude_nodes`) are constants INT8 can quantize (`computed_weights`,
    `FoldProducers`; their computations added to `folded`, for `restore_computations`); each
    mode folds only what it quantizes, on its own copy."""
    names = computed_weights(model, op_types, exclude_nodes)
    if not names:
        return model
    copy = io.from_proto(io.to_proto(model))
    fold = FoldProducers(names, stored=weight_uses(copy, op_types, exclude_nodes))
    fold(copy)
    folded.update(fold.computations)
    return copy


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
        if eq and False in builders:
            builders[eq].hessian_source = (builders[False], equalize.input_scales)
            # (a layer CLE leaves alone: the same weight and Hessian, rounded once for both)
            builders[eq].rounded = builders[False].rounded
    return builders


def _lowest_cosine(drift: Mapping[str, Drift]) -> float:
    """The lowest cosine a budget holds the outputs to (Drift.budget_cosine; -1 when none has
    one, or one comes out in another shape than float's)."""
    if levers.mismatched(drift):
        return -1.0
    cosines = [d.budget_cosine() for d in drift.values()]
    return min((c for c in cosines if c is not None), default=-1.0)


def _names(model: ir.Model) -> set[str]:
    """Names of the nodes and node outputs of ``model``'s main graph."""
    return {n.name for n in model.graph} | {v.name for n in model.graph for v in n.outputs}


def _latency(
    reference: bytes, models: Mapping[str, ir.Model | None], sample, runs: int = 30
) -> dict[str, Latency]:
    """Single-thread latency of the float model ("float") and of each of `models` given (None:
    skipped), by label, runs interleaved after warm-up (fewer for a slow model, as the timed
    choices make: trades.SLOW_SECONDS)."""
    timed = {"float": reference, **{label: m for label, m in models.items() if m is not None}}
    return dict(zip(timed, latencies(timed, sample, runs, seconds=trades.SLOW_SECONDS)))


def _as_made(outcome: Outcome, before: Counter, random_inputs: bool) -> Outcome:
    """`outcome` with the mode of what it holds: dynamic where only LSTMs compute in INT8
    (dynamic INT8's, beside weights computing in float); where no weighted node computes in INT8
    and none is listed as quantized, weight-only where weights are int8-stored (rounded to
    nearest on `random_inputs`: `QuantOptions.gptq_float_compute`), else NO_INT8_MODE (the
    lossless model); its mode otherwise."""
    if outcome.quantized.keys() <= RECURRENT_WEIGHTS.keys() and outcome.quantized:
        # (beside weights computing in float: `_dynamic_lstms`)
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
