"""The model's interface changed on request: input dims fixed (`--input-shapes`), the graph cut to
the subgraph between named values (`--inputs`/`--outputs`, like `onnx.utils.extract_model`)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import onnx_ir as ir

from onnxslim.errors import OnnxSlimError


def set_input_shapes(model: ir.Model, shapes: Mapping[str, Sequence[int]]) -> None:
    """Give the named graph inputs these static dims.

    A dim the model already fixes must agree, and so must the rank. Every other shape in the model
    (intermediate values, graph outputs) is forgotten, so that shape inference derives them again
    from the new dims and the passes fold what has become static.
    """
    graph = model.graph
    inputs = {value.name: value for value in graph.inputs if value.name not in graph.initializers}
    for name, dims in shapes.items():
        value = inputs.get(name)
        if value is None:
            raise OnnxSlimError(
                f"--input-shapes {name}: no such graph input (inputs: {', '.join(inputs)})"
            )
        dims = tuple(int(d) for d in dims)
        if value.shape is not None:
            given = ",".join(map(str, dims))
            if len(value.shape) != len(dims):
                raise OnnxSlimError(
                    f"--input-shapes {name}:{given}: input {name!r} has rank {len(value.shape)}, "
                    f"not {len(dims)}"
                )
            for axis, (old, new) in enumerate(zip(value.shape.dims, dims)):
                if isinstance(old, int) and old != new:
                    raise OnnxSlimError(
                        f"--input-shapes {name}:{given}: dim {axis} of input {name!r} is fixed "
                        f"at {old}"
                    )
        value.shape = ir.Shape(dims)
    for node in ir.traversal.RecursiveGraphIterator(graph):
        for output in node.outputs:
            output.shape = None
    for output in graph.outputs:
        if output.name not in inputs:
            output.shape = None


def extract(
    model: ir.Model, inputs: Sequence[str] | None = None, outputs: Sequence[str] | None = None
) -> None:
    """Cut the main graph to what computes `outputs` from `inputs` (value names), in place.

    The named values become the graph's inputs and outputs, in the order given; `inputs` default
    to the graph inputs the outputs still need, `outputs` to the graph outputs. Nodes and
    initializers nothing needs any more are dropped. A value that becomes an input needs a known
    element type (run shape inference first). Every path to the outputs must start at one of
    `inputs` or a constant.
    """
    graph = model.graph
    values = _values_by_name(graph)

    def find(name: str, option: str) -> ir.Value:
        if name not in values:
            raise OnnxSlimError(f"{option} {name}: no value of that name in the main graph")
        return values[name]

    if inputs and outputs and set(inputs) & set(outputs):
        both = sorted(set(inputs) & set(outputs))[0]
        raise OnnxSlimError(f"{both!r} is given both as an input and as an output of the cut")
    new_outputs = [find(name, "--outputs") for name in outputs] if outputs else list(graph.outputs)
    new_inputs: list[ir.Value] | None = None
    if inputs:
        new_inputs = []
        for name in inputs:
            value = find(name, "--inputs")
            if value in graph.inputs:
                new_inputs.append(value)
                continue
            if value.is_initializer():
                raise OnnxSlimError(f"--inputs {name}: is a constant (an initializer)")
            if value.type is None:
                raise OnnxSlimError(
                    f"--inputs {name}: its element type is unknown (shape inference cannot tell)"
                )
            cut = ir.Value(type=value.type, shape=_named_dims_only(value.shape))
            value.replace_all_uses_with(cut)
            new_outputs = [cut if output is value else output for output in new_outputs]
            value.name = f"{name}_before_cut"
            cut.name = name
            new_inputs.append(cut)
    needed_nodes, needed_inputs = _needed(graph, new_outputs, new_inputs)
    if new_inputs is not None:
        missing = [value for value in needed_inputs if value not in new_inputs]
        if missing:
            raise OnnxSlimError(
                f"the outputs also depend on graph input {missing[0].name!r}, "
                "which --inputs does not list"
            )
    else:
        new_inputs = [value for value in graph.inputs if value in needed_inputs]
    graph.outputs.clear()
    graph.outputs.extend(new_outputs)
    graph.inputs.clear()
    graph.inputs.extend(new_inputs)
    graph.remove([node for node in graph if node not in needed_nodes], safe=True)
    for name, value in list(graph.initializers.items()):
        if not value.uses() and value not in new_outputs:
            del graph.initializers[name]


def _named_dims_only(shape: ir.Shape | None) -> ir.Shape | None:
    """`shape` without the dim names shape inference made up (`unk__0`): unknown dims instead."""
    if shape is None:
        return None
    return ir.Shape(
        [
            None
            if isinstance(dim, ir.SymbolicDim) and str(dim.value or "").startswith("unk__")
            else dim
            for dim in shape.dims
        ]
    )


def _values_by_name(graph: ir.Graph) -> dict[str, ir.Value]:
    values: dict[str, ir.Value] = {}
    for value in graph.inputs:
        values[value.name] = value
    for name, value in graph.initializers.items():
        values.setdefault(name, value)
    for node in graph:
        for output in node.outputs:
            if output.name:
                values[output.name] = output
    return values


def _needed(
    graph: ir.Graph, outputs: Sequence[ir.Value], inputs: Sequence[ir.Value] | None
) -> tuple[set[ir.Node], set[ir.Value]]:
    """The main-graph nodes the outputs depend on, and the graph inputs they read."""
    stop = set(inputs or ())
    nodes: set[ir.Node] = set()
    graph_inputs: set[ir.Value] = set()
    pending = list(outputs)
    seen: set[ir.Value] = set()
    while pending:
        value = pending.pop()
        if value in seen:
            continue
        seen.add(value)
        if value in stop or value.is_initializer():
            continue
        producer = value.producer()
        if producer is None:
            if value.is_graph_input():
                graph_inputs.add(value)
            continue
        if producer not in nodes:
            nodes.add(producer)
            pending.extend(_reads(producer, graph))
    return nodes, graph_inputs


def _reads(node: ir.Node, graph: ir.Graph) -> Iterator[ir.Value]:
    """The main-graph values `node` reads: its inputs and those its subgraphs capture."""
    yield from (value for value in node.inputs if value is not None)
    for attr in node.attributes.values():
        subgraphs = (
            [attr.as_graph()]
            if attr.type == ir.AttributeType.GRAPH
            else attr.as_graphs()
            if attr.type == ir.AttributeType.GRAPHS
            else []
        )
        for subgraph in subgraphs:
            for inner in ir.traversal.RecursiveGraphIterator(subgraph):
                for value in inner.inputs:
                    if value is not None and _owner(value) is graph:
                        yield value


def _owner(value: ir.Value) -> ir.Graph | None:
    producer = value.producer()
    return producer.graph if producer is not None else value.graph
