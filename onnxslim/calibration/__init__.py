"""Calibration: stream activation statistics over sample inputs and choose quantization ranges."""

from onnxslim.calibration.collect import OrtSession, collect_channel_means, collect_statistics
from onnxslim.calibration.histogram import DEFAULT_BINS, Histogram
from onnxslim.calibration.ranges import RANGE_METHODS, compute_range

__all__ = ["DEFAULT_BINS", "Histogram", "OrtSession", "RANGE_METHODS", "collect_channel_means", "collect_statistics",
           "compute_range"]
