"""Shared test helpers: build tiny models with onnx.helper, run them on ORT, run the CLI.

Other test modules import these (`from tests.helpers import ...` or `from helpers import ...`);
keep them small and stable.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

REPO = Path(__file__).resolve().parent.parent
FLOAT = TensorProto.FLOAT
INT64 = TensorProto.INT64


def vi(
    name: str, dtype: int = FLOAT, shape: Sequence[int | str | None] | None = ()
) -> onnx.ValueInfoProto:
    """A tensor value info; dims are ints, symbolic names or None; `shape=None`: unknown rank."""
    return helper.make_tensor_value_info(name, dtype, shape)


def const(name: str, array) -> onnx.TensorProto:
    """An initializer (or a Constant node's value) from an array-like."""
    return numpy_helper.from_array(np.asarray(array), name)


def make_model(
    nodes: Sequence[onnx.NodeProto],
    inputs: Sequence[onnx.ValueInfoProto],
    outputs: Sequence[onnx.ValueInfoProto],
    initializers: Sequence[onnx.TensorProto] = (),
    *,
    opset: int = 17,
    ir_version: int | None = None,
    opsets: Mapping[str, int] | None = None,
    functions: Sequence[onnx.FunctionProto] = (),
    value_info: Sequence[onnx.ValueInfoProto] = (),
    check: bool = True,
) -> onnx.ModelProto:
    """A one-graph model; `opsets` adds extra domains; `check=False` skips the onnx
    checker (hostile models)."""
    graph = helper.make_graph(
        list(nodes),
        "g",
        list(inputs),
        list(outputs),
        list(initializers),
        value_info=list(value_info),
    )
    imports = [helper.make_opsetid("", opset)] + [
        helper.make_opsetid(d, v) for d, v in (opsets or {}).items()
    ]
    model = helper.make_model(graph, opset_imports=imports, functions=list(functions))
    model.ir_version = (
        ir_version if ir_version is not None else min(onnx.IR_VERSION, 8 if opset <= 17 else 10)
    )
    if check:
        onnx.checker.check_model(model)
    return model


def gelu_then_conv(channels: int = 4) -> onnx.ModelProto:
    """x * (1 + erf(x / sqrt(2))) * 0.5 -> 1x1 Conv, opset 14 (no Gelu op yet): ORT fuses the
    written-out Gelu into one com.microsoft.Gelu kernel."""
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Div", ["x", "root2"], ["scaled"]),
        helper.make_node("Erf", ["scaled"], ["erf"]),
        helper.make_node("Add", ["erf", "one"], ["cdf"]),
        helper.make_node("Mul", ["x", "cdf"], ["product"]),
        helper.make_node("Mul", ["product", "half"], ["gelu"]),
        helper.make_node("Conv", ["gelu", "W", "B"], ["y"]),
    ]
    inits = [
        const("root2", np.array(np.sqrt(2.0), np.float32)),
        const("one", np.array(1.0, np.float32)),
        const("half", np.array(0.5, np.float32)),
        const("W", rng.standard_normal((6, channels, 1, 1)).astype(np.float32)),
        const("B", rng.standard_normal(6).astype(np.float32)),
    ]
    return make_model(
        nodes,
        [vi("x", FLOAT, [1, channels, 6, 6])],
        [vi("y", FLOAT, [1, 6, 6, 6])],
        inits,
        opset=14,
    )


def shape_pieces(
    source: str, picks: Sequence, out: str = "shape"
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """Nodes and initializers computing `out` = Concat(pieces) as torch writes `x.size()`-based
    shapes: an int pick is a constant, ("dim", i) is Unsqueeze(Gather(Shape(source), i)),
    ("prod", i, j) the product of dims i and j (`h * w`)."""
    nodes, inits, names = [helper.make_node("Shape", [source], [f"{out}_of"])], [], []
    for k, pick in enumerate(picks):
        if isinstance(pick, int):
            inits.append(const(f"{out}_k{k}", np.array([pick], np.int64)))
            names.append(f"{out}_k{k}")
            continue
        dims = []
        for m, axis in enumerate(pick[1:]):
            inits.append(const(f"{out}_i{k}_{m}", np.array(axis, np.int64)))
            gather = [f"{out}_of", f"{out}_i{k}_{m}"]
            nodes.append(helper.make_node("Gather", gather, [f"{out}_g{k}_{m}"], axis=0))
            dims.append(f"{out}_g{k}_{m}")
        if len(dims) == 2:
            nodes.append(helper.make_node("Mul", dims, [f"{out}_p{k}"]))
            dims = [f"{out}_p{k}"]
        nodes.append(helper.make_node("Unsqueeze", [dims[0], f"{out}_zero"], [f"{out}_u{k}"]))
        names.append(f"{out}_u{k}")
    inits.append(const(f"{out}_zero", np.array([0], np.int64)))
    return nodes + [helper.make_node("Concat", names, [out], axis=0)], inits


def save_model(model: onnx.ModelProto | ir.Model, path: str | os.PathLike) -> Path:
    path = Path(path)
    if isinstance(model, ir.Model):
        ir.save(model, path)
    else:
        onnx.save(model, path)
    return path


def to_proto(model: onnx.ModelProto | ir.Model | str | os.PathLike) -> onnx.ModelProto:
    if isinstance(model, onnx.ModelProto):
        return model
    if isinstance(model, ir.Model):
        return ir.to_proto(model)
    return onnx.load(os.fspath(model))


def op_counts(
    model: onnx.ModelProto | ir.Model | str | os.PathLike, *, subgraphs: bool = True
) -> Counter:
    """Op types counted over the main graph (and, by default, every subgraph and function)."""
    proto = to_proto(model)
    counts: Counter = Counter()

    def walk(graph_nodes):
        for node in graph_nodes:
            counts[node.op_type] += 1
            if subgraphs:
                for attr in node.attribute:
                    if attr.type == onnx.AttributeProto.GRAPH:
                        walk(attr.g.node)
                    for g in attr.graphs:
                        walk(g.node)

    walk(proto.graph.node)
    if subgraphs:
        for function in proto.functions:
            walk(function.node)
    return counts


def node_count(model, *, subgraphs: bool = True) -> int:
    return sum(op_counts(model, subgraphs=subgraphs).values())


def session(
    model: onnx.ModelProto | ir.Model | str | os.PathLike, optimize: bool = False
) -> ort.InferenceSession:
    """A single-thread ORT CPU session (ORT's own graph optimizations off unless `optimize`)."""
    options = ort.SessionOptions()
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    options.log_severity_level = 3
    if isinstance(model, (str, os.PathLike)):
        source = os.fspath(model)
    else:
        source = to_proto(model).SerializeToString()
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


_NP = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(bool)": np.bool_,
    "tensor(uint8)": np.uint8,
    "tensor(int8)": np.int8,
}


def random_feeds(
    model, seed: int = 0, dim: int = 3, shapes: Mapping[str, Sequence[int]] | None = None
) -> dict:
    """Random inputs for every graph input; symbolic/unknown dims become `dim`."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for arg in session(model).get_inputs():
        shape = tuple(
            (shapes or {}).get(arg.name)
            or [d if isinstance(d, int) and d >= 0 else dim for d in arg.shape]
        )
        dtype = _NP[arg.type]
        if np.issubdtype(dtype, np.floating):
            feeds[arg.name] = rng.standard_normal(shape).astype(dtype)
        elif dtype == np.bool_:
            feeds[arg.name] = np.asarray(rng.random(shape) < 0.5)
        else:
            feeds[arg.name] = rng.integers(0, 4, shape).astype(dtype)
    return feeds


def run(model, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    return session(model).run(None, dict(feeds))


def assert_same_outputs(
    original,
    optimized,
    feeds: Mapping[str, np.ndarray] | None = None,
    rtol: float = 1e-4,
    atol: float = 1e-5,
    seeds: Iterable[int] = (0,),
) -> None:
    """Both models give the same outputs (allclose, same dtype and shape) on the same inputs."""
    samples = [feeds] if feeds is not None else [random_feeds(original, seed) for seed in seeds]
    names = [o.name for o in session(original).get_outputs()]
    assert names == [o.name for o in session(optimized).get_outputs()], "output names changed"
    for sample in samples:
        for name, want, got in zip(names, run(original, sample), run(optimized, sample)):
            assert got.dtype == want.dtype, f"{name}: dtype {got.dtype} != {want.dtype}"
            assert got.shape == want.shape, f"{name}: shape {got.shape} != {want.shape}"
            np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=name)


def optimized_proto(model, **options) -> onnx.ModelProto:
    """`onnxslim.optimize` on a ModelProto (or path), returned as a checked ModelProto."""
    import onnxslim

    result = ir.to_proto(onnxslim.optimize(model, **options))
    onnx.checker.check_model(result)
    return result


def interface(model) -> list[tuple]:
    """Graph inputs and outputs as (kind, name, elem_type, dims), for exact before/after checks."""
    proto = to_proto(model)
    weights = {t.name for t in proto.graph.initializer}

    def describe(kind, value):
        t = value.type.tensor_type
        dims = (
            tuple(
                d.dim_param
                if d.HasField("dim_param")
                else (d.dim_value if d.HasField("dim_value") else None)
                for d in t.shape.dim
            )
            if t.HasField("shape")
            else None
        )
        return (kind, value.name, t.elem_type, dims)

    return [describe("in", v) for v in proto.graph.input if v.name not in weights] + [
        describe("out", v) for v in proto.graph.output
    ]


def run_cli(
    *args,
    cwd: str | os.PathLike | None = None,
    timeout: float = 300,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess:
    """Run `python -m onnxslim ARGS` in a subprocess; returns the completed process (text mode)."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200", **(env or {})}
    full_env.pop("ONNXSLIM_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "onnxslim", *map(str, args)],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def assert_one_line_error(
    proc: subprocess.CompletedProcess, code: int = 2, contains: str = ""
) -> str:
    """The CLI failed with `code`: exactly one `error: ...` line on stderr and no traceback."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == code, f"exit {proc.returncode} != {code}; stderr: {proc.stderr!r}"
    assert len(lines) == 1, f"expected one stderr line, got: {proc.stderr!r}"
    assert lines[0].startswith("error: "), lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout
    assert contains in lines[0], f"{contains!r} not in {lines[0]!r}"
    return lines[0]


def external_data_model(
    folder: Path, location: str = "w.bin", *, write: bool = True, short: bool = False
) -> onnx.ModelProto:
    """y = x + w, w stored at `location` (relative to `folder`); missing or truncated on request."""
    from onnx.external_data_helper import set_external_data

    model = make_model(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        [vi("x", FLOAT, [64])],
        [vi("y", FLOAT, [64])],
        [const("w", np.ones(64, np.float32))],
    )
    tensor = model.graph.initializer[0]
    raw = tensor.raw_data
    set_external_data(tensor, location)
    tensor.ClearField("raw_data")
    tensor.data_location = TensorProto.EXTERNAL
    if write:
        (folder / location).write_bytes(raw[:100] if short else raw)
    return model


def tree_ensemble(trees: int, features: int = 4) -> onnx.ModelProto:
    """y = a TreeEnsembleRegressor of `trees` stumps (3 nodes each: 11 attribute values per tree)
    of Identity(x), x float [N, features]: a model of attribute lists, no weights."""
    rng = np.random.default_rng(0)
    ids = np.arange(trees)
    stumps = dict(
        nodes_treeids=np.repeat(ids, 3).tolist(),
        nodes_nodeids=[0, 1, 2] * trees,
        nodes_featureids=np.repeat(rng.integers(0, features, trees), 3).tolist(),
        nodes_values=np.repeat(rng.normal(size=trees), 3).tolist(),
        nodes_modes=["BRANCH_LEQ", "LEAF", "LEAF"] * trees,
        nodes_truenodeids=[1, 0, 0] * trees,
        nodes_falsenodeids=[2, 0, 0] * trees,
        target_treeids=np.repeat(ids, 2).tolist(),
        target_nodeids=[1, 2] * trees,
        target_ids=[0, 0] * trees,
        target_weights=rng.normal(size=2 * trees).tolist(),
    )
    return make_model(
        [
            helper.make_node("Identity", ["x"], ["xi"]),
            helper.make_node(
                "TreeEnsembleRegressor", ["xi"], ["y"], domain="ai.onnx.ml", n_targets=1, **stumps
            ),
        ],
        [vi("x", FLOAT, ["N", features])],
        [vi("y", FLOAT, ["N", 1])],
        opsets={"ai.onnx.ml": 3},
    )
