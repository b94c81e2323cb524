"""GPTQ weight rounding (Frantar et al., "GPTQ", 2023; after Optimal Brain Quantization): round a
layer's weights so that its output on the calibration inputs moves least, not each weight to its
nearest level.

A weighted layer computes ``y = W x``; with ``X`` its inputs (one column per sample position, for a
conv the im2col patches) the output error of rounded weights ``Q`` is
``||(W - Q) X||^2 = sum_rows (w - q) H (w - q)^T`` with ``H = X X^T``, one Hessian shared by all
output channels (rows). The input columns are rounded one at a time; the error ``e`` of column
``i`` is compensated on the columns not yet rounded, ``w[j] -= e * Hinv[i, j] / Hinv[i, i]``, which
is the least-squares optimum of the remaining weights given the rounded ones. ``Hinv`` is the upper
Cholesky factor of ``H^-1`` (damped by a share of its mean diagonal), so all updates come from one
factorization. Columns go in order of decreasing ``H[i, i]`` (the most active inputs first). The
per-output-channel scales are fixed before rounding.

A grouped conv (a depthwise one: a group per channel) is ``groups`` such layers side by side: the
output channels of a group read only its input channels, so each group has a Hessian of its own
(``[groups, n, n]``, ``n`` the inputs of one output channel) and the groups are rounded together,
as a batch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import weakref
from collections.abc import Callable

import numpy as np
import onnx_ir as ir
from threadpoolctl import threadpool_limits

from onnxslim.passes.upstream import NormalizePadFormatConv
from onnxslim.quantization.ops import attribute

DAMP = 0.01  # share of the mean Hessian diagonal added to it (keeps H invertible)
BLOCK = 128  # columns rounded before the lazy update of the rest (speed only)


def supports(node: ir.Node) -> bool:
    """Whether GPTQ can round this node's constant weight: a 1-D/2-D Conv (grouped or not), a
    Gemm (no transA) or a MatMul with a 2-D constant weight."""
    weight = node.inputs[1] if len(node.inputs) > 1 else None
    if weight is None or weight.const_value is None:
        return False
    ndim = len(weight.const_value.shape)
    if node.op_type == "Conv":
        return ndim in (3, 4)
    if node.op_type == "Gemm":
        return not attribute(node, "transA", 0)
    return node.op_type == "MatMul" and ndim == 2


#: Input positions (columns of X) a sample gives a layer's Hessian at most: a conv's neighbouring
#: positions see nearly the same patches, so a strided subset estimates X X^T almost as well at a
#: fraction of the time (PyTorch GPTQ implementations take 128 x 2048 columns for a whole LLM).
MAX_COLUMNS = 4096


def groups(node: ir.Node) -> int:
    """The node's groups of output channels that read inputs of their own (a Conv's ``group``)."""
    return attribute(node, "group", 1) if node.op_type == "Conv" else 1


def hessian_bytes(node: ir.Node) -> int:
    """Bytes of the node's ``X X^T`` (float64, inputs x inputs of ``y = W x`` per group), from the
    shape of its weight alone (`weight_matrix` of a stand-in that reads nothing)."""
    stand_in = np.broadcast_to(np.float32(0), tuple(node.inputs[1].const_value.shape))
    inputs = weight_matrix(node, stand_in).shape[1]
    return 8 * inputs * inputs * groups(node)


def input_columns(node: ir.Node, x: np.ndarray) -> np.ndarray:
    """The layer's inputs as the columns ``X`` of ``y = W x`` (rows: the weight's flattened input
    dimensions, in ``weight_matrix``'s order): a conv's im2col patches, else the last axis; at
    most about MAX_COLUMNS of them per sample, evenly strided. A grouped conv's are
    ``[groups, inputs of a group, columns]``."""
    x = np.asarray(x, np.float32)  # X X^T in float32 (summed in float64): half the time
    if node.op_type != "Conv":
        columns = x.reshape(-1, x.shape[-1]).T
        return columns[:, :: _steps(columns.shape[1:])[0]]
    kernel = node.inputs[1].const_value.shape[2:]
    spatial = len(kernel)
    strides = list(attribute(node, "strides", [1] * spatial))
    dilations = list(attribute(node, "dilations", [1] * spatial))
    extents = [(k - 1) * d + 1 for k, d in zip(kernel, dilations)]
    pads = _pads(node, x.shape[2:], extents, strides)
    x = np.pad(x, [(0, 0), (0, 0), *zip(pads[:spatial], pads[spatial:])])
    axes = tuple(range(2, 2 + spatial))
    windows = np.lib.stride_tricks.sliding_window_view(x, extents, axis=axes)
    # windows: [N, C, *out_positions, *extents]; keep strides and dilations
    index = (slice(None), slice(None))
    index += tuple(slice(None, None, s) for s in strides)
    index += tuple(slice(None, None, d) for d in dilations)
    windows = windows[index]
    # a grid of positions strided along each spatial axis, before any copy
    steps = _steps(windows.shape[2 : 2 + spatial])
    windows = windows[(slice(None), slice(None), *(slice(None, None, s) for s in steps))]
    n, c = windows.shape[:2]
    positions = windows.shape[2 : 2 + spatial]
    # -> [C, *kernel, N, *positions] -> [groups, C / groups * prod(kernel), N * prod(positions)]
    order = (1, *range(2 + spatial, 2 + 2 * spatial), 0, *range(2, 2 + spatial))
    shape = (c * int(np.prod(kernel)), n * int(np.prod(positions)))
    if groups(node) > 1:
        shape = (groups(node), shape[0] // groups(node), shape[1])
    return windows.transpose(order).reshape(shape)


def _pads(node: ir.Node, dims, extents: list[int], strides: list[int]) -> list[int]:
    """The conv's pads (all begins, then all ends) on an input of spatial `dims`: its `pads`, or
    what `auto_pad` makes of them (onnxscript's formula: SAME_* gives ``ceil(dim / stride)``
    outputs, the odd pad at the end for SAME_UPPER, at the start for SAME_LOWER; VALID none)."""
    attributes = {
        "auto_pad": attribute(node, "auto_pad", "NOTSET"),
        "pads": list(attribute(node, "pads", [0] * 2 * len(dims))),
        "kernel_shape": extents,
        "strides": strides,
    }
    outputs = [-(-dim // stride) for dim, stride in zip(dims, strides)]
    return list(NormalizePadFormatConv.compute_pads(list(dims), outputs, attributes))


def _steps(dims: tuple[int, ...]) -> list[int]:
    """A stride per axis of `dims` leaving at most MAX_COLUMNS positions: the axis with the most
    positions left is strided further until they fit (a [1, 100000] map: its long axis alone)."""
    steps = [1] * len(dims)

    def left(axis: int) -> int:
        return math.ceil(dims[axis] / steps[axis])

    while math.prod(left(axis) for axis in range(len(dims))) > MAX_COLUMNS:
        steps[max(range(len(dims)), key=left)] += 1
    return steps


def weight_matrix(node: ir.Node, weight: np.ndarray) -> np.ndarray:
    """The weight as ``[output channels, inputs]`` (a view of how ``y = W x`` reads it)."""
    if node.op_type == "Conv":
        return weight.reshape(weight.shape[0], -1)
    if node.op_type == "Gemm" and attribute(node, "transB", 0):
        return weight
    return weight.T


def from_matrix(node: ir.Node, matrix: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Inverse of ``weight_matrix``."""
    if node.op_type == "Conv" or (node.op_type == "Gemm" and attribute(node, "transB", 0)):
        return matrix.reshape(shape)
    return matrix.T.reshape(shape)


def gptq_round(
    w: np.ndarray,
    hessian: np.ndarray,
    scale: np.ndarray,
    qmax: int,
    factors: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """Integer weights ``q`` (``|q| <= qmax``) for ``w`` ``[rows, columns]`` with per-row ``scale``,
    chosen column by column with error compensation against ``hessian`` (``X X^T``, columns x
    columns; a grouped conv's ``[groups, columns, columns]``, its rows split evenly among the
    groups); `factors`: `factorize(hessian)`, when made already. Returns int8 of the shape of
    ``w``. BLAS runs one thread: its threads do not pay on a layer's few-thousand-wide
    factorization and column updates, and when other processes load the cores they wait on each
    other (3-10x the time on two loaded cores)."""
    with threadpool_limits(1, user_api="blas"):
        return _gptq_round(w, factors or factorize(hessian), scale, qmax)


def factorize(hessian: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """What every rounding against `hessian` shares, its cost cubic in the columns (nearly all of
    a 9216-wide conv's 37 s rounding): the order columns are rounded in, ``[groups, 1, columns]``
    (decreasing ``H[i, i]``), and `_inverse_cholesky`'s ``U`` in that order (float32)."""
    with threadpool_limits(1, user_api="blas"):
        h = hessian.reshape(-1, *hessian.shape[-2:])
        diag = np.diagonal(h, axis1=1, axis2=2)
        order = np.argsort(-np.where(diag > 0, diag, 1.0), axis=1, kind="stable")[:, None, :]
        return order, _inverse_cholesky(h, order[:, 0])


@dataclasses.dataclass
class RoundingCache:
    """What `cached_rounding` keeps for the roundings of one quantization: int8 weights by the
    Hessian (its id), the weight, its scale and qmax; and each Hessian's `factorize` (float32:
    half the bytes of the float64 Hessian). Both are dropped when the Hessian is (its builder's
    variant not chosen), before its id can be reused."""

    rounded: dict[tuple, np.ndarray] = dataclasses.field(default_factory=dict)
    factors: dict[int, tuple[np.ndarray, np.ndarray]] = dataclasses.field(default_factory=dict)

    def factorized(self, hessian: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`factorize(hessian)`, made once."""
        key = id(hessian)
        if key not in self.factors:
            self.factors[key] = factorize(hessian)
            weakref.finalize(hessian, self._forget, key).atexit = False
        return self.factors[key]

    def _forget(self, key: int) -> None:
        self.factors.pop(key, None)
        for rounded in [k for k in self.rounded if k[0] == key]:
            del self.rounded[rounded]


def cached_rounding(
    hessian: np.ndarray,
    cache: RoundingCache,
    to_matrix: Callable[[np.ndarray], np.ndarray],
    from_matrix: Callable[[np.ndarray, tuple[int, ...]], np.ndarray],
) -> Callable[[np.ndarray, np.ndarray, int], np.ndarray]:
    """`gptq_round` as a rounding ``(w, scale, qmax) -> q`` (see `qdq.quantize_weight`) of a
    weight `to_matrix` reads as ``[outputs, inputs]`` and `from_matrix(q, shape)` reads back; each
    result kept in `cache`, and the Hessian's factorization, for the other weights and scales
    rounded against it (float compute's, not pair-limited; CLE's rescaled ones)."""

    def rounding(w, scale, qmax):
        digest = hashlib.blake2b(w.tobytes(), digest_size=16).digest()
        key = (id(hessian), digest, np.asarray(scale).tobytes(), qmax)
        if key not in cache.rounded:
            factors = cache.factorized(hessian)
            q = gptq_round(to_matrix(w), hessian, scale, qmax, factors)
            cache.rounded[key] = from_matrix(q, w.shape)
        return cache.rounded[key].copy()  # each caller owns its weights

    return rounding


def _gptq_round(
    w: np.ndarray, factors: tuple[np.ndarray, np.ndarray], scale: np.ndarray, qmax: int
) -> np.ndarray:
    """`gptq_round`'s work, on whatever BLAS threads are set: every group at once, arrays
    ``[groups, rows of a group, columns]``."""
    rows, cols = w.shape
    order, hinv = factors
    w = np.take_along_axis(np.asarray(w, np.float64).reshape(len(hinv), -1, cols), order, axis=2)
    s = np.broadcast_to(np.asarray(scale, np.float64).reshape(-1), (rows,)).reshape(w.shape[:2])
    q = np.zeros_like(w)
    for start in range(0, cols, BLOCK):
        end = min(start + BLOCK, cols)
        block = w[:, :, start:end].copy()
        errors = np.zeros_like(block)
        for i in range(end - start):
            col = start + i
            q[:, :, col] = np.clip(np.round(block[:, :, i] / s), -qmax, qmax)
            err = (block[:, :, i] - q[:, :, col] * s) / hinv[:, col, col, None]
            block[:, :, i:] -= err[:, :, None] * hinv[:, None, col, col:end]
            errors[:, :, i] = err
        w[:, :, end:] -= errors @ hinv[:, start:end, end:]
    out = np.empty_like(q)
    np.put_along_axis(out, np.broadcast_to(order, q.shape), q, axis=2)
    return out.reshape(rows, cols).astype(np.int8)


def _inverse_cholesky(hessian: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Upper-triangular ``U`` with ``U^T U = H^-1``, ``H`` the damped ``hessian`` with rows and
    columns in ``order`` (inputs never seen get a diagonal of 1); the damping grows until ``H``
    factorizes. ``U`` is ``L^-1`` of the Cholesky factor ``L`` of ``H`` in reverse order, read
    backwards (no inverse of ``H`` itself: a third of the work), in float32 as GPTQ's own code.
    Batched: ``hessian`` ``[groups, n, n]`` and ``order`` ``[groups, n]`` give ``[groups, n, n]``
    (a 2-D ``hessian`` and 1-D ``order``: one ``U``); a group that does not factorize is damped
    further on its own."""
    if hessian.ndim == 2:
        return _inverse_cholesky(hessian[None], np.asarray(order)[None])[0]
    reverse = order[:, ::-1]
    h = np.take_along_axis(np.asarray(hessian, np.float32), reverse[:, :, None], axis=1)
    h = np.take_along_axis(h, reverse[:, None, :], axis=2)
    diagonal = np.diagonal(h, axis1=1, axis2=2)  # a view: written through `index`
    index = (slice(None), *np.diag_indices(h.shape[1]))
    h[index] = np.where(diagonal > 0, diagonal, 1.0)
    h[index] += DAMP * np.mean(diagonal, axis=1, keepdims=True)
    extra, step = 0.0, 1e-6 * np.mean(diagonal, axis=1, keepdims=True)
    for _ in range(8):
        try:  # factorizes exactly when H is positive definite
            return np.ascontiguousarray(_lower_inverse(np.linalg.cholesky(h))[:, ::-1, ::-1])
        except np.linalg.LinAlgError:
            if len(h) > 1:  # each group damped only as far as it needs
                groups = range(len(h))
                return np.concatenate(
                    [_inverse_cholesky(hessian[g, None], order[g, None]) for g in groups]
                )
            more = np.maximum(extra * 10.0, step)
            h[index] += more - extra  # the damping grows tenfold
            extra = more
    raise np.linalg.LinAlgError("the layer's input Hessian is not positive definite")


def _lower_inverse(lower: np.ndarray) -> np.ndarray:
    """The inverse of lower-triangular matrices (the last two axes), by halves (matrix products,
    no LU): ``[[A, 0], [B, C]]^-1 = [[A^-1, 0], [-C^-1 B A^-1, C^-1]]``."""
    n = lower.shape[-1]
    if n <= 256:
        return np.linalg.inv(lower)
    half = n // 2
    a = _lower_inverse(lower[..., :half, :half])
    c = _lower_inverse(lower[..., half:, half:])
    out = np.zeros_like(lower)
    out[..., :half, :half], out[..., half:, half:] = a, c
    out[..., half:, :half] = -(c @ (lower[..., half:, :half] @ a))
    return out
