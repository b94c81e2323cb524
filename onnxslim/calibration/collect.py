"""Run the float model on ORT once per sample and stream the tensors to observe into histograms."""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import numpy as np
import onnx
import onnx_ir as ir

from onnxslim import io, runtime
from onnxslim.calibration.histogram import DEFAULT_BINS, Histogram
from onnxslim.errors import OnnxSlimError, first_line

OBSERVING = "ONNX Runtime fails while observing the float model's tensors"


class OrtSession:
    """A CPU ONNX Runtime session on ``model`` (bytes, ModelProto or ir.Model) whose outputs are its own
    followed by ``names`` (observed with basic graph optimizations only). ORT's errors, at load or run,
    become ``error`` with the one-line message ``"{what}: {ORT's first line}"``."""

    def __init__(self, model: bytes | onnx.ModelProto | ir.Model, names: Sequence[str] = (), *, threads: int = 0,
                 what: str = "ONNX Runtime fails on the model", error: type[OnnxSlimError] = OnnxSlimError):
        self.what, self.error = what, error
        proto = io.to_proto(model) if isinstance(model, ir.Model) else model
        if names:
            proto = onnx.ModelProto.FromString(proto if isinstance(proto, bytes) else proto.SerializeToString())
            existing = {o.name for o in proto.graph.output}
            proto.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names if n not in existing)
        options = runtime.session_options(threads=threads, opt_level="basic" if names else "all")
        data = proto if isinstance(proto, bytes) else proto.SerializeToString()
        self.session = runtime.create_session(data, options, what, error)
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, feeds: Mapping[str, np.ndarray], names: Sequence[str] | None = None) -> list:
        """The outputs ``names`` (None: all) for ``feeds``."""
        return self._call(self.session.run, None if names is None else list(names), dict(feeds))

    def _call(self, function, *args, **kwargs):
        try:
            return function(*args, **kwargs)
        except Exception as err:  # ORT's own errors carry no common type
            raise self.error(f"{self.what}: {first_line(err)}") from err


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
    session = OrtSession(model, names, what=OBSERVING)
    index = {n: session.output_names.index(n) for n in names}
    stats = {n: Histogram(bins=bins) for n in names}
    count = 0
    with _progress(progress, total, "calibrating") as advance:
        for sample in samples:
            outputs = session.run(sample)
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
    session = OrtSession(model, names, what=OBSERVING)
    sums: dict[str, np.ndarray] = {}
    counts = dict.fromkeys(names, 0)
    with _progress(progress, total, "channel means") as advance:
        for sample in samples:
            outputs = session.run(sample)
            for name in names:
                value = np.moveaxis(np.asarray(outputs[session.output_names.index(name)], np.float64), axes[name], 0)
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
