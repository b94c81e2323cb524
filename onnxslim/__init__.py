"""onnxslim: an ONNX graph-level optimizer (prune, fold, fuse, INT8) measured on ONNX Runtime CPU.

Python API:
    onnxslim.optimize(model, *, skip=(), size_threshold=None, check=True, ...) -> onnx_ir.Model
    onnxslim.save(model, path, external_data=None)
    onnxslim.slim(model, output=None, **options)  # OnnxSlim's calling convention
    onnxslim.quantize(model, calibration, config=None, **options) -> QuantizeResult  # INT8 (QDQ)
    onnxslim.benchmark(models, ...) -> BenchReport  # speed and drift on ONNX Runtime CPU

The heavy modules load on first use, so `import onnxslim` stays cheap.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING

from onnxslim.errors import CheckFailedError, OnnxSlimError, ReportWarning

if TYPE_CHECKING:
    import onnx
    import onnx_ir as ir

#: Public name -> the module that defines it.
_LAZY = {
    "benchmark": "onnxslim.bench",
    "load": "onnxslim.model.io",
    "optimize": "onnxslim.optimizer",
    "save": "onnxslim.optimizer",
    "quantize": "onnxslim.quantization",
    "QuantizeConfig": "onnxslim.quantization",
}

__all__ = ["CheckFailedError", "OnnxSlimError", "ReportWarning", "slim", *_LAZY]


def __getattr__(name: str):
    if name == "__version__":  # OnnxSlim's callers log it (ultralytics' export does)
        return _version()
    if name not in _LAZY:
        raise AttributeError(f"module 'onnxslim' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)


def _version() -> str:
    """The version of the installed onnxslim distribution ("unknown" when none is installed)."""
    import importlib.metadata

    try:
        return importlib.metadata.version("onnxslim")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def slim(
    model: str | os.PathLike | onnx.ModelProto | ir.Model,
    output: str | os.PathLike | None = None,
    *,
    external_data: bool | None = None,
    **options,
) -> onnx.ModelProto | None:
    """Optimize like `optimize`, then save to `output` and return None, or return the result as a
    self-contained `onnx.ModelProto`.

    OnnxSlim's keyword names work where they map: `output_model` (output), `model_check` (check),
    `model_check_inputs` (["name:file.npy"] check inputs or ["name:1,3,224,224"] dims),
    `input_shapes`, `inputs`, `outputs`, `skip_fusion_patterns` and `skip_optimizations` (skip),
    `save_as_external_data` (external_data); `dtype` ("fp32", "fp16") and `size_threshold` are the
    same. Any
    other name of OnnxSlim's raises OnnxSlimError naming what to use instead.
    """
    from onnxslim import compat, optimizer
    from onnxslim.model import io

    output = options.pop("output_model", output)
    if "save_as_external_data" in options:
        external_data = bool(options.pop("save_as_external_data")) or external_data
    options = compat.slim_options(options)
    result = optimizer.optimize(model, **options)
    if output is not None:
        optimizer.save(result, output, external_data)
        return None
    return io.to_proto(result)
