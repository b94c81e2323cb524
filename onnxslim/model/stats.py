"""Model statistics for the before/after report."""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir

from onnxslim.model.graph import all_graphs, proto_graphs


@dataclass
class ModelStats:
    """Op counts (all graphs, subgraphs included), parameters and file size of one model."""

    nodes: int
    op_counts: dict[str, int] = field(default_factory=dict)
    parameters: int = 0
    weight_bytes: int = 0
    file_bytes: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def model_stats(model: ir.Model, path: str | os.PathLike | None = None) -> ModelStats:
    """Count nodes by op type and constant elements (initializers and Constant nodes)."""
    ops: Counter[str] = Counter()
    graphs = all_graphs(model)
    for node in (node for graph in graphs for node in graph):
        ops[
            node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"
        ] += 1
    sizes = [size_and_bytes(tensor) for tensor in _constants(graphs)]
    return ModelStats(
        nodes=sum(ops.values()),
        op_counts=dict(sorted(ops.items(), key=lambda kv: (-kv[1], kv[0]))),
        parameters=sum(size for size, _ in sizes),
        weight_bytes=sum(nbytes for _, nbytes in sizes),
        file_bytes=file_bytes(model, path) if path is not None else None,
    )


def constant_bytes(model: ir.Model) -> int:
    """Bytes of `model`'s constants: `model_stats(model).weight_bytes` without counting ops."""
    return sum(tensor_bytes(tensor) for tensor in _constants(all_graphs(model)))


def constant_size(value: ir.Value | None) -> int:
    """Elements of `value` when it is a constant (initializer or Constant node), else 0."""
    if value is None:
        return 0
    tensor = value.const_value
    producer = value.producer()
    if tensor is None and producer is not None and producer.op_type == "Constant":
        attribute = producer.attributes.get("value")
        tensor = attribute.value if attribute is not None else None
    return tensor.size if tensor is not None else 0


def _constants(graphs: list[ir.Graph]) -> Iterator[ir.TensorProtocol]:
    """The values of the Constant nodes (`value` attribute) and initializers of `graphs`."""
    for graph in graphs:
        for node in graph:
            if (
                node.op_type == "Constant"
                and node.domain in ("", "ai.onnx")
                and "value" in node.attributes
            ):
                yield node.attributes["value"].as_tensor()
    for graph in graphs:
        for value in graph.initializers.values():
            if value.const_value is not None:
                yield value.const_value


def size_and_bytes(tensor: ir.TensorProtocol) -> tuple[int, int]:
    """A tensor's element count and bytes; one backed by a TensorProto is read from the proto's dims
    (onnx-ir builds a new Shape and DataType on every access, which dominated on large graphs)."""
    if isinstance(tensor, ir.serde.TensorProtoTensor):
        dtype = ir.DataType(tensor.raw.data_type)
        if dtype != ir.DataType.STRING:
            size = math.prod(tensor.raw.dims)
            return size, math.ceil(size * dtype.itemsize)
    if tensor.dtype == ir.DataType.STRING:  # no element size: its strings' bytes
        return tensor.size, sum(len(item) for item in tensor.numpy().reshape(-1))
    return tensor.size, tensor.nbytes


def tensor_bytes(tensor: ir.TensorProtocol) -> int:
    """Bytes `tensor`'s data takes in the file (a string tensor's: its strings')."""
    return size_and_bytes(tensor)[1]


def file_bytes(model: ir.Model, path: str | os.PathLike) -> int:
    """Size of the model file at `path` plus the external files `model` references beside it."""
    path = Path(path)
    total = path.stat().st_size
    locations = {tensor.location for tensor in external_tensors(model)}
    return total + sum(
        (path.parent / loc).stat().st_size for loc in locations if (path.parent / loc).is_file()
    )


def external_tensors(model: ir.Model) -> Iterator[ir.ExternalTensor]:
    """The initializers of `model` (subgraphs included) that still live in external files."""
    for graph in all_graphs(model):
        for value in graph.initializers.values():
            if isinstance(value.const_value, ir.ExternalTensor):
                yield value.const_value


def location_bytes(model: ir.Model) -> int:
    """Bytes of the external-data file names `model`'s initializers reference, one per tensor:
    what the file grows by when it is written with a longer data file name."""
    return sum(len(tensor.location.encode()) for tensor in external_tensors(model))


def written_location_bytes(path: str | os.PathLike) -> int:
    """`location_bytes` of the model file at `path` as written (its weights not read)."""
    proto = onnx.load(os.fspath(path), load_external_data=False)
    return sum(
        len(entry.value.encode())
        for graph in proto_graphs(proto.graph)
        for tensor in graph.initializer
        for entry in tensor.external_data
        if entry.key == "location"
    )


@dataclass
class ValueInfo:
    """A graph input or output: name, element type and dims (int, dim name, or None: unknown)."""

    name: str
    dtype: str
    shape: list[int | str | None] | None

    def describe(self) -> str:
        if self.shape is None:
            return self.dtype if "(" in self.dtype else f"{self.dtype}[?...]"  # seq(...): no dims
        dims = ",".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.dtype}[{dims}]"


@dataclass
class ModelInfo:
    """What `onnxslim inspect` shows: the interface, versions, producer, ops, weights, files."""

    path: str
    inputs: list[ValueInfo]
    outputs: list[ValueInfo]
    ir_version: int | None
    opsets: dict[str, int]
    producer: str
    stats: ModelStats
    initializers: int
    functions: list[str]
    #: External data files (relative to the model's folder) and their sizes in bytes.
    external_data: dict[str, int | None]
    metadata: dict[str, str]
    #: Why onnxslim refuses the model (io.validate_model), or None.
    invalid: str | None = None

    def to_dict(self) -> dict:
        data = asdict(self)
        data["stats"] = self.stats.to_dict()
        return data


def model_info(model: ir.Model, path: str | os.PathLike, invalid: str | None = None) -> ModelInfo:
    """The inspect report of `model`, loaded from `path` (nothing is changed or run); `invalid`:
    why onnxslim refuses it, if it does."""
    from onnxslim.model.io import MAP_TYPED  # io imports this module (through external)

    graph, maps = model.graph, model.meta.get(MAP_TYPED, {})
    producer = " ".join(filter(None, [model.producer_name, model.producer_version]))
    folder = Path(path).parent
    external: dict[str, int | None] = {}
    for value in _all_initializers(model):
        tensor = value.const_value
        if isinstance(tensor, ir.ExternalTensor) and tensor.location not in external:
            location = folder / tensor.location
            external[tensor.location] = location.stat().st_size if location.is_file() else None
    return ModelInfo(
        path=str(path),
        inputs=[_value_info(v, maps) for v in graph.inputs if v.name not in graph.initializers],
        outputs=[_value_info(v, maps) for v in graph.outputs],
        ir_version=model.ir_version,
        opsets=dict(sorted(graph.opset_imports.items())),
        producer=producer,
        stats=model_stats(model, path),
        initializers=sum(len(g.initializers) for g in all_graphs(model)),
        functions=[f"{domain}::{name}" for domain, name, _ in model.functions],
        external_data=external,
        metadata=dict(model.metadata_props),
        invalid=invalid,
    )


def _all_initializers(model: ir.Model):
    for graph in all_graphs(model):
        yield from graph.initializers.values()


def type_text(type_: onnx.TypeProto) -> str:
    """seq(map(int64,float32)), sparse(float32) and the like."""
    kind = type_.WhichOneof("value")
    if kind == "tensor_type":
        return _elem_text(type_.tensor_type.elem_type)
    if kind == "sparse_tensor_type":
        return f"sparse({_elem_text(type_.sparse_tensor_type.elem_type)})"
    if kind == "map_type":
        key = _elem_text(type_.map_type.key_type)
        return f"map({key},{type_text(type_.map_type.value_type)})"
    if kind in ("sequence_type", "optional_type"):
        return f"{kind[:3]}({type_text(getattr(type_, kind).elem_type)})"
    return "?"


def _elem_text(elem_type: int) -> str:
    if elem_type == onnx.TensorProto.STRING:
        return "string"
    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type)).name
    except (KeyError, TypeError, ValueError):  # undefined, or no numpy type
        return onnx.TensorProto.DataType.Name(elem_type).lower() if elem_type else "unknown"


def _value_info(value: ir.Value, maps: dict[str, bytes]) -> ValueInfo:
    """`value`'s ValueInfo; `maps`: the map types `io.load` kept aside, by value name."""
    if value.name in maps:
        return ValueInfo(value.name, type_text(onnx.TypeProto.FromString(maps[value.name])), None)
    if isinstance(value.type, ir.TensorType) and value.dtype is not None:
        try:
            dtype = np.dtype(value.dtype.numpy()).name
        except TypeError:
            dtype = value.dtype.name.lower()
    else:
        dtype = str(value.type) if value.type is not None else "?"
    shape = None
    if value.shape is not None:
        shape = [
            d if isinstance(d, int) else (str(d.value) if d.value is not None else None)
            for d in value.shape.dims
        ]
    return ValueInfo(value.name, dtype, shape)
