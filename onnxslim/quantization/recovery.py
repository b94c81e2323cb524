"""Accuracy recovery: rank quantized nodes by the noise each adds and return the fewest to float
until a drift budget holds."""

from __future__ import annotations

import dataclasses
import math

import onnx_ir as ir

from onnxslim.drift import (
    Budget,
    TensorSnr,
    added_noise_db,
    compare_outputs,
    scored_drift,
    with_parts,
)
from onnxslim.quantization.builder import BuildInfo, QuantBuilder, iter_samples, run_samples
from onnxslim.quantization.ops import RULES, SHARED, STORED_TABLES, WEIGHTED
from onnxslim.quantization.plan import STORED_COMPUTE, activation_inputs
from onnxslim.render.progress import progress_bar

#: A fallback node's reason where int8-stored weights computing in float missed the budget too.
STORED_MISSED = "over the drift budget, on int8-stored weights too"
#: ... where they met it on every selection sample, not its margin for new samples.
STORED_MARGIN = "over the drift budget's margin for new samples, on int8-stored weights too"


def fall_back(
    builder: QuantBuilder,
    quantized: ir.Model,
    info: BuildInfo,
    samples,
    ref_outputs,
    budget: Budget,
):
    """Return the most sensitive nodes to float, fewest first (doubling, then bisecting), until the
    budget holds: computing in float on int8-stored weights (the file stays small), or entirely in
    float when that never meets the budget.

    Returns (model, info, drift, violations, fallback list, its drift as the timed choices
    compare it: drift.scored_drift).
    """
    ranked = sensitivity(builder, quantized, info, samples)
    names = [name for name, _ in ranked]
    by_name = {n.name: n for n in builder.model.graph}
    int8_compute = {
        n
        for n in info.plan.nodes
        if RULES[builder.op_types[n]].kind == WEIGHTED
        and by_name[n].inputs[RULES[builder.op_types[n]].weight].const_value is not None
    }
    label = f"INT8: returning nodes to float for {budget}"
    stored_seen = False  # int8-stored weights met the budget on every sample, not for new ones
    with progress_bar(label, None, builder.progress) as bar:
        for keep_weights in (True, False) if int8_compute & set(names) else (False,):
            results: dict[int, tuple] = {}

            def attempt(k: int, results=results, keep_weights=keep_weights) -> bool:
                """Whether the ``k`` worst nodes in float still miss the budget."""
                if k not in results:
                    stored = [n for n in names[:k] if keep_weights and n in int8_compute]
                    model, inf = builder.build(
                        exclude=[n for n in names[:k] if n not in stored], weight_only=stored
                    )
                    outputs = run_samples(model, samples)
                    drift = compare_outputs(ref_outputs, outputs)
                    scored = scored_drift(ref_outputs, outputs, builder.kinds, drift)
                    missed = budget.check(with_parts(drift, scored))
                    results[k] = (model, inf, drift, missed, scored)
                    bar.advance()
                return bool(results[k][3])

            k = fewest_passing(len(names), attempt)
            model, inf, drift, violations, scored = results[k]
            if not violations:
                break
            if keep_weights:
                stored_seen = not _as_written(budget).check(with_parts(drift, scored))
    stored_missed = bool(int8_compute & set(names)) and not keep_weights  # (tried first)
    missed_reason = STORED_MARGIN if stored_missed and stored_seen else STORED_MISSED
    fallback = (
        [
            {
                "node": name,
                "op": builder.op_types[name],
                "noise_db": noise,
                "reason": missed_reason
                if stored_missed and name in int8_compute
                else "over the drift budget",
                # (not where other nodes read its weight in float: plan.SHARED_FLOAT)
                "int8_weights": name in inf.plan.weight_only,
            }
            for name, noise in ranked[:k]
        ]
        if not violations
        else []
    )
    for item in fallback:
        stored = f"; {STORED_COMPUTE}" if item["int8_weights"] else ""
        inf.kept_float[item["node"]] = fallback_reason(item["noise_db"], budget) + stored
    return model, inf, drift, violations, fallback, scored


def _as_written(budget: Budget) -> Budget:
    """`budget` on the samples measured, without its margin for new samples."""
    return dataclasses.replace(budget, for_new_samples=False)


def fallback_reason(noise_db: float, budget: Budget) -> str:
    """Why a node went back to float for `budget`, from the noise its INT8 adds (`added_noise_db`:
    inf when none, -inf where float has no signal): the nodes go back noisiest first, and one
    adding none goes too when fewer nodes in float missed the budget."""
    if noise_db < math.inf:
        return f"sensitive: int8 adds noise {noise_db:.1f} dB below its output signal"
    return (
        "returned for the budget too: int8 adds no noise of its own here, but fewer nodes "
        f"in float missed {budget}"
    )


def sensitivity(
    builder: QuantBuilder, quantized: ir.Model, info: BuildInfo, samples
) -> list[tuple[str, float]]:
    """Quantized nodes ranked worst first by the noise each adds: the SNR (dB) of its output in the
    quantized model against the float model, minus that of its noisiest input (lower = worse)."""
    pairs = {}  # node -> (output name, [input names]) in the float model
    by_name = {n.name: n for n in builder.model.graph}
    closing = {owner: act for act, owner in info.plan.folded.items()}
    for name in [*info.plan.nodes, *info.plan.weight_only]:
        node = by_name[name]
        rule = RULES[node.op_type]
        if rule.kind == SHARED and node.op_type not in STORED_TABLES:
            continue
        out = by_name[closing[name]].outputs[0].name if name in closing else node.outputs[0].name
        ins = activation_inputs(node, rule)
        pairs[name] = (out, [v.name for v in ins if v is not None and v.const_value is None])
    seen = {t for out, ins in pairs.values() for t in [out, *ins]}
    quant_name = {t: info.dequantized.get(t, t) for t in seen}
    names = sorted(seen)
    snr = TensorSnr()
    with progress_bar("INT8: ranking nodes by sensitivity", len(samples), builder.progress) as bar:
        for floats, quants in zip(
            iter_samples(builder.proto, samples, names, int8=False),
            iter_samples(quantized, samples, [quant_name[t] for t in names]),
        ):
            for t, value in zip(names, quants.values()):
                snr.add(t, floats[t], value)
            bar.advance()
    scores = []
    for name, (out, ins) in pairs.items():
        worst_in = min((snr.db(i) for i in ins), default=math.inf)
        scores.append((name, added_noise_db(snr.db(out), worst_in)))
    scores.sort(key=lambda item: item[1])
    return scores


def fewest_passing(n: int, fails) -> int:
    """The smallest ``k`` in 1..n with ``fails(k)`` False (doubling, then bisecting; assumes more is
    better), or ``n`` when even that fails."""
    lo, hi = 0, 1
    while hi < n and fails(hi):
        lo, hi = hi, min(2 * hi, n)
    if fails(hi):
        return hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fails(mid):
            lo = mid
        else:
            hi = mid
    return hi
