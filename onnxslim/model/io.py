"""Loading and saving models: validated loads, atomic saves, conversions (path, proto, IR)."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir

from onnxslim.errors import OnnxSlimError, first_line
from onnxslim.model import external, files
from onnxslim.model.graph import (
    all_graphs,
    all_nodes,
    moved_shape,
    nested_proto_graphs,
    proto_graphs,
)
from onnxslim.model.validate import validate_model

PROTOBUF_LIMIT = 2 * 1024**3
#: A model written with external data as its input had keeps tensors under this many bytes in the
#: .onnx file, as onnx's `save_model` does: moving a 400-byte bias out costs more than it holds.
INLINE_BELOW = 1024
#: With external data asked for, tensors of this many bytes and up go to the data file.
ASKED_OUTSIDE_FROM = 256
TRAINING_INFO = "onnxslim.training_info"  # key in ir.Model.meta: serialized TrainingInfoProtos
#: key in ir.Model.meta: graph inputs and outputs of map types (ZipMap's), serialized by name
MAP_TYPED = "onnxslim.map_typed"
#: meta key: the negative dims of the main graph's inputs and outputs, {name: {index: value}}
NEGATIVE_DIMS = "onnxslim.negative_dims"


def load(path: str | os.PathLike, validate: bool = True) -> ir.Model:
    """Load a model lazily (external data stays memory-mapped) and, with `validate`, validate it
    (`validate_model`)."""
    path = Path(path)
    if not path.exists():
        raise OnnxSlimError(f"{path}: no such file")
    if path.is_dir():
        raise OnnxSlimError(f"{path}: is a folder, not an ONNX model")
    if path.stat().st_size == 0:
        raise OnnxSlimError(f"{path}: empty file, not an ONNX model")
    try:
        # external data is not read here: onnx-ir maps it on demand
        proto = onnx.load(os.fspath(path), format="protobuf", load_external_data=False)
    except MemoryError:
        raise
    except Exception as err:  # DecodeError, RuntimeWarning, UnicodeDecodeError, ...
        raise OnnxSlimError(
            f"{path}: not a valid ONNX model (truncated or not protobuf: {first_line(err)})"
        ) from err
    model = _deserialize(proto, str(path))
    del proto
    # absolute, so a later change of working directory cannot break the paths of external data
    ir.external_data.set_base_dir(model.graph, path.resolve().parent)
    if validate:
        validate_model(model, str(path))
    return model


def _deserialize(proto: onnx.ModelProto, where: str) -> ir.Model:
    """onnx-ir's model for `proto` (which it may change; negative dims cleared); malformed graphs
    (redeclared or dangling values) are user errors. Sparse tensors become dense ones;
    `training_info` and the types of map-typed graph inputs and outputs (scikit-learn's ZipMap),
    which onnx-ir does not model, are kept aside for `save` and `to_proto` (the values go through
    untyped)."""
    _densify_sparse(proto)
    negative_dims = clear_negative_dims(proto.graph)
    training_info = [info.SerializeToString() for info in proto.training_info]
    map_typed = _untype_maps(proto.graph)
    with quiet_library_logs():
        try:
            model = ir.serde.deserialize_model(proto)
        except MemoryError:
            raise
        except Exception as err:
            raise OnnxSlimError(
                f"{where}: invalid ONNX model: {first_line(_root_cause(err))}"
            ) from err
    if training_info:
        model.meta[TRAINING_INFO] = training_info
    if map_typed:
        model.meta[MAP_TYPED] = map_typed
    if negative_dims:
        model.meta[NEGATIVE_DIMS] = negative_dims
    model.meta[ANNOTATED] = annotated_values(model)  # what the file said, before any inference
    return model


def clear_negative_dims(graph: onnx.GraphProto) -> dict[str, dict[int, int]]:
    """Clear every negative `dim_value` of `graph`'s declared types (subgraphs included): an
    unknown dim. paddle2onnx writes -1 for a dynamic batch and ONNX Runtime reads it so; taken as
    fixed, Shape(x) would fold to a constant holding -1. Returns those of the graph's own inputs
    and outputs, {name: {index: value}}, for `with_kept_aside` to write back."""
    interface = {*(v.name for v in graph.input), *(v.name for v in graph.output)}
    cleared: dict[str, dict[int, int]] = {}
    for body in proto_graphs(graph):
        for info in (*body.input, *body.output, *body.value_info):
            if info.type.HasField("tensor_type") and info.type.tensor_type.HasField("shape"):
                for index, dim in enumerate(info.type.tensor_type.shape.dim):
                    if dim.HasField("dim_value") and dim.dim_value < 0:
                        if body is graph and info.name in interface:
                            cleared.setdefault(info.name, {})[index] = dim.dim_value
                        dim.ClearField("dim_value")
    return cleared


def clear_negative_ir_dims(model: ir.Model) -> None:
    """`clear_negative_dims` for an onnx-ir `model` given as such: its values' negative dims
    become unknown."""
    for graph in all_graphs(model):
        values = [*graph.inputs, *graph.outputs, *(o for node in graph for o in node.outputs)]
        for value in values:
            dims = value.shape.dims if value.shape is not None else ()
            if any(isinstance(d, int) and d < 0 for d in dims):
                value.shape = ir.Shape([None if isinstance(d, int) and d < 0 else d for d in dims])


def _untype_maps(graph: onnx.GraphProto) -> dict[str, bytes]:
    """Clear the types that hold a map from `graph`'s inputs and outputs (returned, serialized by
    name) and drop such value_info entries."""
    kept = {}
    for value in (*graph.input, *graph.output):
        if _holds_map(value.type):
            kept[value.name] = value.type.SerializeToString()
            value.ClearField("type")
    typed = [value for value in graph.value_info if not _holds_map(value.type)]
    if len(typed) < len(graph.value_info):
        del graph.value_info[:]
        graph.value_info.extend(typed)
    return kept


def _holds_map(type_: onnx.TypeProto) -> bool:
    kind = type_.WhichOneof("value")
    if kind == "map_type":
        return True
    if kind in ("sequence_type", "optional_type"):
        return _holds_map(getattr(type_, kind).elem_type)
    return False


def _drop_proto_metadata(model: ir.Model) -> None:
    """onnx-ir writes a deserialized tensor's metadata_props twice, its proto's copied and then
    its own (one more copy each load and save): before writing, the proto's copy is dropped and
    the tensor's own kept."""
    tensors = [v.const_value for graph in all_graphs(model) for v in graph.initializers.values()]
    for node in all_nodes(model):
        tensors += [a.value for a in node.attributes.values() if a.type == ir.AttributeType.TENSOR]
    for tensor in tensors:
        if isinstance(tensor, ir.serde.TensorProtoTensor) and tensor.metadata_props:
            tensor.raw.ClearField("metadata_props")


def _densify_sparse(proto: onnx.ModelProto) -> None:
    """Sparse initializers become dense ones of the same name, and a Constant's `sparse_value`
    its `value`, in every graph and function (onnx-ir has no sparse tensors)."""
    graphs = [
        *proto_graphs(proto.graph),
        *(body for function in proto.functions for body in nested_proto_graphs(function.node)),
    ]
    for graph in graphs:
        graph.initializer.extend(_dense(sparse) for sparse in graph.sparse_initializer)
        del graph.sparse_initializer[:]
    nodes = [n for g in graphs for n in g.node] + [n for f in proto.functions for n in f.node]
    for node in nodes:
        for attribute in node.attribute:
            if node.op_type == "Constant" and attribute.name == "sparse_value":
                attribute.name, attribute.type = "value", onnx.AttributeProto.TENSOR
                attribute.t.CopyFrom(_dense(attribute.sparse_tensor))
                attribute.ClearField("sparse_tensor")


def _dense(sparse: onnx.SparseTensorProto) -> onnx.TensorProto:
    """The dense tensor `sparse` holds (zeros where it has no value), named as its values."""
    values = onnx.numpy_helper.to_array(sparse.values)
    indices = onnx.numpy_helper.to_array(sparse.indices).astype(np.int64)
    dense = np.zeros(int(np.prod(sparse.dims)), values.dtype)
    if indices.ndim == 2:  # one coordinate tuple per value
        indices = np.ravel_multi_index(tuple(indices.T), tuple(sparse.dims))
    dense[indices] = values
    return onnx.numpy_helper.from_array(dense.reshape(tuple(sparse.dims)), sparse.values.name)


def keep_aside_as(model: ir.Model, source_meta: Mapping) -> None:
    """Give `model` the map types and negative dims of the model it was made from, whose `meta`
    is `source_meta`."""
    for key in (MAP_TYPED, NEGATIVE_DIMS):
        if key in source_meta:
            model.meta[key] = source_meta[key]


def with_kept_aside(model: ir.Model, proto: onnx.ModelProto) -> onnx.ModelProto:
    """`proto` with the `training_info`, map types and negative dims (where the dim is still
    unknown) `model` was loaded with put back: the interface as the file declared it."""
    for info in model.meta.get(TRAINING_INFO, ()):
        proto.training_info.add().ParseFromString(info)
    map_typed = model.meta.get(MAP_TYPED, {})
    negative = model.meta.get(NEGATIVE_DIMS, {})
    for value in (*proto.graph.input, *proto.graph.output):
        if value.name in map_typed:
            value.type.ParseFromString(map_typed[value.name])
        dims = value.type.tensor_type.shape.dim if value.name in negative else []
        for index, dim in enumerate(dims):
            unknown = not dim.HasField("dim_param") and not dim.HasField("dim_value")
            if index in negative[value.name] and unknown:
                dim.dim_value = negative[value.name][index]
    return proto


def _root_cause(err: BaseException) -> BaseException:
    seen = {id(err)}
    while (err.__cause__ or err.__context__) is not None and id(
        err.__cause__ or err.__context__
    ) not in seen:
        err = err.__cause__ or err.__context__
        seen.add(id(err))
    return err


@contextlib.contextmanager
def quiet_library_logs(level: int = logging.ERROR) -> Iterator[None]:
    """Silence onnx-ir and onnxscript warnings (onnxslim reports problems itself, in one line)."""
    loggers = [logging.getLogger(name) for name in ("onnx_ir", "onnxscript")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(max(level, logger.getEffectiveLevel()))
    try:
        yield
    finally:
        for logger, old in zip(loggers, levels):
            logger.setLevel(old)


#: `model.meta` key: the values the original model gave a value_info, each with whether it gave a
#: shape (set when it is loaded, and by `optimize`).
ANNOTATED = "onnxslim.annotated"
#: `model.meta` key: True where `named_shapes` are written too (`lean_value_info`; `optimize`
#: decides).
NAMED_SHAPES = "onnxslim.named_shapes"


def annotated_values(model: ir.Model) -> dict[str, bool]:
    """The node outputs (in graphs, subgraphs and functions) that have a type or shape, each with
    whether it has a shape."""
    annotated: dict[str, bool] = {}
    for node in all_nodes(model):
        for value in node.outputs:
            if value.name and (value.type is not None or value.shape is not None):
                annotated[value.name] = annotated.get(value.name, False) or value.shape is not None
    return annotated


@contextlib.contextmanager
def lean_value_info(model: ir.Model) -> Iterator[None]:
    """Write no value_info the original did not have (`named_shapes` aside), while the model is
    serialized.

    onnx-ir writes an entry for every initializer with a type (the tensor already says it: 13 KB on
    open_nsfw) and for every value shape inference typed: a model with nothing to remove would
    come out bigger. So initializers get none, and node outputs only those the original had
    (`model.meta[ANNOTATED]`, recorded when it was loaded or by `optimize`), with a shape only
    where it gave one (ONNX's inference can be wrong where ORT's is right: an STFT's bins, which
    ORT then refuses), and a rewrite's new value whose shape is one the original gave, moved
    (graph.move_shape); graph inputs and outputs and values with metadata or a doc string keep
    theirs. With `model.meta[NAMED_SHAPES]`, the main graph's node outputs whose every dim is
    known or named keep theirs as inferred, generated names too (`named_shapes`). The model in
    memory keeps its types.
    """
    keep = model.meta.get(ANNOTATED)
    values = [value for graph in all_graphs(model) for value in graph.initializers.values()]
    unshaped = []
    named = {id(v) for v in named_shapes(model)} if model.meta.get(NAMED_SHAPES) else set()
    if keep is not None:
        outputs = [
            value for node in all_nodes(model) for value in node.outputs if id(value) not in named
        ]
        values += [
            value
            for value in outputs
            if value.name not in keep and not keep.get(moved_shape(value))
        ]
        unshaped = [value for value in outputs if keep.get(value.name) is False]
    cleared = [(v, v.type, v.shape) for v in values if _annotated_here(v)]
    shape_cleared = [
        (v, v.type, v.shape) for v in unshaped if _annotated_here(v) and v.shape is not None
    ]
    handled = {id(v) for v, _, _ in cleared + shape_cleared} | named
    unnamed = [
        (v, v.type, v.shape)
        for node in all_nodes(model)
        for v in node.outputs
        if id(v) not in handled and _annotated_here(v) and _has_generated_dims(v.shape)
    ]
    try:
        for value, _, _ in cleared:
            value.type = None
            value.shape = None
        for value, _, _ in shape_cleared:
            value.shape = None
        for value, _, shape in unnamed:
            value.shape = ir.Shape([None if _generated(dim) else dim for dim in shape.dims])
        yield
    finally:
        for value, type_, shape in cleared + shape_cleared + unnamed:
            value.type = type_
            value.shape = shape


def named_shapes(model: ir.Model) -> list[ir.Value]:
    """The main graph's node outputs (not its outputs) with a type and a shape whose every dim is
    known or named, one of them by onnx's inference (`unk__7`): ONNX Runtime's planner reuses a
    buffer in place (an elementwise op, a Softmax) only where it proves two shapes the same, dim
    by dim, by value or by name, and its own inference names no dim the graph's inputs do not (a
    diffusers UNet's attention Softmax [1, 8, 1024, 1024] took 2.1x its time without them;
    onnxsim, which writes them: 0.73x the original's time, ours 0.96x)."""
    return [
        value
        for node in model.graph
        for value in node.outputs
        if value.type is not None
        and value.shape is not None
        and all(isinstance(dim, int) or dim.value for dim in value.shape.dims)
        and _has_generated_dims(value.shape)
        and not (value.is_graph_output() or value.metadata_props or value.doc_string)
    ]


#: The names onnx's shape inference gives the unknown dims it cannot relate to any other.
GENERATED_DIM = re.compile(r"unk__\d+")


def _generated(dim) -> bool:
    return isinstance(dim, ir.SymbolicDim) and bool(GENERATED_DIM.fullmatch(dim.value or ""))


def _has_generated_dims(shape: ir.Shape | None) -> bool:
    """Whether `shape` names a dim as onnx's inference does its unknowns (`unk__7`): a value_info
    holding such names, one per value, kept ONNX Runtime from proving two shapes equal, and so
    from fusing (an fp16 EfficientNet's residual Adds: 1.03x the time); outside `named_shapes`
    they are written as unknown dims."""
    return shape is not None and any(_generated(dim) for dim in shape.dims)


def _annotated_here(value: ir.Value) -> bool:
    """Whether `value` would be written as a value_info entry of its own: typed or shaped, not a
    graph input or output (written from the same value), no metadata or doc string (a model's own
    entry, which must keep its type to pass the checker)."""
    return (
        (value.type is not None or value.shape is not None)
        and not (value.is_graph_input() or value.is_graph_output())
        and not (value.metadata_props or value.doc_string)
    )


def save(
    model: ir.Model,
    path: str | os.PathLike,
    external_data: bool | None = None,
    before_replace: Callable[[Path], None] | None = None,
) -> int:
    """Save atomically: write into a temporary folder beside `path`, then rename into place.

    `external_data=None` writes external data (`<name>.data` beside the model) when the weights
    exceed protobuf's 2 GB limit or when the model was loaded with external data (it keeps that
    layout, and no whole-model protobuf is built in memory), with tensors under INLINE_BELOW bytes
    in the model file (none outside: no data file); `True` moves every tensor of 256 bytes and up
    to it (onnx-ir's default), as asked. `before_replace(staged)` is called
    with the written file before it takes `path`'s place (e.g. to check it on ONNX Runtime without
    another copy of the weights); if it raises, `path` is left as it was. Returns the bytes written.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise OnnxSlimError(f"{path}: output folder {folder} does not exist")
    chosen = external_data is None  # (not asked for)
    if chosen:
        external_data = external.weight_bytes(
            model
        ) >= PROTOBUF_LIMIT - 64 * 1024**2 or external.has_external_data(model)
    data_name = f"{path.name}.data" if external_data else None
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=folder))
    except OSError as err:
        raise OnnxSlimError(f"{path}: cannot write to {folder}: {err.strerror}") from err
    try:
        with files.terminate_as_interrupt():
            try:
                with (
                    external.inlined_external_tensors(model, enabled=not data_name),
                    lean_value_info(model),
                ):
                    if data_name:
                        _ready_to_write(model)
                        ir.save(
                            model,
                            staging / path.name,
                            external_data=data_name,
                            size_threshold_bytes=INLINE_BELOW if chosen else ASKED_OUTSIDE_FROM,
                            callback=external.UnmapBehind(),
                        )
                        external.release_external_data(model)
                        data = staging / data_name
                        if chosen and data.exists() and not data.stat().st_size:  # all inline
                            data.unlink()
                            data_name = None
                    else:
                        _save_streamed(model, staging / path.name)
            except OSError as err:
                raise OnnxSlimError(f"{path}: cannot write: {err.strerror or err}") from err
            except ValueError as err:
                raise OnnxSlimError(
                    f"{path}: cannot serialize the model: {first_line(err)}"
                ) from err
            if any(model.meta.get(key) for key in (TRAINING_INFO, MAP_TYPED, NEGATIVE_DIMS)):
                staged = onnx.load(staging / path.name, load_external_data=False)
                onnx.save(with_kept_aside(model, staged), staging / path.name)
            written = sum(file.stat().st_size for file in staging.iterdir())
            if before_replace is not None:
                before_replace(staging / path.name)
            if data_name:
                external.read_into_memory(model, folder / data_name)
            # the model and its data file are replaced together or not at all
            with files.signals_deferred():
                try:
                    if data_name:
                        os.replace(staging / data_name, folder / data_name)
                    os.replace(staging / path.name, path)
                except OSError as err:
                    raise OnnxSlimError(f"{path}: cannot write: {err.strerror or err}") from err
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return written


#: Main-graph initializers of at least this many bytes `_save_streamed` writes one at a time.
STREAMED_BYTES = 1 << 16
#: The location its placeholders name while the rest of the model is serialized.
_STREAMED = "onnxslim-streamed"


def _save_streamed(model: ir.Model, path: Path) -> None:
    """Write `model` as one protobuf file without a whole-model proto and its serialized copy in
    memory (a 1.6 GB model peaked at 4.6 GB in `onnx.save`): the proto is built with its large
    main-graph initializers as placeholders, then written with each one's bytes spliced in as
    its `raw_data`, one tensor in memory at a time. Protobuf reads a message's fields in any
    order: the graph goes after the model's other fields, its initializers after its own."""
    large = {
        value.name: value.const_value
        for value in model.graph.initializers.values()
        if value.const_value is not None
        and value.const_value.dtype != ir.DataType.STRING
        and value.const_value.nbytes >= STREAMED_BYTES
    }
    values = model.graph.initializers
    try:
        for name, tensor in large.items():
            values[name].const_value = ir.ExternalTensor(
                _STREAMED,
                0,
                tensor.nbytes,
                tensor.dtype,
                shape=tensor.shape,
                name=name,
                doc_string=tensor.doc_string,
                metadata_props=tensor.metadata_props,
            )
        proto = _serialized(model)
    finally:
        for name, tensor in large.items():
            values[name].const_value = tensor
    graph = proto.graph
    initializers = list(graph.initializer)
    del graph.initializer[:]
    pieces = []  # (the TensorProto's bytes but raw_data, the tensor whose bytes follow or None)
    for initializer in initializers:
        spliced = initializer.data_location == onnx.TensorProto.EXTERNAL and any(
            entry.key == "location" and entry.value == _STREAMED
            for entry in initializer.external_data
        )
        if spliced:
            initializer.ClearField("external_data")
            initializer.ClearField("data_location")
        tensor = large[initializer.name] if spliced else None
        pieces.append((initializer.SerializeToString(), tensor))
    graph_bytes = graph.SerializeToString()
    proto.ClearField("graph")

    def raw_field(tensor) -> bytes:  # TensorProto.raw_data: field 9, length-delimited
        return b"\x4a" + _varint(tensor.nbytes) if tensor is not None else b""

    def size(head: bytes, tensor) -> int:
        return len(head) + len(raw_field(tensor)) + (tensor.nbytes if tensor is not None else 0)

    graph_size = len(graph_bytes) + sum(
        1 + len(_varint(size(head, tensor))) + size(head, tensor) for head, tensor in pieces
    )
    head = proto.SerializeToString()
    total = len(head) + 1 + len(_varint(graph_size)) + graph_size
    if total >= PROTOBUF_LIMIT:  # what protobuf would refuse to read
        raise ValueError(
            f"{total / 1024**3:.2f} GiB is over protobuf's 2 GiB limit for one file: "
            "save it with external data"
        )
    with open(path, "wb") as file:
        file.write(head)
        file.write(b"\x3a" + _varint(graph_size))  # ModelProto.graph: field 7
        file.write(graph_bytes)
        for head, tensor in pieces:
            file.write(b"\x2a" + _varint(size(head, tensor)))  # GraphProto.initializer: field 5
            file.write(head + raw_field(tensor))
            if tensor is not None:
                file.write(tensor.tobytes())


def _varint(n: int) -> bytes:
    """`n` as a protobuf varint."""
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def to_proto(model: ir.Model) -> onnx.ModelProto:
    """A self-contained ModelProto: external tensors are read in (their relative paths mean
    nothing in memory)."""
    if external.weight_bytes(model) >= PROTOBUF_LIMIT:
        raise OnnxSlimError(
            "the model's weights exceed protobuf's 2 GB limit: save it to a file instead"
        )
    with external.inlined_external_tensors(model), lean_value_info(model):
        return with_kept_aside(model, _serialized(model))


def serialized(model: ir.Model) -> bytes | None:
    """`model` serialized as one protobuf (`to_proto`), or None where one cannot hold it (2 GB)."""
    try:
        return to_proto(model).SerializeToString()
    except (OnnxSlimError, ValueError):  # the 2 GB guard above, or protobuf's own at serialization
        return None


def lean_proto(model: ir.Model) -> onnx.ModelProto:
    """`model` as onnx-ir writes it, with only the value_info the original had (`lean_value_info`)
    and nothing io keeps aside: a working copy for `ir.from_proto` to rebuild from."""
    with lean_value_info(model):
        return ir.to_proto(model)


def _serialized(model: ir.Model) -> onnx.ModelProto:
    """`ir.to_proto` without the 2 bytes it adds to a file whose default opset import leaves its
    domain unset, and with the IR version its initializers need."""
    _ready_to_write(model)
    proto = ir.to_proto(model)
    for opset in (*proto.opset_import, *(op for f in proto.functions for op in f.opset_import)):
        if opset.domain == "":
            opset.ClearField("domain")
    return proto


def _ready_to_write(model: ir.Model) -> None:
    """What every write of `model` (a file, a proto) needs first: the IR version its
    initializers need, and its tensors' metadata written once."""
    _raise_old_ir_version(model)
    _drop_proto_metadata(model)


def _raise_old_ir_version(model: ir.Model) -> None:
    """IR versions below 4 require every initializer to be a graph input: a model holding other
    initializers (folding lifts constants) moves to IR version 4, whose meaning is the same."""
    if model.ir_version < 4 and any(
        value not in graph.inputs
        for graph in all_graphs(model)
        for value in graph.initializers.values()
    ):
        model.ir_version = 4


def from_proto(proto: onnx.ModelProto, where: str = "ModelProto") -> ir.Model:
    """onnx-ir's model for `proto` (which it then owns), validated."""
    model = _deserialize(proto, where)
    validate_model(model, where)
    return model


def to_ir(model: str | os.PathLike | onnx.ModelProto | ir.Model) -> ir.Model:
    """Accept a path, a ModelProto or an onnx-ir Model, validated alike."""
    if isinstance(model, ir.Model):
        validate_model(model)
        clear_negative_ir_dims(model)
        return model
    if isinstance(model, onnx.ModelProto):
        # onnx-ir's tensors wrap the proto's TensorProtos, and renaming a value renames its tensor:
        # work on a copy so the caller's ModelProto is never changed.
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        converted = _deserialize(copy, "ModelProto")
        validate_model(converted)
        return converted
    if isinstance(model, (str, os.PathLike)):
        return load(model)
    raise OnnxSlimError(
        f"expected a path, onnx.ModelProto or onnx_ir.Model, got {type(model).__name__}"
    )
