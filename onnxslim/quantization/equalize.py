"""Cross-layer equalization (Nagel et al., "Data-Free Quantization", 2019).

For ``Conv1 -> [Relu | LeakyRelu] -> Conv2`` (nothing else reading the intermediate tensors),
scaling output channel ``i`` of Conv1 (weights and bias) by ``1 / s_i`` and input channel ``i`` of
Conv2 by ``s_i`` leaves the output unchanged, because the activation between is positive-homogeneous
(``f(x / s) = f(x) / s`` for ``s > 0``). With ``s_i = sqrt(r1_i / r2_i)`` (``r1_i`` the range of
Conv1's row ``i``, ``r2_i`` that of Conv2's column ``i``) both ranges become ``sqrt(r1_i * r2_i)``:
the intermediate activation's channels and Conv2's input columns, which share one int8 scale, get
closer ranges. Chains of pairs are iterated.
"""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxslim.quantization.ops import attribute

HOMOGENEOUS = frozenset({"Relu", "LeakyRelu"})
ROUNDS = 8
MIN_RELATIVE_RANGE = 1e-8  # channels (nearly) zero in either conv keep their scale


def _const(node: ir.Node, index: int) -> np.ndarray | None:
    """The float constant input ``index`` read only by ``node``, or None."""
    value = node.inputs[index] if len(node.inputs) > index else None
    if value is None or value.const_value is None or value.dtype != ir.DataType.FLOAT:
        return None
    if len(list(value.uses())) != 1 or value.is_graph_output():
        return None
    return value.const_value.numpy()


def _sole_reader(value: ir.Value) -> ir.Node | None:
    """The one node reading ``value``, as its first input."""
    uses = list(value.uses())
    if len(uses) != 1 or uses[0].idx != 0 or value.is_graph_output():
        return None
    return uses[0].node


def find_pairs(graph: ir.Graph) -> list[tuple[ir.Node, ir.Node]]:
    """``(conv1, conv2)`` pairs that can be equalized without changing the output."""
    pairs = []
    for conv1 in graph:
        if conv1.op_type != "Conv" or conv1.domain != "" or _const(conv1, 1) is None:
            continue
        if len(conv1.inputs) > 2 and conv1.inputs[2] is not None and _const(conv1, 2) is None:
            continue
        reader = _sole_reader(conv1.outputs[0])
        if reader is not None and reader.op_type in HOMOGENEOUS and reader.domain == "":
            reader = _sole_reader(reader.outputs[0])
        if (
            reader is not None
            and reader.op_type == "Conv"
            and reader.domain == ""
            and _const(reader, 1) is not None
        ):
            pairs.append((conv1, reader))
    return pairs


def _column_view(w2: np.ndarray, groups: int) -> np.ndarray:
    """Conv2's weight as ``[groups, out per group, in per group, taps]``: input channel ``i`` is
    ``[i // in_per_group, :, i % in_per_group]``."""
    c_out, c_in_g = w2.shape[:2]
    return w2.reshape(groups, c_out // groups, c_in_g, -1)


def equalize_pair(conv1: ir.Node, conv2: ir.Node) -> np.ndarray | None:
    """Rescale one pair in place; returns the scales ``s`` applied (None: shapes do not pair)."""
    w1, w2 = _const(conv1, 1), _const(conv2, 1)
    groups = attribute(conv2, "group", 1)
    cols = _column_view(w2, groups)
    channels = w1.shape[0]
    if cols.shape[0] * cols.shape[2] != channels:
        return None
    r1 = np.abs(w1.reshape(channels, -1)).max(axis=1).astype(np.float64)
    r2 = np.abs(cols).max(axis=(1, 3)).reshape(channels).astype(np.float64)
    usable = (r1 > MIN_RELATIVE_RANGE * r1.max()) & (r2 > MIN_RELATIVE_RANGE * r2.max())
    s = np.where(usable, np.sqrt(np.divide(r1, r2, out=np.ones_like(r1), where=usable)), 1.0)
    _replace(conv1, 1, w1 / s.reshape(-1, *[1] * (w1.ndim - 1)))
    if _const(conv1, 2) is not None:
        _replace(conv1, 2, _const(conv1, 2) / s)
    scaled = cols * s.reshape(groups, 1, -1, 1)
    _replace(conv2, 1, scaled.reshape(w2.shape))
    return s


def _replace(node: ir.Node, index: int, array: np.ndarray) -> None:
    node.inputs[index].const_value = ir.tensor(
        array.astype(np.float32), name=node.inputs[index].name
    )


class EqualizePass(ir.passes.InPlacePass):
    """Cross-layer equalization of every eligible Conv pair in the main graph (see module doc).
    `input_scales` (after the pass): per second conv of a pair, the ``s`` of all rounds together:
    its input channels are the original's divided by ``s``, its weight's input channels
    multiplied by it."""

    def __init__(self):
        super().__init__()
        self.input_scales: dict[str, np.ndarray] = {}

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        self.input_scales = {}
        pairs = find_pairs(model.graph)
        for _ in range(ROUNDS):
            largest = 0.0
            for conv1, conv2 in pairs:
                s = equalize_pair(conv1, conv2)
                if s is not None:
                    self.input_scales[conv2.name] = self.input_scales.get(conv2.name, 1.0) * s
                    largest = max(largest, float(np.abs(np.log(s)).max()))
            if largest < 1e-3:
                break
        return ir.passes.PassResult(model, modified=bool(pairs))
