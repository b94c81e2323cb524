"""Facts about a model's graphs that every module reads: the default opset, supported opsets."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

import onnx
import onnx_ir as ir

MIN_OPSET = 7


def default_opset(opset_imports: Mapping[str, int]) -> int | None:
    """The default ONNX opset version, imported under "" or its alias "ai.onnx"; None if neither."""
    version = opset_imports.get("")
    return version if version is not None else opset_imports.get("ai.onnx")


def subgraphs(graph) -> list:
    """The graphs nested in `graph`'s nodes (not `graph` itself), depth first in node and
    attribute order, each once: `onnx_ir.Graph.subgraphs()` without its generic traversal's cost
    (which dominated node counting on large models)."""
    found: dict = {}
    _collect_subgraphs(graph, found)
    return list(found)


#: The ONNX ops with graph attributes; other ops of the default domain have none.
GRAPH_OPS = frozenset({"If", "Loop", "Scan", "SequenceMap"})


def _collect_subgraphs(graph, found: dict) -> None:
    for node in graph:
        if node.op_type not in GRAPH_OPS and node.domain in ("", "ai.onnx"):
            continue
        attributes = node.attributes
        if not attributes:
            continue
        for attr in attributes.values():
            if attr.is_ref():
                continue
            if attr.type == ir.AttributeType.GRAPH:
                inner = (attr.value,)
            elif attr.type == ir.AttributeType.GRAPHS:
                inner = attr.value
            else:
                continue
            for sub in inner:
                found.setdefault(sub, None)
                _collect_subgraphs(sub, found)


def proto_graphs(graph: onnx.GraphProto) -> Iterator[onnx.GraphProto]:
    """A protobuf `graph` and every graph nested in its nodes (If/Loop/Scan bodies), at any
    depth."""
    yield graph
    yield from nested_proto_graphs(graph.node)


def nested_proto_graphs(nodes: Iterable[onnx.NodeProto]) -> Iterator[onnx.GraphProto]:
    """Every graph nested in protobuf `nodes` (a function's body), at any depth."""
    for node in nodes:
        for attribute in node.attribute:
            for body in [attribute.g] if attribute.HasField("g") else attribute.graphs:
                yield from proto_graphs(body)


def proto_readers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    """The nodes of `graph` (its own, not its subgraphs') reading each value, by value name."""
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    return readers


def all_graphs(model: ir.Model) -> list[ir.Graph]:
    """The main graph and its subgraphs, in `onnx_ir.Model.graphs()` order."""
    return [model.graph, *subgraphs(model.graph)]


def all_nodes(model: ir.Model) -> Iterator[ir.Node]:
    """Every node of the model: its graphs, their subgraphs and its functions."""
    for graph in all_graphs(model):
        yield from graph
    for function in model.functions.values():
        yield from ir.traversal.RecursiveGraphIterator(function)


def graph_values(graph: ir.Graph) -> list[ir.Value]:
    """The inputs of `graph` and its nodes' outputs (not its subgraphs')."""
    return [*graph.inputs, *(output for node in graph for output in node.outputs)]


def has_subgraphs(node: ir.Node) -> bool:
    """Whether the node holds graphs (If, Loop, Scan, ...)."""
    return any(
        attr.type in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS)
        for attr in node.attributes.values()
    )


def value_names(model: ir.Model) -> set[str]:
    """Names of the graph inputs, initializers and node outputs of every graph of `model`."""
    graphs = all_graphs(model)
    names = {v.name for g in graphs for v in (*g.inputs, *g.initializers.values())}
    return names | {v.name for g in graphs for node in g for v in node.outputs}


def proto_names(graphs: Iterable[onnx.GraphProto]) -> set[str]:
    """Every value name of protobuf `graphs`: inputs, outputs, initializers, node outputs, value
    infos (`fresh_name`'s `taken` for nodes added to them)."""
    names = set()
    for graph in graphs:
        names |= {v.name for v in [*graph.input, *graph.output, *graph.value_info]}
        names |= {t.name for t in graph.initializer}
        names |= {name for node in graph.node for name in node.output}
    return names


def replace_proto_nodes(
    graph: onnx.GraphProto,
    replacement: Callable[[onnx.NodeProto], Sequence[onnx.NodeProto] | None],
) -> int:
    """Each node of protobuf `graph` that `replacement` gives nodes for (None or none: kept)
    replaced by them where it stands; how many were replaced (none: `graph` is left as it was)."""
    nodes, replaced = [], 0
    for node in graph.node:
        new = replacement(node)
        nodes += new or [node]
        replaced += bool(new)
    if replaced:
        del graph.node[:]
        graph.node.extend(nodes)
    return replaced


def fresh_name(taken: set[str], name: str) -> str:
    """`name`, or `name_1`, `name_2`, ... : the first not in `taken` (which then holds it)."""
    candidate, n = name, 0
    while candidate in taken:
        n += 1
        candidate = f"{name}_{n}"
    taken.add(candidate)
    return candidate


def node_count(graph) -> int:
    """Nodes of `graph` (a graph or function) and of every graph nested in it."""
    return len(graph) + sum(len(sub) for sub in subgraphs(graph))


def model_node_count(model: ir.Model) -> int:
    """Nodes of `model`: its graphs' and its functions'."""
    return sum(node_count(scope) for scope in (model.graph, *model.functions.values()))


def op_types(graph) -> set[str]:
    """Op types of the nodes of `graph` and of every graph nested in it."""
    return {node.op_type for g in (graph, *subgraphs(graph)) for node in g}


def softmax_axes(model: ir.Model) -> dict[str, tuple[int, ...]]:
    """The graph outputs a Softmax computes (through Identity nodes and Casts to a float type: a
    float16 model's probabilities computed in float32), with the axes it normalizes over (before
    opset 13: its axis and every later one; outputs of unknown rank are left out)."""
    opset = default_opset(model.opset_imports) or MIN_OPSET
    axes = {}
    for value in model.graph.outputs:
        node = value.producer()
        while node is not None and _passes_probabilities(node):
            node = producer(node.inputs[0])
        rank = value.shape.rank() if value.shape is not None else None
        if node is None or node.op_type != "Softmax" or node.domain != "" or rank is None:
            continue
        attribute = node.attributes.get("axis")
        axis = attribute.as_int() if attribute is not None else (-1 if opset >= 13 else 1)
        axis %= rank
        axes[value.name] = (axis,) if opset >= 13 else tuple(range(axis, rank))
    return axes


def _passes_probabilities(node: ir.Node) -> bool:
    """Whether `node` gives its input's probabilities as they are: an Identity, or a Cast to a
    float type."""
    if node.domain != "" or node.op_type not in ("Identity", "Cast"):
        return False
    if node.op_type == "Identity":
        return True
    to = node.attributes.get("to")
    return to is not None and ir.DataType(to.as_int()).is_floating_point()


#: Ops whose every output value lies in [0, 1]: a detector's scores.
SCORE_OPS = frozenset({"Sigmoid", "HardSigmoid", "Softmax"})
#: Ops that move their data inputs' values (input 0, but as listed) without changing them.
DATA_MOVEMENT = frozenset(
    {"Identity", "Concat", "Reshape", "Transpose", "Flatten", "Squeeze", "Unsqueeze", "Slice",
     "Split", "Gather", "GatherElements", "GatherND", "Expand", "Tile", "Cast", "ScatterND",
     "ScatterElements"}
)  # fmt: skip
#: The inputs a DATA_MOVEMENT op takes values from, where not input 0 alone (None: every input).
_MOVED_INPUTS = {"Concat": None, "ScatterND": (0, 2), "ScatterElements": (0, 2)}


@dataclasses.dataclass(frozen=True)
class OutputKinds:
    """How the automatic choices read a model's outputs: those a Softmax computes, by the axes it
    normalizes over (`softmax_axes`), and those a score op computes some values of through data
    movement only (`score_outputs`: a detector's sigmoid scores concatenated with its boxes)."""

    logit_axes: Mapping[str, tuple[int, ...]] = dataclasses.field(default_factory=dict)
    score_outputs: frozenset[str] = frozenset()


def output_kinds(model: ir.Model) -> OutputKinds:
    """The `OutputKinds` of `model`'s graph outputs."""
    return OutputKinds(softmax_axes(model), score_outputs(model))


def score_outputs(model: ir.Model) -> frozenset[str]:
    """The graph outputs some of whose values a `SCORE_OPS` node of the default domain computes
    (or a Mul of two: objectness times class), reached back through `DATA_MOVEMENT` nodes only
    (not a ReLU feature map, whose values may also lie in [0, 1])."""
    found = set()
    for output in model.graph.outputs:
        pending, seen = [output.producer()], set()
        while pending:
            node = pending.pop()
            if node is None or node in seen or node.domain != "":
                continue
            seen.add(node)
            if _computes_scores(node):
                found.add(output.name)
                break
            if node.op_type in DATA_MOVEMENT:
                moved = _MOVED_INPUTS.get(node.op_type, (0,))
                data = [v for i, v in enumerate(node.inputs) if moved is None or i in moved]
                pending += [producer(value) for value in data]
    return frozenset(found)


def _computes_scores(node: ir.Node) -> bool:
    """A `SCORE_OPS` node, or a Mul of two scores (each value in [0, 1] too: objectness times
    class, each read from a score op through data movement)."""
    if node.op_type != "Mul":
        return node.op_type in SCORE_OPS
    return len(node.inputs) == 2 and all(_moved_score(value) for value in node.inputs)


def _moved_score(value: ir.Value | None) -> bool:
    """Whether `value` is a `SCORE_OPS` node's output moved by single-input data movement."""
    node = producer(value)
    while node is not None and node.domain == "" and node.op_type in DATA_MOVEMENT:
        if node.op_type in _MOVED_INPUTS or not node.inputs:
            return False
        node = producer(node.inputs[0])
    return node is not None and node.domain == "" and node.op_type in SCORE_OPS


def producer(value: ir.Value | None) -> ir.Node | None:
    """The node computing `value` (None: a graph input, an initializer, or no value)."""
    return value.producer() if value is not None else None


#: value.meta key: (the name of the input model's value whose shape a rewrite moved onto this new
#: value, the shape it got)
SHAPE_FROM = "onnxslim.shape_from"


def move_shape(value: ir.Value, source: ir.Value, axes: list[int]) -> None:
    """Give `value`, a rewrite's new value, `source`'s shape with its axes taken in the order
    `axes` (none where `source`'s rank is not len(axes)), and say where it came from: where the
    input file gave `source` a shape, the file written gives `value` this one while it keeps it
    (`moved_shape`). ORT then knows it too, and fuses what needs it (a Mul by a scalar before a
    MatMul)."""
    if source.shape is None or source.shape.rank() != len(axes):
        return
    value.shape = ir.Shape([source.shape[axis] for axis in axes])
    origin = source.meta.get(SHAPE_FROM, (source.name,))[0]
    value.meta[SHAPE_FROM] = (origin, value.shape.dims)  # (a copy: a Shape may change in place)


def moved_shape(value: ir.Value) -> str | None:
    """The name of the input model's value whose shape `move_shape` gave `value`, while `value`
    still has it (None: none, or a later pass changed it)."""
    origin, dims = value.meta.get(SHAPE_FROM, (None, None))
    return origin if value.shape is not None and value.shape.dims == dims else None
