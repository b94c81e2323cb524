"""INT8 quantization: `quantize(model, samples, config)` and what it needs.

api (quantize, QuantizeConfig), targets (CPU profiles), ops (per-op rules), plan (what to quantize),
qdq (the QDQ rewrite), calibration/ (statistics and ranges), builder (quantized variants), equalize,
bias_correction, recovery (sensitive nodes back to float), compact (names and defaults), report.
"""

from onnxslim.quantization.api import QuantizeConfig, QuantizeResult, quantize
from onnxslim.quantization.report import QuantizeReport

__all__ = ["QuantizeConfig", "QuantizeReport", "QuantizeResult", "quantize"]
