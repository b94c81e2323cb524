"""Run the float model on ORT once per sample and stream the tensors it computes into what is
observed of them: histograms, channel means and channel peaks, GPTQ's ``X X^T``."""

from __future__ import annotations

import dataclasses
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


class _Histograms:
    """`collect`'s observer of histograms: one (and the dtype) per tensor."""

    def __init__(self, names: Sequence[str], bins: int):
        self.names = list(dict.fromkeys(names))
        self.result = {n: Histogram(bins=bins) for n in self.names}

    def add(self, values: Mapping[str, np.ndarray]) -> None:
        for n in self.names:
            value = values[n]
            if isinstance(value, np.ndarray):
                self.result[n].dtype = value.dtype.name
                if value.dtype.kind == "f":
                    self.result[n].update(value)


class _ChannelMeans:
    """`collect`'s observer of channel means: a running sum and count per channel."""

    def __init__(self, axes: Mapping[str, int]):
        self.axes, self.names = dict(axes), list(axes)
        self.sums: dict[str, np.ndarray] = {}
        self.counts: dict[str, np.ndarray | int] = dict.fromkeys(axes, 0)

    def add(self, values: Mapping[str, np.ndarray]) -> None:
        for name in self.names:
            value = np.asarray(values[name])
            axis = self.axes[name] % value.ndim
            others = tuple(i for i in range(value.ndim) if i != axis)
            # summed in float64 as read (a float64 copy of the tensor took 4.6x the time)
            summed = value.sum(axis=others, dtype=np.float64)
            count = value.size // value.shape[axis]
            if not np.isfinite(summed).all():  # NaN or inf somewhere (a NaN input): left out
                finite = np.isfinite(value)
                summed = np.where(finite, value, 0).sum(axis=others, dtype=np.float64)
                count = finite.sum(axis=others)
            self.sums[name] = self.sums.get(name, 0.0) + summed
            self.counts[name] = self.counts[name] + count

    @property
    def result(self) -> dict[str, np.ndarray]:
        return {n: self.sums[n] / np.maximum(self.counts[n], 1) for n in self.names}


class _Hessians:
    """`collect`'s observer of GPTQ's ``X X^T`` (`collect_hessians`): a sum per layer, its
    columns pending until it has as many as inputs."""

    def __init__(self, layers: Mapping[Hashable, Sequence[tuple[str, Callable]]]):
        self.layers = layers
        self.names = sorted({tensor for sources in layers.values() for tensor, _ in sources})
        self.sums: dict[Hashable, np.ndarray] = {}
        self.pending: dict[Hashable, list[np.ndarray]] = {key: [] for key in layers}

    def add(self, values: Mapping[str, np.ndarray]) -> None:
        for key, sources in self.layers.items():
            for tensor, columns in sources:
                # a copy: a strided view would keep the sample's tensor alive until the product
                pending = self.pending[key]
                pending.append(np.ascontiguousarray(columns(np.asarray(values[tensor]))))
                if sum(x.shape[-1] for x in pending) >= pending[0].shape[-2]:
                    self._multiply(key)

    def _multiply(self, key: Hashable) -> None:
        x = np.concatenate(self.pending[key], axis=-1)
        self.pending[key] = []
        finite = np.isfinite(x).all(axis=tuple(range(x.ndim - 1)))
        if not finite.all():  # columns with NaN or inf (a NaN input) would make H all NaN
            x = x[..., finite]
        product = x @ np.swapaxes(x, -1, -2)  # in float32, summed in float64 (no float64 copy)
        if key in self.sums:
            self.sums[key] += product
        else:
            self.sums[key] = product.astype(np.float64)

    @property
    def result(self) -> dict[Hashable, np.ndarray]:
        for key in self.layers:
            if self.pending[key]:
                self._multiply(key)
        return self.sums


@dataclasses.dataclass
class Collected:
    """What `collect` observed: histograms, channel means and ``X X^T`` sums, by what was asked."""

    stats: dict[str, Histogram]
    means: dict[str, np.ndarray]
    hessians: dict[Hashable, np.ndarray]


def collect(
    model: ir.Model | onnx.ModelProto,
    samples: Iterable[Mapping[str, np.ndarray]],
    *,
    histograms: Sequence[str] = (),
    means: Mapping[str, int] | None = None,
    hessians: Mapping[Hashable, Sequence[tuple[str, Callable]]] | None = None,
    bins: int = DEFAULT_BINS,
    progress: bool = True,
    total: int | None = None,
    label: str = "calibrating: observing activations",
) -> Collected:
    """In one run of the float model on ORT per sample (each run over Mask R-CNN's 28 samples took
    70-110 s): `histograms`' histograms (with exact min/max) and dtypes (a graph may not say
    them: INT8 quantizes float32 only); the mean of each tensor of `means` per index of its axis
    ``means[name]`` (over every other axis and all samples, of its finite values, in float64);
    `hessians`' sums of ``X X^T`` (`collect_hessians`). Memory is one sample's tensors, ``bins``
    counters per histogram, a running sum per channel and the ``X X^T`` sums."""
    observers = (
        _Histograms(histograms, bins),
        _ChannelMeans(means or {}),
        _Hessians(hessians or {}),
    )
    names = [n for observer in observers for n in observer.names]
    for values in _observed(model, samples, names, label, progress, total):
        for observer in observers:
            observer.add(values)
    return Collected(*(observer.result for observer in observers))


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
    label = "GPTQ: layer input statistics"
    return collect(
        model, samples, hessians=layers, progress=progress, total=total, label=label
    ).hessians
