"""Reports as self-contained HTML pages (inline CSS and SVG charts, no network)."""

from __future__ import annotations

import html
import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

from onnxslim.model.files import write_text_atomic
from onnxslim.render.tables import (
    DRIFT_COLUMNS,
    MODEL_COLUMNS,
    bench_drifts,
    bench_header,
    bench_model_rows,
    drift_rows,
)

if TYPE_CHECKING:
    from onnxslim.bench import BenchReport

CSS = (
    "body{font-family:system-ui,sans-serif;margin:2em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}"
    "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
    "td:first-child,th:first-child{text-align:left}"
    "svg{display:block;margin:1em 0}"
)


def write_bench(report: BenchReport, path: str | os.PathLike) -> None:
    """The benchmark page: header, tables, latency, max-abs and SNR charts."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>onnxslim benchmark</title>",
        f"<style>{CSS}</style></head><body><h1>onnxslim benchmark</h1>",
        *(f"<p>{html.escape(line)}</p>" for line in bench_header(report)),
        table(MODEL_COLUMNS, bench_model_rows(report)),
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
                "Max abs error per output",
                [(label, d.max_abs) for label, (_, d) in zip(labels, pairs)],
                "",
            )
        )
        parts.append(
            bars(
                "SNR per output (dB), higher is better",
                [(label, d.snr_db) for label, (_, d) in zip(labels, pairs)],
                "dB",
            )
        )
    parts.append("</body></html>\n")
    write_text_atomic(path, "\n".join(parts))


def table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def bars(title: str, items: Sequence[tuple[str, float | None]], unit: str) -> str:
    """Horizontal bar chart: None shows as n/a, +inf (e.g. identical outputs' SNR) as a full bar."""
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
            f"<rect x='{label_w}' y='{y + 3}' width='{width:.1f}' height='{row_h - 6}' "
            "fill='#4a7fc1'/>"
            f"<text x='{label_w + width + 4:.1f}' y='{y + 15}'>{html.escape(text)}</text>"
        )
    return (
        "<svg xmlns='http://www.w3.org/2000/svg' "
        f"width='{label_w + bar_w + 120}' height='{height}' "
        "font-size='12' font-family='sans-serif'>"
        f"<text x='0' y='14' font-weight='bold'>{html.escape(title)}</text>"
        + "".join(rows)
        + "</svg>"
    )
