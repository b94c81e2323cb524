"""Run the float model on ORT once per sample and stream the tensors to observe into histograms."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence

import numpy as np
import onnx
import onnx_ir as ir

from onnxslim.errors import OnnxSlimError
from onnxslim.quantization.calibration.histogram import DEFAULT_BINS, Histogram
from onnxslim.render.progress import progress_bar
from onnxslim.runtime import Session

OBSERVING = "the float model (observing tensors for calibration)"


def _observed(
    model: ir.Model | onnx.ModelProto,
    samples: Iterable[Mapping[str, np.ndarray]],
    names: Sequence[str],
    label: str,
    progress: bool,
    total: int | None,
) -> Iterator[dict[str, np.ndarray]]:
    """Per sample, the values of the tensors ``names`` as the float model computes them on ORT,
    under a progress bar ``label``; an error when there are no samples."""
    names = list(dict.fromkeys(names))
    session = Session(model, threads=0, opt_level="basic", extra_outputs=names, what=OBSERVING)
    index = {n: session.output_names.index(n) for n in names}
    count = 0
    with progress_bar(label, total, progress) as bar:
        for sample in samples:
            outputs = session.run(sample)
            yield {n: outputs[i] for n, i in index.items()}
            count += 1
            bar.advance()
    if count == 0:
        raise OnnxSlimError("calibration data is empty")


def collect_statistics(
    model: ir.Model | onnx.ModelProto,
    samples: Iterable[Mapping[str, np.ndarray]],
    names: Sequence[str],
    *,
    bins: int = DEFAULT_BINS,
    progress: bool = True,
    total: int | None = None,
) -> dict[str, Histogram]:
    """Histograms (with exact min/max) of the float tensors ``names`` over all ``samples``, and
    the dtype of every tensor of ``names`` (a graph may not say it: INT8 quantizes float32 only).

    Memory is bounded by one sample's activations plus ``bins`` counters per tensor.
    """
    stats = {n: Histogram(bins=bins) for n in names}
    label = "calibrating: observing activations"
    for values in _observed(model, samples, names, label, progress, total):
        for n, value in values.items():
            if isinstance(value, np.ndarray):
                stats[n].dtype = value.dtype.name
                if value.dtype.kind == "f":
                    stats[n].update(value)
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
    axis and all samples, of its finite values), in float64; memory is one running sum per
    channel."""
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, np.ndarray | int] = dict.fromkeys(axes, 0)
    label = "bias correction: channel means"
    for values in _observed(model, samples, list(axes), label, progress, total):
        for name, value in values.items():
            value = np.asarray(value)
            axis = axes[name] % value.ndim
            others = tuple(i for i in range(value.ndim) if i != axis)
            # summed in float64 as read (a float64 copy of the tensor took 4.6x the time)
            summed = value.sum(axis=others, dtype=np.float64)
            count = value.size // value.shape[axis]
            if not np.isfinite(summed).all():  # NaN or inf somewhere (a NaN input): left out
                finite = np.isfinite(value)
                summed = np.where(finite, value, 0).sum(axis=others, dtype=np.float64)
                count = finite.sum(axis=others)
            sums[name] = sums.get(name, 0.0) + summed
            counts[name] = counts[name] + count
    return {name: sums[name] / np.maximum(counts[name], 1) for name in axes}


def collect_channel_absmax(
    model: ir.Model | onnx.ModelProto,
    samples: Iterable[Mapping[str, np.ndarray]],
    names: Sequence[str],
    *,
    progress: bool = True,
    total: int | None = None,
) -> dict[str, np.ndarray]:
    """The largest magnitude of each float tensor ``name`` per index of its last axis (over every
    other axis and all samples)."""
    peaks: dict[str, np.ndarray] = {}
    label = "smoothing: activation channel peaks"
    for values in _observed(model, samples, names, label, progress, total):
        for name, value in values.items():
            value = np.abs(np.asarray(value, np.float64))
            if value.size == 0:  # e.g. an empty sequence: no peak to take
                continue
            value[~np.isfinite(value)] = 0  # NaN or inf (a NaN input): no peak of a channel
            peak = value.reshape(-1, value.shape[-1]).max(axis=0)
            peaks[name] = np.maximum(peaks[name], peak) if name in peaks else peak
    return peaks


def collect_hessians(
    model: ir.Model | onnx.ModelProto,
    samples: Iterable[Mapping[str, np.ndarray]],
    layers: Mapping[Hashable, Sequence[tuple[str, Callable[[np.ndarray], np.ndarray]]]],
    *,
    progress: bool = True,
    total: int | None = None,
) -> dict[Hashable, np.ndarray]:
    """``H = sum X X^T`` (float64) per layer over all ``samples``: ``layers[key] = [(tensor,
    columns), ...]`` with ``columns(value)`` turning the float tensor into the layer's input
    columns ``X`` (``[inputs, positions]``; ``[groups, inputs, positions]``: a Hessian per group);
    several pairs: the layers reading one weight, their columns summed into one ``H``. A
    sample giving a layer fewer columns than it has inputs (a deep conv's few positions) waits
    for the next ones: ``X X^T`` of a few columns is bound by
    writing its ``inputs x inputs`` result (open_nsfw's layers one sample at a time: 2.9x the
    time); memory is that of the sums plus about as many float32 columns as inputs per layer."""
    names = sorted({tensor for sources in layers.values() for tensor, _ in sources})
    sums: dict[Hashable, np.ndarray] = {}
    pending: dict[Hashable, list[np.ndarray]] = {key: [] for key in layers}

    def add(key: Hashable) -> None:
        x = np.concatenate(pending[key], axis=-1)
        pending[key] = []
        finite = np.isfinite(x).all(axis=tuple(range(x.ndim - 1)))
        if not finite.all():  # columns with NaN or inf (a NaN input) would make H all NaN
            x = x[..., finite]
        product = x @ np.swapaxes(x, -1, -2)  # in float32, summed in float64 (no float64 copy)
        if key in sums:
            sums[key] += product
        else:
            sums[key] = product.astype(np.float64)

    label = "GPTQ: layer input statistics"
    for values in _observed(model, samples, names, label, progress, total):
        for key, sources in layers.items():
            for tensor, columns in sources:
                # a copy: a strided view would keep the sample's tensor alive until the product
                pending[key].append(np.ascontiguousarray(columns(np.asarray(values[tensor]))))
                if sum(x.shape[-1] for x in pending[key]) >= pending[key][0].shape[-2]:
                    add(key)
    for key in layers:
        if pending[key]:
            add(key)
    return sums
