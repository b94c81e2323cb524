"""Data-movement chains collapsed: Transpose+Transpose (also when the inner one has other
consumers), Unsqueeze+Unsqueeze, cancelling Squeeze/Unsqueeze pairs, a Reshape of a
Squeeze/Unsqueeze/Flatten and a Squeeze/Unsqueeze of a Reshape, Slice+Slice, nested Concat, two
scalings by constant scalars.

(Reshape+Reshape is onnxscript's rule, wired in `fuse.CHAINS`.)
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import pattern
from onnxscript.rewriter.pattern import MatchResult

from onnxslim.passes import upstream
from onnxslim.passes.rules import gelu
from onnxslim.passes.rules.common import (
    FLOAT_TYPES,
    constant,
    keeps_shape,
    new_initializer,
    normalize_axes,
    opset,
    parameter,
    slice_params,
    static_dims,
)


def _squeeze_axes(node: ir.Node) -> tuple[int, ...] | None:
    """The axes a Squeeze removes (>= 0); without axes, the size-1 dims of a fully static input."""
    dims = static_dims(node.inputs[0])
    ones = (
        None
        if dims is None or None in dims
        else np.array([i for i, d in enumerate(dims) if d == 1])
    )
    axes = parameter(node, "axes", 1, default=ones)
    return None if axes is None else normalize_axes(axes, len(dims) if dims is not None else None)


def _unsqueeze_axes(node: ir.Node) -> tuple[int, ...] | None:
    """The axes an Unsqueeze inserts, as positions in its output (non-negative)."""
    axes, dims = parameter(node, "axes", 1), static_dims(node.inputs[0])
    if axes is None:
        return None
    return normalize_axes(axes, len(dims) + axes.size if dims is not None else None)


class TransposeTranspose(upstream.TransposeTranspose):
    """Transpose(Transpose(x, p1), p2) -> x when p2 . p1 is the identity, else one Transpose.

    onnxscript's rule, applied also when the inner Transpose has other consumers (it stays for
    them): the outer node is replaced by at most one node, so the count never grows, and an
    inverse pair is gone for the consumers that had it (TF exports' NHWC <-> NCHW round trips).
    """

    def __init__(self) -> None:
        super().__init__(remove_nodes=False)


class UnsqueezeUnsqueeze(pattern.RewriteRuleClassBase):
    """Unsqueeze(Unsqueeze(x, a), b) -> Unsqueeze(x, c), any number of axes in a and b.

    Math: b are positions in the output; the inner result's axes fill the other positions in
    order, so the inner result's axis p lands on the p-th position not in b, and c is b with the
    axes of a mapped so. (onnxscript's rule takes one non-negative axis in each.)
    """

    def pattern(self, op, x):
        inner = op.Unsqueeze(
            x, _allow_other_inputs=True, _allow_other_attributes=True, _outputs=["inner"]
        )
        return op.Unsqueeze(
            inner, _allow_other_inputs=True, _allow_other_attributes=True, _outputs=["outer"]
        )

    def check(self, context, x, inner, outer) -> MatchResult:  # noqa: ARG002 onnxscript passes the matched values by keyword
        if _merged_unsqueeze_axes(inner, outer) is None:
            return MatchResult().fail("axes unknown")
        return MatchResult()

    def rewrite(self, op, x, inner, outer):
        axes = np.array(_merged_unsqueeze_axes(inner, outer), dtype=np.int64)
        if "axes" in outer.producer().attributes:  # before opset 13
            return op.Unsqueeze(x, axes=axes.tolist())
        return op.Unsqueeze(x, new_initializer(op, axes, outer, "axes"))


def _merged_unsqueeze_axes(inner: ir.Value, outer: ir.Value) -> list[int] | None:
    """The axes of one Unsqueeze doing what the Unsqueeze of `inner` then that of `outer` do."""
    first, second = _unsqueeze_axes(inner.producer()), _unsqueeze_axes(outer.producer())
    if first is None or second is None:
        return None
    free = [axis for axis in range(max(first, default=0) + len(second) + 1) if axis not in second]
    return sorted([*second, *(free[axis] for axis in first)])


class CancellingPair(pattern.RewriteRuleClassBase):
    """Squeeze(Unsqueeze(x, axes), axes) -> x, and Unsqueeze(Squeeze(x, axes), axes) -> x; the
    inner node stays for its other consumers, if any (paddle2onnx's shape arithmetic squeezes a
    dim for a Mul and unsqueezes it back for a Concat)."""

    def __init__(self, inner_op: str, outer_op: str) -> None:
        super().__init__(f"{outer_op}{inner_op}", remove_nodes=False)
        self.inner_op, self.outer_op = inner_op, outer_op

    def pattern(self, op, x):
        inner = getattr(op, self.inner_op)(
            x, _allow_other_inputs=True, _allow_other_attributes=True, _outputs=["inner"]
        )
        return getattr(op, self.outer_op)(
            inner, _allow_other_inputs=True, _allow_other_attributes=True, _outputs=["outer"]
        )

    def check(self, context, x, inner, outer) -> MatchResult:  # noqa: ARG002 onnxscript passes the matched values by keyword
        first, second = (_AXES[v.producer().op_type](v.producer()) for v in (inner, outer))
        if first is None or second is None or sorted(first) != sorted(second):
            return MatchResult().fail("axes differ or are unknown")
        return MatchResult()

    def rewrite(self, op, x, **_):
        return op.Identity(x)


_AXES = {"Squeeze": _squeeze_axes, "Unsqueeze": _unsqueeze_axes}


class ReshapeOfShapeOnly(pattern.RewriteRuleClassBase):
    """Reshape(op(x), shape) -> Reshape(x, shape) for op Squeeze, Unsqueeze or Flatten, when
    `shape` is a constant with no 0 (a 0 copies the input's dim at that index) or allowzero is set.

    Math: those ops keep x's elements in order and only relabel its dims, and Reshape reads only
    the elements in order and their count (for its -1); so the Reshape of op(x) is the Reshape of
    x. A Reshape back to the shape x had (TF exports' squeeze-and-excite: GlobalAveragePool ->
    Squeeze -> Reshape([-1, C, 1, 1])) then goes as a no-op. The inner node stays for its other
    consumers, if any.
    """

    def __init__(self, inner_op: str) -> None:
        super().__init__(f"Reshape{inner_op}", remove_nodes=False)
        self.inner_op = inner_op

    def pattern(self, op, x, shape):
        inner = getattr(op, self.inner_op)(
            x, _allow_other_inputs=True, _allow_other_attributes=True, _outputs=["inner"]
        )
        return op.Reshape(inner, shape, _allow_other_attributes=True, _outputs=["out"])

    def check(self, context, x, shape, inner, out) -> MatchResult:  # noqa: ARG002 onnxscript passes the matched values by keyword
        target = constant(shape)
        if target is None or target.ndim != 1:
            return MatchResult().fail("the shape is not a constant")
        if 0 in target.tolist() and not out.producer().attributes.get_int("allowzero", 0):
            return MatchResult().fail("a 0 copies a dim of the Reshape's own input")
        return MatchResult()

    def rewrite(self, op, x, shape, out, **_):
        allowzero = out.producer().attributes.get_int("allowzero", 0)
        return op.Reshape(x, shape, allowzero=allowzero) if allowzero else op.Reshape(x, shape)


class ShapeOnlyOfReshape(pattern.RewriteRuleClassBase):
    """Squeeze(Reshape(x, shape), axes) -> Reshape(x, shape without axes), and
    Unsqueeze(Reshape(x, shape), axes) -> Reshape(x, shape with 1s at axes), when `shape` is a
    constant with no 0 (or allowzero is set) and each squeezed axis is a literal 1 in it.

    Math: Squeeze and Unsqueeze remove or insert dims of size 1 and keep the elements in order,
    so after a Reshape they are one Reshape to the dims they give; its -1 (one at most) stands for
    the same count, the dims removed or added being 1s (tf2onnx's Keras attention: Reshape ->
    Squeeze -> Unsqueeze before each Transpose; a TFLite Conv1D: Reshape -> Unsqueeze). The
    Reshape stays for its other consumers, if any.
    """

    def __init__(self, outer_op: str) -> None:
        super().__init__(f"{outer_op}Reshape", remove_nodes=False)
        self.outer_op = outer_op

    def pattern(self, op, x, shape):
        inner = op.Reshape(x, shape, _allow_other_attributes=True, _outputs=["inner"])
        return getattr(op, self.outer_op)(
            inner, _allow_other_inputs=True, _allow_other_attributes=True, _outputs=["out"]
        )

    def check(self, context, x, shape, inner, out) -> MatchResult:  # noqa: ARG002 onnxscript passes the matched values by keyword
        if _reshaped_target(shape, inner, out) is None:
            return MatchResult().fail("shape or axes not constant, a 0 in it, or a squeezed -1")
        return MatchResult()

    def rewrite(self, op, x, shape, inner, out):
        target = new_initializer(op, _reshaped_target(shape, inner, out), out, "shape")
        allowzero = inner.producer().attributes.get_int("allowzero", 0)
        return op.Reshape(x, target, allowzero=allowzero) if allowzero else op.Reshape(x, target)


def _reshaped_target(shape: ir.Value, inner: ir.Value, out: ir.Value) -> np.ndarray | None:
    """The shape one Reshape gives x where the Reshape of x to `shape` (giving `inner`), then the
    Squeeze or Unsqueeze giving `out`, do (ShapeOnlyOfReshape); None where it cannot."""
    target = constant(shape)
    if target is None or target.ndim != 1:
        return None
    dims = target.tolist()
    if 0 in dims and not inner.producer().attributes.get_int("allowzero", 0):
        return None  # a 0 copies x's dim at its index, which the axes would move
    node = out.producer()
    given = "axes" in node.attributes or (len(node.inputs) > 1 and node.inputs[1] is not None)
    axes = parameter(node, "axes", 1)
    if given and axes is None:
        return None
    if node.op_type == "Squeeze":
        if given and axes.size == 0:  # nothing, as onnx reads it (ORT unoptimized: every 1)
            return None
        if not given:  # every dim of size 1, which a -1 may be
            ones = [i for i, d in enumerate(dims) if d == 1]
            axes = None if -1 in dims else np.array(ones, dtype=np.int64)
        removed = None if axes is None else normalize_axes(axes, len(dims))
        if removed is None or any(dims[axis] != 1 for axis in removed):
            return None
        return np.array([d for i, d in enumerate(dims) if i not in removed], dtype=np.int64)
    inserted = normalize_axes(axes, len(dims) + axes.size) if given else None
    if inserted is None or len(set(inserted)) != len(inserted):
        return None
    rest = iter(dims)
    size = len(dims) + len(inserted)
    return np.array([1 if i in inserted else next(rest) for i in range(size)], dtype=np.int64)


class UnsqueezeTransposeSqueeze(pattern.RewriteRuleClassBase):
    """Squeeze(Transpose(Unsqueeze(x))) -> Transpose(x) when the Squeeze removes exactly
    the inserted dims."""

    def pattern(self, op, x, perm):
        inner = op.Unsqueeze(
            x, _allow_other_inputs=True, _allow_other_attributes=True, _outputs=["inner"]
        )
        moved = op.Transpose(inner, perm=perm)
        return op.Squeeze(
            moved, _allow_other_inputs=True, _allow_other_attributes=True, _outputs=["outer"]
        )

    def check(self, context, x, perm, inner, outer) -> MatchResult:  # noqa: ARG002 onnxscript passes the matched values by keyword
        if _remaining_perm(perm, inner, outer) is None:
            return MatchResult().fail("the Squeeze does not remove exactly the inserted dims")
        return MatchResult()

    def rewrite(self, op, x, perm, inner, outer):
        remaining = _remaining_perm(perm, inner, outer)
        if remaining == list(range(len(remaining))):
            return op.Identity(x)
        return op.Transpose(x, perm=remaining)


def _remaining_perm(perm: ir.Attr, inner: ir.Value, outer: ir.Value) -> list[int] | None:
    """The perm of x's axes left once the inserted axes are dropped; None if the Squeeze differs."""
    inserted, removed = _unsqueeze_axes(inner.producer()), _squeeze_axes(outer.producer())
    if perm.is_ref():
        return None
    order = list(perm.as_ints())
    if inserted is None or removed is None or sorted(order) != list(range(len(order))):
        return None
    if {i for i, axis in enumerate(order) if axis in inserted} != set(removed):
        return None
    # y's axes that come from x, in x's order
    kept = [axis for axis in range(len(order)) if axis not in inserted]
    return [kept.index(axis) for axis in order if axis not in inserted]


class SliceSlice(pattern.RewriteRuleClassBase):
    """Slice(Slice(x)) -> one Slice when the two slice disjoint axes (each axis is cut once, so
    order is moot)."""

    def pattern(self, op, x):
        inner = op.Slice(x, _allow_other_inputs=True, _outputs=["inner"])
        return op.Slice(inner, _allow_other_inputs=True, _outputs=["outer"])

    def check(self, context, x, inner, outer) -> MatchResult:
        result = MatchResult()
        if opset(context) < 10:
            return result.fail("Slice takes its parameters as inputs from opset 10")
        first, second = slice_params(inner.producer()), slice_params(outer.producer())
        if first is None or second is None:
            return result.fail("slice parameters not constant")
        dims = static_dims(x)
        rank = len(dims) if dims is not None else None
        axes = normalize_axes(np.concatenate([first[2], second[2]]), rank)
        if axes is None or len(set(axes)) != len(axes):
            return result.fail("axes overlap or are unknown")
        return result

    def rewrite(self, op, x, inner, outer):
        first, second = slice_params(inner.producer()), slice_params(outer.producer())
        merged = [np.concatenate([a, b]) for a, b in zip(first, second)]
        names = ("starts", "ends", "axes", "steps")
        return op.Slice(x, *(new_initializer(op, m, outer, n) for m, n in zip(merged, names)))


class NestedConcat(pattern.RewriteRuleClassBase):
    """Concat(a, Concat(b, c), d) -> Concat(a, b, c, d) on the same axis, if the inner
    result has no other use."""

    def __init__(self) -> None:
        super().__init__(remove_nodes=False)

    def pattern(self, op):
        return op.Concat(_allow_other_inputs=True, _allow_other_attributes=True, _outputs=["out"])

    def check(self, context, out) -> MatchResult:  # noqa: ARG002 onnxscript passes the matched values by keyword
        if not _nested(out.producer()):
            return MatchResult().fail("no nested Concat on the same axis")
        return MatchResult()

    def rewrite(self, op, out):
        node = out.producer()
        inputs = []
        for value in node.inputs:
            inputs.extend(value.producer().inputs if value in _nested(node) else [value])
        return op.Concat(*inputs, axis=node.attributes.get_int("axis"))


def _nested(node: ir.Node) -> set[ir.Value]:
    """Inputs of a Concat that are single-use results of a Concat on the same axis."""
    dims = static_dims(node.outputs[0])
    rank = len(dims) if dims is not None else None
    axis = node.attributes.get_int("axis")
    found = set()
    for value in node.inputs:
        inner = value.producer()
        if inner is None or inner.op_type != "Concat" or inner.domain not in ("", "ai.onnx"):
            continue
        if (
            len(value.uses()) == 1
            and not value.is_graph_output()
            and _same_axis(axis, inner.attributes.get_int("axis"), rank)
        ):
            found.add(value)
    return found


def _same_axis(a: int | None, b: int | None, rank: int | None) -> bool:
    if a is None or b is None:
        return False
    return a == b or (rank is not None and a % rank == b % rank)


class ScaleChain(pattern.RewriteRuleClassBase):
    """(x <op1> a) <op2> b -> x * k for op1, op2 Mul or Div and scalar constants a, b: k is a * b,
    a / b, b / a or 1 / (a * b), computed in float64 and a normal number in x's dtype, so the
    result moves by float rounding only (but where x <op1> a alone overflowed or underflowed).

    timm's NFNet scales each residual branch three times (`* 2`, skip-init gain, `* alpha`).
    A Gelu's closing * 0.5 stays apart: ORT fuses the written-out Gelu only with it in place.
    """

    def __init__(self, inner_op: str, outer_op: str) -> None:
        super().__init__(f"{inner_op}{outer_op}Scale")
        self.inner_op, self.outer_op = inner_op, outer_op

    def pattern(self, op, x, a, b):
        inner = getattr(op, self.inner_op)(x, a)
        return getattr(op, self.outer_op)(inner, b, _outputs=["out"])

    def check(self, context, x, a, b, out) -> MatchResult:  # noqa: ARG002 onnxscript passes the matched values by keyword
        result = MatchResult()
        first, second = constant(a), constant(b)
        if first is None or second is None or first.size != 1 or second.size != 1:
            return result.fail("the operands are not constant scalars")
        if x.dtype not in FLOAT_TYPES or not x.dtype == a.dtype == b.dtype:
            return result.fail("dtypes differ or are not float")
        if not keeps_shape(x, first.shape) or not keeps_shape(x, second.shape):
            return result.fail("an operand adds dims")
        if gelu.awaits_half(x):
            return result.fail("the first scaling completes a written-out Gelu, which ORT fuses")
        k = self._factor(first, second)
        dtype = x.dtype.numpy()
        with np.errstate(over="ignore"):
            cast = k.astype(dtype)
        tiny = ml_dtypes.finfo(dtype).smallest_normal
        if not np.all(np.isfinite(cast)) or (k != 0 and np.abs(cast) < tiny):
            return result.fail("the product overflows, or underflows to a subnormal or 0")
        return result

    def rewrite(self, op, x, a, b, out):
        k = self._factor(constant(a), constant(b)).astype(x.dtype.numpy())
        return op.Mul(x, new_initializer(op, k, out, "scale"))

    def _factor(self, first: np.ndarray, second: np.ndarray) -> np.ndarray:
        """k with (x <inner> first) <outer> second = x * k, in float64, shaped as the wider."""
        powers = (1 if self.inner_op == "Mul" else -1, 1 if self.outer_op == "Mul" else -1)
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            a, b = (np.float64(v.reshape(())) ** p for v, p in zip((first, second), powers))
            product = a * b
        shape = first.shape if first.ndim >= second.ndim else second.shape
        return np.array(product).reshape(shape)


rules = (
    TransposeTranspose.rule(),
    UnsqueezeUnsqueeze.rule(),
    CancellingPair.rule("Unsqueeze", "Squeeze"),
    CancellingPair.rule("Squeeze", "Unsqueeze"),
    *(ReshapeOfShapeOnly.rule(inner) for inner in ("Squeeze", "Unsqueeze", "Flatten")),
    *(ShapeOnlyOfReshape.rule(outer) for outer in ("Squeeze", "Unsqueeze")),
    UnsqueezeTransposeSqueeze.rule(),
    SliceSlice.rule(),
    NestedConcat.rule(),
    *(
        rule
        for inner in ("Mul", "Div")
        for outer in ("Mul", "Div")
        for rule in ScaleChain.rule(inner, outer).commute()
    ),
)
