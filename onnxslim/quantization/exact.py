"""INT8 models checked as their target CPU computes them, on a CPU whose kernels would not.

ORT's u8s8 kernels on x86 without VNNI add each pair of neighbouring u8 x s8 products in int16,
which full 8-bit weights (the `vnni` and `arm` profiles) saturate. A CPU with VNNI (or ARM's dot
products) sums them in int32: the model's own math. When the target is such a CPU and this one is
not, `exact_math` makes every run of the quantizer compute that math here: ORT's graph
optimizations off (QDQ nodes in float, no fused integer kernel; the float model it is compared
with unfused alike) and each MatMulInteger in double (`exact_integer_math`), so the choices and
the drift reported are the target's.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator

import onnx
import onnx_ir as ir

from onnxslim.model import io
from onnxslim.model.graph import (
    fresh_name,
    op_types,
    proto_graphs,
    proto_names,
    replace_proto_nodes,
)

_EXACT = contextvars.ContextVar("onnxslim_exact_int8_math", default=False)


@contextlib.contextmanager
def exact_math(on: bool = True) -> Iterator[None]:
    """Within (when `on`): models run by `builder.run_samples` compute their exact math."""
    token = _EXACT.set(on)
    try:
        yield
    finally:
        _EXACT.reset(token)


def enabled() -> bool:
    """Whether runs compute the exact math now (within `exact_math`)."""
    return _EXACT.get()


def exact_integer_math(model: str | os.PathLike | bytes | onnx.ModelProto | ir.Model):
    """`model` as it is when it has no MatMulInteger (a float model, say), else a ModelProto copy
    with each replaced by its exact sums:
    Y = Cast<int32>(MatMul(Cast<double>(A) - a_zero_point, Cast<double>(B) - b_zero_point)).
    Doubles hold every sum of up to 2^37 products of two 8-bit values exactly."""
    if isinstance(model, ir.Model):
        if "MatMulInteger" not in op_types(model.graph):
            return model
        proto = io.to_proto(model)
    elif isinstance(model, bytes):
        proto = onnx.ModelProto.FromString(model)
    elif isinstance(model, onnx.ModelProto):
        proto = model
    else:
        proto = onnx.load(os.fspath(model))
    graphs = list(proto_graphs(proto.graph))
    if not any(node.op_type == "MatMulInteger" for graph in graphs for node in graph.node):
        return model
    if proto is model:  # the caller's: work on a copy
        proto = onnx.ModelProto()
        proto.CopyFrom(model)
        graphs = list(proto_graphs(proto.graph))
    taken = proto_names(graphs)
    for graph in graphs:
        replace_proto_nodes(
            graph,
            lambda node: _exact_matmul(node, taken) if node.op_type == "MatMulInteger" else None,
        )
    return proto


def _exact_matmul(node: onnx.NodeProto, taken: set[str]) -> list[onnx.NodeProto]:
    make, out = onnx.helper.make_node, node.output[0]
    double = onnx.TensorProto.DOUBLE
    inputs = [*node.input, "", ""]
    nodes, operands = [], []
    for i, (x, zero_point) in enumerate(zip(inputs[:2], inputs[2:4])):
        operand = fresh_name(taken, f"{out}/exact{i}")
        nodes.append(make("Cast", [x], [operand], to=double))
        if zero_point:
            point = fresh_name(taken, f"{out}/zp{i}")
            centred = fresh_name(taken, f"{out}/centred{i}")
            nodes.append(make("Cast", [zero_point], [point], to=double))
            nodes.append(make("Sub", [operand, point], [centred]))
            operand = centred
        operands.append(operand)
    product = fresh_name(taken, f"{out}/exact")
    nodes.append(make("MatMul", operands, [product]))
    nodes.append(make("Cast", [product], [out], to=onnx.TensorProto.INT32))
    return nodes
