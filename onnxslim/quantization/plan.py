"""INT8 planning: which nodes of the main graph to quantize, which activations get Q/DQ pairs, and
why the others stay float."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping, Sequence

import onnx_ir as ir
import onnx_ir.passes.common as common

from onnxslim import verify
from onnxslim.errors import OnnxSlimError, first_line
from onnxslim.model import io, opset
from onnxslim.model.graph import default_opset, producer
from onnxslim.passes.fold import FoldProducers, computable_values
from onnxslim.quantization.ops import (
    COMPUTE,
    DEFAULT_OPS,
    FOLDABLE,
    RECURRENT_WEIGHTS,
    RULES,
    SHARED,
    STORED_TABLES,
    WEIGHT_ONLY,
    WEIGHTED,
    finite,
    is_depthwise,
    macs_per_output,
    storable_table,
    stored_weight,
)

FASTER_IN_FLOAT = "faster in float"  # such nodes compute in float but still store int8 weights
TOO_SMALL = "too small to gain from int8"  # fewer MACs than QuantOptions.min_macs
DEPTHWISE_IN_FLOAT = "int8 depthwise conv is slower than float on this target"
# so do nodes returned to float for accuracy or by a timed choice (QuantOptions.weight_only_nodes)
SENSITIVE = "sensitive"
#: a node whose activation a DequantizeLinear of computed values gives is in a QDQ unit of a
#: model quantized before
QUANTIZED_ALREADY = "quantized already: reads a DequantizeLinear output (a QDQ unit kept as is)"
NOT_FINITE = "weight holds inf or NaN"  # (no int8 scale holds it: `ops.finite`)
#: how every reason of a node kept in float on int8-stored weights says so (report counts them)
INT8_STORED = "int8-stored weights"
STORED_COMPUTE = f"computes in float on {INT8_STORED}"
#: why a node computing in float reads float weights where its reason would say STORED_COMPUTE
SHARED_FLOAT = (
    "its weight stays float: other nodes read it as float (an int8 copy adds to the file)"
)
QDQ_MIN_OPSET = 13  # per-axis DequantizeLinear
CONVERSION_CHECKS = 2  # samples `_at_qdq_opset` checks a converted model on
ACTIVATION_TYPES = {"uint8": ir.DataType.UINT8, "int8": ir.DataType.INT8}
WEIGHT_RANGES = ("minmax", "mse")
WEIGHT_ROUNDINGS = ("nearest", "gptq")


@dataclasses.dataclass(frozen=True)
class QuantOptions:
    """What to quantize and how."""

    activation_type: str = "uint8"  # "uint8" asymmetric or "int8" symmetric
    # same-sign neighbour weights along the reduction sum to at most this (quantization.pairs)
    weight_pair_limit: int | None = None
    per_channel: bool = True
    quantize_ops: frozenset[str] = DEFAULT_OPS
    exclude_ops: frozenset[str] = frozenset()
    exclude_nodes: frozenset[str] = frozenset()  # entirely float, weights too
    weight_only_nodes: frozenset[str] = frozenset()  # float compute on int8-stored weights
    skip_depthwise: bool = False  # ORT's int8 depthwise kernels are often slower than float on x86
    # biases absorb the mean output shift that rounding the weights causes
    bias_correction: bool = False
    min_macs: int = 0  # weighted ops doing fewer multiply-accumulates per sample stay float
    weight_range: str = "minmax"  # per-channel weight clip: "minmax" or "mse" (qdq.weight_amax)
    weight_rounding: str = "nearest"  # or "gptq": rounding against the layer's calibration inputs
    # GPTQ rounds the int8-stored weights of float compute too (not on synthesized samples)
    gptq_float_compute: bool = True

    def __post_init__(self):
        if self.activation_type not in ACTIVATION_TYPES:
            raise OnnxSlimError(
                f"activation type must be uint8 or int8, got {self.activation_type!r}"
            )
        if self.weight_range not in WEIGHT_RANGES:
            raise OnnxSlimError(
                f"weight range must be one of {', '.join(WEIGHT_RANGES)}, got {self.weight_range!r}"
            )
        if self.weight_rounding not in WEIGHT_ROUNDINGS:
            raise OnnxSlimError(
                f"weight rounding must be one of {', '.join(WEIGHT_ROUNDINGS)}, "
                f"got {self.weight_rounding!r}"
            )
        if self.weight_pair_limit is not None and not 2 <= self.weight_pair_limit <= 254:
            raise OnnxSlimError(
                f"weight pair limit must be in 2..254 or None, got {self.weight_pair_limit}"
            )
        unknown = sorted((self.quantize_ops | self.exclude_ops) - set(RULES) - set(FOLDABLE))
        if unknown:
            raise OnnxSlimError(
                f"cannot quantize op type(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(RULES))}"
            )


@dataclasses.dataclass
class QuantPlan:
    """The outcome of planning, before any range is known.

    ``tensors`` maps each activation to quantize to the tensor whose range (and so scale and zero
    point) it uses: itself, or the input of the data-movement op it comes out of. ``folded`` maps a
    Relu/Clip that disappears into the output range to the node it follows. ``floats`` says why
    candidate nodes stay float.
    """

    nodes: list[str] = dataclasses.field(default_factory=list)
    tensors: dict[str, str] = dataclasses.field(default_factory=dict)
    folded: dict[str, str] = dataclasses.field(default_factory=dict)
    asymmetric: set[str] = dataclasses.field(default_factory=set)
    floats: dict[str, str] = dataclasses.field(default_factory=dict)
    # float compute on int8-stored weights
    weight_only: list[str] = dataclasses.field(default_factory=list)
    # graph outputs a Conv writes: quantized too, their DequantizeLinear gives them (`qdq.qdq`)
    dequantized_outputs: set[str] = dataclasses.field(default_factory=set)

    @property
    def observed(self) -> list[str]:
        """The tensors whose statistics calibration must collect."""
        return sorted(set(self.tensors.values()))


def _at_qdq_opset(model: ir.Model, samples: Sequence[Mapping] | None) -> ir.Model:
    """`model` at QDQ_MIN_OPSET at least (per-axis QDQ), its outputs on `samples` (None:
    synthesized ones) checked against its own before: onnx's version converter changes what some
    ops compute (`opset.convert` mends the cases known, and refuses those it cannot), and INT8
    would then report the difference as its own drift. A user error then."""
    current = default_opset(model.opset_imports) or 1
    if current >= QDQ_MIN_OPSET:
        return model
    needs = f"static INT8 needs opset {QDQ_MIN_OPSET} (QDQ)"
    checked = None if samples is None else list(samples)[:CONVERSION_CHECKS]
    try:
        converted = opset.convert(model, QDQ_MIN_OPSET)
        mismatches, _ = verify.compare(model, converted, checked)
    except OnnxSlimError as err:  # (the converted model does not load, or not run)
        raise OnnxSlimError(f"{needs}: {first_line(err)}") from err
    if mismatches:
        raise OnnxSlimError(
            f"{needs}, and onnx's version converter changes the model's outputs converting it "
            f"from opset {current} ({mismatches[0]}): export the model at opset "
            f"{QDQ_MIN_OPSET} or later"
        )
    return converted


def prepare(model: ir.Model, samples: Sequence[Mapping] | None = None) -> ir.Model:
    """Name every node and make per-axis QDQ expressible (`_at_qdq_opset`, checked on
    `samples`)."""
    model = _at_qdq_opset(model, samples)
    common.NameFixPass()(model)
    return model


def weight_uses(
    model: ir.Model, op_types: Collection[str], exclude_nodes: Collection[str] = ()
) -> set[tuple[ir.Node, int]]:
    """(node, input index) of the weights and float tables of MIN_TABLE_ELEMENTS or more
    (`STORED_TABLES`) of the main graph's nodes of `op_types` outside `exclude_nodes`: INT8
    stores a constant read there in 8 bits."""
    uses = set()
    for node in model.graph:
        if node.domain != "" or node.op_type not in op_types or node.name in exclude_nodes:
            continue
        rule = RULES.get(node.op_type)
        if rule is not None and rule.kind in (WEIGHTED, WEIGHT_ONLY):
            uses.add((node, rule.weight))
        elif node.op_type in RECURRENT_WEIGHTS:  # dynamic INT8's (W and R)
            uses.update((node, index) for index in RECURRENT_WEIGHTS[node.op_type])
        elif node.op_type in STORED_TABLES:
            index = STORED_TABLES[node.op_type][0]
            if storable_table(node.inputs[index] if len(node.inputs) > index else None):
                uses.add((node, index))
    return uses


def computed_weights(
    model: ir.Model, op_types: Collection[str], exclude_nodes: Collection[str] = ()
) -> list[str]:
    """The weights constants compute (a Cast of float16 weights, a Transpose of an initializer,
    ...) that only nodes of `op_types` outside `exclude_nodes` read, as weights: INT8 quantizes
    them once `FoldProducers` made them constants."""
    uses = weight_uses(model, op_types, exclude_nodes)
    computable = computable_values(model.graph)
    names = []
    for node, index in uses:
        weight = node.inputs[index] if len(node.inputs) > index else None
        if weight in computable and uses.issuperset(weight.uses()):
            names.append(weight.name)
    return sorted(set(names))


def make_plan(
    model: ir.Model,
    options: QuantOptions = QuantOptions(),
    sizes: Mapping[str, float] | None = None,
    dtypes: Mapping[str, str] | None = None,
) -> QuantPlan:
    """Decide which nodes of the main graph to quantize and which activations get Q/DQ pairs.

    Weighted ops (Conv, Gemm, MatMul, ...) are decided first, so their inputs count as quantized for
    the ops that need quantized inputs; then every node in topological order; then ops whose
    quantized output nothing quantized reads go back to float. ``sizes`` (elements per sample of
    tensors, from calibration) lets ``options.min_macs`` leave small ops in float; ``dtypes``
    (numpy dtype names of tensors, from calibration) keep float the nodes reading a tensor that
    is not float32 where the graph does not say its type (a double MatMul of computed values).
    """
    graph = model.graph
    result = QuantPlan()
    allowed = options.quantize_ops - options.exclude_ops
    candidates = [(n, RULES[n.op_type]) for n in graph if n.op_type in RULES and n.domain == ""]
    sizes, dtypes = sizes or {}, dtypes or {}
    producers: set[str] = set()  # quantized nodes (and the Relu/Clip folded into them)
    for node, rule in candidates:
        if rule.kind == WEIGHTED and not _float_reason(
            node, rule, allowed, options, result.tensors, sizes, dtypes, set()
        ):
            for value in activation_inputs(node, rule):
                result.tensors[value.name] = value.name
    for node, rule in candidates:
        reason = _float_reason(
            node, rule, allowed, options, result.tensors, sizes, dtypes, producers
        )
        if reason:
            if (
                reason.startswith((FASTER_IN_FLOAT, SENSITIVE))
                and node.inputs[rule.weight].const_value is not None
            ):
                result.weight_only.append(node.name)
                if not reason.startswith(SENSITIVE):  # which says so itself
                    reason += f"; {STORED_COMPUTE}"
            result.floats[node.name] = reason
            continue
        result.nodes.append(node.name)
        if rule.kind == WEIGHT_ONLY:
            continue
        producers.add(node.name)
        if rule.kind == SHARED:
            source = result.tensors[node.inputs[0].name]
            result.tensors.update(
                (out.name, source) for out in node.outputs if not out.is_graph_output()
            )
            continue
        out = _fold_activation(node, options, allowed, result)
        if out.producer() is not node:
            producers.add(out.producer().name)
        if not out.is_graph_output():
            result.tensors[out.name] = out.name
        elif rule.kind == WEIGHTED and not rule.float_output:
            # a graph output a Conv writes: ORT fuses its int8 kernel only with a Q after it
            # (trades.py times the conv in float)
            result.tensors[out.name] = out.name
            result.dequantized_outputs.add(out.name)
    _prune_unused(model, result)
    quantized = set(result.nodes)
    result.weight_only += [
        n.name
        for n in graph
        if n.op_type in STORED_TABLES
        and n.domain == ""
        and n.name not in quantized
        and n.name not in options.exclude_nodes
        and stored_weight(n)
    ]
    _float_weights_kept(model, result)
    return result


def _float_weights_kept(model: ir.Model, result: QuantPlan) -> None:
    """Int8-stored weights only where no node keeps the weight float: where one does, the file
    holds it anyway, and an int8 copy beside it only adds to the file (a g2p decoder's weight
    read by 19 MatMuls, two of them on an int8 copy: 1.05x the lossless file). Such nodes read
    the float weight (their reasons say so), until only nodes storing or computing it in INT8
    read a weight stored in int8."""
    by_name = {n.name: n for n in model.graph}
    stored = [
        *(n for n in result.nodes if RULES[by_name[n].op_type].kind == WEIGHT_ONLY),
        *result.weight_only,
    ]
    while True:
        int8 = set(result.nodes) | set(result.weight_only)
        shared = [
            name
            for name in stored
            if any(use.node.name not in int8 for use in _weight(by_name[name]).uses())
        ]
        if not shared:
            return
        for name in shared:
            stored.remove(name)
            if name in result.nodes:
                result.nodes.remove(name)
                result.floats[name] = SHARED_FLOAT
            else:
                result.weight_only.remove(name)
                result.floats[name] = result.floats[name].replace(STORED_COMPUTE, SHARED_FLOAT)


def _weight(node: ir.Node) -> ir.Value:
    """The constant `node` stores in int8 (`stored_weight`)."""
    return node.inputs[stored_weight(node)[0]]


def _float_reason(
    node: ir.Node,
    rule,
    allowed,
    options: QuantOptions,
    tensors: Mapping[str, str],
    sizes: Mapping[str, float],
    dtypes: Mapping[str, str],
    quantized: frozenset[str] | set[str] = frozenset(),
) -> str | None:
    """Why ``node`` can't (or shouldn't) be quantized, or None."""
    if node.name in options.exclude_nodes:
        return "excluded by name"
    if node.op_type not in allowed:
        return "op type not selected"
    if quantized_already(node, rule):
        return QUANTIZED_ALREADY  # (before the rule's reasons: its bias is a DQ output too)
    reason = rule.check(node)
    if reason:
        return reason
    if rule.kind in (WEIGHTED, WEIGHT_ONLY):
        weight = node.inputs[rule.weight]
        if reason := not_float32(weight):
            return reason
        if weight.const_value is None and (node.op_type != "MatMul" or rule.kind == WEIGHT_ONLY):
            return "weight is not a constant"
        if not finite(weight):
            return NOT_FINITE
        if rule.kind == WEIGHT_ONLY:
            return None
        if node.name in options.weight_only_nodes:
            return f"{SENSITIVE}: {STORED_COMPUTE}"
        if options.skip_depthwise and is_depthwise(node):
            return f"{FASTER_IN_FLOAT}: {DEPTHWISE_IN_FLOAT}"
        macs = macs_per_output(node)
        size = sizes.get(node.outputs[0].name)
        if options.min_macs and macs and size and macs * size < options.min_macs:
            return f"{FASTER_IN_FLOAT}: {TOO_SMALL} ({int(macs * size)} MACs)"
    inputs = activation_inputs(node, rule)
    if any(v is None or v.const_value is not None or not _float32(v, dtypes) for v in inputs):
        return "an input is constant or not float"
    if rule.kind != WEIGHTED and any(v.name not in tensors for v in inputs):
        return "input is not quantized"
    if rule.kind == COMPUTE and any(
        v.producer() is not None and v.producer().name not in quantized for v in inputs
    ):
        # e.g. a residual Add reading a LayerNorm: keep it float
        return "an input comes from a float op"
    return None


def _float32(value: ir.Value, dtypes: Mapping[str, str]) -> bool:
    """Whether `value` is float32 by its type in the graph, else as calibration saw it (neither
    known: assumed)."""
    if value.dtype is not None:
        return value.dtype == ir.DataType.FLOAT
    return dtypes.get(value.name, "float32") == "float32"


def quantized_already(node: ir.Node, rule) -> bool:
    """Whether `node` is in a QDQ unit of a model quantized before: an activation it reads is
    dequantized computed values."""
    return any(_dequantized_activation(v) for v in activation_inputs(node, rule))


def _dequantized_activation(value: ir.Value | None) -> bool:
    """Whether a DequantizeLinear of computed values gives `value` (a QDQ unit's input; one that
    dequantizes a stored int8 weight does not count)."""
    node = producer(value)
    return (
        node is not None
        and node.op_type == "DequantizeLinear"
        and node.inputs[0].const_value is None
    )


def activation_inputs(node: ir.Node, rule) -> list[ir.Value | None]:
    """Inputs quantized as activations (a constant MatMul weight is a weight, not an activation)."""
    if rule.kind == WEIGHTED:
        weight = node.inputs[rule.weight] if len(node.inputs) > rule.weight else None
        indices = (0,) if weight is None or weight.const_value is not None else (0, rule.weight)
    else:
        indices = range(len(node.inputs)) if rule.activations is None else rule.activations
    return [node.inputs[i] if i < len(node.inputs) else None for i in indices]


def _fold_activation(node: ir.Node, options: QuantOptions, allowed, result: QuantPlan) -> ir.Value:
    """The value whose range closes ``node``: the output of a lone Relu/Clip after it (folded into
    ``node`` in ``result``), else its own output."""
    out = node.outputs[0]
    users = list(out.uses())
    if len(users) != 1 or out.is_graph_output():
        return out
    act = users[0].node
    bounds = FOLDABLE[act.op_type](act) if act.op_type in FOLDABLE and act.domain == "" else None
    if (
        bounds is None
        or bounds[0] > 0.0
        or act.op_type not in allowed
        or act.name in options.exclude_nodes
    ):
        return out
    result.folded[act.name] = node.name
    if options.activation_type == "int8":
        result.asymmetric.add(act.outputs[0].name)  # zero point at -128 lets ORT drop the Relu
    return act.outputs[0]


def _prune_unused(model: ir.Model, result: QuantPlan) -> None:
    """Return to float the compute/shared nodes whose quantized output no quantized node reads."""
    by_name = {n.name: n for n in model.graph}
    closing = {owner: by_name[act] for act, owner in result.folded.items()}
    kept = set(result.nodes)
    for name in reversed(result.nodes):
        node = by_name[name]
        if RULES[node.op_type].kind in (WEIGHTED, WEIGHT_ONLY):
            continue
        outs = closing.get(name, node).outputs
        if any(use.node.name in kept for v in outs for use in v.uses()):
            continue
        kept.discard(name)
        result.floats[name] = "no quantized consumer"
        for v in outs:
            result.tensors.pop(v.name, None)
        if name in closing:
            del result.folded[closing[name].name]
    result.nodes = [n for n in result.nodes if n in kept]


def not_float32(weight: ir.Value) -> str | None:
    """Why a constant weight cannot be quantized for its dtype (INT8 starts from float32), or
    None (float32, or not a constant)."""
    tensor = weight.const_value
    dtype = weight.dtype or (tensor.dtype if tensor is not None else None)  # (an untyped value)
    if tensor is not None and dtype != ir.DataType.FLOAT:
        return f"weight is {dtype.name.lower()}, not float32"
    return None


def weighted_nodes(model: ir.Model, op_types, exclude_nodes) -> dict[str, str | None]:
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


def constant_weights(
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
