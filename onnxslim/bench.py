"""Benchmark models on ONNX Runtime CPU: speed, size, memory, output drift from the first model."""

from __future__ import annotations

import datetime
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
from google.protobuf.message import DecodeError
from rich.console import Console

import onnxslim
from onnxslim.cpu import CpuInfo, cpu_info
from onnxslim.data import (
    InputSpec,
    Preprocess,
    check_preprocess,
    defaulted_dims_warning,
    input_specs,
    is_random,
    load_samples,
    parse_shapes,
    sample_shapes,
    validate_samples,
)
from onnxslim.drift import (
    Budget,
    Drift,
    compare_outputs,
    json_value,
    parse_max_drift,
    scored_drift,
    with_parts,
)
from onnxslim.errors import OnnxSlimError, first_line
from onnxslim.model import io
from onnxslim.model.graph import OutputKinds, node_count, proto_graphs, score_outputs
from onnxslim.model.stats import model_stats
from onnxslim.render import tables
from onnxslim.render.jsonfile import write_json
from onnxslim.render.progress import Steps, current, progress_bar
from onnxslim.render.verdict import verdict_line
from onnxslim.runtime import OPT_LEVELS, Session

SCHEMA_VERSION = 1
RANDOM_SAMPLES = 8
# session creation is timed this many times, interleaved in alternating order (ABBA: neither model
# always goes first) after one untimed creation each (ORT's one-time set-up, file cache); the median
# is reported
SESSION_REPEATS = 5
MEMORY_RUNS = 3
MIN_RUNS = 10  # a timing that may stop early (`Enough`) makes this many runs at least
#: ... or this many (after this many warm-up rounds) where a round of runs takes this long (s): a
#: 1024x1024 nucleus segmenter (not tuned on), a second a run, spent 214 s of 570 quantizing in
#: seven timings of 15 rounds
MIN_SLOW_RUNS, SLOW_WARMUP, SLOW_ROUND_SECONDS = 5, 2, 1.0
#: The verdict's noise rule: a time ratio (model / reference) says "slower" only when the medians'
#: ratio and the minimums' ratio both exceed 1 + NOISE, "faster" only when both are below
#: 1 / (1 + NOISE), "same within noise" otherwise. Interleaved runs share the machine's load, the
#: median is the typical run and the min the least disturbed one: both must agree.
PER_RUN_NOISE = 0.02
#: Runs whose medians are closer than this (ms) run alike: timer and call jitter (a 10 us
#: classifier read SLOWER at 1.02x, 0.2 us apart).
PER_RUN_FLOOR_MS = 0.001
#: Session creation is timed SESSION_REPEATS times only, and reads the file: a wider margin.
LOAD_NOISE = 0.05
#: Session creations whose medians are closer than this (ms) load alike (an unchanged 13-node
#: graph read SLOWER at 0.9 vs 0.8 ms).
LOAD_FLOOR_MS = 1.0
#: A file size ratio within this of 1 reads "same size" (1.00x, however many bytes it saves).
SIZE_NOISE = 0.005
#: The medians' and the fastest runs' time ratios further apart than this (as a ratio) say that
#: other load disturbed the timing: the verdict says so.
DISTURBED_GAP = 1.25
MEMORY_TIMEOUT_S = 600
RANDOM_NOTE = (
    "inputs are random: drift on random inputs says little about real data; "
    "pass real inputs to measure it"
)

# Runs in a fresh interpreter, so one model's memory cannot hide another's. Prints the peak RSS
# growth (MB) from creating the session and running it, over the baseline after imports.
_MEMORY_CHILD = """
import json, resource, sys
import numpy as np
from onnxslim.runtime import Session
model, feed_file, names, threads, level, runs = sys.argv[1:]
with np.load(feed_file) as data:
    feed = {name: data[f"arr_{i}"] for i, name in enumerate(json.loads(names))}

def status_mb(key):
    with open("/proc/self/status") as file:
        return next(int(line.split()[1]) / 1024 for line in file if line.startswith(key))

# Linux: reset this process's high-water mark (ru_maxrss would include the parent's, inherited at
# fork)
try:
    with open("/proc/self/clear_refs", "w") as file:
        file.write("5")
    base, peak = status_mb("VmRSS:"), lambda: status_mb("VmHWM:")
except OSError:
    unit = 1024**2 if sys.platform == "darwin" else 1024
    peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / unit
    base = peak()
session = Session(model, threads=int(threads), opt_level=level)
for _ in range(int(runs)):
    session.run(feed)
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
        return cls(
            float(np.median(ms)), float(np.percentile(ms, 90)), float(ms.mean()), float(ms.min())
        )

    def versus(self, reference: Latency, floor_ms: float = PER_RUN_FLOOR_MS) -> tuple[float, str]:
        """The median time ratio to `reference` (timed side by side) and timing_verdict's word
        for it: "faster", "slower" or "same" (medians within `floor_ms`: the same; a choice
        between models passes 0, where every measured difference counts)."""
        ratio = self.median / reference.median
        if abs(self.median - reference.median) < floor_ms:
            return ratio, "same"
        return ratio, timing_verdict(ratio, self.min / reference.min)

    def disturbed_against(self, reference: Latency) -> bool:
        """Whether this timing and `reference`'s (side by side) were disturbed: `disturbed`."""
        return disturbed(self.median / reference.median, self.min / reference.min)


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
    #: The fastest of the session creations (`session_ms` is their median); None: not recorded.
    session_min_ms: float | None = None

    @property
    def throughput(self) -> float:
        """Inferences per second (one thread of runs, from the mean latency)."""
        return 1000 / self.latency.mean if self.latency.mean > 0 else math.inf


def disturbed(median_ratio: float, min_ratio: float) -> bool:
    """Whether the medians' and the fastest runs' time ratios disagree by more than DISTURBED_GAP
    (other processes slowed some runs of one model more than the other's)."""
    if not median_ratio > 0 or not min_ratio > 0:
        return False
    return max(median_ratio, min_ratio) / min(median_ratio, min_ratio) > DISTURBED_GAP


def timing_verdict(median_ratio: float, min_ratio: float, noise: float = PER_RUN_NOISE) -> str:
    """ "slower", "faster" or "same" for time ratios (model / reference) by the noise rule: both the
    medians' and the minimums' ratio beyond `noise` in the same direction."""
    if median_ratio > 1 + noise and min_ratio > 1 + noise:
        return "slower"
    if median_ratio < 1 / (1 + noise) and min_ratio < 1 / (1 + noise):
        return "faster"
    return "same"


@dataclass(frozen=True)
class Change:
    """One figure of a model against the reference's: `ratio` = model / reference (medians for
    times; below 1 is smaller or faster), `min_ratio` of the minimums (times only), `verdict`
    "smaller"/"bigger"/"same" for size, "faster"/"slower"/"same" for times, `noise` its margin,
    `floor_ms` the least difference of medians that counts (times)."""

    model: float
    reference: float
    ratio: float
    verdict: str
    min_ratio: float | None = None
    noise: float = 0.0
    floor_ms: float = 0.0

    @property
    def disturbed(self) -> bool:
        """Times only: whether the medians' and the fastest runs' ratios are `disturbed`."""
        return self.min_ratio is not None and disturbed(self.ratio, self.min_ratio)

    def to_dict(self) -> dict:
        return {key: json_value(value) for key, value in vars(self).items()} | {
            "disturbed": self.disturbed
        }


def _ratio(model: float, reference: float) -> float:
    return model / reference if reference > 0 else math.nan


def _time_change(
    model: float, reference: float, fastest: tuple, noise: float, floor_ms: float = 0.0
) -> Change:
    """Medians `model` vs `reference` and the minimums `fastest` (model, reference; None: not
    recorded, then the medians decide alone) under the noise rule; medians less than `floor_ms`
    apart are the same."""
    ratio = _ratio(model, reference)
    min_ratio = _ratio(*fastest) if None not in fastest else ratio
    verdict = timing_verdict(ratio, min_ratio, noise)
    if abs(model - reference) < floor_ms:
        verdict = "same"
    return Change(model, reference, ratio, verdict, min_ratio, noise, floor_ms)


@dataclass(frozen=True)
class Verdict:
    """Whether `model` got smaller, faster at load (ORT session creation) and faster per run than
    `reference`, measured; `runs` interleaved timed runs per model decided `per_run`."""

    model: str
    reference: str
    size: Change
    load: Change
    per_run: Change
    runs: int

    @property
    def slower(self) -> list[str]:
        """What got measurably slower: "load", "per run" (empty: nothing)."""
        return [
            what
            for what, change in (("load", self.load), ("per run", self.per_run))
            if change.verdict == "slower"
        ]

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "reference": self.reference,
            "size": self.size.to_dict(),
            "load": self.load.to_dict(),
            "per_run": self.per_run.to_dict(),
            "runs": self.runs,
            "text": verdict_line(self),
        }


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
    #: Per input: dtype and the distinct shapes it was run at (`onnxslim.data.sample_shapes`).
    inputs: dict[str, dict] = field(default_factory=dict)
    #: Settings onnxslim guessed that the figures depend on (dynamic dims picked by default).
    warnings: list[str] = field(default_factory=list)
    #: When the benchmark ran (local time, ISO 8601), with which tools, from which command line.
    created: str = ""
    versions: dict[str, str] = field(default_factory=dict)
    command: str | None = None

    @property
    def reference(self) -> ModelResult:
        return self.models[0]

    def speedup(self, model: ModelResult) -> float:
        """Reference median latency over this model's."""
        return (
            self.reference.latency.median / model.latency.median
            if model.latency.median > 0
            else math.inf
        )

    def size_ratio(self, model: ModelResult) -> float:
        return model.file_size / self.reference.file_size if self.reference.file_size else math.nan

    def verdict(self, model: ModelResult) -> Verdict:
        """Smaller, faster at load, faster per run than the reference: measured, by the noise
        rule (PER_RUN_NOISE, LOAD_NOISE)."""
        ref = self.reference
        ratio = self.size_ratio(model)
        size = Change(
            model.file_size,
            ref.file_size,
            ratio,
            "same" if abs(ratio - 1) < SIZE_NOISE else "smaller" if ratio < 1 else "bigger",
        )
        load = _time_change(
            model.session_ms,
            ref.session_ms,
            (model.session_min_ms, ref.session_min_ms),
            LOAD_NOISE,
            LOAD_FLOOR_MS,
        )
        per_run = _time_change(
            model.latency.median,
            ref.latency.median,
            (model.latency.min, ref.latency.min),
            PER_RUN_NOISE,
            PER_RUN_FLOOR_MS,
        )
        return Verdict(model.name, ref.name, size, load, per_run, self.runs)

    @property
    def verdicts(self) -> list[Verdict]:
        """The verdict of every model but the reference."""
        return [self.verdict(model) for model in self.models[1:]]

    def check(
        self, max_drift: Budget | str | None = None, min_speedup: float | None = None
    ) -> list[str]:
        """Failures of the drift budget and the minimum speedup, one line each (empty: pass)."""
        budget = parse_max_drift(max_drift) if isinstance(max_drift, str) else max_drift
        failures = []
        for model in self.models[1:]:
            if budget is not None:
                failures += [f"{model.name}: {line}" for line in budget.check(model.drift)]
            if min_speedup is not None and self.speedup(model) < min_speedup:
                failures.append(
                    f"{model.name}: speedup {self.speedup(model):.2f}x is below {min_speedup:g}x"
                )
        return failures

    def to_dict(self) -> dict:
        """Every figure, JSON-able. Non-finite numbers are the strings "inf", "-inf", "nan"."""
        return {
            "schema_version": SCHEMA_VERSION,
            "onnxruntime": self.ort_version,
            "created": self.created,
            "versions": dict(self.versions),
            "command": self.command,
            "cpu": self.cpu.to_dict(),
            "settings": {
                "threads": self.threads,
                "ort_opt_level": self.ort_opt_level,
                "runs": self.runs,
                "warmup": self.warmup,
                "samples": self.samples,
                "random_inputs": self.random_inputs,
                "inputs": self.inputs,
            },
            "notes": list(self.notes),
            "warnings": list(self.warnings),
            "reference": self.reference.name,
            "verdicts": [verdict.to_dict() for verdict in self.verdicts],
            "models": [
                {
                    "name": m.name,
                    "file_size_bytes": m.file_size,
                    "nodes": m.nodes,
                    "session_create_ms": m.session_ms,
                    "session_create_min_ms": m.session_min_ms,
                    "latency_ms": vars(m.latency).copy(),
                    "throughput_per_s": json_value(m.throughput),
                    "peak_memory_mb": m.peak_memory_mb,
                    "speedup": json_value(self.speedup(m)),
                    "size_ratio": json_value(self.size_ratio(m)),
                    "drift": None
                    if m.drift is None
                    else {name: d.to_dict() for name, d in m.drift.items()},
                }
                for m in self.models
            ],
        }

    def write_json(self, path: str | os.PathLike) -> None:
        write_json(self.to_dict(), path)

    def write_html(self, path: str | os.PathLike) -> None:
        """A self-contained page: header, tables and inline-SVG bar charts (no network)."""
        from onnxslim.render import html

        html.write_bench(self, path)

    def render(self, console: Console | None = None) -> str:
        """Print the header and tables on `console`; without one, return them as plain text."""
        width = console.width if console is not None else 120
        return tables.show(tables.bench_report(self, width), console)


@dataclass
class _Model:
    """A model to benchmark: display name, what ORT loads (path or bytes), size and node count;
    the reference's outputs that mix scores with other channels (`graph.score_outputs`: a
    detector's, whose drift is given in parts too)."""

    name: str
    source: str | bytes
    file_size: int
    nodes: int
    score_outputs: frozenset[str] = frozenset()
    #: inputs declared without a shape (ORT reports them as scalars: any shape fits)
    unranked: frozenset[str] = frozenset()


def _prepare(model, index: int) -> _Model:
    if isinstance(model, (str, os.PathLike)):
        path = Path(model)
        if not path.is_file():
            raise OnnxSlimError(f"{path}: no such file")
        loaded = io.load(path)
        stats = model_stats(loaded, path)
        scores = score_outputs(loaded) if index == 0 else frozenset()
        return _Model(
            str(path), str(path), stats.file_bytes, stats.nodes, scores, _unranked(loaded)
        )
    try:
        if isinstance(model, ir.Model):
            nodes, data = node_count(model.graph), io.to_proto(model).SerializeToString()
        elif isinstance(model, bytes):  # serialized already: parsed once
            data, model = model, onnx.ModelProto.FromString(model)
            nodes = _proto_nodes(model)
        elif isinstance(model, onnx.ModelProto):
            nodes, data = _proto_nodes(model), model.SerializeToString()
        else:
            raise OnnxSlimError(
                "expected a model path, serialized model, onnx.ModelProto or onnx_ir.Model, "
                f"got {type(model).__name__}"
            )
        scores = _score_outputs(model) if index == 0 else frozenset()
        unranked = _unranked(model)
    except (ValueError, TypeError, DecodeError) as err:
        raise OnnxSlimError(f"cannot read model {index}: {first_line(err)}") from err
    return _Model(f"model{index}", data, len(data), nodes, scores, unranked)


def _input_specs(model: _Model, session: Session) -> list[InputSpec]:
    """The inputs of `model` as its ORT `session` reports them, those declared without a shape
    taking any (ORT reports them as scalars)."""
    specs = input_specs(session.session)
    return [replace(spec, ranked=spec.name not in model.unranked) for spec in specs]


def _unranked(model: ir.Model | onnx.ModelProto) -> frozenset[str]:
    """The inputs `model` declares without a shape."""
    return frozenset(spec.name for spec in input_specs(model) if not spec.ranked)


def _score_outputs(model: ir.Model | onnx.ModelProto) -> frozenset[str]:
    """`graph.score_outputs` of the reference given in memory, its graph read as is (ORT runs
    it; onnxslim need not take it)."""
    return score_outputs(model if isinstance(model, ir.Model) else ir.from_proto(model))


def _drift(ref: list, outputs: list, scores: frozenset[str]) -> dict[str, Drift]:
    """`outputs`' drift from `ref`, each output mixing scores with other channels (`scores`: a
    detector's) in its parts too (`drift.with_parts`): its boxes in pixels bury its scores' error
    (nudenet's INT8 YOLOv8: 40.9 dB whole, its class scores 14.2)."""
    drift = compare_outputs(ref, outputs)
    return with_parts(drift, scored_drift(ref, outputs, OutputKinds(score_outputs=scores), drift))


def _proto_nodes(model: onnx.ModelProto) -> int:
    """Nodes of a protobuf model and of every graph nested in it."""
    return sum(len(graph.node) for graph in proto_graphs(model.graph))


def _create_session(model: _Model, threads: int, opt_level: str) -> tuple[Session, float]:
    start = time.perf_counter()
    session = Session(model.source, threads=threads, opt_level=opt_level, what=model.name)
    return session, time.perf_counter() - start


def _time_sessions(
    models: Sequence[_Model], threads: int, opt_level: str, advance: Callable[[], None]
) -> tuple[list[Session], list[list[float]]]:
    """Create each model's session once untimed, then SESSION_REPEATS timed times, interleaved in
    alternating order; the last sessions and the seconds each creation took, per model."""
    sessions, creation = [None] * len(models), [[] for _ in models]
    for repeat in range(-1, SESSION_REPEATS):
        # (the untimed round in the order given: a reference that does not load is named first)
        order = reversed(range(len(models))) if repeat > 0 and repeat % 2 else range(len(models))
        for i in order:
            sessions[i] = None  # release the previous session first
            sessions[i], seconds = _create_session(models[i], threads, opt_level)
            if repeat >= 0:
                creation[i].append(seconds)
            advance()
    return sessions, creation


def _peak_memory_mb(
    model: _Model, feed: Mapping[str, np.ndarray], threads: int, ort_opt_level: str
) -> float | None:
    """Peak RSS growth of a fresh process that creates and runs the session; None if that fails."""
    with tempfile.TemporaryDirectory(prefix="onnxslim-bench-") as tmp:
        path = model.source
        if isinstance(path, bytes):
            path = os.path.join(tmp, "model.onnx")
            Path(path).write_bytes(model.source)
        feed_file = os.path.join(tmp, "feed.npz")
        np.savez(feed_file, *feed.values())
        args = [
            path,
            feed_file,
            json.dumps(list(feed)),
            str(threads),
            ort_opt_level,
            str(MEMORY_RUNS),
        ]
        try:
            done = subprocess.run(
                [sys.executable, "-c", _MEMORY_CHILD, *args],
                capture_output=True,
                text=True,
                timeout=MEMORY_TIMEOUT_S,
            )
            return float(json.loads(done.stdout.strip().splitlines()[-1])["peak_mb"])
        except (subprocess.SubprocessError, OSError, ValueError, IndexError, KeyError):
            return None


def benchmark(
    models: Sequence | Mapping,
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
    """Benchmark `models` (paths, serialized models, ModelProtos or onnx-ir Models) against the
    first one.

    A dict labels each model by its key (`{"fp32": a, "int8": b}`); otherwise paths are labelled
    by their file names, in-memory models model0, model1, ...

    `inputs`: a list of `{name: array}` samples, a CalibrationDataReader, or a source for
    `onnxslim.data.load_samples` (folder/file path, `"random:N"`); None means random inputs whose
    dynamic dims come from `shapes` ({name: dims} or ["name:1,3,224,224"]) or small defaults.
    """
    if not models:
        raise OnnxSlimError("nothing to benchmark: give at least one model")
    if ort_opt_level not in OPT_LEVELS:
        raise OnnxSlimError(
            f"unknown ORT optimization level {ort_opt_level!r}: "
            f"choose one of {', '.join(OPT_LEVELS)}"
        )
    if threads < 1 or runs < 1 or warmup < 0:
        raise OnnxSlimError("threads and runs must be >= 1, warmup >= 0")
    if shapes is not None and not isinstance(shapes, Mapping):
        shapes = parse_shapes(shapes)
    check_preprocess(inputs, preprocess, "inputs")  # before any session is made
    random_data = inputs is None or is_random(inputs)
    if shapes and not random_data:
        raise OnnxSlimError(
            "shapes apply to random inputs only; the given inputs fix their own shapes"
        )
    labels = [str(key) for key in models] if isinstance(models, Mapping) else None
    models = list(models.values()) if isinstance(models, Mapping) else models
    prepared = [_prepare(model, index) for index, model in enumerate(models)]
    short = labels or [Path(m.name).name if isinstance(m.source, str) else m.name for m in prepared]
    if len(set(short)) == len(short):
        for model, name in zip(prepared, short):
            model.name = name
    steps = len(prepared) * (SESSION_REPEATS + 1 + warmup + runs + (1 if measure_memory else 0))
    with progress_bar("creating sessions", steps, progress) as bar:
        sessions, creation = _time_sessions(prepared, threads, ort_opt_level, bar.advance)

        specs = _input_specs(prepared[0], sessions[0])
        source = f"random:{RANDOM_SAMPLES}" if inputs is None else inputs
        reference = prepared[0].source if random_data else None  # what random data follows
        if isinstance(reference, bytes):
            reference = onnx.ModelProto.FromString(reference)
        run = sessions[0].run if random_data else None  # dims the reference runs with
        samples = load_samples(source, specs, preprocess, shapes=shapes, model=reference, run=run)
        guessed = (
            defaulted_dims_warning(specs, shapes, "benchmarked", samples[0])
            if random_data
            else None
        )
        for model, session in zip(prepared[1:], sessions[1:]):
            try:
                validate_samples(samples, _input_specs(model, session))
            except OnnxSlimError as err:
                hint = _shape_hint(_input_specs(model, session)) if guessed else ""
                raise OnnxSlimError(f"{model.name}: {err}{hint}") from err
        bar.describe("comparing outputs", total=steps + len(samples) * len(prepared))
        outputs = [[] for _ in prepared]
        for sample in samples:
            for i, session in enumerate(sessions):
                outputs[i].append(session.run_dict(sample))
                bar.advance()

        times = _timed_runs(sessions, samples, warmup, runs, bar)

        memory = [None] * len(prepared)
        if measure_memory:
            bar.describe("measuring memory")
            for i, model in enumerate(prepared):
                memory[i] = _peak_memory_mb(model, samples[0], threads, ort_opt_level)
                bar.advance()

    notes = [RANDOM_NOTE] if random_data else []
    if guessed:
        warnings.warn(guessed, UserWarning, stacklevel=2)
    if measure_memory and None in memory:
        notes.append(
            "peak memory could not be measured for some models (the measuring subprocess failed)"
        )
    results = [
        ModelResult(
            name=model.name,
            file_size=model.file_size,
            nodes=model.nodes,
            session_ms=float(np.median(creation[i])) * 1000,
            session_min_ms=min(creation[i]) * 1000,
            latency=Latency.from_seconds(times[i]),
            peak_memory_mb=memory[i],
            drift=None if i == 0 else _drift(outputs[0], outputs[i], prepared[0].score_outputs),
        )
        for i, model in enumerate(prepared)
    ]
    return BenchReport(
        models=results,
        cpu=cpu_info(),
        ort_version=ort.__version__,
        threads=threads,
        ort_opt_level=ort_opt_level,
        runs=runs,
        warmup=warmup,
        samples=len(samples),
        random_inputs=random_data,
        notes=notes,
        inputs=sample_shapes(samples),
        warnings=[guessed] if guessed else [],
        created=datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        versions=tool_versions(),
    )


#: When a timing may stop before the runs asked: given the rounds made, the seconds they took and
#: each session's run times so far (seconds).
Enough = Callable[[int, float, Sequence[Sequence[float]]], bool]


def fewest_runs(done: int, elapsed: float) -> bool:
    """Whether `done` rounds of interleaved runs, taking `elapsed` seconds, are as few as a
    timing given a time (`Enough`) makes: MIN_RUNS, or MIN_SLOW_RUNS of slow rounds."""
    slow = elapsed >= SLOW_ROUND_SECONDS * done
    return done >= MIN_RUNS or (done >= MIN_SLOW_RUNS and slow)


def latencies(
    models: Sequence | Mapping,
    sample: Mapping,
    runs: int,
    warmup: int = 5,
    enough: Enough | None = None,
) -> list:
    """Each of `models`' single-thread Latency on `sample` (ORT's level all), in order, runs
    interleaved after `warmup`: `benchmark`'s timing alone, each session created once; each run
    a step of the `progress_bar` running (its caller's stage). `enough`: fewer runs, as it says
    (`Enough`)."""
    labeled = models.items() if isinstance(models, Mapping) else enumerate(models)
    sessions = [Session(model, opt_level="all", what=f"model {label}") for label, model in labeled]
    times = _timed_runs(sessions, [sample], warmup, runs, current(), phases=False, enough=enough)
    return [Latency.from_seconds(each) for each in times]


def _timed_runs(
    sessions: Sequence[Session],
    samples: Sequence,
    warmup: int,
    runs: int,
    bar: Steps,
    phases: bool = True,
    enough: Enough | None = None,
) -> list[list[float]]:
    """Seconds of each of `runs` runs per session, interleaved (run r: sample r, every session in
    turn, from a first session that moves on each run and again after each pass over the
    samples: no session always runs first, nor first on the same sample) after `warmup` such
    rounds untimed (with `enough`, SLOW_WARMUP of slow rounds), or of fewer once `enough` says so
    of the rounds timed, the seconds they took and the times so far; `bar` advances per run (and,
    with `phases`, says whether it warms up or times)."""
    if phases:
        bar.describe("warming up")
    warming = time.perf_counter()
    for r in range(warmup):
        given_time = enough is not None and r >= SLOW_WARMUP  # (a timed choice's)
        if given_time and time.perf_counter() - warming >= SLOW_ROUND_SECONDS * r:  # slow rounds
            break
        for session in sessions:
            session.run(samples[r % len(samples)])
            bar.advance()
    if phases:
        bar.describe("timing (interleaved)")
    times = [[] for _ in sessions]
    started = time.perf_counter()
    for r in range(runs):
        if enough is not None and enough(r, time.perf_counter() - started, times):
            break
        feed = samples[r % len(samples)]
        first = r % len(samples) + r // len(samples)
        for step in range(len(sessions)):
            i = (first + step) % len(sessions)
            start = time.perf_counter()
            sessions[i].run(feed)
            times[i].append(time.perf_counter() - start)
            bar.advance()
    return times


def tool_versions() -> dict[str, str]:
    """Versions of onnxslim, onnx, onnxruntime, numpy and Python, for reports."""
    return {
        "onnxslim": onnxslim.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": ort.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def _shape_hint(specs) -> str:
    """For random inputs a model rejects: the --shape options of its static dims, if it has any."""
    static = [spec for spec in specs if all(isinstance(d, int) for d in spec.shape)]
    if not static:
        return ""
    options = " ".join(f"--shape {s.name}:{','.join(map(str, s.shape))}" for s in static)
    return (
        f"; the random inputs follow the first model's dynamic dims: pass {options} "
        "to benchmark at this model's static dims"
    )
