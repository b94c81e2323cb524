"""Reports as JSON files."""

from __future__ import annotations

import json
import os

from onnxslim.model.files import write_text_atomic


def write_json(data: dict, path: str | os.PathLike) -> None:
    """Write `data` as indented JSON, atomically."""
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")
