"""Static INT8 quantization: calibrate on sample inputs, insert QDQ, check drift on held-out samples,
return the most sensitive nodes to float until a drift budget holds, and report speed and drift."""

from __future__ import annotations

import dataclasses
import math
import os
from collections import Counter
from typing import Iterable, Mapping, Sequence

import numpy as np
import onnx
import onnx_ir as ir

from onnxslim import io
from onnxslim.calibration import (RANGE_METHODS, Histogram, OrtSession, collect_channel_means, collect_statistics,
                                  compute_range)
from onnxslim.cpu import CpuInfo, cpu_info
from onnxslim.data import as_samples, input_specs
from onnxslim.drift import Budget, Drift, compare_outputs, parse_max_drift
from onnxslim.errors import CheckFailedError, OnnxSlimError
from onnxslim.passes import quantize as qpass
from onnxslim.passes.quant_bias import input_channel_axis
from onnxslim.passes.quant_compact import CompactPass
from onnxslim.passes.quant_equalize import EqualizePass, find_pairs
from onnxslim.passes.quant_rules import DEFAULT_OPS, RULES, SHARED, STORED_TABLES, WEIGHT_ONLY, WEIGHTED
from onnxslim.report import human_bytes, number

DEFAULT_METHOD = "percentile"
DEFAULT_MIN_MACS = 1 << 20
MIN_EVAL_SAMPLES = 2


@dataclasses.dataclass(frozen=True)
class Target:
    """Deployment CPU profile: weight range and which int8 kernels pay off there."""

    name: str
    weight_bits: int
    skip_depthwise: bool
    note: str


TARGETS = {
    "avx2": Target("avx2", 7, True, "x86 without VNNI: 7-bit weights keep u8s8 products from saturating"),
    "vnni": Target("vnni", 8, True, "x86 with VNNI: full 8-bit weights"),
    "arm": Target("arm", 8, False, "ARM: full 8-bit weights, int8 depthwise kernels"),
}


def resolve_target(target: str, cpu: CpuInfo | None = None) -> tuple[Target, str]:
    """The profile for ``target`` ("auto" detects this CPU) and a sentence on how it was chosen."""
    if target != "auto":
        if target not in TARGETS:
            raise OnnxSlimError(f"unknown target {target!r}: choose auto, {', '.join(TARGETS)}")
        return TARGETS[target], f"{target} (given)"
    cpu = cpu or cpu_info()
    arch = cpu.arch.lower()
    if arch.startswith(("arm", "aarch")):
        name = "arm"
    else:
        name = "vnni" if cpu.flags.get("vnni") else "avx2"
    features = ", ".join(cpu.features) or "no ISA flags found"
    return TARGETS[name], f"{name} (detected: {cpu.model}; {features})"


@dataclasses.dataclass
class QuantizeReport:
    """What quantization did and measured; ``to_dict`` is JSON-able, ``render`` prints rich tables."""

    target: str
    target_reason: str
    method: str
    activation_type: str
    weight_bits: int
    per_channel: bool
    calibration_samples: int
    eval_samples: int
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
    latency_float_ms: float | None = None
    latency_int8_ms: float | None = None
    notes: list[str] = dataclasses.field(default_factory=list)
    equalized_pairs: int = 0  # Conv pairs rescaled by cross-layer equalization
    bias_correction: bool = False

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

    def render(self, console=None) -> None:
        from rich.console import Console
        from rich.table import Table

        console = console or Console(stderr=True)
        table = Table(title="INT8 quantization", show_header=True)
        table.add_column("")
        table.add_column("float", justify="right")
        table.add_column("int8", justify="right")
        table.add_row("size", human_bytes(self.size_before), human_bytes(self.size_after))
        table.add_row("nodes", str(self.nodes_before), str(self.nodes_after))
        if self.speedup is not None:
            table.add_row("latency (median, 1 thread)", f"{self.latency_float_ms:.2f} ms",
                          f"{self.latency_int8_ms:.2f} ms ({self.speedup:.2f}x)")
        table.add_row("quantized nodes", "", ", ".join(f"{op} {n}" for op, n in sorted(self.quantized.items())))
        console.print(table)
        console.print(f"target {self.target_reason}; method {self.method}; activations {self.activation_type}; "
                      f"weights {self.weight_bits}-bit {'per channel' if self.per_channel else 'per tensor'}; "
                      f"{self.calibration_samples} calibration / {self.eval_samples} held-out samples; "
                      f"cross-layer equalization on {self.equalized_pairs} conv pairs; "
                      f"bias correction {'on' if self.bias_correction else 'off'}")
        drift = Table(title="drift on held-out samples")
        for col in ("output", "max abs", "cosine", "SNR dB", "top-1"):
            drift.add_column(col, justify="right" if col != "output" else "left")
        for d in self.drift.values():
            drift.add_row(d.name, number(d.max_abs), number(d.cosine, ".5f"), number(d.snr_db, ".1f"),
                          number(d.top1_agreement, ".3f"))
        console.print(drift)
        if self.fallback:
            fb = Table(title=f"returned to float to meet {self.budget}")
            fb.add_column("node")
            fb.add_column("op")
            fb.add_column("added noise (dB below signal)", justify="right")
            for item in self.fallback:
                fb.add_row(item["node"], item["op"], number(item["noise_db"], ".1f"))
            console.print(fb)
        for line in self.violations + self.notes:
            console.print(line)


@dataclasses.dataclass
class QuantizeResult:
    model: ir.Model
    report: QuantizeReport


def quantize(
    model: str | os.PathLike | onnx.ModelProto | ir.Model,
    calibration,
    *,
    method: str = DEFAULT_METHOD,
    percentile: float = 99.99,
    per_channel: bool = True,
    activation_type: str = "uint8",
    target: str = "auto",
    exclude_ops: Iterable[str] = (),
    exclude_nodes: Iterable[str] = (),
    quantize_ops: Iterable[str] | None = None,
    max_drift: Budget | str | None = None,
    eval_split: float = 0.2,
    require_speedup: bool = False,
    min_macs: int = DEFAULT_MIN_MACS,
    equalize: bool | str = "auto",
    bias_correction: bool | str = "auto",
    optimize: bool = True,
    optimize_options: Mapping | None = None,
    measure_latency: bool = True,
    progress: bool = True,
) -> QuantizeResult:
    """Quantize ``model`` to QDQ INT8 with ``calibration`` samples (an iterable of ``{input: array}`` or a
    CalibrationDataReader).

    The lossless pipeline runs first (``optimize``), with ``optimize_options`` as keyword arguments of
    ``onnxslim.pipeline.optimize`` (skip, size_threshold, inline_functions). ``eval_split`` of the samples
    (at least 2) are held out to measure drift. With ``max_drift`` (a Budget or text like ``"cosine>=0.99"``) the most sensitive nodes
    go back to float until the budget holds (CheckFailedError if it never does). ``target`` is the CPU the
    model will run on (auto, avx2, vnni, arm). ``require_speedup`` makes an INT8 model that is not faster
    than the float one on this CPU an error. ``equalize`` applies cross-layer equalization to Conv pairs
    (lossless in float); ``bias_correction`` corrects the output shift that rounding the weights causes.
    Each is True, False or "auto": the variant closest to float on the calibration samples.
    """
    for name, value in (("equalize", equalize), ("bias_correction", bias_correction)):
        if value not in (True, False, "auto"):
            raise OnnxSlimError(f"{name} must be True, False or 'auto', got {value!r}")
    if method not in RANGE_METHODS:
        raise OnnxSlimError(f"unknown calibration method {method!r}; choose from {', '.join(RANGE_METHODS)}")
    budget = parse_max_drift(max_drift) if isinstance(max_drift, str) else max_drift
    profile, target_reason = resolve_target(target)
    original = io.to_ir(model)
    try:
        reference = io.to_proto(original).SerializeToString()
    except (OnnxSlimError, ValueError):  # io's 2 GB guard, or protobuf's own at serialization
        raise OnnxSlimError("INT8 quantization holds the model as one protobuf, which cannot exceed 2 GB") from None
    OrtSession(reference, what="the model does not load in ONNX Runtime, which INT8 calibration needs")
    samples = as_samples(calibration, input_specs(onnx.ModelProto.FromString(reference)))
    calib, held_out = split_samples(samples, eval_split)

    float_model = ir.from_proto(onnx.ModelProto.FromString(reference))
    if optimize:
        from onnxslim.pipeline import optimize as lossless

        float_model = lossless(float_model, check=False, **(optimize_options or {}))
    float_model = qpass.prepare(float_model)
    options = qpass.QuantOptions(
        activation_type=activation_type,
        weight_bits=profile.weight_bits,
        per_channel=per_channel,
        quantize_ops=frozenset(quantize_ops) if quantize_ops is not None else DEFAULT_OPS,
        exclude_ops=frozenset(exclude_ops),
        exclude_nodes=frozenset(exclude_nodes),
        skip_depthwise=profile.skip_depthwise,
        min_macs=min_macs,
    )
    unknown = sorted(set(options.exclude_nodes) - {n.name for n in float_model.graph})
    notes = [f"--exclude-node: no node named {', '.join(unknown)}"] if unknown else []
    if not held_out:
        notes.append("no held-out samples: drift is measured on the calibration samples")
    pairs = len(find_pairs(float_model.graph))
    method_options = {"pct": percentile} if method == "percentile" else {}
    builders = {eq: _QuantBuilder(_equalized(float_model) if eq else float_model, calib, options, method,
                                  method_options, progress, equalized=eq)
                for eq in _choices(equalize if pairs else False)}
    builder, quantized, info, note = _choose(builders, _choices(bias_correction), reference)
    notes += [note] if note else []
    eval_samples = held_out or calib
    ref_outputs = _run(reference, eval_samples, int8=False)
    drift = compare_outputs(ref_outputs, _run(quantized, eval_samples))
    violations = budget.check(drift) if budget else []
    fallback: list[dict] = []
    if violations:
        quantized, info, drift, violations, fallback = builder.fall_back(
            quantized, info, eval_samples, ref_outputs, budget)
        if violations:
            raise CheckFailedError(f"INT8 drift over budget {budget} even with every sensitive node in float: "
                                   f"{violations[0]}")
    CompactPass(_names(float_model))(quantized)

    report = QuantizeReport(
        target=profile.name, target_reason=target_reason, method=method, activation_type=activation_type,
        weight_bits=profile.weight_bits, per_channel=per_channel, calibration_samples=len(calib),
        eval_samples=len(held_out), nodes_before=len(original.graph), nodes_after=len(quantized.graph),
        size_before=len(reference), size_after=ir.to_proto(quantized).ByteSize(),
        quantized=dict(Counter(info.op_types[n] for n in info.plan.nodes)),
        kept_float=info.kept_float, fallback=fallback, drift=drift, budget=str(budget) if budget else None,
        violations=violations, notes=notes, equalized_pairs=pairs if builder.equalized else 0,
        bias_correction=builder.options.bias_correction,
    )
    if measure_latency:
        report.latency_float_ms, report.latency_int8_ms = _latency(reference, quantized, eval_samples[0])
        if report.speedup < 1.0:
            message = (f"INT8 is not faster than float on this CPU: {report.latency_int8_ms:.2f} ms vs "
                       f"{report.latency_float_ms:.2f} ms ({report.speedup:.2f}x)")
            if require_speedup:
                raise CheckFailedError(message)
            report.notes.append(message)
    elif require_speedup:
        raise OnnxSlimError("require_speedup needs the latency measurement")
    return QuantizeResult(quantized, report)


def split_samples(samples: Sequence, eval_split: float) -> tuple[list, list]:
    """Calibration and held-out samples: the last ``eval_split`` share, at least 2 when the split is > 0
    (and at least one sample stays for calibration)."""
    if not 0.0 <= eval_split < 1.0:
        raise OnnxSlimError(f"eval split must be in [0, 1), got {eval_split}")
    samples = list(samples)
    if eval_split == 0:
        return samples, []
    n_eval = max(MIN_EVAL_SAMPLES, int(round(len(samples) * eval_split)))
    if len(samples) - n_eval < 1:
        raise OnnxSlimError(f"{len(samples)} samples are too few to hold out {n_eval} for drift and calibrate on "
                            f"the rest: give at least {n_eval + 1}, or eval_split=0")
    return samples[:-n_eval], samples[-n_eval:]


@dataclasses.dataclass
class _BuildInfo:
    plan: qpass.QuantPlan
    dequantized: dict[str, str]
    op_types: dict[str, str]
    kept_float: dict[str, str]


class _QuantBuilder:
    """Builds quantized copies of one prepared float model with a cache of tensor histograms."""

    def __init__(self, model: ir.Model, samples, options: qpass.QuantOptions, method: str, method_options,
                 progress: bool, equalized: bool = False):
        self.proto = ir.to_proto(model)
        self.model = model
        self.equalized = equalized
        self.samples, self.options, self.method = samples, options, method
        self.method_options, self.progress = method_options, progress
        self.stats: dict[str, Histogram] = {}
        self.means: dict[str, np.ndarray] = {}
        self.op_types = {n.name: n.op_type for n in model.graph}

    def _fresh(self) -> ir.Model:
        return ir.from_proto(self.proto)

    def _ensure_stats(self, model: ir.Model, names: Iterable[str]) -> None:
        missing = [n for n in names if n not in self.stats]
        if missing:
            self.stats.update(collect_statistics(model, self.samples, missing, progress=self.progress,
                                                 total=len(self.samples)))

    def build(self, exclude: Sequence[str] = (), weight_only: Sequence[str] = ()) -> tuple[ir.Model, _BuildInfo]:
        """A quantized copy with the nodes ``exclude`` entirely in float (weights too) and the nodes
        ``weight_only`` computing in float on int8-stored weights."""
        options = dataclasses.replace(self.options, exclude_nodes=self.options.exclude_nodes | set(exclude),
                                      weight_only_nodes=frozenset(weight_only))
        model = self._fresh()
        first = qpass.plan(model, options)
        self._ensure_stats(model, first.observed)
        sizes = _output_sizes(model, first, self.stats)
        final = qpass.plan(model, options, sizes)
        self._ensure_stats(model, final.observed)
        qparams = {name: self._qparams(name, final) for name in final.observed}
        rewrite = qpass.QuantizePass(final, qparams, options, self._means(model, final))
        rewrite(model)
        kept = {n: r for n, r in final.floats.items()
                if RULES[self.op_types[n]].kind in (WEIGHTED, WEIGHT_ONLY) and r != "op type not selected"}
        return model, _BuildInfo(final, rewrite.dequantized, self.op_types, kept)

    def _means(self, model: ir.Model, plan: qpass.QuantPlan) -> dict[str, np.ndarray]:
        """Channel means of the inputs of the nodes whose bias bias correction adjusts (none when off)."""
        if not self.options.bias_correction:
            return {}
        by_name = {n.name: n for n in model.graph}
        nodes = [by_name[n] for n in [*plan.nodes, *plan.weight_only]]
        axes = {n.inputs[0].name: input_channel_axis(n) for n in nodes if input_channel_axis(n) is not None}
        missing = {name: axis for name, axis in axes.items() if name not in self.means}
        if missing:
            self.means.update(collect_channel_means(self.proto, self.samples, missing, progress=self.progress,
                                                    total=len(self.samples)))
        return {name: self.means[name] for name in axes}

    def _qparams(self, name: str, plan: qpass.QuantPlan) -> qpass.QParams:
        symmetric = self.options.activation_type == "int8" and name not in plan.asymmetric
        lo, hi = compute_range(self.stats[name], self.method, symmetric=symmetric, **self.method_options)
        return qpass.activation_qparams(lo, hi, self.options.activation_type, symmetric)

    def fall_back(self, quantized: ir.Model, info: _BuildInfo, samples, ref_outputs, budget: Budget):
        """Return the most sensitive nodes to float, fewest first (doubling, then bisecting), until the
        budget holds: computing in float on int8-stored weights (the file stays small), or entirely in float
        when that never meets the budget. Returns (model, info, drift, violations, fallback list)."""
        ranked = self.sensitivity(quantized, info, samples)
        names = [name for name, _ in ranked]
        by_name = {n.name: n for n in self.model.graph}
        int8_compute = {n for n in info.plan.nodes if RULES[self.op_types[n]].kind == WEIGHTED
                        and by_name[n].inputs[RULES[self.op_types[n]].weight].const_value is not None}
        for keep_weights in (True, False) if int8_compute & set(names) else (False,):
            results: dict[int, tuple] = {}

            def attempt(k: int) -> bool:
                """Whether the ``k`` worst nodes in float still miss the budget."""
                if k not in results:
                    stored = [n for n in names[:k] if keep_weights and n in int8_compute]
                    model, inf = self.build(exclude=[n for n in names[:k] if n not in stored], weight_only=stored)
                    drift = compare_outputs(ref_outputs, _run(model, samples))
                    results[k] = (model, inf, drift, budget.check(drift))
                return bool(results[k][3])

            k = _fewest_passing(len(names), attempt)
            model, inf, drift, violations = results[k]
            if not violations:
                break
        fallback = [{"node": name, "op": self.op_types[name], "noise_db": noise, "reason": "over the drift budget",
                     "int8_weights": keep_weights and name in int8_compute}
                    for name, noise in ranked[:k]] if not violations else []
        for item in fallback:
            stored = "; computes in float on int8-stored weights" if item["int8_weights"] else ""
            inf.kept_float[item["node"]] = (f"sensitive: int8 makes its output {-item['noise_db']:.1f} dB noisier "
                                            f"than its inputs{stored}")
        return model, inf, drift, violations, fallback

    def sensitivity(self, quantized: ir.Model, info: _BuildInfo, samples) -> list[tuple[str, float]]:
        """Quantized nodes ranked worst first by the noise each adds: the SNR (dB) of its output in the
        quantized model against the float model, minus that of its noisiest input (lower = worse)."""
        pairs = {}  # node -> (output name, [input names]) in the float model
        by_name = {n.name: n for n in self.model.graph}
        closing = {owner: act for act, owner in info.plan.folded.items()}
        for name in [*info.plan.nodes, *info.plan.weight_only]:
            node = by_name[name]
            rule = RULES[node.op_type]
            if rule.kind == SHARED and node.op_type not in STORED_TABLES:
                continue
            out = by_name[closing[name]].outputs[0].name if name in closing else node.outputs[0].name
            ins = qpass._activation_inputs(node, rule)
            pairs[name] = (out, [v.name for v in ins if v is not None and v.const_value is None])
        seen = {t for out, ins in pairs.values() for t in [out, *ins]}
        quant_name = {t: info.dequantized.get(t, t) for t in seen}
        names = sorted(seen)
        float_vals = _run(self.proto, samples, names, int8=False)
        quant_vals = [dict(zip(names, q.values())) for q in _run(quantized, samples, [quant_name[t] for t in names])]
        snr = {}
        for t in names:
            signal = sum(float(np.sum(f[t].astype(np.float64) ** 2)) for f in float_vals)
            noise = sum(float(np.sum((f[t].astype(np.float64) - q[t]) ** 2))
                        for f, q in zip(float_vals, quant_vals))
            snr[t] = 10 * math.log10(signal / noise) if noise > 0 and signal > 0 else 200.0
        scores = []
        for name, (out, ins) in pairs.items():
            if out not in snr:
                continue
            worst_in = min((snr[i] for i in ins if i in snr), default=200.0)
            scores.append((name, snr[out] - min(worst_in, 200.0)))
        scores.sort(key=lambda item: item[1])
        return scores


def _fewest_passing(n: int, fails) -> int:
    """The smallest ``k`` in 1..n with ``fails(k)`` False (doubling, then bisecting; assumes more is
    better), or ``n`` when even that fails."""
    lo, hi = 0, 1
    while hi < n and fails(hi):
        lo, hi = hi, min(2 * hi, n)
    if fails(hi):
        return hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fails(mid):
            lo = mid
        else:
            hi = mid
    return hi


def _choices(setting: bool | str) -> list[bool]:
    return [False, True] if setting == "auto" else [setting]


def _equalized(model: ir.Model) -> ir.Model:
    """A cross-layer-equalized copy of ``model``."""
    copy = ir.from_proto(ir.to_proto(model))
    EqualizePass()(copy)
    return copy


def _choose(builders: Mapping[bool, _QuantBuilder], bias_corrections: Sequence[bool], reference: bytes,
            max_samples: int = 64) -> tuple[_QuantBuilder, ir.Model, _BuildInfo, str | None]:
    """Build each (equalization, bias correction) variant and keep the one whose outputs are closest to the
    float model's (worst SNR over the float outputs) on up to ``max_samples`` calibration samples. Returns
    the builder (set to the chosen variant), the model, its build info and a note (None: no choice made)."""
    variants = [(eq, bc) for eq in builders for bc in bias_corrections]
    if len(variants) == 1:
        builder = builders[variants[0][0]]
        builder.options = dataclasses.replace(builder.options, bias_correction=variants[0][1])
        return (builder, *builder.build(), None)
    samples = builders[variants[0][0]].samples[:max_samples]
    ref = _run(reference, samples, int8=False)
    best, scores = None, {}
    for eq, bc in variants:
        builder = builders[eq]
        builder.options = dataclasses.replace(builder.options, bias_correction=bc)
        model, info = builder.build()
        scores[eq, bc] = _worst_snr(compare_outputs(ref, _run(model, samples)))
        if best is None or scores[eq, bc] > scores[best[0]]:
            best = ((eq, bc), model, info)
    (eq, bc), model, info = best
    builders[eq].options = dataclasses.replace(builders[eq].options, bias_correction=bc)
    label = {(False, False): "plain", (True, False): "CLE", (False, True): "bias correction",
             (True, True): "CLE + bias correction"}
    tried = ", ".join(f"{label[key]} {snr:.1f} dB" for key, snr in scores.items())
    note = f"kept {label[eq, bc]} (output SNR on {len(samples)} calibration samples: {tried})"
    return builders[eq], model, info, note


def _worst_snr(drift: Mapping[str, Drift]) -> float:
    """The lowest SNR (dB) over the float outputs (-inf when there are none)."""
    return min((d.snr_db for d in drift.values() if d.snr_db is not None), default=-math.inf)


def _names(model: ir.Model) -> set[str]:
    """Names of the nodes and node outputs of ``model``'s main graph."""
    return {n.name for n in model.graph} | {v.name for n in model.graph for v in n.outputs}


def _output_sizes(model: ir.Model, plan: qpass.QuantPlan, stats: Mapping[str, Histogram]) -> dict[str, float]:
    """Elements per sample of each weighted node's output (a folded Relu/Clip has its input's size)."""
    sizes = {name: h.mean_size for name, h in stats.items()}
    by_name = {n.name: n for n in model.graph}
    for act, owner in plan.folded.items():
        out = by_name[act].outputs[0].name
        if out in sizes:
            sizes[by_name[owner].outputs[0].name] = sizes[out]
    return sizes


def _run(model, samples, names: Sequence[str] | None = None, *, int8: bool = True) -> list[dict[str, np.ndarray]]:
    """Outputs (or the tensors ``names``) of ``model`` for each sample; ORT failing on an ``int8`` model is a
    CheckFailedError."""
    what = f"ONNX Runtime fails on the {'INT8' if int8 else 'float'} model"
    session = OrtSession(model, names or (), threads=1, what=what, error=CheckFailedError if int8 else OnnxSlimError)
    keys = list(names) if names else session.output_names
    return [dict(zip(keys, session.run(s, names or None))) for s in samples]


def _latency(reference: bytes, quantized: ir.Model, sample, runs: int = 30) -> tuple[float, float]:
    """Median single-thread latency (ms) of both models, runs interleaved after warm-up."""
    from onnxslim.bench import benchmark

    report = benchmark([onnx.ModelProto.FromString(reference), ir.to_proto(quantized)], inputs=[sample],
                       runs=runs, warmup=5, measure_memory=False, progress=False)
    return report.models[0].latency.median, report.models[1].latency.median
