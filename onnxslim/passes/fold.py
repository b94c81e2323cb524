"""Constant folding with a size guard, on top of onnxscript's folder (which also inlines
constant-condition If)."""

from __future__ import annotations

import logging
import math

import numpy as np
import onnx
import onnx_ir as ir
import onnx_ir.passes.common as common

from onnxslim.passes import upstream
from onnxslim.passes.rules.common import constant, slice_params

logger = logging.getLogger(__name__)

#: Ops never folded: they carry quantization information, or they are random.
NEVER_FOLD = frozenset(
    {
        "QuantizeLinear",
        "DequantizeLinear",
        "DynamicQuantizeLinear",
        "RandomNormal",
        "RandomNormalLike",
        "RandomUniform",
        "RandomUniformLike",
        "Multinomial",
        "Bernoulli",
    }
)


class FoldConstants(ir.passes.InPlacePass):
    """Lift Constant nodes to initializers, then evaluate every node whose inputs are all constant.

    A folded tensor is kept only if it is at most `size_threshold` bytes larger than the
    single-use constants it replaces, so folding never blows the model up.
    """

    def __init__(self, size_threshold: int) -> None:
        super().__init__()
        self.size_threshold = size_threshold

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        lifted = common.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0)(
            model
        ).modified
        folder = _GuardedFolder(self.size_threshold)
        folded = folder(model).modified
        return ir.passes.PassResult(model, lifted or folded)


class _GuardedFolder(upstream.FoldConstantsPass):
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
        if node.domain not in ("", "ai.onnx"):
            return False  # custom domains are left untouched
        if node.op_type in NEVER_FOLD:
            return False
        # Estimate the result before evaluating it, so a huge tensor is never even computed.
        estimate = _OUTPUT_BYTES.get(node.op_type, _static_output_bytes)
        return estimate(node) <= self.size_threshold + _input_bytes(node)

    def process_node(self, node: ir.Node, is_function: bool):
        try:
            replacement = super().process_node(node, is_function)
        except RuntimeError as err:  # one of onnxscript's evaluators failed: leave the node as is
            logger.debug("not folding %s node %r: %s", node.op_type, node.name, err.__cause__)
            return None
        if replacement is None and node.op_type in ("Slice", "Gather"):
            replacement = self._fold_shape_piece(node, is_function)
        if replacement is None:
            return None
        _keep_saturate(node, replacement.new_nodes)
        opsets = self._opset_imports
        if not all(_fits_opset(new, opsets, is_function) for new in replacement.new_nodes):
            return None
        return replacement

    def _fold_shape_piece(self, node: ir.Node, is_function: bool):
        """Slice/Gather of a partly known shape (e.g. `[N, 3, 4, 4]`) picking only static dims."""
        if node.domain not in ("", "ai.onnx") or len(node.outputs) != 1 or node.outputs[0] is None:
            return None
        dims = self._state.get_shape_value(node.inputs[0]) if node.inputs else None
        if dims is None:
            return None
        dims = list(dims)
        picked = _pick_dims(node, dims)
        if picked is None:
            return None
        values, scalar = picked
        if not scalar:
            self._state.set_sym_value(node.outputs[0], ir.Shape(values))
        if not all(isinstance(d, int) for d in values):
            return None
        array = np.array(values[0] if scalar else values, dtype=np.int64)
        if is_function:
            new = self.new_constant(node, array)
            return None if new is None else upstream.Replacement(new.outputs, [new])
        value = self.new_initializer(node, array)
        if value is None:
            return None
        node.graph.register_initializer(value)
        return upstream.Replacement([value], [])

    def _prepare_folded_tensor(self, node, output_name, output_array):
        tensor = super()._prepare_folded_tensor(node, output_name, output_array)
        if tensor is None or tensor.nbytes - _input_bytes(node) > self.size_threshold:
            return None
        return tensor


def _keep_saturate(node: ir.Node, new_nodes) -> None:
    """CastLike(x, like, saturate=0) -> Cast(x, to=like's type) keeps `saturate` (onnxscript's
    evaluator drops it, and the default 1 clamps what saturate=0 turns into NaN or inf)."""
    saturate = node.attributes.get("saturate")
    if node.op_type != "CastLike" or saturate is None:
        return
    for new in new_nodes:
        if new.op_type == "Cast" and new.domain in ("", "ai.onnx"):
            new.attributes["saturate"] = ir.AttrInt64("saturate", saturate.as_int())


def _fits_opset(new: ir.Node, opsets: dict[str, int], is_function: bool) -> bool:
    """Whether a node an evaluator emits exists in the model's opset with these inputs and
    attributes: onnxscript writes the newest form (Unsqueeze/Split with an axes/split input,
    opset 13), which an older model cannot hold. A Constant in a graph becomes an initializer."""
    if new.domain not in ("", "ai.onnx") or (new.op_type == "Constant" and not is_function):
        return True
    version = opsets.get("", opsets.get("ai.onnx"))
    if version is None:
        return False
    try:
        schema = onnx.defs.get_schema(new.op_type, version, "")
    except onnx.defs.SchemaError:
        return False
    inputs = list(new.inputs)
    while inputs and inputs[-1] is None:
        inputs.pop()
    if not schema.min_input <= len(inputs) <= schema.max_input:
        return False
    return all(name in schema.attributes for name in new.attributes)


def _pick_dims(node: ir.Node, dims: list) -> tuple[list, bool] | None:
    """Dims a Slice (constant starts/ends/axes/steps) or Gather (axis 0, constant indices) picks."""
    if node.op_type == "Gather":
        indices = constant(node.inputs[1]) if len(node.inputs) > 1 else None
        if node.attributes.get_int("axis", 0) != 0 or indices is None or indices.ndim > 1:
            return None
        if not np.issubdtype(indices.dtype, np.integer) or any(
            not -len(dims) <= i < len(dims) for i in indices.reshape(-1)
        ):
            return None
        return [dims[int(i)] for i in indices.reshape(-1)], indices.ndim == 0
    params = slice_params(node)
    if params is None or any(p.size != 1 for p in params):
        return None
    start, end, axis, step = (int(p[0]) for p in params)
    if axis not in (0, -1) or step == 0:
        return None
    return dims[slice(start, end, step)], False


def _static_output_bytes(node: ir.Node) -> float:
    """Bytes of the node's outputs when shape inference knows them; 0 when it does not."""
    total = 0.0
    for value in node.outputs:
        if value is None or value.shape is None or value.dtype is None:
            continue
        if not all(isinstance(d, int) for d in value.shape):
            continue
        try:
            itemsize = value.dtype.itemsize
        except TypeError:  # no fixed size (STRING, UNDEFINED)
            itemsize = 8
        total += float(np.prod(list(value.shape), dtype=np.float64)) * itemsize
    return total


def _input_bytes(node: ir.Node) -> int:
    """Bytes of the constant inputs that folding `node` frees (those used by it alone)."""
    return sum(
        value.const_value.nbytes
        for value in node.inputs
        if value is not None and value.const_value is not None and len(value.uses()) == 1
    )


def _constant_of_shape_bytes(node: ir.Node) -> float:
    shape = constant(node.inputs[0])
    if shape is None:
        return math.inf
    attr = node.attributes.get("value")
    itemsize = attr.as_tensor().dtype.itemsize if attr is not None else 4
    return float(np.prod(shape, dtype=np.float64)) * itemsize


def _expand_bytes(node: ir.Node) -> float:
    data, shape = constant(node.inputs[0]), constant(node.inputs[1])
    if data is None or shape is None:
        return math.inf
    try:
        out = np.broadcast_shapes(data.shape, tuple(int(d) for d in shape.reshape(-1)))
    except (ValueError, TypeError):
        return math.inf
    return float(np.prod(out, dtype=np.float64)) * data.itemsize


def _tile_bytes(node: ir.Node) -> float:
    data, repeats = constant(node.inputs[0]), constant(node.inputs[1])
    if data is None or repeats is None:
        return math.inf
    return float(data.nbytes) * float(np.prod(repeats, dtype=np.float64))


def _range_bytes(node: ir.Node) -> float:
    start, limit, delta = (constant(v) for v in node.inputs[:3])
    if any(v is None or v.size != 1 for v in (start, limit, delta)):
        return math.inf  # not constant, or not one value (ORT also takes shape [1])
    start_, limit_, delta_ = (float(v.reshape(-1)[0]) for v in (start, limit, delta))
    if delta_ == 0 or not math.isfinite((limit_ - start_) / delta_):
        return math.inf
    count = max(math.ceil((limit_ - start_) / delta_), 0)
    return float(count) * start.itemsize


#: Ops whose output can be far larger than their inputs: estimated before evaluating, to bound
#: memory use.
_OUTPUT_BYTES = {
    "ConstantOfShape": _constant_of_shape_bytes,
    "Expand": _expand_bytes,
    "Tile": _tile_bytes,
    "Range": _range_bytes,
}
