"""What INT8 quantization did and measured."""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import TYPE_CHECKING

import onnx_ir as ir

from onnxslim.drift import Drift, with_parts
from onnxslim.quantization.plan import INT8_STORED

if TYPE_CHECKING:
    from rich.console import Console


def kept_float_counts(kept_float: dict[str, str]) -> dict[str, int]:
    """How many weighted nodes stay float for each reason, in its short form (before any ':' or
    ';' detail), most common first."""
    counts = Counter(why.split(":")[0].split(";")[0] for why in kept_float.values())
    return dict(counts.most_common())


def int8_stored(kept_float: dict[str, str]) -> int:
    """How many weighted nodes kept in float still store their weights int8 (their reasons say
    so): the file shrinks, the compute does not speed up."""
    return sum(INT8_STORED in why for why in kept_float.values())


#: Outcome.mode when quantization added nothing (no weighted node computes in INT8, none stores
#: int8 weights): the result is onnxslim's lossless model (float, or as quantized before).
NO_INT8_MODE = "none"
WEIGHT_ONLY_MODE = "weight-only"  # Outcome.mode: every weighted node in float on int8 weights
#: How a note that is a warning starts (QuantizeReport.split_notes).
WARNING = "warning: "


@dataclasses.dataclass
class Outcome:
    """What one quantizer (static or dynamic, or float compute on int8 weights) made, measured on
    the selection samples."""

    model: ir.Model
    quantized: dict[str, int]  # op type -> nodes computing in int8
    kept_float: dict[str, str]  # node -> why it stays float
    fallback: list[dict]  # nodes returned to float to meet the budget
    drift: dict[str, Drift]
    violations: list[str]
    notes: list[str] = dataclasses.field(default_factory=list)
    equalized_pairs: int = 0
    bias_correction: bool = False
    weight_rounding: str = "nearest"  # of the int8 weights
    layers: list[dict] = dataclasses.field(default_factory=list)
    mode: str = "static"
    method: str = ""  # the activation range method ("run time": dynamic INT8)
    smoothed_inputs: int = 0  # MatMul inputs balanced onto the weights (dynamic; see smooth.py)
    all_int8: ir.Model | None = None  # before the budget returned nodes to float (to time it)
    #: the drift the timed choices compare (drift.scored_drift); None: `drift`, as written
    scored: dict[str, Drift] | None = None
    dynamic_declined: bool = False  # mode auto timed dynamic INT8 against it and kept this one

    @property
    def judged(self) -> dict[str, Drift]:
        """`drift` as budgets and quality bars judge it: a detector's scores apart too."""
        return with_parts(self.drift, self.scored)


@dataclasses.dataclass
class QuantizeReport:
    """What quantization did and measured: ``to_dict`` is JSON-able, ``render`` rich tables."""

    mode: str
    target: str
    target_reason: str
    method: str
    activation_type: str
    weight_pair_limit: int | None  # 8-bit weights; see targets.PAIR_LIMIT
    per_channel: bool
    calibration_samples: int
    selection_samples: int
    test_samples: int
    nodes_before: int
    nodes_after: int
    size_before: int
    size_after: int
    quantized: dict[str, int]
    kept_float: dict[str, str]
    fallback: list[dict]
    drift: dict[str, Drift]
    budget: str | None
    violations: list[str]
    #: The budget's findings on the test samples (a detector's scores judged apart: the parts
    #: of `drift` are not in it); empty: it held there, or there is no budget or test sample.
    test_violations: list[str] = dataclasses.field(default_factory=list)
    latency_float_ms: float | None = None
    latency_int8_ms: float | None = None
    latency_lossless_ms: float | None = None  # onnxslim's lossless float model, timed alongside
    #: INT8 against float by bench's noise rule (medians and fastest runs agree): "faster",
    #: "slower" or "same" (within noise); None: not timed.
    latency_verdict: str | None = None
    #: INT8 against the lossless float model, by the same rule (what INT8 itself buys; the
    #: speedup over the original holds the lossless passes' gain too).
    latency_lossless_verdict: str | None = None
    notes: list[str] = dataclasses.field(default_factory=list)
    equalized_pairs: int = 0  # Conv pairs rescaled by cross-layer equalization
    bias_correction: bool = False
    smoothed_inputs: int = 0  # MatMul inputs balanced onto the weights (dynamic; see smooth.py)
    weight_range: str = "minmax"  # per-channel weight clip (QuantizeConfig.weight_range)
    weight_rounding: str = "nearest"  # or "gptq"
    #: With debug_layers: per quantized node, its own and accumulated SQNR (layers.LayerError).
    layers: list[dict] = dataclasses.field(default_factory=list)
    #: The samples were random (`--calibration random:N`): the drift says little of real inputs.
    random_inputs: bool = False

    @property
    def unquantized(self) -> bool:
        """Whether quantization added nothing: the result is onnxslim's lossless model."""
        return self.mode == NO_INT8_MODE

    @property
    def mode_label(self) -> str:
        """How the mode reads: "static INT8", "weight-only INT8", ..., "no INT8 added"."""
        if self.unquantized:
            return "no INT8 added (onnxslim's lossless model)"
        return f"{self.mode} INT8"

    def kept_float_counts(self) -> dict[str, int]:
        """Weighted nodes kept in float per reason (`kept_float_counts`)."""
        return kept_float_counts(self.kept_float)

    def int8_stored(self) -> int:
        """Weighted nodes kept in float that still store their weights int8 (`int8_stored`)."""
        return int8_stored(self.kept_float)

    @property
    def speedup(self) -> float | None:
        if not self.latency_float_ms or not self.latency_int8_ms:
            return None
        return self.latency_float_ms / self.latency_int8_ms

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["drift"] = {name: d.to_dict() for name, d in self.drift.items()}
        out["speedup"] = self.speedup
        return out

    def split_notes(self) -> tuple[list[str], list[str]]:
        """The notes that are warnings (a drifting, slower or unquantized result; without their
        "warning: " start), and the others."""
        warnings, others = [], []
        for note in self.notes:
            if note.startswith(WARNING):
                warnings.append(note.removeprefix(WARNING))
            else:
                others.append(note)
        return warnings, others

    def render(self, console: Console | None = None, messages: Console | None = None) -> str:
        """Print the report's tables on `console`, its warnings as warning lines on `messages`
        (the command line's stderr: shown even when the report is not) or, without it, among its
        notes; without a console, return them as plain text."""
        from onnxslim.render import tables

        text = tables.show(tables.quantize_report(self, inline_warnings=messages is None), console)
        if messages is not None:
            for warning in self.split_notes()[0]:
                tables.warn(messages, warning)
        return text
