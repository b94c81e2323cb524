"""Layer normalization written out elementwise fused into LayerNormalization (opset 17+).

Over the last axis of x, with mean and variance taken over that axis (keepdims)::

    d = x - ReduceMean(x)
    y = d / Sqrt(ReduceMean(d * d) + eps)      # or d ** 2; or d * Reciprocal(Sqrt(...)),
      = LayerNormalization(x, ones, axis=-1, epsilon=eps)   # d * (1 / Sqrt(...)) (torch's rsqrt)

    (g * d) / Sqrt(...) = LayerNormalization(x, g, ...)     # g per channel, before the division

or with the variance taken from the first two moments (Flax's fast variance, clamped at 0)::

    y = d / Sqrt(Max(ReduceMean(x * x) - ReduceMean(x) ** 2, 0) + eps)   # the same y

and a per-channel constant scale or shift after a LayerNormalization over the last axis folds in::

    LayerNormalization(x, s, b) * g = LayerNormalization(x, s * g, b * g)
    LayerNormalization(x, s, b) + c = LayerNormalization(x, s, b + c)

so the usual ``... * gamma + beta`` tail ends up as the op's Scale and B.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import pattern

from onnxslim.passes.rules.common import (
    constant,
    keeps_shape,
    new_initializer,
    normalize_axes,
    opset,
    parameter,
    static_dims,
)
from onnxslim.passes.rules.operands import either, ordered

_TYPES = frozenset({ir.DataType.FLOAT, ir.DataType.FLOAT16, ir.DataType.DOUBLE})
#: LayerNormalization computes in float32 by default (stash_type=1); a double model keeps double.
_STASH = {ir.DataType.DOUBLE: {"stash_type": ir.DataType.DOUBLE.value}}


def _reduces_last_axis(node: ir.Node, rank: int | None) -> bool:
    """ReduceMean over the last axis only, keeping dims (axes an attribute before opset 18, an input
    from 18)."""
    keepdims = node.attributes.get("keepdims")
    if keepdims is not None and keepdims.as_int() != 1:
        return False
    axes = parameter(node, "axes", 1)
    if axes is None or axes.size != 1:
        return False
    if int(axes.reshape(-1)[0]) == -1:
        return True
    return rank is not None and normalize_axes(axes.reshape(-1), rank) == (rank - 1,)


class WrittenOutLayerNorm(pattern.RewriteRuleClassBase):
    """(x - mean(x)) / Sqrt(mean((x - mean(x))^2) + eps) -> LayerNormalization(x, ones, eps).

    `power`: the square is written Pow(d, 2) (else d * d); `reciprocal`: the division is written
    d * Reciprocal(Sqrt(...)) ("Reciprocal") or d * (1 / Sqrt(...)) ("Div"), with d first unless
    `swapped`. One rule per form keeps each rule's op types exact (a rule is only tried on models
    containing all of them).
    """

    def __init__(
        self, power: bool, reciprocal: str | None, swapped: bool = False, name: str | None = None
    ) -> None:
        form = ("Pow" if power else "Mul") + {"Reciprocal": "Reciprocal", "Div": "OneDiv"}.get(
            reciprocal, "Div"
        )
        super().__init__(name or f"{type(self).__name__}{form}{'Swapped' if swapped else ''}")
        self.power, self.reciprocal, self.swapped = power, reciprocal, swapped

    def normalized(self, op, x, eps, exponent):
        """d and Sqrt(variance + eps), the two halves of the division."""
        mean = op.ReduceMean(x, _allow_other_inputs=True, _outputs=["mean"])
        d = op.Sub(x, mean)
        squared = op.Pow(d, exponent) if self.power else op.Mul(d, d)
        variance = op.ReduceMean(squared, _allow_other_inputs=True, _outputs=["variance"])
        return d, op.Sqrt(either("Add", op, variance, eps))

    def pattern(self, op, x, eps, exponent, one):
        d, std = self.normalized(op, x, eps, exponent)
        if self.reciprocal == "Reciprocal":
            return ordered("Mul", op, d, op.Reciprocal(std), self.swapped)
        if self.reciprocal == "Div":
            return ordered("Mul", op, d, op.Div(one, std), self.swapped)
        return op.Div(d, std)

    def check(self, context, x, eps, mean, variance, exponent=None, one=None, **_):
        result = pattern.MatchResult()
        if opset(context) < 17:
            return result.fail("LayerNormalization exists from opset 17")
        if x.dtype not in _TYPES:
            return result.fail("LayerNormalization here takes float, float16 or double", x)
        dims = static_dims(x)
        if not dims or dims[-1] is None:
            return result.fail("the last dim must be known (for the scale of ones)", x)
        for reduce in (mean.producer(), variance.producer()):
            if not _reduces_last_axis(reduce, len(dims)):
                return result.fail("ReduceMean is not over the last axis with keepdims", reduce)
        if exponent is not None and not _is_scalar(exponent, x, 2.0):
            return result.fail("Pow exponent is not a constant 2", exponent)
        if one is not None and not _is_scalar(one, x, 1.0):
            return result.fail("the reciprocal's numerator is not a constant 1", one)
        epsilon = constant(eps)
        if epsilon is None or epsilon.size != 1 or not keeps_shape(x, epsilon.shape):
            return result.fail("epsilon is not a constant scalar", eps)
        value = float(epsilon.reshape(-1)[0])
        if not np.isfinite(value) or value < 0:
            return result.fail("epsilon is negative or not finite", eps)
        return result

    def rewrite(self, op, x, eps, **_):
        ones = np.ones(static_dims(x)[-1], dtype=x.dtype.numpy())
        return self.layernorm(op, x, eps, new_initializer(op, ones, x, "ln_scale"))

    @staticmethod
    def layernorm(op, x, eps, scale):
        epsilon = float(constant(eps).reshape(-1)[0])
        stash = _STASH.get(x.dtype, {})
        return op.LayerNormalization(x, scale, axis=-1, epsilon=epsilon, **stash)


class ScaledWrittenOutLayerNorm(WrittenOutLayerNorm):
    """(g * d) / Sqrt(mean(d^2) + eps) -> LayerNormalization(x, g, eps), d = x - mean(x), g a
    constant per channel (torch: ``g * (x - u) / torch.sqrt(v + eps)``); g * d with g first
    unless `swapped`."""

    def __init__(self, power: bool, swapped: bool) -> None:
        super().__init__(power, None, swapped)

    def pattern(self, op, x, eps, exponent, g):
        d, std = self.normalized(op, x, eps, exponent)
        return op.Div(ordered("Mul", op, g, d, self.swapped), std)

    def check(self, context, x, g, **rest):
        result = super().check(context, x, **rest)
        if result and _per_channel(g, x, static_dims(x)[-1]) is None:
            return result.fail("the scale is not a constant varying along the last axis only", g)
        return result

    def rewrite(self, op, x, eps, g, **_):
        scale = new_initializer(op, _per_channel(g, x, static_dims(x)[-1]), x, "ln_scale")
        return self.layernorm(op, x, eps, scale)


class MomentsLayerNorm(WrittenOutLayerNorm):
    """(x - mean(x)) / Sqrt(Max(mean(x * x) - mean(x) * mean(x), 0) + eps) -> LayerNormalization(x,
    ones, eps) (Flax's LayerNorm, `use_fast_variance`; without the Max unless `clamped`).

    The variance is the same in exact arithmetic; where x's mean is large against its spread, the
    moments lose digits the op keeps (it subtracts the mean first, in float32 at least).
    """

    def __init__(self, clamped: bool) -> None:
        super().__init__(False, None, name=f"{type(self).__name__}{'Max' * clamped}")
        self.clamped = clamped

    def pattern(self, op, x, eps, zero):
        mean = op.ReduceMean(x, _allow_other_inputs=True, _outputs=["mean"])
        second = op.ReduceMean(op.Mul(x, x), _allow_other_inputs=True, _outputs=["variance"])
        variance = op.Sub(second, op.Mul(mean, mean))
        if self.clamped:
            variance = either("Max", op, variance, zero)
        return op.Div(op.Sub(x, mean), op.Sqrt(either("Add", op, variance, eps)))

    def check(self, context, x, zero=None, **rest):
        result = super().check(context, x, **rest)
        if result and zero is not None and not _is_scalar(zero, x, 0.0):
            return result.fail("the variance is clamped at another value than 0", zero)
        return result


def _is_scalar(value: ir.Value, x: ir.Value, expected: float) -> bool:
    """Whether `value` is a constant `expected` that broadcasting with `x` leaves x's rank."""
    array = constant(value)
    return (
        array is not None
        and array.size == 1
        and float(array.reshape(-1)[0]) == expected
        and keeps_shape(x, array.shape)
    )


def _last_axis_layernorm(normalized: ir.Value) -> ir.Node | None:
    """The LayerNormalization producing `normalized` if it normalizes the last axis only and has a
    constant 1-D scale and a constant or no bias; else None."""
    node = normalized.producer()
    axis = node.attributes.get("axis")
    rank = len(static_dims(normalized) or ()) or None
    if axis is not None and axis.as_int() != -1 and (rank is None or axis.as_int() != rank - 1):
        return None
    if len(node.outputs) != 1:
        return None
    scale = constant(node.inputs[1])
    if scale is None or scale.ndim != 1:
        return None
    bias = node.inputs[2] if len(node.inputs) > 2 else None
    if bias is not None and constant(bias) is None:
        return None
    return node


def _per_channel(value: ir.Value, normalized: ir.Value, size: int) -> np.ndarray | None:
    """`value` as a 1-D array of `size` if it is a constant varying along the last axis only and
    broadcasting it leaves `normalized`'s shape unchanged; else None."""
    array = constant(value)
    if array is None or normalized.dtype is None or array.dtype != normalized.dtype.numpy():
        return None
    rank = len(static_dims(normalized) or ()) or None
    if array.ndim > (rank if rank is not None else 1) or any(d != 1 for d in array.shape[:-1]):
        return None
    if array.ndim and array.shape[-1] not in (1, size):
        return None
    return np.broadcast_to(array.reshape(-1), (size,)).copy()


class _FoldIntoLayerNorm(pattern.RewriteRuleClassBase):
    """Shared check: a last-axis LayerNormalization, constant parameters, a per-channel constant.

    `swapped`: the constant is the first operand.
    """

    def __init__(self, swapped: bool) -> None:
        super().__init__(f"{type(self).__name__}{'Swapped' if swapped else ''}")
        self.swapped = swapped

    def check(self, context, normalized, c, **_) -> pattern.MatchResult:  # noqa: ARG002
        result = pattern.MatchResult()
        node = _last_axis_layernorm(normalized)
        if node is None:
            return result.fail("not a last-axis LayerNormalization with constants", normalized)
        if _per_channel(c, normalized, constant(node.inputs[1]).size) is None:
            return result.fail("not a constant varying along the last axis only", c)
        return result

    @staticmethod
    def parts(normalized, c):
        node = normalized.producer()
        scale = constant(node.inputs[1])
        bias = node.inputs[2] if len(node.inputs) > 2 else None
        bias = constant(bias) if bias is not None else None
        return node, scale, bias, _per_channel(c, normalized, scale.size)

    @staticmethod
    def layernorm(op, node, scale, bias):
        """The LayerNormalization `node` with new parameters (arrays become initializers)."""
        x = node.inputs[0]
        params = [
            p if isinstance(p, ir.Value) else new_initializer(op, p, x, suffix)
            for p, suffix in ((scale, "ln_scale"), (bias, "ln_bias"))
            if p is not None
        ]
        return op.LayerNormalization(x, *params, **node.attributes)


class LayerNormScale(_FoldIntoLayerNorm):
    """LayerNormalization(x, s, b) * g -> LayerNormalization(x, s * g, b * g), g per channel."""

    def pattern(self, op, x, c):
        normalized = op.LayerNormalization(x, _allow_other_inputs=True, _outputs=["normalized"])
        return ordered("Mul", op, normalized, c, self.swapped)

    def rewrite(self, op, normalized, c, **_):
        node, scale, bias, g = self.parts(normalized, c)
        return self.layernorm(op, node, scale * g, None if bias is None else bias * g)


class LayerNormShift(_FoldIntoLayerNorm):
    """LayerNormalization(x, s, b) + c -> LayerNormalization(x, s, b + c), c per channel."""

    def pattern(self, op, x, c):
        normalized = op.LayerNormalization(x, _allow_other_inputs=True, _outputs=["normalized"])
        return ordered("Add", op, normalized, c, self.swapped)

    def rewrite(self, op, normalized, c, **_):
        node, _, bias, shift = self.parts(normalized, c)
        return self.layernorm(op, node, node.inputs[1], shift if bias is None else bias + shift)


rules = (
    *(WrittenOutLayerNorm.rule(power, None) for power in (True, False)),
    *(
        WrittenOutLayerNorm.rule(power, reciprocal, swapped)
        for power in (True, False)
        for reciprocal in ("Reciprocal", "Div")
        for swapped in (False, True)
    ),
    *(
        ScaledWrittenOutLayerNorm.rule(power, swapped)
        for power in (True, False)
        for swapped in (False, True)
    ),
    *(MomentsLayerNorm.rule(clamped) for clamped in (False, True)),
    *(fold.rule(swapped) for fold in (LayerNormScale, LayerNormShift) for swapped in (False, True)),
)
