"""What onnxscript's rewriter and constant folder write into a model: rule names and the values a
folded value was computed from (metadata, even where the file already carried it), names for
nodes the model left unnamed. Bytes in the file for nothing, so removed."""

from __future__ import annotations

import onnx_ir as ir
from onnxscript.rewriter import RULE_NAME_TAG

from onnxslim.model.graph import all_graphs, all_nodes
from onnxslim.passes.upstream import FOLDED_FROM_KEY


class UpstreamMarks:
    """Taken before an onnxscript pass runs; `remove` after one that changed the model removes the
    rule name it records on each node it makes and the names of the values each folded value was
    computed from, gives back their empty names to the nodes it named (onnx-ir names a node
    inserted without one), and leaves every node unnamed in a model whose nodes had no names."""

    def __init__(self, model: ir.Model) -> None:
        nodes = list(all_nodes(model))
        self.unnamed = {node for node in nodes if not node.name}
        self.anonymous = len(self.unnamed) == len(nodes)

    def remove(self, model: ir.Model) -> None:
        for node in all_nodes(model):
            node.metadata_props.pop(RULE_NAME_TAG, None)
            if self.anonymous or node in self.unnamed:
                node.name = ""  # not None: onnx-ir names a None-named node it inserts
            for value in node.outputs:
                value.metadata_props.pop(FOLDED_FROM_KEY, None)
        for graph in all_graphs(model):
            for value in graph.initializers.values():
                value.metadata_props.pop(FOLDED_FROM_KEY, None)
