"""Helpers shared by the rule modules: constants, opsets, shapes, attribute-or-input parameters."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir

from onnxslim.model.graph import default_opset
from onnxslim.passes.upstream import get_numpy_value

INT64_MAX = 2**63 - 1
FLOAT_TYPES = frozenset(
    {ir.DataType.FLOAT, ir.DataType.FLOAT16, ir.DataType.DOUBLE, ir.DataType.BFLOAT16}
)


def constant(value: ir.Value | None) -> np.ndarray | None:
    """The value's data if it is a true constant; None otherwise (graph inputs can be overridden, so
    they are not)."""
    if value is None or value.is_graph_input():
        return None
    return get_numpy_value(value)


def opset(context) -> int:
    """The default-domain opset in force where the match was found."""
    version = default_opset(context.graph_or_function.opset_imports)
    return version if version is not None else default_opset(context.model.opset_imports) or 0


def new_initializer(op, array: np.ndarray, near: ir.Value, suffix: str) -> ir.Value:
    """An initializer for `array` named after `near`, unique in `near`'s graph."""
    graph = near.graph
    taken = graph.initializers if graph is not None else {}
    name, n = f"{near.name}_{suffix}", 1
    while name in taken:
        name, n = f"{near.name}_{suffix}{n}", n + 1
    return op.initializer(ir.Tensor(np.asarray(array)), name=name)


def static_dims(value: ir.Value) -> tuple[int | None, ...] | None:
    """The value's dims with None for each unknown one, or None if its rank is unknown."""
    if value.shape is None:
        return None
    return tuple(d if isinstance(d, int) else None for d in value.shape.dims)


def keeps_shape(value: ir.Value, other_shape: tuple[int, ...]) -> bool:
    """Broadcasting `value` against a tensor of `other_shape` provably keeps value's shape."""
    if all(o == 1 for o in other_shape):  # ones keep any shape of as many axes or more
        return value.shape is not None and len(other_shape) <= len(value.shape)
    dims = static_dims(value)
    if dims is None or len(other_shape) > len(dims):
        return False
    trailing = dims[len(dims) - len(other_shape) :]
    return all(o == 1 or o == d for o, d in zip(other_shape, trailing))


def normalize_axes(axes, rank: int | None) -> tuple[int, ...] | None:
    """Axes (a scalar or a list) made non-negative; None if a negative axis meets an unknown
    rank, or out of range."""
    result = []
    for axis in (int(a) for a in np.ravel(axes)):
        if axis < 0:
            if rank is None:
                return None
            axis += rank
        if axis < 0 or (rank is not None and axis >= rank):
            return None
        result.append(axis)
    return tuple(result)


def parameter(
    node: ir.Node, name: str, index: int, default: np.ndarray | None = None
) -> np.ndarray | None:
    """An int parameter given as attribute (older opsets) or as input `index` (newer).

    `default` when it is given neither way; None when the input is not a constant, or the
    attribute a reference to a function's attribute (its caller gives the value).
    """
    attr = node.attributes.get(name)
    if attr is not None:
        return None if attr.is_ref() else np.array(attr.as_ints(), dtype=np.int64)
    if len(node.inputs) > index and node.inputs[index] is not None:
        return constant(node.inputs[index])
    return default


def slice_params(node: ir.Node) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """(starts, ends, axes, steps) of a Slice as int64, defaults filled in; None if any of
    them is not constant."""
    starts, ends = parameter(node, "starts", 1), parameter(node, "ends", 2)
    if starts is None or ends is None or starts.shape != ends.shape:
        return None
    axes = parameter(node, "axes", 3, default=np.arange(starts.size))
    steps = parameter(node, "steps", 4, default=np.ones(starts.size))
    if axes is None or steps is None:
        return None
    return tuple(p.astype(np.int64) for p in (starts, ends, axes, steps))
