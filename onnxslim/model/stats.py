"""Model statistics for the before/after report."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import onnx_ir as ir


@dataclass
class ModelStats:
    """Op counts (all graphs, subgraphs included), parameters and file size of one model."""

    nodes: int
    op_counts: dict[str, int] = field(default_factory=dict)
    parameters: int = 0
    weight_bytes: int = 0
    file_bytes: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def model_stats(model: ir.Model, path: str | os.PathLike | None = None) -> ModelStats:
    """Count nodes by op type and constant elements (initializers and Constant nodes)."""
    ops: Counter[str] = Counter()
    parameters = weight_bytes = 0
    for node in ir.traversal.RecursiveGraphIterator(model.graph):
        ops[
            node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"
        ] += 1
        if (
            node.op_type == "Constant"
            and node.domain in ("", "ai.onnx")
            and "value" in node.attributes
        ):
            tensor = node.attributes["value"].as_tensor()
            parameters += tensor.size
            weight_bytes += tensor.nbytes
    for graph in model.graphs():
        for value in graph.initializers.values():
            if value.const_value is not None:
                parameters += value.const_value.size
                weight_bytes += value.const_value.nbytes
    return ModelStats(
        nodes=sum(ops.values()),
        op_counts=dict(sorted(ops.items(), key=lambda kv: (-kv[1], kv[0]))),
        parameters=parameters,
        weight_bytes=weight_bytes,
        file_bytes=file_bytes(model, path) if path is not None else None,
    )


def file_bytes(model: ir.Model, path: str | os.PathLike) -> int:
    """Size of the model file at `path` plus the external files `model` references beside it."""
    path = Path(path)
    total = path.stat().st_size
    locations = {
        value.const_value.location
        for graph in model.graphs()
        for value in graph.initializers.values()
        if isinstance(value.const_value, ir.ExternalTensor)
    }
    return total + sum(
        (path.parent / loc).stat().st_size for loc in locations if (path.parent / loc).is_file()
    )
