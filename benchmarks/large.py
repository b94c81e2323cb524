"""A BERT-shaped encoder over 2 GB, stored as external data: time and peak memory of onnxslim and its peers.

Usage:
    python benchmarks/large.py [--dir DIR] [--hidden 1536] [--layers 24] [--tools onnxslim,onnxslim-nocheck,ort,onnxsim]

The model is assembled directly (onnx.helper, weights streamed to disk, never held in memory whole):
word/position embeddings, then `--layers` encoder layers exported the way torch does it (MatMul + Add,
Shape/Gather/Concat arithmetic for the head reshapes, Softmax attention, Erf GELU, LayerNormalization,
inference Dropout), one external file per tensor in a `weights/` subfolder (as torch writes them) or one
shared file with offsets (`--layout single`). The defaults give ~2.9 GB of float32 weights.

Each tool runs in its own process; peak RSS is that process's ru_maxrss (os.wait4). Every produced model
is then run once on ONNX Runtime (in a fresh process, one model at a time) and compared with the original.
`build_encoder` is imported by tests/test_large.py for a few-MB version of the same model.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

GIB = 1024**3


class _Weights:
    """Streams random float32 tensors to external files and returns TensorProtos that reference them."""

    def __init__(self, folder: Path, layout: str, seed: int) -> None:
        self.folder, self.layout = folder, layout
        self.rng = np.random.default_rng(seed)
        self.total = 0
        self.shared_offset = 0
        (folder / "weights").mkdir(parents=True, exist_ok=True)

    def __call__(self, name: str, shape: tuple[int, ...], scale: float = 0.02, fill: float | None = None):
        count = math.prod(shape)
        if self.layout == "single":
            location, offset = "weights/model.bin", self.shared_offset
        else:
            location, offset = f"weights/{name}", 0
        with open(self.folder / location, "ab" if self.layout == "single" else "wb") as file:
            done = 0
            while done < count:  # in chunks: never the whole tensor's random source at once
                n = min(count - done, 8 * 1024 * 1024)
                chunk = (np.full(n, fill, np.float32) if fill is not None
                         else (self.rng.standard_normal(n, dtype=np.float32) * scale))
                file.write(chunk.tobytes())
                done += n
        tensor = TensorProto(name=name, data_type=TensorProto.FLOAT, dims=list(shape))
        tensor.data_location = TensorProto.EXTERNAL
        for key, value in (("location", location), ("offset", str(offset)), ("length", str(count * 4))):
            entry = tensor.external_data.add()
            entry.key, entry.value = key, value
        self.shared_offset += count * 4
        self.total += count * 4
        return tensor


def build_encoder(folder: str | os.PathLike, *, hidden: int = 1536, layers: int = 24, heads: int = 16,
                  ffn: int | None = None, vocab: int = 30522, max_len: int = 512, layout: str = "per-tensor",
                  seed: int = 0, opset: int = 17) -> tuple[Path, int]:
    """Write `folder/model.onnx` and its weights; returns (model path, weight bytes)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ffn = ffn or 4 * hidden
    head_dim = hidden // heads
    weights = _Weights(folder, layout, seed)
    nodes: list[onnx.NodeProto] = []
    inits: list[onnx.TensorProto] = []
    small: list[onnx.TensorProto] = []

    def node(op, inputs, name, **attrs):
        nodes.append(helper.make_node(op, inputs, [name], name=f"n_{name}", **attrs))
        return name

    def constant(name, value):
        small.append(onnx.numpy_helper.from_array(np.asarray(value), name))
        return name

    def weight(name, shape, **kw):
        inits.append(weights(name, shape, **kw))
        return name

    def layer_norm(x, prefix):
        gamma = weight(f"{prefix}.weight", (hidden,), fill=1.0)
        beta = weight(f"{prefix}.bias", (hidden,), fill=0.0)
        return node("LayerNormalization", [x, gamma, beta], f"{prefix}.out", axis=-1, epsilon=1e-12)

    def linear(x, prefix, n_in, n_out):
        w = weight(f"{prefix}.weight", (n_in, n_out))
        b = weight(f"{prefix}.bias", (n_out,), fill=0.0)
        return node("Add", [node("MatMul", [x, w], f"{prefix}.mm"), b], f"{prefix}.out")

    for name, value in (("c0", np.array(0)), ("c1", np.array(1)), ("ax0", np.array([0])),
                        ("heads", np.array([heads])), ("head_dim", np.array([head_dim])),
                        ("hidden_dim", np.array([hidden])), ("sqrt_d", np.array(math.sqrt(head_dim), np.float32)),
                        ("half", np.array(0.5, np.float32)), ("one", np.array(1.0, np.float32)),
                        ("sqrt2", np.array(math.sqrt(2.0), np.float32)), ("start", np.array(0))):
        constant(name, value)

    # embeddings: word + position (positions from Range over the dynamic sequence length)
    ids_shape = node("Shape", ["input_ids"], "ids_shape")
    seq = node("Gather", [ids_shape, "c1"], "seq", axis=0)
    positions = node("Range", ["start", seq, "c1"], "positions")
    words = node("Gather", [weight("embeddings.word", (vocab, hidden)), "input_ids"], "word_emb")
    pos = node("Gather", [weight("embeddings.position", (max_len, hidden)), positions], "pos_emb")
    h = layer_norm(node("Add", [words, pos], "emb_sum"), "embeddings.norm")
    h = node("Dropout", [h], "embeddings.dropout")

    for i in range(layers):
        p = f"layer{i}"
        shape = node("Shape", [h], f"{p}.shape")  # torch re-reads the shape in every layer
        batch = node("Unsqueeze", [node("Gather", [shape, "c0"], f"{p}.b", axis=0), "ax0"], f"{p}.b1")
        length = node("Unsqueeze", [node("Gather", [shape, "c1"], f"{p}.s", axis=0), "ax0"], f"{p}.s1")
        split = node("Concat", [batch, length, "heads", "head_dim"], f"{p}.split_shape", axis=0)
        merged = node("Concat", [batch, length, "hidden_dim"], f"{p}.merge_shape", axis=0)

        def heads_of(x, name, perm):
            return node("Transpose", [node("Reshape", [x, split], f"{name}.r")], f"{name}.t", perm=perm)

        q = heads_of(linear(h, f"{p}.attn.q", hidden, hidden), f"{p}.q", [0, 2, 1, 3])
        k = heads_of(linear(h, f"{p}.attn.k", hidden, hidden), f"{p}.k", [0, 2, 3, 1])
        v = heads_of(linear(h, f"{p}.attn.v", hidden, hidden), f"{p}.v", [0, 2, 1, 3])
        scores = node("Div", [node("MatMul", [q, k], f"{p}.qk"), "sqrt_d"], f"{p}.scores")
        probs = node("Dropout", [node("Softmax", [scores], f"{p}.softmax", axis=-1)], f"{p}.probs")
        context = node("Transpose", [node("MatMul", [probs, v], f"{p}.ctx")], f"{p}.ctx_t", perm=[0, 2, 1, 3])
        context = node("Reshape", [context, merged], f"{p}.ctx_r")
        attn = node("Dropout", [linear(context, f"{p}.attn.out", hidden, hidden)], f"{p}.attn_drop")
        h = layer_norm(node("Add", [attn, h], f"{p}.res1"), f"{p}.norm1")
        up = linear(h, f"{p}.ffn.up", hidden, ffn)
        erf = node("Erf", [node("Div", [up, "sqrt2"], f"{p}.gelu.div")], f"{p}.gelu.erf")
        gelu = node("Mul", [node("Mul", [up, "half"], f"{p}.gelu.half"),
                            node("Add", [erf, "one"], f"{p}.gelu.add")], f"{p}.gelu")
        down = node("Dropout", [linear(gelu, f"{p}.ffn.down", ffn, hidden)], f"{p}.ffn_drop")
        h = layer_norm(node("Add", [down, h], f"{p}.res2"), f"{p}.norm2")
    nodes.append(helper.make_node("Identity", [h], ["last_hidden_state"], name="output"))

    graph = helper.make_graph(
        nodes, "encoder",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "sequence"])],
        [helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "sequence", hidden])],
        small + inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="large.py")
    model.ir_version = 8
    path = folder / "model.onnx"
    onnx.save(model, path)
    return path, weights.total


# ---------------------------------------------------------------- measuring


def _measure(cmd: list[str], log: Path) -> dict:
    """Run `cmd`; its wall time, exit code and peak RSS (ru_maxrss of that process alone)."""
    started = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    return {"seconds": round(time.perf_counter() - started, 1), "exit": os.waitstatus_to_exitcode(status),
            "peak_rss_gib": round(usage.ru_maxrss * 1024 / GIB, 2)}


_ORT_OFFLINE = r"""
import sys, onnxruntime as ort
src, dst = sys.argv[1], sys.argv[2]
o = ort.SessionOptions()
o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
o.optimized_model_filepath = dst
o.add_session_config_entry("session.optimized_model_external_initializers_file_name", "model.onnx.data")
o.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
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
        "onnxsim": [py, "-m", "onnxsim", str(model), str(out), "--save-as-external-data", "--no-certify"],
        "ort": [py, "-c", _ORT_OFFLINE, str(model), str(out)],
    }[tool]


def run_model(path: Path, work: Path) -> tuple[np.ndarray, int]:
    result = subprocess.run([sys.executable, "-c", _RUN, str(path), str(work / "out.npy")],
                            capture_output=True, text=True, check=True)
    return np.load(work / "out.npy"), json.loads(result.stdout.strip().splitlines()[-1])["nodes"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path("/tmp/onnxslim-large"))
    parser.add_argument("--hidden", type=int, default=1536)
    parser.add_argument("--layers", type=int, default=24)
    parser.add_argument("--layout", choices=["per-tensor", "single"], default="per-tensor")
    parser.add_argument("--tools", default="onnxslim-nocheck,onnxslim,ort,onnxsim")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the model even if it exists")
    parser.add_argument("--keep", action="store_true", help="keep the optimized models")
    args = parser.parse_args(argv)

    source = args.dir / "source"
    if args.rebuild and source.exists():
        shutil.rmtree(source)
    started = time.perf_counter()
    if not (source / "model.onnx").exists():
        path, total = build_encoder(source, hidden=args.hidden, layers=args.layers, layout=args.layout)
        print(f"built {path}: {total / GIB:.2f} GiB of weights in {time.perf_counter() - started:.0f} s", flush=True)
    path = source / "model.onnx"
    total = sum(f.stat().st_size for f in (source / "weights").iterdir())
    reference, nodes = run_model(path, args.dir)
    rows = [{"tool": "original", "nodes": nodes, "weights_gib": round(total / GIB, 2)}]
    for tool in [t.strip() for t in args.tools.split(",") if t.strip()]:
        out_dir = args.dir / tool
        shutil.rmtree(out_dir, ignore_errors=True)
        out_dir.mkdir(parents=True)
        print(f"running {tool} ...", flush=True)
        row = {"tool": tool, **_measure(tool_commands(tool, path, out_dir / "model.onnx"), args.dir / f"{tool}.log")}
        row["peak_vs_weights"] = round(row["peak_rss_gib"] * GIB / total, 2)
        if row["exit"] == 0 and (out_dir / "model.onnx").exists():
            output, row["nodes"] = run_model(out_dir / "model.onnx", args.dir)
            row["max_abs_diff"] = float(np.max(np.abs(output - reference)))
        else:
            row["error"] = (args.dir / f"{tool}.log").read_text()[-300:].strip().splitlines()[-1:]
        rows.append(row)
        print(json.dumps(row), flush=True)
        if not args.keep:
            shutil.rmtree(out_dir, ignore_errors=True)
    print()
    print(f"{'tool':<18}{'nodes':>7}{'time s':>9}{'peak RSS GiB':>14}{'x weights':>11}{'max |diff|':>12}")
    for row in rows:
        print(f"{row['tool']:<18}{row.get('nodes', '-'):>7}{row.get('seconds', '-'):>9}"
              f"{row.get('peak_rss_gib', '-'):>14}{row.get('peak_vs_weights', '-'):>11}"
              f"{row.get('max_abs_diff', '-') if 'error' not in row else 'failed':>12}")
    (args.dir / "results.json").write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
