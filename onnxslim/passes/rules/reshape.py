"""Reshape to a shape computed at run time (Shape -> Gather/Slice -> Concat ...) given a constant
shape instead.

The shape tensor is traced back element by element: a constant, or a dim of some tensor (static or
symbolic; dims with the same symbolic name are equal, as onnx shape inference names them). An
element equal to the input's own dim at that position becomes 0 (copy it), a single unknown one
becomes -1 (inferred from the element count), so the shape subgraph is left dead.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import pattern
from onnxscript.rewriter.pattern import MatchResult

from onnxslim.passes.rules.common import constant, new_initializer, slice_params

#: One element of a traced shape tensor: a known int, a symbolic dim, or None (unknown).
Dim = int | ir.SymbolicDim | None

_MAX_DEPTH = 8


class ReshapeToTracedShape(pattern.RewriteRuleClassBase):
    """Reshape(x, <computed shape>) -> Reshape(x, constant) when every element is known,
    copied or inferable."""

    def pattern(self, op, x, shape):
        return op.Reshape(x, shape, _allow_other_attributes=True, _outputs=["out"])

    def check(self, context, x, shape, out) -> MatchResult:  # noqa: ARG002 onnxscript passes the matched values by keyword
        if constant(shape) is not None or _target(x, shape, out) is None:
            return MatchResult().fail("shape already constant, or not traceable")
        return MatchResult()

    def rewrite(self, op, x, shape, out):
        return op.Reshape(x, new_initializer(op, _target(x, shape, out), out, "shape"))


def _target(x: ir.Value, shape: ir.Value, out: ir.Value) -> np.ndarray | None:
    """The constant shape (for allowzero=0) doing the same as `shape`; None if more than one
    element stays unknown.

    A copied dim equals the original element even if it is 0: allowzero only matters for literal 0s.
    """
    elements = trace(shape)
    if elements is None or x.shape is None:
        return None
    if out.producer().attributes.get_int("allowzero", 0) and 0 in elements:
        return None
    dims = list(x.shape.dims)
    target = [
        element
        if isinstance(element, int)
        else 0
        if j < len(dims) and _same_dim(element, dims[j])
        else -1
        for j, element in enumerate(elements)
    ]
    if target.count(-1) > 1:
        return None
    return np.array(target, dtype=np.int64)


def _same_dim(a: Dim, b: int | ir.SymbolicDim) -> bool:
    return (
        isinstance(a, ir.SymbolicDim)
        and isinstance(b, ir.SymbolicDim)
        and a.value is not None
        and a == b
    )


def trace(value: ir.Value | None, depth: int = 0) -> list[Dim] | None:
    """The elements of a 1-D (or scalar) int tensor, each known, symbolic or None; None if its
    length is unknown.

    Tensors of rank > 1 are not traced: flattening them would make Gather/Slice pick wrong elements.
    """
    if value is None or depth > _MAX_DEPTH or (value.shape is not None and value.shape.rank() > 1):
        return None
    array = constant(value)
    if array is not None:
        integers = array.ndim <= 1 and np.issubdtype(array.dtype, np.integer)
        return [int(v) for v in array.reshape(-1)] if integers else None
    node = value.producer()
    rule = (
        _TRACERS.get(node.op_type) if node is not None and node.domain in ("", "ai.onnx") else None
    )
    elements = rule(node, depth + 1) if rule is not None else None
    return elements if elements is not None else _unknown(value)


def _unknown(value: ir.Value) -> list[Dim] | None:
    """Unknown elements, as many as the value's static length says (None if that is unknown too)."""
    shape = value.shape
    if shape is None or shape.rank() > 1 or (shape.rank() == 1 and not isinstance(shape[0], int)):
        return None
    return [None] * (shape[0] if shape.rank() == 1 else 1)


def _shape(node: ir.Node, _depth: int) -> list[Dim] | None:
    source = node.inputs[0].shape
    if source is None:
        return None
    dims = [d if isinstance(d, int) or d.value is not None else None for d in source.dims]
    start = node.attributes.get_int("start", 0)
    return dims[slice(start, node.attributes.get_int("end", len(dims)))]


def _gather(node: ir.Node, depth: int) -> list[Dim] | None:
    elements, indices = trace(node.inputs[0], depth), constant(node.inputs[1])
    if (
        elements is None
        or indices is None
        or indices.ndim > 1
        or node.attributes.get_int("axis", 0) != 0
    ):
        return None
    if any(not -len(elements) <= int(i) < len(elements) for i in indices.reshape(-1)):
        return None
    return [elements[int(i)] for i in indices.reshape(-1)]


def _slice(node: ir.Node, depth: int) -> list[Dim] | None:
    elements, params = trace(node.inputs[0], depth), slice_params(node)
    if (
        elements is None
        or params is None
        or params[0].size != 1
        or int(params[2][0]) not in (0, -1)
    ):
        return None
    start, end, _, step = (int(p[0]) for p in params)
    return elements[slice(start, end, step)] if step != 0 else None


def _concat(node: ir.Node, depth: int) -> list[Dim] | None:
    pieces = [trace(value, depth) for value in node.inputs]
    if any(piece is None for piece in pieces) or node.attributes.get_int("axis", 0) not in (0, -1):
        return None
    return [element for piece in pieces for element in piece]


def _same_elements(node: ir.Node, depth: int) -> list[Dim] | None:
    """Ops that keep the elements as they are (a scalar and a one-element 1-D tensor trace alike).

    Reshape, Squeeze and Unsqueeze only to a known rank <= 1 (trace() itself refuses inputs of
    rank > 1).
    """
    if node.op_type == "Cast" and node.attributes.get_int("to") not in (
        ir.DataType.INT64,
        ir.DataType.INT32,
    ):
        return None
    out = node.outputs[0].shape
    if node.op_type in ("Reshape", "Squeeze", "Unsqueeze") and (out is None or out.rank() > 1):
        return None
    return trace(node.inputs[0], depth)


_TRACERS = {
    "Shape": _shape,
    "Gather": _gather,
    "Slice": _slice,
    "Concat": _concat,
    **dict.fromkeys(("Identity", "Cast", "Squeeze", "Unsqueeze", "Reshape"), _same_elements),
}

rules = (ReshapeToTracedShape.rule(),)
