"""No-op nodes onnxscript's rules miss, each replaced by its input once shapes and dtypes prove
it unchanged.

(Cast to the same type, identity Transpose and single-axis full Slices are onnxscript's rules,
wired next to these in `prune.RemoveNoOps`. Its x*1 / x+0 rules are not: they match constants
within a tolerance, and `Log(x * x + 1e-10)` is no `Log(x * x)`.)

Expand(x, s) broadcasts x with the shape s: its output has the shape broadcast(x.shape, s).
torch writes `expand_as(y)` as Expand(x, Shape(y)) and `expand(...)` with a computed s (see
`reshape.trace`). Each element of s is compared with the dims it meets, aligned from the right:
- ExpandToSameShape: when s has no more elements than x has axes and each is 1 or x's own dim
  there (`reshape.same_dim`: static, same symbolic name, or the same root through the graph),
  broadcast(x.shape, s) = x.shape and Expand(x, s) = x;
- ExpandBeforeBroadcast: op(Expand(x, s), y, ...) for an op broadcasting all its inputs
  multidirectionally (Add, Mul, Where, Equal, ...): broadcasting is associative, commutative and
  idempotent, so op(x, y, ...) has the same shape and values when each element of s is 1 or
  equals the dim of x or of another operand at its axis (s adds nothing to the mix), and s has no
  more elements than the widest of them (it adds no axis). A model whose shapes clash fails either
  way. `x * y.expand_as(x)` (squeeze-and-excitation), `mask.expand_as(scores)` in a Where.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import pattern
from onnxscript.rewriter.pattern import MatchResult

from onnxslim.model.graph import producer
from onnxslim.passes.rules.common import (
    INT64_MAX,
    constant,
    keeps_shape,
    new_initializer,
    normalize_axes,
    parameter,
    slice_params,
    static_dims,
)
from onnxslim.passes.rules.reshape import DimRoots, rank_of, same_dim, trace


class _ToIdentity(pattern.RewriteRuleClassBase):
    def rewrite(self, op, x, **_):
        return op.Identity(x)


class ReshapeToSameShape(_ToIdentity):
    """Reshape(x, shape) -> x when `shape` gives x's shape (0 copies a dim, -1 takes the rest)."""

    def pattern(self, op, x, shape):
        return op.Reshape(x, shape, _allow_other_attributes=True, _outputs=["out"])

    def check(self, context, x, shape, out, **_) -> MatchResult:  # noqa: ARG002 onnxscript passes the matched values by keyword
        result = MatchResult()
        target, dims = constant(shape), static_dims(x)
        if target is None or dims is None or target.shape != (len(dims),):
            return result.fail("shape or rank not known")
        copies_zero = not out.producer().attributes.get_int("allowzero", 0)
        kept = [(t == 0 and copies_zero) or t == d for t, d in zip(target.tolist(), dims)]
        free = [t == -1 for t in target.tolist()]
        if not all(k or f for k, f in zip(kept, free)) or sum(free) > 1:
            return result.fail("shape changes")
        return result


class ExpandToSameShape(_ToIdentity):
    """Expand(x, s) -> x when s broadcasts into x's own shape."""

    def pattern(self, op, x, shape):
        return op.Expand(x, shape)

    def check(self, context, x, shape, **_) -> MatchResult:  # noqa: ARG002 onnxscript passes the matched values by keyword
        if not _broadcast_adds_nothing(shape, x, []):
            return MatchResult().fail("the shape may grow x")
        return MatchResult()


class ExpandBeforeBroadcast(pattern.RewriteRuleClassBase):
    """op(..., Expand(x, s), ...) -> op(..., x, ...) when x and the other operands already
    broadcast to every dim s has; the Expand stays for its other consumers."""

    def __init__(self, op_type: str, arity: int, position: int) -> None:
        super().__init__(f"Expand{position}{op_type}", remove_nodes=False)
        self.op_type, self.arity, self.position = op_type, arity, position

    def _operands(self, first, a, b):
        """The op's inputs with `first` at the Expand's position, a (and b) at the others."""
        operands = [a, b][: self.arity - 1]
        operands.insert(self.position, first)
        return operands

    def pattern(self, op, x, shape, a, b):
        return getattr(op, self.op_type)(*self._operands(op.Expand(x, shape), a, b))

    def check(self, context, x, shape, a, b=None) -> MatchResult:  # noqa: ARG002 onnxscript passes the matched values by keyword
        if not _broadcast_adds_nothing(shape, x, [a, b][: self.arity - 1]):
            return MatchResult().fail("the shape may grow the result")
        return MatchResult()

    def rewrite(self, op, x, shape, a, b=None):  # noqa: ARG002 onnxscript passes the matched values by keyword
        return getattr(op, self.op_type)(*self._operands(x, a, b))


#: Ops broadcasting their two inputs multidirectionally, and with no attributes (PRelu
#: broadcasts one way; Mod and BitShift have attributes the rewrite would drop).
_BROADCASTING = (
    *("Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean"),
    *("Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or", "Xor"),
)


def _broadcast_adds_nothing(shape, x, operands) -> bool:
    """Whether broadcast(x, operands..., shape) = broadcast(x, operands...): shape (traced) has
    no more elements than the widest of them has axes, and each element is 1 or the dim of one of
    them at its axis, aligned from the right."""
    elements, values = trace(shape), [x, *operands]
    ranks = [rank_of(value) for value in values]
    if elements is None or None in ranks or len(elements) > max(ranks):
        return False
    rank, roots = max(ranks), DimRoots()
    for i, element in enumerate(elements):
        axis = rank - len(elements) + i
        if element != 1 and not any(
            same_dim(element, value, axis - rank + r, roots)
            for value, r in zip(values, ranks)
            if axis - rank + r >= 0
        ):
            return False
    return True


class PadWithZeroPads(_ToIdentity):
    """Pad(x, pads) -> x when every pad is zero, whatever the mode."""

    def pattern(self, op, x):
        return op.Pad(x, _allow_other_inputs=True, _allow_other_attributes=True, _outputs=["out"])

    def check(self, context, x, out, **_) -> MatchResult:  # noqa: ARG002 onnxscript passes the matched values by keyword
        pads = parameter(out.producer(), "pads", 1)
        if pads is None or np.any(pads != 0):
            return MatchResult().fail("pads not all zero")
        return MatchResult()


class ConcatOfOne(_ToIdentity):
    """Concat(x) -> x."""

    def pattern(self, op, x):
        return op.Concat(x, _allow_other_attributes=True)


class SplitIntoOne(_ToIdentity):
    """Split(x) with a single output -> x."""

    def pattern(self, op, x):
        return op.Split(x, _allow_other_inputs=True, _allow_other_attributes=True, _outputs=["out"])

    def check(self, context, x, out, **_) -> MatchResult:  # noqa: ARG002 onnxscript passes the matched values by keyword
        if len(out.producer().outputs) != 1:
            return MatchResult().fail("more than one output")
        return MatchResult()


class SliceOverFullRange(_ToIdentity):
    """Slice(x) -> x when on every sliced axis the step is 1, the start is 0 (or <= -dim) and the
    end >= dim."""

    def pattern(self, op, x):
        return op.Slice(x, _allow_other_inputs=True, _allow_other_attributes=True, _outputs=["out"])

    def check(self, context, x, out, **_) -> MatchResult:  # noqa: ARG002 onnxscript passes the matched values by keyword
        result = MatchResult()
        params, dims = slice_params(out.producer()), static_dims(x)
        if params is None:
            return result.fail("slice parameters not constant")
        for start, end, axis, step in zip(*(p.tolist() for p in params)):
            dim = dims[axis] if dims is not None and -len(dims) <= axis < len(dims) else None
            if step != 1 or not _covers(start, end, dim):
                return result.fail(f"axis {axis} is cut")
        return result


class ReduceOverOnes(pattern.RewriteRuleClassBase):
    """Reduce(x, axes) -> x (keepdims) or Reshape(x, x's shape without them) when every reduced
    axis has size 1: a sum, mean, max, min or product of one element is that element (hummingbird's
    tree ensembles sum their one tree: `ReduceSum(Reshape(x, [-1, 1, 3]), [1])`)."""

    def __init__(self, op_type: str) -> None:
        super().__init__(f"{op_type}OverOnes")
        self.op_type = op_type

    def pattern(self, op, x):
        return getattr(op, self.op_type)(
            x, _allow_other_inputs=True, _allow_other_attributes=True, _outputs=["out"]
        )

    def check(self, context, x, out, **_) -> MatchResult:  # noqa: ARG002 onnxscript passes the matched values by keyword
        result = MatchResult()
        axes, dims = parameter(out.producer(), "axes", 1), static_dims(x)
        if axes is None or axes.size == 0 or dims is None:
            return result.fail("axes or rank not known (no axes: all of them)")
        axes = normalize_axes(axes, len(dims))
        if axes is None or any(dims[axis] != 1 for axis in axes):
            return result.fail("a reduced axis may be longer than 1")
        if _kept_dims(out.producer(), dims, axes) is None:
            return result.fail("the dims left are not known enough for a Reshape")
        return result

    def rewrite(self, op, x, out, **_):
        dims = static_dims(x)
        axes = normalize_axes(parameter(out.producer(), "axes", 1), len(dims))
        shape = _kept_dims(out.producer(), dims, axes)
        if len(shape) == len(dims):
            return op.Identity(x)
        return op.Reshape(x, new_initializer(op, np.array(shape, dtype=np.int64), out, "shape"))


def _kept_dims(node: ir.Node, dims: tuple, axes: tuple[int, ...]) -> list[int] | None:
    """The Reshape target of `dims` without `axes` (all of them with keepdims): static dims as
    numbers, one unknown as -1, others as 0 where they keep their position; None if that cannot
    be said (two unknowns past a removed axis, or a static 0, which Reshape would read as copy)."""
    if node.attributes.get_int("keepdims", 1):
        return list(dims)
    kept = [(i, d) for i, d in enumerate(dims) if i not in axes]
    unknown = [i for i, d in kept if d is None]
    if 0 in dims or len(unknown) > 1 and any(i != n for n, (i, d) in enumerate(kept) if d is None):
        return None
    return [d if d is not None else -1 if len(unknown) == 1 else 0 for _, d in kept]


def _covers(start: int, end: int, dim: int | None) -> bool:
    """A step-1 slice [start:end] keeps all of an axis of length `dim` (None: unknown)."""
    if dim is None:
        return start == 0 and end == INT64_MAX
    return (start == 0 or start <= -dim) and end >= dim


class NeutralElement(_ToIdentity):
    """x <op> c -> x when c is all `neutral` (x*1, x/1, x+0, x-0, x and True, x or False) and
    broadcast keeps x's shape; but not an RMSNorm's scale of ones (`_rms_normalized`)."""

    def __init__(self, op_type: str, neutral: int | bool) -> None:
        super().__init__(f"{op_type}Neutral")
        self.op_type, self.neutral = op_type, neutral

    def pattern(self, op, x, c):
        return getattr(op, self.op_type)(x, c)

    def check(self, context, x, c, **_) -> MatchResult:  # noqa: ARG002 onnxscript passes the matched values by keyword
        value = constant(c)
        if value is None or not np.all(value == self.neutral):
            return MatchResult().fail(f"not all {self.neutral}")
        if x.dtype not in (None, c.dtype) or not (value.ndim == 0 or keeps_shape(x, value.shape)):
            return MatchResult().fail("broadcasting may change the shape")
        if self.op_type == "Mul" and value.ndim == 1 and _rms_normalized(x):
            return MatchResult().fail("the scale of an RMSNorm, which ORT fuses with it")
        return MatchResult()


def _rms_normalized(x: ir.Value) -> bool:
    """Whether `x` is ``v / Sqrt(...)`` or ``v * (1 / Sqrt(...))``, maybe Cast (half precision):
    RMSNorm's normalized value, which ORT 1.32 fuses with the scale Mul after it into
    SimplifiedLayerNormalization, and not without it (a random-init LLaMA's scale of ones gone:
    its RMSNorm + MatMul ran 1.07x the time); ``v * Reciprocal(Sqrt(...))`` it fuses neither
    way."""
    node = x.producer()
    if node is not None and node.op_type == "Cast":
        node = producer(node.inputs[0])
    if node is None or node.op_type not in ("Mul", "Div"):
        return False
    if node.op_type == "Div":
        return _is_op(producer(node.inputs[1]), "Sqrt")
    for value in node.inputs:
        inverse = producer(value)
        if _is_op(inverse, "Div") and _is_op(producer(inverse.inputs[1]), "Sqrt"):
            one = constant(inverse.inputs[0])
            if one is not None and np.all(one == 1):
                return True
    return False


def _is_op(node: ir.Node | None, op_type: str) -> bool:
    return node is not None and node.op_type == op_type and node.domain == ""


rules = (
    ReshapeToSameShape.rule(),
    ExpandToSameShape.rule(),
    *(ExpandBeforeBroadcast.rule(op_type, 2, k) for op_type in _BROADCASTING for k in (0, 1)),
    *(ExpandBeforeBroadcast.rule("Where", 3, k) for k in (0, 1, 2)),
    PadWithZeroPads.rule(),
    ConcatOfOne.rule(),
    SplitIntoOne.rule(),
    SliceOverFullRange.rule(),
    *(ReduceOverOnes.rule(f"Reduce{kind}") for kind in ("Sum", "Mean", "Max", "Min", "Prod")),
    *NeutralElement.rule("Mul", 1).commute(),
    *NeutralElement.rule("Add", 0).commute(),
    NeutralElement.rule("Sub", 0),
    NeutralElement.rule("Div", 1),
    *NeutralElement.rule("And", True).commute(),
    *NeutralElement.rule("Or", False).commute(),
)
