"""Every report as rich tables for the terminal: optimize (before/after), bench, INT8."""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from rich import box
from rich.console import Console, RenderableType
from rich.table import Table
from rich.text import Text

from onnxslim.drift import PER_SAMPLE, Drift, lowest_cosine, parse_max_drift
from onnxslim.render.format import human_bytes, input_shapes, milliseconds, number
from onnxslim.render.verdict import verdict_lines

if TYPE_CHECKING:
    from onnxslim.bench import BenchReport
    from onnxslim.model.stats import ModelInfo, ModelStats
    from onnxslim.quantization.report import QuantizeReport

MODEL_COLUMNS = [
    "Model",
    "Size",
    "xSize",
    "Nodes",
    "Load",
    "Median",
    "p90",
    "Mean",
    "Min",
    "Speedup",
    "Runs/s",
    "Mem MB",
    "Min cos",
]
DRIFT_COLUMNS = [
    "Model",
    "Output",
    "Max abs",
    "Mean abs",
    "Rel err",
    "Cosine",
    "Min cos",
    "SNR dB",
    "Top-1",
    "Note",
]
CAPTION = "times in ms (Load = session creation)"
#: Under a drift table with a top-1 figure: what it counts (any 2-D output has one).
TOP1_CAPTION = (
    "Top-1: the share of rows of a 2-D output whose largest value sits where the reference's "
    "does (class scores; it says nothing of other outputs, e.g. box coordinates)"
)
MEMORY_CAPTION = "Mem = peak RSS growth of a fresh process running the model"
TEXT_COLUMNS = frozenset({"", "Model", "Output", "Note", "Node", "Op", "Pass", "Name", "Type"})
# plus the longest model name: narrower consoles get the table without mean, min and runs/s
WIDE_TABLE = 94


#: Width of reports written to a file or pipe (no terminal to wrap them at).
LOG_WIDTH = 160

#: Tables in logs: plain ASCII, the header and sections underlined with dashes, no columns rules.
PLAIN_BOX = box.Box("    \n    \n -- \n    \n -- \n    \n    \n    \n", ascii=True)


def report_console(quiet: bool = False) -> Console:
    """The console reports go to: stdout, as wide as the terminal, or LOG_WIDTH (or $COLUMNS when
    wider) when stdout is a file or a pipe, so `onnxslim ... > log.txt` keeps whole lines."""
    console = Console(quiet=quiet, highlight=False)
    if not console.is_terminal:
        columns = os.environ.get("COLUMNS", "")
        width = max(LOG_WIDTH, int(columns) if columns.isdigit() else 0)
        console = Console(quiet=quiet, highlight=False, width=width)
    return console


def message_console(quiet: bool = False) -> Console:
    """The console warnings and spinners go to: stderr."""
    return Console(stderr=True, quiet=quiet, highlight=False)


def warn(console: Console, message: str) -> None:
    """One `warning: ...` line on `console` (stderr), never wrapped in a log."""
    console.print(Text.assemble(("warning:", "yellow"), " ", message), soft_wrap=True)


def show(renderables: Iterable[RenderableType], console: Console | None = None) -> str:
    """Print `renderables` on `console`; without one, return them as plain text.

    A console that is not a terminal (a log file, a pipe) gets the plain layout: ASCII rules,
    titles on the left, no trailing spaces, lines as long as they are.
    """
    if console is None:
        return plain_text(renderables, 120)
    if console.quiet:
        return ""
    if console.is_terminal:
        for item in renderables:
            console.print(item)
    else:
        console.print(Text(plain_text(renderables, console.width)), soft_wrap=True, end="")
    return ""


def plain_text(renderables: Iterable[RenderableType], width: int) -> str:
    """The renderables as plain text, `width` columns at most for tables; text lines unwrapped."""
    console = Console(record=True, width=width, file=_Discard(), color_system=None)
    for item in renderables:
        caption = None
        if isinstance(item, Table):
            item.box = PLAIN_BOX if item.box is not None else None
            item.show_edge = False
            # titles and captions as lines of their own: never wrapped to the table's width
            if item.title is not None:
                console.print(Text(str(item.title)), soft_wrap=True)
            caption, item.title, item.caption = item.caption, None, None
        console.print(item, soft_wrap=isinstance(item, (str, Text)))
        if caption is not None:
            console.print(Text(str(caption)), soft_wrap=True)
    lines = console.export_text(styles=False).splitlines()
    return "".join(line.rstrip() + "\n" for line in lines)


class _Discard:
    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


def plain(line: str, style: str | None = None) -> Text:
    """A line printed as it is (no markup, no highlighting)."""
    return Text(line, style=style)


def grid(
    title: str, columns: Sequence[str], rows: Sequence[Sequence[str]], caption: str | None = None
) -> Table:
    """A compact table; cells are plain text, text columns left-aligned."""
    table = Table(
        title=title,
        caption=caption,
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
    )
    for column in columns:
        table.add_column(column, justify="left" if column in TEXT_COLUMNS else "right")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    return table


def _change(before: int | None, after: int | None) -> str:
    if before is None or after is None or before == after:
        return ""
    percent = f" ({(after - before) / before:+.1%})" if before else ""
    return f"{after - before:+,}{percent}"


def comparison(before: ModelStats, after: ModelStats, title: str) -> Table:
    """The optimize report: op counts by type, then totals (nodes, params, weights, file size)."""
    table = Table(title=title, title_justify="left")
    table.add_column("")
    table.add_column("before", justify="right")
    table.add_column("after", justify="right")
    table.add_column("change", justify="right")
    ops = sorted(
        set(before.op_counts) | set(after.op_counts),
        key=lambda op: (-before.op_counts.get(op, 0), op),
    )
    for op in ops:
        old, new = before.op_counts.get(op, 0), after.op_counts.get(op, 0)
        table.add_row(
            op, str(old), str(new), _change(old, new), style=None if old != new else "dim"
        )
    table.add_section()
    table.add_row(
        "nodes",
        f"{before.nodes:,}",
        f"{after.nodes:,}",
        _change(before.nodes, after.nodes),
        style="bold",
    )
    table.add_row(
        "parameters",
        f"{before.parameters:,}",
        f"{after.parameters:,}",
        _change(before.parameters, after.parameters),
    )
    table.add_row(
        "weights",
        human_bytes(before.weight_bytes),
        human_bytes(after.weight_bytes),
        _change(before.weight_bytes, after.weight_bytes),
    )
    table.add_row(
        "file size",
        human_bytes(before.file_bytes),
        human_bytes(after.file_bytes),
        _change(before.file_bytes, after.file_bytes),
    )
    return table


def drift_grid(title: str, drifts: Mapping[str, Mapping[str, Drift]]) -> Table:
    """The drift table of `drift_rows`, with TOP1_CAPTION where a row has a top-1 figure."""
    rows = drift_rows(drifts)
    top1 = DRIFT_COLUMNS.index("Top-1")
    caption = TOP1_CAPTION if any(row[top1] != "-" for row in rows) else None
    return grid(title, DRIFT_COLUMNS, rows, caption)


def drift_rows(drifts: Mapping[str, Mapping[str, Drift]]) -> list[list[str]]:
    """One row per (model, output): absolute and relative errors (error RMS / reference RMS),
    cosine over all samples and of the worst sample, SNR, top-1 agreement (2-D [batch, classes]
    outputs) and a note."""
    rows = []
    for model, drift in drifts.items():
        for d in drift.values():
            note = d.mismatch or ""
            if d.nonfinite_mismatches:
                note = f"{d.nonfinite_mismatches} NaN/Inf differ"
            elif d.exact_match is not None:
                note = "exact" if d.exact_match else "not exact"
            rows.append(
                [
                    model,
                    d.name,
                    number(d.max_abs),
                    number(d.mean_abs),
                    number(d.rel_error),
                    number(d.cosine, ".6f"),
                    number(d.min_cosine, ".6f"),
                    number(d.snr_db, ".1f"),
                    number(d.top1_agreement, ".4f"),
                    note,
                ]
            )
    return rows


def bench_header(report: BenchReport) -> list[str]:
    """CPU, runtime and settings of a benchmark, then its notes. Its warnings are not repeated:
    `benchmark` gave them as Python warnings (the CLI's stderr); JSON and HTML keep them."""
    cpu = report.cpu
    arm = cpu.arch.lower().startswith(("arm", "aarch"))
    labels = (
        [("neon", "NEON")] if arm else [("avx2", "AVX2"), ("avx512", "AVX-512"), ("vnni", "VNNI")]
    )
    isa = ", ".join(f"{label} {'yes' if cpu.flags.get(key) else 'no'}" for key, label in labels)
    inputs = f"{report.samples} {'random' if report.random_inputs else 'given'} sample(s)"
    if report.inputs:
        inputs += f" of {input_shapes(report.inputs)}"
    return [
        f"CPU: {cpu.model} ({cpu.arch}); {isa}",
        f"{_versions(report)}; {report.threads} intra-op thread(s); "
        f"ORT optimization level: {report.ort_opt_level}; "
        f"{report.runs} interleaved runs after {report.warmup} warm-up; inputs: {inputs}",
        *(f"note: {note}" for note in report.notes),
    ]


def _versions(report: BenchReport) -> str:
    tools = ("onnxslim", "onnx", "onnxruntime")
    found = [f"{tool} {report.versions[tool]}" for tool in tools if tool in report.versions]
    return ", ".join(found) or f"onnxruntime {report.ort_version}"


def bench_model_rows(report: BenchReport) -> list[list[str]]:
    """One row per model, in MODEL_COLUMNS order."""
    rows = []
    for index, m in enumerate(report.models):
        rows.append(
            [
                m.name,
                human_bytes(m.file_size),
                "ref" if index == 0 else f"{report.size_ratio(m):.2f}x",
                str(m.nodes),
                f"{m.session_ms:.1f}",
                f"{m.latency.median:.3f}",
                f"{m.latency.p90:.3f}",
                f"{m.latency.mean:.3f}",
                f"{m.latency.min:.3f}",
                "ref" if index == 0 else f"{report.speedup(m):.2f}x",
                f"{m.throughput:.1f}" if m.throughput < 1000 else f"{m.throughput:.0f}",
                "-" if m.peak_memory_mb is None else f"{m.peak_memory_mb:.1f}",
                _worst(m.drift),
            ]
        )
    return rows


def bench_columns(report: BenchReport, narrow: bool = False) -> list[int]:
    """The indices of MODEL_COLUMNS shown: no memory column when none was measured (--no-memory),
    and on a `narrow` console no mean, min or runs/s."""
    dropped = {"Mean", "Min", "Runs/s"} if narrow else set()
    if all(m.peak_memory_mb is None for m in report.models):
        dropped.add("Mem MB")
    return [i for i, column in enumerate(MODEL_COLUMNS) if column not in dropped]


def bench_drifts(report: BenchReport) -> dict[str, Mapping[str, Drift]]:
    """Drift of every model but the reference, by model name."""
    return {m.name: m.drift for m in report.models[1:]}


def bench_report(report: BenchReport, width: int) -> list[RenderableType]:
    """The header, the per-model table and the per-output drift table for a console `width` wide."""
    items: list[RenderableType] = [
        plain(line, "yellow" if line.startswith(("note:", "warning:")) else None)
        for line in bench_header(report)
    ]
    narrow = width < WIDE_TABLE + max(len(m.name) for m in report.models)
    keep = bench_columns(report, narrow)
    caption = CAPTION + (f"; {MEMORY_CAPTION}" if MODEL_COLUMNS.index("Mem MB") in keep else "")
    caption += "; mean/min latency and runs/s: see --json/--html" if narrow else ""
    rows = [[row[i] for i in keep] for row in bench_model_rows(report)]
    items.append(
        grid("Benchmark (reference: first model)", [MODEL_COLUMNS[i] for i in keep], rows, caption)
    )
    if len(report.models) > 1:
        items.append(drift_grid("Output drift vs reference", bench_drifts(report)))
    items += [plain(line) for line in verdict_lines(report.verdicts)]
    return items


def _worst(drift: Mapping[str, Drift] | None) -> str:
    """A model's worst-sample cosine over its outputs, or MISMATCH (shape, missing output,
    NaN/Inf)."""
    if drift is None:
        return "ref"
    if any(d.mismatch or d.nonfinite_mismatches for d in drift.values()):
        return "MISMATCH"
    lowest = lowest_cosine(drift)
    return f"{lowest:.6f}" if lowest is not None else "-"


#: The INT8 summary: each figure for the model given (float, or quantized before), the INT8 model
#: and their ratio.
SUMMARY_COLUMNS = ["", "original", "int8", "int8 / original"]
#: The per-layer table: position in the graph, node, op type, own and accumulated SQNR (dB).
LAYER_COLUMNS = ["#", "Node", "Op", "Own (float inputs)", "Accumulated"]
LAYER_ROWS = 30  # a longer per-layer table in the terminal shows the worst layers only


def quantize_report(report: QuantizeReport, inline_warnings: bool = True) -> list[RenderableType]:
    """Size, nodes, latency, quantized ops; settings; drift on the test samples; the fallback;
    violations and notes (`inline_warnings`: the notes that are warnings too)."""
    items: list[RenderableType] = [
        grid("INT8 quantization", SUMMARY_COLUMNS, quantize_summary_rows(report)),
        *(plain(f"{label}: {text}") for label, text in quantize_node_rows(report)),
        plain(quantize_settings(report)),
    ]
    items.append(drift_grid(f"drift on {drift_samples(report)}", {"int8": report.drift}))
    if report.fallback:
        items.append(grid(fallback_title(report), FALLBACK_COLUMNS, fallback_rows(report)))
    if report.layers:
        items.append(layer_table(report.layers))
    notes = report.notes if inline_warnings else report.split_notes()[1]
    items += [plain(line) for line in report.violations + notes]
    return items


def quantize_summary_rows(report: QuantizeReport) -> list[list[str]]:
    """Size, nodes, median latency (when measured): in SUMMARY_COLUMNS."""

    def ratio(before, after) -> str:
        return f"{after / before:.2f}x" if before and after is not None else "-"

    rows = [
        [
            "size",
            human_bytes(report.size_before),
            human_bytes(report.size_after),
            ratio(report.size_before, report.size_after),
        ],
        [
            "nodes",
            str(report.nodes_before),
            str(report.nodes_after),
            ratio(report.nodes_before, report.nodes_after),
        ],
    ]
    if report.speedup is not None:
        times = milliseconds(report.latency_float_ms, report.latency_int8_ms)
        rows.append(
            [
                "latency (median, 1 thread)",
                f"{times[0]} ms",
                f"{times[1]} ms",
                f"{1 / report.speedup:.2f}x "
                + (
                    "(same within noise)"
                    if report.latency_verdict == "same"
                    else f"(speedup {report.speedup:.2f}x)"
                ),
            ]
        )
    if report.latency_lossless_ms and report.latency_int8_ms:
        times = milliseconds(report.latency_lossless_ms, report.latency_int8_ms)
        rows.append(
            [
                "latency vs lossless float",
                f"{times[0]} ms",
                f"{times[1]} ms",
                ratio(report.latency_lossless_ms, report.latency_int8_ms)
                + VERDICT_TEXT.get(report.latency_lossless_verdict, ""),
            ]
        )
    return rows


#: How a latency verdict reads after its ratio (none: not timed).
VERDICT_TEXT = {"same": " (same within noise)", "slower": " (slower)", "faster": " (faster)"}


def quantize_node_rows(report: QuantizeReport) -> list[tuple[str, str]]:
    """(label, text): the nodes quantized, and why the others stay float (long text: beneath the
    summary in a console, as rows of it in HTML)."""
    quantized = ", ".join(f"{op} {n}" for op, n in sorted(report.quantized.items()))
    rows = [("quantized nodes", quantized or "none")]
    if report.kept_float:
        rows.append(("kept in float", kept_reasons(report)))
    if report.int8_stored():
        rows.append(
            ("of which on int8 weights", f"{report.int8_stored()} (smaller file, float compute)")
        )
    return rows


def kept_reasons(report: QuantizeReport) -> str:
    """Why weighted nodes stay float, with how many: "faster in float: 49, input layer: 1"."""
    return ", ".join(f"{why}: {n}" for why, n in report.kept_float_counts().items())


def quantize_settings(report: QuantizeReport) -> str:
    """Mode, target, range method, types, how many samples served what, the levers applied
    (neither where INT8 added nothing)."""
    ranges = "" if report.unquantized else f"{range_settings(report)}; "
    levers = "" if report.unquantized else f"; {lever_settings(report)}"
    return (
        f"{report.mode_label}; target {report.target_reason}; {ranges}"
        f"{report.calibration_samples} calibration / {report.selection_samples} selection / "
        f"{report.test_samples} test samples{levers}"
    )


def lever_settings(report: QuantizeReport) -> str:
    """Cross-layer equalization, bias correction and (dynamic INT8) smoothing as applied."""
    return (
        f"cross-layer equalization on {report.equalized_pairs} conv pair(s); "
        f"bias correction {'on' if report.bias_correction else 'off'}"
        + (
            f"; smoothing on {report.smoothed_inputs} MatMul input(s)"
            if report.smoothed_inputs
            else ""
        )
    )


def range_settings(report: QuantizeReport) -> str:
    """The range method and the activation and weight types."""
    return (
        f"method {report.method}; activations {report.activation_type}; weights "
        f"8-bit {'per channel' if report.per_channel else 'per tensor'} "
        f"({report.weight_range} range, {report.weight_rounding} rounding"
        + (
            f"; neighbour pairs |w0| + |w1| <= {report.weight_pair_limit} for u8s8 kernels)"
            if report.weight_pair_limit
            else ")"
        )
    )


def drift_samples(report: QuantizeReport) -> str:
    """Which samples the reported drift was measured on."""
    random = "random " if report.random_inputs else ""
    if report.test_samples:
        caveat = "; random inputs say little of real ones" if random else ""
        return f"{random}test samples (no decision saw them{caveat})"
    return f"{random}selection samples" + (" (they say little of real inputs)" if random else "")


def budget_outcome(report: QuantizeReport) -> str:
    """Whether the drift budget held: on the selection samples (where nodes went back to float
    for it; a cosine budget as predicted for new samples) and on the test samples."""
    if not report.budget:
        return "no drift budget (--max-drift)"
    if report.violations:
        return f"{report.budget} missed: {report.violations[0]}"
    budget = parse_max_drift(report.budget)
    held = f"{report.budget} held on the selection samples"
    if any(metric in PER_SAMPLE for metric, _, _ in budget.criteria):
        held += " (predicted for new ones)"
    if report.fallback:
        held += f" with {len(report.fallback)} node(s) back in float"
    if not report.test_samples:
        return held
    if report.test_violations:
        return f"{held}, missed on the test samples: {report.test_violations[0]}"
    return f"{held} and on the test samples"


FALLBACK_COLUMNS = ["Node", "Op", "Added noise SNR dB (lower: noisier)"]


def fallback_title(report: QuantizeReport) -> str:
    """What the nodes went back to float for: the user's budget, or mode auto's quality bar."""
    goal = report.budget or "mode auto's quality bar (worst sample's cosine >= 0.99)"
    return f"returned to float to meet {goal}"


def fallback_rows(report: QuantizeReport) -> list[list[str]]:
    """The nodes returned to float for the budget, with the noise each added ("none of its own":
    it added none, but the budget needed it in float with the others)."""
    return [
        [
            item["node"],
            item["op"],
            number(item["noise_db"], ".1f") if item["noise_db"] < math.inf else "none of its own",
        ]
        for item in report.fallback
    ]


def layer_rows(layers: Sequence[Mapping]) -> list[list[str]]:
    """`layers` (report.layers, in graph order) in LAYER_COLUMNS, worst own SQNR first."""
    return [
        [
            str(index + 1),
            layer["node"],
            layer["op"],
            number(layer["own_db"], ".1f"),
            number(layer["accumulated_db"], ".1f"),
        ]
        for index, layer in worst_first(layers)
    ]


def worst_first(layers: Sequence[Mapping]) -> list[tuple[int, Mapping]]:
    """(graph position, layer) pairs, lowest own SQNR first (NaN counts as worst)."""

    def own(item: tuple[int, Mapping]) -> float:
        value = item[1]["own_db"]
        return -math.inf if value is None or math.isnan(value) else value

    return sorted(enumerate(layers), key=own)


def layer_table(layers: list[dict]) -> Table:
    """Per quantized node: its own SQNR (float inputs) and the accumulated one, worst first; the
    LAYER_ROWS worst when there are more."""
    title = (
        "per-layer error: SQNR dB of each quantized node's output (higher is better), worst first"
    )
    if len(layers) > LAYER_ROWS:
        title += f"; the {LAYER_ROWS} worst of {len(layers)} (all in --report JSON and --html)"
    return grid(title, LAYER_COLUMNS, layer_rows(layers)[:LAYER_ROWS])


def pass_history(history: Sequence[tuple[int | str, str, int, int]]) -> Table:
    """`optimize -v`: every pass run that changed the graph, per round, with the node counts."""
    rows = [
        [
            str(stage),
            name,
            f"{old:,}",
            f"{new:,}",
            _change(old, new) or "rewritten",
        ]
        for stage, name, old, new in history
    ]
    return grid(
        "passes that changed the graph (node counts)",
        ["Round", "Pass", "Before", "After", "Change"],
        rows,
    )


def inspect_report(info: ModelInfo) -> list[RenderableType]:
    """`onnxslim inspect`: file, versions, interface, totals and the op histogram."""
    stats = info.stats
    size = human_bytes(stats.file_bytes)
    if info.external_data:
        known = [n for n in info.external_data.values() if n is not None]
        size += (
            f" including {len(info.external_data)} external data file(s) "
            f"({human_bytes(sum(known))}): {', '.join(info.external_data)}"
        )
    opsets = ", ".join(f"{domain or 'ai.onnx'} {v}" for domain, v in info.opsets.items())
    lines = [
        f"{info.path}: {size}",
        f"IR version {info.ir_version}; opsets {opsets}; producer {info.producer or '-'}",
        f"{stats.nodes:,} nodes; {stats.parameters:,} parameters "
        f"({human_bytes(stats.weight_bytes)}, Constant nodes included); "
        f"{info.initializers:,} initializers"
        + (f"; functions {', '.join(info.functions)}" if info.functions else ""),
        *(f"metadata {key}: {value}" for key, value in info.metadata.items()),
        *([f"refused by onnxslim: {info.invalid}"] if info.invalid else []),
    ]
    interface = [["input", v.name, v.describe()] for v in info.inputs] + [
        ["output", v.name, v.describe()] for v in info.outputs
    ]
    total = stats.nodes or 1
    ops = [[op, str(n), f"{n / total:.1%}"] for op, n in stats.op_counts.items()]
    return [
        *(plain(line) for line in lines),
        grid("interface", ["", "Name", "Type"], interface),
        grid("ops", ["Op", "Count", "Share"], ops),
    ]


def fp16_report(report: Mapping) -> list[RenderableType]:
    """`--dtype fp16`: what went to float16, what stayed float32 and why, and the drift."""
    kept = ", ".join(f"{reason} {count}" for reason, count in report["kept"].items())
    io = "float32 graph inputs and outputs" if report["keep_io_types"] else "float16 interface"
    items: list[RenderableType] = [
        plain(
            f"float16: {report['nodes_float16']} node(s) in float16, {report['casts']} Cast(s) "
            f"added, {io}; weights {human_bytes(report['weights_before'])} -> "
            f"{human_bytes(report['weights_after'])}"
            + (f"; kept in float32: {kept}" if kept else "")
        )
    ]
    if report["time_ratio"] is not None:
        items.append(
            plain(
                f"float16 latency: {report['time_ratio']:.2f}x the original's "
                f"({report['time_verdict']}; the lossless passes and float16 together; medians "
                "of interleaved runs, one thread)"
            )
        )
    if report["drift"] is not None:
        items.append(
            drift_grid(
                f"float16 drift vs the original, on {report['inputs']}", {"fp16": report["drift"]}
            )
        )
    return items
