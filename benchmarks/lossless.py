"""Lossless optimizers side by side on the demo model and the real-model zoo.

    python benchmarks/lossless.py [--models NAME ...] [--runs 30] [--json FILE] [--markdown FILE]
                                  [--strict] [--variant SKIP ...] [--tools NAME ...]
                                  [--settings all/2t,...] [--from-json FILE]

Each tool runs in its own subprocess (time and peak RSS of that process: load + optimize + save),
then `onnxslim.bench.benchmark` measures every result against the original on ONNX Runtime CPU at
the ORT optimization levels `all` and `basic`, with 1 and 2 threads: for each setting two rounds of
interleaved runs, each model's latency the best of its two medians. Inputs are eight real test
samples (`models.zoo.splits(name)['test'][:8]`) where the zoo has them, random ones otherwise.

"Lossless" means never slower and never bigger: an onnxslim latency ratio above 1.01 in any
setting, or a file size ratio above 1.0, is listed as a failure (`--strict`: exit 1 then). A
latency ratio above 1.01 is first timed again (original against that result alone, three times the
runs, best of two rounds): it fails only if both measurements are above 1.01.
`--variant fuse-chains` adds "onnxslim --skip fuse-chains" to the same interleaved runs, to find
which pass family a failure comes from; `--tools` (no names: none) and `--settings` narrow such a
run. `--from-json` re-renders the tables of an earlier `--json` run without measuring.

PyPI OnnxSlim shares our package name, so it runs from a venv of its own (created under
benchmarks/out/ on first use, or given with --peer-python).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from models.zoo import SAMPLE_INPUTS, ZOO_MODELS, ZooError  # noqa: E402
from models.zoo import random_inputs as zoo_inputs  # noqa: E402
from onnxslim.bench import benchmark  # noqa: E402
from onnxslim.cpu import cpu_info  # noqa: E402

OUT = ROOT / "benchmarks" / "out"
PEER_VERSION = "0.1.98"
# (ORT optimization level, intra-op threads) each result is timed at
SETTINGS = [("all", 1), ("all", 2), ("basic", 1), ("basic", 2)]
ROUNDS = 2
SAMPLES = 8
MAX_LATENCY_RATIO = 1.01
MAX_SIZE_RATIO = 1.0
RECHECK_RUNS_FACTOR = 3  # a slower onnxslim setting is timed again with 3x the runs
ONNXSLIM = "from onnxslim.cli import main; main(['-q', *sys.argv[1:3], *sys.argv[3:]])"

# Each snippet reads sys.argv[1] (input) and writes sys.argv[2] (output).
TOOLS = {
    "onnxslim": ONNXSLIM,
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
PEERS = [tool for tool in TOOLS if tool != "onnxslim"]


def setting_key(level: str, threads: int) -> str:
    return f"{level}/{threads}t"


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


def run_tool(python: str, snippet: str, source: Path, target: Path, extra: list[str]) -> dict:
    """Run one optimizer in a fresh process; its wall time and peak RSS (MiB), or its error."""
    started = time.perf_counter()
    # ours from this checkout; PyPI OnnxSlim (same package name) never from it
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    if python == sys.executable:
        env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.run(
        [python, "-c", PEAK_REPORTER + snippet, str(source), str(target), *extra],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tempfile.gettempdir(),
        env=env,
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


def samples_for(name: str) -> tuple[list[dict[str, np.ndarray]], str]:
    """Eight feeds for a model, and where they come from ("test split" or "random")."""
    if name in ZOO_MODELS:
        try:
            from models.zoo import splits

            return splits(name, limit=SAMPLES)["test"], "test split"
        except (ImportError, OSError, KeyError, ValueError, ZooError) as err:  # no data deps
            print(f"  {name}: no real inputs ({err}); random ones instead", file=sys.stderr)
    if name in SAMPLE_INPUTS:
        return [zoo_inputs(name, seed) for seed in range(SAMPLES)], "random"
    rng = np.random.default_rng(0)
    return [
        {"input": rng.standard_normal((1, 3, 32, 32), dtype=np.float32)} for _ in range(SAMPLES)
    ], "random"


def tool_list(tools: list[str] | None, variants: list[str]) -> dict[str, tuple[str, list[str]]]:
    """Tool label -> (snippet, extra arguments), variants ("onnxslim --skip X") after onnxslim."""
    chosen = {}
    for tool, snippet in TOOLS.items():
        if tools is None or tool in tools or tool == "onnxslim":
            chosen[tool] = (snippet, [])
        if tool == "onnxslim":
            for skip in variants:
                chosen[f"onnxslim --skip {skip}"] = (ONNXSLIM, ["--skip", skip])
    return chosen


def file_label(name: str, tool: str) -> str:
    return f"{name}.{tool.replace(' ', '_').replace('-', '')}.onnx"


def bench_model(
    name: str, path: Path, peer: str | None, runs: int, folder: Path, tools: dict
) -> list[dict]:
    rows, outputs = [], [path]
    for tool, (snippet, extra) in tools.items():
        python = peer if tool.startswith("OnnxSlim") else sys.executable
        if python is None:
            continue
        target = folder / file_label(name, tool)
        row = {"model": name, "tool": tool, **run_tool(python, snippet, path, target, extra)}
        if "error" not in row:
            outputs.append(target)
        rows.append(row)
        print(f"  {tool}: {row}", file=sys.stderr, flush=True)
    samples, source = samples_for(name)
    best: dict[str, list[float]] = {}  # setting -> per output: best median latency (ms)
    first = None
    for level, threads in SETTINGS:
        key = setting_key(level, threads)
        best[key], report = best_medians(outputs, samples, runs, level, threads)
        first = first or report
        ratios = ", ".join(f"{b / best[key][0]:.3f}" for b in best[key][1:])
        print(f"  {key}: original {best[key][0]:.2f} ms; ratios {ratios}", file=sys.stderr)
    original = first.models[0]
    index = {Path(str(output)).name: i for i, output in enumerate(outputs)}
    for row in rows:
        i = index.get(file_label(name, row["tool"]))
        if i is None:
            continue
        result = first.models[i]
        row.update(
            nodes=result.nodes,
            size=result.file_size,
            size_ratio=result.file_size / original.file_size,
            latency_ratio={key: best[key][i] / best[key][0] for key in best},
            max_abs_diff=max((d.max_abs or 0.0) for d in result.drift.values()),
        )
    recheck(name, path, folder, samples, runs, rows)
    rows.insert(
        0,
        {
            "model": name,
            "tool": "original",
            "nodes": original.nodes,
            "size": original.file_size,
            "latency_ms": {key: best[key][0] for key in best},
            "inputs": source,
        },
    )
    return rows


def best_medians(models: list[Path], samples: list, runs: int, level: str, threads: int):
    """Per model, the best median latency (ms) of ROUNDS interleaved rounds; the first report."""
    best, first = None, None
    for _ in range(ROUNDS):
        report = benchmark(
            models,
            inputs=samples,
            runs=runs,
            warmup=3,
            threads=threads,
            ort_opt_level=level,
            measure_memory=False,
            progress=False,
        )
        first = first or report
        medians = [m.latency.median for m in report.models]
        best = medians if best is None else [min(a, b) for a, b in zip(best, medians)]
    return best, first


def best_ratio(pair: list[Path], samples: list, runs: int, level: str, threads: int) -> float:
    """Latency of pair[1] over pair[0]: each the best median of ROUNDS interleaved rounds."""
    best, _ = best_medians(pair, samples, runs, level, threads)
    return best[1] / best[0]


def recheck(
    name: str, path: Path, folder: Path, samples: list, runs: int, rows: list[dict]
) -> None:
    """Time again, original against onnxslim alone and with RECHECK_RUNS_FACTOR times the runs,
    every setting where onnxslim came out slower: the ratio is in row["recheck"]."""
    for row in rows:
        if not row["tool"].startswith("onnxslim") or "latency_ratio" not in row:
            continue
        pair = [path, folder / file_label(name, row["tool"])]
        for key, ratio in row["latency_ratio"].items():
            if ratio > MAX_LATENCY_RATIO:
                level, threads = key.split("/")
                again = best_ratio(
                    pair, samples, runs * RECHECK_RUNS_FACTOR, level, int(threads.rstrip("t"))
                )
                row.setdefault("recheck", {})[key] = again
                print(f"  {row['tool']} {key}: {ratio:.3f}, again {again:.3f}", file=sys.stderr)


def failures(rows: list[dict]) -> list[str]:
    """onnxslim results bigger (> MAX_SIZE_RATIO) or slower (> MAX_LATENCY_RATIO) than before,
    in the side-by-side runs and again when timed alone against the original."""
    found = []
    for row in rows:
        if row["tool"] != "onnxslim":
            continue
        if "error" in row:
            found.append(f"{row['model']}: onnxslim failed: {row['error']}")
            continue
        if row["size_ratio"] > MAX_SIZE_RATIO:
            found.append(f"{row['model']}: size ratio {row['size_ratio']:.4f} > {MAX_SIZE_RATIO}")
        for key, ratio in row["latency_ratio"].items():
            again = row.get("recheck", {}).get(key, ratio)
            if min(ratio, again) > MAX_LATENCY_RATIO:
                found.append(
                    f"{row['model']}: latency ratio {ratio:.3f} (again {again:.3f}) "
                    f"> {MAX_LATENCY_RATIO} at ORT {key}"
                )
    return found


def latency_cells(row: dict) -> list[str]:
    if "latency_ms" in row:
        return [f"{row['latency_ms'][setting_key(*s)]:.2f} ms" for s in SETTINGS]
    if "latency_ratio" in row:
        return [f"{row['latency_ratio'][setting_key(*s)]:.3f}" for s in SETTINGS]
    return [""] * len(SETTINGS)


def cells(row: dict) -> list[str]:
    """model, tool, nodes, size ratio, time, peak, the latency settings, max |diff|."""
    if "error" in row:
        return [row["model"], row["tool"], "failed: " + row["error"]] + [""] * (4 + len(SETTINGS))
    original = row["tool"] == "original"
    size = f"{row['size'] / 1e6:.2f} MB" if original else f"{row['size_ratio']:.4f}"
    return [
        row["model"],
        row["tool"],
        str(row.get("nodes", "")),
        size,
        f"{row['seconds']:.2f}" if "seconds" in row else "",
        f"{row['peak_mb']:.0f}" if "peak_mb" in row else "",
        *latency_cells(row),
        f"{row['max_abs_diff']:.1e}" if "max_abs_diff" in row else "",
    ]


def columns() -> list[str]:
    return [
        "model",
        "tool",
        "nodes",
        "size",
        "time s",
        "peak MiB",
        *(f"ORT {level} {threads}t" for level, threads in SETTINGS),
        "max |diff|",
    ]


def setup_line(runs: int) -> str:
    cpu = cpu_info()
    features = ", ".join(cpu.features) or "none"
    return (
        f"CPU: {cpu.model} ({cpu.arch}; {features}; {os.cpu_count()} logical cores); "
        f"ONNX Runtime {ort.__version__}; latency: median of {runs} interleaved runs, "
        f"best of {ROUNDS} rounds, at ORT level/threads "
        + ", ".join(setting_key(*s) for s in SETTINGS)
    )


def print_table(rows: list[dict], runs: int) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title="lossless optimizers: size and latency as ratios to the original (below 1: better)",
        caption=setup_line(runs),
    )
    for column in columns():
        table.add_column(column, justify="left" if column in ("model", "tool") else "right")
    for row in rows:
        table.add_row(*cells(row))
    Console(width=200).print(table)


def _ratio(row: dict | None, key: str | None = None) -> str:
    """A size (key None) or latency ratio; † when timed again (row["recheck"]) within the limit,
    ‡ when above it again."""
    if row is None:
        return ""
    if "error" in row:
        return "failed"
    if key is None:
        return f"{row['size_ratio']:.3f}"
    again = row.get("recheck", {}).get(key)
    mark = "" if again is None else "†" if again <= MAX_LATENCY_RATIO else "‡"
    return f"{row['latency_ratio'][key]:.2f}{mark}"


def summary_tables(rows: list[dict]) -> str:
    """The README's tables: nodes, size ratio, latency ratio per ORT level (1 / 2 threads)."""
    by_model: dict[str, dict[str, dict]] = {}
    for row in rows:
        by_model.setdefault(row["model"], {})[row["tool"]] = row
    tools = [t for t in TOOLS if any(t in tools for tools in by_model.values())]
    head = "| model | " + " | ".join(tools) + " |\n|---|" + "---|" * len(tools) + "\n"
    out = ["Nodes after optimization (original in brackets):\n", head.rstrip("\n")]
    for model, found in by_model.items():
        nodes = [
            "failed" if "error" in found.get(t, {}) else str(found.get(t, {}).get("nodes", ""))
            for t in tools
        ]
        nodes = [f"**{n}**" if t == "onnxslim" else n for t, n in zip(tools, nodes)]
        out.append(f"| {model} ({found['original']['nodes']}) | " + " | ".join(nodes) + " |")
    out += ["", "File size after / before:\n", head.rstrip("\n")]
    for model, found in by_model.items():
        out.append(f"| {model} | " + " | ".join(_ratio(found.get(t)) for t in tools) + " |")
    for level in dict.fromkeys(level for level, _ in SETTINGS):
        threads = [t for lv, t in SETTINGS if lv == level]
        out += [
            "",
            f"Latency after / before at ORT level `{level}`, "
            + " / ".join(f"{t} thread{'s' if t > 1 else ''}" for t in threads)
            + ":\n",
            head.rstrip("\n"),
        ]
        for model, found in by_model.items():
            row_cells = [
                " / ".join(_ratio(found.get(tool), setting_key(level, t)) for t in threads)
                if found.get(tool) is not None and "error" not in found[tool]
                else _ratio(found.get(tool))
                for tool in tools
            ]
            out.append(f"| {model} | " + " | ".join(row_cells) + " |")
    if any("†" in line or "‡" in line for line in out):
        out += [
            "",
            f"† above {MAX_LATENCY_RATIO} in the side-by-side runs, at most {MAX_LATENCY_RATIO} "
            f"when timed again alone against the original ({RECHECK_RUNS_FACTOR}x the runs); "
            f"‡ above {MAX_LATENCY_RATIO} both times: a failure.",
        ]
    out += ["", "Time and peak memory of a fresh process that loads, optimizes and saves:\n"]
    out.append(head.rstrip("\n"))
    for model, found in by_model.items():
        row_cells = []
        for tool in tools:
            row = found.get(tool)
            if row is None or "error" in row:
                row_cells.append("" if row is None else "failed")
            else:
                row_cells.append(f"{row['seconds']:.1f} s, {row['peak_mb']:.0f} MiB")
        out.append(f"| {model} | " + " | ".join(row_cells) + " |")
    return "\n".join(out) + "\n"


def markdown(rows: list[dict], runs: int, found: list[str]) -> str:
    """The full table and the README's summary tables, as markdown."""
    lines = [
        "# Lossless optimizers: nodes, size and latency",
        "",
        "`python benchmarks/lossless.py --markdown benchmarks/lossless_results.md`",
        "",
        setup_line(runs)
        + ". Inputs: "
        + ", ".join(f"{row['model']} {row['inputs']}" for row in rows if row["tool"] == "original")
        + ".",
        "",
        "Size: file bytes after / before; latency: after / before (below 1 is better). "
        "Time and peak memory are those of a fresh process that loads, optimizes and saves "
        "(onnxslim includes its ORT check).",
        "",
        "| " + " | ".join(columns()) + " |",
        "|---|---|" + "---|" * (len(columns()) - 2),
    ]
    for row in rows:
        row_cells = cells(row)
        if row["tool"] == "onnxslim" and "error" not in row:
            row_cells[2] = f"**{row_cells[2]}**"
        lines.append("| " + " | ".join(row_cells) + " |")
    lines += [
        "",
        f"## Failures (onnxslim latency ratio > {MAX_LATENCY_RATIO} or size ratio "
        f"> {MAX_SIZE_RATIO})",
        "",
    ]
    lines += [f"- {line}" for line in found] or ["none"]
    retimed = [
        f"- {row['model']}, {row['tool']}, ORT {key}: {row['latency_ratio'][key]:.3f}, "
        f"again {again:.3f}"
        for row in rows
        for key, again in row.get("recheck", {}).items()
    ]
    if retimed:
        lines += ["", "Re-timed alone against the original (first ratio above the limit):", ""]
        lines += retimed
    lines += ["", "## Summary (the README's tables)", "", summary_tables(rows)]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="*", help="demo and/or zoo model names [default: all]")
    parser.add_argument("--runs", type=int, default=30, help="timed runs per round and setting")
    parser.add_argument("--peer-python", help="python of a venv with PyPI onnxslim==0.1.98")
    parser.add_argument("--tools", nargs="*", help=f"peers to run besides onnxslim: {PEERS}")
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="SKIP",
        help="also run onnxslim --skip SKIP (repeatable; SKIP may be comma-separated)",
    )
    parser.add_argument(
        "--settings",
        help="time only these, e.g. basic/2t,all/1t [default: "
        + ",".join(setting_key(*s) for s in SETTINGS)
        + "]",
    )
    parser.add_argument("--json", type=Path, help="also write the rows as JSON")
    parser.add_argument("--markdown", type=Path, help="also write the tables as markdown")
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 when onnxslim is slower or bigger anywhere"
    )
    parser.add_argument(
        "--from-json",
        type=Path,
        metavar="FILE",
        help="measure nothing: print and write the tables of an earlier --json FILE",
    )
    args = parser.parse_args()
    if args.from_json:
        saved = json.loads(args.from_json.read_text())
        levels_threads = [key.split("/") for key in saved["settings"]]
        SETTINGS[:] = [(level, int(threads.rstrip("t"))) for level, threads in levels_threads]
        rows, found = saved["rows"], failures(saved["rows"])
        print_table(rows, saved["runs"])
        if args.markdown:
            args.markdown.write_text(markdown(rows, saved["runs"], found))
        return 1 if args.strict and found else 0
    if args.settings:
        chosen = [key.strip() for key in args.settings.split(",") if key.strip()]
        known = {setting_key(*s): s for s in SETTINGS}
        if not chosen or set(chosen) - set(known):
            parser.error(f"--settings: choose from {', '.join(known)}")
        SETTINGS[:] = [known[key] for key in chosen]
    unknown = set(args.tools or []) - set(PEERS)
    if unknown:
        parser.error(f"unknown tools {sorted(unknown)}: choose from {PEERS}")
    OUT.mkdir(parents=True, exist_ok=True)
    print(setup_line(args.runs), file=sys.stderr, flush=True)
    tools = tool_list(args.tools, args.variant)
    peer = peer_python(args.peer_python) if "OnnxSlim 0.1.98" in tools else None
    rows = []
    with tempfile.TemporaryDirectory(dir=OUT) as folder:
        for name, path in models_to_run(args.models).items():
            print(f"{name}:", file=sys.stderr, flush=True)
            rows += bench_model(name, path, peer, args.runs, Path(folder), tools)
    found = failures(rows)
    print_table(rows, args.runs)
    print(f"failures (latency ratio > {MAX_LATENCY_RATIO} or size ratio > {MAX_SIZE_RATIO}):")
    print("\n".join(f"  FAIL {line}" for line in found) or "  none")
    if args.json:
        cpu = cpu_info()
        args.json.write_text(
            json.dumps(
                {
                    "cpu": cpu.to_dict(),
                    "onnxruntime": ort.__version__,
                    "settings": [setting_key(*s) for s in SETTINGS],
                    "runs": args.runs,
                    "rounds": ROUNDS,
                    "rows": rows,
                    "failures": found,
                },
                indent=2,
            )
        )
    if args.markdown:
        args.markdown.write_text(markdown(rows, args.runs, found))
    return 1 if args.strict and found else 0


if __name__ == "__main__":
    sys.exit(main())
