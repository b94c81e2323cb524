"""The one way onnxslim runs ONNX Runtime: CPU sessions with options by name, quiet logs and
one-line errors.

Tensors of the types numpy lacks (bfloat16, float8, int4, int2 ...) go in and come out as
ml_dtypes arrays: ORT's numpy bridge cannot hold them, so they cross as OrtValues of ONNX's
(packed) bytes.
"""

from __future__ import annotations

import ctypes
import dataclasses
import gc
import os
import signal
import subprocess
import sys
import tempfile
import weakref
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
from onnx import numpy_helper

from onnxslim.cpu import allowed_cores
from onnxslim.errors import OnnxSlimError, first_line
from onnxslim.model import io
from onnxslim.model.graph import proto_graphs, proto_readers

#: ORT graph optimization levels by the names the CLI uses.
OPT_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}
#: A session on more bytes than this first collects cyclic garbage (earlier models' graphs).
BIG_MODEL_BYTES = 16 * 2**20
QUIET = 4  # ORT logs fatal errors only: the others come back to us as exceptions, in one line

ort.set_default_logger_severity(QUIET)


def session_options(
    *, threads: int = 1, opt_level: str = "disable", prepack: bool = True
) -> ort.SessionOptions:
    """Intra-op `threads` (0: as many as `cpu.allowed_cores` says), one inter-op thread, quiet
    logs, `opt_level` from OPT_LEVELS. `prepack=False` leaves constant weights unpacked: a session
    that runs once or twice (a check) loads much faster, and ORT then maps external weights
    without copying them."""
    options = ort.SessionOptions()
    if not prepack:
        options.add_session_config_entry("session.disable_prepacking", "1")
    threads = threads or allowed_cores()
    if threads:
        options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, OPT_LEVELS[opt_level])
    options.log_severity_level = QUIET
    return options


#: The sessions alive, for `terminate_runs`.
_LIVE: weakref.WeakSet[Session] = weakref.WeakSet()


def terminate_runs() -> None:
    """Stop the runs under way of every live session, and their later ones (ORT's terminate
    flag, read between nodes): an interrupted command's check on the original ends at once."""
    for session in list(_LIVE):
        session.run_options.terminate = True


class Session:
    """A CPU session on a model file, serialized bytes, `onnx.ModelProto` or `onnx_ir.Model`.

    `extra_outputs` names inner tensors to expose after the model's own outputs; `save_optimized`
    is a path where ORT writes the graph it runs after its `opt_level` optimizations; `prepack`: see
    `session_options`. ORT's failures raise one line: at load `load_error` (default `error`),
    "{what} does not load in ONNX Runtime: {reason}"; at run `error`, "{what} fails on ONNX
    Runtime: {reason}".
    """

    def __init__(
        self,
        model: str | os.PathLike | bytes | onnx.ModelProto | ir.Model,
        *,
        threads: int = 1,
        opt_level: str = "disable",
        extra_outputs: Sequence[str] = (),
        what: str = "the model",
        error: type[OnnxSlimError] = OnnxSlimError,
        load_error: type[OnnxSlimError] | None = None,
        save_optimized: str | os.PathLike | None = None,
        prepack: bool = True,
    ):
        self.what, self.error = what, error
        source = _source(model, extra_outputs)
        if isinstance(source, bytes) and len(source) > BIG_MODEL_BYTES:  # earlier models' graphs
            gc.collect()  # are cyclic garbage: freed before ORT copies this one
        options = session_options(threads=threads, opt_level=opt_level, prepack=prepack)
        if save_optimized is not None:
            options.optimized_model_filepath = os.fspath(save_optimized)
        try:
            self.session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        except Exception as err:  # ORT's own errors carry no common type
            load_error = load_error or error
            raise load_error(f"{what} does not load in ONNX Runtime: {first_line(err)}") from err
        self.run_options = ort.RunOptions()
        self.run_options.log_severity_level = QUIET
        _LIVE.add(self)
        self.inputs = self.session.get_inputs()
        outputs = self.session.get_outputs()
        self.output_names = [output.name for output in outputs]
        #: Outputs numpy has no dtype for: they come back through OrtValues.
        self._ml_outputs = {output.name for output in outputs if _ml_dtypes_type(output.type)}

    def close(self) -> None:
        """Let ORT's session and its memory go now (a traceback may keep this object alive); it
        runs nothing after."""
        self.session = None

    def run(self, feed: Mapping[str, object], names: Sequence[str] | None = None) -> list:
        """The outputs `names` (None: all) for `feed`: numpy arrays (ml_dtypes ones for bfloat16,
        float8, int4 ...), lists for sequences, None for empty optionals. `feed` may hold ml_dtypes
        arrays, and OrtValues."""
        wanted = self.output_names if names is None else list(names)
        try:
            feed = ort_feeds(feed)
            if self._ml_outputs.intersection(wanted):
                return self._run_ort_values(feed, wanted)
            return self.session.run(wanted, feed, self.run_options)
        except Exception as err:  # noqa: BLE001 ORT's own errors carry no common type
            # (without its traceback, whose frames hold ORT's session: see `close`)
            message = f"{self.what} fails on ONNX Runtime: {first_line(err)}"
            raise self.error(message) from err.with_traceback(None)

    def _run_ort_values(self, feed: dict[str, Any], names: list[str]) -> list:
        """A run whose outputs ORT cannot give as numpy (the feeds must then be tensors)."""
        values = {}
        for name, value in feed.items():
            if isinstance(value, np.ndarray):
                value = ort.OrtValue.ortvalue_from_numpy(value)
            elif not isinstance(value, ort.OrtValue):
                raise ValueError(
                    f"input {name!r} is a sequence or an optional, which ONNX Runtime cannot take "
                    "in a run giving bfloat16, float8 or int4 outputs"
                )
            values[name] = value
        outputs = self.session.run_with_ort_values(names, values, self.run_options)
        return [_from_ort_value(value) for value in outputs]

    def run_dict(self, feed: Mapping[str, object]) -> dict[str, np.ndarray]:
        """All outputs for `feed`, by name."""
        return dict(zip(self.output_names, self.run(feed)))


#: What `session_crash` runs in a child process: ORT building a CPU session on the file argv[1] at
#: the level argv[2] (an OPT_LEVELS value), as an ORT user would by default (one thread).
CRASH_PROBE = """
import sys, onnxruntime as ort
options = ort.SessionOptions()
options.intra_op_num_threads = 1
options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, sys.argv[2])
ort.InferenceSession(sys.argv[1], options, providers=["CPUExecutionProvider"])
"""


#: The signals a crashing ONNX Runtime dies of (SIGKILL, say, is the system's: out of memory).
CRASH_SIGNALS = frozenset(
    getattr(signal, name)
    for name in ("SIGSEGV", "SIGBUS", "SIGILL", "SIGABRT", "SIGFPE")
    if hasattr(signal, name)  # Windows has no SIGBUS: its crashes are WINDOWS_CRASHES
)
#: Windows' exit codes of a process that crashed, by the name of the exception (NTSTATUS).
WINDOWS_CRASHES = {
    0xC0000005: "ACCESS_VIOLATION",
    0xC000001D: "ILLEGAL_INSTRUCTION",
    0xC0000094: "INTEGER_DIVIDE_BY_ZERO",
    0xC00000FD: "STACK_OVERFLOW",
    0xC0000374: "HEAP_CORRUPTION",
    0xC0000409: "STACK_BUFFER_OVERRUN or abort",
}
CRASH_PROBE_SECONDS = 600


def session_crash(path: str | os.PathLike, opt_level: str = "all") -> str | None:
    """The signal (e.g. "SIGSEGV") or Windows exception (WINDOWS_CRASHES) of ONNX Runtime crashing
    as it builds a CPU session on the model file `path` at `opt_level`, tried in a child process
    (a crash there cannot take us down); None when it does not crash: it builds, ORT refuses the
    model with an error, the child is killed otherwise or takes longer than CRASH_PROBE_SECONDS."""
    try:
        child = subprocess.run(
            [sys.executable, "-c", CRASH_PROBE, os.fspath(path), OPT_LEVELS[opt_level]],
            capture_output=True,
            check=False,
            timeout=CRASH_PROBE_SECONDS,
        )
    except subprocess.TimeoutExpired:
        return None
    if -child.returncode in CRASH_SIGNALS:
        return signal.Signals(-child.returncode).name
    return WINDOWS_CRASHES.get(child.returncode & 0xFFFFFFFF)


@dataclasses.dataclass(frozen=True)
class OrtGraph:
    """What ORT runs on CPU after its optimizations: op types by count (`ort_op_counts`), and the
    inputs of the main graph's constant-mode Pads it runs apart before a Conv, not fused."""

    counts: Counter[str]
    pads_apart: frozenset[str]


def ort_graph(
    model: str | os.PathLike | bytes | onnx.ModelProto | ir.Model, opt_level: str = "all"
) -> OrtGraph:
    """The graph ORT runs on CPU after its `opt_level` optimizations (what
    `SessionOptions.optimized_model_filepath` writes). Deterministic: no timing, no inputs."""
    with tempfile.TemporaryDirectory(prefix="onnxslim-ort-") as tmp:
        path = os.path.join(tmp, "optimized.onnx")
        Session(model, opt_level=opt_level, save_optimized=path, prepack=False)  # never run
        graph = onnx.load(path, load_external_data=False).graph
    counts = Counter(_op_name(node) for body in proto_graphs(graph) for node in body.node)
    return OrtGraph(counts, _pads_before_convs(graph))


def _pads_before_convs(graph: onnx.GraphProto) -> frozenset[str]:
    """The inputs of the constant-mode Pads whose one reader is a Conv (past ORT's blocked-layout
    reorder): those ORT did not fuse into it."""
    readers = proto_readers(graph)

    def only_reader(value: str) -> onnx.NodeProto | None:
        found = readers.get(value, [])
        return found[0] if len(found) == 1 else None

    kept = set()
    for node in graph.node:
        mode = next((a.s for a in node.attribute if a.name == "mode"), b"constant")
        if _op_name(node) != "Pad" or mode != b"constant":
            continue
        reader = only_reader(node.output[0])
        if reader is not None and _op_name(reader) == f"{_LAYOUT}ReorderInput":
            reader = only_reader(reader.output[0])
        if reader is not None and reader.op_type == "Conv":
            kept.add(node.input[0])
    return frozenset(kept)


def ort_op_counts(
    model: str | os.PathLike | bytes | onnx.ModelProto | ir.Model, opt_level: str = "all"
) -> Counter[str]:
    """Op types of the graph ORT runs on CPU after its `opt_level` optimizations (`ort_graph`),
    subgraphs included; ops outside the default domain as "domain.Op"
    (com.microsoft.SkipLayerNormalization)."""
    return ort_graph(model, opt_level).counts


#: ORT's fused CPU kernels known to run slower than the ops they replace, and why: onnxslim keeps
#: ORT from them on purpose (the residual-sum pass), so fewer of them is no loss.
SLOWER_OPS = {
    "com.microsoft.SkipLayerNormalization": (
        "ORT 1.32's fused CPU kernel is slower than the LayerNormalization + Add it replaces "
        "(issue #11: a 6-layer BERT encoder ran 1.09x slower)"
    ),
    "com.microsoft.SkipSimplifiedLayerNormalization": "the same kernel family as above",
}
#: ORT's blocked-layout ops (its convs and the reorders around them): layout, not fusion.
_LAYOUT = "com.microsoft.nchwc."


def lost_fusions(original: Counter[str], ours: Counter[str]) -> dict[str, tuple[int, int]]:
    """ORT's fused kernels (its com.microsoft ops: Gelu, FusedConv, ...) it runs fewer of for ours
    than for the original (`ort_op_counts` of each), as op -> (original's count, ours), when it
    also runs more nodes in all for ours: a rewrite hid a pattern from ORT's fusions, and the
    result may run slower. ORT's blocked-layout ops (nchwc) and SLOWER_OPS do not count, nor do
    its layout reorders towards the totals. Empty: nothing lost."""

    def nodes(counts: Counter[str]) -> int:
        return sum(n for op, n in counts.items() if not op.startswith(f"{_LAYOUT}Reorder"))

    if nodes(ours) <= nodes(original):
        return {}
    return {
        op: (count, ours[op])
        for op, count in sorted(original.items())
        if op.startswith("com.microsoft.")
        and not op.startswith(_LAYOUT)
        and op not in SLOWER_OPS
        and ours[op] < count
    }


#: ORT's integer kernels, which its QDQ fusions (and quantize_dynamic) put in a model's place.
INTEGER_KERNELS = frozenset(
    {"QGemm", "MatMulInteger", "ConvInteger", "MatMulIntegerToFloat", "QAttention"}
    | {"DynamicQuantizeMatMul", "QEmbedLayerNormalization"}
)


def gained_integer_kernels(
    original: Counter[str], ours: Counter[str]
) -> dict[str, tuple[int, int]]:
    """ORT's integer kernels (QLinear*, INTEGER_KERNELS) it runs more of for ours than for the
    original, op -> (original's count, ours): its QDQ fusions took nodes of ours they could not
    take in the original (a shape now static), and those compute with other rounding than the
    QDQ math itself."""
    return {
        op: (original[op], count)
        for op, count in sorted(ours.items())
        if (op.rpartition(".")[2].startswith("QLinear") or op.rpartition(".")[2] in INTEGER_KERNELS)
        and count > original[op]
    }


def _op_name(node: onnx.NodeProto) -> str:
    return f"{node.domain}.{node.op_type}" if node.domain not in ("", "ai.onnx") else node.op_type


def ort_feeds(feeds: Mapping[str, Any]) -> dict[str, Any]:
    """`feeds` as `InferenceSession.run` takes them: arrays of an ml_dtypes type (bfloat16, float8,
    int4 ...) become OrtValues holding ONNX's packed bytes; sequences stay lists, optionals None.
    ValueError for a dtype ORT has no tensor type for."""
    return {name: _ort_value(value) for name, value in feeds.items()}


def _ort_value(value: Any) -> Any:
    if isinstance(value, list):
        return [_ort_value(item) for item in value]
    if not isinstance(value, np.ndarray) or value.dtype.type.__module__ != "ml_dtypes":
        return value
    tensor = numpy_helper.from_array(value)
    ort_value = ort.OrtValue.ortvalue_from_shape_and_type(list(value.shape), tensor.data_type)
    if len(tensor.raw_data) != ort_value.tensor_size_in_bytes():
        raise ValueError(f"ONNX Runtime does not take {value.dtype} tensors")
    ctypes.memmove(ort_value.data_ptr(), tensor.raw_data, len(tensor.raw_data))
    return ort_value


def _ml_dtypes_type(ort_type: str) -> bool:
    """Whether ORT's type name (`tensor(bfloat16)`) is a tensor type numpy has no dtype for."""
    if not ort_type.startswith("tensor("):
        return False
    elem_type = getattr(onnx.TensorProto, ort_type[len("tensor(") : -1].upper(), None)
    if not isinstance(elem_type, int):
        return False
    try:
        return onnx.helper.tensor_dtype_to_np_dtype(elem_type).type.__module__ == "ml_dtypes"
    except (KeyError, ValueError, TypeError):
        return False


def _from_ort_value(value: ort.OrtValue) -> Any:
    """An output OrtValue as numpy; a tensor of a type numpy lacks as ml_dtypes, from its bytes."""
    if not value.is_tensor():
        return value.numpy()
    elem_type = value.element_type()
    if onnx.helper.tensor_dtype_to_np_dtype(elem_type).type.__module__ != "ml_dtypes":
        return value.numpy()
    raw = ctypes.string_at(value.data_ptr(), value.tensor_size_in_bytes())
    tensor = onnx.helper.make_tensor("", elem_type, value.shape(), raw, raw=True)
    return numpy_helper.to_array(tensor)


def _source(model, extra_outputs: Sequence[str]) -> str | bytes:
    """What ORT loads: a path as it is, anything else as bytes (with `extra_outputs` appended)."""
    if isinstance(model, (str, os.PathLike)) and not extra_outputs:
        return os.fspath(model)
    callers = isinstance(model, onnx.ModelProto)  # left as it is
    if isinstance(model, (str, os.PathLike)):
        model = onnx.load(os.fspath(model))
    if isinstance(model, ir.Model):
        model = io.to_proto(model)
    if not extra_outputs:
        return model if isinstance(model, bytes) else model.SerializeToString()
    proto = onnx.ModelProto.FromString(model) if isinstance(model, bytes) else model
    if callers:
        proto = onnx.ModelProto()
        proto.CopyFrom(model)
    existing = {output.name for output in proto.graph.output}
    proto.graph.output.extend(
        onnx.ValueInfoProto(name=n) for n in extra_outputs if n not in existing
    )
    return proto.SerializeToString()
