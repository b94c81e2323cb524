"""Slice or Gather of a Shape whose selected dims are static, replaced by the constant they select.

(onnxscript's folder does this for Gather with 1-D indices only.)
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import pattern
from onnxscript.rewriter._basics import MatchResult

from onnxslim.passes.rules._common import constant, slice_params, static_dims


def _shape_dims(shape_node: ir.Node) -> list[int | None] | None:
    """The dims a Shape node outputs (honouring start/end), None for unknown ones; None if the rank is unknown."""
    dims = static_dims(shape_node.inputs[0])
    if dims is None:
        return None
    start = shape_node.attributes.get_int("start", 0)
    end = shape_node.attributes.get_int("end", len(dims))
    return list(dims[slice(start, end)])


class _ShapeSelection(pattern.RewriteRuleClassBase):
    def __init__(self) -> None:
        super().__init__(remove_nodes=False)  # the Shape may feed other nodes

    def check(self, context, **bindings) -> MatchResult:
        selected = self.select(**bindings)
        if selected is None or any(d is None for d in np.ravel(selected).tolist()):
            return MatchResult().fail("selected dims not static")
        return MatchResult()

    def rewrite(self, op, **bindings):
        selected = np.array(self.select(**bindings), dtype=np.int64)
        return op.Constant(value=ir.tensor(selected))


class SliceOfShape(_ShapeSelection):
    """Slice(Shape(x)) -> constant."""

    def pattern(self, op, x):
        dims = op.Shape(x, _allow_other_attributes=True, _outputs=["dims"])
        return op.Slice(dims, _allow_other_inputs=True, _outputs=["out"])

    def select(self, x, dims, out):
        params, shape = slice_params(out.producer()), _shape_dims(dims.producer())
        if params is None or shape is None:
            return None
        start, end, axis, step = (p.tolist() for p in params)
        if axis not in ([0], [-1]) or step == [0]:
            return None
        return np.array(shape[slice(start[0], end[0], step[0])], dtype=object)


class GatherOfShape(_ShapeSelection):
    """Gather(Shape(x), indices) -> constant."""

    def pattern(self, op, x, indices):
        dims = op.Shape(x, _allow_other_attributes=True, _outputs=["dims"])
        return op.Gather(dims, indices, _allow_other_attributes=True, _outputs=["out"])

    def select(self, x, indices, dims, out):
        index, shape = constant(indices), _shape_dims(dims.producer())
        if index is None or shape is None or out.producer().attributes.get_int("axis", 0) != 0:
            return None
        if np.any(index < -len(shape)) or np.any(index >= len(shape)):
            return None
        return np.array(shape, dtype=object)[index]


rules = (SliceOfShape.rule(), GatherOfShape.rule())
