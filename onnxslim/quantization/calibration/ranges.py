"""Range methods: turn a tensor's streamed statistics into the clip range ``(lo, hi)`` it is
quantized with.

Every range contains zero (so zero is exactly representable). ``symmetric=True`` gives ``(-t, t)``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from onnxslim.errors import OnnxSlimError
from onnxslim.quantization.calibration.histogram import Histogram

Range = tuple[float, float]
MSE_MIN_BINS = 8  # the MSE search may clip to a few bins; KL needs at least one bin per level


def minmax(hist: Histogram, *, symmetric: bool = False, levels: int = 256) -> Range:  # noqa: ARG001 the range methods' shared signature
    """The observed minimum and maximum."""
    lo, hi = min(hist.min, 0.0), max(hist.max, 0.0)
    return _finish(lo, hi, symmetric)


def mean_minmax(hist: Histogram, *, symmetric: bool = False, levels: int = 256) -> Range:  # noqa: ARG001 the range methods' shared signature
    """The mean over samples of each sample's minimum and maximum (TensorFlow's moving-average
    min/max): a sample's own extremes are never clipped on a typical sample, as percentile clips
    every sample's top values, and one outlying sample does not widen the range as in minmax. On a
    tensor of a few elements (a classifier's logits) a sample's extremes are no tail: about half
    the samples then get their top value clipped (open_nsfw's two logits: the per-layer report)."""
    lo, hi = hist.mean_extremes
    return _finish(min(lo, 0.0), max(hi, 0.0), symmetric)


def percentile(
    hist: Histogram,
    *,
    symmetric: bool = False,
    levels: int = 256,  # noqa: ARG001 the range methods' shared signature
    pct: float = 99.99,
) -> Range:
    """Clip the tails: ``(100 - pct)`` of the values lie outside the range (split between both tails
    when asymmetric; of ``|x|`` when symmetric). Interpolates linearly inside a bin."""
    if not 0.0 < pct <= 100.0:
        raise OnnxSlimError(f"percentile must be in (0, 100], got {pct}")
    q = pct / 100.0
    if symmetric:
        t = min(_quantile(hist.abs_counts(), hist.width, 0.0, q), max(-hist.min, hist.max))
        return (-t, t)
    tail = (1.0 - q) / 2.0
    lo = _quantile(hist.counts, hist.width, hist.lo, tail)
    hi = _quantile(hist.counts, hist.width, hist.lo, 1.0 - tail)
    return _finish(max(min(lo, 0.0), hist.min), min(max(hi, 0.0), hist.max), False)


def entropy(hist: Histogram, *, symmetric: bool = False, levels: int = 256) -> Range:
    """The range whose quantized histogram has the least KL divergence from the clipped float
    histogram (TensorRT's method), searched over all windows of at least ``levels`` bins, each end
    in turn."""
    counts, z, width, lo0, n_levels = _search_space(hist, symmetric, levels)

    def cost(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.array([_kl(counts, int(i), int(j), n_levels) for i, j in zip(a, b)])

    win = _best_window(cost, counts.size, z, n_levels)
    return _window_range(win, width, lo0, hist, symmetric)


def mse(hist: Histogram, *, symmetric: bool = False, levels: int = 256) -> Range:
    """The range minimizing expected quantization MSE: ``step^2 / 12`` per in-range value plus the
    squared clipping error of each out-of-range bin, over windows of >= ``MSE_MIN_BINS`` bins."""
    counts, z, width, lo0, n_levels = _search_space(hist, symmetric, levels)
    c = lo0 + width * (np.arange(counts.size) + 0.5)  # bin centers
    n = counts.astype(np.float64)
    s0, s1, s2 = (np.concatenate([[0.0], np.cumsum(v)]) for v in (n, n * c, n * c * c))

    def cost(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        lo, hi = lo0 + width * a, lo0 + width * b
        step = (hi - lo) / (n_levels - 1)
        inside = (s0[b] - s0[a]) * step**2 / 12.0
        below = s2[a] - 2 * lo * s1[a] + lo**2 * s0[a]  # sum n (c - lo)^2 over bins below a
        above = (s2[-1] - s2[b]) - 2 * hi * (s1[-1] - s1[b]) + hi**2 * (s0[-1] - s0[b])
        return inside + below + above

    win = _best_window(cost, counts.size, z, MSE_MIN_BINS)
    return _window_range(win, width, lo0, hist, symmetric)


RangeMethod = Callable[..., Range]
RANGE_METHODS: dict[str, RangeMethod] = {
    "minmax": minmax,
    "mean_minmax": mean_minmax,
    "percentile": percentile,
    "entropy": entropy,
    "mse": mse,
}


def compute_range(
    hist: Histogram, method: str, *, symmetric: bool = False, levels: int = 256, **options
) -> Range:
    """Dispatch to a method of ``RANGE_METHODS`` by name; an empty histogram is an error."""
    if method not in RANGE_METHODS:
        raise OnnxSlimError(
            f"unknown calibration method {method!r}; choose from {', '.join(RANGE_METHODS)}"
        )
    if hist.total == 0:
        raise OnnxSlimError("no finite values were observed for a tensor to calibrate")
    return RANGE_METHODS[method](hist, symmetric=symmetric, levels=levels, **options)


def _finish(lo: float, hi: float, symmetric: bool) -> Range:
    if symmetric:
        t = float(max(-lo, hi))
        return (-t, t)
    return (float(lo), float(hi))


def _quantile(counts: np.ndarray, width: float, lo: float, q: float) -> float:
    """The ``q`` quantile of values histogrammed on bins of ``width`` starting at ``lo``."""
    cdf = np.cumsum(counts, dtype=np.float64)
    target = q * cdf[-1]
    i = int(np.searchsorted(cdf, target, side="left"))
    i = min(i, counts.size - 1)
    before = cdf[i - 1] if i > 0 else 0.0
    frac = (target - before) / counts[i] if counts[i] else 0.0
    return float(lo + width * (i + frac))


def _search_space(hist: Histogram, symmetric: bool, levels: int):
    """The histogram the search runs on: ``|x|`` bins (zero at index 0, ``levels // 2`` levels) when
    symmetric, else the signed bins trimmed to the observed data."""
    if symmetric:
        counts = np.trim_zeros(hist.abs_counts(), "b")
        return counts, 0, hist.width, 0.0, levels // 2
    nz = np.nonzero(hist.counts)[0]
    z = hist.zero_bin
    a, b = min(int(nz[0]), z), max(int(nz[-1]) + 1, z)
    return hist.counts[a:b], z - a, hist.width, hist.lo + a * hist.width, levels


def _best_window(cost, n_bins: int, z: int, min_bins: int, rounds: int = 3) -> tuple[int, int]:
    """The window ``[a, b)`` (``a <= z <= b``, at least ``min_bins`` bins) of least ``cost``.

    ``cost(a, b)`` takes arrays of candidate ends. The upper end is searched exhaustively with the
    lower fixed, then the lower with the upper fixed, for a few rounds (one round when ``z == 0``).
    """
    min_width = min(min_bins, n_bins)
    a, b = 0, n_bins
    for _ in range(rounds if z > 0 else 1):
        bs = np.arange(max(z, a + min_width), n_bins + 1)
        b = int(bs[np.argmin(cost(np.full(bs.size, a), bs))])
        if z == 0:
            break
        as_ = np.arange(0, min(z, b - min_width) + 1)
        a = int(as_[np.argmin(cost(as_, np.full(as_.size, b)))])
    return a, b


def _kl(counts: np.ndarray, a: int, b: int, n_levels: int) -> float:
    """KL(P || Q): P is the window with outliers folded into its edge bins, Q the window's counts
    merged into ``n_levels`` chunks and spread evenly over each chunk's non-empty bins."""
    window = counts[a:b].astype(np.float64)
    p = window.copy()
    p[0] += counts[:a].sum()
    p[-1] += counts[b:].sum()
    chunk = (np.arange(window.size) * n_levels) // window.size
    nonzero = window > 0
    chunk_sum = np.bincount(chunk, weights=window, minlength=n_levels)
    chunk_nz = np.bincount(chunk, weights=nonzero, minlength=n_levels)
    q = np.where(nonzero, chunk_sum[chunk] / np.maximum(chunk_nz[chunk], 1), 0.0)
    p_tot, q_tot = p.sum(), q.sum()
    if p_tot == 0 or q_tot == 0:
        return np.inf
    p, q = p / p_tot, q / q_tot
    mask = p > 0
    # Bins where P has mass but Q has none (only the outlier-laden edges) get a small floor, as in
    # TensorRT.
    qm = np.maximum(q[mask], 1e-12)
    return float(np.sum(p[mask] * np.log(p[mask] / qm)))


def _window_range(
    win: tuple[int, int], width: float, lo0: float, hist: Histogram, symmetric: bool
) -> Range:
    a, b = win
    if symmetric:
        t = float(min(width * b, max(-hist.min, hist.max)))
        return (-t, t)
    lo = max(lo0 + width * a, min(hist.min, 0.0))
    hi = min(lo0 + width * b, max(hist.max, 0.0))
    return (float(min(lo, 0.0)), float(max(hi, 0.0)))
