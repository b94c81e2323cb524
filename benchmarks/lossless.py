"""Lossless optimizers side by side on the demo model and the real-model zoo.

    python benchmarks/lossless.py [--models NAME ...] [--runs 30] [--json FILE]

Each tool runs in its own subprocess (time and peak RSS of that process: load + optimize + save),
then `onnxslim.bench.benchmark` measures every result against the original on ONNX Runtime CPU
(interleaved runs, one thread). PyPI OnnxSlim shares our package name, so it runs from a venv of
its own (created under benchmarks/out/ on first use, or given with --peer-python).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from models.zoo import SAMPLE_INPUTS, ZOO_MODELS  # noqa: E402
from models.zoo import random_inputs as zoo_inputs  # noqa: E402
from onnxslim.bench import benchmark  # noqa: E402

OUT = ROOT / "benchmarks" / "out"
PEER_VERSION = "0.1.98"

# Each snippet reads sys.argv[1] (input) and writes sys.argv[2] (output).
TOOLS = {
    "onnxslim": (
        "from onnxslim.cli import main; "
        "main(['-q', sys.argv[1], '-o', sys.argv[2]], standalone_mode=True)"
    ),
    "OnnxSlim 0.1.98": "import onnxslim; onnxslim.slim(sys.argv[1], sys.argv[2])",
    "onnxsim": (
        "import onnx, onnxsim; m, ok = onnxsim.simplify(onnx.load(sys.argv[1])); assert ok; "
        "onnx.save(m, sys.argv[2])"
    ),
    "onnxoptimizer": (
        "import onnx, onnxoptimizer; "
        "onnx.save(onnxoptimizer.optimize(onnx.load(sys.argv[1])), sys.argv[2])"
    ),
    "ORT basic": (
        "import onnxruntime as ort; o = ort.SessionOptions(); "
        "o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC; "
        "o.optimized_model_filepath = sys.argv[2]; "
        "ort.InferenceSession(sys.argv[1], o, providers=['CPUExecutionProvider'])"
    ),
}


def peer_python(given: str | None) -> str | None:
    """The interpreter of a venv holding PyPI OnnxSlim, created on first use; None if that fails."""
    if given:
        return given
    venv = OUT / "peer-onnxslim"
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"creating {venv} with onnxslim=={PEER_VERSION} (PyPI) ...", file=sys.stderr)
        try:
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            subprocess.run(
                [
                    str(python),
                    "-m",
                    "pip",
                    "install",
                    "-q",
                    f"onnxslim=={PEER_VERSION}",
                    "onnxruntime",
                ],
                check=True,
            )
        except subprocess.CalledProcessError:
            print("could not install PyPI OnnxSlim: its column is left out", file=sys.stderr)
            return None
    return str(python)


# Reports the process's own peak RSS at exit: VmHWM starts afresh at exec, while ru_maxrss
# would inherit the benchmark's own peak through fork.
PEAK_REPORTER = """import atexit, sys
atexit.register(lambda: print(
    "PEAK_KB",
    [l.split()[1] for l in open("/proc/self/status") if l.startswith("VmHWM")][0],
    file=sys.stderr,
))
"""


def run_tool(python: str, snippet: str, source: Path, target: Path) -> dict:
    """Run one optimizer in a fresh process; its wall time and peak RSS (MiB), or its error."""
    started = time.perf_counter()
    proc = subprocess.run(
        [python, "-c", PEAK_REPORTER + snippet, str(source), str(target)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tempfile.gettempdir(),
    )
    seconds = time.perf_counter() - started
    lines = proc.stderr.strip().splitlines()
    if proc.returncode != 0 or not target.exists():
        return {
            "error": ([line for line in lines if not line.startswith("PEAK_KB")] or ["failed"])[-1][
                :120
            ]
        }
    peak_kb = next(int(line.split()[1]) for line in lines if line.startswith("PEAK_KB"))
    return {"seconds": seconds, "peak_mb": peak_kb / 1024}


def models_to_run(names: list[str] | None) -> dict[str, Path]:
    available = {"demo": ROOT / "models" / "demo.onnx"}
    available.update({name: ROOT / "models" / "zoo" / f"{name}.onnx" for name in ZOO_MODELS})
    chosen = names or list(available)
    missing = [name for name in chosen if not available.get(name, Path("/nonexistent")).exists()]
    if missing:
        sys.exit(f"missing models {missing}: run `python models/zoo.py` first")
    return {name: available[name] for name in chosen}


def samples_for(name: str) -> list[dict[str, np.ndarray]]:
    if name in SAMPLE_INPUTS:
        return [zoo_inputs(name, seed) for seed in range(4)]
    rng = np.random.default_rng(0)
    return [{"input": rng.standard_normal((1, 3, 32, 32), dtype=np.float32)} for _ in range(4)]


def bench_model(name: str, path: Path, peer: str | None, runs: int, folder: Path) -> list[dict]:
    rows, outputs = [], [path]
    for tool, snippet in TOOLS.items():
        python = peer if tool.startswith("OnnxSlim") else sys.executable
        if python is None:
            continue
        target = folder / f"{name}.{tool.replace(' ', '_')}.onnx"
        row = {"model": name, "tool": tool, **run_tool(python, snippet, path, target)}
        if "error" not in row:
            outputs.append(target)
        rows.append(row)
        print(f"  {tool}: {row}", file=sys.stderr)
    report = benchmark(
        outputs, inputs=samples_for(name), runs=runs, warmup=3, measure_memory=False, progress=False
    )
    measured = {Path(result.name).name: result for result in report.models}
    original = report.models[0]
    for row in rows:
        result = measured.get(f"{name}.{row['tool'].replace(' ', '_')}.onnx")
        if result is None:
            continue
        row.update(
            nodes=result.nodes,
            size=result.file_size,
            latency_ratio=result.latency.median / original.latency.median,
            max_abs_diff=max((d.max_abs or 0.0) for d in result.drift.values()),
        )
    rows.insert(
        0,
        {
            "model": name,
            "tool": "original",
            "nodes": original.nodes,
            "size": original.file_size,
            "latency_ms": original.latency.median,
        },
    )
    return rows


def print_table(rows: list[dict]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title="lossless optimizers (latency: ORT CPU, 1 thread, median, ratio to the original)"
    )
    for column in ("model", "tool", "nodes", "size", "time s", "peak MiB", "latency", "max |diff|"):
        table.add_column(column, justify="left" if column in ("model", "tool") else "right")
    for row in rows:
        if "error" in row:
            table.add_row(row["model"], row["tool"], "failed: " + row["error"], "", "", "", "", "")
            continue
        latency = (
            f"{row['latency_ms']:.2f} ms"
            if "latency_ms" in row
            else f"{row.get('latency_ratio', 0):.2f}x"
        )
        table.add_row(
            row["model"],
            row["tool"],
            str(row.get("nodes", "")),
            f"{row.get('size', 0) / 1e6:.2f} MB",
            f"{row['seconds']:.2f}" if "seconds" in row else "",
            f"{row['peak_mb']:.0f}" if "peak_mb" in row else "",
            latency,
            f"{row['max_abs_diff']:.1e}" if "max_abs_diff" in row else "",
        )
    Console(width=160).print(table)


def markdown(rows: list[dict]) -> str:
    """The same table as markdown, for the README."""
    lines = [
        "| model | tool | nodes | size MB | time s | peak MiB | latency vs original "
        "| max abs diff |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['model']} | {row['tool']} | failed: {row['error']} | | | | | |")
            continue
        latency = (
            f"{row['latency_ms']:.2f} ms"
            if "latency_ms" in row
            else f"{row.get('latency_ratio', 0):.2f}x"
        )
        bold = "**" if row["tool"] == "onnxslim" else ""
        lines.append(
            f"| {row['model']} | {row['tool']} | {bold}{row.get('nodes', '')}{bold} "
            f"| {row.get('size', 0) / 1e6:.2f} | "
            + (f"{row['seconds']:.2f}" if "seconds" in row else "")
            + " | "
            + (f"{row['peak_mb']:.0f}" if "peak_mb" in row else "")
            + f" | {latency} | "
            + (f"{row['max_abs_diff']:.1e}" if "max_abs_diff" in row else "")
            + " |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", help="demo and/or zoo model names [default: all]")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--peer-python", help="python of a venv with PyPI onnxslim==0.1.98")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    parser.add_argument("--markdown", type=Path, help="also write the table as markdown")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    peer = peer_python(args.peer_python)
    rows = []
    with tempfile.TemporaryDirectory(dir=OUT) as folder:
        for name, path in models_to_run(args.models).items():
            print(f"{name}:", file=sys.stderr)
            rows += bench_model(name, path, peer, args.runs, Path(folder))
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    if args.markdown:
        args.markdown.write_text(markdown(rows))


if __name__ == "__main__":
    main()
