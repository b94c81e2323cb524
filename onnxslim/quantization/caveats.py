"""What an INT8 outcome is told: warnings when it drifts past the quality bars, is no faster
than the lossless float model, computes nothing in INT8 or is changed by ONNX Runtime's rewrites,
and what a budget's fallback cost in speed."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence

import numpy as np
import onnx_ir as ir

from onnxslim.bench import DISTURBED_GAP, PER_RUN_NOISE, Latency
from onnxslim.data import InputSpec, sample_shapes
from onnxslim.drift import (
    MIN_PREDICTION_SAMPLES,
    Budget,
    Drift,
    output_parts,
    worst_snr,
)
from onnxslim.errors import CheckFailedError
from onnxslim.model.graph import all_nodes
from onnxslim.model.stats import constant_size, model_stats
from onnxslim.passes.fold import computable_values
from onnxslim.quantization.ops import RULES, WEIGHTED
from onnxslim.quantization.recovery import STORED_MARGIN, STORED_MISSED
from onnxslim.quantization.report import (
    WEIGHT_ONLY_MODE,
    Outcome,
    int8_stored,
    kept_float_counts,
)
from onnxslim.render.format import counted, human_bytes, input_shapes, milliseconds
from onnxslim.verify import random_nodes

#: Integer kernels and dequantization: a model quantized before (`nothing_int8_warning`).
INTEGER_OP_TYPES = frozenset(
    {"ConvInteger", "MatMulInteger", "QLinearConv", "QLinearMatMul", "QGemm", "QAttention"}
    | {"DynamicQuantizeLSTM", "DynamicQuantizeMatMul", "MatMulIntegerToFloat"}
    | {"DequantizeLinear", "MatMulNBits", "GatherBlockQuantized"}
)
#: What static INT8 that sped nothing up says where the model has MatMul weights.
DYNAMIC_HINT = (
    "its MatMuls compute in INT8 with --int8 dynamic (mode='dynamic' in Python), which may be "
    "faster here: time both with `onnxslim bench`"
)
#: Recurrent ops: INT8 leaves them float (`recurrent_note`).
RECURRENT_OPS = ("GRU", "LSTM", "RNN")
#: Samples named by index in a warning (`nan_samples_warning`).
MAX_LISTED_SAMPLES = 5
#: The op types that compute with weights in INT8 (`nothing_int8_warning`).
WEIGHTED_OP_TYPES = frozenset(op for op, rule in RULES.items() if rule.kind == WEIGHTED)
RUNTIME_MARGIN_DB = 3.0  # ORT's rewrites may cost this much output SNR before the report says so
#: mode "auto" without a budget keeps static INT8 when its worst selection sample meets this
QUALITY_BAR = Budget((("cosine", ">=", 0.99),))
#: without a budget, an output missing it is warned of as well as one missing QUALITY_BAR: the
#: cosine is blind to a gain (a scale), the pooled SNR is not (17 dB: zero-mean noise as large
#: as cosine 0.99 allows)
SNR_BAR = Budget((("snr", ">=", 17.0),))


def rewrite_warning(ran: Mapping[str, Drift], written: Mapping[str, Drift]) -> str | None:
    """A warning when ORT's rewrites cost more than RUNTIME_MARGIN_DB of output SNR (`ran`: drift
    as ORT runs the model, `written`: with its optimizations off), else None."""
    ran_db, written_db = worst_snr(ran), worst_snr(written)
    if written_db - ran_db > RUNTIME_MARGIN_DB:
        return (
            f"warning: ONNX Runtime's graph optimizations change the INT8 model's results: output "
            f"SNR {ran_db:.1f} dB as ORT runs it, {written_db:.1f} dB as written"
        )
    return None


def missed_on_test_warning(budget, selection: int, test: int, missed: list[str]) -> list[str]:
    """The warning for a `budget` held on `selection` samples that the `test` samples miss
    (`missed`: Budget.check's findings on them; none: no warning)."""
    if not missed:
        return []
    return [
        f"warning: the budget {budget} held on the {selection} selection samples but not on the "
        f"{test} test samples: {missed[0]}"
    ]


def drift_warning(
    drift: Mapping[str, Drift],
    budget: Budget | None,
    split: str,
    selection: int | None = None,
    remedy: str | None = None,
    selection_drift: Mapping[str, Drift] | None = None,
    reordered: Collection[str] = (),
) -> list[str]:
    """A warning when, with no budget asked for, an output's worst sample misses QUALITY_BAR or its
    SNR misses SNR_BAR (outputs the float model gives as zeros aside; each bar missed named):
    the INT8 model may be broken for the task, and a budget of the bars missed would return its
    noisiest nodes to float (on `selection` samples too few to hold one: with more of them),
    or what `remedy` says. Where the `split` misses neither, the `selection_drift` of the same
    model is judged so (a few test samples can miss the rarer inputs the selection samples
    have: magika's 14 test files all above cosine 0.999, one selection file at 0.968). Each
    drift may hold the parts of an output (`drift.with_parts`: a detector's scores apart from
    its boxes), which a budget judges too. Where every output missing a bar is `reordered`
    (`reordered_outputs`), the warning says their rows' order counts as error there, and
    suggests no budget, which would chase the order (a RetinaNet's boxes at cosine 0.79 held
    each of float's top 10 detections)."""
    if budget is not None:
        return []
    warned = _drift_warning(drift, split, selection, remedy, reordered=reordered)
    if not warned and selection_drift and split != "selection":
        unseen = f" (the {split} samples miss it: rarer inputs drift that far)"
        warned = _drift_warning(selection_drift, "selection", selection, remedy, unseen, reordered)
    return warned


def _drift_warning(
    drift: Mapping[str, Drift],
    split: str,
    selection: int | None,
    remedy: str | None,
    unseen: str = "",
    reordered: Collection[str] = (),
) -> list[str]:
    """`drift_warning` on the samples of one `split`; `unseen` closes the warning of a drift far
    from float (not that of a weak sample, whose cosine measures noise)."""
    by_cosine = sorted(drift.values(), key=_closeness)
    by_snr = sorted((d for d in drift.values() if not _silent(d)), key=_loudness)
    bars = ((QUALITY_BAR, by_cosine), (SNR_BAR, by_snr))
    misses = [(bar, missed) for bar, outputs in bars if (missed := bar.check(_by_name(outputs)))]
    if not misses:
        return []
    failing = {d.name for bar, outputs in bars for d in outputs if bar.check({d.name: d})}
    if failing and all(any(_part_of(name, out) for out in reordered) for name in failing):
        return [
            f"warning: INT8's element-wise drift on the {split} samples misses the bars "
            f"({'; '.join(missed[0] for _, missed in misses)}), on outputs whose rows come in an "
            "order a TopK or NonMaxSuppression sets: rows that swap places count as error there, "
            "so it overstates INT8's error (a budget would chase the order): compare matched "
            f"detections on your task{unseen}"
        ]
    more = (
        f" with at least {MIN_PREDICTION_SAMPLES} selection samples (it has {selection}: more "
        "calibration data, or --eval-split, eval_split= in Python)"
        if selection is not None and selection < MIN_PREDICTION_SAMPLES
        else ""
    )
    spec = ",".join(str(bar) for bar, _ in misses)
    remedy = remedy or (
        f"give --max-drift {spec} (max_drift= in Python){more} to return the noisiest nodes "
        "to float"
    )
    # the cosine alone missed, each output only on samples with little signal
    missing = [d for d in by_cosine if QUALITY_BAR.check({d.name: d})]
    weak = [_weak_worst_sample(d) for d in missing] if misses[0][0] is QUALITY_BAR else [None]
    if len(misses) == 1 and weak and None not in weak:
        return [
            f"warning: INT8's worst {split} sample misses {QUALITY_BAR} "
            f"({misses[0][1][0]}), but float's output there is weak ({weak[0]:.1%} of the samples' "
            f"RMS norm: a detector's map of a picture with nothing to find, say), where a cosine "
            f"measures noise; over the samples its SNR is {by_cosine[0].snr_db:.1f} dB: check it "
            f"on your task (a budget would judge it by that sample too)"
        ]
    return [
        f"warning: INT8 drifts far from float on the {split} samples "
        f"({'; '.join(missed[0] for _, missed in misses)}): check it on your task, or {remedy}"
        f"{unseen}"
    ]


#: A sample whose float output's norm is below this share of the samples' RMS norm is weak: its
#: cosine to INT8's measures noise (CRAFT's score map of a picture without text peaks at 0.02)
WEAK_SIGNAL = 0.1


def _weak_worst_sample(drift: Drift) -> float | None:
    """Where every sample whose error could miss QUALITY_BAR's cosine (relative squared error past
    1 - cosine^2, as the per-sample sums tell) has a weak float output (below WEAK_SIGNAL of the
    samples' RMS norm): the norm of the one INT8 is relatively furthest from, as such a share;
    else None."""
    sums = [(signal, error) for signal, error in drift.sample_errors or () if signal > 0]
    if not sums or drift.snr_db is None:
        return None
    mean_signal = sum(signal for signal, _ in sums) / len(sums)
    (_, _, cosine), *_ = QUALITY_BAR.criteria
    shares = [
        math.sqrt(signal / mean_signal)
        for signal, error in sorted(sums, key=lambda pair: -pair[1] / pair[0])
        if error / signal > 1 - cosine**2
    ]
    return shares[0] if shares and max(shares) < WEAK_SIGNAL else None


def parts_notes(scored: Mapping[str, Drift]) -> list[str]:
    """For each output the choices compare in parts (`drift.scored_drift`'s drift: a detector's
    scores beside its box coordinates), each part's SNR: one row of the drift table
    hid which part broke (LEADER's fingerprint map: its quality score beside a direction)."""
    return [
        f"output {name!r} in parts (as the choices compare it) on the test samples, output SNR: "
        + ", ".join(f"its {label} {_snr_text(drift)}" for label, drift in parts)
        for name, parts in output_parts(scored).items()
    ]


def _snr_text(drift: Drift) -> str:
    """An SNR for a note: "exact" where identical, why there is none (another shape, ...)."""
    if drift.snr_db is None:
        return f"not measured ({drift.mismatch or 'no finite values'})"
    return "exact" if drift.snr_db == math.inf else f"{drift.snr_db:.1f} dB"


def _silent(drift: Drift) -> bool:
    """Whether the float model gives this output as all zeros on every sample measured."""
    return bool(drift.sample_errors) and not any(signal for signal, _ in drift.sample_errors)


def says_nothing(drift: Mapping[str, Drift]) -> bool:
    """Whether the float model gives every float output as zeros or nothing (empty) on every
    sample measured (the others have no drift to measure): no comparison of drifts can judge
    INT8 there."""
    measured = [d for d in drift.values() if d.sample_errors]
    return bool(measured) and all(map(_silent, measured))


#: Ops whose result is ordered by value (detections sorted by score).
ORDERING_OPS = frozenset({"TopK", "NonMaxSuppression"})


def _by_name(drifts) -> dict[str, Drift]:
    return {d.name: d for d in drifts}


def _part_of(name: str, output: str) -> bool:
    """Whether the drift `name` is `output`'s, or one of its parts' (`drift.with_parts`)."""
    return name == output or name.startswith(f"{output} (")


def reordered_outputs(model: ir.Model, drift: Mapping[str, Drift]) -> list[str]:
    """The measured outputs (in `drift`) computed from a TopK's or NonMaxSuppression's results in
    the main graph: where INT8 swaps near-equal scores, whole rows change places."""
    ordered = _ordered_values(model.graph)
    return [v.name for v in model.graph.outputs if v.name in drift and v in ordered]


def reordered_outputs_note(reordered: Sequence[str]) -> list[str]:
    """A note naming the `reordered_outputs`: their element-wise drift overstates INT8's error
    (YOLO exports that sort detections in the graph)."""
    if not reordered:
        return []
    names = ", ".join(repr(name) for name in reordered)
    return [
        f"{names} come(s) in an order a TopK or NonMaxSuppression sets: where INT8 "
        "swaps near-equal scores, rows change places, so their element-wise drift (and the "
        "choices that read it) overstates INT8's error; compare matched detections on your data"
    ]


def _ordered_values(graph: ir.Graph) -> set[ir.Value]:
    """The values of `graph` computed from a TopK's or NonMaxSuppression's results."""
    pending = [
        value
        for node in graph
        if node.op_type in ORDERING_OPS and node.domain == ""
        for value in node.outputs
    ]
    reached: set[ir.Value] = set()
    while pending:
        value = pending.pop()
        if value not in reached:
            reached.add(value)
            pending.extend(out for user, _ in value.uses() for out in user.outputs)
    return reached


def silent_outputs_warning(drift: Mapping[str, Drift], split: str) -> list[str]:
    """A warning naming the outputs the float model gives as all zeros on every `split` sample:
    their drift says nothing of INT8 (data that does not drive them, e.g. random lengths)."""
    silent = [repr(d.name) for d in drift.values() if _silent(d)]
    if not silent:
        return []
    return [
        f"warning: the float model gives {', '.join(silent)} as all zeros on every {split} "
        "sample, so its drift there says nothing of INT8: calibrate and check with inputs that "
        "drive it"
    ]


def one_size_note(specs: Sequence[InputSpec], samples: Sequence[Mapping], split: str) -> list[str]:
    """A note naming the inputs that may take other sizes (a dynamic dim past the batch dim, or
    the only dim) but had one size past the batch dim on every `split` sample: the drift at other
    sizes, such as a decoder's other cache lengths, is not measured."""
    sized = [s.name for s in specs if any(not isinstance(d, int) for d in _past_batch(s.shape))]
    sizes = {
        name: {_past_batch(np.shape(sample[name])) for sample in samples if name in sample}
        for name in sized
    }
    one = [name for name, seen in sizes.items() if len(seen) == 1]
    if not one:
        return []
    shapes = input_shapes({n: e for n, e in sample_shapes(samples[:1]).items() if n in one})
    count = f"{len(samples)} {split} sample" + ("s" if len(samples) > 1 else "")
    return [
        f"drift measured at one size of {shapes} on the {count}: the model may take other "
        "sizes, whose drift is not measured (give samples of several sizes to measure it there)"
    ]


#: ops that pick among values, by the output giving the pick (an index)
PICKING_OPS = {"ArgMax": 0, "ArgMin": 0, "TopK": 1}


def picks_note(model: ir.Model, count: int, split: str) -> list[str]:
    """A note where the model picks inside (an ArgMax, ArgMin or TopK index read by other nodes:
    greedy decoding feeds each step's pick to the next): where INT8 flips a pick, all after it
    changes, on inputs rarer than `count` `split` samples show (a g2p decoder not tuned on:
    worst cosine 0.999996 on 40 test samples, 0.52 on one word in 300)."""
    picks = Counter(
        node.op_type
        for node in all_nodes(model)
        if node.domain == ""
        and node.op_type in PICKING_OPS
        and node.inputs[0] is not None
        # (not a pick among token ids; a type not inferred: taken as computed)
        and (node.inputs[0].dtype is None or node.inputs[0].dtype.is_floating_point())
        and len(node.outputs) > PICKING_OPS[node.op_type]
        and node.outputs[PICKING_OPS[node.op_type]].uses()
    )
    if not picks:
        return []
    ops = counted(sorted(picks.items()))
    return [
        f"the model picks inside ({ops} of computed values read by other nodes: a decoder's "
        "greedy steps, a detector's top boxes): where "
        f"INT8 flips a pick, all after it changes, on inputs the {count} {split} samples may "
        "be too few to include; check on many of your inputs with `onnxslim bench MODEL "
        "INT8_MODEL --inputs DATA`"
    ]


def _past_batch(shape: tuple) -> tuple:
    """A shape's dims past the batch dim (the only dim of a 1-D shape)."""
    return shape[1:] if len(shape) > 1 else shape


def saturated_outputs_warning(drift: Mapping[str, Drift], split: str) -> list[str]:
    """A warning naming the outputs the float model gives as hard 0s and 1s on every `split`
    sample (a saturated softmax or sigmoid: inputs outside the range the model expects, such as
    random ones), as INT8 rarely moves them: their drift says little of INT8."""
    saturated = [repr(d.name) for d in drift.values() if d.saturated]
    if not saturated:
        return []
    return [
        f"warning: the float model gives {', '.join(saturated)} as hard 0s and 1s on every "
        f"{split} sample (saturated: inputs outside the range it expects?), so its drift there "
        "says little of INT8: calibrate and check with real inputs"
    ]


def _closeness(drift: Drift) -> float:
    """An output's worst-sample cosine to float, for ordering (mismatched or broken: lowest)."""
    if drift.mismatch or drift.nonfinite_mismatches:
        return -math.inf
    cosine = drift.budget_cosine()
    return math.inf if cosine is None else cosine


def _loudness(drift: Drift) -> float:
    """An output's SNR against float, for ordering (none measured: last)."""
    return math.inf if drift.snr_db is None else drift.snr_db


def disturbed_timing_note(timed: Mapping[str, Latency], names: Mapping[str, str]) -> list[str]:
    """A warning when other load disturbed the final timing (`timed`: Latency by label, "float"
    the reference; bench.disturbed): its latency figures may be off. `names`: what each label
    shows as."""
    hit = [names[label] for label, t in timed.items() if t.disturbed_against(timed["float"])]
    if not hit:
        return []
    return [
        f"warning: the latency figures may be off: other load disturbed the timing (the median "
        f"and the fastest runs of {', '.join(hit)} against float disagree by more than "
        f"{DISTURBED_GAP:.2f}x); time again on a quiet machine with `onnxslim bench`"
    ]


def lossless_warning(int8: Latency, lossless: Latency) -> list[str]:
    """A warning when INT8 is not measurably faster than the lossless float model it was made from
    (timed side by side): that model keeps full accuracy."""
    ratio, verdict = int8.versus(lossless)
    if verdict == "faster":
        return []
    medians = milliseconds(int8.median, lossless.median)
    fastest = milliseconds(int8.min, lossless.min)
    measured = (
        f"median {medians[0]} ms vs {medians[1]} ms, {ratio:.2f}x; fastest runs "
        f"{fastest[0]} vs {fastest[1]} ms, {int8.min / lossless.min:.2f}x"
    )
    if verdict == "slower":
        return [
            f"warning: INT8 is slower than onnxslim's lossless float model on this CPU "
            f"({measured}): that model (without --int8) runs faster, with no drift"
        ]
    return [
        f"warning: INT8 is not measurably faster than onnxslim's lossless float model on this CPU "
        f"({measured}: within noise unless both ratios are below {1 / (1 + PER_RUN_NOISE):.2f}): "
        "that model (without --int8) runs as fast, with no drift"
    ]


def integer_kernels(model: ir.Model) -> Counter:
    """The nodes of `model`'s main graph that compute on integers or dequantize, by op type."""
    return Counter(node.op_type for node in model.graph if node.op_type in INTEGER_OP_TYPES)


def computes_int8(outcome: Outcome, before: Counter) -> bool:
    """Whether a weighted node of `outcome` computes in INT8 that did not in the input (`before`:
    its `integer_kernels`)."""
    return any(op in WEIGHTED_OP_TYPES for op in outcome.quantized) or bool(
        integer_kernels(outcome.model) - before
    )


#: What the warning of a fallback that returned every node to float says of the int8-stored
#: weights it tried first, by the reason it gives their nodes.
STORED_TRIED = {
    STORED_MISSED: " (the fallback tried int8-stored weights computing in float first: they "
    "missed it too)",
    STORED_MARGIN: " (the fallback tried int8-stored weights computing in float first: they met "
    "it on every selection sample, not its margin for new samples)",
}


def nan_samples_warning(samples: Sequence[Mapping]) -> list[str]:
    """A warning naming the samples (by index, from 0) holding NaN in a float input: the
    statistics INT8 is built from take only the finite values the model computes from them (one
    NaN in one of openWakeWord's 64 calibration samples had made GPTQ's statistics NaN: a model
    at cosine 0.09), but the data may be broken (an inf may not be: an additive mask's -inf)."""
    held: dict[int, list[str]] = {}
    for index, sample in enumerate(samples):
        names = [
            name
            for name, value in sample.items()
            if isinstance(value, np.ndarray) and value.dtype.kind == "f" and np.isnan(value).any()
        ]
        if names:
            held[index] = names
    if not held:
        return []
    listed = ", ".join(str(index) for index in list(held)[:MAX_LISTED_SAMPLES])
    more = f" and {len(held) - MAX_LISTED_SAMPLES} more" if len(held) > MAX_LISTED_SAMPLES else ""
    inputs = ", ".join(
        f"'{name}'" for name in sorted({n for names in held.values() for n in names})
    )
    return [
        f"warning: {len(held)} of {len(samples)} samples (index {listed}{more}, from 0) hold NaN "
        f"in float input {inputs}: ranges and weight statistics use only the finite values the "
        "model computes from them, and drift compares finite positions; check the data if the "
        "model does not take NaN"
    ]


def _stored_weights(stored: int) -> str:
    """How the weights of a model computing nothing in INT8 are kept: `stored` weighted nodes
    on int8-stored weights."""
    return (
        f"{stored} weighted node(s) keep int8-stored weights (a smaller file than float weights "
        "make)"
    )


def budget_then_float_compute_warning(returned: int, stored: int) -> str:
    """A warning where the budget returned `returned` nodes to float and INT8 compute of the rest
    then lost the timed trade against float compute on the same int8-stored weights
    (`modes.int8_or_float`; `stored`: the weighted nodes so kept): nothing computes in INT8."""
    return (
        "warning: nothing heavy computes in INT8, so the result is no faster than onnxslim's "
        f"lossless float model (without --int8): with {returned} node(s) back in float for the "
        "budget, INT8 compute of the rest was not worth its time against float compute on the "
        f"same int8-stored weights (its note says why); {_stored_weights(stored)}. A looser "
        "budget or more selection samples (a narrower margin for new samples) may leave INT8 "
        "compute worth it"
    )


def nothing_int8_warning(
    outcome: Outcome,
    before: Counter,
    dynamic_untried: bool = False,
    budget: Budget | None = None,
) -> list[str]:
    """A warning when no weighted node computes in INT8 that did not before (`before`: the
    input's `integer_kernels`): nothing heavy is faster, so the result is no faster than the
    lossless float model; why (the `budget`, None: mode auto's quality bar; a model quantized
    already, the planner's reasons); `dynamic_untried`: static INT8 was chosen where MatMuls
    could compute in dynamic INT8."""
    stored = int8_stored(outcome.kept_float)
    if outcome.mode == WEIGHT_ONLY_MODE and stored:  # chosen, its note says why
        return []
    if computes_int8(outcome, before):  # a weighted node, or something else (a Gemm, ...)
        return []
    if outcome.fallback:
        reasons = {item.get("reason") for item in outcome.fallback}
        tried = next((text for reason, text in STORED_TRIED.items() if reason in reasons), "")
        weights = (
            _stored_weights(stored)
            if stored
            else f"with float weights it is the float model in size too{tried}"
        )
        goal, looser = (
            ("the budget", "A looser budget")
            if budget
            else (
                f"mode auto's quality bar ({QUALITY_BAR})",
                "A budget of your own looser than the bar (--max-drift)",
            )
        )
        return [
            f"warning: {goal} returned every node left in INT8 to float "
            f"({len(outcome.fallback)} node(s)): nothing heavy computes in INT8, so it is no "
            f"faster than onnxslim's lossless float model (without --int8); {weights}. {looser} "
            "or more selection samples (a narrower margin for new samples) leave more in INT8"
        ]
    reasons = kept_float_counts(outcome.kept_float)
    why = (
        "; ".join(f"{reason}: {count} node(s)" for reason, count in reasons.items())
        if reasons
        else "dynamic INT8 was tried and not kept: the note above says why"
        if outcome.dynamic_declined
        else f"no {', '.join(sorted(WEIGHTED_OP_TYPES))} with constant weights was selected"
        + (
            " (dynamic INT8 quantizes MatMul, Gemm and LSTM weights)"
            if outcome.mode == "dynamic"
            else ""
        )
    )
    if before:
        kernels = counted(before.most_common())
        if stored:  # weight-only where that file is smaller (api._finish)
            return [
                f"warning: the model is quantized already ({kernels}) and nothing more computes "
                f"in INT8 ({why}): the result is no faster than onnxslim's lossless model of it "
                "(without --int8)"
            ]
        return [
            f"warning: the model is quantized already ({kernels}) and nothing more was "
            f"quantized ({why}): the result is onnxslim's lossless model of it (without --int8)"
        ]
    half = any(reason.startswith(("weight is float16", "weight is bfloat16")) for reason in reasons)
    return [
        f"warning: no weighted node computes in INT8 ({why}): the result is no faster than "
        "onnxslim's lossless float model (without --int8)"
        + ("; INT8 starts from float32 weights: quantize the float32 model" if half else "")
        + (f"; {DYNAMIC_HINT}" if dynamic_untried else "")
    ]


def quantized_before_note(outcome: Outcome, before: Counter) -> list[str]:
    """A note where the input was quantized in part already (`before`: its `integer_kernels`)
    and INT8 quantized more of it (computing in INT8, or weight-only): what it had stays."""
    weight_only = outcome.mode == WEIGHT_ONLY_MODE and int8_stored(outcome.kept_float)
    if not before or not (weight_only or computes_int8(outcome, before)):
        return []
    kernels = counted(before.most_common())
    return [
        f"the model was quantized in part already ({kernels}): those nodes stay as they were, "
        "the rest is quantized as reported"
    ]


def recurrent_note(
    model: ir.Model,
    result: ir.Model | None = None,
    dynamic_int8: bool = False,
    dynamic_tried: bool = False,
    excluded: Collection[str] = frozenset(),
) -> list[str]:
    """A note naming the recurrent nodes (GRU, LSTM, RNN) of the main graph of the float `model`
    that INT8 left in float (in `result`, the INT8 model; None: all), with their share of the
    model's weights (an RNN's report else lists none of them). `dynamic_int8`: the result is
    dynamic INT8, which left its LSTMs float; `dynamic_tried`: dynamic INT8 was tried and not
    kept (the notes say why); `excluded`: the nodes the user kept float (their LSTMs so said)."""
    nodes = _recurrent_nodes(model)
    if result is not None:
        left = {n.name for n in _recurrent_nodes(result)}
        nodes = [n for n in nodes if n.name in left]
    if not nodes:
        return []
    # silero's LSTM reads its weights through Slice and Concat of initializers: count those too,
    # each once (42% of the weights read as 0%)
    computable = computable_values(model.graph)
    weights = [
        v
        for n in nodes
        for v in n.inputs
        if v is not None and (v.const_value is not None or v in computable)
    ]
    held = sum(constant_size(leaf) for leaf in _constant_leaves(weights))
    total = model_stats(model).parameters
    share = f" ({held / total:.0%} of the weights)" if total else ""
    counts = Counter(n.op_type for n in nodes)
    listed = counted(counts.items())
    if "LSTM" not in counts:
        return [f"recurrent nodes left in float: {listed}{share}; INT8 quantizes none of them"]
    why = "only dynamic INT8 (--int8 dynamic) quantizes an LSTM (one whose weights are constants)"
    if all(n.name in excluded for n in nodes if n.op_type == "LSTM"):
        why = "the LSTMs are excluded (--exclude-op, --exclude-node)"
    elif dynamic_int8:
        why = "they stay float in this dynamic INT8 model (the nodes kept in float say why)"
    elif dynamic_tried:
        why = "dynamic INT8, which quantizes LSTMs, was tried and not kept (the notes say why)"
    others = "INT8 quantizes no GRU or RNN; " if counts.keys() - {"LSTM"} else ""
    return [f"recurrent nodes left in float: {listed}{share}; {others}{why}"]


def _recurrent_nodes(model: ir.Model) -> list[ir.Node]:
    return [n for n in model.graph if n.op_type in RECURRENT_OPS and n.domain in ("", "ai.onnx")]


def _constant_leaves(values: Iterable[ir.Value]) -> set[ir.Value]:
    """The constants (initializers, Constant nodes' outputs) `values` (constants, or values
    `computable_values` computes from constants alone) are or are computed from."""
    leaves, stack, seen = set(), list(values), set()
    while stack:
        current = stack.pop()
        if current is None or current in seen:
            continue
        seen.add(current)
        producer = current.producer()
        if current.const_value is not None or producer is None or producer.op_type == "Constant":
            leaves.add(current)
        else:
            stack.extend(producer.inputs)
    return leaves


#: INT8's peak memory per byte of the model (float, INT8 and candidate models, and the sessions
#: timed side by side): 9.5x on a 0.19 GiB encoder (`benchmarks/large.py --tools onnxslim-int8`).
MEMORY_PER_MODEL_BYTE = 10


def not_faster_note(
    int8: Latency,
    float_: Latency,
    speedup: float,
    required: bool = False,
    weight_only: bool = False,
) -> list[str]:
    """A note when INT8 (`int8`'s timing) is not faster than float (`float_`'s; `speedup` the
    ratio reported), a warning when measurably slower; CheckFailedError when a speedup is
    `required`. `weight_only`: the result computes in float on int8-stored weights, and says so."""
    if speedup >= 1.0:
        return []
    what = "weight-only INT8 (float compute on int8 weights)" if weight_only else "INT8"
    medians = milliseconds(int8.median, float_.median)
    message = (
        f"{what} is not faster than float on this CPU: {medians[0]} ms vs {medians[1]} ms "
        f"({1 / speedup:.2f}x the time)"
    )
    message += ": it makes the file smaller, not the model faster" if weight_only else ""
    if required:
        raise CheckFailedError(message)
    return [f"warning: {message}" if int8.versus(float_)[1] == "slower" else message]


def memory_warning(
    model_bytes: int, available: int | None, per_byte: int = MEMORY_PER_MODEL_BYTE
) -> str | None:
    """A warning when quantizing a model of `model_bytes` likely needs more memory (`per_byte`
    bytes per byte of it) than the `available` bytes (None: unknown, no warning)."""
    needed = per_byte * model_bytes
    if available is None or needed <= available:
        return None
    return (
        f"INT8 of this {human_bytes(model_bytes)} model may need about {human_bytes(needed)} of "
        f"memory ({per_byte}x the model) and {human_bytes(available)} is available: "
        "it may run out of memory; free some, or quantize on a machine with more"
    )


def bigger_file_warning(size_before: int, size_after: int) -> list[str]:
    """A warning when the INT8 model's serialized size `size_after` exceeds the input's."""
    if size_after <= size_before:
        return []
    return [
        f"warning: the INT8 model is bigger than the input ({human_bytes(size_after)} vs "
        f"{human_bytes(size_before)}, {size_after / size_before:.2f}x): likely its weights were "
        "stored compactly already (int8 or float16), or are few beside the scales INT8 adds"
    ]


def fallback_cost_note(count: int, final: Latency, all_int8: Latency, budget: str | None) -> str:
    """What the `count` nodes the budget (None: mode auto's quality bar) returned to float cost in
    speed: `final` against `all_int8` (them in INT8), timed side by side (bench's noise rule)."""
    ratio, verdict = final.versus(all_int8)
    cost = "cost no measurable speed"
    if verdict == "slower":
        cost = f"cost speed: {ratio:.2f}x the time"
    goal = "the budget" if budget else "mode auto's quality bar"
    times = milliseconds(final.median, all_int8.median)
    return (
        f"the {count} node(s) in float for {goal} {cost} "
        f"({times[0]} ms vs {times[1]} ms with them in INT8)"
    )


def random_ops_warning(model: ir.Model) -> list[str]:
    """A model with random ops (VITS's noise) gives other values on each run: the drift figures
    and the choices made on them mix INT8's error with the model's own randomness."""
    found = random_nodes(model)
    if not found:
        return []
    ops = counted(sorted(found.items()))
    return [
        f"warning: the model has random ops ({ops}): its outputs change from run to run, so "
        "the drift figures and the choices made on them include that randomness"
    ]


#: ONNX Runtime's own optimized forms, by domain (None: all its ops): its CPU layout ops (NCHWc
#: Conv, ReorderInput, ...) and fused ops, which a graph saved after its optimizations holds.
ORT_OPTIMIZED_OPS = {
    "com.microsoft.nchwc": None,
    "com.microsoft": frozenset({"FusedConv", "FusedGemm", "FusedMatMul", "NhwcConv"}),
}


def _ort_optimized(node: ir.Node) -> bool:
    ops = ORT_OPTIMIZED_OPS.get(node.domain, ())
    return ops is None or node.op_type in ops


def ort_optimized_warning(model: ir.Model) -> list[str]:
    """A model ONNX Runtime optimized already (a file saved after a session's optimizations)
    holds ORT's own ops where the weighted ones were, which static INT8 does not quantize."""
    found = Counter(f"{node.domain}:{node.op_type}" for node in model.graph if _ort_optimized(node))
    if not found:
        return []
    return [
        f"warning: the model holds ONNX Runtime's own optimized ops ({counted(found.most_common())}"
        "; a graph saved after its optimizations), which INT8 does not quantize: quantize the "
        "model as exported, before ONNX Runtime's optimizations (they run again at load)"
    ]
