"""ONNX Runtime CPU sessions as onnxslim opens them: options by name, ORT's errors as one-line errors."""

from __future__ import annotations

import onnxruntime as ort

from onnxslim.errors import OnnxSlimError, first_line

#: ORT graph optimization levels by the names the CLI uses.
OPT_LEVELS = {
    "disable": "ORT_DISABLE_ALL",
    "basic": "ORT_ENABLE_BASIC",
    "extended": "ORT_ENABLE_EXTENDED",
    "all": "ORT_ENABLE_ALL",
}


def session_options(*, threads: int = 1, opt_level: str = "disable") -> ort.SessionOptions:
    """Intra-op `threads` (0: ORT's default), one inter-op thread, quiet logs, `opt_level` from OPT_LEVELS."""
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, OPT_LEVELS[opt_level])
    options.log_severity_level = 3
    return options


def create_session(source: str | bytes, options: ort.SessionOptions, what: str,
                   error: type[OnnxSlimError] = OnnxSlimError) -> ort.InferenceSession:
    """A CPU session on a model file or serialized model; a failure raises `error("{what}: {ORT's line}")`."""
    try:
        return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    except Exception as err:  # ORT's own errors carry no common type
        raise error(f"{what}: {first_line(err)}") from err
