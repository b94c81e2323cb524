"""Fusions: the rule set of each fusion pass (onnxscript's rules where they are right, ours where
they miss); `registry.py` runs each through a RewriteRulesPass."""

from __future__ import annotations

from onnxscript.rewriter.rules import common as onnxscript_rules

from onnxslim.passes.rules import (
    activations,
    chains,
    conv_affine,
    gelu,
    layernorm,
    matmul_add,
    pad_conv,
    reshape,
    residual,
    transpose,
)

#: Activations written out elementwise (hard-swish, hard-sigmoid) fused into their ONNX op.
ACTIVATIONS = activations.rules
#: Layer normalization written out elementwise -> LayerNormalization (opset 17+).
LAYERNORM = layernorm.rules
#: A residual Add feeding a LayerNormalization becomes Sum: ORT's CPU SkipLayerNormalization,
#: which it would fuse the Add into, is slower.
RESIDUAL_SUM = residual.rules
#: Gelu written out (erf form, tanh form) -> Gelu (opset 20+).
GELU = gelu.rules
#: Transposes sunk through elementwise ops and reductions, so inverse pairs meet and cancel.
TRANSPOSE = transpose.rules
#: Per-channel constant Mul/Div/Add/Sub after a Conv (or before one) folded into its weights.
CONV_AFFINE = conv_affine.rules
#: Constant zero Pad before a Conv folded into the Conv's pads.
PAD_CONV = pad_conv.rules
#: MatMul with a 2-D input and constant 2-D weight, plus a bias Add, becomes one Gemm; a Gemm over
#: an input flattened to 2-D and reshaped back becomes MatMul (+ Add) over the input itself.
MATMUL_ADD = matmul_add.rules
#: Chains of data-movement ops collapsed; a Reshape to a traceable computed shape gets a constant.
CHAINS = (
    onnxscript_rules.reshape_reshape_rule,
    onnxscript_rules.cast_cast_rule,
    *chains.rules,
    *reshape.rules,
)
