"""Constant folding with a size guard, on top of onnxscript's folder (which also inlines constant-condition If)."""

from __future__ import annotations

import math

import numpy as np
import onnx_ir as ir
import onnx_ir.passes.common as common
from onnxscript.optimizer import _constant_folding

#: Ops never folded: they carry quantization information.
NEVER_FOLD = frozenset({"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"})


class FoldConstants(ir.passes.InPlacePass):
    """Lift Constant nodes to initializers, then evaluate every node whose inputs are all constant.

    A folded tensor is kept only if it is at most `size_threshold` bytes larger than the
    single-use constants it replaces, so folding never blows the model up.
    """

    def __init__(self, size_threshold: int) -> None:
        super().__init__()
        self.size_threshold = size_threshold

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        lifted = common.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0)(model).modified
        folder = _GuardedFolder(self.size_threshold)
        folded = folder(model).modified
        return ir.passes.PassResult(model, lifted or folded)


class _GuardedFolder(_constant_folding.FoldConstantsPass):
    """onnxscript's folder with onnxslim's size guard in place of its element-count limits."""

    def __init__(self, size_threshold: int) -> None:
        super().__init__(
            shape_inference=True,
            input_size_limit=2**62,
            output_size_limit=2**62,
            should_fold=self._should_fold,
        )
        self.size_threshold = size_threshold

    def _should_fold(self, node: ir.Node) -> bool:
        if node.domain in ("", "ai.onnx") and node.op_type in NEVER_FOLD:
            return False
        estimate = _OUTPUT_BYTES.get(node.op_type)
        return estimate is None or estimate(node) <= self.size_threshold + _input_bytes(node)

    def _prepare_folded_tensor(self, node, output_name, output_array):
        tensor = super()._prepare_folded_tensor(node, output_name, output_array)
        if tensor is None or tensor.nbytes - _input_bytes(node) > self.size_threshold:
            return None
        return tensor


def _input_bytes(node: ir.Node) -> int:
    """Bytes of the constant inputs that folding `node` frees (those used by it alone)."""
    return sum(
        value.const_value.nbytes
        for value in node.inputs
        if value is not None and value.const_value is not None and len(value.uses()) == 1
    )


def _array(value: ir.Value | None) -> np.ndarray | None:
    if value is None or value.const_value is None:
        return None
    return value.const_value.numpy()


def _constant_of_shape_bytes(node: ir.Node) -> float:
    shape = _array(node.inputs[0])
    if shape is None:
        return math.inf
    attr = node.attributes.get("value")
    itemsize = attr.as_tensor().dtype.itemsize if attr is not None else 4
    return float(np.prod(shape, dtype=np.float64)) * itemsize


def _expand_bytes(node: ir.Node) -> float:
    data, shape = _array(node.inputs[0]), _array(node.inputs[1])
    if data is None or shape is None:
        return math.inf
    try:
        out = np.broadcast_shapes(data.shape, tuple(int(d) for d in shape))
    except ValueError:
        return math.inf
    return float(np.prod(out, dtype=np.float64)) * data.itemsize


def _tile_bytes(node: ir.Node) -> float:
    data, repeats = _array(node.inputs[0]), _array(node.inputs[1])
    if data is None or repeats is None:
        return math.inf
    return float(data.nbytes) * float(np.prod(repeats, dtype=np.float64))


def _range_bytes(node: ir.Node) -> float:
    start, limit, delta = (_array(v) for v in node.inputs[:3])
    if start is None or limit is None or delta is None or float(delta) == 0:
        return math.inf
    count = max(math.ceil((float(limit) - float(start)) / float(delta)), 0)
    return float(count) * start.itemsize


#: Ops whose output can be far larger than their inputs: estimated before evaluation to bound memory.
_OUTPUT_BYTES = {
    "ConstantOfShape": _constant_of_shape_bytes,
    "Expand": _expand_bytes,
    "Tile": _tile_bytes,
    "Range": _range_bytes,
}
