"""How figures read in every report: bytes, numbers, non-finite values."""

from __future__ import annotations

import math
from collections.abc import Iterable


def human_bytes(count: int | None) -> str:
    """A byte count in B, KiB, MiB or GiB; "-" when unknown."""
    if count is None:
        return "-"
    size = float(count)
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.2f} {unit}"
        size /= 1024
    return f"{size:.2f} GiB"


def counted(pairs: Iterable[tuple[str, int]]) -> str:
    """(name, count) pairs as "2 MatMul, 1 Gather", in their order."""
    return ", ".join(f"{count} {name}" for name, count in pairs)


def number(value: float | None, spec: str = ".3g") -> str:
    """A figure for a table: "-" when missing, inf/nan spelled out."""
    if value is None:
        return "-"
    return str(value) if not math.isfinite(value) else format(value, spec)


def milliseconds(*times: float) -> list[str]:
    """`times` (ms) with two decimals, or as many more (up to five) as tell apart two that
    differ: "0.30 ms vs 0.30 ms, 1.03x" read as a contradiction."""
    for digits in range(2, 6):
        texts = [f"{t:.{digits}f}" for t in times]
        if len(set(texts)) == len(set(times)):
            break
    return texts


def input_shapes(inputs: dict[str, dict]) -> str:
    """`data.sample_shapes` as one line: "x float32[1,3,224,224]; ids int64[1,32] [1,64]"."""
    return "; ".join(
        f"{name} {entry['dtype']}" + " ".join(f"[{','.join(map(str, s))}]" for s in entry["shapes"])
        for name, entry in inputs.items()
    )
