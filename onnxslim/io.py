"""Loading and saving models: validated loads, atomic saves, external data."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import onnx
import onnx_ir as ir
from google.protobuf.message import DecodeError

from onnxslim.errors import OnnxSlimError, first_line

MIN_OPSET = 7
PROTOBUF_LIMIT = 2 * 1024**3


def load(path: str | os.PathLike) -> ir.Model:
    """Load a model lazily (external data stays memory-mapped) and validate it."""
    path = Path(path)
    if not path.exists():
        raise OnnxSlimError(f"{path}: no such file")
    if path.is_dir():
        raise OnnxSlimError(f"{path}: is a folder, not an ONNX model")
    if path.stat().st_size == 0:
        raise OnnxSlimError(f"{path}: empty file, not an ONNX model")
    try:
        model = ir.load(path)
    except (DecodeError, RuntimeWarning, UnicodeDecodeError, ValueError) as err:
        raise OnnxSlimError(f"{path}: not a valid ONNX model (truncated or not protobuf: {first_line(err)})")
    except Exception as err:  # onnx-ir rejects malformed protos with assorted exceptions
        raise OnnxSlimError(f"{path}: cannot read ONNX model: {first_line(err)}")
    validate(model, str(path))
    return model


def validate(model: ir.Model, where: str = "model") -> None:
    """Reject models onnxslim cannot handle, with one clear line."""
    if not model.graph.outputs:
        raise OnnxSlimError(f"{where}: not an ONNX model (the graph has no outputs)")
    opset = model.opset_imports.get("", model.opset_imports.get("ai.onnx"))
    if opset is None:
        raise OnnxSlimError(f"{where}: the model imports no default ONNX opset")
    if opset < MIN_OPSET:
        raise OnnxSlimError(
            f"{where}: opset {opset} is not supported (minimum {MIN_OPSET}); "
            "upgrade it with onnx.version_converter first"
        )
    newest = onnx.defs.onnx_opset_version()
    if opset > newest:
        raise OnnxSlimError(f"{where}: opset {opset} is newer than this onnx release supports ({newest})")
    _check_external_data(model, where)


def _check_external_data(model: ir.Model, where: str) -> None:
    """Every external tensor must exist inside the model's folder and be long enough."""
    for graph in (model.graph, *model.graph.subgraphs()):
        for value in graph.initializers.values():
            tensor = value.const_value
            if not isinstance(tensor, ir.ExternalTensor):
                continue
            base = Path(tensor.base_dir or ".").resolve()
            file = (base / tensor.location).resolve()
            if base != file and base not in file.parents:
                raise OnnxSlimError(
                    f"{where}: external data location {tensor.location!r} of {value.name!r} "
                    "escapes the model's folder; refusing to read it"
                )
            if not file.is_file():
                raise OnnxSlimError(f"{where}: external data file {tensor.location!r} of {value.name!r} is missing")
            needed = (tensor.offset or 0) + (tensor.length or tensor.nbytes)
            if file.stat().st_size < needed:
                raise OnnxSlimError(
                    f"{where}: external data file {tensor.location!r} is too short for {value.name!r} "
                    f"({file.stat().st_size} bytes, needs {needed})"
                )


def weight_bytes(model: ir.Model) -> int:
    """Total bytes of initializers in the main graph and its subgraphs."""
    return sum(
        value.const_value.nbytes
        for graph in (model.graph, *model.graph.subgraphs())
        for value in graph.initializers.values()
        if value.const_value is not None
    )


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when both paths name the same existing file."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def save(model: ir.Model, path: str | os.PathLike, external_data: bool | None = None) -> int:
    """Save atomically: write into a temporary folder beside `path`, then rename into place.

    `external_data=None` switches to external data (`<name>.data` beside the model)
    only when the weights exceed protobuf's 2 GB limit. Returns the bytes written.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise OnnxSlimError(f"{path}: output folder {folder} does not exist")
    if external_data is None:
        external_data = weight_bytes(model) >= PROTOBUF_LIMIT - 64 * 1024**2
    data_name = f"{path.name}.data" if external_data else None
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=folder))
    except OSError as err:
        raise OnnxSlimError(f"{path}: cannot write to {folder}: {err.strerror}")
    try:
        try:
            with _inlined_external_tensors(model, enabled=not data_name):
                ir.save(model, staging / path.name, external_data=data_name)
        except OSError as err:
            raise OnnxSlimError(f"{path}: cannot write: {err.strerror or err}")
        except ValueError as err:
            raise OnnxSlimError(f"{path}: cannot serialize the model: {first_line(err)}")
        written = sum(file.stat().st_size for file in staging.iterdir())
        if data_name:
            os.replace(staging / data_name, folder / data_name)
        os.replace(staging / path.name, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return written


@contextlib.contextmanager
def _inlined_external_tensors(model: ir.Model, enabled: bool = True) -> Iterator[None]:
    """Serialize external tensors inline (their old relative locations mean nothing beside a new file).

    The tensors are swapped back afterwards, so the model still maps its original files.
    """
    swapped = [
        (value, value.const_value)
        for graph in model.graphs()
        for value in graph.initializers.values()
        if enabled and isinstance(value.const_value, ir.ExternalTensor)
    ]
    try:
        for value, tensor in swapped:
            value.const_value = ir.Tensor(tensor.numpy(), name=tensor.name, dtype=tensor.dtype)
        yield
    finally:
        for value, tensor in swapped:
            value.const_value = tensor


def to_proto(model: ir.Model) -> onnx.ModelProto:
    """A self-contained ModelProto: external tensors are read in (their relative paths mean nothing in memory)."""
    if weight_bytes(model) >= PROTOBUF_LIMIT:
        raise OnnxSlimError("the model's weights exceed protobuf's 2 GB limit: save it to a file instead")
    with _inlined_external_tensors(model):
        return ir.to_proto(model)


def to_ir(model: str | os.PathLike | onnx.ModelProto | ir.Model) -> ir.Model:
    """Accept a path, a ModelProto or an onnx-ir Model."""
    if isinstance(model, ir.Model):
        return model
    if isinstance(model, onnx.ModelProto):
        # onnx-ir's tensors wrap the proto's TensorProtos, and renaming a value renames its tensor:
        # work on a copy so the caller's ModelProto is never changed.
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        try:
            converted = ir.serde.deserialize_model(copy)
        except Exception as err:
            raise OnnxSlimError(f"cannot read the ModelProto: {first_line(err)}")
        validate(converted)
        return converted
    if isinstance(model, (str, os.PathLike)):
        return load(model)
    raise OnnxSlimError(f"expected a path, onnx.ModelProto or onnx_ir.Model, got {type(model).__name__}")
