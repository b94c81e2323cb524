"""Dynamic INT8 for transformers and LSTMs: MatMul and LSTM weights int8 per channel, activations
quantized at run time (DynamicQuantizeLinear + MatMulInteger, DynamicQuantizeLSTM: ONNX Runtime's
`quantize_dynamic`), the weights rounded by GPTQ (`DynamicOptions.gptq`); with a drift
budget, the nodes that add the most noise go back to float, fewest first, until it holds on the
selection samples."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
import re
import tempfile
from collections import Counter
from collections.abc import Callable, Collection, Hashable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import onnx
import onnx_ir as ir
from onnx import numpy_helper
from onnxruntime.quantization import QuantType, quantize_dynamic

from onnxslim.drift import (
    AT_LOGITS,
    Budget,
    Drift,
    TensorSnr,
    added_noise_db,
    compare_outputs,
    scored_drift,
    with_parts,
    worst_snr,
)
from onnxslim.model import io
from onnxslim.model.graph import (
    fresh_name,
    output_kinds,
    proto_graphs,
    proto_readers,
    replace_proto_nodes,
)
from onnxslim.model.stats import constant_size
from onnxslim.quantization import builder, exact, gptq
from onnxslim.quantization.builder import iter_samples, run_samples
from onnxslim.quantization.calibration.collect import collect_hessians
from onnxslim.quantization.ops import RECURRENT_WEIGHTS, table_dims
from onnxslim.quantization.pairs import COLUMNS
from onnxslim.quantization.plan import not_float32
from onnxslim.quantization.qdq import WEIGHT_BITS, kernel_weight, quantize_weight
from onnxslim.quantization.recovery import fallback_reason, fewest_passing
from onnxslim.quantization.report import Outcome
from onnxslim.quantization.smooth import smoothed

QUANTIZED_OPS = ("MatMul", "LSTM")
LSTM = "LSTM"  # the tag of an LSTM weight's statistics (`weight_hessians`)
#: GPTQ's statistics of one weight: ``X X^T``, or a list of them, one per direction (an LSTM's R)
Statistics = np.ndarray | list[np.ndarray]
#: why quantize_dynamic left a node float that no one excluded
LEFT_FLOAT = (
    "its weight is not a stored float constant (activations, or a QDQ unit): dynamic INT8 leaves it"
)
#: why a MatMul or Gemm of two constants stays float (SAM's positional encoding of a grid)
CONSTANT_ONLY = "its inputs are constants: ONNX Runtime computes it once, at load"
#: why a MatMul of a batched weight stays float in dynamic INT8
BATCHED_WEIGHT = (
    "its weight is batched (rank 3 or more): ONNX Runtime's dynamic INT8 MatMul takes a matrix"
)
#: why an LSTM stays float where checks compute the target's exact math (exact.py): ORT's
#: DynamicQuantizeLSTM kernel on this CPU would saturate the full 8-bit weights its target takes
NOT_EXACT = (
    "an LSTM in INT8 cannot be checked here as the target computes it (this CPU's kernel "
    "saturates its 8-bit weights): quantize on a CPU like the target's"
)
WEIGHTED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul", "LSTM")
#: MatMuls (and LSTMs) holding more than this share of the weights make a model one for dynamic
#: INT8 as such.
MOST_WEIGHTS = 0.5


class _Attempt(NamedTuple):
    """Dynamic INT8 of one float model with some MatMuls excluded, checked on the selection
    samples: its drift as written and as the automatic choices compare it (`scored`,
    drift.scored_drift), the budget's violations, MatMul weights left without the pair limit."""

    model: onnx.ModelProto
    drift: dict[str, Drift]
    violations: list[str]
    unlimited: int
    scored: dict[str, Drift]


@dataclasses.dataclass(frozen=True)
class DynamicOptions:
    """`exclude_nodes` stay float (those of the op types `exclude_ops` among them, so named in
    the report); weights within the target's `pair_limit` (see `quantization.pairs`); `smooth`
    (True, False or "auto": kept where closer to float on the selection samples) balances
    activation channels onto the weights first (see `smooth`); `gptq`: the MatMul and LSTM
    weights rounded by GPTQ against their inputs on the calibration samples (`weight_hessians`:
    in the float model; beside static INT8, in that model, `lstm_rounding`; else to nearest)."""

    exclude_nodes: frozenset[str] = frozenset()
    pair_limit: int | None = None
    smooth: bool | str = "auto"
    progress: bool = False
    exclude_ops: frozenset[str] = frozenset()
    gptq: bool = False


def quantize_model(
    float_model: ir.Model,
    calib: list,
    selection: list,
    ref_outputs: list,
    budget: Budget | None,
    options: DynamicOptions = DynamicOptions(),
) -> Outcome:
    """Dynamic INT8 of `float_model` (ORT's MatMulInteger and DynamicQuantizeLSTM forms), smoothed
    with the activations of `calib`, checked on `selection` against `ref_outputs`, the original's
    outputs there; with `budget`, the noisiest MatMuls and LSTMs go back to float until it holds."""
    # as the target computes them, on a CPU whose kernels do not: no LSTM (NOT_EXACT)
    unchecked = (
        [n.name for n in float_model.graph if n.op_type == "LSTM"] if exact.enabled() else []
    )
    always = always_float(float_model)
    exclude_nodes = options.exclude_nodes | set(unchecked) | set(always)
    pair_limit = options.pair_limit
    ort_names = ort_matmul_names(float_model)

    kinds = output_kinds(float_model)
    # by id() of the float model quantized (plain or smoothed): GPTQ's statistics, how many
    # weights they left out, and the roundings against them, shared by the attempts
    hessians: dict[int, tuple[dict[Hashable, Statistics], int, gptq.RoundingCache]] = {}

    def attempt_on(proto: onnx.ModelProto, excluded: list[str]) -> _Attempt:
        names = [ort_names.get(n, n) for n in [*exclude_nodes, *excluded]]
        if options.gptq and id(proto) not in hessians:
            made = weight_hessians(proto, calib, exclude_nodes, options.progress)
            hessians[id(proto)] = (*made, gptq.RoundingCache())
        gptq_on = (hessians[id(proto)][0], hessians[id(proto)][2]) if options.gptq else None
        model, left = _quantize_within(proto, names, pair_limit, gptq_on=gptq_on)
        outputs = run_samples(model, selection)
        drift = compare_outputs(ref_outputs, outputs)
        scored = scored_drift(ref_outputs, outputs, kinds, drift)
        missed = budget.check(with_parts(drift, scored)) if budget else []
        return _Attempt(model, drift, missed, left, scored)

    proto, first, muls, smoothing_notes = _smoothing_choice(
        float_model, calib, options, attempt_on, bool(kinds.logit_axes)
    )
    for dropped in [key for key in hessians if key != id(proto)]:
        del hessians[dropped]  # (the model not kept's: not held past the choice)
    statistics, past_memory, _ = hessians.get(id(proto), ({}, 0, None))
    ops = {n.name: n.op_type for n in proto.graph.node}
    candidates = [
        n.name
        for n in proto.graph.node
        if (n.op_type in QUANTIZED_OPS or n.name in ort_names) and n.name not in exclude_nodes
    ] + table_readers(proto.graph, exclude_nodes)  # (a budget may give a table back too)
    results: dict[int, _Attempt] = {}
    model, drift, violations, unlimited, scored = first
    all_int8 = model
    fallback: list[dict] = []
    if violations:
        ranked = _sensitivity(proto, model, selection, candidates)
        names = [name for name, _ in ranked]

        def fails(k: int) -> bool:
            if k not in results:
                results[k] = attempt_on(proto, names[:k])
            return bool(results[k].violations)

        k = fewest_passing(len(names), fails)
        model, drift, violations, unlimited, scored = results[k]
        if not violations:
            why = "over the drift budget"
            fallback = [  # each back to float weights
                {
                    "node": name,
                    "op": ops[name],
                    "noise_db": noise,
                    "reason": why,
                    "int8_weights": False,
                }
                for name, noise in ranked[:k]
            ]
    floated = {item["node"] for item in fallback} | set(exclude_nodes)
    kept = {**dict.fromkeys(unchecked, NOT_EXACT), **always}
    kept.update(
        {
            name: "excluded by op type"
            if ops.get(name) in options.exclude_ops
            else "excluded by name"
            for name in options.exclude_nodes
        }
    )
    kept.update({item["node"]: fallback_reason(item["noise_db"], budget) for item in fallback})
    # what quantize_dynamic did: it leaves a MatMul whose B is not a stored weight alone (a QDQ
    # unit's, or one of activations: attention scores)
    still_float = {n.name for n in model.graph.node if n.op_type in QUANTIZED_OPS}
    left = [n for n in candidates if n not in floated and ort_names.get(n, n) in still_float]
    kept.update(dict.fromkeys(left, LEFT_FLOAT))
    quantized = Counter(
        ops[n] for n in candidates if n not in floated and n not in left and ops[n] != "Gather"
    )
    # (where every MatMul is float, the smoothing choice made no INT8 model: nothing to say)
    notes = [*(smoothing_notes if quantized else []), *unlimited_warning(unlimited)]
    made = {  # the nodes made int8, by the names of those they were made of
        n.name.removesuffix("_quant")
        for n in model.graph.node
        if n.op_type in ("MatMulInteger", "DynamicQuantizeLSTM")
    }
    gptq_rounded = any((k[1] if isinstance(k, tuple) else k) in made for k in statistics)
    if past_memory and quantized:
        notes.append(builder.gptq_memory_note(past_memory, "weight(s)", builder.GPTQ_MEMORY))
    notes += tables_note(proto, floated)
    return Outcome(
        io.from_proto(model),
        dict(quantized),
        kept,
        fallback,
        drift,
        violations,
        notes=notes,
        mode="dynamic",
        method="run time",
        smoothed_inputs=_feeding_int8(model, muls),
        all_int8=io.from_proto(all_int8) if fallback else None,
        scored=scored,
        weight_rounding="gptq" if gptq_rounded else "nearest",
    )


def tables_note(proto: onnx.ModelProto, exclude: Collection[str]) -> list[str]:
    """What `store_tables` stores in `proto` (the float model quantized), as a note."""
    tables = storable_tables(proto.graph, exclude)
    if not tables:
        return []
    weights = sum(math.prod(t.dims) for t in proto.graph.initializer)
    share = sum(math.prod(t.dims) for t in tables) / weights
    return [
        f"{len(tables)} Gather table(s) (embeddings, {share:.0%} of the weights) stored in int8 "
        "per row: ONNX Runtime restores them to float when it loads the model (a smaller file, "
        "not faster)"
    ]


def _smoothing_choice(
    float_model: ir.Model,
    calib: list,
    options: DynamicOptions,
    attempt_on: Callable[[onnx.ModelProto, list[str]], _Attempt],
    at_logits: bool,
) -> tuple[onnx.ModelProto, _Attempt, list[str], list[str]]:
    """The float model dynamic INT8 starts from, plain or smoothed with `calib`'s activations
    (`options.smooth` True, False or "auto": the one whose all-MatMul INT8 model meets the budget,
    else is closer to float on the selection samples by worst output SNR, a softmax output's at
    its logits: `at_logits` says whether there is one), that model's `attempt_on(proto, [])`, the
    smoothing Mul nodes in it, and notes."""
    plain = io.to_proto(float_model)
    balanced, muls = (
        smoothed(plain, calib, exclude=options.exclude_nodes, progress=options.progress)
        if options.smooth is not False
        else (plain, [])
    )
    if not muls:
        return plain, attempt_on(plain, []), [], []
    if options.smooth is True:
        return balanced, attempt_on(balanced, []), muls, []
    tries = {
        label: (m, attempt_on(m, [])) for label, m in (("plain", plain), ("smoothed", balanced))
    }
    snr = {label: worst_snr(result.scored) for label, (_, result) in tries.items()}
    kept = max(tries, key=lambda label: (not tries[label][1].violations, snr[label]))
    logits = AT_LOGITS if at_logits else ""
    measured = (
        f"output SNR{logits} on the selection samples: plain {snr['plain']:.1f} dB, "
        f"smoothed {snr['smoothed']:.1f} dB"
        if max(snr.values()) > -math.inf
        else "neither has an output SNR to compare on the selection samples"  # no float output
    )
    note = (
        f"{'kept' if kept == 'smoothed' else 'did not keep'} smoothing of {len(muls)} MatMul "
        f"input(s) ({measured})"
    )
    return (*tries[kept], muls if kept == "smoothed" else [], [note])


def _feeding_int8(model: onnx.ModelProto, muls: list[str]) -> int:
    """How many of the smoothing Mul nodes `muls` feed a MatMul computing in int8 (through
    DynamicQuantizeLinear) in `model`; the others' MatMuls all went back to float."""
    outputs = {output for node in model.graph.node if node.name in muls for output in node.output}
    return len(
        {
            name
            for node in model.graph.node
            if node.op_type == "DynamicQuantizeLinear"
            for name in node.input
            if name in outputs
        }
    )


def dynamic_weight_share(
    model: ir.Model,
    gemms: bool = False,
    op_types: Collection[str] = QUANTIZED_OPS,
    excluded: Collection[str] = frozenset(),
) -> float:
    """The share of `op_types` (by default MatMul and LSTM, what dynamic INT8 quantizes) in the
    weights of the ops that compute with weights (WEIGHTED_OPS), counted in elements; 0 without
    any. `gemms`: also the Gemms `quantize_dynamic` turns into MatMuls (`ort_matmul_names`);
    the nodes named in `excluded` (kept float by the user) are not counted as quantized, nor
    those dynamic INT8 leaves float (`always_float`)."""
    quantized = set(ort_matmul_names(model)) if gemms else set()
    sizes = Counter()
    for node in ir.traversal.RecursiveGraphIterator(model.graph):
        if node.op_type in WEIGHTED_OPS:
            counted = node.op_type in op_types or node.name in quantized
            counted = counted and node.name not in excluded and not _why_float(node)
            sizes[counted] += _weight_elements(node)
    total = sizes[True] + sizes[False]
    return sizes[True] / total if total else 0.0


def _weight_elements(node: ir.Node) -> int:
    """The elements of `node`'s constant float32 weights (what INT8 quantizes): an LSTM's W and
    R, else its larger of the first two inputs (MatMul's weight may be either)."""
    indices = RECURRENT_WEIGHTS.get(node.op_type)
    if indices:
        return sum(_float32_size(node.inputs[i]) for i in indices if i < len(node.inputs))
    return max(map(_float32_size, node.inputs[:2]))


def _float32_size(value: ir.Value | None) -> int:
    """`constant_size` of a float32 `value` (`plan.not_float32`; an untyped Constant node's
    output: counted)."""
    if value is None or value.dtype not in (ir.DataType.FLOAT, None) or not_float32(value):
        return 0
    return constant_size(value)


def covers_most_weights(model: ir.Model, excluded: Collection[str] = frozenset()) -> bool:
    """Whether dynamic INT8 quantizes most of the weights (MatMuls, LSTMs and the Gemms it turns
    into MatMuls; not those `excluded`): then its file is about as small as static INT8's."""
    return dynamic_weight_share(model, gemms=True, excluded=excluded) > MOST_WEIGHTS


def recurrent_share(model: ir.Model, excluded: Collection[str] = frozenset()) -> float:
    """The share of the weights the recurrent ops dynamic INT8 alone quantizes hold (static INT8
    leaves an LSTM float), but those named in `excluded`: where it is most, only dynamic INT8 can
    speed the model up."""
    return dynamic_weight_share(model, op_types=tuple(RECURRENT_WEIGHTS), excluded=excluded)


def always_float(model: ir.Model) -> dict[str, str]:
    """The main graph's MatMuls and Gemms dynamic INT8 leaves float whatever it is asked, each
    with why (`_why_float`)."""
    return {node.name: why for node in model.graph if (why := _why_float(node))}


def _why_float(node: ir.Node) -> str | None:
    """BATCHED_WEIGHT for a MatMul whose weight is a constant of rank 3 or more (ORT's
    DynamicQuantizeMatMul refuses it: "b zero point is not valid"), CONSTANT_ONLY for a MatMul or
    Gemm of two constants (a product larger than its inputs, which the lossless passes leave to
    ORT to compute at load: an unrolled decoder's first step, from its start token's embedding);
    None for any other node."""
    if node.op_type not in ("MatMul", "Gemm"):
        return None
    weight = node.inputs[1] if len(node.inputs) > 1 else None
    constant = weight is not None and weight.const_value is not None
    if node.op_type == "MatMul" and constant and len(weight.const_value.shape) > 2:
        return BATCHED_WEIGHT
    if all(v is not None and v.const_value is not None for v in node.inputs[:2]):
        return CONSTANT_ONLY
    return None


def ort_matmul_names(model: ir.Model) -> dict[str, str]:
    """Named Gemm node -> the MatMul `quantize_dynamic` turns it into, and names so, before
    quantizing it: those with alpha and beta 1 and A not transposed (onnxruntime's
    `ONNXModel.replace_gemm_with_matmul`)."""
    names = {}
    for node in model.graph:
        attrs = node.attributes
        if (
            node.op_type == "Gemm"
            and node.name
            and attrs.get_float("alpha", 1.0) == 1.0
            and attrs.get_float("beta", 1.0) == 1.0
            and not attrs.get_int("transA", 0)
        ):
            names[node.name] = f"{node.name}_MatMul"
    return names


def unlimited_warning(count: int) -> list[str]:
    """A warning for `count` int8 weights `_requantize_weights` could not limit (none: none)."""
    if not count:
        return []
    return [
        f"warning: {count} MatMul or LSTM weight(s) in a form onnxslim does not know keep full "
        "8-bit range: ORT's u8s8 kernels may saturate there on x86 without VNNI"
    ]


def lstm_rounding(
    proto: onnx.ModelProto, options: DynamicOptions, calib: list
) -> tuple[tuple[dict[Hashable, Statistics], gptq.RoundingCache] | None, int]:
    """What GPTQ rounds the LSTMs of `proto` (a static INT8 model) but `options.exclude_nodes`
    against, on `calib` (`weight_hessians`: W's inputs and R's previous states there, as static
    INT8 computes them), with a cache for the roundings; None where `options.gptq` is off or
    nothing can be rounded; and how many weights past GPTQ's memory limit round to nearest."""
    if not options.gptq:
        return None, 0
    exclude, progress = options.exclude_nodes, options.progress
    statistics, past = weight_hessians(proto, calib, exclude, progress, (LSTM,))
    return ((statistics, gptq.RoundingCache()) if statistics else None), past


def with_dynamic_lstms(
    proto: onnx.ModelProto,
    options: DynamicOptions,
    gptq_on: tuple[dict[Hashable, Statistics], gptq.RoundingCache] | None,
) -> tuple[onnx.ModelProto, int, int]:
    """`proto` (a static INT8 model, which leaves LSTMs float) with its LSTMs but
    `options.exclude_nodes` in dynamic INT8 (ORT's DynamicQuantizeLSTM, weights within
    `options.pair_limit`, rounded by GPTQ with `gptq_on`, see `lstm_rounding`; None: to
    nearest), nothing else changed: a CRNN's convs static, its LSTMs dynamic; how many, and how
    many weights `_requantize_weights` left as they were."""
    exclude = list(options.exclude_nodes)
    model, left = _quantize_within(proto, exclude, options.pair_limit, (LSTM,), gptq_on)
    count = sum(node.op_type == "DynamicQuantizeLSTM" for node in model.graph.node)
    return model, count, left


def _quantize_within(
    proto: onnx.ModelProto,
    exclude: list[str],
    pair_limit: int | None,
    op_types: tuple[str, ...] = QUANTIZED_OPS,
    gptq_on: tuple[dict[Hashable, Statistics], gptq.RoundingCache] | None = None,
) -> tuple[onnx.ModelProto, int]:
    """`_quantize`, its weights then rounded afresh (`_requantize_weights`: by GPTQ with
    `gptq_on`'s statistics and cache of roundings, all within `pair_limit`; without either, as
    written); and, with a `pair_limit`, how many weights it left as they were."""
    model = _quantize(proto, exclude, op_types)
    left = 0
    if pair_limit is not None or (gptq_on and gptq_on[0]):
        left = _requantize_weights(
            model, proto, pair_limit, *(gptq_on or ({}, gptq.RoundingCache()))
        )
    float_readers_fold(model)
    if "MatMul" in op_types:  # (not LSTMs alone, beside static INT8: it stores tables itself)
        store_tables(model, exclude)
    return model, left


def storable_tables(graph: onnx.GraphProto, exclude: Collection[str] = ()) -> list:
    """The float32 tables (initializers of `ops.table_dims`, as static INT8 stores them) that
    only Gathers of `graph` outside `exclude` read: embeddings, which `store_tables` stores in
    int8; not one holding inf or NaN (RT-DETR's anchors), which no int8 scale holds (`_finite`)."""
    read = proto_readers(graph)
    elsewhere = {  # read by another op, or in a body: left as they are
        name
        for body in proto_graphs(graph)
        for node in body.node
        for index, name in enumerate(node.input)
        if body is not graph or node.op_type != "Gather" or index or node.name in exclude
    } | {value.name for value in graph.output}
    return [
        t
        for t in graph.initializer
        if t.data_type == onnx.TensorProto.FLOAT
        and table_dims(t.dims)
        and t.name in read
        and t.name not in elsewhere
        and (t.data_location == onnx.TensorProto.EXTERNAL or _finite(t))
    ]


def _finite(table: onnx.TensorProto) -> bool:
    """Whether a table held in the proto has no inf or NaN (one in an external file, over 2 GB,
    is not read for this)."""
    return bool(np.isfinite(numpy_helper.to_array(table)).all())


def table_readers(graph: onnx.GraphProto, exclude: Collection[str] = ()) -> list[str]:
    """The Gathers reading `storable_tables` (by name)."""
    tables = {t.name for t in storable_tables(graph, exclude)}
    return [n.name for n in graph.node if n.op_type == "Gather" and n.input[0] in tables]


def store_tables(model: onnx.ModelProto, exclude: Collection[str] = ()) -> list:
    """`storable_tables` stored in int8 per row, ``Cast(q) * scale``, which ORT folds back to
    the float table at load, as static INT8 stores them: `quantize_dynamic` left them float (a
    GPT-2's word embedding: files 0.44-0.52x float's, ORT's dynamic INT8 0.28-0.32x). Returns
    the int8 tensors added."""
    graph = model.graph
    tables = storable_tables(graph, exclude)
    if not tables:
        return []
    taken = (
        {t.name for t in graph.initializer}
        | {v.name for v in graph.input}
        | {
            name
            for body in proto_graphs(graph)
            for n in body.node
            for name in [*n.input, *n.output]
        }
    )
    restored, nodes, initializers = {}, [], []
    for table in tables:
        w = numpy_helper.to_array(table)
        q, params = quantize_weight(w, 0, WEIGHT_BITS)
        int8, scale, cast, out = (
            fresh_name(taken, f"{table.name}_{part}")
            for part in ("int8", "scale", "cast", "restored")
        )
        restored[table.name] = out
        initializers += [
            numpy_helper.from_array(q, int8),
            numpy_helper.from_array(params.scale.reshape(-1, *[1] * (w.ndim - 1)), scale),
        ]
        nodes += [
            onnx.helper.make_node("Cast", [int8], [cast], to=onnx.TensorProto.FLOAT),
            onnx.helper.make_node("Mul", [cast, scale], [out]),
        ]
    kept = [t for t in graph.initializer if t.name not in restored]
    for node in graph.node:
        if node.op_type == "Gather" and node.input[0] in restored:
            node.input[0] = restored[node.input[0]]
    nodes += graph.node
    del graph.initializer[:], graph.node[:]
    graph.initializer.extend(kept + initializers)
    graph.node.extend(nodes)
    return [t for t in graph.initializer[len(kept) :] if t.data_type == onnx.TensorProto.INT8]


def float_readers_fold(model: onnx.ModelProto) -> int:
    """Where `quantize_dynamic` left float nodes reading a weight it quantized for others, it
    reads the int8 copy through DequantizeLinear, which ORT never folds and copies for each
    reader: every run dequantized a g2p decoder's weight once for each of its 19 float MatMuls,
    4.5x the float model's time. Each such DequantizeLinear (zero point 0) becomes ``Cast(q) *
    scale``, the same values, which ORT folds to one float weight at session load (as static
    INT8's int8-stored weights); not those of weights no dynamic INT8 kernel reads (a static
    INT8 model's, whose LSTMs go dynamic: its QDQ units stay). Returns how many were replaced."""
    replaced = 0
    for graph in proto_graphs(model.graph):
        kernels = {n.input[1] for n in graph.node if n.op_type == "MatMulInteger"} | {
            name for n in graph.node if n.op_type == "DynamicQuantizeLSTM" for name in n.input
        }
        constants = {t.name: t for t in graph.initializer}
        replaced += replace_proto_nodes(
            graph,
            functools.partial(_cast_times_scale, kernels=kernels, constants=constants, graph=graph),
        )
    return replaced


def _cast_times_scale(
    node: onnx.NodeProto,
    kernels: set[str],
    constants: dict[str, onnx.TensorProto],
    graph: onnx.GraphProto,
) -> list[onnx.NodeProto]:
    """``Cast(q) * scale`` for a DequantizeLinear of one of `kernels` (weights a dynamic INT8
    kernel reads) in `constants` (the initializers of `graph`) with a zero point of 0, per tensor
    or per axis (the scale shaped to broadcast along its axis, a new constant where it must be
    reshaped); else []."""
    if node.op_type != "DequantizeLinear" or node.domain not in ("", "ai.onnx"):
        return []
    if not node.input or node.input[0] not in kernels:
        return []
    if any(a.name == "block_size" for a in node.attribute):
        return []
    if not all(name in constants for name in node.input if name):
        return []
    q = constants[node.input[0]]
    zero_point = node.input[2] if len(node.input) > 2 else ""
    if zero_point and numpy_helper.to_array(constants[zero_point]).any():
        return []
    scale_name = node.input[1]
    scale = numpy_helper.to_array(constants[scale_name])
    rank = len(q.dims)
    axis = next((a.i for a in node.attribute if a.name == "axis"), 1) % max(rank, 1)
    if scale.ndim == 1 and scale.size > 1 and axis != rank - 1:
        scale_name = f"{node.output[0]}_scale_per_axis"
        shape = [-1 if i == axis else 1 for i in range(rank)]
        graph.initializer.append(numpy_helper.from_array(scale.reshape(shape), scale_name))
    cast_output = f"{node.output[0]}_cast"
    return [
        onnx.helper.make_node(
            "Cast",
            [q.name],
            [cast_output],
            name=f"{node.output[0]}_Cast",
            to=onnx.helper.np_dtype_to_tensor_dtype(scale.dtype),
        ),
        onnx.helper.make_node(
            "Mul", [cast_output, scale_name], list(node.output), name=f"{node.output[0]}_Mul"
        ),
    ]


def weight_hessians(
    proto: onnx.ModelProto,
    calib: list,
    exclude: Collection[str],
    progress: bool,
    op_types: tuple[str, ...] = QUANTIZED_OPS,
) -> tuple[dict[Hashable, Statistics], int]:
    """``X X^T`` over `calib` of the float inputs of the weights dynamic INT8 quantizes (of
    `op_types`) that GPTQ can round: a MatMul's (and a Gemm's `quantize_dynamic` makes a MatMul
    of) by the name of the MatMul it computes with (`ort_matmul_names`; one array for all that
    read one weight, summed over them: its int8 copy is one); an LSTM's W and R by (LSTM, its
    name, 0) and (LSTM, its name, 1), W's of its input, R's of each direction's previous hidden
    states (`_previous_states`, its Y named; `_initial_states`: a list, one per direction). In
    graph order until they hold builder.GPTQ_MEMORY; and how many weights past it round to
    nearest."""
    model = io.from_proto(proto)
    gemms = ort_matmul_names(model)
    readers: dict[Hashable, list[ir.Node]] = {}  # MatMuls by the weight and whether transposed
    layers: dict[Hashable, list[tuple[str, Callable]]] = {}
    sizes: dict[Hashable, set[int]] = {}
    for node in model.graph:
        if not node.name or node.name in exclude:
            continue
        matmul = node.op_type == "MatMul" or node.name in gemms
        if matmul and "MatMul" in op_types and gptq.supports(node):
            transposed = bool(node.op_type == "Gemm" and node.attributes.get_int("transB", 0))
            key = (node.inputs[1].name, transposed)
            readers.setdefault(key, []).append(node)
            layers.setdefault(key, []).append(
                (node.inputs[0].name, functools.partial(gptq.input_columns, node))
            )
            sizes.setdefault(key, set()).add(gptq.hessian_bytes(node))
        elif node.op_type == LSTM and LSTM in op_types and _constant_w_and_r(node):
            inputs, hidden = (_lstm_weight_shape(node, i)[2] for i in (1, 2))
            directions = _directions(node)
            layers[LSTM, node.name, 0] = [(node.inputs[0].name, _last_axis_columns)]
            sizes[LSTM, node.name, 0] = {8 * inputs * inputs}
            y = node.outputs[0] if node.outputs else None
            if y is not None and y.name and _lstm_weight_shape(node, 2)[0] == len(directions):
                states = [(y.name, functools.partial(_previous_states, directions))]
                initial = node.inputs[5] if len(node.inputs) > 5 else None
                if initial is not None and initial.name and initial.const_value is None:
                    states.append((initial.name, _initial_states))  # (a constant's: zeros)
                layers[LSTM, node.name, 1] = states
                sizes[LSTM, node.name, 1] = {8 * hidden * hidden * len(directions)}
    kept, held, past = {}, 0, 0
    for key, sources in layers.items():
        if len(sizes[key]) > 1:
            continue
        held += sizes[key].pop()
        if held > builder.GPTQ_MEMORY:
            past += 1
            continue
        kept[key] = sources
    if not kept:
        return {}, past
    sums = collect_hessians(proto, calib, kept, progress=progress, total=len(calib))
    statistics: dict[Hashable, Statistics] = {}
    for key in kept:
        if key in readers:
            statistics.update({gemms.get(n.name, n.name): sums[key] for n in readers[key]})
        else:  # an LSTM's; R's per direction, each an array of its own (a rounding cache key)
            statistics[key] = list(sums[key]) if sums[key].ndim == 3 else sums[key]
    return statistics, past


def _lstm_weight_shape(node: ir.Node, index: int) -> tuple[int, ...] | None:
    """The shape of an LSTM's constant W (`index` 1) or R (2), ``[directions, 4 x hidden,
    inputs]``; None where it is not a 3-D constant."""
    value = node.inputs[index] if len(node.inputs) > index else None
    tensor = value.const_value if value is not None else None
    return tuple(tensor.shape) if tensor is not None and len(tensor.shape) == 3 else None


def _constant_w_and_r(node: ir.Node) -> bool:
    """Whether an LSTM's W and R are 3-D constants."""
    return all(_lstm_weight_shape(node, i) for i in (1, 2))


def _directions(node: ir.Node) -> tuple[bool, ...]:
    """Whether each direction of an LSTM runs backwards in time."""
    direction = node.attributes.get_string("direction", "forward")
    return {"forward": (False,), "reverse": (True,), "bidirectional": (False, True)}[direction]


def _initial_states(h: np.ndarray) -> np.ndarray:
    """An LSTM's initial_h ``[directions, batch, hidden]`` as `_previous_states`' columns of the
    state before its first step (a backward direction's: its last)."""
    return np.asarray(h, np.float32).transpose(0, 2, 1)


def _last_axis_columns(x: np.ndarray) -> np.ndarray:
    """An LSTM input as GPTQ's columns ``[inputs, positions]`` (every time step and batch row)."""
    return np.asarray(x, np.float32).reshape(-1, x.shape[-1]).T


def _previous_states(backwards: tuple[bool, ...], y: np.ndarray) -> np.ndarray:
    """The hidden states R multiplies at each step, from an LSTM's output Y ``[steps, directions,
    batch, hidden]`` (ORT runs no other layout): per direction ``[hidden, positions]`` of the
    state before each step (a backward direction's: the next step's), the initial state
    (`_initial_states`) left out."""
    y = np.asarray(y, np.float32)
    columns = []
    for d, backward in enumerate(backwards):
        states = y[1:, d] if backward else y[:-1, d]  # [steps - 1, batch, hidden]
        columns.append(states.reshape(-1, y.shape[-1]).T)
    return np.stack(columns)


def _quantize(
    proto: onnx.ModelProto, exclude: list[str], op_types: tuple[str, ...] = QUANTIZED_OPS
) -> onnx.ModelProto:
    """ORT's quantize_dynamic on `proto` (per-channel int8 weights of `op_types`: MatMul and
    LSTM), `exclude` left float."""
    with tempfile.TemporaryDirectory(prefix="onnxslim-dynamic-") as folder:
        source, target = Path(folder) / "float.onnx", Path(folder) / "int8.onnx"
        onnx.save(proto, source)
        ort_quantize_dynamic(source, target, exclude, op_types)
        return onnx.load(target)


def ort_quantize_dynamic(
    source: Path,
    target: Path,
    exclude: Collection[str],
    op_types: Collection[str] = QUANTIZED_OPS,
    reduce_range: bool = False,
    external_data: bool = False,
) -> None:
    """ORT's quantize_dynamic of the model file `source` into `target`: per-channel int8 weights
    of `op_types` (7-bit with `reduce_range`), `exclude` left float; `external_data`: read and
    write weights as external data (a model over 2 GB). A tensor whose type onnx cannot infer
    (the output of ORT's fused ops: a BERT that ORT's transformer optimizer wrote) is float32, as
    only float32 models are quantized (ORT's quantizer stopped at it)."""
    with quiet_quantizer():
        quantize_dynamic(
            source,
            target,
            op_types_to_quantize=list(op_types),
            per_channel=True,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=list(exclude),
            reduce_range=reduce_range,
            use_external_data_format=external_data,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )


def _requantize_weights(
    quantized: onnx.ModelProto,
    original: onnx.ModelProto,
    limit: int | None,
    hessians: dict[Hashable, Statistics],
    rounded: gptq.RoundingCache,
) -> int:
    """Requantize, in place, the int8 weights `quantize_dynamic` wrote for `original`'s MatMuls
    and LSTMs (``W_quantized``, ``W_scale``, zero points 0): by GPTQ against the ``X X^T`` of
    `hessians` (`weight_hessians`) for a MatMulInteger or DynamicQuantizeLSTM made of a node
    there (named ``<node>_quant``; each rounding kept in `rounded`, for the next call), and
    within the pair `limit` (``quantization.pairs``: MatMulInteger and DynamicQuantizeLSTM
    saturate without VNNI, as QLinearConv does; None: only those GPTQ rounds). With a `limit`,
    returns how many weights it found in another form and left as they were (without one, 0)."""
    floats = {t.name: t for g in proto_graphs(original.graph) for t in g.initializer}
    tensors = {t.name: t for g in proto_graphs(quantized.graph) for t in g.initializer}
    left = 0
    for node in (n for g in proto_graphs(quantized.graph) for n in g.node):
        made_of = node.name.removesuffix("_quant") if node.name else None
        for slot, names in enumerate(_weight_slots(node)):
            key = made_of if node.op_type == "MatMulInteger" else (LSTM, made_of, slot)
            hessian = hessians.get(key) if made_of else None
            if limit is not None or hessian is not None:
                done = _requantize(names, floats, tensors, limit, (hessian, rounded))
                left += limit is not None and not done
    return left


def _weight_slots(node: onnx.NodeProto) -> list[tuple[str, ...]]:
    """The (weight, scale, zero point) names of each int8 weight a node `quantize_dynamic` wrote
    computes with: MatMulInteger's B, DynamicQuantizeLSTM's W and R."""
    if node.op_type == "MatMulInteger":
        base = node.input[1].removesuffix("_quantized")
        return [(node.input[1], f"{base}_scale", f"{base}_zero_point")]
    if node.op_type == "DynamicQuantizeLSTM" and len(node.input) > 11:
        return [tuple(node.input[i] for i in (1, 8, 9)), tuple(node.input[i] for i in (2, 10, 11))]
    return []


def _requantize(
    names: tuple[str, ...],
    floats: dict[str, onnx.TensorProto],
    tensors: dict[str, onnx.TensorProto],
    limit: int | None,
    gptq_on: tuple[Statistics | None, gptq.RoundingCache],
) -> bool:
    """Requantize the int8 weight `names` (weight, scale, zero point) from its float original
    within the pair `limit` (None: none), by GPTQ against the ``X X^T`` of its inputs
    `gptq_on[0]` (`weight_hessians`; None: to nearest; roundings cached in `gptq_on[1]`): a
    MatMul's ``[inputs, outputs]`` weight, an LSTM's direction by direction; False where it is in
    a form not known (left as it is)."""
    w = _original_weight(floats, names[0].removesuffix("_quantized"))
    if w is None or not all(name in tensors for name in names):
        return False
    scale, zero_point = (numpy_helper.to_array(tensors[n]) for n in names[1:])
    if zero_point.any():
        return False
    w = w.astype(np.float32)
    if w.ndim == 2 and w.shape != tuple(tensors[names[0]].dims):  # an older ORT: B transposed
        w = w.T  # in place, its name kept
    hessian, rounded = gptq_on
    if w.ndim == 3:  # an LSTM's [directions, gates x hidden, inputs]: x @ W[d].T per direction
        if scale.shape != w.shape[:2]:
            return False
        pairs = [  # W's statistics one for all directions, R's one per direction
            kernel_weight(matrix.T, -1, COLUMNS, limit, rounding=_gptq_rounding(h, rounded))
            for matrix, h in zip(w, _per_direction(hessian, len(w)))
        ]
        q, new_scale = np.stack([q for q, _ in pairs]), np.stack([qp.scale for _, qp in pairs])
    elif scale.ndim > 1:
        return False
    else:
        axis = -1 if scale.size > 1 else None
        rounding = _gptq_rounding(hessian, rounded)
        q, qp = kernel_weight(w, axis, COLUMNS, limit, rounding=rounding)
        new_scale = qp.scale
    tensors[names[0]].CopyFrom(numpy_helper.from_array(q, names[0]))
    new_scale = new_scale.astype(scale.dtype).reshape(scale.shape)
    tensors[names[1]].CopyFrom(numpy_helper.from_array(new_scale, names[1]))
    return True


def _per_direction(hessian: Statistics | None, directions: int) -> list[np.ndarray | None]:
    """An LSTM weight's statistics for each direction: None (nearest), one for all (W's) or
    a list, one each (R's)."""
    return hessian if isinstance(hessian, list) else [hessian] * directions


def _gptq_rounding(hessian: np.ndarray | None, rounded: gptq.RoundingCache):
    """`kernel_weight`'s rounding of an ``[inputs, outputs]`` weight by GPTQ against `hessian`
    (None: none, nearest), each result kept in `rounded`."""
    if hessian is None:
        return None
    return gptq.cached_rounding(hessian, rounded, np.transpose, lambda q, _shape: q.T)


def _original_weight(floats: dict[str, onnx.TensorProto], name: str) -> np.ndarray | None:
    """The float weight `quantize_dynamic` quantized as `name`: an initializer of the original,
    or a Gemm's transposed (transB) one it made for the MatMul it turned the Gemm into
    (``<w>_Transposed``, or ``<w>_Transposed_<n>`` where that name was taken)."""
    if name in floats:
        return numpy_helper.to_array(floats[name])
    stem = re.sub(r"_Transposed(_\d+)?$", "", name)
    if stem != name and stem in floats and len(floats[stem].dims) == 2:
        return numpy_helper.to_array(floats[stem]).T
    return None


def _sensitivity(
    proto: onnx.ModelProto, quantized: onnx.ModelProto, samples: list, candidates: list[str]
) -> list[tuple[str, float]]:
    """Quantized MatMuls (and Gathers of int8-stored tables) ranked worst first by the noise each
    adds: the SNR (dB) of its output in the quantized model minus that of its input (ORT keeps
    both tensor names)."""
    nodes = {n.name: n for n in proto.graph.node if n.name in candidates}
    # an LSTM may leave its first output (all steps) out: its last state then; a Gather's table
    # has another name in the quantized model: its ids, exact, stand for its input
    pairs = {
        name: (next(o for o in n.output if o), n.input[1 if n.op_type == "Gather" else 0])
        for name, n in nodes.items()
    }
    names = sorted({t for pair in pairs.values() for t in pair})
    snr = TensorSnr()
    for floats, quants in zip(
        iter_samples(proto, samples, names, int8=False), iter_samples(quantized, samples, names)
    ):
        for t in names:
            snr.add(t, floats[t], quants[t])
    scores = [
        (name, added_noise_db(snr.db(out), snr.db(inp))) for name, (out, inp) in pairs.items()
    ]
    return sorted(scores, key=lambda item: item[1])


@contextlib.contextmanager
def quiet_quantizer():
    """ORT's quantizer logs advice on the root logger; onnxslim reports for itself."""
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
