"""Mode auto's choices between static INT8, dynamic INT8 and float compute on int8-stored
weights: by drift on the selection samples and, where they are timed, by speed on this CPU."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Mapping

import onnx
import onnx_ir as ir

from onnxslim.bench import PER_RUN_NOISE
from onnxslim.drift import Budget, Drift, compare_outputs, scored_drift, with_parts
from onnxslim.model import io
from onnxslim.model.graph import OutputKinds
from onnxslim.passes.prune import DeduplicateInitializers
from onnxslim.quantization import dynamic, levers, trades
from onnxslim.quantization.builder import GPTQ_MEMORY, gptq_memory_note, run_samples
from onnxslim.quantization.caveats import (
    QUALITY_BAR,
    budget_then_float_compute_warning,
    computes_int8,
    says_nothing,
)
from onnxslim.quantization.plan import constant_weights
from onnxslim.quantization.report import WEIGHT_ONLY_MODE, Outcome, int8_stored
from onnxslim.render.format import counted

INT8_DB_PER_TIME = 100.0  # output SNR (dB) INT8 compute may cost per 1x of time it saves
#: ... but it takes the result under QUALITY_BAR, where float compute meets it or is closer to
#: float, only when it takes at most this much of float compute's time (torchvision's deeplabv3:
#: worst cosine 0.94 for 0.92x)
BELOW_BAR_RATIO = 0.8
#: Output SNR past this is float rounding: float compute this close to the model (its weights
#: stored in int8 already: 122 dB) counts as this close, or INT8's loss reads as 98 dB and no
#: speed pays for it (a MiniLM with int8-stored weights kept float compute against dynamic INT8 at
#: 0.45x the time, cosine 0.9971)
FLOAT_ROUNDING_DB = 60.0
#: How int8_or_float's note starts, "{what}" the INT8 kind ("INT8" on static, "dynamic INT8").
COMPUTE_LEAD = "{what} compute against float compute"
COMPUTE_NOTE = COMPUTE_LEAD.format(what="INT8")  # (its note on static INT8)
NOT_WORTH_IT = ": not worth it"  # int8_or_float's verdict against INT8 compute
#: Heads the notes of the static INT8 model float compute replaced (a "kept" among them is its).
INT8_BUILT_WITH = "the INT8 model that float compute replaced (below) was built with these choices:"
#: ... where float compute stored no weight in int8 either (the lossless model is the result)
INT8_NOT_KEPT = "the INT8 model not kept (below) was built with these choices:"
#: mode auto: dynamic INT8 replaces float compute only with a file at most this much larger
DYNAMIC_SIZE_SLACK = 1.25
#: ... and float weights (the lossless model, or a budget's float fallback) at the same speed
#: with a file at most this much of theirs
SMALLER_FILE = 0.8


def static_or_dynamic(
    static: Outcome,
    float_model: ir.Model,
    data: tuple[list, list, list],
    budget: Budget | None,
    options: dynamic.DynamicOptions,
    may_time: bool,
) -> tuple[Outcome, Outcome | None, bool]:
    """Mode "auto": the static result, unless it falls short on the selection samples and dynamic
    INT8 does better there (`data`: calibration and selection samples, the original's outputs on
    the selection samples); the dynamic INT8 outcome tried (None: not tried); and whether dynamic
    INT8 replaced static INT8 untimed (for the bar or the budget alone).

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
    budget or QUALITY_BAR is timed against static INT8 meeting them too; so is dynamic INT8
    meeting QUALITY_BAR where static INT8, computing in INT8, meets it (timed, where MatMuls and
    the Gemms dynamic INT8 turns into MatMuls hold most weights).
    """
    share = dynamic.dynamic_weight_share(float_model, excluded=options.exclude_nodes)
    # MatMuls, and the Gemms dynamic INT8 turns into MatMuls, hold most weights
    matmul_model = dynamic.covers_most_weights(float_model, options.exclude_nodes)
    most = share > dynamic.MOST_WEIGHTS
    timed = may_time and share > 0
    lstms = dynamic.recurrent_share(float_model, options.exclude_nodes)
    # static INT8 leaves LSTMs float: where they hold most weights, only dynamic INT8 speeds up
    recurrent = timed and lstms > dynamic.MOST_WEIGHTS and computes_int8(static, Counter())
    if budget:
        if not static.violations and not ((static.fallback or recurrent) and timed):
            return static, None, False
        outcome = dynamic.quantize_model(float_model, *data, budget, options)
        if outcome.violations:
            return static, outcome, False
        if static.violations:
            if outcome.quantized:
                said = f"dynamic INT8 ({_ops(outcome)}) meets it"
            elif outcome.fallback:
                said = f"dynamic INT8 ({_ops(outcome)}) meets it only with its {_in_float(outcome)}"
            else:  # (a conv net: no MatMul, LSTM or table for it)
                said = "dynamic INT8 quantizes no node of this model: no INT8 left"
            outcome.notes.append(f"static INT8 missed {budget}: {said}")
            return outcome, outcome, True
        if not outcome.quantized:  # static INT8 met it with INT8 left: no trade to time
            return static, outcome, False
        lead = f"static INT8 met {budget} with {len(static.fallback)} node(s) back in float"
        if recurrent:
            lead = f"static INT8 met {budget} leaving the LSTMs ({lstms:.0%} of the weights) float"
        lead += f"; dynamic INT8 ({_ops(outcome)}) too, kept if faster"
        return _timed_choice(static, outcome, data[1][0], lead, speed_only=True), outcome, False
    if recurrent and not QUALITY_BAR.check(static.judged):
        outcome = dynamic.quantize_model(float_model, *data, QUALITY_BAR, options)
        if outcome.violations:
            return static, outcome, False
        lead = (
            f"static INT8 leaves the LSTMs ({lstms:.0%} of the weights) float; dynamic INT8 "
            f"({_ops(outcome)}) meets {QUALITY_BAR} on the selection samples"
        )
        return _timed_choice(static, outcome, data[1][0], lead), outcome, False
    if not QUALITY_BAR.check(static.judged):
        if not (timed and matmul_model and computes_int8(static, Counter())):
            return static, None, False
        # static meets the bar: dynamic INT8 may still be faster and closer (an attention
        # decoder not tuned on: static 0.61x float's time at 37.5 dB, dynamic 0.52x at 49.4 dB)
        outcome = dynamic.quantize_model(float_model, *data, QUALITY_BAR, options)
        if outcome.violations or not outcome.quantized:
            return static, outcome, False
        lead = (
            f"static INT8 meets {QUALITY_BAR} on the selection samples; dynamic INT8 "
            f"({_ops(outcome)}) too, kept if the better trade"
        )
        return _timed_choice(static, outcome, data[1][0], lead), outcome, False
    if not (most or timed):
        return static, None, False
    outcome = dynamic.quantize_model(float_model, *data, QUALITY_BAR, options)
    before, after = (_lowest_cosine(d) for d in (static.judged, outcome.judged))
    if outcome.violations or after <= before:
        return static, outcome, False
    mismatched = [f"{n!r}: {d.mismatch}" for n, d in static.drift.items() if d.mismatch]
    worst = (
        f"output {mismatched[0]} on the selection samples"
        if mismatched
        else f"worst selection sample has cosine {before:.4f} to float"
    )
    reason = f"static INT8's {worst} (auto wants {QUALITY_BAR}): dynamic INT8 ({_ops(outcome)})"
    if not most and outcome.quantized:
        lead = f"{reason} reaches cosine {after:.4f}"
        return _timed_choice(static, outcome, data[1][0], lead), outcome, False
    if not outcome.quantized:
        note = f"{reason} reaches cosine {after:.4f} only with its {_in_float(outcome)}"
    else:
        with_float = f", with {_in_float(outcome)}" if outcome.fallback else ""
        note = f"{reason} kept, cosine {after:.4f}{with_float}"
    outcome.notes.append(note)
    return outcome, outcome, True


#: Why float compute on int8-stored weights is kept where dynamic INT8 left no MatMul in INT8.
FLOAT_COMPUTE_MEETS = (
    "float compute on static INT8's int8-stored weights meets {bar} on the selection samples: "
    "kept (a file as small, at float's speed; --int8 static or dynamic, mode= in Python, "
    "computes in INT8)"
)


def _ops(outcome: Outcome) -> str:
    """The op types `outcome` computes in INT8, as a note names them ("LSTM, MatMul"); where none,
    those it returned to float."""
    return ", ".join(sorted(outcome.quantized or {i["op"] for i in outcome.fallback})) or "MatMul"


def _in_float(outcome: Outcome) -> str:
    """The nodes `outcome` returned to float, by op type ("2 MatMul in float"), and whether any
    INT8 is left."""
    ops = Counter(item["op"] for item in outcome.fallback)
    listed = counted(sorted(ops.items()))
    return f"{listed} in float" + ("" if outcome.quantized else ": no INT8 left")


def dynamic_lstms(
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
        return io.to_proto(constant_weights(model, {"LSTM"}, options.exclude_nodes, {}))

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
    scored = scored_drift(ref_outputs, outputs, kinds, drift)
    missed = budget.check(with_parts(drift, scored)) if budget else []
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
        scored=None if static.scored is None else scored,
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


def dynamic_for_speed(
    current: Outcome, dynamic_int8: Outcome, timed_on: dict, bar: Budget, lossless: ir.Model
) -> Outcome:
    """`_dynamic_or_current`, the one kept marked where it is `current` (`dynamic_declined`)."""
    kept = _dynamic_or_current(current, dynamic_int8, timed_on, bar, lossless)
    kept.dynamic_declined = kept is current
    return kept


def _dynamic_or_current(
    current: Outcome, dynamic_int8: Outcome, timed_on: dict, bar: Budget, lossless: ir.Model
) -> Outcome:
    """Mode auto, timed, where `current` computes nothing in INT8: `dynamic_int8` replaces it only
    where its file is at most DYNAMIC_SIZE_SLACK times as large (dynamic INT8 leaves every weight
    but MatMul's, LSTM's and Gather tables' float: a GRU's, a Conv's) and, timed on `timed_on`, it
    is faster and worth its drift by `int8_or_float`'s rule; else `current`, with a note. Against
    float weights (`current` the lossless model, or a budget's fallback), `dynamic_int8`, which
    meets `bar` (QUALITY_BAR or the budget), is kept where it is not slower and its file at most
    SMALLER_FILE of theirs (a text recognizer's budget gave the float model, 1.00x the time, against
    dynamic INT8 at 0.99x and 0.62x the size), their file being what `current` would give: the
    `lossless` model where smaller (a float16 model's, quantized from float32); else, against the
    lossless model, exact, no drift would be worth it: it must be faster."""
    size = _file_bytes(dynamic_int8.model)
    grows = size / _file_bytes(current.model)
    if grows > DYNAMIC_SIZE_SLACK:
        current.notes.append(
            f"dynamic INT8 not kept: its file would be {grows:.2f}x this one "
            "(it leaves every other weight float)"
        )
        return current
    if not int8_stored(current.kept_float):
        grows = max(grows, size / _file_bytes(lossless))
        if grows <= SMALLER_FILE:
            return _smaller_if_not_slower(current, dynamic_int8, timed_on, bar, grows)
    if current.method == "none":
        worth, measured = trades.trade(current, dynamic_int8, timed_on, speed_only=True)
        kept = dynamic_int8 if worth else current
        kept.notes.append(
            f"dynamic INT8 (it meets {bar} on the selection samples) against the lossless "
            f"model: {'kept' if worth else 'not kept'} ({measured})"
        )
        return kept
    return int8_or_float(dynamic_int8, current, timed_on, dynamic_int8=True, for_speed=True)


def _smaller_if_not_slower(
    current: Outcome, dynamic_int8: Outcome, timed_on: dict, bar: Budget, size: float
) -> Outcome:
    """`dynamic_int8` (meeting `bar`, its file `size` times `current`'s float weights) where,
    timed side by side on `timed_on`, it is not slower by bench's noise rule; else `current`."""
    floats, ints = trades.side_by_side(
        [current.model, dynamic_int8.model], timed_on, trades.TRADE_RUNS
    )
    ratio, verdict = ints.versus(floats)
    kept = current if verdict == "slower" else dynamic_int8
    against = "the lossless model" if current.method == "none" else "float weights"
    kept.notes.append(
        f"dynamic INT8 (it meets {bar} on the selection samples) against {against}: "
        f"{'not kept' if verdict == 'slower' else 'kept'} ({ratio:.2f}x the time, "
        f"{'same within noise' if verdict == 'same' else verdict}; {size:.2f}x the file)"
    )
    return kept


def lossless_outcome(
    float_model: ir.Model, selection: list, ref_outputs: list, mode: str = "static"
) -> Outcome:
    """The lossless model as an outcome (nothing quantized), its drift on the selection samples
    (where the original gives `ref_outputs`)."""
    drift = compare_outputs(ref_outputs, run_samples(float_model, selection))
    return Outcome(float_model, {}, {}, [], drift, [], mode=mode, method="none")


def _file_bytes(model: ir.Model) -> int:
    """The size of `model`'s file as written: a weight several nodes share stored once."""
    copy = io.from_proto(io.to_proto(model))
    DeduplicateInitializers()(copy)
    return io.to_proto(copy).ByteSize()


def int8_or_float(
    int8: Outcome,
    float_compute: Outcome,
    timed_on: dict,
    dynamic_int8: bool = False,
    random_inputs: bool = False,
    for_speed: bool = False,
) -> Outcome:
    """Mode auto, timed: INT8 compute is there for speed, so it must pay for its drift in time
    saved (`int8_worth_it`; timed side by side with `float_compute` on `timed_on`, a selection
    sample, and timed and judged as `trades.trade` does: stopped once clear of the ratio where the
    choice turns, timed again near it; the time ratio and SNR gain least in its favour), and
    where it misses QUALITY_BAR that float compute meets, or misses it further from float than
    float compute (both below it: LEADER's fingerprint minutiae, INT8 -5.4 dB for 0.91x on its
    selection samples), take at most BELOW_BAR_RATIO its time; else `float_compute` (warning that
    nothing computes in INT8 where static INT8's budget had returned nodes to float).
    Static INT8 (`int8`) against its twin computing in float on its int8-stored weights: the one
    kept has the notes of the choices that built them. `dynamic_int8` (which replaced static INT8,
    or is offered against what static INT8 gave, computing nothing in INT8, `for_speed`: it must
    be faster too): kept, with its own notes and static INT8's verdict. Where the float model
    gives every float output as zeros or nothing on the selection samples, nothing judges INT8's
    drift: `float_compute`; so too where INT8 is not faster and the samples are `random_inputs`
    (ranges and GPTQ fitted to noise: on random data an orientation classifier's INT8 was 5.8 dB
    closer, on pictures 14 dB further)."""
    what = "dynamic INT8" if dynamic_int8 else "INT8"
    gain_db, measured = trades.snr_gain(float_compute, int8)
    float_db = trades.compared_snr(float_compute)
    if float_db > FLOAT_ROUNDING_DB:  # float compute reproduces the model: weights int8 already
        # both counted at most FLOAT_ROUNDING_DB (INT8 there too: no loss)
        capped = min(trades.compared_snr(int8), FLOAT_ROUNDING_DB) - FLOAT_ROUNDING_DB
        past = float_db - FLOAT_ROUNDING_DB
        gain_db = min(gain_db + past, capped) if math.isfinite(past) else capped
        shown = f" ({float_db:.1f} dB)" if math.isfinite(float_db) else ""
        measured += (
            f"; the other at float rounding{shown} counted as {FLOAT_ROUNDING_DB:.0f} dB, "
            f"so {what} {gain_db:+.1f} dB"
        )
    missed = QUALITY_BAR.check(int8.judged)
    float_meets = not QUALITY_BAR.check(float_compute.judged)
    # float compute surely closer: as measured, and for new samples (not within noise)
    further = trades.measured_gain(float_compute, int8) <= -trades.MIN_GAIN_DB and gain_db < 0
    below_bar = bool(missed) and (float_meets or further)
    edge = min(  # (the ratio above which INT8 is not kept; none where its drift says nothing)
        [
            math.inf if says_nothing(int8.drift) else int8_edge_ratio(gain_db),
            *([BELOW_BAR_RATIO] if below_bar else []),
            *([1 / (1 + PER_RUN_NOISE)] if random_inputs or for_speed else []),  # (faster)
        ]
    )
    timings = trades.timed_near_edge([float_compute.model, int8.model], timed_on, edge)
    speed = f"{what} " + f"{trades.AGAIN}, ".join(
        f"{ints.median / floats.median:.2f}x the time ({ints.min / floats.min:.2f}x by the "
        "fastest runs)"
        for floats, ints in timings
    )
    floats, ints = timings[-1]
    ratio, verdict = ints.versus(floats, floor_ms=0)  # (a choice: any difference counts)
    fastest = ints.min / floats.min
    if verdict != "faster":
        speed += ", not faster"
    stored = " on int8-stored weights" if int8_stored(float_compute.kept_float) else ""
    lead = f"{COMPUTE_LEAD.format(what=what)}{stored}: {speed}; {what} {measured}"
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
    stored_any = int8_stored(float_compute.kept_float)
    kept = (
        "every weighted node computes in float on int8-stored weights (a file as small"
        if stored_any
        else "the result is onnxslim's lossless model (no weight made int8 here"
    )
    intro = INT8_BUILT_WITH if stored_any else INT8_NOT_KEPT
    built = [intro, *int8.notes] if int8.notes else []  # its choices: not what is kept
    float_compute.notes = [
        *(float_compute.notes if dynamic_int8 else [*float_compute.notes, *built]),
        f"{lead}{NOT_WORTH_IT}, so {kept}; --int8 static or dynamic, mode= in Python, computes "
        "in INT8)",
    ]
    if int8.fallback and stored_any and not dynamic_int8:  # (static's: --max-drift's nodes)
        float_compute.notes.append(
            budget_then_float_compute_warning(len(int8.fallback), stored_any)
        )
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


def int8_edge_ratio(gain_db: float) -> float:
    """The time ratio at which INT8 compute `gain_db` closer to float than float compute stops
    being worth it: the inverse of `int8_required_gain`."""
    if gain_db >= trades.MIN_GAIN_DB:
        return trades.edge_ratio(gain_db)
    return 1 + (gain_db - trades.MIN_GAIN_DB) / INT8_DB_PER_TIME


def int8_worth_it(gain_db: float, time_ratio: float) -> bool:
    """Whether INT8 compute `gain_db` closer to float than float compute on the same weights at
    `time_ratio` its time is worth keeping (`int8_required_gain`)."""
    return gain_db >= int8_required_gain(time_ratio)


def _lowest_cosine(drift: Mapping[str, Drift]) -> float:
    """The lowest cosine a budget holds the outputs to (Drift.budget_cosine; -1 when none has
    one, or one comes out in another shape than float's)."""
    if levers.mismatched(drift):
        return -1.0
    cosines = [d.budget_cosine() for d in drift.values()]
    return min((c for c in cosines if c is not None), default=-1.0)
