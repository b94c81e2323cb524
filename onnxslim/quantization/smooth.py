"""SmoothQuant-style balancing (Xiao et al., "SmoothQuant", 2023) of MatMuls that read an activation
with a constant weight, for transformers.

``X @ W == (X * (1 / s)) @ (s[:, None] * W)`` (up to float32 rounding) for any positive
per-channel ``s`` over the reduction axis ``k``. Activations of trained transformers have a few
channels far larger than the rest, and one int8 scale per tensor (what DynamicQuantizeLinear and
per-tensor QDQ give them) spends its levels on those; a weight row scaled up is rounded per output
channel, where it costs less. With ``s_k = max|X_k| ** alpha / max|W_k| ** (1 - alpha)``
(``max|W_k|`` over every MatMul reading ``X``) the activation's channels move toward one
magnitude, by ``alpha`` of the way in log scale. The division happens in a float Mul inserted
after ``X`` (its other readers, a residual Add say, keep ``X``); the MatMuls read the Mul's
output and get scaled weights.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

import numpy as np
import onnx
import onnx_ir as ir

from onnxslim.model import io
from onnxslim.model.graph import fresh_name, value_names
from onnxslim.quantization.calibration import collect_channel_absmax

#: How far the activation channels move toward one magnitude (0: none, 1: all of it onto the
#: weights). Chosen on minilm_l3's selection split (the test split's figures are in
#: benchmarks/int8_results.md), dynamic INT8: output SNR 22.2 dB without, 20.6 at 0.5, 24.5 at
#: 0.6, 28.1 at 0.7, 29.5 at 0.8, 28.1 at 0.9.
ALPHA = 0.8
#: Channels that never move (zero in every sample) keep their scale; the others stay within
#: this factor of 1 either way.
MAX_FACTOR = 1e3
_TINY = 1e-8


def _weight(node: ir.Node) -> np.ndarray | None:
    """The constant 2-D float weight ``node`` (a MatMul) multiplies its activation with; not one
    a caller can feed (a graph input with a default)."""
    if node.op_type != "MatMul" or node.domain != "" or len(node.inputs) != 2:
        return None
    x, w = node.inputs
    if x is None or w is None or x.const_value is not None or w.const_value is None:
        return None
    if w.is_graph_input() or w.dtype != ir.DataType.FLOAT:  # float W: X is float too
        return None
    array = w.const_value.numpy()
    return array if array.ndim == 2 else None


def find_groups(
    graph: ir.Graph, exclude: Collection[str] = ()
) -> dict[ir.Value, dict[ir.Node, np.ndarray]]:
    """Activation -> {MatMul: its weight} for the MatMuls of the main graph (not in `exclude`)
    that read it with a constant 2-D weight no other node reads: a weight shared with another
    group would need a copy per group."""
    groups: dict[ir.Value, dict[ir.Node, np.ndarray]] = {}
    for node in graph:
        weight = _weight(node) if node.name not in exclude else None
        if weight is not None:
            groups.setdefault(node.inputs[0], {})[node] = weight
    return {
        x: matmuls
        for x, matmuls in groups.items()
        if all(use.node in matmuls for node in matmuls for use in node.inputs[1].uses())
    }


def smoothing_scales(peaks: np.ndarray, weights: Sequence[np.ndarray], alpha: float) -> np.ndarray:
    """``s_k = max|X_k| ** alpha / max|W_k| ** (1 - alpha)`` (see module doc), 1 where either side
    is zero, within [1 / MAX_FACTOR, MAX_FACTOR]."""
    w_peaks = np.max([np.abs(w).max(axis=1) for w in weights], axis=0).astype(np.float64)
    live = (peaks > _TINY) & (w_peaks > _TINY)
    scales = np.ones_like(w_peaks)
    scales[live] = peaks[live] ** alpha / w_peaks[live] ** (1 - alpha)
    return np.clip(scales, 1 / MAX_FACTOR, MAX_FACTOR)


def apply_smoothing(
    model: ir.Model,
    peaks: Mapping[str, np.ndarray],
    alpha: float = ALPHA,
    exclude: Collection[str] = (),
) -> list[str]:
    """Balance each group of `find_groups` whose activation's per-channel peaks are in `peaks`
    (see module doc); the names of the Mul nodes inserted."""
    taken = value_names(model) | {n.name for n in model.graph if n.name}
    inserted = []
    for x, matmuls in find_groups(model.graph, exclude).items():
        if x.name not in peaks:
            continue
        scales = smoothing_scales(peaks[x.name], list(matmuls.values()), alpha)
        inverse = ir.Value(
            name=fresh_name(taken, f"{x.name}_smooth_inverse"),
            const_value=ir.tensor((1 / scales).astype(np.float32)),
        )
        model.graph.register_initializer(inverse)
        mul = ir.node("Mul", [x, inverse], name=fresh_name(taken, f"{x.name}_smooth"))
        balanced = mul.outputs[0]
        balanced.name = fresh_name(taken, f"{x.name}_smoothed")
        balanced.type, balanced.shape = x.type, x.shape
        model.graph.insert_before(next(iter(matmuls)), mul)  # the first reader in graph order
        for node, weight in matmuls.items():
            original = node.inputs[1]
            scaled = ir.Value(
                name=fresh_name(taken, f"{original.name}_smoothed"),
                const_value=ir.tensor((weight * scales[:, None]).astype(np.float32)),
            )
            model.graph.register_initializer(scaled)
            node.replace_input_with(0, balanced)
            node.replace_input_with(1, scaled)
            if not original.uses() and not original.is_graph_output():
                model.graph.initializers.pop(original.name, None)
        inserted.append(mul.name)
    return inserted


def smoothed(
    model: onnx.ModelProto,
    samples: Sequence,
    alpha: float = ALPHA,
    exclude: Collection[str] = (),
    progress: bool = False,
) -> tuple[onnx.ModelProto, list[str]]:
    """A balanced copy of `model` (MatMuls named in `exclude` left alone), its activations' peaks
    taken over `samples`, and the names of the Mul nodes inserted (none: `model` itself)."""
    balanced = io.from_proto(model)
    names = [x.name for x in find_groups(balanced.graph, exclude)]
    if not names:
        return model, []
    peaks = collect_channel_absmax(model, samples, names, progress=progress, total=len(samples))
    muls = apply_smoothing(balanced, peaks, alpha, exclude)
    return io.to_proto(balanced), muls
