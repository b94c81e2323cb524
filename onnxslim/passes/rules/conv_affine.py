"""Conv/ConvTranspose followed by a per-output-channel constant Mul, Div, Add or Sub, folded into weight and bias.

Scaling output channel o by s and shifting it by t is W'[o] = W[o] * s, B'[o] = B[o] * s + t, whatever the
group and dilations (each output channel has its own filter). ConvTranspose stores W as [Cin, Cout/group, ...].
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import pattern
from onnxscript.rewriter._basics import MatchResult

from onnxslim.passes.rules._common import FLOAT_TYPES, constant, new_initializer


class ConvAffine(pattern.RewriteRuleClassBase):
    """Conv(x, W, B) <op> c -> Conv(x, W', B') for a constant c that varies at most along the channel axis."""

    def __init__(self, conv_type: str, op_type: str) -> None:
        super().__init__(f"{conv_type}{op_type}")
        self.conv_type, self.op_type = conv_type, op_type

    def pattern(self, op, x, w, c):
        conv = getattr(op, self.conv_type)(
            x, w, _allow_other_inputs=True, _allow_other_attributes=True, _outputs=["conv_out"]
        )
        return getattr(op, self.op_type)(conv, c)

    def check(self, context, x, w, c, conv_out) -> MatchResult:
        result = MatchResult()
        node = conv_out.producer()
        bias = node.inputs[2] if len(node.inputs) > 2 else None
        weight, operand = constant(w), constant(c)
        if weight is None or operand is None or (bias is not None and constant(bias) is None):
            return result.fail("weight, bias or operand not constant")
        if any(len(v.uses()) > 1 for v in (w, bias) if v is not None):
            return result.fail("weight or bias shared with another node")
        if x.dtype not in FLOAT_TYPES or not x.dtype == w.dtype == c.dtype:
            return result.fail("dtypes differ or are not float")
        if node.op_type == "ConvTranspose" and weight.shape[0] % _group(node):
            return result.fail("input channels not divisible by group")
        if _per_channel(operand, weight.ndim, _out_channels(node, weight)) is None:
            return result.fail("operand is not per-channel or would broadcast the output")
        if self.op_type == "Div" and np.any(operand == 0):
            return result.fail("division by zero")
        return result

    def rewrite(self, op, x, w, c, conv_out):
        node = conv_out.producer()
        weight = constant(w).astype(np.float64)
        channels = _out_channels(node, weight)
        operand = _per_channel(constant(c), weight.ndim, channels).astype(np.float64)
        scale, shift = _SCALE_SHIFT[self.op_type](operand)
        bias = constant(node.inputs[2]) if len(node.inputs) > 2 and node.inputs[2] is not None else 0.0
        dtype = w.dtype.numpy()
        new_w = _scale_weight(node, weight, scale).astype(dtype)
        new_b = (np.broadcast_to(bias, (channels,)) * scale + shift).astype(dtype)
        return getattr(op, self.conv_type)(
            x,
            new_initializer(op, new_w, conv_out, "weight"),
            new_initializer(op, new_b, conv_out, "bias"),
            **node.attributes,
        )


_SCALE_SHIFT = {
    "Mul": lambda c: (c, np.zeros_like(c)),
    "Div": lambda c: (1.0 / c, np.zeros_like(c)),
    "Add": lambda c: (np.ones_like(c), c),
    "Sub": lambda c: (np.ones_like(c), -c),
}


def _group(node: ir.Node) -> int:
    return node.attributes.get_int("group", 1)


def _out_channels(node: ir.Node, weight: np.ndarray) -> int:
    return weight.shape[1] * _group(node) if node.op_type == "ConvTranspose" else weight.shape[0]


def _per_channel(operand: np.ndarray, rank: int, channels: int) -> np.ndarray | None:
    """The operand as one value per output channel, or None if it varies along another axis or adds dims."""
    if operand.ndim > rank:
        return None
    shape = (1,) * (rank - operand.ndim) + operand.shape
    if shape[0] != 1 or shape[1] not in (1, channels) or any(d != 1 for d in shape[2:]):
        return None
    return np.broadcast_to(operand.reshape(-1), (channels,))


def _scale_weight(node: ir.Node, weight: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Weight with output channel o multiplied by scale[o]."""
    kernel = (1,) * (weight.ndim - 2)
    if node.op_type == "Conv":
        return weight * scale.reshape(-1, 1, *kernel)
    group = _group(node)
    grouped = weight.reshape(group, weight.shape[0] // group, *weight.shape[1:])
    return (grouped * scale.reshape(group, 1, -1, *kernel)).reshape(weight.shape)


rules = tuple(
    rule
    for conv_type in ("Conv", "ConvTranspose")
    for op_type in ("Mul", "Add", "Sub", "Div")
    for rule in ConvAffine.rule(conv_type, op_type).commute()
)
