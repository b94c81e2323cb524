"""Opset conversion with onnx's version converter: old models up to what the passes read, or to a
target the user names."""

from __future__ import annotations

import re

import onnx
import onnx_ir as ir
from onnx import version_converter

from onnxslim.errors import OnnxSlimError, first_line
from onnxslim.model import io
from onnxslim.model.graph import default_opset


def convert(model: ir.Model, target: int) -> ir.Model:
    """`model` with its default opset converted to `target`; a user error when onnx cannot."""
    current = default_opset(model.opset_imports)
    if current is None:
        raise OnnxSlimError("the model imports no default ONNX opset: there is nothing to convert")
    newest = onnx.defs.onnx_opset_version()
    if not 1 <= target <= newest:
        raise OnnxSlimError(
            f"target opset {target} is not one this onnx release knows (1..{newest})"
        )
    try:
        proto = version_converter.convert_version(io.to_proto(model), target)
    except Exception as err:
        raise OnnxSlimError(
            f"cannot convert the model from opset {current} to {target}: {_why(err, target)}"
        ) from err
    return io.from_proto(proto, f"the model converted to opset {target}")


def _why(err: Exception, target: int) -> str:
    """The converter's error without its C++ source line and assertion text."""
    text = first_line(err)
    missing = re.search(r"No Adapter (To|From) Version \$(\d+) for (\w+)", text)
    if missing:
        direction, version, op = missing.groups()
        return (
            f"onnx's version converter has no rule for {op} {direction.lower()} its opset "
            f"{version} form; export the model at opset {target} instead"
        )
    newer = re.search(r"No Previous Version of (\w+) exists", text)
    if newer:
        return (
            f"{newer[1]} has no form before the opset that introduced it, above {target}; "
            f"export the model at opset {target} instead"
        )
    return re.sub(r"^\S+:\d+: .*?: Assertion `.*?` failed: ", "", text)
