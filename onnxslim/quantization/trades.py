"""The timed speed/accuracy choices of target auto: variants of a static INT8 build (layers near
the input in float, depthwise convs or small nodes in int8) traded against the one chosen so far,
each by its output SNR gain on the selection samples against its time ratio on this CPU."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Collection, Mapping, Sequence

import numpy as np
import onnx_ir as ir

from onnxslim.bench import Latency, fewest_runs, latencies
from onnxslim.drift import (
    GAIN_CONFIDENCE,
    Drift,
    compare_outputs,
    scored_drift,
    snr_gain_bound,
    worst_snr,
)
from onnxslim.model.graph import OutputKinds
from onnxslim.quantization.builder import (
    SAME_VALUES,
    BuildInfo,
    QuantBuilder,
    output_sizes,
    run_samples,
)
from onnxslim.quantization.ops import (
    RULES,
    WEIGHT_ONLY,
    WEIGHTED,
    is_depthwise,
    layer_weight,
    macs_per_output,
)
from onnxslim.quantization.plan import DEPTHWISE_IN_FLOAT, INT8_STORED, TOO_SMALL, QuantOptions
from onnxslim.quantization.report import Outcome

DEFAULT_MIN_MACS = 1 << 20  # min_macs by default (smaller nodes: float; timed in int8 too)
DB_PER_TIME = 10.0  # output SNR (dB) worth 1x of latency in a speed/accuracy choice (trade)
MIN_GAIN_DB = 0.5  # what a variant of the same speed must gain to be chosen (a lean to the default)
TRADE_RUNS = 30  # the runs of each model a timed choice asks for (side_by_side; fewer if settled)
TRADE_SECONDS = 2.0  # ... and more, up to MORE_RUNS times as many, while they fit in this time
MORE_RUNS = 20
#: ... and fewer (bench.fewest_runs at least) once they take this long: 10 runs of a model taking
#: 100 ms or more time it within 1% (a 640x640 YOLOv8-seg, not tuned on: its 11 timings took
#: 132 s of 284 s quantizing at 20 s, 112 s of 262 s at 6 s)
SLOW_SECONDS = 6.0
EDGE_DB = 0.3  # a trade decided by less than this (dB) is timed again, with EDGE_RUNS runs asked
EDGE_RUNS = 3 * TRADE_RUNS
EDGE_STEP = EDGE_DB / DB_PER_TIME  # ... EDGE_DB's worth of time ratio (0.03)
AGAIN = f", near the rule's edge: timed again ({EDGE_RUNS // TRADE_RUNS}x the runs)"
#: A trade's timing stops early (after bench.fewest_runs) once its time ratio lies this many
#: standard errors (of the median of the runs' paired time ratios) from the ratio the choice turns
#: on, and EDGE_DB from it at least (`_settled`)
SETTLED_ERRORS = 4.0
SMALL_WEIGHT_SHARE = 0.01  # an input layer this small computes in float on float weights
#: A target not timed here: a multiply-accumulate in float taken as this many in int8 (VNNI's
#: int8 convs are 2-4x float's), to estimate the time of a layer moved to float
FLOAT_MAC_COST = 4.0
MAX_ESTIMATED_SHARE = 0.1  # ... of the int8 MACs at most (a larger part: not tried untimed)
# why the speed/accuracy choices of target auto left a node float (speed_accuracy_choices)
INPUT_FLOAT_WEIGHTS = "input layer: in float on float weights, worth its time"
INPUT_INT8_WEIGHTS = f"input layer: in float on {INT8_STORED}, worth its time"
OUTPUT_FLOAT_WEIGHTS = "output layer: in float on float weights, worth its time"
OUTPUT_INT8_WEIGHTS = f"output layer: in float on {INT8_STORED}, worth its time"
NEAR_INPUT_FLOAT_WEIGHTS = "near the input: in float on float weights, worth its time"
NEAR_INPUT_INT8_WEIGHTS = f"near the input: in float on {INT8_STORED}, worth its time"
TIMED_HERE = " (timed here)"
ESTIMATED = " (its time estimated from its MACs, not timed)"
DEPTHWISE_EXACT = "depthwise conv reading a float node's output: one range over its channels"
INT8_NOT_WORTH = "int8 not worth its time and drift here (timed)"


def _float_depthwise(info: BuildInfo) -> list[str]:
    """The depthwise convs the target profile left computing in float."""
    return [name for name, why in info.kept_float.items() if DEPTHWISE_IN_FLOAT in why]


#: Ops that move values and change none: an int8 conv's output reaches a graph output through
#: them as it is, 8-bit (`_output_layers`)
MOVES_VALUES = SAME_VALUES | {"DepthToSpace", "SpaceToDepth"}
#: A channel whose float values are this small against its output's (RMS) is not judged apart
#: (`_judged_per_channel`): a dead channel, whatever it holds, is noise
DEAD_CHANNEL = 1e-3
MAX_JUDGED_CHANNELS = 1024  # an output of more channels is judged whole
#: Ops that move or reshape a graph input without computing on it (_input_layers looks past them).
LAYOUT_OPS = frozenset(
    {"Transpose", "Pad", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Cast", "Identity"}
)


def _input_layers(model: ir.Model, info: BuildInfo) -> list[str]:
    """The int8 weighted nodes that read a graph input (past layout ops: Transpose, Pad, ...):
    few weights per output each (a 3-channel stem conv: 27), so rounding them costs the most
    accuracy, at little of the compute."""
    quantized = set(info.plan.nodes)
    found, values = set(), list(model.graph.inputs)
    while values:
        for node, _ in values.pop().uses():
            if node.op_type in LAYOUT_OPS and node.domain in ("", "ai.onnx"):
                values.extend(node.outputs)
            elif node.name in quantized and RULES[info.op_types[node.name]].kind == WEIGHTED:
                found.add(node.name)
    return sorted(found)


def layer_depths(model: ir.Model) -> dict[str, int]:
    """Each layer's depth: the most layers (weighted nodes with a constant weight) on a path from
    a graph input to its output, itself included (the stem conv: 1). The main graph, in its
    (topological) order; a subgraph's layers are not counted (static INT8 quantizes none)."""
    depths: dict[str, int] = {}  # value name -> depth
    layers = {}
    for node in model.graph:
        layer = _is_layer(node)
        depth = max((depths.get(v.name, 0) for v in node.inputs if v is not None), default=0)
        depth += layer
        depths.update((v.name, depth) for v in node.outputs)
        if layer:
            layers[node.name] = depth
    return layers


def _is_layer(node: ir.Node) -> bool:
    """Whether `node` is a weighted op (Conv, MatMul, ...) whose weight is a constant."""
    return layer_weight(node) is not None


def prefix_depths(depths: Mapping[str, int]) -> list[int]:
    """The depths `_float_near_input` tries: doubling from 2, up to a quarter of the deepest."""
    deepest = max(depths.values(), default=0)
    return [2**k for k in range(1, deepest.bit_length()) if 2**k <= deepest // 4]


def small_weight_nodes(model: ir.Model, names: Sequence[str]) -> list[str]:
    """Those of the weighted nodes ``names`` whose weight holds at most SMALL_WEIGHT_SHARE of the
    elements of all weighted nodes' weights: int8 storage would save little there, and the
    rounding of a stem conv's 27 weights per output is what an input-sensitive model feels most."""
    weights = {node.name: layer_weight(node) for node in model.graph}
    sizes = {name: weight.size for name, weight in weights.items() if weight is not None}
    total = sum(sizes.values())
    return [n for n in names if sizes.get(n, 0) <= SMALL_WEIGHT_SHARE * total]


@dataclasses.dataclass
class Variant:
    """One build of the builder's options: the model, its build info, its selection drift as the
    model outputs it (`drift`) and as the timed choices compare it (`scored`: a softmax output's at
    its logits, drift.scored_drift)."""

    options: QuantOptions
    model: ir.Model
    info: BuildInfo
    drift: dict[str, Drift]
    scored: dict[str, Drift]


def _variant(builder: QuantBuilder, options: QuantOptions, selection, ref_outputs) -> Variant:
    builder.options = options
    model, info = builder.build()
    return measured_variant(builder.kinds, options, model, info, selection, ref_outputs)


def measured_variant(
    kinds: OutputKinds,
    options: QuantOptions,
    model: ir.Model,
    info: BuildInfo,
    selection,
    ref_outputs,
) -> Variant:
    """A Variant of a build (`model`, `info`), its drifts measured on the selection samples
    (`kinds`: the float model's softmax and score outputs, QuantBuilder.kinds)."""
    outputs = run_samples(model, selection)
    drift = compare_outputs(ref_outputs, outputs)
    scored = scored_drift(ref_outputs, outputs, kinds, drift)
    return Variant(options, model, info, drift, scored)


def _compared(made: Variant | Outcome) -> dict[str, Drift]:
    """The drift a trade compares: `scored` (drift.scored_drift), or as the model outputs it
    where an Outcome has none."""
    return made.drift if made.scored is None else made.scored


def trade(
    current: Variant | Outcome,
    candidate: Variant | Outcome,
    timed_on: dict,
    speed_only: bool = False,
) -> tuple[bool, str]:
    """Whether `candidate` is the better trade of speed for accuracy on this CPU (`worth_trading`;
    `speed_only`: whether bench's noise rule calls it faster, both meeting a budget), and what
    was measured: both timed side by side on `timed_on` (a selection sample), output SNR from
    their drifts on the selection samples.

    A choice made on noisy measurements flips between runs, so the candidate is judged on what
    is least in its favour: the time ratio of the medians or of the fastest runs, whichever is
    higher, and its SNR gain as measured or as bootstrap resamples of the samples bound it for new
    samples (`snr_gain_bound`), whichever is lower. A trade within EDGE_DB of the rule's edge is
    timed again with EDGE_RUNS runs, and that timing decides.
    """
    if speed_only:
        ratio, faster = _time_ratio([current.model, candidate.model], timed_on, TRADE_RUNS)
        measured = snr_gain(current, candidate, bounded=False)[1]
        return faster, f"{ratio:.2f}x the time ({'' if faster else 'not '}faster), {measured}"
    margin, measured = _trade_margin(current, candidate, timed_on)
    return margin >= 0, measured


def _trade_margin(
    current: Variant | Outcome, candidate: Variant | Outcome, timed_on: dict
) -> tuple[float, str]:
    """`trade`'s measure: by how many dB `candidate`'s SNR gain exceeds the gain its time ratio
    requires (`required_gain`; negative: short of it), and what was measured."""
    gain_db, measured = snr_gain(current, candidate)
    timings = timed_near_edge([current.model, candidate.model], timed_on, edge_ratio(gain_db))
    ratios = [time_ratio(*timing) for timing in timings]
    speed = f"{ratios[0]:.2f}x the time"
    if len(timings) > 1:
        speed += f"{AGAIN}, {ratios[-1]:.2f}x"
    return gain_db - required_gain(ratios[-1]), f"{speed}, {measured}; {_asked(ratios[-1])}"


def _asked(ratio: float) -> str:
    """What the rule asks of a variant taking `ratio` the time, in words (`required_gain`)."""
    return f"the rule asks {required_gain(ratio):+.1f} dB at {ratio:.2f}x"


def _mac_share(builder: QuantBuilder, info: BuildInfo, names: Sequence[str]) -> float | None:
    """The part of the int8 nodes' (of a build, `info`) multiply-accumulates `names` do (those of
    them in int8); None when their count is not known."""
    nodes = {node.name: node for node in builder.model.graph}
    sizes = output_sizes(builder.model, info.plan, builder.stats)

    def macs(name: str) -> float:
        node = nodes[name]
        return (macs_per_output(node) or 0) * sizes.get(node.outputs[0].name, 0.0)

    int8 = int8_nodes(info)
    total = sum(macs(n) for n in int8)
    return sum(macs(n) for n in names if n in int8) / total if total else None


def _estimated_trade(current: Variant, candidate: Variant, share: float) -> tuple[bool, str]:
    """`trade` untimed: `candidate` computes in float what `current` does in int8,
    `share` of its int8 multiply-accumulates; its time estimated as
    ``1 + (FLOAT_MAC_COST - 1) * share`` (the model's other work left out)."""
    ratio = 1 + (FLOAT_MAC_COST - 1) * share
    gain_db, measured = snr_gain(current, candidate)
    estimate = f"about {ratio:.2f}x the time estimated ({share:.1%} of the int8 MACs)"
    return worth_trading(gain_db, ratio), f"{estimate}, {measured}; {_asked(ratio)}"


def measured_gain(current: Variant | Outcome, candidate: Variant | Outcome) -> float:
    """`candidate`'s output SNR gain (dB) over `current` on the selection samples, as measured."""
    return _gain(compared_snr(current), compared_snr(candidate))


def compared_snr(made: Variant | Outcome) -> float:
    """The worst output SNR (dB) of `made` on the selection samples, as the trades compare it."""
    return worst_snr(_compared(made))


def _gain(before_db: float, after_db: float) -> float:
    return 0.0 if before_db == after_db else after_db - before_db  # inf - inf: no gain


def snr_gain(
    current: Variant | Outcome, candidate: Variant | Outcome, bounded: bool = True
) -> tuple[float, str]:
    """`candidate`'s output SNR gain over `current` on the selection samples (`bounded`: or as
    bootstrap resamples of them bound it for new samples, `snr_gain_bound`, whichever is lower),
    and what was measured."""
    before, after = _compared(current), _compared(candidate)
    before_db, after_db = worst_snr(before), worst_snr(after)
    gain_db = _gain(before_db, after_db)
    measured = _gain_text(before_db, after_db)
    # the bound counts a non-finite output as an infinite error, the SNR measured leaves it out:
    # the lower of the two is the more careful
    bound = snr_gain_bound(before, after) if bounded else None
    if bound is not None:
        if math.inf not in (before_db, after_db):  # beside an exact side, a bound says no more
            shown = (
                f"{bound:+.1f} dB" if abs(bound) < 1e3 else f"{math.copysign(math.inf, bound)} dB"
            )
            measured += f" (new samples: {shown} or more, {GAIN_CONFIDENCE:.0%} sure)"
        gain_db = min(gain_db, bound)
    return gain_db, measured


def _gain_text(before_db: float, after_db: float) -> str:
    """An SNR gain in words; an exact side (infinite SNR: an already-int8 model's float compute
    reproduces it) is named as such rather than shown as an infinite gain or loss."""
    where = "on the selection samples"
    if before_db == after_db == math.inf:
        return f"both exact {where}"
    if before_db == after_db == -math.inf:  # no float output (an integer one), or both broken
        return f"with no output SNR to compare {where}"
    if after_db == math.inf:
        return f"exact {where} (the other {before_db:.1f} dB output SNR)"
    if before_db == math.inf:
        return f"{after_db:.1f} dB output SNR {where}, the other exact"
    return f"{after_db - before_db:+.1f} dB of output SNR against the other {where}"


def _settled(times: Sequence[Sequence[float]], edge: float) -> bool:
    """Whether the time ratio of two models timed side by side (`times`: each one's runs, in
    rounds) is surely on one side of `edge` (`edge_ratio`), as the full timing would find it: the
    medians' ratio and the median of the rounds' own ratios (and below the edge, where the choice
    takes the higher of the medians' and the fastest runs' ratio, the fastest runs' too) at least
    SETTLED_ERRORS standard errors of that median (from the spread of the rounds' ratios) and
    EDGE_DB's worth of time from it, on the same side. A trade far from its edge is told by a few
    rounds: timing each to TRADE_SECONDS took most of a quantization (efficientnet_lite1: 28 s of
    66); replayed on full timings (scripts/trade_replay.py), every trade settled early landed on the
    side its full timing decided."""
    if not np.isfinite(edge) or edge <= 0:
        return True  # a gain no time could outweigh, or a loss no speed could earn back
    before, after = (np.asarray(t) for t in times)
    logs = np.log(after) - np.log(before)
    spread = 1.4826 * np.median(np.abs(logs - np.median(logs)))  # (a robust sd: the MAD's)
    error = SETTLED_ERRORS * 1.2533 * spread / math.sqrt(len(logs))  # (a median's)
    ratios = [
        float(np.median(after) / np.median(before)),
        float(np.exp(np.median(logs))),
        float(after.min() / before.min()),
    ]
    below = max(ratios) < min(edge - EDGE_STEP, edge * math.exp(-error))
    above = min(ratios[:2]) > max(edge + EDGE_STEP, edge * math.exp(error))
    return below or above


def side_by_side(
    models: Sequence | Mapping,
    sample: dict,
    runs: int,
    settled: Callable[[Sequence[Sequence[float]]], bool] | None = None,
) -> list[Latency]:
    """Each model's latency on `sample` (`models` as `bench.latencies` takes them: a Mapping names
    them by label in errors), runs interleaved after warm-up: `runs` of each, or, for models fast
    enough, as many more (up to MORE_RUNS times) as fit in TRADE_SECONDS per TRADE_RUNS asked, or
    for slow ones fewer (bench.fewest_runs at least) once they take SLOW_SECONDS per TRADE_RUNS
    asked (caustic-nmr's GNN, a second a run, timed minutes without a word); or fewer
    (bench.fewest_runs at least) once `settled` says of the times so far that more would not
    change what they decide (`_settled`). A small model's median time ratio moves by 4% between
    timings of 30 runs (a 1.5 ms model's sd; under 1% with 300 runs): a choice made on it flipped
    between runs. One timing: the first runs, which tell how long a run takes, count too (timing
    them apart took a third of the time)."""
    scale = runs / TRADE_RUNS

    def enough(done: int, elapsed: float, times: Sequence[Sequence[float]]) -> bool:
        fast = done >= runs and elapsed >= TRADE_SECONDS * scale
        least = fewest_runs(done, elapsed)
        return fast or (least and (elapsed > SLOW_SECONDS * scale or settled and settled(times)))

    return latencies(models, sample, MORE_RUNS * runs, enough=enough)


def timed_near_edge(models: list, sample: dict, edge: float) -> list[tuple[Latency, Latency]]:
    """The two `models` timed side by side on `sample` for a choice that turns where the second's
    `time_ratio` crosses `edge`: stopped once `_settled` on one side of it, and where the ratio
    lies within EDGE_STEP of it, timed again with EDGE_RUNS runs. The timings made; the last
    decides."""
    timings = [tuple(side_by_side(models, sample, TRADE_RUNS, lambda t: _settled(t, edge)))]
    if abs(time_ratio(*timings[0]) - edge) < EDGE_STEP:
        timings.append(tuple(side_by_side(models, sample, EDGE_RUNS)))
    return timings


def time_ratio(before: Latency, after: Latency) -> float:
    """`after`'s time over `before`'s as a choice judges it: the higher of the medians' and the
    fastest runs' ratio."""
    return max(after.median / before.median, after.min / before.min)


def _time_ratio(models: list, sample: dict, runs: int) -> tuple[float, bool]:
    """The `time_ratio` of the second of two `models` timed side by side on `sample`, and
    whether bench's noise rule calls it faster."""
    before, after = side_by_side(models, sample, runs)
    verdict = after.versus(before, floor_ms=0)[1]  # (a choice: any difference counts)
    return time_ratio(before, after), verdict == "faster"


def required_gain(time_ratio: float) -> float:
    """The output SNR gain (dB) a variant taking `time_ratio` the time must bring: MIN_GAIN_DB,
    plus DB_PER_TIME dB per 1x of time it adds, minus as much per 1x it saves. Continuous in the
    ratio, so a choice that flips between runs flips only between trades of about the same worth."""
    return MIN_GAIN_DB + DB_PER_TIME * (time_ratio - 1)


def edge_ratio(gain_db: float) -> float:
    """The time ratio at which a variant `gain_db` closer to float stops being worth it: the
    inverse of `required_gain`."""
    return 1 + (gain_db - MIN_GAIN_DB) / DB_PER_TIME


def worth_trading(gain_db: float, time_ratio: float) -> bool:
    """Whether a variant `gain_db` closer to float (output SNR) at `time_ratio` the time is the
    better trade (`required_gain`)."""
    return gain_db >= required_gain(time_ratio)


def speed_accuracy_choices(
    builder: QuantBuilder,
    chosen: Variant,
    selection,
    ref_outputs,
    int8_asked: str | None = None,
    timed: bool = True,
) -> tuple[Variant, list[str]]:
    """Target auto: on this CPU, try the graph inputs' layers computing in float (on float weights
    when `small_weight_nodes` says so; else int8-stored), then the depthwise convs the profile
    left float in int8 (those reading an output the model chosen so far computes in float stay
    float: a depthwise conv mixes no channels, so a per-tensor range over channels of very
    different spans, as a float stem conv's output has, would cost it most), then the nodes the
    default `min_macs` left float in int8 (fewer float islands between int8 ones), then the int8
    convs writing a graph output computing in float (`_output_layers`: in int8 that output is
    8-bit, judged per channel too, `_judged_per_channel`); keep each that
    `trade` finds worth it; last, the layers near the input in float (`_float_near_input`).
    Where an option asks for INT8 compute (`int8_asked`), a variant computing no weighted node in
    INT8 gives way to one that does. Not `timed` (a target named, or no latency measured): the
    input and output layers alone, their time estimated (`_estimated_trade`) where they do at most
    MAX_ESTIMATED_SHARE of the int8 MACs; the others depend on the CPU's kernels more than an
    estimate can tell."""
    notes, reasons = [], {}
    nodes = {node.name: node for node in builder.model.graph}

    def in_float(variant: Variant, names: list[str], why: tuple[str, str]):
        """`names` computing in float: on float weights where `small_weight_nodes` says so
        (reason `why[0]`), else on int8-stored weights (`why[1]`)."""
        small = set(small_weight_nodes(builder.model, names))
        options = dataclasses.replace(
            variant.options,
            exclude_nodes=variant.options.exclude_nodes | small,
            weight_only_nodes=variant.options.weight_only_nodes | (set(names) - small),
        )
        how = TIMED_HERE if timed else ESTIMATED
        return names, options, {n: why[n not in small] + how for n in names}

    def input_layers(variant: Variant) -> tuple[list[str], QuantOptions, dict[str, str]]:
        names = _input_layers(builder.model, variant.info)
        return in_float(variant, names, (INPUT_FLOAT_WEIGHTS, INPUT_INT8_WEIGHTS))

    judged_outputs: set[str] = set()  # the graph outputs the output layers write

    def output_layers_float(variant: Variant) -> tuple[list[str], QuantOptions, dict[str, str]]:
        layers = _output_layers(builder.model, variant.info)
        judged_outputs.update(layers.values())
        return in_float(variant, list(layers), (OUTPUT_FLOAT_WEIGHTS, OUTPUT_INT8_WEIGHTS))

    def per_channel(variant: Variant) -> Variant:
        return _judged_per_channel(variant, judged_outputs, selection, ref_outputs)

    def depthwise_int8(variant: Variant) -> tuple[list[str], QuantOptions, dict[str, str]]:
        computed = set(variant.info.plan.nodes) | set(variant.info.plan.folded)
        names = _float_depthwise(variant.info)
        float_compute = set()
        for name in names:
            producer = _computing_producer(nodes[name])
            if producer is None or producer.name not in computed:
                float_compute.add(name)
        options = dataclasses.replace(
            variant.options,
            skip_depthwise=False,
            weight_only_nodes=variant.options.weight_only_nodes | float_compute,
        )
        kept = dict.fromkeys(float_compute, DEPTHWISE_EXACT)
        return [n for n in names if n not in float_compute], options, kept

    def small_int8(variant: Variant) -> tuple[list[str], QuantOptions, dict[str, str]]:
        if variant.options.min_macs != DEFAULT_MIN_MACS:  # the caller's own threshold stands
            return [], variant.options, {}
        names = [n for n, why in variant.info.kept_float.items() if TOO_SMALL in why]
        return names, dataclasses.replace(variant.options, min_macs=0), {}

    def as_measured(variant: Variant) -> Variant:
        return variant

    choices = [  # (what, the change, whether to int8, how both sides are judged)
        ("input layer(s) computing in float", input_layers, False, as_measured),
        ("depthwise conv(s) in int8", depthwise_int8, True, as_measured),
        (
            f"small node(s) in int8 (under {DEFAULT_MIN_MACS / 2**20:g}M multiply-adds each)",
            small_int8,
            True,
            as_measured,
        ),
        (
            "conv(s) writing a graph output computing in float (in int8, the output they write "
            "is 8-bit: judged per channel too)",
            output_layers_float,
            False,
            per_channel,
        ),
    ]
    for what, change, to_int8, judged in choices if timed else [c for c in choices if not c[2]]:
        names, options, why = change(chosen)
        if not names:
            continue
        share = None if timed else _mac_share(builder, chosen.info, names)
        if not timed and (share is None or share > MAX_ESTIMATED_SHARE):
            untried = (
                "their MACs not known: no estimate of its time"
                if share is None
                else f"{share:.0%} of the int8 MACs: too large a part to estimate its time"
            )
            notes.append(f"{len(names)} {what}: not tried ({untried})")
            continue
        candidate = _variant(builder, options, selection, ref_outputs)
        int8 = bool(int8_nodes(candidate.info))
        if int8_asked and int8 != bool(int8_nodes(chosen.info)):
            worth = int8
            measured = f"not timed: {int8_asked} asks for INT8 compute, and only one has it"
        elif timed:
            worth, measured = trade(judged(chosen), judged(candidate), selection[0])
        else:
            worth, measured = _estimated_trade(judged(chosen), judged(candidate), share)
        if worth:
            chosen = candidate
            reasons.update(why)
        elif to_int8:  # float as measured here, not by the profile's guess; weights as they were
            before = chosen.info.kept_float
            reasons.update({n: INT8_NOT_WORTH + _weights_part(before[n]) for n in names})
        notes.append(f"{len(names)} {what}: {'kept' if worth else 'not kept'} ({measured})")
    if timed:
        near = (NEAR_INPUT_FLOAT_WEIGHTS, NEAR_INPUT_INT8_WEIGHTS)
        chosen, why, tried = _float_near_input(
            builder,
            chosen,
            lambda v, names: in_float(v, names, near),
            selection,
            ref_outputs,
            int8_asked,
        )
        reasons.update(why)
        notes += tried
    chosen.info.kept_float.update(reasons)
    builder.options = chosen.options
    return chosen, notes


def _float_near_input(
    builder: QuantBuilder,
    chosen: Variant,
    in_float: Callable,
    selection,
    ref_outputs,
    int8_asked: str | None,
) -> tuple[Variant, dict[str, str], list[str]]:
    """The int8 layers near the input (`layer_depths` 2, 4, 8, ..., up to a quarter of the model's
    depth) computing in float (`in_float(variant, names)`), with the int8 depthwise convs reading
    their outputs (`DEPTHWISE_EXACT`), each set against `chosen` by `_trade_margin`: the best of
    those worth it is kept. Returns the model kept, its nodes' reasons and a note per depth
    tried. Noise an early layer adds passes through every later one: yolov8n_320's first 4
    layers in float were +8.6 dB of output SNR at 0.99x the time."""
    depths = layer_depths(builder.model)
    int8 = int8_nodes(chosen.info)
    tried, best = [], None  # best: (margin, the variant, its reasons, its depth)
    for depth in prefix_depths(depths):
        names = [n for n in int8 if depths.get(n, depth + 1) <= depth]
        readers = _depthwise_reading(builder.model, chosen.info, names)
        if not names or len(names) + len(readers) >= len(int8):
            continue  # none, or every int8 node
        if tried and len(names) == tried[-1][1]:
            continue  # the last depth's layers (nested: as many are the same)
        _, options, why = in_float(chosen, names)
        options = dataclasses.replace(
            options, weight_only_nodes=options.weight_only_nodes | set(readers)
        )
        candidate = _variant(builder, options, selection, ref_outputs)
        if int8_asked and not int8_nodes(candidate.info):
            continue
        margin, measured = _trade_margin(chosen, candidate, selection[0])
        tried.append((depth, len(names), len(readers), measured, margin))
        if margin >= 0 and (best is None or margin > best[0]):
            best = (margin, candidate, why | dict.fromkeys(readers, DEPTHWISE_EXACT), depth)
    notes = []
    for depth, count, readers, measured, margin in tried:
        if best and depth == best[3]:
            verdict = "kept"
        elif margin >= 0:
            verdict = f"worth it, but within {best[3]} the better trade"
        else:
            verdict = "not kept"
        also = f" (and {readers} depthwise conv(s) reading them)" if readers else ""
        notes.append(
            f"{count} layer(s) within {depth} of the input{also} in float: {verdict} ({measured})"
        )
    return (best[1], best[2], notes) if best else (chosen, {}, notes)


def _output_layers(model: ir.Model, info: BuildInfo) -> dict[str, str]:
    """{int8 conv of a build (`info`): the graph output its output (through a Relu/Clip folded
    into it) reaches as it is, or past ops that only move values (MOVES_VALUES: Reshape,
    DepthToSpace, ...)}. That output is 8-bit: ORT fuses a Conv's int8 kernel only with a
    QuantizeLinear after it (a MatMul's or Gemm's computes in int8 with a float output)."""
    nodes = {node.name: node for node in model.graph}
    closing = {owner: nodes[act] for act, owner in info.plan.folded.items()}
    found = {}
    for name in int8_nodes(info):
        if RULES[info.op_types[name]].float_output:
            continue
        value = closing.get(name, nodes[name]).outputs[0]
        while not value.is_graph_output():
            uses = list(value.uses())
            if len(uses) != 1 or uses[0].node.op_type not in MOVES_VALUES or uses[0].idx != 0:
                break
            value = uses[0].node.outputs[0]
        if value.is_graph_output():
            found[name] = value.name
    return found


def _judged_per_channel(
    variant: Variant, outputs: Collection[str], selection, ref_outputs
) -> Variant:
    """`variant` with each of the graph `outputs` judged per channel (axis 1) too, beside whole:
    an output one range quantizes to 8 bits loses its narrow channels first (a detection head's
    class logits beside its box coordinates in pixels: 16 dB where the whole output read 24), and
    its SNR whole hides that. Channels dead in float (DEAD_CHANNEL) are left out."""
    names = sorted(outputs)
    if not names:
        return variant
    runs = run_samples(variant.model, selection, names)
    refs, gots = [{} for _ in runs], [{} for _ in runs]
    for name in names:
        floats = [np.asarray(ref[name]) for ref in ref_outputs]
        if floats[0].ndim < 2 or not 1 < floats[0].shape[1] <= MAX_JUDGED_CHANNELS:
            continue
        energy = np.mean(
            [np.mean(np.square(f.astype(np.float64)), axis=_not_1(f)) for f in floats], 0
        )
        floor = DEAD_CHANNEL**2 * float(np.mean(energy))
        for channel in np.flatnonzero(energy > floor):
            key = f"{name} (channel {channel})"
            for ref, got, f, run in zip(refs, gots, floats, runs):
                ref[key], got[key] = f[:, channel], np.asarray(run[name])[:, channel]
    if not refs[0]:
        return variant
    return dataclasses.replace(variant, scored={**variant.scored, **compare_outputs(refs, gots)})


def _not_1(array: np.ndarray) -> tuple[int, ...]:
    """Every axis of `array` but its channel axis (1)."""
    return tuple(axis for axis in range(array.ndim) if axis != 1)


def _computing_producer(node: ir.Node) -> ir.Node | None:
    """The node computing `node`'s first input, past layout ops (Pad, Cast, ...); None: a graph
    input or initializer."""
    producer = node.inputs[0].producer()
    while producer is not None and producer.op_type in LAYOUT_OPS and producer.inputs:
        producer = producer.inputs[0].producer()
    return producer


def _depthwise_reading(model: ir.Model, info: BuildInfo, names: Sequence[str]) -> list[str]:
    """The int8 depthwise convs of a build (`info`) that read an output of `names` (or of an
    activation folded into one of them) and are not among them."""
    floated = set(names)
    found = []
    for node in model.graph:
        if node.name in floated or node.name not in info.plan.nodes or not is_depthwise(node):
            continue
        producer = _computing_producer(node)
        if producer is not None and (
            producer.name in floated or info.plan.folded.get(producer.name) in floated
        ):
            found.append(node.name)
    return found


def int8_nodes(info: BuildInfo) -> list[str]:
    """The weighted nodes of a build (`info`) that compute in INT8."""
    return [n for n in info.plan.nodes if RULES[info.op_types[n]].kind == WEIGHTED]


def stored_only_nodes(info: BuildInfo) -> list[str]:
    """The nodes of a build (`info`) whose op INT8 can only store the weights of (no int8
    kernel: a ConvTranspose), computing in float on them."""
    return [n for n in info.plan.nodes if RULES[info.op_types[n]].kind == WEIGHT_ONLY]


def _weights_part(reason: str) -> str:
    """What a kept-float reason says after its first ';' (how the weights are kept), or ""."""
    return reason[reason.index(";") :] if ";" in reason else ""
