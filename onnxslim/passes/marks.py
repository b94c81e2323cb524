"""What onnxscript's rewriter and constant folder write into a model that it did not have: bytes
in the file for nothing, so removed."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import onnx_ir as ir
from onnxscript.rewriter import RULE_NAME_TAG

from onnxslim.model.graph import all_graphs
from onnxslim.passes.upstream import FOLDED_FROM_KEY


@contextlib.contextmanager
def upstream_marks_removed(model: ir.Model) -> Iterator[None]:
    """On leaving: remove the rule name onnxscript records on each node a rewrite makes and the
    names of the values each folded value was computed from; give back their empty names to the
    nodes it named; leave the nodes it made unnamed in a model whose nodes have no names."""
    before = set(_nodes(model))
    unnamed = {node for node in before if not node.name}
    anonymous = len(unnamed) == len(before)
    yield
    for node in _nodes(model):
        node.metadata_props.pop(RULE_NAME_TAG, None)
        if node in unnamed or (anonymous and node not in before):
            node.name = ""  # not None: onnx-ir names a None-named node it inserts
        for value in node.outputs:
            value.metadata_props.pop(FOLDED_FROM_KEY, None)
    for graph in all_graphs(model):
        for value in graph.initializers.values():
            value.metadata_props.pop(FOLDED_FROM_KEY, None)


def _nodes(model: ir.Model) -> list[ir.Node]:
    """Every node of the model: its graphs, their subgraphs and its functions."""
    return [
        node
        for graph in (model.graph, *model.functions.values())
        for node in ir.traversal.RecursiveGraphIterator(graph)
    ]
