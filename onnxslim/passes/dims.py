"""Dims that promise less than they say: placeholder names, names onnx's inference gave, names that
relate intermediate values only, and a Loop state's declared shape."""

from __future__ import annotations

import re

import onnx_ir as ir

from onnxslim.model.graph import all_graphs, graph_values
from onnxslim.model.io import GENERATED_DIM

#: Dim names exporters write for "unknown" (Paddle writes "?" for every dynamic dim). ONNX reads
#: equal names as equal sizes, so rules comparing shapes would wrongly take two such dims as equal.
PLACEHOLDER_DIMS = frozenset({"", "?", "-1", "None", "none", "unknown"})


def forget_placeholder_dims(model: ir.Model) -> bool:
    """Turn every placeholder-named dim into an anonymous one, which no shape comparison equates,
    and every dim of an intermediate value that onnx's inference named (`GENERATED_DIM`); whether
    there was one. A file saved after onnx's inference (or its version converter, which runs it)
    carries such names on every value, where they outrank what the passes' own inference
    relates (HF Swin so saved kept 32 more shape nodes); that inference names them again."""
    changed = False
    for graph in all_graphs(model):
        ends = {*graph.inputs, *graph.outputs}
        for value in graph_values(graph):
            intermediate = value not in ends
            if value.shape is not None and any(_forgotten(d, intermediate) for d in value.shape):
                value.shape = ir.Shape(
                    [
                        ir.SymbolicDim(None) if _forgotten(d, intermediate) else d
                        for d in value.shape
                    ]
                )
                changed = True
    return changed


def made_up(dim) -> bool:
    """Whether `dim` (of an ir.Shape, or None) is symbolic without a name of its own: none, a
    placeholder, or one onnx's inference made up (`GENERATED_DIM`)."""
    if not isinstance(dim, ir.SymbolicDim) and dim is not None:
        return False
    name = None if dim is None else dim.value
    return name is None or name in PLACEHOLDER_DIMS or bool(GENERATED_DIM.fullmatch(name))


def _forgotten(dim, intermediate: bool) -> bool:
    """Whether `dim` is a placeholder, or (on an `intermediate` value) named by onnx's inference."""
    named = isinstance(dim, ir.SymbolicDim) and dim.value is not None
    return named and made_up(dim) and (intermediate or dim.value in PLACEHOLDER_DIMS)


#: Output dims onnx's shape inference gets wrong: (op, output index) -> axes. onnx 1.23 gives
#: Attention's qk_matmul_output the keys' length without the past ones (0 where it is symbolic):
#: a Shape of it folded to that (a one-token decode step: exit 1, a wrong model with --no-check).
MISINFERRED = {("Attention", 3): (-1,)}


def misinferred(value: ir.Value, shape: ir.Shape | None) -> ir.Shape | None:
    """`shape`, inferred for `value`, with the dims onnx's inference gets wrong made anonymous."""
    node = value.producer()
    if shape is None or node is None or node.domain not in ("", "ai.onnx"):
        return shape
    axes = MISINFERRED.get((node.op_type, value.index()), ())
    dims = list(shape)
    for axis in axes:
        if -len(dims) <= axis < len(dims):
            dims[axis] = ir.SymbolicDim(None)
    return ir.Shape(dims) if axes else shape


def forget_misinferred(node: ir.Node) -> bool:
    """`misinferred` on `node`'s outputs but graph outputs (their dims are as given); whether one
    changed."""
    changed = False
    for value in node.outputs:
        shape = None if value.is_graph_output() else misinferred(value, value.shape)
        if shape is not None and shape != value.shape:
            value.shape, changed = shape, True
    return changed


def forget_misinferred_dims(model: ir.Model) -> bool:
    """`forget_misinferred` on every node, as the model gives it (a file saved after onnx's
    inference carries its dims); whether one changed."""
    return any([forget_misinferred(node) for graph in all_graphs(model) for node in graph])


_NAME_WORD = re.compile(r"[A-Za-z_][\w.]*")


def interface_words(model: ir.Model) -> frozenset[str]:
    """The words of the dim names of the main graph's inputs and outputs."""
    values = (*model.graph.inputs, *model.graph.outputs)
    names = [d.value for v in values if v.shape for d in v.shape if isinstance(d, ir.SymbolicDim)]
    return frozenset(word for name in names if name for word in _NAME_WORD.findall(name))


def private(dim, interface: frozenset[str]) -> bool:
    """Whether `dim` has a name of its own that says nothing of the graph's inputs and outputs
    (polygraphy names every value's dims, `Reshape_57_o0__d0`, where onnx's inference may relate
    one to an input's `batch`; `floor(height/2 - 1/2) + 1` speaks of one)."""
    if not isinstance(dim, ir.SymbolicDim) or made_up(dim):
        return False
    return not set(_NAME_WORD.findall(dim.value)) & interface


def hide_private_dims(model: ir.Model) -> dict[ir.Value, ir.Shape]:
    """Make every `private` dim of an intermediate value anonymous; the shapes it changed, as they
    were (to put back once onnx's inference has said what it relates them to)."""
    interface = interface_words(model)
    hidden = {}
    for graph in all_graphs(model):
        ends = {*graph.inputs, *graph.outputs}
        for value in graph_values(graph):
            shape = value.shape
            if value in ends or shape is None or not any(private(d, interface) for d in shape):
                continue
            hidden[value] = shape
            value.shape = ir.Shape(
                [ir.SymbolicDim(None) if private(d, interface) else d for d in shape]
            )
    return hidden


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
