"""Run the float model on ORT once per sample and stream the tensors to observe into histograms."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import onnx
import onnx_ir as ir

from onnxslim.errors import OnnxSlimError
from onnxslim.quantization.calibration.histogram import DEFAULT_BINS, Histogram
from onnxslim.render.progress import progress as progress_bar
from onnxslim.runtime import Session

OBSERVING = "the float model (observing tensors for calibration)"


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
    session = Session(model, threads=0, opt_level="basic", extra_outputs=names, what=OBSERVING)
    index = {n: session.output_names.index(n) for n in names}
    stats = {n: Histogram(bins=bins) for n in names}
    count = 0
    with progress_bar("calibrating: observing activations", total, progress) as bar:
        for sample in samples:
            outputs = session.run(sample)
            for n, i in index.items():
                value = outputs[i]
                if isinstance(value, np.ndarray) and value.dtype.kind == "f":
                    stats[n].update(value)
            count += 1
            bar.advance()
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
    """Mean of each float tensor ``name`` per index of its axis ``axes[name]`` (over every other
    axis and all samples), in float64; memory is one running sum per channel."""
    names = list(axes)
    session = Session(model, threads=0, opt_level="basic", extra_outputs=names, what=OBSERVING)
    sums: dict[str, np.ndarray] = {}
    counts = dict.fromkeys(names, 0)
    with progress_bar("bias correction: channel means", total, progress) as bar:
        for sample in samples:
            outputs = session.run(sample)
            for name in names:
                value = np.moveaxis(
                    np.asarray(outputs[session.output_names.index(name)], np.float64), axes[name], 0
                )
                flat = value.reshape(value.shape[0], -1)
                sums[name] = sums.get(name, 0.0) + flat.sum(axis=1)
                counts[name] += flat.shape[1]
            bar.advance()
    if not sums:
        raise OnnxSlimError("calibration data is empty")
    return {name: sums[name] / counts[name] for name in names}


def collect_hessians(
    model: ir.Model | onnx.ModelProto,
    samples: Iterable[Mapping[str, np.ndarray]],
    layers: Mapping[str, tuple[str, Callable[[np.ndarray], np.ndarray]]],
    *,
    progress: bool = True,
    total: int | None = None,
) -> dict[str, np.ndarray]:
    """``H = sum X X^T`` (float64) per layer over all ``samples``: ``layers[key] = (tensor,
    columns)`` with ``columns(value)`` turning the float tensor into the layer's input columns
    ``X`` (``[inputs, positions]``); memory is one ``inputs x inputs`` matrix per layer."""
    names = sorted({tensor for tensor, _ in layers.values()})
    session = Session(model, threads=0, opt_level="basic", extra_outputs=names, what=OBSERVING)
    index = {n: session.output_names.index(n) for n in names}
    sums: dict[str, np.ndarray] = {}
    with progress_bar("GPTQ: layer input statistics", total, progress) as bar:
        for sample in samples:
            outputs = session.run(sample)
            for key, (tensor, columns) in layers.items():
                x = columns(np.asarray(outputs[index[tensor]]))
                sums[key] = sums.get(key, 0.0) + x @ x.T
            bar.advance()
    if not sums:
        raise OnnxSlimError("calibration data is empty")
    return sums
