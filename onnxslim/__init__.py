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
    if name == "__version__":  # OnnxSlim's callers log it (ultralytics' export does)
        return _version()
    if name not in _LAZY:
        raise AttributeError(f"module 'onnxslim' has no attribute {name!r}")
    return getattr(importlib.import_module(_LAZY[name]), name)


def _version() -> str:
    """The installed distribution's version ("unknown" when run from a source tree)."""
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
    from onnxslim import optimizer
    from onnxslim.model import io

    output = options.pop("output_model", output)
    if "save_as_external_data" in options:
        external_data = bool(options.pop("save_as_external_data")) or external_data
    options = _onnxslim_options(options)
    result = optimizer.optimize(model, **options)
    if output is not None:
        optimizer.save(result, output, external_data)
        return None
    return io.to_proto(result)


def _onnxslim_options(options: dict) -> dict:
    """`slim()` keywords in OnnxSlim's spelling as `optimize` options; OnnxSlimError otherwise."""
    from onnxslim import compat

    out = dict(options)
    for name, instead in compat.UNSUPPORTED.items():
        if name in out:
            raise OnnxSlimError(f"slim({name}=...) is OnnxSlim's option: {instead}")
    if "model_check" in out:
        out["check"] = bool(out.pop("model_check"))
    skip = list(_as_list(out.pop("skip", ())))
    skip += compat.skip_passes(
        _as_list(out.pop("skip_optimizations", None)),
        _as_list(out.pop("skip_fusion_patterns", None)),
    )
    if skip:
        out["skip"] = tuple(skip)
    dtype = out.get("dtype")
    if dtype is not None and str(dtype).lower() not in ("fp32", "float32", "fp16", "float16"):
        raise OnnxSlimError(f"slim(dtype={dtype!r}): choose fp32 or fp16; for INT8 use quantize()")
    if "model_check_inputs" in out:
        out.update(_check_inputs(_as_list(out.pop("model_check_inputs"))))
    return out


def _as_list(value) -> list:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _check_inputs(items: list[str]) -> dict:
    """OnnxSlim's model_check_inputs: "name:file.npy" (an array) or "name:1,3,224,224" (dims)."""
    import numpy as np

    arrays, dims = {}, []
    for item in items:
        name, _, value = item.rpartition(":")
        if value.lower().endswith(".npy"):
            arrays[name] = np.load(value)
        else:
            dims.append(item)
    return {**({"check_inputs": [arrays]} if arrays else {}), **({"shapes": dims} if dims else {})}
