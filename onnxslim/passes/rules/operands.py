"""Operand order in patterns without one rule per order."""

from __future__ import annotations

from onnxscript.rewriter import pattern


def either(op_type: str, op, a, b):
    """`op_type(a, b)` or `op_type(b, a)`, for a commutative op.

    onnxscript tries the alternatives in order and keeps the first that matches, so at least one of
    `a`, `b` must be a node pattern (an op the other operand's value is not produced by): then only
    the right order can match. Two plain variables would always take the first order; match those
    with free variables and sort them out in the check instead.
    """
    build = getattr(op, op_type)
    return pattern.OrValue([build(a, b), build(b, a)])


def ordered(op_type: str, op, a, b, swapped: bool):
    """`op_type(a, b)`, or `op_type(b, a)` when `swapped`: for the pattern's root, which `either`
    cannot express (onnxscript anchors a pattern on one node), one rule per order."""
    build = getattr(op, op_type)
    return build(b, a) if swapped else build(a, b)
