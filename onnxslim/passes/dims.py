"""Dims that promise less than they say: placeholder names, and a Loop state's declared shape."""

from __future__ import annotations

import re

import onnx_ir as ir

from onnxslim.model.graph import all_graphs

#: Dim names exporters write for "unknown" (Paddle writes "?" for every dynamic dim). ONNX reads
#: equal names as equal sizes, so rules comparing shapes would wrongly take two such dims as equal.
PLACEHOLDER_DIMS = frozenset({"", "?", "-1", "None", "none", "unknown"})
#: The names onnx's shape inference gives the dims it cannot tell. A file saved after it (or
#: after onnx's version converter) carries them on every intermediate value, where they outrank
#: what the passes' own inference relates (HF Swin so saved kept 32 more shape nodes): forgotten
#: there, as the inference the passes run names them again.
INFERRED_DIM = re.compile(r"unk__\d+")


def forget_placeholder_dims(model: ir.Model) -> bool:
    """Turn every placeholder-named dim into an anonymous one, which no shape comparison equates,
    and every dim onnx's inference named on an intermediate value; whether there was one."""
    changed = False
    for graph in all_graphs(model):
        ends = {*graph.inputs, *graph.outputs}
        values = [*graph.inputs, *(output for node in graph for output in node.outputs)]
        for value in values:
            inferred = value not in ends
            if value.shape is not None and any(_forgotten(d, inferred) for d in value.shape.dims):
                value.shape = ir.Shape(
                    [ir.SymbolicDim(None) if _forgotten(d, inferred) else d for d in value.shape]
                )
                changed = True
    return changed


def _forgotten(dim, inferred: bool) -> bool:
    """Whether `dim` is a placeholder, or (`inferred`: on an intermediate value) onnx's name."""
    if not isinstance(dim, ir.SymbolicDim) or dim.value is None:
        return False
    return dim.value in PLACEHOLDER_DIMS or inferred and bool(INFERRED_DIM.fullmatch(dim.value))


def widen_loop_states(model: ir.Model) -> bool:
    """Make unknown each static dim of a Loop body's loop-carried input that its body output for
    the next iteration does not keep, and forget the shapes inferred from it (in the body and of
    the Loop's outputs, graph outputs aside); whether one changed.

    An exporter declares that input with the initial value's shape (torch.jit.script: `[1, B, 8]`
    for a tensor the body grows by one row per iteration), which holds for the first iteration
    only: rules trusting it took `acc[-1:]` for the whole of `acc` and removed the Slice. Run
    after shape inference, then infer again.
    """
    changed = False
    for graph in all_graphs(model):
        for node in graph:
            body = node.attributes.get("body") if node.op_type == "Loop" else None
            if body is None:
                continue
            body = body.as_graph()
            widened = False
            for carried, updated in zip(body.inputs[2:], body.outputs[1:]):
                shape, after = carried.shape, updated.shape
                if shape is None or carried is updated:
                    continue
                kept = after is not None and after.rank() == shape.rank()
                dims = [
                    ir.SymbolicDim(None)
                    if isinstance(dim, int) and not (kept and after[axis] == dim)
                    else dim
                    for axis, dim in enumerate(shape.dims)
                ]
                if dims != list(shape.dims):
                    carried.shape = ir.Shape(dims)
                    widened = True
            if widened:
                for inner in ir.traversal.RecursiveGraphIterator(body):
                    for value in inner.outputs:
                        value.shape = None
                for value in node.outputs:
                    if not value.is_graph_output():
                        value.shape = None
                changed = True
    return changed
