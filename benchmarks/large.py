"""A BERT-shaped encoder over 2 GB, stored as external data: time and peak memory of onnxslim and
its peers.

Usage:
    python benchmarks/large.py [--dir DIR] [--hidden 1536] [--layers 24]
                               [--tools onnxslim,onnxslim-nocheck,onnxslim-int8,ort,onnxsim]

`onnxslim-int8` is `--int8 --calibration random:16`: over 2 GB, dynamic INT8 of the MatMul weights
on files (`onnxslim/quantization/large.py`); under it (`--hidden 768 --layers 4` gives 0.19 GiB),
the whole INT8 pipeline. Its max |diff| is INT8's drift.

The model is assembled directly (onnx.helper, weights streamed to disk, never held in memory whole):
word/position embeddings, then `--layers` encoder layers exported the way torch does it (MatMul +
Add, Shape/Gather/Concat arithmetic for the head reshapes, Softmax attention, Erf GELU,
LayerNormalization, inference Dropout), one external file per tensor in a `weights/` subfolder (as
torch writes them) or one shared file with offsets (`--layout single`), or inside the one model
file (`--layout inline`, under 2 GB: `--hidden 1024 --layers 12` gives 0.68 GiB). The defaults give
~2.9 GB of float32 weights.

Each tool runs in its own process; peak RSS is that process's ru_maxrss (os.wait4). Every produced
model is then run once on ONNX Runtime (in a fresh process, one model at a time) and compared with
the original. The model comes from `models/encoder.py` (tests build a few-MB version of it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from models.encoder import build_encoder  # noqa: E402

GIB = 1024**3


def _measure(cmd: list[str], log: Path) -> dict:
    """Run `cmd`; its wall time, exit code and peak RSS (ru_maxrss of that process alone)."""
    started = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    return {
        "seconds": round(time.perf_counter() - started, 1),
        "exit": os.waitstatus_to_exitcode(status),
        "peak_rss_gib": round(usage.ru_maxrss * 1024 / GIB, 2),
    }


_ORT_OFFLINE = r"""
import sys, onnxruntime as ort
src, dst = sys.argv[1], sys.argv[2]
o = ort.SessionOptions()
o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
o.optimized_model_filepath = dst
o.add_session_config_entry(
    "session.optimized_model_external_initializers_file_name", "model.onnx.data"
)
o.add_session_config_entry(
    "session.optimized_model_external_initializers_min_size_in_bytes", "1024"
)
ort.InferenceSession(src, o, providers=["CPUExecutionProvider"])
"""

_RUN = r"""
import sys, json, numpy as np, onnx, onnxruntime as ort
path, out = sys.argv[1], sys.argv[2]
o = ort.SessionOptions(); o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
s = ort.InferenceSession(path, o, providers=["CPUExecutionProvider"])
ids = np.random.default_rng(0).integers(0, 1000, (1, 16)).astype(np.int64)
np.save(out, s.run(None, {"input_ids": ids})[0])
m = onnx.load(path, load_external_data=False)
print(json.dumps({"nodes": len(m.graph.node)}))
"""


def tool_commands(tool: str, model: Path, out: Path) -> list[str]:
    py = sys.executable
    return {
        "onnxslim": [py, "-m", "onnxslim", str(model), "-o", str(out), "-q"],
        "onnxslim-nocheck": [py, "-m", "onnxslim", str(model), "-o", str(out), "-q", "--no-check"],
        "onnxslim-int8": [
            *[py, "-m", "onnxslim", str(model), "-o", str(out), "-q"],
            *["--int8", "--calibration", "random:16", "--report", str(out.with_suffix(".json"))],
        ],
        "onnxsim": [
            py,
            "-m",
            "onnxsim",
            str(model),
            str(out),
            "--save-as-external-data",
            "--no-certify",
        ],
        "ort": [py, "-c", _ORT_OFFLINE, str(model), str(out)],
    }[tool]


def run_model(path: Path, work: Path) -> tuple[np.ndarray, int]:
    result = subprocess.run(
        [sys.executable, "-c", _RUN, str(path), str(work / "out.npy")],
        capture_output=True,
        text=True,
        check=True,
    )
    return np.load(work / "out.npy"), json.loads(result.stdout.strip().splitlines()[-1])["nodes"]


def _int8_figures(report: Path) -> dict:
    """From an INT8 report: the file size and single-thread latency after / before (as the tool
    timed them side by side) and the worst test sample's cosine."""
    if not report.exists():
        return {}
    int8 = json.loads(report.read_text())["int8"]
    float_ms, int8_ms = int8["latency_float_ms"], int8["latency_int8_ms"]
    return {
        "int8_size_ratio": round(int8["size_after"] / int8["size_before"], 3),
        "int8_latency_ratio": round(int8_ms / float_ms, 3) if float_ms and int8_ms else None,
        "int8_min_cosine": round(min(d["min_cosine"] for d in int8["drift"].values()), 4),
    }


def _diff_text(row: dict) -> str:
    if "error" in row:
        return "failed"
    return f"{row['max_abs_diff']:.3g}" if "max_abs_diff" in row else "-"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path("/tmp/onnxslim-large"))
    parser.add_argument("--hidden", type=int, default=1536)
    parser.add_argument("--layers", type=int, default=24)
    parser.add_argument(
        "--layout", choices=["per-tensor", "single", "inline"], default="per-tensor"
    )
    parser.add_argument("--tools", default="onnxslim-nocheck,onnxslim,ort,onnxsim")
    parser.add_argument(
        "--rebuild", action="store_true", help="rebuild the model even if it exists"
    )
    parser.add_argument("--keep", action="store_true", help="keep the optimized models")
    args = parser.parse_args(argv)

    source = args.dir / "source"
    if args.rebuild and source.exists():
        shutil.rmtree(source)
    started = time.perf_counter()
    if not (source / "model.onnx").exists():
        layout = "single" if args.layout == "inline" else args.layout
        path, total = build_encoder(source, hidden=args.hidden, layers=args.layers, layout=layout)
        if args.layout == "inline":  # the weights read in, written inside the model file
            onnx.save(onnx.load(path), path)
            shutil.rmtree(source / "weights")
        print(
            f"built {path}: {total / GIB:.2f} GiB of weights "
            f"in {time.perf_counter() - started:.0f} s",
            flush=True,
        )
    path = source / "model.onnx"
    weights = source / "weights"
    total = sum(f.stat().st_size for f in (weights.iterdir() if weights.exists() else [path]))
    reference, nodes = run_model(path, args.dir)
    rows = [{"tool": "original", "nodes": nodes, "weights_gib": round(total / GIB, 2)}]
    for tool in [t.strip() for t in args.tools.split(",") if t.strip()]:
        out_dir = args.dir / tool
        shutil.rmtree(out_dir, ignore_errors=True)
        out_dir.mkdir(parents=True)
        print(f"running {tool} ...", flush=True)
        row = {
            "tool": tool,
            **_measure(tool_commands(tool, path, out_dir / "model.onnx"), args.dir / f"{tool}.log"),
        }
        row["peak_vs_weights"] = round(row["peak_rss_gib"] * GIB / total, 2)
        if row["exit"] == 0 and (out_dir / "model.onnx").exists():
            output, row["nodes"] = run_model(out_dir / "model.onnx", args.dir)
            row["max_abs_diff"] = float(np.max(np.abs(output - reference)))
            row.update(_int8_figures(out_dir / "model.json"))
        else:
            row["error"] = (args.dir / f"{tool}.log").read_text()[-300:].strip().splitlines()[-1:]
        rows.append(row)
        print(json.dumps(row), flush=True)
        if not args.keep:
            shutil.rmtree(out_dir, ignore_errors=True)
    print()
    print(
        f"{'tool':<18}{'nodes':>7}{'time s':>9}{'peak RSS GiB':>14}"
        f"{'x weights':>11}{'max |diff|':>12}"
    )
    for row in rows:
        print(
            f"{row['tool']:<18}{row.get('nodes', '-'):>7}{row.get('seconds', '-'):>9}"
            f"{row.get('peak_rss_gib', '-'):>14}{row.get('peak_vs_weights', '-'):>11}"
            f"{_diff_text(row):>12}"
        )
    for row in rows:
        if "int8_size_ratio" in row:
            print(
                f"{row['tool']}: size {row['int8_size_ratio']}x, latency "
                f"{row['int8_latency_ratio']}x (1 thread), worst test cosine "
                f"{row['int8_min_cosine']}"
            )
    (args.dir / "results.json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
