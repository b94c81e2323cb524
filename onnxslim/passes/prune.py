"""Dead-weight pruning: unreachable nodes, unused or duplicate initializers, no-op nodes, and the
debug info exporters record."""

from __future__ import annotations

import os
from collections import defaultdict

import numpy as np
import onnx_ir as ir
import onnx_ir.passes.common as common
from onnxscript.rewriter.rules import common as onnxscript_rules

from onnxslim.model.graph import (
    all_graphs,
    all_nodes,
    default_opset,
    fresh_name,
    subgraphs,
    value_names,
)
from onnxslim.passes.rewrite import RewriteRulesPass
from onnxslim.passes.rules import no_ops


class FreezeInitializerInputs(ir.passes.InPlacePass):
    """Initializers also listed as main-graph inputs (old IR versions) become plain constants.

    Only the main graph: a subgraph's inputs are bound by its If/Loop/Scan node, whatever its
    initializers say. IR versions below 4 require every initializer to be a graph input, so the
    model moves to IR version 4.
    """

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        graph = model.graph
        kept = [value for value in graph.inputs if value.name not in graph.initializers]
        if len(kept) == len(graph.inputs):
            return ir.passes.PassResult(model, False)
        graph.inputs.clear()
        graph.inputs.extend(kept)
        if model.ir_version < 4:
            model.ir_version = 4
        return ir.passes.PassResult(model, True)


class NormalizeOpsetImports(ir.passes.InPlacePass):
    """The default opset imported as "ai.onnx" is imported as "" instead, as onnx-ir's nodes
    and onnxscript expect."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        modified = False
        for scope in (model, *model.functions.values()):
            if "ai.onnx" in scope.opset_imports and "" not in scope.opset_imports:
                scope.opset_imports[""] = scope.opset_imports.pop("ai.onnx")
                modified = True
        return ir.passes.PassResult(model, modified)


class StripDebugInfo(ir.passes.InPlacePass):
    """Doc strings and metadata of nodes and values removed, in every graph and function: what
    exporters record for debugging (torch's dynamo exporter: each node's stack trace, module path
    and FX node, about 1.8 KB a node; a ViT's graph 212 -> 22 KB). The model's and the graphs'
    own metadata and doc strings stay, and the interface's (the main graph's inputs and outputs:
    a converter's description of an input)."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        modified = False
        functions = model.functions.values()
        graphs = [*all_graphs(model), *functions, *(g for f in functions for g in subgraphs(f))]
        values = [value for graph in graphs for value in graph.inputs]
        values += [value for graph in all_graphs(model) for value in graph.initializers.values()]
        for node in all_nodes(model):
            values += node.outputs
            modified |= bool(node.doc_string or node.metadata_props)
            node.doc_string = None
            node.metadata_props.clear()
        interface = {*model.graph.inputs, *model.graph.outputs}
        for value in values:
            if value in interface:
                continue
            modified |= bool(value.doc_string or value.metadata_props)
            value.doc_string = None
            value.metadata_props.clear()
        return ir.passes.PassResult(model, modified)


class PruneDeadWeight(ir.passes.InPlacePass):
    """Remove nodes that reach no output, unused and duplicate initializers, unused functions
    and opsets."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        passes = ir.passes.Sequential(
            RemoveDeadNodes(),
            RemoveUnusedSubgraphInitializers(),
            common.RemoveUnusedFunctionsPass(),
            common.RemoveUnusedOpsetsPass(),
            DeduplicateInitializers(),
        )
        return passes(model)


class RemoveDeadNodes(ir.passes.InPlacePass):
    """Nodes that reach no output removed (onnx-ir's RemoveUnusedNodesPass), and the uses of the
    model's values by nodes no longer in it dropped, until neither changes anything.

    onnx-ir detaches a removed node's own inputs, not those of the nodes in its If, Loop or Scan
    bodies: a weight such a body read still looked shared, so folding its slices would grow the
    file, and what only it read was never pruned (silero-vad: a second run removed 20 more
    nodes)."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        modified = False
        while True:
            modified |= remove_unused_nodes(model)
            stale = _stale_uses(model)
            if not stale:
                return ir.passes.PassResult(model, modified)
            for node, index in stale:
                node.replace_input_with(index, None)
            modified = True


#: Optional outputs ONNX Runtime requires once an input is given: (op, input) -> outputs. onnx-ir
#: leaves out an unused optional output, but ORT 1.32's Attention refuses a past key without its
#: present key ("does not support past_key provided and present_key being null").
ORT_NEEDED_OUTPUTS = {("Attention", 4): (1,), ("Attention", 5): (2,)}


def remove_unused_nodes(model: ir.Model) -> bool:
    """onnx-ir's RemoveUnusedNodesPass, the outputs ORT needs kept (`ORT_NEEDED_OUTPUTS`);
    whether it removed something."""
    needed = _needed_outputs(model)
    modified = common.RemoveUnusedNodesPass()(model).modified
    _restore_outputs(needed)
    return modified


def _needed_outputs(model: ir.Model) -> dict[ir.Node, dict[int, str]]:
    """The names of the outputs `ORT_NEEDED_OUTPUTS` asks of each node, by output index."""
    needed = defaultdict(dict)
    for node in all_nodes(model):
        if node.domain not in ("", "ai.onnx"):
            continue
        for (op_type, given), outputs in ORT_NEEDED_OUTPUTS.items():
            if node.op_type != op_type or len(node.inputs) <= given or node.inputs[given] is None:
                continue
            for index in outputs:
                if index < len(node.outputs) and node.outputs[index].name:
                    needed[node][index] = node.outputs[index].name
    return needed


def _restore_outputs(needed: dict[ir.Node, dict[int, str]]) -> None:
    """Give back to the nodes still in the model the outputs `needed` names that they lost."""
    for node, outputs in needed.items():
        if node.graph is None:
            continue
        node.resize_outputs(max(len(node.outputs), max(outputs) + 1))
        for index, name in outputs.items():
            node.outputs[index].name = node.outputs[index].name or name


def _stale_uses(model: ir.Model) -> list[tuple[ir.Node, int]]:
    """(node, input index) of each use of a value of the model (its graphs' and functions') by a
    node no longer in it."""
    live = set(all_nodes(model))
    scopes = [
        *all_graphs(model),
        *(
            body
            for function in model.functions.values()
            for body in (function, *subgraphs(function))
        ),
    ]
    return [
        (use.node, use.idx)
        for scope in scopes
        for value in (
            *scope.inputs,
            *(scope.initializers.values() if isinstance(scope, ir.Graph) else ()),
            *(output for node in scope for output in node.outputs),
        )
        for use in value.uses()
        if use.node not in live
    ]


class RemoveUnusedSubgraphInitializers(ir.passes.InPlacePass):
    """Initializers of If/Loop/Scan bodies that no node reads (onnx-ir's RemoveUnusedNodesPass
    removes the main graph's only; ORT warns about each such one at every load)."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        modified = False
        for graph in subgraphs(model.graph):
            for name, value in list(graph.initializers.items()):
                if not (value.uses() or value.is_graph_input() or value.is_graph_output()):
                    graph.initializers.pop(name)
                    modified = True
        return ir.passes.PassResult(model, modified)


class DeduplicateInitializers(ir.passes.InPlacePass):
    """Initializers with the same dtype, shape and bytes become one (graph I/O is kept), across
    If/Loop/Scan bodies too: the copy kept lives in the innermost graph enclosing every user, moved
    there from a subgraph when needed, and subgraphs read it from the outer scope.

    Candidates are narrowed by dtype and shape, then by a fingerprint of a few kilobytes; only those
    still alike are compared in full: a large model's weights are not read (or paged in) at all.
    """

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        parents = _parent_graphs(model)
        groups: dict[tuple, list[ir.Value]] = defaultdict(list)
        for graph in all_graphs(model):
            for value in graph.initializers.values():
                tensor = value.const_value
                if tensor is None or value.is_graph_input() or value.is_graph_output():
                    continue
                groups[(tensor.dtype, tuple(tensor.shape))].append(value)
        modified = False
        for members in groups.values():
            if len(members) < 2:
                continue
            alike: dict[bytes, list[ir.Value]] = defaultdict(list)
            for value in members:
                alike[_fingerprint(value.const_value)].append(value)
            for candidates in alike.values():
                copies: list[list[ir.Value]] = []
                for value in candidates:
                    same = next(
                        (c for c in copies if _same_bytes(c[0].const_value, value.const_value)),
                        None,
                    )
                    if same is None:
                        copies.append([value])
                    else:
                        same.append(value)
                for same in copies:
                    for group in _scoped(same):
                        if len(group) > 1:
                            _keep_one(model, group, parents)
                            modified = True
        return ir.passes.PassResult(model, modified)


def _parent_graphs(model: ir.Model) -> dict[ir.Graph, ir.Graph]:
    """Each subgraph's enclosing graph."""
    parents = {}
    for node in ir.traversal.RecursiveGraphIterator(model.graph):
        for attr in node.attributes.values():
            if attr.type == ir.AttributeType.GRAPH:
                parents[attr.as_graph()] = node.graph
            elif attr.type == ir.AttributeType.GRAPHS:
                for graph in attr.as_graphs():
                    parents[graph] = node.graph
    return parents


#: Fewest bytes of a constant merged across graph scopes (smaller: one copy per graph): a Loop
#: body reading a 1 KiB weight and scalars from the outer graph ran 1.07x the time (jax2onnx's
#: fori_loop, 22 us a run), what ORT costs for each outer-scope value a subgraph reads
CROSS_SCOPE_BYTES = 64 * 1024


def _scoped(copies: list[ir.Value]) -> list[list[ir.Value]]:
    """`copies` (equal initializers) as the groups to merge: all of them, or for a tensor under
    CROSS_SCOPE_BYTES, those of each graph apart."""
    if copies[0].const_value.nbytes >= CROSS_SCOPE_BYTES:
        return [copies]
    by_graph: dict[ir.Graph, list[ir.Value]] = defaultdict(list)
    for value in copies:
        by_graph[value.graph].append(value)
    return list(by_graph.values())


def _keep_one(model: ir.Model, copies: list[ir.Value], parents: dict) -> None:
    """Make every user of `copies` (equal initializers) read one of them, held by the innermost
    graph enclosing them all; the others are removed."""

    def scopes(graph):
        while graph is not None:
            yield graph
            graph = parents.get(graph)

    enclosing = [list(scopes(value.graph)) for value in copies]
    home = next(g for g in enclosing[0] if all(g in chain for chain in enclosing[1:]))
    kept = next((value for value in copies if value.graph is home), None)
    if kept is None:  # every copy is in a subgraph: move one out to the common scope
        kept = copies[0]
        kept.graph.initializers.pop(kept.name)
        if kept.name in home.initializers:
            kept.name = fresh_name(value_names(model), kept.name)
        home.register_initializer(kept)
    for value in copies:
        if value is not kept:
            value.replace_all_uses_with(kept)
            value.graph.initializers.pop(value.name)


_FINGERPRINT_BYTES = 4096


def _flat_bytes(tensor) -> np.ndarray:
    """The tensor's data as a flat uint8 array (a view of the mapped file for external tensors)."""
    if tensor.dtype == ir.DataType.STRING:
        return np.frombuffer(b"\0".join(tensor.string_data()), dtype=np.uint8)
    array = np.ascontiguousarray(tensor.numpy())
    return array.reshape(-1).view(np.uint8)


def _fingerprint(tensor) -> bytes:
    """The first and last 4 KiB and 64 bytes at 16 spots between them."""
    if isinstance(tensor, ir.ExternalTensor):
        return _external_fingerprint(tensor)
    return _pick(_flat_bytes(tensor).tobytes)


def _pick(read, size: int | None = None) -> bytes:
    """Fingerprint bytes from `read(start, stop)` over `size` bytes (or the whole of `read()`)."""
    if size is None:
        whole = read()
        size, read = len(whole), lambda start, stop: whole[start:stop]
    if size <= 3 * _FINGERPRINT_BYTES:
        return read(0, size)
    spots = np.linspace(_FINGERPRINT_BYTES, size - _FINGERPRINT_BYTES - 64, 16).astype(np.int64)
    return b"".join(
        [
            read(0, _FINGERPRINT_BYTES),
            *(read(int(s), int(s) + 64) for s in spots),
            read(size - _FINGERPRINT_BYTES, size),
        ]
    )


def _external_fingerprint(tensor: ir.ExternalTensor) -> bytes:
    # Plain reads, not the tensor's memory map: a mapped file's read-ahead would page in (and count
    # in the resident set) most of every weight just to look at a few kilobytes.
    offset = tensor.offset or 0
    try:
        with open(tensor.path, "rb") as file:
            fd = file.fileno()
            return _pick(
                lambda start, stop: os.pread(fd, stop - start, offset + start), tensor.nbytes
            )
    except OSError:
        return _pick(_flat_bytes(tensor).tobytes)


def _same_bytes(a, b) -> bool:
    if a.dtype == ir.DataType.STRING:
        return list(a.string_data()) == list(b.string_data())
    return np.array_equal(_flat_bytes(a), _flat_bytes(b))


class EliminateCommonSubexpressions(ir.passes.InPlacePass):
    """onnx-ir's CommonSubexpressionEliminationPass, on graphs whose nodes have type attributes
    too (Optional's `type`, which that pass cannot hash: exit 3 on a valid model): each is
    compared by its text for the pass, then given back."""

    _TYPE_ATTRIBUTES = (ir.AttributeType.TYPE_PROTO, ir.AttributeType.TYPE_PROTOS)

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        hidden = {}
        for node in model.graph:
            for name, attr in list(node.attributes.items()):
                if attr.type in self._TYPE_ATTRIBUTES:
                    hidden[node, name] = attr
                    node.attributes[name] = ir.AttrString(name, f"{attr.type}:{attr.value!r}")
        try:
            result = common.CommonSubexpressionEliminationPass()(model)
        finally:
            for (node, name), attr in hidden.items():
                node.attributes[name] = attr
        return ir.passes.PassResult(model, modified=result.modified)


class RemoveNoOps(ir.passes.InPlacePass):
    """Drop nodes that compute their input unchanged."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        dropouts = _old_dropouts_to_identity(model)
        states = _drop_zero_states(model)
        identity = _IdentityElimination()(model).modified
        rules = RewriteRulesPass(NO_OP_RULES)(model).modified
        return ir.passes.PassResult(model, dropouts or states or identity or rules)


#: Optional inputs of the recurrent ops whose default is zeros: initial_h (and LSTM's initial_c
#: and peepholes P), by input index.
ZERO_DEFAULTS = {"RNN": (5,), "GRU": (5,), "LSTM": (5, 6, 7)}
#: Ops whose output is all zeros when their first input is (they move, pick, repeat or cast
#: values): torch's exporter slices each LSTM layer's state from one ConstantOfShape(0).
_ZEROS_KEPT = frozenset(
    (
        "Cast",
        "Expand",
        "Flatten",
        "Gather",
        "Identity",
        "Reshape",
        "Slice",
        "Split",
        "Squeeze",
        "Tile",
        "Transpose",
        "Unsqueeze",
    )
)


def _drop_zero_states(model: ir.Model) -> bool:
    """An RNN/GRU/LSTM input whose default is zeros and that is all zeros is left out (tf2onnx
    builds each initial state as Expand(0, [1, batch, hidden]) from Shape arithmetic: 8 nodes
    per LSTM). Math: the op reads a missing initial_h, initial_c or P as zeros of its shape."""
    changed = False
    for graph in all_graphs(model):
        for node in graph:
            indices = ZERO_DEFAULTS.get(node.op_type, ()) if node.domain == "" else ()
            zeros = [i for i in indices if i < len(node.inputs) and _all_zeros(node.inputs[i])]
            for index in zeros:
                node.replace_input_with(index, None)
            while zeros and node.inputs[-1] is None:  # no trailing empty inputs
                node.resize_inputs(len(node.inputs) - 1)
            changed = changed or bool(zeros)
    return changed


def _all_zeros(value: ir.Value | None, depth: int = 0) -> bool:
    """Whether `value` is all zeros by how constants compute it (ConstantOfShape of 0, and what
    moves, picks, repeats, casts or concatenates zeros), within a few producers."""
    if value is None or value.is_graph_input() or depth > 8:
        return False
    if value.const_value is not None:
        return not np.any(value.const_value.numpy())
    producer = value.producer()
    if producer is None or producer.domain != "":
        return False
    if producer.op_type == "ConstantOfShape":
        fill = producer.attributes.get("value")
        return fill is None or not np.any(fill.value.numpy())
    if producer.op_type == "Concat":
        return all(_all_zeros(v, depth + 1) for v in producer.inputs)
    return producer.op_type in _ZEROS_KEPT and _all_zeros(producer.inputs[0], depth + 1)


class _IdentityElimination(common.IdentityEliminationPass):
    """onnx-ir's Identity elimination, minus two cases it gets wrong.

    An Identity whose output is a graph output is removed by renaming its input; that is wrong when
    the input is a graph output too (two outputs would become one value: found by the fuzzer) or
    when it is produced in an outer scope (the subgraph would return an outer value, which the
    onnx checker and ONNX Runtime refuse).
    """

    def _try_eliminate_identity_node(self, node: ir.Node) -> bool:
        if (
            node.op_type == "Identity"
            and node.domain == ""
            and len(node.inputs) == 1
            and len(node.outputs) == 1
        ):
            source, output = node.inputs[0], node.outputs[0]
            if source is not None and output.is_graph_output():
                producer = source.producer()
                if source.is_graph_output() or (
                    producer is not None and producer.graph is not node.graph
                ):
                    return False
        return super()._try_eliminate_identity_node(node)


def _old_dropouts_to_identity(model: ir.Model) -> bool:
    """Dropout before opset 12 (no training input: always inference) with unused mask -> Identity.

    onnxscript's folder handles opset 12 and later.
    """
    modified = False
    scopes: list[tuple[ir.Graph | ir.Function, int | None]] = [
        (graph, default_opset(model.opset_imports)) for graph in all_graphs(model)
    ]
    scopes += [
        (function, default_opset(function.opset_imports)) for function in model.functions.values()
    ]
    for scope, opset in scopes:
        if opset is None or opset >= 12:
            continue
        outputs = set(scope.outputs)
        for node in list(scope):
            if node.op_type != "Dropout" or node.domain not in ("", "ai.onnx") or not node.outputs:
                continue
            mask = node.outputs[1] if len(node.outputs) > 1 else None
            if mask is not None and (mask.uses() or mask in outputs):
                continue
            identity = ir.Node("", "Identity", inputs=[node.inputs[0]], name=node.name)
            ir.convenience.replace_nodes_and_values(
                scope, node, [node], [identity], [node.outputs[0]], [identity.outputs[0]]
            )
            modified = True
    return modified


#: Rewrite rules that drop a node computing its input unchanged.
NO_OP_RULES = (
    onnxscript_rules.dropout_zero_rule,
    onnxscript_rules.dropout_inference_rule,
    onnxscript_rules.no_op_cast_rule,
    onnxscript_rules.no_op_transpose_rule,
    onnxscript_rules.collapse_slice_rule,
    onnxscript_rules.collapse_slice2_rule,
    *no_ops.rules,
)
