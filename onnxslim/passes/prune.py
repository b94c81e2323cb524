"""Dead-weight pruning: unreachable nodes, unused or duplicate initializers, no-op nodes."""

from __future__ import annotations

import onnx_ir as ir
import onnx_ir.passes.common as common
from onnxscript.rewriter.rules.common import _basic_rules, _collapse_slices, _no_op

from onnxslim.passes._rewrite import RewriteRulesPass
from onnxslim.passes.rules import no_ops


class FreezeInitializerInputs(common.RemoveInitializersFromInputsPass):
    """Initializers also listed as graph inputs (old IR versions) become plain constants."""


class PruneDeadWeight(ir.passes.InPlacePass):
    """Remove nodes that reach no output, unused and duplicate initializers, unused functions and opsets."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        passes = ir.passes.Sequential(
            common.RemoveUnusedNodesPass(),
            common.RemoveUnusedFunctionsPass(),
            common.RemoveUnusedOpsetsPass(),
            common.DeduplicateHashedInitializersPass(),
        )
        return passes(model)


class RemoveNoOps(ir.passes.InPlacePass):
    """Drop nodes that compute their input unchanged."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        identity = common.IdentityEliminationPass()(model).modified
        rules = _RemoveNoOpRules()(model).modified
        return ir.passes.PassResult(model, identity or rules)


class _RemoveNoOpRules(RewriteRulesPass):
    rules = (
        *_no_op.rules.rules,
        _basic_rules.no_op_cast_rule,
        _basic_rules.no_op_expand_rule,
        _basic_rules.no_op_transpose_rule,
        *_collapse_slices.rules.rules,
        *no_ops.rules,
    )
