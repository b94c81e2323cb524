"""Base class for passes made of onnxscript rewrite rules."""

from __future__ import annotations

from collections.abc import Sequence

import onnx_ir as ir
from onnxscript.rewriter import pattern


class RewriteRulesPass(ir.passes.InPlacePass):
    """Apply a fixed set of rewrite rules everywhere (main graph, subgraphs, functions)."""

    rules: Sequence[pattern.RewriteRule] = ()

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        if not self.rules:
            return ir.passes.PassResult(model, False)
        count = pattern.RewriteRuleSet(list(self.rules)).apply_to_model(model)
        return ir.passes.PassResult(model, bool(count))
