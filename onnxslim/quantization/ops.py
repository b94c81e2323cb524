"""Which ops INT8 quantization touches, and how: one table row per op type.

- ``weighted``: a float activation input plus a constant weight (int8 per output channel) and an
  optional bias (int32); ORT fuses DQ -> op -> Q into QLinearConv, QGemm, QLinearMatMul, ...
  (and DQ -> MatMul/Gemm, no Q after, into MatMulIntegerToFloat/QGemm; not a Conv)
- ``weight-only``: ORT has no fused kernel; the weight is stored int8 and dequantized, the op
  runs in float.
- ``compute``: all inputs must already be quantized activations; the output gets its own range
  (ORT's QLinearAdd, QLinearMul, QLinearConcat, QLinearSigmoid, QLinearGlobalAveragePool, ...).
- ``shared``: data movement; the outputs reuse the input's scale and zero point so ORT drops the
  Q/DQ pair and runs the op on uint8.
- ``FOLDABLE`` activations (Relu, Clip) right after a quantized op disappear into its output range.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import numpy as np
import onnx_ir as ir

WEIGHTED, WEIGHT_ONLY, COMPUTE, SHARED = "weighted", "weight-only", "compute", "shared"


def attribute(node: ir.Node, name: str, default):
    """The value of attribute `name` of `node`, or `default`."""
    attr = node.attributes.get(name)
    return default if attr is None else attr.value


def is_depthwise(node: ir.Node) -> bool:
    """A grouped Conv with one input and one output channel per group (ORT's depthwise kernels;
    a channel multiplier runs its grouped GEMM)."""
    weight = node.inputs[1] if len(node.inputs) > 1 else None
    shape = weight.shape if weight is not None else None
    group = attribute(node, "group", 1)
    return (
        node.op_type == "Conv"
        and group > 1
        and shape is not None
        and len(shape) > 1
        and shape[1] == 1
        and shape[0] == group
    )


def macs_per_output(node: ir.Node) -> int | None:
    """MACs per output element of a weighted op (None when the weight shape is unknown)."""
    weight = node.inputs[1] if len(node.inputs) > 1 else None
    if weight is None or weight.shape is None or not weight.shape.is_static():
        return None
    dims = list(weight.shape)
    if node.op_type == "Conv":
        return int(np.prod(dims[1:]))
    if node.op_type == "ConvTranspose":
        return int(dims[0] * np.prod(dims[2:]))
    if node.op_type == "Gemm":
        return dims[1] if attribute(node, "transB", 0) else dims[0]
    return dims[-2] if len(dims) >= 2 else None


def _always(_node: ir.Node) -> str | None:
    return None


def _gemm_check(node: ir.Node) -> str | None:
    if attribute(node, "transA", 0):
        return "Gemm with transA"
    bias = node.inputs[2] if len(node.inputs) > 2 else None
    if bias is not None and (
        bias.const_value is None
        or len(bias.shape or ()) != 1
        or attribute(node, "beta", 1.0) != 1.0
    ):
        return "Gemm bias is not a constant 1-D vector with beta=1"
    return None


def _resize_check(node: ir.Node) -> str | None:
    return None if attribute(node, "mode", "nearest") == "nearest" else "Resize is not nearest"


def _conv_transpose_axis(node: ir.Node) -> int | None:
    # Weight is [C_in, C_out / group, ...]; per output channel only when there is one group.
    return 1 if attribute(node, "group", 1) == 1 else None


@dataclasses.dataclass(frozen=True)
class OpRule:
    """How one op type is quantized. ``weight_axis``: its per-channel axis (None: per-tensor)."""

    kind: str
    activations: tuple[int, ...] | None = (0,)  # None: every input
    weight: int | None = None
    weight_axis: Callable[[ir.Node], int | None] = lambda _: 0
    bias: int | None = None
    check: Callable[[ir.Node], str | None] = _always  # a reason it can't be quantized, or None
    # write the (zero) weight zero point: ORT fuses QGemm only with it
    weight_zero_point: bool = False
    # ORT computes it in int8 with no QuantizeLinear after it too (MatMulIntegerToFloat, QGemm's
    # float output); a Conv whose output is not quantized runs in float on dequantized values
    float_output: bool = False


RULES: dict[str, OpRule] = {
    "Conv": OpRule(WEIGHTED, weight=1, bias=2),
    "ConvTranspose": OpRule(WEIGHT_ONLY, weight=1, weight_axis=_conv_transpose_axis),
    "Gemm": OpRule(
        WEIGHTED,
        weight=1,
        weight_axis=lambda n: 0 if attribute(n, "transB", 0) else 1,
        bias=2,
        check=_gemm_check,
        weight_zero_point=True,
        float_output=True,
    ),
    "MatMul": OpRule(WEIGHTED, weight=1, weight_axis=lambda _: -1, float_output=True),
    "Add": OpRule(COMPUTE, activations=(0, 1)),
    "Mul": OpRule(COMPUTE, activations=(0, 1)),
    "Concat": OpRule(COMPUTE, activations=None),
    "Sigmoid": OpRule(COMPUTE),
    "LeakyRelu": OpRule(COMPUTE),
    "GlobalAveragePool": OpRule(COMPUTE),
    "AveragePool": OpRule(COMPUTE),
    "MaxPool": OpRule(SHARED),
    "Reshape": OpRule(SHARED),
    "Transpose": OpRule(SHARED),
    "Squeeze": OpRule(SHARED),
    "Unsqueeze": OpRule(SHARED),
    "Gather": OpRule(SHARED),
    "Split": OpRule(SHARED),
    "Resize": OpRule(SHARED, check=_resize_check),
}

# Activations that fold into the preceding quantized op's output range (ORT removes them before a Q
# whose range they don't clip): op type -> function giving the (lo, hi) the activation clips to,
# None if unknown.
FOLDABLE: dict[str, Callable[[ir.Node], tuple[float, float] | None]] = {
    "Relu": lambda _: (0.0, float("inf")),
    "Clip": lambda node: _clip_bounds(node),
}


def _clip_bounds(node: ir.Node) -> tuple[float, float] | None:
    if len(node.inputs) <= 1:  # opset < 11: attributes
        return float(attribute(node, "min", float("-inf"))), float(
            attribute(node, "max", float("inf"))
        )
    bounds = []
    for i, default in ((1, float("-inf")), (2, float("inf"))):
        value = node.inputs[i] if len(node.inputs) > i else None
        if value is None:
            bounds.append(default)
        elif value.const_value is None:
            return None
        else:
            bounds.append(float(value.const_value.numpy()))
    return bounds[0], bounds[1]


#: Recurrent ops only dynamic INT8 quantizes (ORT's DynamicQuantizeLSTM; static INT8 has no rule
#: for them), by their weight inputs (W, R).
RECURRENT_WEIGHTS: dict[str, tuple[int, ...]] = {"LSTM": (1, 2)}

# Ops quantized when the user does not narrow the set (--quantize-op).
DEFAULT_OPS = frozenset(RULES) | frozenset(FOLDABLE)

# Float constants read by ops that ORT can't run in int8 but whose table is worth storing in int8
# (embeddings): op type -> (input index, per-channel axis). Stored as Cast + Mul, folded by ORT
# when it loads the model.
STORED_TABLES: dict[str, tuple[int, int]] = {"Gather": (0, 0)}
MIN_TABLE_ELEMENTS = 4096


def layer_weight(node: ir.Node) -> ir.TensorProtocol | None:
    """The constant weight of a weighted op of the default domain (Conv, MatMul, ...), or None."""
    rule = RULES.get(node.op_type)
    if node.domain not in ("", "ai.onnx") or rule is None or rule.kind != WEIGHTED:
        return None
    weight = node.inputs[rule.weight] if len(node.inputs) > rule.weight else None
    return None if weight is None else weight.const_value


def stored_weight(node: ir.Node) -> tuple[int, int | None] | None:
    """The (input index, per-channel axis) of the constant of ``node`` to store in int8, if any."""
    rule = RULES.get(node.op_type)
    if rule is not None and rule.weight is not None:
        return rule.weight, rule.weight_axis(node)
    if node.op_type in STORED_TABLES:
        index, axis = STORED_TABLES[node.op_type]
        value = node.inputs[index] if len(node.inputs) > index else None
        if value is not None and value.const_value is not None and storable_table(value):
            return index, axis
    return None


def storable_table(value: ir.Value | None) -> bool:
    """Whether `value` is a float table of `table_dims` (by its tensor, or by its static shape
    where constants compute it): one INT8 stores in 8 bits per row (`STORED_TABLES`)."""
    if value is None or value.dtype != ir.DataType.FLOAT or not finite(value):
        return False
    shape = value.const_value.shape if value.const_value is not None else value.shape
    return shape is not None and shape.is_static() and table_dims(shape.numpy())


def finite(value: ir.Value) -> bool:
    """Whether a constant holds no inf or NaN, which no int8 scale holds (RT-DETR's anchors, inf
    where invalid, folded into the table of a Gather); True for a computed value."""
    return value.const_value is None or bool(np.isfinite(value.const_value.numpy()).all())


def table_dims(dims: Sequence[int]) -> bool:
    """Whether a float table of `dims` is stored in int8 per row: two or more axes (a 1-D table's
    rows are single values: a scale for each made its file 1.25x float's) and MIN_TABLE_ELEMENTS
    or more values."""
    return len(dims) >= 2 and math.prod(dims) >= MIN_TABLE_ELEMENTS
