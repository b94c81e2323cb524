"""Every private onnxscript (and onnx-ir, ONNX Runtime) name onnxslim builds on, in one place
(checked against onnxscript 0.7, onnx-ir 1.1 and onnxruntime 1.32).

They do not export these; when an upgrade moves one, only this module changes.
"""

from __future__ import annotations

from onnxscript.optimizer import _constant_folding
from onnxscript.rewriter import _ir_utils, _pattern_ir
from onnxscript.rewriter.rules.common import (
    _basic_rules,
    _fuse_batchnorm,
    _fuse_hardswish,
    _fuse_pad_into_conv,
    _matmul_add_to_gemm,
)

# constant folding (passes/fold.py)
FoldConstantsPass = _constant_folding.FoldConstantsPass
Replacement = _constant_folding.Replacement
# evaluating a node on constants with onnx's reference implementation, as the folder does
evaluate = _constant_folding._reference_evaluator.evaluate
# the metadata key of what a folded value was computed from (removed by passes/marks.py)
FOLDED_FROM_KEY = _constant_folding.FOLDED_FROM_KEY
# reading constants (rules/common.py)
get_numpy_value = _ir_utils.get_numpy_value
# BatchNormalization folding (rules/batchnorm.py): each rule's check, and weight scaling below
BATCHNORM_RULES = {
    "Conv": _fuse_batchnorm.FuseBatchNormIntoConv(),
    "ConvTranspose": _fuse_batchnorm.FuseBatchNormIntoConvTranspose(),
    "Gemm": _fuse_batchnorm.FuseBatchNormIntoGemm(),
}
# rule classes our rules extend
HardSwishFusion = _fuse_hardswish.HardSwishFusion
HardSigmoidFusion = _fuse_hardswish.HardSigmoidFusion
HardSwishFusionFromHardSigmoid = _fuse_hardswish.HardSwishFusionFromHardSigmoid
MatMulAddToGemm = _matmul_add_to_gemm.MatMulAddToGemm
NormalizePadFormatConv = _fuse_pad_into_conv.NormalizePadFormatConv
TransposeTranspose = _basic_rules.TransposeTranspose


def pattern_op_types(rule) -> set[str]:
    """The op types a rewrite rule's pattern names (empty when they cannot be read: try the
    rule always)."""
    try:
        nodes = rule._target_pattern._nodes
    except AttributeError:
        return set()
    return {
        node.op_type for node in nodes if isinstance(node.op, _pattern_ir.StringConstantPattern)
    }


def batchnorm_scaled_weights(op_type: str, weights, scale, attributes):
    """`weights` of a Conv, ConvTranspose or Gemm scaled by `scale` along its output channels, as
    onnxscript's BatchNormalization folding rule for `op_type` scales them."""
    return BATCHNORM_RULES[op_type]._scale_weights(weights, scale, attributes)


def ort_operator_schemas() -> list:
    """Every op schema ONNX Runtime registers (`name`, `domain`, `since_version`, `deprecated`),
    its own ops in the ONNX domain included: from its pybind module, which onnxruntime does not
    export."""
    from onnxruntime.capi.onnxruntime_pybind11_state import get_all_operator_schema

    return get_all_operator_schema()


def ort_kernels() -> list:
    """Every kernel ONNX Runtime's build registers (`op_name`, `domain`, `provider`,
    `version_range`): from the same module."""
    from onnxruntime.capi.onnxruntime_pybind11_state import get_all_opkernel_def

    return get_all_opkernel_def()
