"""Benchmark models on ONNX Runtime CPU: speed, size, memory, and output drift against the first model."""

from __future__ import annotations

import html
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
from rich import box
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table
from rich.text import Text

from onnxslim import runtime
from onnxslim.cpu import CpuInfo, cpu_info
from onnxslim.data import Preprocess, input_specs, load_samples, parse_shapes, validate_samples
from onnxslim.drift import Budget, Drift, compare_outputs, parse_max_drift
from onnxslim.errors import OnnxSlimError, first_line
from onnxslim.io import write_text_atomic
from onnxslim.report import human_bytes, number
from onnxslim.runtime import OPT_LEVELS
from onnxslim.stats import model_stats

SCHEMA_VERSION = 1
RANDOM_SAMPLES = 8
SESSION_REPEATS = 3  # session creation is timed this many times (interleaved); the median is reported
MEMORY_RUNS = 3
MEMORY_TIMEOUT_S = 600
RANDOM_NOTE = "inputs are random: drift on random inputs says little about real data; pass real inputs to measure it"

# Runs in a fresh interpreter, so one model's memory cannot hide another's. Prints the peak RSS
# growth (MB) from creating the session and running it, over the baseline after imports.
_MEMORY_CHILD = """
import json, resource, sys
import numpy as np
import onnxruntime as ort
model, feed_file, names, threads, level, runs = sys.argv[1:]
with np.load(feed_file) as data:
    feed = {name: data[f"arr_{i}"] for i, name in enumerate(json.loads(names))}

def status_mb(key):
    with open("/proc/self/status") as file:
        return next(int(line.split()[1]) / 1024 for line in file if line.startswith(key))

try:  # Linux: reset this process's high-water mark (ru_maxrss would include the parent's, inherited at fork)
    with open("/proc/self/clear_refs", "w") as file:
        file.write("5")
    base, peak = status_mb("VmRSS:"), lambda: status_mb("VmHWM:")
except OSError:
    unit = 1024**2 if sys.platform == "darwin" else 1024
    peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / unit
    base = peak()
options = ort.SessionOptions()
options.intra_op_num_threads, options.inter_op_num_threads = int(threads), 1
options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
options.log_severity_level = 3
session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
for _ in range(int(runs)):
    session.run(None, feed)
print(json.dumps({"peak_mb": peak() - base}))
"""


@dataclass
class Latency:
    """Per-run latency statistics in milliseconds."""

    median: float
    p90: float
    mean: float
    min: float

    @classmethod
    def from_seconds(cls, seconds: Sequence[float]) -> Latency:
        ms = np.asarray(seconds) * 1000
        return cls(float(np.median(ms)), float(np.percentile(ms, 90)), float(ms.mean()), float(ms.min()))


@dataclass
class ModelResult:
    """Figures of one model; `drift` is None for the reference (the first model)."""

    name: str
    file_size: int
    nodes: int
    session_ms: float
    latency: Latency
    peak_memory_mb: float | None = None
    drift: dict[str, Drift] | None = None

    @property
    def throughput(self) -> float:
        """Inferences per second (one thread of runs, from the mean latency)."""
        return 1000 / self.latency.mean if self.latency.mean > 0 else math.inf


@dataclass
class BenchReport:
    """Everything `benchmark` measured; the first model is the reference."""

    models: list[ModelResult]
    cpu: CpuInfo
    ort_version: str
    threads: int
    ort_opt_level: str
    runs: int
    warmup: int
    samples: int
    random_inputs: bool
    notes: list[str] = field(default_factory=list)

    @property
    def reference(self) -> ModelResult:
        return self.models[0]

    def speedup(self, model: ModelResult) -> float:
        """Reference median latency over this model's."""
        return self.reference.latency.median / model.latency.median if model.latency.median > 0 else math.inf

    def size_ratio(self, model: ModelResult) -> float:
        return model.file_size / self.reference.file_size if self.reference.file_size else math.nan

    def check(self, max_drift: Budget | str | None = None, min_speedup: float | None = None) -> list[str]:
        """Failures of the drift budget and the minimum speedup, one line each (empty: pass)."""
        budget = parse_max_drift(max_drift) if isinstance(max_drift, str) else max_drift
        failures = []
        for model in self.models[1:]:
            if budget is not None:
                failures += [f"{model.name}: {line}" for line in budget.check(model.drift)]
            if min_speedup is not None and self.speedup(model) < min_speedup:
                failures.append(f"{model.name}: speedup {self.speedup(model):.2f}x is below {min_speedup:g}x")
        return failures

    def to_dict(self) -> dict:
        """Every figure, JSON-able. Non-finite numbers are the strings "inf", "-inf", "nan"."""
        return {
            "schema_version": SCHEMA_VERSION,
            "onnxruntime": self.ort_version,
            "cpu": self.cpu.to_dict(),
            "settings": {
                "threads": self.threads,
                "ort_opt_level": self.ort_opt_level,
                "runs": self.runs,
                "warmup": self.warmup,
                "samples": self.samples,
                "random_inputs": self.random_inputs,
            },
            "notes": list(self.notes),
            "reference": self.reference.name,
            "models": [
                {
                    "name": m.name,
                    "file_size_bytes": m.file_size,
                    "nodes": m.nodes,
                    "session_create_ms": m.session_ms,
                    "latency_ms": vars(m.latency).copy(),
                    "throughput_per_s": _finite(m.throughput),
                    "peak_memory_mb": m.peak_memory_mb,
                    "speedup": _finite(self.speedup(m)),
                    "size_ratio": _finite(self.size_ratio(m)),
                    "drift": None if m.drift is None else {name: d.to_dict() for name, d in m.drift.items()},
                }
                for m in self.models
            ],
        }

    def write_json(self, path: str | os.PathLike) -> None:
        write_text_atomic(path, json.dumps(self.to_dict(), indent=2) + "\n")

    def header_lines(self) -> list[str]:
        isa = ", ".join(f"{label} {'yes' if self.cpu.flags.get(key) else 'no'}" for key, label in _isa_labels(self.cpu))
        inputs = f"{self.samples} {'random' if self.random_inputs else 'given'} sample(s)"
        return [
            f"CPU: {self.cpu.model} ({self.cpu.arch}); {isa}",
            f"onnxruntime {self.ort_version}; {self.threads} intra-op thread(s); ORT optimization level: "
            f"{self.ort_opt_level}; {self.runs} interleaved runs after {self.warmup} warm-up; inputs: {inputs}",
            *(f"note: {note}" for note in self.notes),
        ]

    def render(self, console: Console) -> None:
        """Print the header, the per-model table and the per-output drift table."""
        for line in self.header_lines():
            console.print(line, style="yellow" if line.startswith("note:") else None, markup=False, highlight=False)
        narrow = console.width < WIDE_TABLE + max(len(m.name) for m in self.models)
        keep = [i for i, c in enumerate(_MODEL_COLUMNS) if not (narrow and c in ("Mean", "Min", "Runs/s"))]
        caption = _CAPTION + ("; mean/min latency and runs/s: see --json/--html" if narrow else "")
        rows = [[row[i] for i in keep] for row in self._model_rows()]
        console.print(_table("Benchmark (reference: first model)", [_MODEL_COLUMNS[i] for i in keep], rows, caption))
        if len(self.models) > 1:
            console.print(_table("Output drift vs reference", _DRIFT_COLUMNS, self._drift_rows()))

    def write_html(self, path: str | os.PathLike) -> None:
        """A self-contained page: header, tables and inline-SVG bar charts (no network)."""
        parts = [
            "<!doctype html><html><head><meta charset='utf-8'><title>onnxslim benchmark</title>",
            f"<style>{_CSS}</style></head><body><h1>onnxslim benchmark</h1>",
            *(f"<p>{html.escape(line)}</p>" for line in self.header_lines()),
            _html_table(_MODEL_COLUMNS, self._model_rows()),
            _svg_bars("Median latency (ms), lower is better", [(m.name, m.latency.median) for m in self.models], "ms"),
        ]
        if len(self.models) > 1:
            parts.append("<h2>Output drift vs reference</h2>")
            parts.append(_html_table(_DRIFT_COLUMNS, self._drift_rows()))
            pairs = [(m, d) for m in self.models[1:] for d in m.drift.values()]
            labels = [f"{m.name} / {d.name}" for m, d in pairs]
            parts.append(_svg_bars("Max abs error per output",
                                   [(label, d.max_abs) for label, (_, d) in zip(labels, pairs)], ""))
            parts.append(_svg_bars("SNR per output (dB), higher is better",
                                   [(label, d.snr_db) for label, (_, d) in zip(labels, pairs)], "dB"))
        parts.append("</body></html>\n")
        write_text_atomic(path, "\n".join(parts))

    def _model_rows(self) -> list[list[str]]:
        rows = []
        for index, m in enumerate(self.models):
            worst = _worst(m.drift)
            rows.append([
                m.name,
                human_bytes(m.file_size),
                "ref" if index == 0 else f"{self.size_ratio(m):.2f}x",
                str(m.nodes),
                f"{m.session_ms:.1f}",
                f"{m.latency.median:.3f}",
                f"{m.latency.p90:.3f}",
                f"{m.latency.mean:.3f}",
                f"{m.latency.min:.3f}",
                "ref" if index == 0 else f"{self.speedup(m):.2f}x",
                f"{m.throughput:.1f}" if m.throughput < 1000 else f"{m.throughput:.0f}",
                "-" if m.peak_memory_mb is None else f"{m.peak_memory_mb:.1f}",
                worst,
            ])
        return rows

    def _drift_rows(self) -> list[list[str]]:
        rows = []
        for m in self.models[1:]:
            for d in m.drift.values():
                note = d.mismatch or ""
                if d.nonfinite_mismatches:
                    note = f"{d.nonfinite_mismatches} NaN/Inf differ"
                elif d.exact_match is not None:
                    note = "exact" if d.exact_match else "not exact"
                rows.append([
                    m.name, d.name, number(d.max_abs), number(d.mean_abs), number(d.cosine, ".6f"),
                    number(d.snr_db, ".1f"), number(d.top1_agreement, ".4f"), note,
                ])
        return rows


_MODEL_COLUMNS = [
    "Model", "Size", "xSize", "Nodes", "Load", "Median", "p90", "Mean", "Min", "Speedup", "Runs/s", "Mem MB", "Min cos",
]
_CAPTION = "times in ms (Load = session creation); Mem = peak RSS growth of a fresh process running the model"
WIDE_TABLE = 94  # plus the longest model name: narrower consoles get the table without mean, min and runs/s
_DRIFT_COLUMNS = ["Model", "Output", "Max abs", "Mean abs", "Cosine", "SNR dB", "Top-1", "Note"]
_CSS = (
    "body{font-family:system-ui,sans-serif;margin:2em;color:#222}table{border-collapse:collapse;margin:1em 0}"
    "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child,th:first-child{text-align:left}"
    "svg{display:block;margin:1em 0}"
)


def _table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]], caption: str | None = None) -> Table:
    """A compact rich table; cells are plain text (no markup), text columns left-aligned."""
    table = Table(title=title, caption=caption, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                  collapse_padding=True)
    for column in columns:
        table.add_column(column, justify="left" if column in ("Model", "Output", "Note") else "right")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    return table


def _isa_labels(cpu: CpuInfo) -> list[tuple[str, str]]:
    arm = cpu.arch.lower().startswith(("arm", "aarch"))
    return [("neon", "NEON")] if arm else [("avx2", "AVX2"), ("avx512", "AVX-512"), ("vnni", "VNNI")]


def _worst(drift: dict[str, Drift] | None) -> str:
    """A model's lowest cosine over its outputs, or MISMATCH (shape, missing output, NaN/Inf)."""
    if drift is None:
        return "ref"
    if any(d.mismatch or d.nonfinite_mismatches for d in drift.values()):
        return "MISMATCH"
    cosines = [d.cosine for d in drift.values() if d.cosine is not None]
    return f"{min(cosines):.6f}" if cosines else "-"




def _finite(value: float):
    return value if math.isfinite(value) else str(value)


def _html_table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _svg_bars(title: str, items: Sequence[tuple[str, float | None]], unit: str) -> str:
    """Horizontal bar chart; None is labelled n/a, +inf (e.g. identical outputs' SNR) is a full bar."""
    finite = [abs(v) for _, v in items if v is not None and math.isfinite(v)]
    top = max(finite, default=0) or 1.0
    label_w, bar_w, row_h = 260, 420, 22
    height = 30 + row_h * len(items)
    rows = []
    for i, (label, value) in enumerate(items):
        y = 24 + i * row_h
        if value is None or math.isnan(value):
            width, text = 0, "n/a"
        elif math.isinf(value):
            width, text = (bar_w if value > 0 else 0), ("∞" if value > 0 else "-∞")
        else:
            width, text = bar_w * max(value, 0) / top, f"{value:.4g} {unit}".strip()
        rows.append(
            f"<text x='{label_w - 6}' y='{y + 15}' text-anchor='end'>{html.escape(label)}</text>"
            f"<rect x='{label_w}' y='{y + 3}' width='{width:.1f}' height='{row_h - 6}' fill='#4a7fc1'/>"
            f"<text x='{label_w + width + 4:.1f}' y='{y + 15}'>{html.escape(text)}</text>"
        )
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{label_w + bar_w + 120}' height='{height}' "
        f"font-size='12' font-family='sans-serif'><text x='0' y='14' font-weight='bold'>{html.escape(title)}</text>"
        + "".join(rows)
        + "</svg>"
    )


@dataclass
class _Model:
    """A model to benchmark: display name, what ORT loads (path or bytes), size and node count."""

    name: str
    source: str | bytes
    file_size: int
    nodes: int


def _prepare(model, index: int) -> _Model:
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        if not path.is_file():
            raise OnnxSlimError(f"{path}: no such file")
        try:
            stats = model_stats(ir.load(path), path)
        except Exception as err:
            raise OnnxSlimError(f"{path}: not a valid ONNX model: {first_line(err)}")
        return _Model(str(path), str(path), stats.file_bytes, stats.nodes)
    try:
        if isinstance(model, ir.Model):
            model = ir.serde.serialize_model(model)
        if not isinstance(model, onnx.ModelProto):
            raise OnnxSlimError(f"expected a model path, onnx.ModelProto or onnx_ir.Model, got {type(model).__name__}")
        data = model.SerializeToString()
    except (ValueError, TypeError) as err:
        raise OnnxSlimError(f"cannot serialize model {index}: {first_line(err)}")
    return _Model(f"model{index}", data, len(data), model_stats(ir.from_proto(model)).nodes)


def _create_session(model: _Model, options) -> tuple[ort.InferenceSession, float]:
    start = time.perf_counter()
    session = runtime.create_session(model.source, options, f"{model.name}: onnxruntime cannot load it")
    return session, time.perf_counter() - start


def _run(session: ort.InferenceSession, name: str, feed: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    try:
        values = session.run(None, dict(feed))
    except Exception as err:
        raise OnnxSlimError(f"{name}: onnxruntime failed to run it: {first_line(err)}")
    return {out.name: value for out, value in zip(session.get_outputs(), values)}


def _peak_memory_mb(model: _Model, feed: Mapping[str, np.ndarray], threads: int, ort_opt_level: str) -> float | None:
    """Peak RSS growth of a fresh process that creates the session and runs it; None if that fails."""
    with tempfile.TemporaryDirectory(prefix="onnxslim-bench-") as tmp:
        path = model.source
        if isinstance(path, bytes):
            path = os.path.join(tmp, "model.onnx")
            Path(path).write_bytes(model.source)
        feed_file = os.path.join(tmp, "feed.npz")
        np.savez(feed_file, *feed.values())
        args = [path, feed_file, json.dumps(list(feed)), str(threads), OPT_LEVELS[ort_opt_level], str(MEMORY_RUNS)]
        try:
            done = subprocess.run(
                [sys.executable, "-c", _MEMORY_CHILD, *args], capture_output=True, text=True, timeout=MEMORY_TIMEOUT_S
            )
            return float(json.loads(done.stdout.strip().splitlines()[-1])["peak_mb"])
        except (subprocess.SubprocessError, OSError, ValueError, IndexError, KeyError):
            return None


def benchmark(
    models: Sequence,
    *,
    inputs=None,
    preprocess: Preprocess | str | None = None,
    shapes: Mapping[str, Sequence[int]] | Sequence[str] | None = None,
    threads: int = 1,
    runs: int = 50,
    warmup: int = 5,
    ort_opt_level: str = "all",
    measure_memory: bool = True,
    progress: bool = True,
) -> BenchReport:
    """Benchmark `models` (paths, ModelProtos or onnx-ir Models) against the first one.

    `inputs`: a list of `{name: array}` samples, a CalibrationDataReader, or a source for
    `onnxslim.data.load_samples` (folder/file path, `"random:N"`); None means random inputs whose
    dynamic dims come from `shapes` ({name: dims} or ["name:1,3,224,224"]) or small defaults.
    """
    if not models:
        raise OnnxSlimError("nothing to benchmark: give at least one model")
    if ort_opt_level not in OPT_LEVELS:
        raise OnnxSlimError(f"unknown ORT optimization level {ort_opt_level!r}: choose one of {', '.join(OPT_LEVELS)}")
    if threads < 1 or runs < 1 or warmup < 0:
        raise OnnxSlimError("threads and runs must be >= 1, warmup >= 0")
    if shapes is not None and not isinstance(shapes, Mapping):
        shapes = parse_shapes(shapes)
    random_data = inputs is None or (isinstance(inputs, str) and inputs.startswith("random:"))
    if shapes and not random_data:
        raise OnnxSlimError("shapes apply to random inputs only; the given inputs fix their own shapes")
    prepared = [_prepare(model, index) for index, model in enumerate(models)]
    short = [Path(m.name).name if isinstance(m.source, str) else m.name for m in prepared]
    if len(set(short)) == len(short):
        for model, name in zip(prepared, short):
            model.name = name
    options = runtime.session_options(threads=threads, opt_level=ort_opt_level)
    console = Console(stderr=True)
    steps = len(prepared) * (SESSION_REPEATS + warmup + runs + (1 if measure_memory else 0))
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
        console=console, transient=True, disable=not (progress and console.is_terminal),
    ) as bar:
        task = bar.add_task("creating sessions", total=steps)
        sessions, creation = [None] * len(prepared), [[] for _ in prepared]
        for _ in range(SESSION_REPEATS):
            for i, model in enumerate(prepared):
                sessions[i] = None  # release the previous session first
                sessions[i], seconds = _create_session(model, options)
                creation[i].append(seconds)
                bar.advance(task)

        specs = input_specs(sessions[0])
        source = f"random:{RANDOM_SAMPLES}" if inputs is None else inputs
        samples = load_samples(source, specs, preprocess, shapes=shapes)
        for model, session in zip(prepared[1:], sessions[1:]):
            try:
                validate_samples(samples, input_specs(session))
            except OnnxSlimError as err:
                raise OnnxSlimError(f"{model.name}: {err}")
        bar.update(task, total=steps + len(samples) * len(prepared), description="comparing outputs")
        outputs = [[] for _ in prepared]
        for sample in samples:
            for i, (model, session) in enumerate(zip(prepared, sessions)):
                outputs[i].append(_run(session, model.name, sample))
                bar.advance(task)

        bar.update(task, description="warming up")
        for r in range(warmup):
            for model, session in zip(prepared, sessions):
                _run(session, model.name, samples[r % len(samples)])
                bar.advance(task)
        bar.update(task, description="timing (interleaved)")
        times = [[] for _ in prepared]
        for r in range(runs):
            feed = samples[r % len(samples)]
            for i, session in enumerate(sessions):
                start = time.perf_counter()
                session.run(None, feed)
                times[i].append(time.perf_counter() - start)
                bar.advance(task)

        memory = [None] * len(prepared)
        if measure_memory:
            bar.update(task, description="measuring memory")
            for i, model in enumerate(prepared):
                memory[i] = _peak_memory_mb(model, samples[0], threads, ort_opt_level)
                bar.advance(task)

    notes = [RANDOM_NOTE] if random_data else []
    if measure_memory and None in memory:
        notes.append("peak memory could not be measured for some models (the measuring subprocess failed)")
    results = [
        ModelResult(
            name=model.name,
            file_size=model.file_size,
            nodes=model.nodes,
            session_ms=float(np.median(creation[i])) * 1000,
            latency=Latency.from_seconds(times[i]),
            peak_memory_mb=memory[i],
            drift=None if i == 0 else compare_outputs(outputs[0], outputs[i]),
        )
        for i, model in enumerate(prepared)
    ]
    return BenchReport(
        models=results, cpu=cpu_info(), ort_version=ort.__version__, threads=threads, ort_opt_level=ort_opt_level,
        runs=runs, warmup=warmup, samples=len(samples), random_inputs=random_data, notes=notes,
    )
