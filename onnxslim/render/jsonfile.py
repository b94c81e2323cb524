"""Reports as JSON files."""

from __future__ import annotations

import json
import math
import os

from onnxslim.model.files import write_text_atomic


def write_json(data: dict, path: str | os.PathLike) -> None:
    """Write `data` as indented JSON, atomically; an infinite or NaN float (an SNR of identical
    outputs, the noise a node does not add) is written null, as strict JSON readers require."""
    write_text_atomic(path, json.dumps(_finite(data), indent=2, allow_nan=False) + "\n")


def _finite(value):
    """`value` with every non-finite float inside it replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value
