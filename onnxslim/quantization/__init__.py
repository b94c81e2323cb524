"""INT8 quantization: `quantize(model, samples, config)` and what it needs.

api (quantize: its steps), config (QuantizeConfig), splits (calibration, selection and test
samples), static (static INT8 and its float-compute twin), modes (mode auto: static, dynamic or
float compute), dynamic (dynamic INT8), targets (CPU profiles), ops (per-op rules), plan (what to
quantize), qdq (the QDQ rewrite), calibration/ (statistics and ranges), builder (quantized
variants), levers and trades (choices on the selection samples), equalize, bias_correction, gptq,
smooth, recovery (sensitive nodes back to float), compact (names and defaults), report, caveats.
"""

from onnxslim.quantization.api import QuantizeResult, quantize
from onnxslim.quantization.config import QuantizeConfig
from onnxslim.quantization.report import QuantizeReport

__all__ = ["QuantizeConfig", "QuantizeReport", "QuantizeResult", "quantize"]
