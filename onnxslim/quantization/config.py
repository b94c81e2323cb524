"""How to quantize: `QuantizeConfig`, every option checked when it is made."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import onnx_ir as ir

from onnxslim.data import parse_preprocess
from onnxslim.drift import Budget, parse_max_drift
from onnxslim.errors import OnnxSlimError
from onnxslim.quantization import trades
from onnxslim.quantization.calibration import RANGE_METHODS
from onnxslim.quantization.ops import DEFAULT_OPS
from onnxslim.quantization.plan import ACTIVATION_TYPES, WEIGHT_RANGES, WEIGHT_ROUNDINGS
from onnxslim.quantization.splits import check_split
from onnxslim.quantization.targets import CHOICES

DEFAULT_METHOD = "percentile"
ROUNDING_CHOICES = (*WEIGHT_ROUNDINGS, "auto")
MODES = ("static", "dynamic", "auto")


@dataclasses.dataclass(frozen=True)
class QuantizeConfig:
    """How to quantize; every option is checked when the config is made (OnnxSlimError).

    `mode`: "static" (calibrated QDQ), "dynamic" (MatMul weights int8, activations quantized at run
    time: for transformers) or "auto" (static, or dynamic where static falls short: see
    `modes.static_or_dynamic`); `method`: activation range method (see RANGE_METHODS),
    `percentile` its parameter (None: the first of levers.PERCENTILES, or another, or "mse" or
    "minmax" ranges, where levers.py finds it closer on the selection samples); `per_channel`
    weight scales; `activation_type` "uint8" (asymmetric) or "int8" (symmetric); `target` the CPU
    the model will run on (auto, avx2, vnni, arm); `exclude_ops`/`exclude_nodes` stay float,
    `quantize_ops` narrows the op types; `max_drift` (a Budget or text like "cosine>=0.99"): the
    most sensitive nodes go back to float until it holds on the selection samples, a cosine budget
    as predicted for new samples (`drift.predicted_cosine`; CheckFailedError if it never does);
    `eval_split` the share of samples held out for choices (at least 2; None: DEFAULT_EVAL_SPLIT,
    raised to 8 samples, 16 with a budget, where the data allow), `test_split` for the drift
    reported, `held_out` where they come from ("spread" through the data or the "last" ones: see
    `splits.split_samples`); `require_speedup` makes an INT8 model that is not faster than float on
    this CPU an error (it needs `measure_latency`); `min_macs` leaves smaller weighted ops in float
    (at its default, target "auto" times them in int8 too and keeps that when worth it);
    `weight_range` the per-channel weight clip ("minmax" or "mse": least weight quantization error)
    and `weight_rounding` "gptq" (the int8 weights of Conv, Gemm and MatMul, computing in INT8 or in
    float, rounded to change each layer's output least on the calibration samples, see gptq.py;
    those computing in float to nearest on random samples; dynamic INT8's MatMul and LSTM weights
    with "auto" too, to nearest on random samples), "nearest" or "auto" (GPTQ where levers.py finds
    it closer on the selection samples); `equalize` (cross-layer equalization), `bias_correction`
    and `smooth` (dynamic INT8: SmoothQuant-style balancing of MatMul inputs, see smooth.py) are
    True, False or "auto" (the variant closest to float on the selection samples; for CLE and bias
    correction only when bootstrap resamples of them agree, see levers.py); `optimize` runs the
    lossless pipeline first, with `optimize_options` as keyword arguments of `onnxslim.optimize`
    (without it, exporters' doc strings and stack traces stay: the pass `strip-debug-info`);
    `measure_latency` times both models; `progress` shows bars; `preprocess` how an image folder
    given as the calibration data is read (the CLI's --preprocess:
    "resize=256,crop=224,scale=1/255,..."; required with images); `random_inputs`: the samples given
    were synthesized (the caller's random:N, which warns of it itself): the report's drift is marked
    as measured on random samples, and the choices take their drift for what it is worth (see
    `modes.int8_or_float`)."""

    mode: str = "auto"
    method: str = DEFAULT_METHOD
    percentile: float | None = None
    per_channel: bool = True
    activation_type: str = "uint8"
    target: str = "auto"
    exclude_ops: frozenset[str] = frozenset()
    exclude_nodes: frozenset[str] = frozenset()
    quantize_ops: frozenset[str] | None = None
    max_drift: Budget | str | None = None
    eval_split: float | None = None
    test_split: float = 0.2
    held_out: str = "spread"
    require_speedup: bool = False
    min_macs: int = trades.DEFAULT_MIN_MACS
    equalize: bool | str = "auto"
    bias_correction: bool | str = "auto"
    optimize: bool = True
    optimize_options: Mapping | None = None
    measure_latency: bool = True
    progress: bool = True
    debug_layers: bool = False
    weight_range: str = "minmax"
    weight_rounding: str = "gptq"
    smooth: bool | str = "auto"
    preprocess: str | None = None
    random_inputs: bool = False

    @property
    def chooses(self) -> bool:
        """Whether any choice is made on the selection samples (ranges, levers, timed trades)."""
        ranges = self.method == "percentile" and self.percentile is None
        levers = "auto" in (self.equalize, self.bias_correction, self.weight_rounding)
        return ranges or levers or self.times_choices

    @property
    def static_ops(self) -> frozenset[str]:
        """The op types static INT8 may quantize: `quantize_ops`, else DEFAULT_OPS."""
        return self.quantize_ops if self.quantize_ops is not None else DEFAULT_OPS

    def dynamic_excluded(self, model: ir.Model) -> frozenset[str]:
        """The nodes of `model`'s main graph dynamic INT8 leaves float: `exclude_nodes` and the
        nodes of `exclude_ops` (an LSTM, which static INT8 has no rule for, among them)."""
        typed = {node.name for node in model.graph if node.op_type in self.exclude_ops}
        return self.exclude_nodes | typed

    @property
    def times_choices(self) -> bool:
        """Whether the speed/accuracy choices are timed here (target auto, latency measured)."""
        return self.target == "auto" and self.measure_latency

    def __post_init__(self):
        for name in ("exclude_ops", "exclude_nodes", "quantize_ops"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, frozenset):
                object.__setattr__(
                    self, name, frozenset([value] if isinstance(value, str) else value)
                )
        for name in ("equalize", "bias_correction", "smooth"):
            value = getattr(self, name)
            if not (value is True or value is False or value == "auto"):  # 0 and 1 are not
                raise OnnxSlimError(f"{name} must be True, False or 'auto', got {value!r}")
        if self.mode not in MODES:
            raise OnnxSlimError(f"unknown INT8 mode {self.mode!r}: choose {', '.join(MODES)}")
        parse_preprocess(self.preprocess)  # a bad spec: one clear error now, not after loading
        if self.smooth is True and self.mode == "static":
            raise OnnxSlimError(
                "smoothing (smooth=True, --smooth on) applies to dynamic INT8: "
                "use mode 'dynamic' or 'auto'"
            )
        if self.percentile is not None and self.method != "percentile":
            raise OnnxSlimError(
                f"a percentile applies to calibration method 'percentile', not {self.method!r}"
            )
        if self.method not in RANGE_METHODS:
            raise OnnxSlimError(
                f"unknown calibration method {self.method!r}; "
                f"choose from {', '.join(RANGE_METHODS)}"
            )
        if self.activation_type not in ACTIVATION_TYPES:
            raise OnnxSlimError(
                f"activation type must be one of {', '.join(ACTIVATION_TYPES)}, "
                f"got {self.activation_type!r}"
            )
        if self.target not in CHOICES:
            raise OnnxSlimError(f"unknown target {self.target!r}: choose {', '.join(CHOICES)}")
        if self.weight_rounding not in ROUNDING_CHOICES:
            raise OnnxSlimError(
                f"unknown weight rounding {self.weight_rounding!r}: "
                f"choose {', '.join(ROUNDING_CHOICES)}"
            )
        if self.weight_range not in WEIGHT_RANGES:
            raise OnnxSlimError(
                f"unknown weight range {self.weight_range!r}: choose {', '.join(WEIGHT_RANGES)}"
            )
        if self.percentile is not None and not (
            isinstance(self.percentile, (int, float)) and 0 < self.percentile <= 100
        ):
            raise OnnxSlimError(f"percentile must be in (0, 100], got {self.percentile!r}")
        check_split(self.eval_split, self.test_split, self.held_out)
        if self.require_speedup and not self.measure_latency:
            raise OnnxSlimError("require_speedup needs the latency measurement (measure_latency)")
        if isinstance(self.max_drift, str):
            object.__setattr__(self, "max_drift", parse_max_drift(self.max_drift))
