"""Reports as self-contained HTML pages (inline CSS, bar charts drawn with CSS, no network).

The page is responsive: tables take the page width and wrap long names (they scroll sideways only
on screens too narrow for the figures), charts are rows of label, bar and value.
"""

from __future__ import annotations

import html
import math
import os
import re
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING

from onnxslim.drift import lowest_cosine
from onnxslim.model.files import write_text_atomic
from onnxslim.render.format import input_shapes
from onnxslim.render.tables import (
    DRIFT_COLUMNS,
    FALLBACK_COLUMNS,
    LAYER_COLUMNS,
    MODEL_COLUMNS,
    SUMMARY_COLUMNS,
    TEXT_COLUMNS,
    VERDICT_TEXT,
    bench_columns,
    bench_drifts,
    bench_model_rows,
    budget_outcome,
    drift_rows,
    drift_samples,
    fallback_rows,
    fallback_title,
    kept_reasons,
    layer_rows,
    lever_settings,
    quantize_node_rows,
    quantize_summary_rows,
    range_settings,
    worst_first,
)
from onnxslim.render.verdict import verdict_lines

if TYPE_CHECKING:
    from onnxslim.bench import BenchReport
    from onnxslim.quantization.report import QuantizeReport

#: Column headers with their units (the terminal tables say the units in a caption).
HEADERS = {
    "Size": "Size",
    "xSize": "Size vs ref",
    "Load": "Session load (ms)",
    "Median": "Median (ms)",
    "p90": "p90 (ms)",
    "Mean": "Mean (ms)",
    "Min": "Min (ms)",
    "Speedup": "Speedup vs ref",
    "Runs/s": "Runs/s",
    "Mem MB": "Peak mem (MB)",
    "Cosine": "Cosine (all samples)",
    "Min cos": "Min cosine (worst sample)",
    "Max abs": "Max abs error",
    "Mean abs": "Mean abs error",
    "Rel err": "Rel error (RMS)",
    "SNR dB": "SNR (dB)",
    "Top-1": "Top-1 agreement (rows of 2-D outputs)",
    "#": "# in graph",
    "Own (float inputs)": "Own SQNR, float inputs (dB)",
    "Accumulated": "Accumulated SQNR (dB)",
}
#: Columns whose +inf (identical values) the page spells "exact".
EXACT_COLUMNS = frozenset({"SNR dB", "Own (float inputs)", "Accumulated"})
#: The per-layer table highlights the layers with the lowest own SQNR: one in WORST_LAYERS, at
#: least one, at most WORST_LAYERS.
WORST_LAYERS = 5
BAR_LAYERS = 15  # the per-layer chart shows this many

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;color:#222;line-height:1.4;
  margin:0 auto;padding:1.5em;max-width:1400px;box-sizing:border-box}
h1{font-size:1.5em;margin:0 0 .6em}
h2{font-size:1.2em;margin:1.6em 0 .5em}
h3{font-size:1em;margin:1.2em 0 .4em}
dl.meta{display:grid;grid-template-columns:max-content minmax(0,1fr);gap:.25em 1em;margin:0;
  font-size:.9em}
dl.meta dt{color:#555;font-weight:600}
dl.meta dd{margin:0;overflow-wrap:anywhere}
code{font-family:ui-monospace,'SFMono-Regular',Menlo,Consolas,monospace;font-size:.95em}
p.warning{color:#9a2a00;background:#fff3ec;border-left:4px solid #e06a2c;padding:.4em .8em}
p.verdict{background:#eef4fb;border-left:4px solid #4a7fc1;padding:.4em .8em}
p.note{color:#5a4a00;background:#fffbe6;border-left:4px solid #e0c02c;padding:.4em .8em}
div.table{overflow-x:auto;margin:.6em 0}
table{border-collapse:collapse;width:100%;font-size:.85em}
th,td{border:1px solid #d0d0d0;padding:4px 6px;text-align:right;vertical-align:top}
th{background:#f2f4f7;font-weight:600}
td{font-variant-numeric:tabular-nums}
td.num{white-space:nowrap}
th.text,td.text{text-align:left;overflow-wrap:anywhere;min-width:7em}
.chart{max-width:960px;margin:.6em 0 1.2em}
.chart p.axis{font-size:.8em;color:#555;margin:.2em 0}
.bar-row{display:grid;grid-template-columns:minmax(6em,18em) minmax(0,1fr) 8em;gap:.6em;
  align-items:center;font-size:.85em;margin:3px 0}
.bar-label{text-align:right;overflow-wrap:anywhere}
.bar-track{background:#eef0f3;height:14px;border-radius:2px}
.bar{background:#4a7fc1;height:100%;border-radius:2px}
.bar.exact{background:#3a9a5b}
.bar-value{font-variant-numeric:tabular-nums}
.bar-value.exact{color:#2c7a47;font-weight:600}
tr.worst td{background:#fdecea}
tr.worst td:first-child{box-shadow:inset 4px 0 #d0342c}
footer{margin-top:2em;font-size:.8em;color:#666}
"""


def write_bench(report: BenchReport, path: str | os.PathLike) -> None:
    """The benchmark page: what ran where, the tables, latency, max-abs and SNR charts."""
    write_text_atomic(path, bench_page(report))


def bench_page(report: BenchReport) -> str:
    keep = bench_columns(report)
    parts = [
        head("onnxslim benchmark"),
        meta(report),
        *messages(report.warnings, report.notes),
        *(f"<p class='verdict'>{html.escape(line)}</p>" for line in verdict_lines(report.verdicts)),
        "<h2>Speed and size (reference: first model)</h2>",
        table(
            [MODEL_COLUMNS[i] for i in keep],
            [[row[i] for i in keep] for row in bench_model_rows(report)],
        ),
        bars(
            "Median latency (ms), lower is better",
            [(m.name, m.latency.median) for m in report.models],
            "ms",
        ),
    ]
    if len(report.models) > 1:
        parts.append("<h2>Output drift vs reference</h2>")
        parts.append(table(DRIFT_COLUMNS, drift_rows(bench_drifts(report))))
        pairs = [(m, d) for m in report.models[1:] for d in m.drift.values()]
        labels = [f"{m.name} / {d.name}" for m, d in pairs]
        parts.append(
            bars(
                "Max abs error per output, lower is better",
                [(label, d.max_abs) for label, (_, d) in zip(labels, pairs)],
                "",
                log=True,
            )
        )
        parts.append(
            bars(
                "SNR per output (dB), higher is better",
                [(label, d.snr_db) for label, (_, d) in zip(labels, pairs)],
                "dB",
            )
        )
    parts.append(footer("--json"))
    return "\n".join(parts)


def write_int8(report: QuantizeReport, path: str | os.PathLike, **context) -> None:
    """The INT8 quantization page (`int8_page`; `context` its keyword arguments)."""
    write_text_atomic(path, int8_page(report, **context))


def int8_page(
    report: QuantizeReport,
    *,
    command: str | None = None,
    files: Sequence[tuple[str, str]] = (),
    created: str = "",
    versions: Mapping[str, str] | None = None,
) -> str:
    """The INT8 page: the run (`command`, (label, path) `files`, date `created`, tool `versions`),
    the outcome and settings, warnings and notes, size and speed, drift on the test samples, the
    nodes returned to float for the budget and, with debug_layers, every quantized layer's error,
    worst first."""
    warnings, notes = warnings_and_notes(report)
    run = run_items(command, files, created, versions)
    parts = [
        head("onnxslim INT8 quantization"),
        definitions([*run, *int8_settings(report)]),
        *messages(warnings, notes),
        "<h2>Size and speed</h2>",
        table(
            SUMMARY_COLUMNS,
            quantize_summary_rows(report)
            + [[label, "", text, ""] for label, text in quantize_node_rows(report)],
        ),
        f"<h2>Drift on {html.escape(drift_samples(report))}</h2>",
        table(DRIFT_COLUMNS, drift_rows({"int8": report.drift})),
    ]
    if report.fallback:
        parts.append(f"<h2>{html.escape(fallback_title(report).capitalize())}</h2>")
        parts.append(table(FALLBACK_COLUMNS, fallback_rows(report)))
    if report.layers:
        parts += layer_section(report.layers)
    parts.append(footer("--json FILE"))
    return "\n".join(parts)


def warnings_and_notes(report: QuantizeReport) -> tuple[list[str], list[str]]:
    """The report's violations and warnings, and its other notes (not the one on the sample
    splits: the Samples entry says it)."""
    warnings, notes = report.split_notes()
    return [*report.violations, *warnings], [n for n in notes if not n.startswith("samples: ")]


def run_items(
    command: str | None,
    files: Sequence[tuple[str, str]],
    created: str,
    versions: Mapping[str, str] | None,
) -> list[tuple[str, str]]:
    """Date, command line, (label, path) files and tool versions as (name, HTML value) pairs."""
    items = [("Date", html.escape(created))] if created else []
    if command:
        items.append(("Command", f"<code>{html.escape(command)}</code>"))
    items += [(label, f"<code>{breakable(path)}</code>") for label, path in files]
    if versions:
        items.append(("Versions", html.escape(", ".join(f"{k} {v}" for k, v in versions.items()))))
    return items


def int8_settings(report: QuantizeReport) -> list[tuple[str, str]]:
    """The INT8 run as (name, HTML value) pairs: the outcome first, then how it was made."""
    lowest = lowest_cosine(report.drift)
    snrs = [d.snr_db for d in report.drift.values() if d.snr_db is not None]
    where = f"{report.test_samples} test" if report.test_samples else "the selection"
    result = [f"worst-sample cosine {lowest:.6f}"] if lowest is not None else []
    result += [f"worst output SNR {min(snrs):.1f} dB"] if snrs else []
    result = [f"{', '.join(result)} on {where} samples"] if result else []
    result.append(f"size {report.size_after / report.size_before:.2f}x float")
    if report.speedup is not None:
        noise = " (same within noise)" if report.latency_verdict == "same" else ""
        result.append(f"latency {1 / report.speedup:.2f}x float{noise}")
    if report.latency_lossless_ms and report.latency_int8_ms:
        lossless = report.latency_int8_ms / report.latency_lossless_ms
        verdict = VERDICT_TEXT.get(report.latency_lossless_verdict, "")
        result.append(f"{lossless:.2f}x onnxslim's lossless float model{verdict}")
    return [
        ("Result", html.escape("; ".join(result))),
        ("Drift budget", html.escape(budget_outcome(report))),
        ("Mode", html.escape(report.mode_label)),
        ("Target", html.escape(report.target_reason)),
        *([] if report.unquantized else [("Ranges", html.escape(range_settings(report)))]),
        (
            "Samples",
            html.escape(
                f"{report.calibration_samples} calibration (activation ranges), "
                f"{report.selection_samples} selection (automatic choices and the budget), "
                f"{report.test_samples} test (the drift reported; no decision saw them)"
            ),
        ),
        (
            "Levers",
            html.escape(
                f"{lever_settings(report)}; {len(report.fallback)} node(s) back in float for "
                f"accuracy, {len(report.kept_float)} weighted node(s) kept in float"
                + (f" ({kept_reasons(report)})" if report.kept_float else "")
            ),
        ),
    ]


def layer_section(layers: Sequence[Mapping]) -> list[str]:
    """`--debug-layers`: a chart of the worst layers' own SQNR and the table of every layer,
    worst own SQNR first, the worst highlighted (see WORST_LAYERS)."""
    worst = [layer for _, layer in worst_first(layers)[:BAR_LAYERS]]
    marked = max(1, min(WORST_LAYERS, len(layers) // WORST_LAYERS))
    return [
        "<h2>Per-layer error</h2>",
        "<p>SQNR (dB, higher is better) of each quantized node's output against the float "
        "model's: <em>own</em> with its inputs taken from the float model (the error the layer "
        "adds by itself), <em>accumulated</em> in the INT8 model (the error of every layer up to "
        f"it). Lowest own SQNR first, the {marked} worst highlighted; <em># in graph</em> is the "
        "node's position among the quantized nodes.</p>",
        bars(
            f"Own SQNR of the {len(worst)} worst layers (dB), higher is better",
            [(f"{layer['node']} ({layer['op']})", layer["own_db"]) for layer in worst],
            "dB",
        ),
        table(LAYER_COLUMNS, layer_rows(layers), marked=range(marked)),
    ]


def head(title: str) -> str:
    """The page's start: charset, viewport, title, the inline CSS and the heading."""
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>\n"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>\n"
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>\n"
        f"<h1>{html.escape(title)}</h1>"
    )


def footer(json_option: str) -> str:
    """The page's end: where the figures come from and the option that writes them as JSON."""
    return (
        "<footer>Figures measured on ONNX Runtime CPU by onnxslim; every figure is also in "
        f"<code>{html.escape(json_option)}</code>.</footer></body></html>\n"
    )


def messages(warnings: Sequence[str], notes: Sequence[str]) -> list[str]:
    """Warnings and notes as highlighted paragraphs."""
    return [
        *(f"<p class='warning'>warning: {html.escape(w)}</p>" for w in warnings),
        *(f"<p class='note'>note: {html.escape(n)}</p>" for n in notes),
    ]


def meta(report: BenchReport) -> str:
    """Date, command line, tool versions, CPU, settings and input shapes as a definition list."""
    cpu = report.cpu
    flags = ", ".join(f"{flag} {'yes' if on else 'no'}" for flag, on in cpu.flags.items())
    versions = ", ".join(f"{tool} {version}" for tool, version in report.versions.items())
    source = "random" if report.random_inputs else "given"
    items = [
        ("Date", html.escape(report.created or "-")),
        (
            "Command",
            f"<code>{html.escape(report.command)}</code>" if report.command else "Python API",
        ),
        ("Versions", html.escape(versions or f"onnxruntime {report.ort_version}")),
        ("CPU", html.escape(f"{cpu.model} ({cpu.arch}); {flags}")),
        (
            "Settings",
            html.escape(
                f"{report.threads} intra-op thread(s); ORT optimization level "
                f"{report.ort_opt_level}; {report.runs} interleaved runs after {report.warmup} "
                "warm-up"
            ),
        ),
        (
            "Inputs",
            html.escape(f"{report.samples} {source} sample(s)")
            + (
                f": <code>{html.escape(input_shapes(report.inputs))}</code>"
                if report.inputs
                else ""
            ),
        ),
    ]
    return definitions(items)


def definitions(items: Sequence[tuple[str, str]]) -> str:
    """(name, HTML value) pairs as a definition list."""
    rows = "".join(f"<dt>{html.escape(name)}</dt><dd>{value}</dd>" for name, value in items)
    return f"<dl class='meta'>{rows}</dl>"


def table(
    columns: Sequence[str], rows: Sequence[Sequence[str]], marked: Collection[int] = ()
) -> str:
    """A table that takes the page width; text columns wrap, headers carry their units; the rows
    at the indices `marked` are highlighted."""
    kinds = ["text" if column in TEXT_COLUMNS else "num" for column in columns]
    head = "".join(
        f"<th class='{kind}'>{html.escape(HEADERS.get(c, c))}</th>"
        for c, kind in zip(columns, kinds)
    )
    body = "".join(
        ("<tr class='worst'>" if index in marked else "<tr>")
        + "".join(
            f"<td class='{kind}'>{breakable(v) if kind == 'text' else html.escape(_cell(c, v))}"
            "</td>"
            for c, v, kind in zip(columns, row, kinds)
        )
        + "</tr>"
        for index, row in enumerate(rows)
    )
    return (
        f"<div class='table'><table><thead><tr>{head}</tr></thead>"
        f"<tbody>{body}</tbody></table></div>"
    )


def _cell(column: str, value: str) -> str:
    """Identical values have an infinite SNR: the page says "exact"."""
    return "exact" if column in EXACT_COLUMNS and value == "inf" else value


def breakable(text: str) -> str:
    """`text` escaped, with line-break opportunities after _ / - (long file and tensor names
    wrap there rather than mid-word)."""
    return re.sub(r"([_/-])", r"\1<wbr>", html.escape(text))


def bars(
    title: str, items: Sequence[tuple[str, float | None]], unit: str, log: bool = False
) -> str:
    """A horizontal bar chart. None or NaN shows as n/a; +inf (identical outputs' SNR) as a full
    bar and, on a log scale, 0 (no error at all) as no bar, both labelled "exact"; `log` scales
    bars by log10 from a decade below the smallest positive value to the decade of the largest."""
    finite = [v for _, v in items if v is not None and math.isfinite(v)]
    axis = ""
    if log:
        positive = [v for v in finite if v > 0]
        # a decade below the smallest error, so that it still gets a bar
        low = math.floor(math.log10(min(positive))) - 1 if positive else 0
        high = math.ceil(math.log10(max(positive))) if positive else 1
        high = max(high, low + 1)
        axis = (
            f"<p class='axis'>log scale, 1e{low} to 1e{high}; 0 = exact</p>"
            if positive
            else "<p class='axis'>0 = exact</p>"
        )

        def fraction(value: float) -> float:
            return (math.log10(value) - low) / (high - low)

    else:
        top = max((abs(v) for v in finite), default=0) or 1.0

        def fraction(value: float) -> float:
            return max(value, 0) / top

    rows = []
    for label, value in items:
        kind = ""
        if value is None or math.isnan(value):
            width, text = 0.0, "n/a"
        elif math.isinf(value):
            width, text = (1.0, "exact") if value > 0 else (0.0, "-inf")
            kind = " exact" if value > 0 else ""
        elif log and value <= 0:  # no error at all: no bar
            width, text, kind = 0.0, "exact", " exact"
        else:
            width, text = fraction(value), f"{value:.4g} {unit}".strip()
        rows.append(
            "<div class='bar-row'>"
            f"<div class='bar-label'>{breakable(label)}</div>"
            f"<div class='bar-track'><div class='bar{kind}' "
            f"style='width:{100 * min(max(width, 0.0), 1.0):.1f}%'></div></div>"
            f"<div class='bar-value{kind}'>{html.escape(text)}</div></div>"
        )
    return f"<div class='chart'><h3>{html.escape(title)}</h3>{axis}{''.join(rows)}</div>"
