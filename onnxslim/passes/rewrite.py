"""Base class for passes made of onnxscript rewrite rules."""

from __future__ import annotations

from collections.abc import Sequence

import onnx_ir as ir
from onnxscript.rewriter import RULE_NAME_TAG, pattern

from onnxslim.model.graph import op_types
from onnxslim.passes.upstream import pattern_op_types


class RewriteRulesPass(ir.passes.InPlacePass):
    """Apply `rules` everywhere (main graph, subgraphs, functions).

    onnxscript tries every rule on every node; rules naming an op the model does not contain
    cannot match, so they are left out first (the matching dominates the pipeline's time). What
    onnxscript writes that the model did not have is removed (bytes in the file for nothing): the
    rule name it records on each node it makes, the names it gives nodes that had none, and those
    of the nodes it makes in a model whose nodes have no names.
    """

    def __init__(self, rules: Sequence[pattern.RewriteRule]) -> None:
        super().__init__()
        self.rules = tuple(rules)

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        present = _op_types(model)
        rules = [rule for rule in self.rules if pattern_op_types(rule) <= present]
        if not rules:
            return ir.passes.PassResult(model, False)
        before = set(_nodes(model))
        unnamed = {node for node in before if not node.name}
        anonymous = len(unnamed) == len(before)
        count = pattern.RewriteRuleSet(rules).apply_to_model(model)
        if count:
            for node in _nodes(model):
                node.metadata_props.pop(RULE_NAME_TAG, None)
                if node in unnamed or (anonymous and node not in before):
                    node.name = ""  # not None: onnx-ir names a None-named node it inserts
        return ir.passes.PassResult(model, bool(count))


def _nodes(model: ir.Model) -> list[ir.Node]:
    """Every node of the model: its graphs, their subgraphs and its functions."""
    return [
        node
        for graph in (model.graph, *model.functions.values())
        for node in ir.traversal.RecursiveGraphIterator(graph)
    ]


def _op_types(model: ir.Model) -> set[str]:
    graphs = (model.graph, *model.functions.values())
    return {op for graph in graphs for op in op_types(graph)}
