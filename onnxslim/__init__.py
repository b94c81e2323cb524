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

from onnxslim.errors import CheckFailedError, OnnxSlimError

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

__all__ = ["CheckFailedError", "OnnxSlimError", "slim", *_LAZY]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'onnxslim' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)


def slim(
    model: str | os.PathLike | onnx.ModelProto | ir.Model,
    output: str | os.PathLike | None = None,
    *,
    external_data: bool | None = None,
    **options,
) -> onnx.ModelProto | None:
    """Optimize like `optimize`, then save to `output` and return None, or return the result as a
    self-contained `onnx.ModelProto`."""
    from onnxslim import optimizer
    from onnxslim.model import io

    result = optimizer.optimize(model, **options)
    if output is not None:
        optimizer.save(result, output, external_data)
        return None
    return io.to_proto(result)
