"""External data: weights in files beside the model, memory-mapped; what they cost in memory."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import onnx_ir as ir

from onnxslim.model.files import same_file


def weight_bytes(model: ir.Model) -> int:
    """Total bytes of initializers in the main graph and its subgraphs."""
    return sum(
        value.const_value.nbytes
        for graph in model.graphs()
        for value in graph.initializers.values()
        if value.const_value is not None
    )


def has_external_data(model: ir.Model) -> bool:
    """True when some initializer still lives in an external file."""
    return any(
        isinstance(value.const_value, ir.ExternalTensor)
        for graph in model.graphs()
        for value in graph.initializers.values()
    )


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
    for graph in model.graphs():
        for value in graph.initializers.values():
            if isinstance(value.const_value, ir.ExternalTensor):
                value.const_value.release()


def read_into_memory(model: ir.Model, file: Path) -> None:
    """Tensors stored in `file`, which a save is about to replace, are read into memory first.

    Only saving over the model's own data file needs this; the model stays usable after the save.
    """
    for graph in model.graphs():
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
        for graph in model.graphs()
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


#: onnx-ir leaves main-graph initializers up to this size in the proto it hands to onnx's C API.
_C_API_KEEPS = 1000


def onnx_c_api_view(model: ir.Model):
    """Make `onnx_ir`'s checker/shape-inference calls see no external tensor.

    `onnx_ir.passes.common.CheckerPass`/`ShapeInferencePass` serialize the model without main-graph
    initializers over 1 KB (so a huge model never becomes a huge proto), but the small ones and
    those of subgraphs stay, external references included, which the checker then resolves against
    the working directory. Those few are read in for the call.
    """
    return inlined_external_tensors(
        model,
        only=lambda graph, value: (
            graph is not model.graph or value.const_value.nbytes <= _C_API_KEEPS
        ),
    )
