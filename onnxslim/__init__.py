"""onnxslim: an ONNX graph-level optimizer (prune, fold, fuse, INT8) measured on ONNX Runtime CPU.

Python API:
    onnxslim.optimize(model, *, skip=(), size_threshold=None, check=True) -> onnx_ir.Model
    onnxslim.save(model, path, external_data=None)
    onnxslim.slim(model, output=None, **options)  # OnnxSlim's calling convention
    onnxslim.benchmark(models, ...) -> BenchReport  # speed and drift on ONNX Runtime CPU
"""

from __future__ import annotations

import os

import onnx
import onnx_ir as ir

from onnxslim.bench import benchmark
from onnxslim.errors import CheckFailedError, OnnxSlimError
from onnxslim.io import load
from onnxslim.pipeline import optimize, save

__all__ = ["CheckFailedError", "OnnxSlimError", "benchmark", "load", "optimize", "save", "slim"]


def slim(
    model: str | os.PathLike | onnx.ModelProto | ir.Model,
    output: str | os.PathLike | None = None,
    *,
    external_data: bool | None = None,
    **options,
) -> onnx.ModelProto | None:
    """Optimize like `optimize`; save to `output` and return None, or return an `onnx.ModelProto`."""
    result = optimize(model, **options)
    if output is not None:
        save(result, output, external_data)
        return None
    return ir.to_proto(result)
