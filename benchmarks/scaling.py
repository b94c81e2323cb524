"""How optimization time and memory grow with graph size: generated Conv+BN+Relu CNNs.

    python benchmarks/scaling.py [--nodes 1000 3500 7000 14000] [--tools onnxslim,onnxsim,ort]
                                 [--baseline DIR] [--repeats 2] [--profile] [--markdown FILE]

Each model is a chain of Conv(3x3, 8 channels) + BatchNormalization + Relu blocks on a 1x8x16x16
input, as many blocks as give the asked node count; every block shrinks its input a little
(weights ~ 1/sqrt(fan-in), BN gain <= 1), so thousands of them neither overflow nor lose the
check's tolerance. Each tool runs in a fresh process, as a user would run it: `onnxslim IN -o OUT`
(with its default ORT check), `onnxsim IN OUT` (its CLI's default, no check) and ORT's offline
optimizer (a session at ORT_ENABLE_BASIC writing optimized_model_filepath). Wall time and peak
RSS of that process (GNU time's %M where /usr/bin/time exists, else wait4's ru_maxrss); the best of
`--repeats` runs, tools interleaved.

The growth ratio is time (or peak RSS) at the largest size over that at half of it (7k -> 14k
nodes by default): about 2.0 is linear, 4.0 quadratic. `--profile` runs onnxslim once more under
cProfile on the largest model and prints the top functions by cumulative time.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import math
import os
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from onnxslim.cpu import cpu_info  # noqa: E402

CHANNELS = 8
SIZE = 16
OPSET = 17
GNU_TIME = "/usr/bin/time"

ORT_OFFLINE = (
    "import sys, onnxruntime as ort; o = ort.SessionOptions(); "
    "o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC; "
    "o.optimized_model_filepath = sys.argv[2]; "
    "ort.InferenceSession(sys.argv[1], o, providers=['CPUExecutionProvider'])"
)


def build_cnn(path: Path, nodes: int, seed: int = 0) -> int:
    """Write a chain of Conv+BN+Relu blocks with about `nodes` nodes; the node count."""
    rng = np.random.default_rng(seed)
    blocks = max(1, round(nodes / 3))
    graph_nodes, inits = [], []
    current = "input"
    for b in range(blocks):
        fan_in = CHANNELS * 9
        w = rng.standard_normal((CHANNELS, CHANNELS, 3, 3)) / np.sqrt(fan_in)
        channel = [
            0.8 + 0.2 * rng.random(CHANNELS),  # scale
            0.1 * rng.standard_normal(CHANNELS),  # bias
            0.1 * rng.standard_normal(CHANNELS),  # mean
            1.0 + 0.2 * rng.random(CHANNELS),  # var
        ]
        inits += [numpy_helper.from_array(w.astype(np.float32), f"w{b}")]
        inits += [
            numpy_helper.from_array(values.astype(np.float32), f"{kind}{b}")
            for kind, values in zip(("scale", "bias", "mean", "var"), channel)
        ]
        graph_nodes += [
            helper.make_node("Conv", [current, f"w{b}"], [f"conv{b}"], pads=[1, 1, 1, 1]),
            helper.make_node(
                "BatchNormalization",
                [f"conv{b}", f"scale{b}", f"bias{b}", f"mean{b}", f"var{b}"],
                [f"bn{b}"],
            ),
            helper.make_node("Relu", [f"bn{b}"], [f"relu{b}"]),
        ]
        current = f"relu{b}"
    shape = [1, CHANNELS, SIZE, SIZE]
    graph = helper.make_graph(
        graph_nodes,
        f"cnn{blocks}",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info(current, TensorProto.FLOAT, shape)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.save(model, path)
    return len(graph_nodes)


def command(tool: str, source: Path, target: Path) -> list[str]:
    py = sys.executable
    if tool.startswith("onnxslim@"):  # another checkout's onnxslim (see --baseline)
        tool = "onnxslim"
    return {
        "onnxslim": [py, "-m", "onnxslim", str(source), "-o", str(target)],
        "onnxsim": [py, "-m", "onnxsim", str(source), str(target)],
        "ort": [py, "-c", ORT_OFFLINE, str(source), str(target)],
    }[tool]


def measure(cmd: list[str], log: Path, root: Path = ROOT) -> dict:
    """Wall time, exit code and peak RSS (MiB) of `cmd` in a fresh process, importing onnxslim
    from `root`."""
    env = dict(os.environ, PYTHONPATH=str(root))
    stats = log.with_suffix(".time")
    gnu = os.access(GNU_TIME, os.X_OK)
    if gnu:  # time's own tiny footprint is what the child could inherit: nothing of ours
        cmd = [GNU_TIME, "-f", "%M", "-o", str(stats), *cmd]
    started = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    peak_kb = int(stats.read_text().split()[-1]) if gnu else usage.ru_maxrss
    return {
        "seconds": seconds,
        "exit": os.waitstatus_to_exitcode(status),
        "peak_mb": peak_kb / 1024,
    }


def node_count(path: Path) -> int:
    return len(onnx.load(path, load_external_data=False).graph.node)


def growth(rows: list[dict], tool: str, key: str) -> tuple[float, float, int, int] | None:
    """Figure at the largest size over that at the size closest to half of it, and the
    exponent k of figure ~ nodes^k between the two."""
    mine = sorted(
        (r for r in rows if r["tool"] == tool and r.get("exit") == 0), key=lambda r: r["nodes"]
    )
    if len(mine) < 2:
        return None
    big = mine[-1]
    small = min(mine[:-1], key=lambda r: abs(r["nodes"] - big["nodes"] / 2))
    ratio = big[key] / small[key]
    return (
        ratio,
        math.log(ratio) / math.log(big["nodes"] / small["nodes"]),
        small["nodes"],
        big["nodes"],
    )


def profile_onnxslim(source: Path, target: Path, top: int) -> str:
    """cProfile of one in-process onnxslim run (as the CLI does it), top functions by cumtime."""
    from onnxslim.cli import main as cli_main

    profiler = cProfile.Profile()
    profiler.enable()
    try:
        cli_main.main([str(source), "-o", str(target), "-q"], standalone_mode=False)
    except (SystemExit, Exception) as err:  # noqa: BLE001 - a failed run is still profiled
        print(f"onnxslim failed under the profiler: {err}", file=sys.stderr)
    finally:
        profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).strip_dirs()
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top // 2)
    return out.getvalue()


def table(rows: list[dict], tools: list[str]) -> str:
    sizes = sorted({r["nodes"] for r in rows})
    lines = [
        "| nodes | " + " | ".join(f"{t} time s | {t} peak MiB" for t in tools) + " |",
        "|---|" + "---|---|" * len(tools),
    ]
    for n in sizes:
        row_cells = []
        for tool in tools:
            found = next((r for r in rows if r["tool"] == tool and r["nodes"] == n), None)
            if found is None or found["exit"] != 0:
                row_cells += ["failed", ""]
            else:
                row_cells += [f"{found['seconds']:.1f}", f"{found['peak_mb']:.0f}"]
        lines.append(f"| {n} | " + " | ".join(row_cells) + " |")
    lines.append("")
    for tool in tools:
        parts = []
        for key, label in (("seconds", "time"), ("peak_mb", "peak RSS")):
            g = growth(rows, tool, key)
            if g:
                parts.append(f"{label} x{g[0]:.2f} (exponent {g[1]:.2f})")
        if parts:
            g = growth(rows, tool, "seconds")
            lines.append(f"- {tool}, {g[2]} -> {g[3]} nodes: " + ", ".join(parts))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[1000, 3500, 7000, 14000])
    parser.add_argument("--tools", default="onnxslim,onnxsim,ort")
    parser.add_argument(
        "--baseline",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="also time onnxslim imported from DIR (another checkout), as onnxslim@NAME",
    )
    parser.add_argument("--repeats", type=int, default=2, help="runs per tool and size (best)")
    parser.add_argument("--profile", action="store_true", help="cProfile onnxslim, largest size")
    parser.add_argument("--top", type=int, default=30, help="functions shown by --profile")
    parser.add_argument("--dir", type=Path, help="where models go [default: a temporary folder]")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--markdown", type=Path)
    args = parser.parse_args(argv)
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    baselines = {f"onnxslim@{path.resolve().name}": path.resolve() for path in args.baseline}
    tools[1:1] = list(baselines)
    work = args.dir or Path(tempfile.mkdtemp(prefix="onnxslim-scaling-"))
    work.mkdir(parents=True, exist_ok=True)
    cpu = cpu_info()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    setup = (
        f"CPU: {cpu.model} ({cpu.arch}, {os.cpu_count()} logical cores); load average at start "
        f"{load:.1f}; best of {args.repeats} fresh-process runs per tool and size, interleaved"
    )
    print(setup, flush=True)
    rows = []
    try:
        for asked in args.nodes:
            source = work / f"cnn{asked}.onnx"
            nodes = build_cnn(source, asked)
            runs: dict[str, list[dict]] = {tool: [] for tool in tools}
            for _ in range(args.repeats):
                for tool in tools:
                    target = work / f"cnn{asked}.{tool}.onnx"
                    target.unlink(missing_ok=True)
                    root = baselines.get(tool, ROOT)
                    run = measure(command(tool, source, target), work / f"{tool}.log", root)
                    if run["exit"] == 0 and target.exists():
                        run["nodes_after"] = node_count(target)
                    else:
                        run["exit"] = run["exit"] or 1
                        run["error"] = (work / f"{tool}.log").read_text().strip()[-300:]
                    runs[tool].append(run)
            for tool in tools:
                ok = [run for run in runs[tool] if run["exit"] == 0]
                row = {"tool": tool, "nodes": nodes}
                if ok:
                    row.update(
                        exit=0,
                        seconds=min(run["seconds"] for run in ok),
                        peak_mb=min(run["peak_mb"] for run in ok),
                        nodes_after=ok[0]["nodes_after"],
                        runs=len(ok),
                    )
                else:
                    row.update(runs[tool][-1])
                rows.append(row)
                print(json.dumps(row), flush=True)
        text = table(rows, tools)
        print()
        print(text)
        profile = ""
        if args.profile:
            biggest = max(args.nodes)
            profile = profile_onnxslim(
                work / f"cnn{biggest}.onnx", work / f"cnn{biggest}.profiled.onnx", args.top
            )
            print(profile)
        if args.markdown:
            body = f"# Scaling: generated Conv+BN+Relu CNNs\n\n{setup}.\n\n{text}"
            if profile:
                body += f"\n## cProfile of onnxslim, {max(args.nodes)} nodes\n\n```\n"
                body += profile.strip() + "\n```\n"
            args.markdown.write_text(body)
        if args.json:
            args.json.write_text(json.dumps({"setup": setup, "rows": rows}, indent=2))
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
