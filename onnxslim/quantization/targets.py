"""Deployment CPU profiles for INT8: which weight range and which integer kernels pay off where."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx_ir as ir

from onnxslim.cpu import CpuInfo, cpu_info
from onnxslim.errors import OnnxSlimError
from onnxslim.quantization.ops import attribute

#: On x86 without VNNI, ORT's u8s8 kernels (QLinearConv, QGemm, QLinearMatMul, MatMulInteger) add
#: the products of neighbouring weights along the reduction in int16 (``vpmaddubsw``):
#: ``a0 w0 + a1 w1`` with ``a`` up to 255 saturates unless ``|w0| + |w1| <= 128`` when both have
#: the same sign (255 * 128 = 32640 <= 32767).
PAIR_LIMIT = 128


@dataclasses.dataclass(frozen=True)
class Target:
    """Deployment CPU profile: weight range and which int8 kernels pay off there."""

    name: str
    pair_limit: int | None  # see PAIR_LIMIT; None: no limit on the 8-bit weights
    skip_depthwise: bool
    note: str


TARGETS = {
    "avx2": Target(
        "avx2",
        PAIR_LIMIT,
        True,
        "x86 without VNNI: 8-bit weights, each pair of neighbours along the reduction limited so "
        "that ORT's u8s8 kernels cannot saturate",
    ),
    "vnni": Target("vnni", None, True, "x86 with VNNI: full 8-bit weights"),
    "arm": Target("arm", None, False, "ARM: full 8-bit weights, int8 depthwise kernels"),
}
#: What `target` accepts: "auto" (this CPU) or a profile name.
CHOICES = ("auto", *TARGETS)


def resolve_target(target: str, cpu: CpuInfo | None = None) -> tuple[Target, str]:
    """The profile for ``target`` ("auto" detects this CPU) and a sentence on how it was chosen."""
    if target != "auto":
        if target not in TARGETS:
            raise OnnxSlimError(f"unknown target {target!r}: choose {', '.join(CHOICES)}")
        return TARGETS[target], f"{target} (given)"
    cpu = cpu or cpu_info()
    arch = cpu.arch.lower()
    if arch.startswith(("arm", "aarch")):
        name = "arm"
    else:
        name = "vnni" if cpu.flags.get("vnni") else "avx2"
    features = ", ".join(cpu.features) or "no ISA flags found"
    return TARGETS[name], f"{name} (detected: {cpu.model}; {features})"


def pair_amax(node: ir.Node, weight: np.ndarray, limit: int, qmax: int) -> np.ndarray | None:
    """Per output channel, the smallest clip threshold (scale ``t / qmax``) at which no same-sign
    pair of neighbours along the kernel's reduction sums to more than ``limit`` steps; None for a
    depthwise conv, whose ORT kernel accumulates in int32. Between 7 and 8 bits of range: a
    channel whose largest weights have small neighbours keeps 8."""
    if _accumulates_in_int32(node, weight):
        return None
    first, second = _pairs(_reduction_rows(node, np.asarray(weight, np.float64)))
    sums = np.where(first * second > 0, np.abs(first) + np.abs(second), 0.0)
    per_row = sums.max(axis=1, initial=0.0)
    if node.op_type == "MatMul":  # rows [..., N]: a channel is a column of every matrix
        per_row = per_row.reshape(-1, weight.shape[-1]).max(axis=0)
    return (per_row * qmax / limit).astype(np.float32)


def limit_pairs(node: ir.Node, q: np.ndarray, exact: np.ndarray, limit: int) -> np.ndarray:
    """``q`` (int8 weights of ``node``, ``exact`` their unrounded values in steps) with every
    same-sign pair of neighbours along the reduction that rounding took above ``limit`` moved onto
    ``|w0| + |w1| = limit``, to the nearest step of the projection of ``exact``."""
    if _accumulates_in_int32(node, q):
        return q
    rows = _reduction_rows(node, q).astype(np.int32)
    first, second = _pairs(rows)
    over = (first * second > 0) & (np.abs(first) + np.abs(second) > limit)
    if not over.any():
        return q
    u0, u1 = (np.abs(u[over]) for u in _pairs(_reduction_rows(node, exact)))
    kept = np.clip(np.round((u0 - u1 + limit) / 2), limit - 127, 127)
    sign = np.sign(first[over])
    first[over], second[over] = sign * kept, sign * (limit - kept)
    even = rows.shape[1] - rows.shape[1] % 2
    rows[:, 0:even:2], rows[:, 1:even:2] = first, second
    return _from_reduction_rows(node, rows.astype(np.int8), q.shape)


def _accumulates_in_int32(node: ir.Node, weight: np.ndarray) -> bool:
    """A depthwise conv: ORT's int8 depthwise kernel does not pair products in int16."""
    return node.op_type == "Conv" and weight.shape[1] == 1 and attribute(node, "group", 1) > 1


def _pairs(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The first and second members of each neighbour pair of each row (copies)."""
    even = rows.shape[1] - rows.shape[1] % 2
    return rows[:, 0:even:2].copy(), rows[:, 1:even:2].copy()


def _reduction_rows(node: ir.Node, weight: np.ndarray) -> np.ndarray:
    """``weight`` as [output channels, reduction] in the order ORT's int8 kernels pack it: a Conv
    kernel position by position, the input channels of each adjacent (HWIO); Gemm/MatMul along K."""
    if node.op_type == "Conv":
        return np.moveaxis(weight, 1, -1).reshape(weight.shape[0], -1)
    if node.op_type == "Gemm" and attribute(node, "transB", 0):
        return weight
    return np.moveaxis(weight, -2, -1).reshape(-1, weight.shape[-2])


def _from_reduction_rows(node: ir.Node, rows: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of ``_reduction_rows``."""
    if node.op_type == "Conv":
        return np.moveaxis(rows.reshape(shape[0], *shape[2:], shape[1]), -1, 1)
    if node.op_type == "Gemm" and attribute(node, "transB", 0):
        return rows
    return np.moveaxis(rows.reshape(*shape[:-2], shape[-1], shape[-2]), -1, -2)
