"""Calibration: stream activation statistics over sample inputs and choose quantization ranges."""

from onnxslim.quantization.calibration.collect import (
    collect,
    collect_channel_absmax,
    collect_hessians,
)
from onnxslim.quantization.calibration.histogram import DEFAULT_BINS, Histogram
from onnxslim.quantization.calibration.ranges import RANGE_METHODS, compute_range

__all__ = [
    "DEFAULT_BINS",
    "RANGE_METHODS",
    "Histogram",
    "collect",
    "collect_channel_absmax",
    "collect_hessians",
    "compute_range",
]
