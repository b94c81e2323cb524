"""Transposes sunk through elementwise ops and reductions, so that inverse pairs meet and cancel.

TF exporters (tf2onnx) keep the graph in NHWC and wrap every Conv as
``Transpose(NHWC->NCHW) -> Conv -> Transpose(NCHW->NHWC)``, with BatchNorm written out as
Sub/Mul/Add of per-channel constants, Relu and residual Adds in NHWC between them. Moving each
Transpose down past those ops brings it next to the following Conv's inverse Transpose: the pair
cancels (``fuse-chains``) and the BatchNorm constants land right after the Conv, where
``fuse-conv-affine`` folds them into its weights.

Math, for y = Transpose(x, p) of rank n (y's axis i is x's axis p[i]) and q = p^-1:

- unary elementwise f: f(Transpose(x, p)) = Transpose(f(x), p) (f acts on each element alone);
- binary elementwise g with a constant c of rank k <= n: broadcasting pads c to rank n with
  leading 1s (c_n), and permuting axes commutes with broadcasting between equal ranks, so
  g(Transpose(x, p), c) = Transpose(g(x, Transpose(c_n, q)), p), operand order kept; not where
  c would come to vary along x's innermost axis and did not along y's: ORT broadcasts a constant
  slowly over short innermost runs (an HWC image's per-channel mean, 3 wide: 2x the model's time;
  a Sub over [N, 32, C] against [C, N, 32]: 52x at C = 3, 3.3x at 16, 1.1x at 64);
- g(Transpose(a, p), Transpose(b, p)) = Transpose(g(a, b), p) (a and b have rank n);
- a reduction over axes A of y is one over p[A] of x; with keepdims the result is still in y's
  layout (Transpose by p), without it the kept axes come out in x's order, so the result is
  Transpose(reduce(x, p[A]), r) with r the kept axes' order in y, dropped when r is the identity.

Node counts never grow: each rewrite replaces the Transpose and the op with the op and at most one
Transpose, and only fires when the Transpose has no other consumer and is not a graph output
(onnxscript's matcher refuses to remove a node whose result is used outside the match). Graph
outputs keep their names and layouts: a moved Transpose now produces the output. Transpose pairs
whose inner one has other consumers are collapsed by the Transpose chain rule (`chains.py`).
"""

from __future__ import annotations

import copy

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import pattern
from onnxscript.rewriter.pattern import MatchResult

from onnxslim.model.graph import move_shape, producer
from onnxslim.passes.rules.common import constant, new_initializer, normalize_axes, parameter

#: Ops with one input whose output has the input's shape, element i computed from element i
#: alone (other inputs, if any, are scalars: Clip's bounds).
UNARY = (
    "Abs",
    "Acos",
    "Acosh",
    "Asin",
    "Asinh",
    "Atan",
    "Atanh",
    "Cast",
    "Ceil",
    "Celu",
    "Clip",
    "Cos",
    "Cosh",
    "Elu",
    "Erf",
    "Exp",
    "Floor",
    "Gelu",
    "HardSigmoid",
    "HardSwish",
    "IsInf",
    "IsNaN",
    "LeakyRelu",
    "Log",
    "Mish",
    "Neg",
    "Not",
    "Reciprocal",
    "Relu",
    "Round",
    "Selu",
    "Sigmoid",
    "Sign",
    "Sin",
    "Sinh",
    "Softplus",
    "Softsign",
    "Sqrt",
    "Tan",
    "Tanh",
    "ThresholdedRelu",
)

#: Elementwise ops of two broadcast operands (PRelu: the slope broadcasts into x, second only).
BINARY = (
    "Add",
    "And",
    "Div",
    "Equal",
    "Greater",
    "GreaterOrEqual",
    "Less",
    "LessOrEqual",
    "Max",
    "Min",
    "Mod",
    "Mul",
    "Or",
    "Pow",
    "PRelu",
    "Sub",
    "Xor",
)

#: Reductions over a set of axes (attribute, or input 1 in newer opsets).
REDUCE = (
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceMax",
    "ReduceMean",
    "ReduceMin",
    "ReduceProd",
    "ReduceSum",
    "ReduceSumSquare",
)


def perm_of(transposed: ir.Value) -> list[int] | None:
    """The perm of the Transpose producing `transposed` (default: reversed axes), or None when it
    is unknown or not a permutation."""
    node = transposed.producer()
    attr = node.attributes.get("perm")
    if attr is None:
        dims = node.inputs[0].shape
        perm = None if dims is None else list(reversed(range(dims.rank())))
    elif attr.is_ref():
        return None
    else:
        perm = [int(a) for a in attr.as_ints()]
    if perm is None or sorted(perm) != list(range(len(perm))):
        return None
    return perm


def _movable(moved: ir.Value) -> str | None:
    """Why the Transpose producing `moved` is not sunk (None if it is): its perm is unknown, or
    it reads another Transpose (the pair is collapsed by `fuse-chains` first: sinking the outer
    one would keep both)."""
    if perm_of(moved) is None:
        return "the perm is unknown"
    source = moved.producer().inputs[0]
    inner = producer(source)
    if inner is not None and inner.op_type == "Transpose" and inner.domain in ("", "ai.onnx"):
        return "the Transpose reads a Transpose: the pair is collapsed first"
    return None


def _inverse(perm: list[int]) -> list[int]:
    inverse = [0] * len(perm)
    for i, axis in enumerate(perm):
        inverse[axis] = i
    return inverse


def _untransposed(value: ir.Value, out: ir.Value, perm: list[int]) -> ir.Value:
    """`value` (computed in x's layout) given the type of `out` and its shape moved back by
    perm^-1."""
    value.type = copy.copy(out.type)  # its own: a dtype set later changes one value only
    move_shape(value, out, _inverse(perm))
    return value


def _transpose(op, value: ir.Value, perm: list[int]) -> ir.Value:
    return value if perm == sorted(perm) else op.Transpose(value, perm=perm)


def _scales_matmuls(op_type: str, constant_first: bool, out: ir.Value) -> bool:
    """Whether `out`, x * c or x / c for a scalar constant c, is read by MatMuls only: ORT's
    MatMulScaleFusion folds c into them (FusedMatMul's alpha), which the Transpose moved below the
    scale would keep apart (attention's `q * scale` before `q @ k^T`)."""
    if op_type not in ("Mul", "Div") or (op_type == "Div" and constant_first):
        return False
    users = [user for user, _ in out.uses()]
    return bool(users) and all(
        user.op_type == "MatMul" and user.domain in ("", "ai.onnx") for user in users
    )


class UnaryTranspose(pattern.RewriteRuleClassBase):
    """f(Transpose(x, p)) -> Transpose(f(x), p) for a unary elementwise f."""

    def __init__(self, op_type: str) -> None:
        super().__init__(f"{op_type}Transpose")
        self.op_type = op_type

    def pattern(self, op, x):
        moved = op.Transpose(x, _allow_other_attributes=True, _outputs=["moved"])
        return getattr(op, self.op_type)(
            moved, _allow_other_inputs=True, _allow_other_attributes=True, _outputs=["out"]
        )

    def check(self, context, x, moved, out) -> MatchResult:  # noqa: ARG002 onnxscript passes the matched values by keyword
        reason = _movable(moved)
        return MatchResult().fail(reason) if reason else MatchResult()

    def rewrite(self, op, x, moved, out):
        node, perm = out.producer(), perm_of(moved)
        inner = getattr(op, self.op_type)(x, *node.inputs[1:], **node.attributes)
        return op.Transpose(_untransposed(inner, out, perm), perm=perm)


class BinaryTransposeConstant(pattern.RewriteRuleClassBase):
    """g(Transpose(x, p), c) -> Transpose(g(x, c'), p) (either operand order) for a constant c
    that broadcasts into the transposed tensor; c' is c padded to rank n and moved by p^-1."""

    def __init__(self, op_type: str, constant_first: bool) -> None:
        super().__init__(
            f"{op_type}{'ConstantTranspose' if constant_first else 'TransposeConstant'}"
        )
        self.op_type, self.constant_first = op_type, constant_first

    def pattern(self, op, x, c):
        moved = op.Transpose(x, _allow_other_attributes=True, _outputs=["moved"])
        operands = (c, moved) if self.constant_first else (moved, c)
        return getattr(op, self.op_type)(*operands, _outputs=["out"])

    def check(self, context, x, c, moved, out) -> MatchResult:  # noqa: ARG002 onnxscript passes the matched values by keyword
        result = MatchResult()
        perm, value, reason = perm_of(moved), constant(c), _movable(moved)
        if reason:
            return result.fail(reason)
        if value is None:
            return result.fail("the other operand is not constant", c)
        if value.ndim > len(perm):
            return result.fail("the constant has more dims than the transposed tensor", c)
        dims = list(moved.shape.dims) if moved.shape is not None else [None] * len(perm)
        padded = (1,) * (len(perm) - value.ndim) + value.shape
        if any(d != 1 and d != dim for d, dim in zip(padded, dims)):
            return result.fail("the constant would broadcast the transposed tensor", c)
        inward = padded[-1] == 1 and padded[perm.index(len(perm) - 1)] != 1
        if inward and not _meets_inverse(out, perm):
            return result.fail("the constant would vary along x's innermost axis", c)
        if value.size == 1 and _scales_matmuls(self.op_type, self.constant_first, out):
            return result.fail("ORT folds this scale into the MatMuls reading it", c)
        return result

    def rewrite(self, op, x, c, moved, out):
        perm, value = perm_of(moved), constant(c)
        if value.size == 1:
            operand = c  # broadcasts the same way in any layout
        else:
            padded = value.reshape((1,) * (len(perm) - value.ndim) + value.shape)
            operand = new_initializer(op, np.transpose(padded, _inverse(perm)), out, "moved")
        operands = (operand, x) if self.constant_first else (x, operand)
        inner = getattr(op, self.op_type)(*operands, **out.producer().attributes)
        return op.Transpose(_untransposed(inner, out, perm), perm=perm)


def _meets_inverse(value: ir.Value, perm: list[int], seen: set[int] | None = None) -> bool:
    """Whether every reader of `value` (the Transpose's result once sunk) leads to a Transpose by
    perm^-1, which would cancel it, through ops the Transpose sinks past: unary elementwise ops,
    binary ones with a constant or a Transpose by perm, reductions keeping their dims."""
    seen = set() if seen is None else seen
    if id(value) in seen:
        return True
    seen.add(id(value))
    if value.is_graph_output() or not value.uses():
        return False
    for user, _ in value.uses():
        if user.domain not in ("", "ai.onnx"):
            return False
        if user.op_type == "Transpose":
            if perm_of(user.outputs[0]) != _inverse(perm):
                return False
        elif not (_sinks_past(user, value, perm) and _meets_inverse(user.outputs[0], perm, seen)):
            return False
    return True


def _sinks_past(user: ir.Node, value: ir.Value, perm: list[int]) -> bool:
    """Whether a Transpose by `perm` producing `value` would sink past `user`."""
    if user.op_type in UNARY:
        return True
    if user.op_type in REDUCE:
        return bool(user.attributes.get_int("keepdims", 1))
    if user.op_type not in BINARY or len(user.inputs) != 2:
        return False
    other = user.inputs[1] if user.inputs[0] is value else user.inputs[0]
    if other is None:
        return False
    transposed = other.producer() is not None and other.producer().op_type == "Transpose"
    return constant(other) is not None or (transposed and perm_of(other) == perm)


class BinaryTransposes(pattern.RewriteRuleClassBase):
    """g(Transpose(a, p), Transpose(b, p)) -> Transpose(g(a, b), p): one Transpose, not two."""

    def __init__(self, op_type: str) -> None:
        super().__init__(f"{op_type}Transposes")
        self.op_type = op_type

    def pattern(self, op, a, b):
        first = op.Transpose(a, _allow_other_attributes=True, _outputs=["first"])
        second = op.Transpose(b, _allow_other_attributes=True, _outputs=["second"])
        return getattr(op, self.op_type)(first, second, _outputs=["out"])

    def check(self, context, a, b, first, second, out) -> MatchResult:  # noqa: ARG002 onnxscript passes the matched values by keyword
        reason = _movable(first) or _movable(second)
        if not reason and perm_of(first) != perm_of(second):
            reason = "the perms differ"
        return MatchResult().fail(reason) if reason else MatchResult()

    def rewrite(self, op, a, b, first, second, out):  # noqa: ARG002 onnxscript passes the matched values by keyword
        perm = perm_of(first)
        inner = getattr(op, self.op_type)(a, b, **out.producer().attributes)
        return op.Transpose(_untransposed(inner, out, perm), perm=perm)


class ReduceTranspose(UnaryTranspose):
    """reduce(Transpose(x, p), A) -> Transpose(reduce(x, p[A]), r); r is the identity (no
    Transpose) when the kept axes are in the same order in x and y. The pattern is the unary one:
    a reduction reads the moved tensor and maybe an axes input."""

    def check(self, context, x, moved, out) -> MatchResult:
        result = super().check(context, x, moved, out)
        if result and _reduced(moved, out) is None:
            return MatchResult().fail("the axes are unknown")
        return result

    def rewrite(self, op, x, moved, out):
        node = out.producer()
        perm, axes = _reduced(moved, out)
        new_axes = np.array(sorted(perm[a] for a in axes), dtype=np.int64)
        attributes = {k: v for k, v in node.attributes.items() if k != "axes"}
        keepdims = node.attributes.get_int("keepdims", 1)
        if len(axes) == len(perm):  # all axes: the layout does not matter
            inner = getattr(op, self.op_type)(x, *node.inputs[1:], **node.attributes)
            inner.type = copy.copy(out.type)
            move_shape(inner, out, list(range(len(perm) if keepdims else 0)))  # as it was
            return inner
        if "axes" in node.attributes:
            inner = getattr(op, self.op_type)(x, axes=new_axes.tolist(), **attributes)
        else:
            axes_input = new_initializer(op, new_axes, out, "axes")
            inner = getattr(op, self.op_type)(x, axes_input, *node.inputs[2:], **attributes)
        if keepdims:
            return op.Transpose(_untransposed(inner, out, perm), perm=perm)
        kept = [perm[i] for i in range(len(perm)) if i not in axes]
        order = [sorted(kept).index(axis) for axis in kept]
        inner.type = copy.copy(out.type)
        move_shape(inner, out, _inverse(order))
        return _transpose(op, inner, order)


def _reduced(moved: ir.Value, out: ir.Value) -> tuple[list[int], tuple[int, ...]] | None:
    """(perm, reduced axes of the transposed tensor), or None when either is unknown."""
    perm, node = perm_of(moved), out.producer()
    if perm is None:
        return None
    axes = parameter(node, "axes", 1)
    if axes is None and len(node.inputs) > 1 and node.inputs[1] is not None:
        return None  # axes given by a computed tensor
    if axes is None or axes.size == 0:
        if node.attributes.get_int("noop_with_empty_axes", 0):
            return None  # an identity, left to remove-no-ops
        return perm, tuple(range(len(perm)))
    axes = normalize_axes(axes.reshape(-1), len(perm))
    if axes is None or len(set(axes)) != len(axes):
        return None
    return perm, axes


rules = (
    *(UnaryTranspose.rule(op_type) for op_type in UNARY),
    *(
        BinaryTransposeConstant.rule(op_type, constant_first)
        for op_type in BINARY
        for constant_first in ((False,) if op_type == "PRelu" else (False, True))
    ),
    *(BinaryTransposes.rule(op_type) for op_type in BINARY),
    *(ReduceTranspose.rule(op_type) for op_type in REDUCE),
)
