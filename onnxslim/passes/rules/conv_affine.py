"""Per-channel constant Mul, Div, Add or Sub next to a Conv, folded into its weight and bias.

After a Conv/ConvTranspose: scaling output channel o by s and shifting it by t is W'[o] = W[o] * s,
B'[o] = B[o] * s + t, whatever the group and dilations (each output channel has its own filter).
ConvTranspose stores W as [Cin, Cout/group, ...].
Before a Conv: x * s scales the filter taps that read each input channel, x + t adds sum(W * t) to
the bias; the shift holds only without padding (a padded zero would have been t). A bias another
Conv shares stays shared where the fold leaves it as it is (a scale before the Conv, or after it
on a zero bias); elsewhere the Conv gets a bias of its own. The * 0.5 that completes a written-out
Gelu stays (ORT fuses the Gelu only with it in place: `gelu.awaits_half`).
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import pattern
from onnxscript.rewriter.pattern import MatchResult

from onnxslim.passes.rules import gelu
from onnxslim.passes.rules.common import FLOAT_TYPES, constant, keeps_shape, new_initializer


class ConvAffine(pattern.RewriteRuleClassBase):
    """Conv(x, W, B) <op> c -> Conv(x, W', B') for a constant c varying at most along channels."""

    def __init__(self, conv_type: str, op_type: str) -> None:
        super().__init__(f"{conv_type}{op_type}")
        self.conv_type, self.op_type = conv_type, op_type

    def pattern(self, op, x, w, c):
        conv = getattr(op, self.conv_type)(
            x, w, _allow_other_inputs=True, _allow_other_attributes=True, _outputs=["conv_out"]
        )
        return getattr(op, self.op_type)(conv, c)

    def check(self, context, x, w, c, conv_out) -> MatchResult:  # noqa: ARG002 onnxscript passes the matched values by keyword
        node = conv_out.producer()
        bias_kept = self.op_type in ("Mul", "Div") and _zero_bias(node)
        reason = _cannot_absorb(node, x, w, c, bias_kept) or _cannot_apply(
            self.op_type, c, _out_channels(node, constant(w)), node
        )
        return MatchResult().fail(reason) if reason else MatchResult()

    def rewrite(self, op, x, w, c, conv_out):
        node = conv_out.producer()
        weight = constant(w).astype(np.float64)
        channels = _out_channels(node, weight)
        scale, shift = _scale_shift(self.op_type, _per_channel(constant(c), weight.ndim, channels))
        new_w = _scale_outputs(node, weight, scale)
        new_b = np.broadcast_to(_bias(node), (channels,)) * scale + shift
        return _conv(op, node, x, w, conv_out, new_w, new_b)


class AffineConv(pattern.RewriteRuleClassBase):
    """Conv(x <op> c, W, B) -> Conv(x, W', B') for a constant c varying at most along channels."""

    def __init__(self, op_type: str) -> None:
        super().__init__(f"{op_type}Conv")
        self.op_type = op_type

    def pattern(self, op, x, c, w):
        return op.Conv(
            getattr(op, self.op_type)(x, c),
            w,
            _allow_other_inputs=True,
            _allow_other_attributes=True,
            _outputs=["conv_out"],
        )

    def check(self, context, x, c, w, conv_out) -> MatchResult:  # noqa: ARG002 onnxscript passes the matched values by keyword
        node = conv_out.producer()
        bias_kept = self.op_type in ("Mul", "Div")
        reason = _cannot_absorb(node, x, w, c, bias_kept) or _cannot_apply(
            self.op_type, c, _in_channels(node, constant(w)), node
        )
        if not reason and (
            x.shape is None
            or x.shape.rank() != constant(w).ndim
            or not keeps_shape(x, constant(c).shape)
        ):
            reason = "the operand broadcasts the Conv input"
        if not reason and self.op_type in ("Add", "Sub") and _padded(node):
            reason = "a shift before a padded Conv would change the border"
        if not reason and self.op_type in ("Mul", "Div") and gelu.awaits_half(x):
            reason = "the operand completes a written-out Gelu, which ORT fuses"
        return MatchResult().fail(reason) if reason else MatchResult()

    def rewrite(self, op, x, c, w, conv_out):
        node = conv_out.producer()
        weight = constant(w).astype(np.float64)
        operand = _per_channel(constant(c), weight.ndim, _in_channels(node, weight))
        scale, shift = (_per_tap(node, weight, a) for a in _scale_shift(self.op_type, operand))
        new_b = _bias(node) + np.sum(weight * shift, axis=tuple(range(1, weight.ndim)))
        return _conv(op, node, x, w, conv_out, weight * scale, new_b)


_SCALE_SHIFT = {
    "Mul": lambda c: (c, np.zeros_like(c)),
    "Div": lambda c: (1.0 / c, np.zeros_like(c)),
    "Add": lambda c: (np.ones_like(c), c),
    "Sub": lambda c: (np.ones_like(c), -c),
}


def _scale_shift(op_type: str, operand: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`x <op_type> operand` written as x * scale + shift, in float64."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return _SCALE_SHIFT[op_type](operand.astype(np.float64))


def _cannot_absorb(
    node: ir.Node, x: ir.Value, w: ir.Value, c: ir.Value, bias_kept: bool
) -> str | None:
    """Why `node` cannot take constant c into its weight and bias (None if it can); `bias_kept`:
    the fold leaves the bias as it is (a scale before the Conv, or after it on a zero bias)."""
    bias = node.inputs[2] if len(node.inputs) > 2 else None
    weight = constant(w)
    if weight is None or constant(c) is None or (bias is not None and constant(bias) is None):
        return "weight, bias or operand not constant"
    if len(w.uses()) > 1 or w.is_graph_output():
        return "weight shared with another node or a graph output"
    if bias is not None and len(bias.uses()) > 1 and not bias_kept:
        # the node gets a bias of its own: no bigger than the operand, if the operand goes
        operand_goes = len(c.uses()) == 1 and not c.is_graph_output()
        if not operand_goes or constant(c).size < constant(bias).size:
            return "bias shared with another node, and the operand stays or is smaller"
    if x.dtype not in FLOAT_TYPES or not x.dtype == w.dtype == c.dtype:
        return "dtypes differ or are not float"
    if weight.ndim < 3 or weight.shape[0] % _group(node):
        return "weight shape does not fit the group"
    return None


def _cannot_apply(op_type: str, c: ir.Value, channels: int, node: ir.Node) -> str | None:
    """Why `op_type` with constant c cannot be expressed per channel (None if it can)."""
    operand = _per_channel(constant(c), constant(node.inputs[1]).ndim, channels)
    if operand is None:
        return "operand is not per-channel or would broadcast the result"
    if not all(np.all(np.isfinite(a)) for a in _scale_shift(op_type, operand)):
        return "operand is not finite (or divides by zero)"
    return None


def _group(node: ir.Node) -> int:
    return node.attributes.get_int("group", 1)


def _zero_bias(node: ir.Node) -> bool:
    """The node has no bias, or a constant one of zeros."""
    if len(node.inputs) < 3 or node.inputs[2] is None:
        return True
    bias = constant(node.inputs[2])
    return bias is not None and not np.any(bias)


def _bias(node: ir.Node) -> np.ndarray | float:
    has_bias = len(node.inputs) > 2 and node.inputs[2] is not None
    return constant(node.inputs[2]).astype(np.float64) if has_bias else 0.0


def _out_channels(node: ir.Node, weight: np.ndarray) -> int:
    return weight.shape[1] * _group(node) if node.op_type == "ConvTranspose" else weight.shape[0]


def _in_channels(node: ir.Node, weight: np.ndarray) -> int:
    return weight.shape[1] * _group(node)


def _padded(node: ir.Node) -> bool:
    auto_pad = node.attributes.get_string("auto_pad", "NOTSET")
    return auto_pad not in ("NOTSET", "VALID") or any(node.attributes.get_ints("pads", ()))


def _per_channel(operand: np.ndarray, rank: int, channels: int) -> np.ndarray | None:
    """The operand as one value per channel (axis 1), or None if it varies along another
    axis or adds dims."""
    if operand.ndim > rank:
        return None
    shape = (1,) * (rank - operand.ndim) + operand.shape
    if shape[0] != 1 or shape[1] not in (1, channels) or any(d != 1 for d in shape[2:]):
        return None
    return np.broadcast_to(operand.reshape(-1), (channels,))


def _scale_outputs(node: ir.Node, weight: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Weight with output channel o multiplied by scale[o]."""
    kernel = (1,) * (weight.ndim - 2)
    if node.op_type == "Conv":
        return weight * scale.reshape(-1, 1, *kernel)
    group = _group(node)
    grouped = weight.reshape(group, weight.shape[0] // group, *weight.shape[1:])
    return (grouped * scale.reshape(group, 1, -1, *kernel)).reshape(weight.shape)


def _per_tap(node: ir.Node, weight: np.ndarray, per_input: np.ndarray) -> np.ndarray:
    """A per-input-channel array laid out like a Conv weight [Cout, Cin/group, 1, ...]: the channel
    each tap reads."""
    out_per_group = weight.shape[0] // _group(node)
    group_of = np.arange(weight.shape[0])[:, None] // out_per_group
    channel = group_of * weight.shape[1] + np.arange(weight.shape[1])[None, :]
    return per_input[channel].reshape(*channel.shape, *(1,) * (weight.ndim - 2))


def _conv(
    op,
    node: ir.Node,
    x: ir.Value,
    w: ir.Value,
    near: ir.Value,
    weight: np.ndarray,
    bias: np.ndarray,
):
    """`node` rebuilt on x with new weight and bias (in the original dtype); a bias it had keeps its
    initializer, shared or not, when its values stay, and a zero bias it lacked stays out."""
    dtype = w.dtype.numpy()
    bias = np.broadcast_to(np.asarray(bias).astype(dtype), (_out_channels(node, weight),))
    old = node.inputs[2] if len(node.inputs) > 2 else None
    if old is not None and np.array_equal(constant(old), bias):
        biases = [old]
    elif old is None and not np.any(bias):
        biases = []
    else:
        biases = [new_initializer(op, bias, near, "bias")]
    new_w = new_initializer(op, weight.astype(dtype), near, "weight")
    return getattr(op, node.op_type)(x, new_w, *biases, **node.attributes)


rules = (
    *(
        rule
        for conv_type in ("Conv", "ConvTranspose")
        for op_type in _SCALE_SHIFT
        for rule in ConvAffine.rule(conv_type, op_type).commute()
    ),
    *(rule for op_type in _SCALE_SHIFT for rule in AffineConv.rule(op_type).commute()),
)
