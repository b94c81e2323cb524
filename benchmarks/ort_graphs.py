"""What ONNX Runtime runs: its optimized graph of each zoo model and of onnxslim's result.

    python benchmarks/ort_graphs.py [--models NAME ...] [--markdown FILE]

A deterministic no-slower check, free of timing noise: ORT writes the graph it runs after its own
session-creation optimizations (`SessionOptions.optimized_model_filepath`, CPU provider) at the
levels `all` and `basic`, for the original and for `onnxslim.optimize(model, check=False)`; the
op-type counts of those graphs are compared. Ours should make ORT run no more nodes at `all`, and
no op type from SLOWER_OPS that the original's graph lacks. Exits 1 when a model fails that.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import onnxslim  # noqa: E402
from onnxslim.runtime import SLOWER_OPS, ort_op_counts  # noqa: E402

ZOO = ROOT / "models" / "zoo"
LEVELS = ("all", "basic")


@dataclass
class GraphComparison:
    """ORT's op counts of the original and of ours, per ORT level."""

    name: str
    original: dict[str, Counter[str]]
    ours: dict[str, Counter[str]]

    def nodes(self, which: str, level: str) -> int:
        return sum(getattr(self, which)[level].values())

    def new_ops(self, level: str) -> dict[str, int]:
        """Op types ours makes ORT run more of than the original, with how many more."""
        more = self.ours[level] - self.original[level]
        return {op: n for op, n in sorted(more.items()) if op not in self.original[level]}

    def failures(self) -> list[str]:
        """Why ORT runs ours worse than the original (empty: it doesn't)."""
        found = []
        if self.nodes("ours", "all") > self.nodes("original", "all"):
            found.append(
                f"ORT level all runs {self.nodes('ours', 'all')} nodes of ours, "
                f"{self.nodes('original', 'all')} of the original"
            )
        for level in LEVELS:
            extra = self.ours[level] - self.original[level]
            found += [
                f"ORT level {level} runs {n} more {op} in ours: {SLOWER_OPS[op]}"
                for op, n in extra.items()
                if op in SLOWER_OPS
            ]
        return found


def compare(original: Path, ours: Path, name: str | None = None) -> GraphComparison:
    """ORT's optimized graphs of `original` and `ours` at every level in LEVELS."""
    return GraphComparison(
        name or original.stem,
        {level: ort_op_counts(original, level) for level in LEVELS},
        {level: ort_op_counts(ours, level) for level in LEVELS},
    )


def compare_optimized(path: Path, workdir: Path) -> GraphComparison:
    """Optimize `path` with onnxslim's defaults (no check) and compare ORT's graphs."""
    out = workdir / path.name
    onnxslim.save(onnxslim.optimize(path, check=False), out)
    return compare(path, out)


def markdown(results: list[GraphComparison]) -> str:
    """One row per model: nodes ORT runs at each level (original -> ours) and new op types."""
    lines = [
        "| Model | ORT all: original | ORT all: ours | ORT basic: original | ORT basic: ours "
        "| Op types only ours has (level all; basic) |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in results:
        new = "; ".join(
            ", ".join(f"{op} {n}" for op, n in r.new_ops(level).items()) or "-" for level in LEVELS
        )
        cells = [f"{r.nodes(which, level)}" for level in LEVELS for which in ("original", "ours")]
        lines.append(f"| {r.name} | {' | '.join(cells)} | {new} |")
    return "\n".join(lines) + "\n"


def changes(result: GraphComparison, level: str) -> str:
    """Every op type whose count differs at `level`: `Op original->ours`."""
    ops = sorted(set(result.original[level]) | set(result.ours[level]))
    diff = [
        f"{op} {result.original[level][op]}->{result.ours[level][op]}"
        for op in ops
        if result.original[level][op] != result.ours[level][op]
    ]
    return ", ".join(diff) or "same op counts"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", help="zoo model names (default: every one built)")
    parser.add_argument("--markdown", type=Path, help="also write the table here")
    args = parser.parse_args(argv)
    paths = (
        [ZOO / f"{name}.onnx" for name in args.models]
        if args.models
        else sorted(ZOO.glob("*.onnx"))
    )
    results, failed = [], False
    with tempfile.TemporaryDirectory(prefix="onnxslim-ort-graphs-") as tmp:
        for path in paths:
            result = compare_optimized(path, Path(tmp))
            results.append(result)
            for level in LEVELS:
                print(f"{result.name} (ORT {level}): {changes(result, level)}", flush=True)
            for line in result.failures():
                failed = True
                print(f"FAIL {result.name}: {line}", flush=True)
    table = markdown(results)
    print(table)
    if args.markdown:
        args.markdown.write_text(table)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
