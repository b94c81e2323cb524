"""External data: weights in files beside the model, memory-mapped; what they cost in memory."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import onnx
import onnx_ir as ir

from onnxslim.model.files import same_file
from onnxslim.model.graph import all_graphs
from onnxslim.model.stats import external_tensors, tensor_bytes


def weight_bytes(model: ir.Model) -> int:
    """Total bytes of initializers in the main graph and its subgraphs."""
    return sum(
        tensor_bytes(value.const_value)
        for graph in all_graphs(model)
        for value in graph.initializers.values()
        if value.const_value is not None
    )


def has_external_data(model: ir.Model) -> bool:
    """True when some initializer still lives in an external file."""
    return any(True for _ in external_tensors(model))


class UnmapBehind:
    """An `ir.save` callback (called before each tensor is written): unmaps the tensor written last.

    Copying mapped weights into the new file would otherwise leave every page of them resident.
    """

    def __init__(self) -> None:
        self.previous = None

    def __call__(self, tensor, _info) -> None:
        if isinstance(self.previous, ir.ExternalTensor):
            self.previous.release()
        self.previous = tensor


def release_external_data(model: ir.Model) -> None:
    """Unmap external weight files; the tensors map them again when next read.

    Pages of a mapped file count in the resident set: dropping them before ONNX Runtime loads its
    own copy of the weights keeps the peak near one copy of the weights instead of two.
    """
    for graph in all_graphs(model):
        for value in graph.initializers.values():
            if isinstance(value.const_value, ir.ExternalTensor):
                value.const_value.release()


def read_into_memory(model: ir.Model, file: Path) -> None:
    """Tensors stored in `file`, which a save is about to replace, are read into memory first.

    Only saving over the model's own data file needs this; the model stays usable after the save.
    """
    for graph in all_graphs(model):
        for value in graph.initializers.values():
            tensor = value.const_value
            if isinstance(tensor, ir.ExternalTensor) and same_file(tensor.path, file):
                value.const_value = ir.Tensor(tensor.numpy().copy(), name=tensor.name)
                tensor.release()


@contextlib.contextmanager
def inlined_external_tensors(
    model: ir.Model, enabled: bool = True, only: Callable[[ir.Graph, ir.Value], bool] | None = None
) -> Iterator[None]:
    """Serialize external tensors inline (their relative locations mean nothing beside a new file).

    `only(graph, value)` picks which ones. The tensors are swapped back afterwards, so the model
    still maps its original files.
    """
    swapped = [
        (value, value.const_value)
        for graph in all_graphs(model)
        for value in graph.initializers.values()
        if enabled
        and isinstance(value.const_value, ir.ExternalTensor)
        and (only is None or only(graph, value))
    ]
    try:
        for value, tensor in swapped:
            value.const_value = ir.Tensor(tensor.numpy(), name=tensor.name, dtype=tensor.dtype)
        yield
    finally:
        for value, tensor in swapped:
            value.const_value = tensor


#: Main-graph initializers up to this size stay in the proto handed to onnx's C API.
_C_API_KEEPS = 1000
_R = TypeVar("_R")


def onnx_c_api_view(model: ir.Model):
    """Make the proto `call_onnx_api` hands to onnx's checker/shape inference hold no external
    tensor.

    It leaves out main-graph initializers over 1 KB (so a huge model never becomes a huge proto),
    but the small ones and those of subgraphs stay, external references included, which the
    checker then resolves against the working directory. Those few are read in for the call.
    """
    return inlined_external_tensors(
        model,
        only=lambda graph, value: (
            graph is not model.graph or value.const_value.nbytes <= _C_API_KEEPS
        ),
    )


def call_onnx_api(func: Callable[[onnx.ModelProto], _R], model: ir.Model) -> _R:
    """`func` (onnx's checker, shape inference) on a proto of `model` without its large weights.

    Main-graph initializers over `_C_API_KEEPS` bytes become graph inputs without values (as in
    onnx-ir's `call_onnx_api`, which looks each initializer up in the growing input list: seconds
    at 20k initializers); small external tensors are read in (`onnx_c_api_view`). The model is left
    exactly as it was, initializer order included.
    """
    graph = model.graph
    with onnx_c_api_view(model):
        initializers = tuple(graph.initializers.values())
        tensors = [value.const_value for value in initializers]
        inputs_before = len(graph.inputs)
        listed = set(graph.inputs)
        try:
            for value in initializers:
                tensor = value.const_value
                if tensor is not None:
                    if value.shape is None:
                        value.shape = tensor.shape
                    if value.dtype is None:
                        value.dtype = tensor.dtype
                if value not in listed:
                    graph.inputs.append(value)
                    listed.add(value)
                if tensor is None or tensor.nbytes > _C_API_KEEPS:
                    graph.initializers.pop(value.name)
                    value.const_value = None
            return func(ir.serde.serialize_model(model))
        finally:
            for value in initializers:
                graph.initializers.pop(value.name, None)
            for value, tensor in zip(initializers, tensors):
                value.const_value = tensor
                graph.initializers.add(value)
            while len(graph.inputs) > inputs_before:
                graph.inputs.pop()
