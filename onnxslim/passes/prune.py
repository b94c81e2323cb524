"""Dead-weight pruning: unreachable nodes, unused or duplicate initializers, no-op nodes."""

from __future__ import annotations

import onnx_ir as ir
import onnx_ir.passes.common as common
from onnxscript.rewriter.rules.common import _basic_rules, _collapse_slices, _no_op

from onnxslim.passes._rewrite import RewriteRulesPass
from onnxslim.passes.rules import no_ops


class FreezeInitializerInputs(ir.passes.InPlacePass):
    """Initializers also listed as main-graph inputs (old IR versions) become plain constants.

    Only the main graph: a subgraph's inputs are bound by its If/Loop/Scan node, whatever its initializers say.
    IR versions below 4 require every initializer to be a graph input, so the model moves to IR version 4.
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
        dropouts = _old_dropouts_to_identity(model)
        identity = common.IdentityEliminationPass()(model).modified
        rules = _RemoveNoOpRules()(model).modified
        return ir.passes.PassResult(model, dropouts or identity or rules)


def _old_dropouts_to_identity(model: ir.Model) -> bool:
    """Dropout before opset 12 (no training input: always inference) whose mask is unused becomes Identity.

    onnxscript's folder handles opset 12 and later.
    """
    modified = False
    scopes: list[tuple[ir.Graph | ir.Function, int | None]] = [
        (graph, model.opset_imports.get("")) for graph in model.graphs()
    ]
    scopes += [(function, function.opset_imports.get("")) for function in model.functions.values()]
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
            ir.convenience.replace_nodes_and_values(scope, node, [node], [identity], [node.outputs[0]],
                                                    [identity.outputs[0]])
            modified = True
    return modified


class _RemoveNoOpRules(RewriteRulesPass):
    rules = (
        *_no_op.rules.rules,
        _basic_rules.no_op_cast_rule,
        _basic_rules.no_op_expand_rule,
        _basic_rules.no_op_transpose_rule,
        *_collapse_slices.rules.rules,
        *no_ops.rules,
    )
