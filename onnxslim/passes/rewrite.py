"""Base class for passes made of onnxscript rewrite rules."""

from __future__ import annotations

from collections.abc import Sequence

import onnx_ir as ir
from onnxscript.rewriter import pattern

from onnxslim.model.graph import model_node_count, op_types
from onnxslim.passes.marks import UpstreamMarks
from onnxslim.passes.upstream import pattern_op_types


class RewriteRulesPass(ir.passes.InPlacePass):
    """Apply `rules` everywhere (main graph, subgraphs, functions).

    onnxscript tries every rule on every node; rules naming an op the model does not contain
    cannot match, so they are left out first (the matching dominates the pipeline's time). What
    onnxscript writes into the model is removed (`UpstreamMarks`).
    """

    def __init__(self, rules: Sequence[pattern.RewriteRule]) -> None:
        super().__init__()
        self.rules = tuple(rules)

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        present = _op_types(model)
        rules = [rule for rule in self.rules if pattern_op_types(rule) <= present]
        if not rules:
            return ir.passes.PassResult(model, False)
        marks = UpstreamMarks(model)
        nodes = model_node_count(model)
        count = pattern.RewriteRuleSet(rules).apply_to_model(model)
        if count:
            marks.remove(model)
        # where a rule keeps the nodes it matched (remove_nodes=False: FuseConvPad, the chain
        # rules), onnxscript then removes every node no output needs, even where no rule applied:
        # a change the pipeline's fixed point must see (what such a node shared may now fold)
        return ir.passes.PassResult(model, bool(count) or model_node_count(model) != nodes)


def _op_types(model: ir.Model) -> set[str]:
    graphs = (model.graph, *model.functions.values())
    return {op for graph in graphs for op in op_types(graph)}
