"""Symbolic dims: placeholder names that promise nothing."""

from __future__ import annotations

import onnx_ir as ir

from onnxslim.model.graph import all_graphs

#: Dim names exporters write for "unknown" (Paddle writes "?" for every dynamic dim). ONNX reads
#: equal names as equal sizes, so rules comparing shapes would wrongly take two such dims as equal.
PLACEHOLDER_DIMS = frozenset({"", "?", "-1", "None", "none", "unknown"})


def forget_placeholder_dims(model: ir.Model) -> bool:
    """Turn every placeholder-named dim into an anonymous one, which no shape comparison equates;
    whether there was one."""
    changed = False
    for graph in all_graphs(model):
        values = [*graph.inputs, *(output for node in graph for output in node.outputs)]
        for value in values:
            if value.shape is not None and any(_is_placeholder(dim) for dim in value.shape.dims):
                value.shape = ir.Shape(
                    [
                        ir.SymbolicDim(None) if _is_placeholder(dim) else dim
                        for dim in value.shape.dims
                    ]
                )
                changed = True
    return changed


def _is_placeholder(dim) -> bool:
    return isinstance(dim, ir.SymbolicDim) and dim.value in PLACEHOLDER_DIMS
