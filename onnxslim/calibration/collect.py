"""Run the float model on ORT once per sample and stream the tensors to observe into histograms."""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort

from onnxslim.calibration.histogram import DEFAULT_BINS, Histogram
from onnxslim.errors import OnnxSlimError


def observing_session(model: ir.Model | onnx.ModelProto, names: Sequence[str], *, threads: int = 0):
    """An ORT session on ``model`` whose outputs are its own outputs followed by ``names``."""
    proto = ir.to_proto(model) if isinstance(model, ir.Model) else onnx.ModelProto.FromString(model.SerializeToString())
    existing = {o.name for o in proto.graph.output}
    proto.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names if n not in existing)
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
    return ort.InferenceSession(proto.SerializeToString(), so, providers=["CPUExecutionProvider"])


def collect_statistics(
    model: ir.Model | onnx.ModelProto,
    samples: Iterable[Mapping[str, np.ndarray]],
    names: Sequence[str],
    *,
    bins: int = DEFAULT_BINS,
    progress: bool = True,
    total: int | None = None,
) -> dict[str, Histogram]:
    """Histograms (with exact min/max) of the float tensors ``names`` over all ``samples``.

    Memory is bounded by one sample's activations plus ``bins`` counters per tensor.
    """
    names = list(dict.fromkeys(names))
    session = observing_session(model, names)
    out_names = [o.name for o in session.get_outputs()]
    index = {n: out_names.index(n) for n in names}
    stats = {n: Histogram(bins=bins) for n in names}
    count = 0
    with _progress(progress, total, "calibrating") as advance:
        for sample in samples:
            outputs = session.run(None, dict(sample))
            for n, i in index.items():
                value = outputs[i]
                if isinstance(value, np.ndarray) and value.dtype.kind == "f":
                    stats[n].update(value)
            count += 1
            advance()
    if count == 0:
        raise OnnxSlimError("calibration data is empty")
    return stats


def collect_channel_means(
    model: ir.Model | onnx.ModelProto,
    samples: Iterable[Mapping[str, np.ndarray]],
    axes: Mapping[str, int],
    *,
    progress: bool = True,
    total: int | None = None,
) -> dict[str, np.ndarray]:
    """Mean of each float tensor ``name`` per index of its axis ``axes[name]`` (over every other axis
    and all samples), in float64; memory is one running sum per channel."""
    names = list(axes)
    session = observing_session(model, names)
    out_names = [o.name for o in session.get_outputs()]
    sums: dict[str, np.ndarray] = {}
    counts = dict.fromkeys(names, 0)
    with _progress(progress, total, "channel means") as advance:
        for sample in samples:
            outputs = session.run(None, dict(sample))
            for name in names:
                value = np.moveaxis(np.asarray(outputs[out_names.index(name)], np.float64), axes[name], 0)
                flat = value.reshape(value.shape[0], -1)
                sums[name] = sums.get(name, 0.0) + flat.sum(axis=1)
                counts[name] += flat.shape[1]
            advance()
    if not sums:
        raise OnnxSlimError("calibration data is empty")
    return {name: sums[name] / counts[name] for name in names}


class _progress:
    """A rich progress bar (or nothing) exposing a callable that advances it by one sample."""

    def __init__(self, enabled: bool, total: int | None, label: str):
        self.enabled, self.total, self.label = enabled, total, label
        self._bar = None

    def __enter__(self):
        if not self.enabled:
            return lambda: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TimeElapsedColumn(), transient=True)
        self._bar.start()
        task = self._bar.add_task(self.label, total=self.total)
        return lambda: self._bar.advance(task)

    def __exit__(self, *exc):
        if self._bar is not None:
            self._bar.stop()
        return False
