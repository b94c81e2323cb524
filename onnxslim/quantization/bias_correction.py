"""Bias correction (Nagel et al., "Data-Free Quantization", 2019): rounding a layer's weights shifts
the mean of its output by ``E[(W_q - W) x]``, which for a depthwise conv with nine weights per
channel is far from zero. Subtracting that shift, computed from the per-channel means of the float
input seen in calibration, from the bias removes it."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxslim.quantization.ops import attribute


def input_channel_axis(node: ir.Node) -> int | None:
    """The axis of the activation input (input 0) that the constant weight contracts, if the node
    can take a corrected bias: Conv, or Gemm with beta 1; the bias, if any, a constant."""
    weight = node.inputs[1] if len(node.inputs) > 1 else None
    bias = node.inputs[2] if len(node.inputs) > 2 else None
    if (
        weight is None
        or weight.const_value is None
        or bias is not None
        and bias.const_value is None
    ):
        return None
    if node.op_type == "Conv":
        return 1
    if (
        node.op_type == "Gemm"
        and not attribute(node, "transA", 0)
        and attribute(node, "beta", 1.0) == 1.0
    ):
        return -1
    return None


def output_shift(node: ir.Node, delta: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Mean output shift per output channel caused by the weight error ``delta`` (same layout as the
    weight) on inputs whose channels average ``mean`` (zero padding at borders is ignored; Gemm's
    alpha scales it)."""
    delta, mean = delta.astype(np.float64), mean.astype(np.float64)
    if node.op_type == "Gemm":
        return attribute(node, "alpha", 1.0) * (
            delta @ mean if attribute(node, "transB", 0) else mean @ delta
        )
    groups = attribute(node, "group", 1)
    c_out, c_in = delta.shape[:2]
    per_tap = delta.reshape(c_out, c_in, -1).sum(axis=2)  # [C_out, C_in / group]
    group_of = np.arange(c_out) // (c_out // groups)
    inputs = mean.reshape(groups, c_in)[group_of]  # the input channels each output channel reads
    return (per_tap * inputs).sum(axis=1)


def corrected_bias(
    node: ir.Node,
    bias: np.ndarray | None,
    weight: np.ndarray,
    dequantized: np.ndarray,
    mean: np.ndarray,
) -> np.ndarray:
    """``bias`` (zeros if absent) minus the shift from quantizing ``weight`` to ``dequantized``."""
    shift = output_shift(node, dequantized - weight, mean)
    base = np.zeros(shift.shape, np.float64) if bias is None else bias.astype(np.float64)
    return (base - shift).astype(np.float32)
