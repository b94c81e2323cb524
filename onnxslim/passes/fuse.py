"""Fusions: one pass per family, each a set of rewrite rules (onnxscript's where right, ours
where missing)."""

from __future__ import annotations

from onnxscript.rewriter.rules import common as onnxscript_rules

from onnxslim.passes.rewrite import RewriteRulesPass
from onnxslim.passes.rules import (
    activations,
    batchnorm,
    chains,
    conv_affine,
    gelu,
    layernorm,
    matmul_add,
    reshape,
    residual,
)


class FuseBatchNorm(RewriteRulesPass):
    """Inference-mode BatchNormalization folded into the Conv, ConvTranspose or Gemm before it."""

    rules = batchnorm.rules


class FuseLayerNorm(RewriteRulesPass):
    """Layer normalization written out elementwise -> LayerNormalization (opset 17+), gamma and
    beta folded in."""

    rules = layernorm.rules


class ResidualSum(RewriteRulesPass):
    """A residual Add feeding a LayerNormalization becomes Sum: ORT's CPU SkipLayerNormalization
    is slower."""

    rules = residual.rules


class FuseGelu(RewriteRulesPass):
    """Gelu written out (erf form, tanh form) -> Gelu (opset 20+)."""

    rules = gelu.rules


class FuseConvAffine(RewriteRulesPass):
    """Per-channel constant Mul/Div/Add/Sub after a Conv (or before one) folded into its
    weights and bias."""

    rules = conv_affine.rules


class FusePadConv(RewriteRulesPass):
    """Constant zero Pad before a Conv folded into the Conv's pads."""

    rules = (
        onnxscript_rules.normalize_pad_format_conv_rule,
        onnxscript_rules.fuse_pad_into_conv_rule,
    )


class FuseMatMulAdd(RewriteRulesPass):
    """MatMul with a 2-D input and constant 2-D weight, plus a bias Add, becomes one Gemm."""

    rules = matmul_add.rules


class FuseActivations(RewriteRulesPass):
    """Activations written out elementwise (hard-swish, hard-sigmoid) fused into their ONNX op."""

    rules = activations.rules


class FuseChains(RewriteRulesPass):
    """Collapse data-movement chains; Reshape to a traceable computed shape gets a constant one."""

    rules = (
        onnxscript_rules.transpose_transpose_rule,
        onnxscript_rules.reshape_reshape_rule,
        onnxscript_rules.unsqueeze_unsqueeze_rule,
        onnxscript_rules.cast_cast_rule,
        *chains.rules,
        *reshape.rules,
    )
