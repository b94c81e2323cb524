"""Loading and saving models: validated loads, atomic saves, external data."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import onnx
import onnx_ir as ir

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
        # external data is not read here: onnx-ir maps it on demand
        proto = onnx.load(os.fspath(path), format="protobuf", load_external_data=False)
    except MemoryError:
        raise
    except Exception as err:  # DecodeError, RuntimeWarning, UnicodeDecodeError, ...
        raise OnnxSlimError(f"{path}: not a valid ONNX model (truncated or not protobuf: {first_line(err)})")
    model = _deserialize(proto, str(path))
    del proto
    # absolute, so a later change of working directory cannot break the paths of external data
    ir.external_data.set_base_dir(model.graph, path.resolve().parent)
    validate(model, str(path))
    return model


def _deserialize(proto: onnx.ModelProto, where: str) -> ir.Model:
    """onnx-ir's model for `proto`; malformed graphs (redeclared or dangling values) are user errors."""
    with quiet_library_logs():
        try:
            return ir.serde.deserialize_model(proto)
        except MemoryError:
            raise
        except Exception as err:  # onnx-ir rejects malformed protos with assorted exceptions
            raise OnnxSlimError(f"{where}: invalid ONNX model: {first_line(_root_cause(err))}")


def _root_cause(err: BaseException) -> BaseException:
    seen = {id(err)}
    while (err.__cause__ or err.__context__) is not None and id(err.__cause__ or err.__context__) not in seen:
        err = err.__cause__ or err.__context__
        seen.add(id(err))
    return err


@contextlib.contextmanager
def quiet_library_logs(level: int = logging.ERROR) -> Iterator[None]:
    """Silence onnx-ir's and onnxscript's warnings (onnxslim reports problems itself, in one line)."""
    loggers = [logging.getLogger(name) for name in ("onnx_ir", "onnxscript")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(max(level, logger.getEffectiveLevel()))
    try:
        yield
    finally:
        for logger, old in zip(loggers, levels):
            logger.setLevel(old)


def default_opset(opset_imports: Mapping[str, int]) -> int | None:
    """The default ONNX opset version, imported under "" or its alias "ai.onnx"; None if neither."""
    version = opset_imports.get("")
    return version if version is not None else opset_imports.get("ai.onnx")


def validate(model: ir.Model, where: str = "model") -> None:
    """Reject models onnxslim cannot handle, with one clear line."""
    if not model.graph.outputs:
        raise OnnxSlimError(f"{where}: not an ONNX model (the graph has no outputs)")
    opset = default_opset(model.opset_imports)
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
    _check_nodes(model, where)
    _check_acyclic(model, where)
    _check_external_data(model, where)


def _scopes(model: ir.Model) -> Iterator[tuple[ir.Graph | ir.Function, dict[str, int]]]:
    """Every graph and function with the opsets its nodes see."""
    for graph in model.graphs():
        yield graph, model.opset_imports
    for function in model.functions.values():
        yield function, {**model.opset_imports, **function.opset_imports}
        for node in function:
            for attr in node.attributes.values():
                if isinstance(attr, ir.Attr) and attr.type == ir.AttributeType.GRAPH:
                    yield attr.as_graph(), {**model.opset_imports, **function.opset_imports}
                elif isinstance(attr, ir.Attr) and attr.type == ir.AttributeType.GRAPHS:
                    for graph in attr.as_graphs():
                        yield graph, {**model.opset_imports, **function.opset_imports}


def _check_nodes(model: ir.Model, where: str) -> None:
    """Default-domain ops must exist at the model's opset; every input must come from somewhere."""
    local = {(domain, name) for domain, name, _ in model.functions}
    for scope, opsets in _scopes(model):
        formal = set(scope.inputs)
        for node in scope:
            label = _label(node)
            domain = "" if node.domain == "ai.onnx" else node.domain
            if domain == "" and (domain, node.op_type) not in local:
                version = default_opset(opsets) or 0
                try:
                    onnx.defs.get_schema(node.op_type, version, "")
                except onnx.defs.SchemaError:
                    if onnx.defs.has(node.op_type):
                        since = min(schema.since_version for schema in onnx.defs.get_all_schemas_with_history()
                                    if schema.name == node.op_type and schema.domain in ("", "ai.onnx"))
                        reason = f"does not exist in opset {version} (it needs opset {since} or later)"
                    else:
                        reason = "is not an ONNX operator (custom ops need their own domain)"
                    raise OnnxSlimError(f"{where}: {label}: {node.op_type!r} {reason}")
            for value in node.inputs:
                if value is None or value in formal:
                    continue
                if value.producer() is None and not value.is_graph_input() and not value.is_initializer():
                    raise OnnxSlimError(
                        f"{where}: {label} reads {value.name!r}, which no node, graph input or initializer defines"
                    )


def _check_acyclic(model: ir.Model, where: str) -> None:
    """Nodes may come in any order, but their dependencies must not form a cycle."""
    for scope, _ in _scopes(model):
        nodes = list(scope)
        position = {node: index for index, node in enumerate(nodes)}
        waiting = [0] * len(nodes)
        users: list[list[int]] = [[] for _ in nodes]
        for index, node in enumerate(nodes):
            producers = {position[p] for p in _dependencies(node) if p in position and p is not node}
            waiting[index] = len(producers)
            for producer in producers:
                users[producer].append(index)
            if any(p is node for p in _dependencies(node)):
                waiting[index] = -1  # a node that reads its own output
        ready = [index for index, count in enumerate(waiting) if count == 0]
        done = 0
        while ready:
            index = ready.pop()
            done += 1
            for user in users[index]:
                waiting[user] -= 1
                if waiting[user] == 0:
                    ready.append(user)
        if done != len(nodes):
            stuck = next(nodes[i] for i, count in enumerate(waiting) if count != 0)
            raise OnnxSlimError(f"{where}: the graph has a cycle (through {_label(stuck)})")


def _label(node: ir.Node) -> str:
    return f"node {node.name!r} ({node.op_type})" if node.name else f"an unnamed {node.op_type} node"


def _dependencies(node: ir.Node) -> Iterator[ir.Node]:
    """Producers of the node's inputs, and of the outer-scope values its subgraphs read."""
    for value in node.inputs:
        if value is not None and value.producer() is not None:
            yield value.producer()
    for attr in node.attributes.values():
        if not isinstance(attr, ir.Attr) or attr.type not in (ir.AttributeType.GRAPH, ir.AttributeType.GRAPHS):
            continue
        graphs = [attr.as_graph()] if attr.type == ir.AttributeType.GRAPH else attr.as_graphs()
        for graph in graphs:
            for inner in ir.traversal.RecursiveGraphIterator(graph):
                for value in inner.inputs:
                    if value is not None and value.producer() is not None:
                        yield value.producer()


def _check_external_data(model: ir.Model, where: str) -> None:
    """Every external tensor must exist inside the model's folder and be long enough."""
    for graph in model.graphs():
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


class _UnmapBehind:
    """An `ir.save` callback (called before each tensor is written) that unmaps the tensor written last.

    Copying mapped weights into the new file would otherwise leave every page of them resident.
    """

    def __init__(self) -> None:
        self.previous = None

    def __call__(self, tensor, info) -> None:
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


def _read_into_memory(model: ir.Model, file: Path) -> None:
    """Tensors stored in `file`, which a save is about to replace, are read into memory first.

    Only saving over the model's own data file needs this; the model stays usable after the save.
    """
    for graph in model.graphs():
        for value in graph.initializers.values():
            tensor = value.const_value
            if isinstance(tensor, ir.ExternalTensor) and same_file(tensor.path, file):
                value.const_value = ir.Tensor(tensor.numpy().copy(), name=tensor.name)
                tensor.release()


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write text to a temporary file beside `path`, then rename it into place."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as err:
        raise OnnxSlimError(f"{path}: cannot write: {err.strerror or err}")
    finally:
        tmp.unlink(missing_ok=True)


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when both paths name the same existing file."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def save(model: ir.Model, path: str | os.PathLike, external_data: bool | None = None) -> int:
    """Save atomically: write into a temporary folder beside `path`, then rename into place.

    `external_data=None` writes external data (`<name>.data` beside the model) when the weights
    exceed protobuf's 2 GB limit or when the model was loaded with external data (it keeps that
    layout, and no whole-model protobuf is built in memory). Returns the bytes written.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise OnnxSlimError(f"{path}: output folder {folder} does not exist")
    if external_data is None:
        external_data = weight_bytes(model) >= PROTOBUF_LIMIT - 64 * 1024**2 or has_external_data(model)
    data_name = f"{path.name}.data" if external_data else None
    try:
        staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=folder))
    except OSError as err:
        raise OnnxSlimError(f"{path}: cannot write to {folder}: {err.strerror}")
    try:
        with _terminate_as_interrupt():
            try:
                with _inlined_external_tensors(model, enabled=not data_name):
                    if data_name:
                        ir.save(model, staging / path.name, external_data=data_name, callback=_UnmapBehind())
                        release_external_data(model)
                    else:
                        ir.save(model, staging / path.name)
            except OSError as err:
                raise OnnxSlimError(f"{path}: cannot write: {err.strerror or err}")
            except ValueError as err:
                raise OnnxSlimError(f"{path}: cannot serialize the model: {first_line(err)}")
            written = sum(file.stat().st_size for file in staging.iterdir())
            if data_name:
                _read_into_memory(model, folder / data_name)
            with _signals_deferred():  # the model and its data file are replaced together or not at all
                try:
                    if data_name:
                        os.replace(staging / data_name, folder / data_name)
                    os.replace(staging / path.name, path)
                except OSError as err:
                    raise OnnxSlimError(f"{path}: cannot write: {err.strerror or err}")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return written


_DEFERRED = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM until the block ends (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _DEFERRED)
    done = False
    try:
        yield
        done = True
    finally:
        if done:  # the files are in place: a signal that came meanwhile no longer stops anything
            for signum in signal.sigpending() & set(_DEFERRED):
                signal.sigwait({signum})
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """While a save runs, SIGTERM unwinds like Ctrl-C, so the staging folder is removed (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except (ValueError, OSError):
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _inlined_external_tensors(
    model: ir.Model, enabled: bool = True, only: Callable[[ir.Graph, ir.Value], bool] | None = None
) -> Iterator[None]:
    """Serialize external tensors inline (their old relative locations mean nothing beside a new file).

    `only(graph, value)` picks which ones. The tensors are swapped back afterwards, so the model
    still maps its original files.
    """
    swapped = [
        (value, value.const_value)
        for graph in model.graphs()
        for value in graph.initializers.values()
        if enabled and isinstance(value.const_value, ir.ExternalTensor) and (only is None or only(graph, value))
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
    return _inlined_external_tensors(
        model, only=lambda graph, value: graph is not model.graph or value.const_value.nbytes <= _C_API_KEEPS
    )


def to_proto(model: ir.Model) -> onnx.ModelProto:
    """A self-contained ModelProto: external tensors are read in (their relative paths mean nothing in memory)."""
    if weight_bytes(model) >= PROTOBUF_LIMIT:
        raise OnnxSlimError("the model's weights exceed protobuf's 2 GB limit: save it to a file instead")
    with _inlined_external_tensors(model):
        return ir.to_proto(model)


def to_ir(model: str | os.PathLike | onnx.ModelProto | ir.Model) -> ir.Model:
    """Accept a path, a ModelProto or an onnx-ir Model, validated alike."""
    if isinstance(model, ir.Model):
        validate(model)
        return model
    if isinstance(model, onnx.ModelProto):
        # onnx-ir's tensors wrap the proto's TensorProtos, and renaming a value renames its tensor:
        # work on a copy so the caller's ModelProto is never changed.
        copy = onnx.ModelProto()
        copy.CopyFrom(model)
        converted = _deserialize(copy, "ModelProto")
        validate(converted)
        return converted
    if isinstance(model, (str, os.PathLike)):
        return load(model)
    raise OnnxSlimError(f"expected a path, onnx.ModelProto or onnx_ir.Model, got {type(model).__name__}")
