"""onnxscript's BatchNormalization folding (into Conv, ConvTranspose, Gemm), inference-mode BN only.

A training-mode BN normalizes with the batch's own statistics, and a `spatial=0` BN (opset < 9)
keeps one statistic per activation: neither is the per-channel affine map the folding assumes.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter.pattern import MatchResult

from onnxslim.passes import upstream


class _InferenceOnly:
    """Upstream's check, inference-mode BN only, and its rewrite with tensors made by `ir.Tensor`
    (upstream's `ir.tensor` costs ~9x more per call on Python 3.11, a runtime Protocol check:
    a third of the pass on a model with thousands of BatchNorms)."""

    def check(self, context, x, inbound_out, batchnorm_out) -> MatchResult:
        result = super().check(context, x, inbound_out, batchnorm_out)
        attributes = batchnorm_out.producer().attributes
        if result and (
            attributes.get_int("training_mode", 0) or not attributes.get_int("spatial", 1)
        ):
            return result.fail("BatchNormalization in training mode or with spatial=0")
        return result

    def rewrite(self, op, x, inbound_out, batchnorm_out):
        """W' = W * s and B' = (beta_gemm * B - mean) * s + beta, with s = gamma / sqrt(var + eps)
        along the inbound op's output channels (B = 0 when absent; beta_gemm: Gemm's `beta`, 1
        otherwise, then dropped from the node)."""
        batchnorm = batchnorm_out.producer()
        gamma, beta, mean, var = (value.const_value.numpy() for value in batchnorm.inputs[1:])
        scale = gamma / np.sqrt(var + batchnorm.attributes.get_float("epsilon", 1e-5))
        inbound = inbound_out.producer()
        weights = inbound.inputs[1]
        attributes = dict(inbound.attributes)
        gemm_beta = attributes.pop("beta").as_float() if "beta" in attributes else 1.0
        if len(inbound.inputs) > 2:
            bias, bias_name = inbound.inputs[2].const_value.numpy(), inbound.inputs[2].name
        else:  # named after the weights: patterns sharing a parent must not collide
            bias, bias_name = np.zeros_like(mean), f"{weights.name}_bias"
        fused = self._scale_weights(weights.const_value.numpy(), scale, inbound.attributes)
        return op.op(
            self.op_type,
            x,
            op.initializer(ir.Tensor(fused), name=weights.name),
            op.initializer(ir.Tensor((gemm_beta * bias - mean) * scale + beta), name=bias_name),
            **attributes,
        )


class BatchNormIntoConv(_InferenceOnly, upstream.FuseBatchNormIntoConv):
    """BatchNormalization(Conv(x)) -> Conv(x)."""


class BatchNormIntoConvTranspose(_InferenceOnly, upstream.FuseBatchNormIntoConvTranspose):
    """BatchNormalization(ConvTranspose(x)) -> ConvTranspose(x)."""


class BatchNormIntoGemm(_InferenceOnly, upstream.FuseBatchNormIntoGemm):
    """BatchNormalization(Gemm(x)) -> Gemm(x)."""


rules = (BatchNormIntoConv.rule(), BatchNormIntoConvTranspose.rule(), BatchNormIntoGemm.rule())
