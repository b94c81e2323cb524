"""The one way onnxslim runs ONNX Runtime: CPU sessions with options by name, quiet logs and
one-line errors."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort

from onnxslim.errors import OnnxSlimError, first_line
from onnxslim.model import io

#: ORT graph optimization levels by the names the CLI uses.
OPT_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}
QUIET = 4  # ORT logs fatal errors only: the others come back to us as exceptions, in one line

ort.set_default_logger_severity(QUIET)


def session_options(*, threads: int = 1, opt_level: str = "disable") -> ort.SessionOptions:
    """Intra-op `threads` (0: ORT's default), one inter-op thread, quiet logs, `opt_level`
    from OPT_LEVELS."""
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, OPT_LEVELS[opt_level])
    options.log_severity_level = QUIET
    return options


class Session:
    """A CPU session on a model file, serialized bytes, `onnx.ModelProto` or `onnx_ir.Model`.

    `extra_outputs` names inner tensors to expose after the model's own outputs. ORT's failures
    raise one line: at load `load_error` (default `error`), "{what} does not load in ONNX Runtime:
    {reason}";
    at run `error`, "{what} fails on ONNX Runtime: {reason}".
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
    ):
        self.what, self.error = what, error
        source = _source(model, extra_outputs)
        options = session_options(threads=threads, opt_level=opt_level)
        try:
            self.session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        except Exception as err:  # ORT's own errors carry no common type
            load_error = load_error or error
            raise load_error(f"{what} does not load in ONNX Runtime: {first_line(err)}") from err
        self.run_options = ort.RunOptions()
        self.run_options.log_severity_level = QUIET
        self.inputs = self.session.get_inputs()
        self.output_names = [output.name for output in self.session.get_outputs()]

    def run(self, feed: Mapping[str, object], names: Sequence[str] | None = None) -> list:
        """The outputs `names` (None: all) for `feed`."""
        try:
            return self.session.run(
                None if names is None else list(names), dict(feed), self.run_options
            )
        except Exception as err:  # ORT's own errors carry no common type
            raise self.error(f"{self.what} fails on ONNX Runtime: {first_line(err)}") from err

    def run_dict(self, feed: Mapping[str, object]) -> dict[str, np.ndarray]:
        """All outputs for `feed`, by name."""
        return dict(zip(self.output_names, self.run(feed)))


def _source(model, extra_outputs: Sequence[str]) -> str | bytes:
    """What ORT loads: a path as it is, anything else as bytes (with `extra_outputs` appended)."""
    if isinstance(model, (str, os.PathLike)) and not extra_outputs:
        return os.fspath(model)
    if isinstance(model, (str, os.PathLike)):
        model = onnx.load(os.fspath(model))
    if isinstance(model, ir.Model):
        model = io.to_proto(model)
    if not extra_outputs:
        return model if isinstance(model, bytes) else model.SerializeToString()
    proto = onnx.ModelProto.FromString(model) if isinstance(model, bytes) else model
    if proto is model:
        proto = onnx.ModelProto()
        proto.CopyFrom(model)
    existing = {output.name for output in proto.graph.output}
    proto.graph.output.extend(
        onnx.ValueInfoProto(name=n) for n in extra_outputs if n not in existing
    )
    return proto.SerializeToString()
