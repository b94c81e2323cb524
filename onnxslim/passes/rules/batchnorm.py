"""onnxscript's BatchNormalization folding (into Conv, ConvTranspose, Gemm), inference-mode BN only.

A training-mode BN normalizes with the batch's own statistics, and a `spatial=0` BN (opset < 9)
keeps one statistic per activation: neither is the per-channel affine map the folding assumes.
"""

from __future__ import annotations

from onnxscript.rewriter.pattern import MatchResult

from onnxslim.passes import upstream


class _InferenceOnly:
    def check(self, context, x, inbound_out, batchnorm_out) -> MatchResult:
        result = super().check(context, x, inbound_out, batchnorm_out)
        attributes = batchnorm_out.producer().attributes
        if result and (
            attributes.get_int("training_mode", 0) or not attributes.get_int("spatial", 1)
        ):
            return result.fail("BatchNormalization in training mode or with spatial=0")
        return result


class BatchNormIntoConv(_InferenceOnly, upstream.FuseBatchNormIntoConv):
    """BatchNormalization(Conv(x)) -> Conv(x)."""


class BatchNormIntoConvTranspose(_InferenceOnly, upstream.FuseBatchNormIntoConvTranspose):
    """BatchNormalization(ConvTranspose(x)) -> ConvTranspose(x)."""


class BatchNormIntoGemm(_InferenceOnly, upstream.FuseBatchNormIntoGemm):
    """BatchNormalization(Gemm(x)) -> Gemm(x)."""


rules = (BatchNormIntoConv.rule(), BatchNormIntoConvTranspose.rule(), BatchNormIntoGemm.rule())
