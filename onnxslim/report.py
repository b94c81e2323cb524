"""The before/after report: a rich table in the terminal, the same figures as JSON."""

from __future__ import annotations

import json
import math
import os

from rich.console import Console
from rich.table import Table

from onnxslim import io
from onnxslim.stats import ModelStats


def human_bytes(count: int | None) -> str:
    """A byte count in B, KiB, MiB or GiB; "-" when unknown."""
    if count is None:
        return "-"
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.2f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def number(value: float | None, spec: str = ".3g") -> str:
    """A figure for a table: "-" when missing, inf/nan spelled out."""
    if value is None:
        return "-"
    return str(value) if not math.isfinite(value) else format(value, spec)


def _change(before: int | None, after: int | None) -> str:
    if before is None or after is None or before == after:
        return ""
    percent = f" ({(after - before) / before:+.1%})" if before else ""
    return f"{after - before:+,}{percent}"


def comparison_table(before: ModelStats, after: ModelStats, title: str) -> Table:
    """Op counts by type, then totals: nodes, parameters, weights, file size."""
    table = Table(title=title, title_justify="left")
    table.add_column("")
    table.add_column("before", justify="right")
    table.add_column("after", justify="right")
    table.add_column("change", justify="right")
    ops = sorted(set(before.op_counts) | set(after.op_counts), key=lambda op: (-before.op_counts.get(op, 0), op))
    for op in ops:
        old, new = before.op_counts.get(op, 0), after.op_counts.get(op, 0)
        table.add_row(op, str(old), str(new), _change(old, new), style=None if old != new else "dim")
    table.add_section()
    table.add_row("nodes", f"{before.nodes:,}", f"{after.nodes:,}", _change(before.nodes, after.nodes), style="bold")
    table.add_row("parameters", f"{before.parameters:,}", f"{after.parameters:,}",
                  _change(before.parameters, after.parameters))
    table.add_row("weights", human_bytes(before.weight_bytes), human_bytes(after.weight_bytes),
                  _change(before.weight_bytes, after.weight_bytes))
    table.add_row("file size", human_bytes(before.file_bytes), human_bytes(after.file_bytes),
                  _change(before.file_bytes, after.file_bytes))
    return table


def print_table(table: Table, footer: str, console: Console | None = None) -> None:
    console = console or Console()
    console.print(table)
    console.print(footer)


def write_json(data: dict, path: str | os.PathLike) -> None:
    """Write `data` as indented JSON, atomically."""
    io.write_text_atomic(path, json.dumps(data, indent=2) + "\n")
