"""Facts about a model's graphs that every module reads: the default opset, supported opsets."""

from __future__ import annotations

from collections.abc import Mapping

MIN_OPSET = 7


def default_opset(opset_imports: Mapping[str, int]) -> int | None:
    """The default ONNX opset version, imported under "" or its alias "ai.onnx"; None if neither."""
    version = opset_imports.get("")
    return version if version is not None else opset_imports.get("ai.onnx")
