"""BatchNormalization folded into the Conv, ConvTranspose or Gemm before it (inference-mode BN).

onnxscript's rules decide what may fold (constant initializers used by nothing else, grouped
ConvTranspose shapes) and how the weights scale; the fold itself walks the graph node by node
instead of running onnxscript's pattern matcher, which cost most of this pass's time on models
with thousands of BatchNorms.

A training-mode BN normalizes with the batch's own statistics, and a `spatial=0` BN (opset < 9)
keeps one statistic per activation: neither is the per-channel affine map the folding assumes.
"""

from __future__ import annotations

import copy

import numpy as np
import onnx_ir as ir

from onnxslim.model.graph import all_graphs, fresh_name, value_names
from onnxslim.passes import upstream


class FoldBatchNorm(ir.passes.InPlacePass):
    """BatchNormalization(Conv|ConvTranspose|Gemm(x)) -> one Conv|ConvTranspose|Gemm:
    W' = W * s and B' = (beta_gemm * B - mean) * s + beta, with s = gamma / sqrt(var + eps)
    along the op's output channels (B = 0 when absent; beta_gemm: Gemm's `beta`, 1 otherwise,
    then dropped from the node)."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        modified, names = False, None
        for graph in all_graphs(model):
            for node in list(graph):
                if node.op_type != "BatchNormalization" or node.domain != "":
                    continue
                inbound = _foldable(node)
                if inbound is not None:
                    names = value_names(model) if names is None else names
                    _fold(graph, node, inbound, names)
                    modified = True
        return ir.passes.PassResult(model, modified)


def _foldable(batchnorm: ir.Node) -> ir.Node | None:
    """The node `batchnorm` folds into, or None."""
    attributes = batchnorm.attributes
    if attributes.get_int("training_mode", 0) or not attributes.get_int("spatial", 1):
        return None
    if len(batchnorm.inputs) != 5 or None in batchnorm.inputs:
        return None
    if len(batchnorm.outputs) != 1:
        return None  # training mode: ORT normalizes with the batch's statistics, read or not
    inbound = batchnorm.inputs[0].producer()
    rule = upstream.BATCHNORM_RULES.get(inbound.op_type) if inbound is not None else None
    if rule is None or inbound.domain != "" or len(inbound.outputs) != 1:
        return None
    if inbound.graph is not batchnorm.graph:
        return None  # a Conv outside the If/Loop body the BatchNorm is in
    out = inbound.outputs[0]
    if out.is_graph_output() or len(out.uses()) != 1 or None in inbound.inputs[1:]:
        return None
    if any(value.is_graph_output() for value in inbound.inputs[1:]):
        return None  # its weights change in place: a graph output would change with them
    if not rule.check(None, inbound.inputs[0], out, batchnorm.outputs[0]):
        return None
    return inbound


def _fold(graph: ir.Graph, batchnorm: ir.Node, inbound: ir.Node, names: set[str]) -> None:
    """Fold `batchnorm` into `inbound`, the node before it (`_foldable`); a new bias gets a name
    not in `names`."""
    gamma, beta, mean, var = (value.const_value.numpy() for value in batchnorm.inputs[1:])
    scale = gamma / np.sqrt(var + batchnorm.attributes.get_float("epsilon", 1e-5))
    weights = inbound.inputs[1]
    w = weights.const_value.numpy()
    gemm_beta = inbound.attributes.pop("beta").as_float() if "beta" in inbound.attributes else 1.0
    fused = upstream.batchnorm_scaled_weights(inbound.op_type, w, scale, inbound.attributes)
    weights.const_value = ir.Tensor(fused.astype(w.dtype), name=weights.name)
    has_bias = len(inbound.inputs) > 2
    b = inbound.inputs[2].const_value.numpy() if has_bias else np.zeros_like(mean)
    fused_bias = ((gemm_beta * b - mean) * scale + beta).astype(w.dtype)
    if has_bias:
        bias = inbound.inputs[2]
        bias.const_value = ir.Tensor(fused_bias, name=bias.name)
        bias.shape = ir.Shape(fused_bias.shape)  # a Gemm's C may have broadcast
    else:
        name = fresh_name(names, f"{weights.name}_bias")
        bias = ir.Value(
            name=name,
            shape=ir.Shape(fused_bias.shape),
            type=ir.TensorType(ir.DataType.from_numpy(fused_bias.dtype)),
        )
        bias.const_value = ir.Tensor(fused_bias, name=name)
        graph.register_initializer(bias)
        inbound.resize_inputs(3)
        inbound.replace_input_with(2, bias)
    _bypass(graph, batchnorm, inbound.outputs[0])


def _bypass(graph: ir.Graph, node: ir.Node, replacement: ir.Value) -> None:
    """Remove single-output `node`, its output replaced by `replacement` (which takes its name
    when it is a graph output)."""
    old = node.outputs[0]
    replacement.type = replacement.type or copy.copy(old.type)  # its own, as in transpose.py
    replacement.shape = replacement.shape or old.shape
    name = old.name if old.is_graph_output() else None
    old.replace_all_uses_with(replacement, replace_graph_outputs=True)
    graph.remove(node, safe=True)
    if name is not None:
        replacement.name = name
