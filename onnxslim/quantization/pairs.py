"""8-bit weights that ONNX Runtime's u8s8 kernels cannot saturate on x86 without VNNI.

There, QLinearConv, QGemm, QLinearMatMul and MatMulInteger add the products of neighbouring
weights along the reduction in int16 (``vpmaddubsw``): ``a0 w0 + a1 w1`` with uint8 ``a`` up to
255 saturates unless ``|w0| + |w1| <= 128`` when both have the same sign (255 * 128 = 32640 <=
32767). Neighbours are taken in the order the kernels pack the weights: a conv kernel position by
position, the input channels of each adjacent (HWIO); Gemm and MatMul along K. A depthwise conv (one
input and one output channel per group) runs ORT's depthwise kernel, which accumulates in int32.

Rather than 7-bit weights (``reduce_range``), each output channel gets the smallest scale at which
no pair exceeds the limit: 8 bits of range for a channel whose largest weights have small or
opposite-sign neighbours, 7 at worst.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxslim.quantization.ops import attribute, is_depthwise

PAIR_LIMIT = 128
#: How a weight's reduction is laid out (see ``reduction_layout``).
CONV, ROWS, COLUMNS = "conv", "rows", "columns"


def reduction_layout(node: ir.Node) -> str | None:
    """How ``node``'s weight is reduced: ``CONV`` ([M, C/group, k...]), ``ROWS`` (Gemm transB:
    [N, K]), ``COLUMNS`` (MatMul, Gemm: [..., K, N] or [K]); None for a depthwise conv, whose ORT
    kernel accumulates in int32."""
    if node.op_type == "Conv":
        return None if is_depthwise(node) else CONV
    if node.op_type == "Gemm" and attribute(node, "transB", 0):
        return ROWS
    if node.op_type in ("Gemm", "MatMul"):
        return COLUMNS
    raise ValueError(f"no integer-kernel weight layout for {node.op_type}")


def pair_amax(weight: np.ndarray, layout: str | None, limit: int, qmax: int) -> np.ndarray | None:
    """Per output channel, the smallest clip threshold (scale ``t / qmax``) at which no same-sign
    pair of neighbours sums to more than ``limit`` steps; None when ``layout`` is None."""
    if layout is None:
        return None
    first, second = _pairs(reduction_rows(np.asarray(weight, np.float64), layout))
    sums = np.where(first * second > 0, np.abs(first) + np.abs(second), 0.0)
    per_row = sums.max(axis=1, initial=0.0)
    if layout == COLUMNS and weight.ndim > 1:  # rows [..., N]: a channel is a column of each matrix
        per_row = per_row.reshape(-1, weight.shape[-1]).max(axis=0, initial=0.0)
    return (per_row * qmax / limit).astype(np.float32)


def limit_pairs(
    q: np.ndarray, exact: np.ndarray, layout: str | None, limit: int, qmax: int
) -> np.ndarray:
    """``q`` (int8 weights; ``exact`` their unrounded values in steps) with every same-sign pair
    of neighbours that rounding took above ``limit`` moved onto ``|w0| + |w1| = limit``, at the
    nearest step to the projection of ``exact``; each keeps its sign and ``|w| <= qmax``."""
    if layout is None:
        return q
    rows = reduction_rows(q, layout).astype(np.int32)
    first, second = _pairs(rows)
    over = (first * second > 0) & (np.abs(first) + np.abs(second) > limit)
    if not over.any():
        return q
    u0, u1 = (np.abs(u[over]) for u in _pairs(reduction_rows(exact, layout)))
    kept = np.clip(np.round((u0 - u1 + limit) / 2), max(1, limit - qmax), min(qmax, limit - 1))
    sign = np.sign(first[over])
    first[over], second[over] = sign * kept, sign * (limit - kept)
    even = rows.shape[1] - rows.shape[1] % 2
    rows[:, 0:even:2], rows[:, 1:even:2] = first, second
    return from_reduction_rows(rows.astype(q.dtype), layout, q.shape)


def _pairs(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The first and second members of each neighbour pair of each row (copies)."""
    even = rows.shape[1] - rows.shape[1] % 2
    return rows[:, 0:even:2].copy(), rows[:, 1:even:2].copy()


def reduction_rows(weight: np.ndarray, layout: str) -> np.ndarray:
    """``weight`` as [output channels, reduction] in the kernels' packing order (a 1-D MatMul
    weight is one column)."""
    if layout == CONV:
        return np.moveaxis(weight, 1, -1).reshape(weight.shape[0], -1)
    if layout == ROWS:
        return weight
    if weight.ndim == 1:
        return weight.reshape(1, -1)
    return np.moveaxis(weight, -2, -1).reshape(-1, weight.shape[-2])


def from_reduction_rows(rows: np.ndarray, layout: str, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of ``reduction_rows``."""
    if layout == CONV:
        return np.moveaxis(rows.reshape(shape[0], *shape[2:], shape[1]), -1, 1)
    if layout == ROWS:
        return rows
    if len(shape) == 1:
        return rows.reshape(shape)
    return np.moveaxis(rows.reshape(*shape[:-2], shape[-1], shape[-2]), -1, -2)
