"""How the command line reads: reports on stdout in a plain layout for logs, tolerances of the
check, byte sizes, the help text."""

from __future__ import annotations

import json
import re
import subprocess

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from helpers import (
    FLOAT,
    REPO,
    assert_one_line_error,
    assert_same_outputs,
    const,
    make_model,
    op_counts,
    run,
    run_cli,
    save_model,
    vi,
)
from onnx import helper, numpy_helper

from onnxslim.cli.params import parse_size
from onnxslim.passes.registry import REGISTRY

N = helper.make_node
DEMO = REPO / "models" / "demo.onnx"


def conv_bn_model() -> onnx.ModelProto:
    """Conv + BatchNormalization: the fused Conv rounds differently (max abs ~1e-5)."""
    rng = np.random.default_rng(0)
    return make_model(
        [
            N("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
            N("BatchNormalization", ["c", "s", "b", "mu", "var"], ["y"]),
        ],
        [vi("x", FLOAT, [1, 3, 16, 16])],
        [vi("y", FLOAT, [1, 8, 16, 16])],
        [
            const("w", rng.standard_normal((8, 3, 3, 3)).astype(np.float32)),
            const("s", rng.uniform(0.5, 2, 8).astype(np.float32)),
            const("b", rng.standard_normal(8).astype(np.float32)),
            const("mu", rng.standard_normal(8).astype(np.float32)),
            const("var", rng.uniform(0.1, 3, 8).astype(np.float32)),
        ],
    )


@pytest.mark.parametrize("columns", ["200", ""])
def test_report_on_stdout_reads_well_in_a_log(tmp_path, columns):
    """`onnxslim m.onnx -o o.onnx > log.txt`: the whole table on stdout, ASCII, no trailing spaces,
    no blank lines, the footer on one line (wide console, not 80 columns)."""
    proc = run_cli(DEMO, "-o", tmp_path / "o.onnx", env={"COLUMNS": columns})
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "onnxslim demo.onnx"
    assert all(line.strip() and line == line.rstrip() for line in lines), proc.stdout
    assert proc.stdout.isascii(), proc.stdout
    footer = lines[-1]
    assert footer.startswith(f"wrote {tmp_path / 'o.onnx'}") and "outputs match" in footer
    assert "input float32[1,3,32,32]" in footer
    assert any(line.split()[:2] == ["nodes", "25"] for line in lines)


def test_check_tolerances(tmp_path):
    """An exact check: the fused Conv rounds otherwise, so the result is made again without the
    rewrites, which matches to the bit, and says so."""
    onnx.save(conv_bn_model(), tmp_path / "m.onnx")
    exact = run_cli(
        tmp_path / "m.onnx", "-o", tmp_path / "o.onnx", "--check-rtol", "0", "--check-atol", "0"
    )
    assert exact.returncode == 0, exact.stderr
    said = exact.stdout + exact.stderr
    assert "made again without fold-constants, fuse-batchnorm" in said
    assert "max abs difference" in said and "(rtol 0, atol 0)" in said
    assert "BatchNormalization" in op_counts(tmp_path / "o.onnx")
    loose = run_cli(tmp_path / "m.onnx", "-o", tmp_path / "o2.onnx", "--check-atol", "1e-3", "-q")
    assert loose.returncode == 0, loose.stderr
    assert "BatchNormalization" not in op_counts(tmp_path / "o2.onnx")


def test_check_tolerances_from_python():
    import onnxslim

    fused = onnxslim.optimize(conv_bn_model())  # default tolerances: fusion rounding is fine
    assert "BatchNormalization" not in [n.op_type for n in fused.graph]
    exact = onnxslim.optimize(conv_bn_model(), check_rtol=0, check_atol=0)
    assert "BatchNormalization" in [n.op_type for n in exact.graph]


@pytest.mark.parametrize(
    "text, size",
    [
        ("1048576", 1048576),
        ("512K", 512 * 1024),
        ("512KiB", 512 * 1024),
        ("512kb", 512_000),
        ("1G", 1024**3),
        ("1.5GB", 1_500_000_000),
        ("2 MiB", 2 * 1024**2),
        ("1e6", 1_000_000),
    ],
)
def test_sizes(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["-5", "3 parsecs", "", "1.2.3K", "K"])
def test_bad_sizes(text):
    with pytest.raises(ValueError):
        parse_size(text)


def test_size_threshold_takes_short_units(tmp_path):
    proc = run_cli(DEMO, "-o", tmp_path / "o.onnx", "--size-threshold", "1.5GB", "-q")
    assert proc.returncode == 0, proc.stderr
    proc = run_cli(DEMO, "-o", tmp_path / "o.onnx", "--size-threshold", "512K", "-q")
    assert proc.returncode == 0, proc.stderr


def test_optimize_help_lists_one_pass_per_line():
    proc = run_cli("optimize", "--help")
    assert proc.returncode == 0
    lines = proc.stdout.splitlines()
    start = lines.index("  Passes (for --skip):")
    epilog = lines[start + 1 :]
    names = [line.split()[0] for line in epilog if line.startswith("  ") and line[2] != " "]
    assert names == [spec.name for spec in REGISTRY]
    assert max(map(len, epilog)) <= 100
    for option in ("--check-rtol", "--check-atol", "--size-threshold"):
        assert option in proc.stdout


# -- random and default inputs: shapes stated, guessed dims warned about, --shape everywhere --


def conv_model(shape) -> onnx.ModelProto:
    """x[shape] -> 3x3 Conv (4 channels, same padding) -> y."""
    weight = np.random.default_rng(0).standard_normal((4, 3, 3, 3)).astype(np.float32)
    out = [shape[0], 4, *shape[2:]]
    return make_model(
        [N("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])],
        [vi("x", FLOAT, shape)],
        [vi("y", FLOAT, out)],
        [const("w", weight)],
    )


@pytest.fixture
def dynamic(tmp_path):
    path = tmp_path / "dyn.onnx"
    onnx.save(conv_model(["N", 3, "H", "W"]), path)
    return path


BENCH = ("--runs", "2", "--warmup", "0", "--no-memory")


def test_bench_states_input_shapes_and_warns_about_picked_dims(tmp_path, dynamic):
    json_path, html_path = tmp_path / "b.json", tmp_path / "b.html"
    proc = run_cli("bench", dynamic, dynamic, *BENCH, "--json", json_path, "--html", html_path)
    assert proc.returncode == 0, proc.stderr
    assert "inputs: 8 random sample(s) of x float32[1,3,224,224]" in proc.stdout
    warning = [line for line in proc.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warning) == 1 and "x float32[N,3,H,W] at [1,3,224,224]" in warning[0]
    assert "--shape x:1,3,224,224" in warning[0]
    data = json.loads(json_path.read_text())
    assert data["settings"]["inputs"] == {"x": {"dtype": "float32", "shapes": [[1, 3, 224, 224]]}}
    assert len(data["warnings"]) == 1 and "--shape" in data["warnings"][0]
    page = html_path.read_text()
    assert "x float32[1,3,224,224]" in page and "--shape x:" in page
    # drift: a relative error column; no top-1 for a 4-D feature map
    header = next(
        line for line in proc.stdout.splitlines() if line.split()[:2] == ["Model", "Output"]
    )
    assert " Rel err " in header and header.split()[-3:] == ["dB", "Top-1", "Note"]
    lines = proc.stdout.splitlines()
    row = lines[lines.index(header) + 2].split()  # under the header and its rule
    assert row[1:5] == ["y", "0", "0", "0"] and row[-1] == "-"
    assert "Top-1: the share of rows" not in proc.stdout  # said only where a row has a top-1
    assert "Rel err" in page
    drift = data["models"][1]["drift"]["y"]
    assert drift["rel_error"] == 0.0 and drift["top1_agreement"] is None

    given = run_cli("bench", dynamic, dynamic, *BENCH, "--shape", "x:2,3,8,16", "--json", json_path)
    assert given.returncode == 0 and given.stderr == "", given.stderr
    assert "of x float32[2,3,8,16]" in given.stdout
    assert json.loads(json_path.read_text())["warnings"] == []


def test_optimize_bench_states_input_shapes(tmp_path):
    proc = run_cli(DEMO, "-o", tmp_path / "o.onnx", "--bench")
    assert proc.returncode == 0, proc.stderr
    assert "sample(s) of input float32[1,3,32,32]" in proc.stdout
    # the demo's batch dim is dynamic: 1 was onnxslim's pick
    assert proc.stderr.startswith("warning: dynamic input dims picked by onnxslim (benchmarked")
    assert "--shape input:1,3,32,32" in proc.stderr


def test_bench_dynamic_against_static_suggests_shape(tmp_path, dynamic):
    static = tmp_path / "static.onnx"
    onnx.save(conv_model([1, 3, 64, 64]), static)
    proc = run_cli("bench", dynamic, static, *BENCH)
    line = assert_one_line_error(proc, 2, "static.onnx")
    assert "pass --shape x:1,3,64,64" in line
    proc = run_cli("bench", dynamic, static, *BENCH, "--shape", "x:1,3,64,64", "-q")
    assert proc.returncode == 0, proc.stderr


def test_int8_random_calibration_takes_shape(tmp_path, dynamic):
    report = tmp_path / "r.json"
    args = (dynamic, "-o", tmp_path / "q.onnx", "--int8", "--calibration", "random:6")
    proc = run_cli(*args, "--shape", "x:1,3,12,20", "--report", report)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(report.read_text())["int8"]["drift"]["y"]["shape"] == [1, 4, 12, 20]
    assert "calibrated at x float32[1,3,12,20]" in proc.stderr
    assert "picked by onnxslim" not in proc.stderr
    guessed = run_cli(*args, "--report", report)
    assert guessed.returncode == 0, guessed.stderr
    assert "--shape x:1,3,224,224" in guessed.stderr
    assert json.loads(report.read_text())["int8"]["drift"]["y"]["shape"] == [1, 4, 224, 224]


def test_int8_says_calibration_size_matters_only_where_int8_computes(tmp_path, dynamic):
    """The picked dims are always named; "INT8 calibrated at one size may drift further" only
    where anything computes in INT8 (a Relu has nothing to quantize)."""
    relu = tmp_path / "relu.onnx"
    onnx.save(
        make_model(
            [helper.make_node("Relu", ["x"], ["y"])],
            [vi("x", FLOAT, ["N", 8])],
            [vi("y", FLOAT, ["N", 8])],
        ),
        relu,
    )
    int8 = ("--int8", "--calibration", "random:6")
    nothing = run_cli(relu, "-o", tmp_path / "r.onnx", *int8)
    assert nothing.returncode == 0, nothing.stderr
    assert "picked by onnxslim (calibrated x" in nothing.stderr
    assert "may drift further" not in nothing.stderr
    conv = run_cli(dynamic, "-o", tmp_path / "c.onnx", *int8, "--target", "vnni")
    assert conv.returncode == 0, conv.stderr
    assert "INT8 calibrated at one size may drift further at others" in conv.stderr
    assert "drift measured at one size" not in conv.stdout + conv.stderr  # (said once, above)
    assert "drift on random test samples" in conv.stdout
    assert (conv.stdout + conv.stderr).count("calibrating on random data") == 1


def test_images_on_a_dynamic_model_need_a_size(tmp_path, dynamic):
    from PIL import Image

    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(4):
        Image.new("RGB", (40 + i, 30), (i * 40, 100, 200)).save(folder / f"{i}.png")
    args = (dynamic, "-o", tmp_path / "q.onnx", "--int8", "--calibration", folder)
    proc = run_cli(*args)  # no pixel mapping is assumed
    line = assert_one_line_error(proc, 2, "holds images: say how their pixels become input 'x'")
    assert "--preprocess" in line and not (tmp_path / "q.onnx").exists()
    proc = run_cli(*args, "--preprocess", "mean=0.5,std=0.5")  # no size
    line = assert_one_line_error(proc, 2, "dynamic height and width")
    assert "--preprocess" in line and "resize=256,crop=224" in line
    proc = run_cli(*args, "--preprocess", "resize=24,crop=16", "-q")
    assert proc.returncode == 0, proc.stderr
    # the lossless check takes images as RGB pixels in [0, 1], or as --preprocess says
    fixed = tmp_path / "fixed.onnx"
    onnx.save(conv_model([1, 3, 16, 16]), fixed)
    check = (fixed, "-o", tmp_path / "s.onnx", "--check-inputs", folder)
    proc = run_cli(*check)
    assert proc.returncode == 0 and "outputs match" in proc.stdout, proc.stderr
    proc = run_cli(*check, "--preprocess", "scale=1,mean=127,std=128")
    assert proc.returncode == 0 and "outputs match" in proc.stdout, proc.stderr
    bad = tmp_path / "bad.onnx"  # --preprocess applied: NHWC pictures are no 3x16x16 input
    proc = run_cli(fixed, "-o", bad, "--check-inputs", folder, "--preprocess", "layout=NHWC")
    assert_one_line_error(proc, 2, "0.png: input 'x' has shape [1,3,16,3], the model expects")
    assert not bad.exists()
    proc = run_cli(*args, "--shape", "x:1,3,16,16")
    assert_one_line_error(proc, 2, "--shape applies to random inputs")


# -- --input-shapes, --inputs/--outputs --


def shape_math_model() -> onnx.ModelProto:
    """Conv, Relu, then a Reshape to [N, -1] computed from Shape(r), then ReduceSum: dynamic."""
    rng = np.random.default_rng(0)
    return make_model(
        [
            N("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
            N("Relu", ["c"], ["r"]),
            N("Shape", ["r"], ["s"]),
            N("Gather", ["s", "zero"], ["n"], axis=0),
            N("Unsqueeze", ["n", "axes"], ["n1"]),
            N("Concat", ["n1", "minus1"], ["newshape"], axis=0),
            N("Reshape", ["r", "newshape"], ["flat"]),
            N("ReduceSum", ["flat", "axes1"], ["y"], keepdims=0),
        ],
        [vi("x", FLOAT, ["N", 3, "H", "W"])],
        [vi("y", FLOAT, ["N"])],
        [
            const("w", rng.standard_normal((4, 3, 3, 3)).astype(np.float32)),
            const("zero", np.array(0, np.int64)),
            const("axes", np.array([0], np.int64)),
            const("minus1", np.array([-1], np.int64)),
            const("axes1", np.array([1], np.int64)),
        ],
    )


def dims_of(value) -> list:
    return [
        d.dim_value if d.HasField("dim_value") else d.dim_param
        for d in value.type.tensor_type.shape.dim
    ]


@pytest.mark.parametrize("option", ["--input-shapes", "--overwrite-input-shape"])
def test_input_shapes_fix_dims_and_fold(tmp_path, option):
    onnx.save(shape_math_model(), tmp_path / "m.onnx")
    proc = run_cli(tmp_path / "m.onnx", "-o", tmp_path / "o.onnx", option, "x:2,3,8,8")
    assert proc.returncode == 0, proc.stderr
    assert "synthesized inputs (x float32[2,3,8,8]" in proc.stdout  # the check ran at those dims
    out = onnx.load(tmp_path / "o.onnx")
    assert dims_of(out.graph.input[0]) == [2, 3, 8, 8] and dims_of(out.graph.output[0]) == [2]
    assert [n.op_type for n in out.graph.node] == ["Conv", "Relu", "Reshape", "ReduceSum"]
    feed = {"x": np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32)}
    np.testing.assert_allclose(
        run(out, feed)[0], run(shape_math_model(), feed)[0], rtol=1e-5, atol=1e-5
    )


def test_input_shapes_from_python():
    import onnxslim

    model = onnxslim.optimize(shape_math_model(), input_shapes={"x": (1, 3, 4, 4)})
    assert model.graph.inputs[0].shape.dims == (1, 3, 4, 4)
    assert [n.op_type for n in model.graph] == ["Conv", "Relu", "Reshape", "ReduceSum"]
    same = onnxslim.optimize(shape_math_model(), input_shapes=["x:1,3,4,4"])
    assert same.graph.inputs[0].shape.dims == (1, 3, 4, 4)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--input-shapes", "z:1,2"], "--input-shapes z: no such graph input (inputs: x)"),
        (["--input-shapes", "x:1,3,8"], "has rank 4, not 3"),
        (["--input-shapes", "x:1,4,8,8"], "dim 1 of input 'x' is fixed at 3"),
        (["--input-shapes", "x:1,3,8,8", "--shape", "x:1,3,9,9"], "disagree"),
        (["--outputs", "nowhere"], "--outputs nowhere: no value of that name in the main graph"),
        (["--inputs", "r", "--outputs", "y,c"], "depend on graph input 'x'"),
        (["--inputs", "r", "--outputs", "r"], "both as an input and as an output"),
        (["--inputs", "w"], "is a constant"),
        (["--outputs", "c", "--bench"], "--bench compares OUTPUT with INPUT"),
    ],
)
def test_interface_errors(tmp_path, args, message):
    onnx.save(shape_math_model(), tmp_path / "m.onnx")
    proc = run_cli(tmp_path / "m.onnx", "-o", tmp_path / "o.onnx", *args)
    assert_one_line_error(proc, 2, message)
    assert not (tmp_path / "o.onnx").exists()


def test_cut_to_a_subgraph_like_extract_model(tmp_path):
    onnx.save(shape_math_model(), tmp_path / "m.onnx")
    proc = run_cli(
        tmp_path / "m.onnx", "-o", tmp_path / "o.onnx", "--inputs", "r", "--outputs", "flat"
    )
    assert proc.returncode == 0, proc.stderr
    assert "note: cut to the subgraph from r to flat: 5 of 8 nodes" in proc.stdout
    assert "outputs match the original" in proc.stdout
    out = onnx.load(tmp_path / "o.onnx")
    assert [v.name for v in out.graph.input] == ["r"] and [v.name for v in out.graph.output] == [
        "flat"
    ]
    assert dims_of(out.graph.input[0])[:2] == ["N", 4]
    onnx.utils.extract_model(str(tmp_path / "m.onnx"), str(tmp_path / "ref.onnx"), ["r"], ["flat"])
    feed = {"r": np.random.default_rng(2).standard_normal((2, 4, 5, 5)).astype(np.float32)}
    np.testing.assert_array_equal(run(out, feed)[0], run(tmp_path / "ref.onnx", feed)[0])
    # outputs only: the inputs the outputs need stay, unused weights go; repeated or comma-separated
    proc = run_cli(
        tmp_path / "m.onnx", "-o", tmp_path / "o2.onnx", "--outputs", "c", "--outputs", "s", "-q"
    )
    assert proc.returncode == 0, proc.stderr
    out = onnx.load(tmp_path / "o2.onnx")
    assert [v.name for v in out.graph.output] == ["c", "s"]
    assert [n.op_type for n in out.graph.node] == ["Conv", "Relu", "Shape"]
    assert [t.name for t in out.graph.initializer] == ["w"]


def test_cut_and_fixed_dims_from_python():
    import onnxslim

    model = onnxslim.optimize(
        shape_math_model(), inputs="c", outputs=["y"], input_shapes={"c": (1, 4, 5, 5)}
    )
    assert [v.name for v in model.graph.inputs] == ["c"]
    assert [n.op_type for n in model.graph] == ["Relu", "Reshape", "ReduceSum"]


# -- inspect, -v --


def test_inspect(tmp_path):
    proc = run_cli("inspect", DEMO)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    text = proc.stdout
    assert text.startswith(f"{DEMO}: 97.20 KiB\n")
    assert "IR version 8; opsets ai.onnx 17; producer onnxslim-demo" in text
    assert "25 nodes; 24,310 parameters" in text
    lines = [line.split() for line in text.splitlines()]
    assert ["input", "input", "float32[batch,3,32,32]"] in lines
    assert ["output", "logits", "float32[batch,10]"] in lines
    assert ["Conv", "3", "12.0%"] in lines
    data = json.loads(run_cli("inspect", DEMO, "--json").stdout)
    assert data["inputs"] == [{"name": "input", "dtype": "float32", "shape": ["batch", 3, 32, 32]}]
    assert data["opsets"] == {"": 17} and data["ir_version"] == 8
    assert data["stats"]["nodes"] == 25 and data["stats"]["op_counts"]["Conv"] == 3
    assert data["stats"]["file_bytes"] == DEMO.stat().st_size and data["external_data"] == {}
    assert onnx.load(DEMO).graph.node[0].op_type  # untouched


def test_inspect_external_data_and_errors(tmp_path):
    from helpers import external_data_model

    onnx.save(external_data_model(tmp_path), tmp_path / "m.onnx")
    data = json.loads(run_cli("inspect", tmp_path / "m.onnx", "--json").stdout)
    assert data["external_data"] == {"w.bin": 256}
    assert data["stats"]["file_bytes"] == (tmp_path / "m.onnx").stat().st_size + 256
    text = run_cli("inspect", tmp_path / "m.onnx").stdout
    assert "including 1 external data file(s) (256 B): w.bin" in text
    assert_one_line_error(run_cli("inspect", tmp_path / "none.onnx"), 2, "no such file")


def test_inspect_describes_a_model_optimize_refuses(tmp_path):
    """tf2onnx's StringJoin in the ONNX domain: inspect shows the model and why it is refused
    (it refused it, exit 2, where describing it is all it does); optimize refuses it."""
    model = make_model(
        [N("Relu", ["x"], ["r"]), N("StringJoin", ["r"], ["y"])],
        [vi("x", FLOAT, [2])],
        [vi("y", FLOAT, [2])],
        check=False,
    )
    path = save_model(model, tmp_path / "m.onnx")
    proc = run_cli("inspect", path)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    why = f"{path}: an unnamed StringJoin node: 'StringJoin' is not an ONNX operator"
    assert f"refused by onnxslim: {why}" in proc.stdout
    assert ["StringJoin", "1", "50.0%"] in [line.split() for line in proc.stdout.splitlines()]
    assert json.loads(run_cli("inspect", path, "--json").stdout)["invalid"].startswith(why)
    assert json.loads(run_cli("inspect", DEMO, "--json").stdout)["invalid"] is None
    assert_one_line_error(run_cli(path, "-o", tmp_path / "o.onnx"), 2, why)


def test_verbose_lists_the_passes_per_round(tmp_path):
    proc = run_cli(DEMO, "-v", "--report", tmp_path / "r.json")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    start = lines.index("passes that changed the graph (node counts)")
    assert lines[start + 1].split() == ["Round", "Pass", "Before", "After", "Change"]
    first = lines[start + 3].split()
    assert first[:4] == ["1", "fold-constants", "25", "21"]
    history = json.loads((tmp_path / "r.json").read_text())["history"]
    assert history[0] == {
        "round": 1,
        "pass": "fold-constants",
        "nodes_before": 25,
        "nodes_after": 21,
    }
    assert history[-1]["nodes_after"] == 9
    assert {h["pass"] for h in history} <= set(
        json.loads((tmp_path / "r.json").read_text())["passes_applied"]
    )
    assert "passes that changed" not in run_cli(DEMO).stdout


# -- Python API --


def test_reports_render_to_text_without_a_console(tmp_path):
    import onnxslim
    from onnxslim.data import input_specs, random_inputs

    onnx.save(conv_model([1, 3, 8, 8]), tmp_path / "m.onnx")
    report = onnxslim.benchmark(
        {"fp32": tmp_path / "m.onnx", "copy": tmp_path / "m.onnx"},
        runs=2,
        warmup=0,
        measure_memory=False,
        progress=False,
    )
    assert [m.name for m in report.models] == ["fp32", "copy"]  # labelled by dict key
    assert report.to_dict()["reference"] == "fp32"
    text = report.render()
    assert "Benchmark (reference: first model)" in text and "\x1b" not in text
    assert any(line.split()[:1] == ["copy"] for line in text.splitlines())
    specs = input_specs(conv_model([1, 3, 8, 8]))
    samples = [random_inputs(specs, seed=i) for i in range(6)]
    quantized = onnxslim.quantize(tmp_path / "m.onnx", samples, progress=False)
    text = quantized.report.render()
    assert "INT8 quantization" in text and "drift on test samples" in text
    assert "\x1b" not in text and all(line == line.rstrip() for line in text.splitlines())


def test_slim_takes_onnxslims_keywords(tmp_path):
    import onnxslim
    from onnxslim.errors import OnnxSlimError

    proto = onnxslim.slim(
        shape_math_model(),
        model_check=True,
        input_shapes=["x:1,3,4,4"],
        skip_fusion_patterns=["fuse-chains"],
        skip_optimizations=["subexpression_elimination"],
        dtype="fp32",
    )
    assert dims_of(proto.graph.input[0]) == [1, 3, 4, 4]
    onnxslim.slim(
        shape_math_model(),
        output_model=tmp_path / "o.onnx",
        save_as_external_data=True,
        outputs=["c"],
        model_check_inputs=["x:2,3,5,5"],
    )
    out = onnx.load(tmp_path / "o.onnx")
    assert [v.name for v in out.graph.output] == ["c"] and (tmp_path / "o.onnx.data").is_file()
    np.save(tmp_path / "x.npy", np.ones((1, 3, 6, 6), np.float32))
    assert onnxslim.slim(shape_math_model(), model_check_inputs=[f"x:{tmp_path / 'x.npy'}"])
    for kwargs, message in [
        ({"no_shape_infer": True}, r"slim\(no_shape_infer=...\) is OnnxSlim's option: onnxslim"),
        ({"verbose": True}, "optimize_with_report"),
        ({"dtype": "int4"}, "dtype='int4'"),
        ({"skip_optimizations": ["weight_tying"]}, "give onnxslim pass names to skip"),
        ({"skip_fusion_patterns": ["FusionBogus"]}, "unknown pass 'FusionBogus'"),
        ({"bogus": 1}, "unknown option"),
        ({"model_check_inputs": ["x:gone.npy"]}, "model_check_inputs 'x:gone.npy': no such file"),
    ]:
        with pytest.raises(OnnxSlimError, match=message) as caught:
            onnxslim.slim(shape_math_model(), **kwargs)
        assert "\n" not in str(caught.value)


def test_slim_skips_onnxslims_fusion_patterns():
    import onnxslim

    assert op_counts(onnxslim.slim(conv_bn_model())) == {"Conv": 1}
    kept = onnxslim.slim(conv_bn_model(), skip_fusion_patterns=["FusionConvBN", "FusionReduce"])
    assert op_counts(kept) == {"Conv": 1, "BatchNormalization": 1}


def test_cli_takes_onnxslims_flags(tmp_path):
    """OnnxSlim's command lines (0.1.x hyphen spellings, older underscore ones, several values
    after one flag) run; its flags with no counterpart say what to use instead."""
    save_model(conv_bn_model(), tmp_path / "m.onnx")
    proc = run_cli(
        *(tmp_path / "m.onnx", tmp_path / "o.onnx", "--model-check", "--verbose"),
        *("--skip-fusion-patterns", "FusionConvBN", "FusionPadConv", "--save-as-external-data"),
        *("--input_shapes", "x:1,3,16,16", "--model_check_inputs", "x:1,3,16,16"),
    )
    assert proc.returncode == 0, proc.stderr
    assert "passes that changed the graph" in proc.stdout  # --verbose is onnxslim's own too
    assert op_counts(tmp_path / "o.onnx") == {"Conv": 1, "BatchNormalization": 1}
    assert (tmp_path / "o.onnx.data").is_file()
    assert_same_outputs(conv_bn_model(), tmp_path / "o.onnx")
    # list values end where the paths start, even paths with no extension
    (tmp_path / "model").write_bytes((tmp_path / "m.onnx").read_bytes())
    proc = run_cli(
        *("--skip-fusion-patterns", "FusionConvBN", tmp_path / "model", tmp_path / "out"),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert op_counts(tmp_path / "out") == {"Conv": 1, "BatchNormalization": 1}
    proc = run_cli(tmp_path / "m.onnx", "--inspect")
    assert proc.returncode == 0 and "BatchNormalization" in proc.stdout, proc.stderr
    assert not (tmp_path / "m.onnx.slim.onnx").exists()
    for args, says in [
        (["--no-shape-infer"], "onnxslim always runs shape inference"),
        (["--no_constant_folding"], "--skip fold-constants"),
        (["--skip-optimizations=weight_tying"], "no onnxslim counterpart"),
        (["--model-check-inputs", "x:x.npy"], "give --check-inputs an .npz"),
        (["--input-shapes"], "--input-shapes needs a value"),
        (["--dtype", "fp16", "--inspect"], "--inspect takes the model alone"),
    ]:
        proc = run_cli(tmp_path / "m.onnx", tmp_path / "p.onnx", *args)
        assert_one_line_error(proc, contains=says)
        assert not (tmp_path / "p.onnx").exists()


# -- --dtype fp16 --


def mixed_model() -> onnx.ModelProto:
    """Conv (float16-safe), a -1e9 mask Add, Softmax, Resize, LayerNormalization, ReduceSum; the
    Conv output is also a graph output."""
    rng = np.random.default_rng(0)
    mask = np.where(np.arange(8) > 5, -1e9, 0).astype(np.float32)
    return make_model(
        [
            N("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
            N("Add", ["c", "mask"], ["masked"]),
            N("Softmax", ["masked"], ["sm"], axis=-1),
            N("Resize", ["sm", "", "scales"], ["up"], mode="linear"),
            N("LayerNormalization", ["up", "g", "b"], ["ln"], axis=-1),
            N("ReduceSum", ["ln", "axes"], ["y"], keepdims=0),
        ],
        [vi("x", FLOAT, [1, 3, 8, 8])],
        [vi("y", FLOAT, [1, 4, 16]), vi("c", FLOAT, [1, 4, 8, 8])],
        [
            const("w", rng.standard_normal((4, 3, 3, 3)).astype(np.float32)),
            const("mask", mask),
            const("scales", np.array([1, 1, 2, 2], np.float32)),
            const("g", np.ones(16, np.float32)),
            const("b", np.zeros(16, np.float32)),
            const("axes", np.array([2], np.int64)),
        ],
    )


def test_fp16_keeps_unsafe_ops_and_io_in_float32(tmp_path):
    onnx.save(mixed_model(), tmp_path / "m.onnx")
    out, report = tmp_path / "o.onnx", tmp_path / "r.json"
    proc = run_cli(tmp_path / "m.onnx", "-o", out, "--dtype", "fp16", "--report", report)
    assert proc.returncode == 0, proc.stderr
    assert "float16 drift vs the original, on 3 synthesized sample(s)" in proc.stdout
    assert "float16 drift within cosine>=0.999,rel_err<=0.01" in proc.stdout.splitlines()[-1]
    assert "warning: the float16 drift was measured on 3 synthesized sample(s)" in proc.stderr
    model = onnx.load(out)
    onnx.checker.check_model(model)
    half = onnx.TensorProto.FLOAT16
    assert [(v.name, v.type.tensor_type.elem_type) for v in model.graph.output] == [
        ("y", onnx.TensorProto.FLOAT),
        ("c", onnx.TensorProto.FLOAT),
    ]
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    weights = {t.name: t.data_type for t in model.graph.initializer}
    assert weights["w"] == half and weights["mask"] == onnx.TensorProto.FLOAT
    assert weights["g"] == onnx.TensorProto.FLOAT  # LayerNormalization stays float32
    data = json.loads(report.read_text())["fp16"]
    assert data["nodes_float16"] == 2 and data["casts"] >= 2  # Conv and Softmax
    assert data["kept"] == {
        "constant beyond float16 range": 1,
        "Resize (unsafe in float16)": 1,
        "LayerNormalization (unsafe in float16)": 1,
        "ReduceSum (unsafe in float16)": 1,
    }
    assert data["drift"]["y"]["rel_error"] < 1e-2 and data["drift"]["c"]["cosine"] > 0.999
    feed = {"x": np.random.default_rng(3).standard_normal((1, 3, 8, 8)).astype(np.float32)}
    got, want = run(out, feed), run(mixed_model(), feed)
    assert all(np.allclose(g, w, rtol=1e-2, atol=1e-2) for g, w in zip(got, want))


def test_fp16_casts_around_an_op_onnx_cannot_type(tmp_path):
    # com.microsoft's FastGelu: onnx's inference gives its output (and what reads it) no dtype;
    # the MatMul after it went float16 reading it uncast, and the model did not load (exit 1)
    rng = np.random.default_rng(0)
    model = make_model(
        [
            N("MatMul", ["x", "w1"], ["a"]),
            N("FastGelu", ["a"], ["b"], domain="com.microsoft"),
            N("MatMul", ["b", "w2"], ["y"]),
        ],
        [vi("x", FLOAT, [4, 16])],
        [vi("y", FLOAT, [4, 8])],
        [
            const("w1", rng.standard_normal((16, 32)).astype(np.float32) / 4),
            const("w2", rng.standard_normal((32, 8)).astype(np.float32) / 4),
        ],
        opsets={"com.microsoft": 1},
    )
    onnx.save(model, tmp_path / "m.onnx")
    proc = run_cli(tmp_path / "m.onnx", "-o", tmp_path / "o.onnx", "--dtype", "fp16", "-q")
    assert proc.returncode == 0, proc.stderr
    out = onnx.load(tmp_path / "o.onnx")
    half = onnx.TensorProto.FLOAT16
    assert {t.name: t.data_type for t in out.graph.initializer} == {"w1": half, "w2": half}
    feed = {"x": rng.standard_normal((4, 16)).astype(np.float32)}
    np.testing.assert_allclose(run(out, feed)[0], run(model, feed)[0], rtol=1e-2, atol=1e-2)


def test_fp16_budget_and_interface(tmp_path):
    onnx.save(mixed_model(), tmp_path / "m.onnx")
    strict = run_cli(
        tmp_path / "m.onnx",
        "-o",
        tmp_path / "o.onnx",
        "--dtype",
        "fp16",
        "--max-drift",
        "max_abs<=0",
    )
    assert_one_line_error(strict, 1, "the float16 model drifts beyond max_abs<=0")
    assert not (tmp_path / "o.onnx").exists()
    proc = run_cli(
        tmp_path / "m.onnx", "-o", tmp_path / "h.onnx", "--dtype", "fp16", "--no-keep-io-types"
    )
    assert proc.returncode == 0, proc.stderr
    model = onnx.load(tmp_path / "h.onnx")
    half = onnx.TensorProto.FLOAT16
    assert model.graph.input[0].type.tensor_type.elem_type == half
    assert {v.type.tensor_type.elem_type for v in model.graph.output} == {half}
    both = run_cli(tmp_path / "m.onnx", "--dtype", "fp16", "--int8", "--calibration", "random:4")
    assert_one_line_error(both, 2, "exclude each other")
    kept = run_cli(
        tmp_path / "m.onnx", "--keep-initializer-inputs", "--int8", "--calibration", "random:4"
    )
    assert_one_line_error(kept, 2, "--int8 stores them as int8 constants: choose one")


def test_fp16_from_python():
    import onnxslim

    proto = onnxslim.slim(mixed_model(), dtype="fp16")
    assert {t.data_type for t in proto.graph.initializer} >= {onnx.TensorProto.FLOAT16}
    result = onnxslim.optimizer.optimize_with_report(
        mixed_model(), onnxslim.optimizer.OptimizeOptions(dtype="fp16", check=False)
    )
    assert result.fp16["drift"] is None and result.fp16["nodes_float16"] == 2
    with pytest.warns(UserWarning, match="float16 drift was measured on 3 synthesized"):
        onnxslim.optimizer.optimize(mixed_model(), dtype="fp16")
    feed = {"x": np.random.default_rng(3).standard_normal((1, 3, 8, 8)).astype(np.float32)}
    given = onnxslim.optimizer.optimize_with_report(
        mixed_model(), onnxslim.optimizer.OptimizeOptions(dtype="fp16", check_inputs=[feed])
    )
    assert given.fp16["inputs"] == "1 given sample(s)" and given.fp16_warning is None


def test_fp16_that_converts_nothing_says_so():
    """Every float op inside an If's branches (silero VAD): float16 conversion leaves the bodies
    as they are, so nothing converts; the report says so, and counts the nodes inside, instead of
    a float16 drift and latency that are the lossless passes' own."""
    import dataclasses

    import onnxslim

    then = helper.make_graph([N("Relu", ["x"], ["t"])], "then", [], [vi("t", FLOAT, [2])])
    other = helper.make_graph([N("Neg", ["x"], ["e"])], "else", [], [vi("e", FLOAT, [2])])
    model = make_model(
        [N("If", ["c"], ["y"], then_branch=then, else_branch=other)],
        [vi("x", FLOAT, [2]), vi("c", onnx.TensorProto.BOOL, [])],
        [vi("y", FLOAT, [2])],
    )
    result = onnxslim.optimizer.optimize_with_report(
        model, onnxslim.optimizer.OptimizeOptions(dtype="fp16")
    )
    assert result.fp16["nodes_float16"] == 0
    assert result.fp16["kept"] == {"inside control flow bodies": 2, "control flow": 1}
    assert (
        "no node went to float16 (kept in float32: inside control flow bodies 2, control flow 1): "
        "the result is the lossless float32 model, and what it saves in size or time the lossless "
        "passes saved"
    ) in result.warnings
    assert result.fp16_warning is None  # not that float16's drift was measured on made-up data
    slower = dataclasses.replace(result, fp16={**result.fp16, "time_verdict": "slower"})
    assert slower.fp16_slower_warning is None  # no float16 to blame
    interface = onnxslim.optimizer.optimize_with_report(
        model, onnxslim.optimizer.OptimizeOptions(dtype="fp16", keep_io_types=False)
    )  # float16 inputs and outputs, Casts inside: not the lossless float32 model
    assert interface.fp16["casts"] and interface.fp16_nothing_warning is None


SPEED_WORDS = {"faster", "slower", "same"}


def test_fp16_is_timed_against_the_original_and_a_slower_result_warned_of():
    """ORT's CPU computes most float16 ops through Casts to float32: a float16 model can run
    2x the original's time (a MiniLM with int8 weights) with nothing to say so but the clock."""
    import dataclasses

    import onnxslim

    result = onnxslim.optimizer.optimize_with_report(
        mixed_model(), onnxslim.optimizer.OptimizeOptions(dtype="fp16")
    )
    assert result.fp16["time_ratio"] > 0 and result.fp16["time_verdict"] in SPEED_WORDS
    from rich.console import Console

    from onnxslim.render.tables import fp16_report

    shown = Console(width=200, record=True)
    shown.print(*fp16_report(result.fp16))
    assert "float16 latency: " in shown.export_text()
    assert json.loads(json.dumps(result.to_dict()))["fp16"]["time_ratio"] > 0
    slower = dataclasses.replace(
        result, fp16={**result.fp16, "time_ratio": 2.04, "time_verdict": "slower"}
    )
    assert slower.fp16_slower_warning.startswith(
        "the float16 model runs 2.04x the time of the original on this CPU"
    )
    assert f"; timed on {result.fp16['inputs']}: at your inputs' sizes" in (
        slower.fp16_slower_warning
    )  # synthesized: they may be far smaller than the model's own (32x32 for a 320x320 YOLO)
    given = dataclasses.replace(slower, fp16={**slower.fp16, "synthesized": False})
    assert "timed on" not in given.fp16_slower_warning
    same = dataclasses.replace(result, fp16={**result.fp16, "time_verdict": "same"})
    assert same.fp16_slower_warning is None
    unchecked = onnxslim.optimizer.optimize_with_report(
        mixed_model(), onnxslim.optimizer.OptimizeOptions(dtype="fp16", check=False)
    )
    assert unchecked.fp16["time_ratio"] is None  # no timing without the check
    half_io = onnxslim.optimizer.optimize_with_report(
        mixed_model(), onnxslim.optimizer.OptimizeOptions(dtype="fp16", keep_io_types=False)
    )
    assert half_io.fp16["time_ratio"] is None and half_io.fp16_slower_warning is None


def test_fp16_keeps_the_transpose_onnx_runtime_crashes_on_in_float32(tmp_path):
    """ORT 1.32 (level all, on AVX-512) dies building a session on Transpose(1,0,2) into a float16
    MatMul: the Transpose stays float32, and the model builds where ORT runs it by default."""
    w = np.random.default_rng(0).standard_normal((448, 96)).astype(np.float32)
    model = make_model(
        [
            helper.make_node("Transpose", ["x"], ["t"], perm=[1, 0, 2]),
            helper.make_node("MatMul", ["t", "w"], ["y"]),
        ],
        [vi("x", FLOAT, [21, 2, 448])],
        [vi("y", FLOAT, [2, 21, 96])],
        [const("w", w)],
    )
    onnx.save(model, tmp_path / "m.onnx")
    proc = run_cli(tmp_path / "m.onnx", "-o", tmp_path / "h.onnx", "--dtype", "fp16")
    assert proc.returncode == 0, proc.stderr
    assert "Transpose(1,0,2) into a MatMul (crashes ONNX Runtime in float16) 1" in proc.stdout
    from onnxslim.runtime import session_crash

    assert session_crash(tmp_path / "h.onnx") is None
    half = onnx.load(tmp_path / "h.onnx")
    assert [n.op_type for n in half.graph.node] == ["Transpose", "Cast", "MatMul", "Cast"]
    feed = {"x": np.random.default_rng(1).standard_normal((21, 2, 448)).astype(np.float32)}
    (got,), (want,) = run(tmp_path / "h.onnx", feed), run(model, feed)
    assert np.allclose(got, want, rtol=1e-2, atol=0.1)


def test_fp16_keeps_a_float32_node_float32_whose_type_object_another_value_shares():
    """sink-transposes gives the Transpose it moves the type of the value it replaces: one type
    object for two values. Set in place, float16 on the Mul's output made the kept Transpose's
    output read float16 too, and the MatMul got float32 with no Cast (torchaudio's Emformer: "Type
    parameter (T) of Optype (MatMul) bound to different types")."""
    import onnx_ir as ir

    from onnxslim.fp16 import to_float16

    w = np.random.default_rng(0).standard_normal((8, 5)).astype(np.float32)
    model = make_model(
        [
            helper.make_node("Mul", ["x", "two"], ["m"]),
            helper.make_node("Transpose", ["m"], ["t"], perm=[1, 0, 2]),
            helper.make_node("MatMul", ["t", "w"], ["y"]),
        ],
        [vi("x", FLOAT, [3, 2, 8])],
        [vi("y", FLOAT, [2, 3, 5])],
        [const("w", w), const("two", np.array(2, np.float32))],
    )
    converted = ir.from_proto(model)
    mul, transpose, _ = converted.graph
    shared = ir.TensorType(ir.DataType.FLOAT)  # one object for both, as a rewrite leaves it
    mul.outputs[0].type = transpose.outputs[0].type = shared
    to_float16(converted)
    assert transpose.outputs[0].dtype == ir.DataType.FLOAT
    feed = {"x": np.random.default_rng(1).standard_normal((3, 2, 8)).astype(np.float32)}
    (got,), (want,) = run(ir.to_proto(converted), feed), run(model, feed)
    assert np.allclose(got, want, rtol=1e-2, atol=0.05)


def test_a_float16_model_onnx_runtime_refuses_is_a_failed_check():
    """Exit 1 as any refused float16 result, not 2 (a bad input): the input was fine."""
    from onnxslim.errors import CheckFailedError
    from onnxslim.fp16 import measure_drift

    original = make_model(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        [vi("x", FLOAT, [2, 4])],
        [vi("y", FLOAT, [2, 3])],
        [const("w", np.ones((4, 3), np.float32))],
    )
    broken = onnx.ModelProto()
    broken.CopyFrom(original)
    broken.graph.initializer[0].CopyFrom(
        numpy_helper.from_array(np.ones((4, 3), np.float16), "w")
    )  # float32 x float16: ORT refuses to load it
    with pytest.raises(CheckFailedError, match="the float16 model does not load"):
        measure_drift(original, broken)


#: a child that dies as ORT 1.32 does on some float16 models, at the levels (argv[2]) listed
CRASHING_PROBE = (
    "import os, signal, sys\nif sys.argv[2] in {}: os.kill(os.getpid(), signal.SIGSEGV)"
)


def test_only_a_crash_signal_is_a_crash(tmp_path, monkeypatch):
    from onnxslim import runtime

    monkeypatch.setattr(runtime, "CRASH_PROBE", CRASHING_PROBE.format(["ORT_ENABLE_ALL"]))
    assert runtime.session_crash(tmp_path / "m.onnx") == "SIGSEGV"
    assert runtime.session_crash(tmp_path / "m.onnx", "basic") is None
    killed = "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"  # the system's (OOM)
    monkeypatch.setattr(runtime, "CRASH_PROBE", killed)
    assert runtime.session_crash(tmp_path / "m.onnx") is None
    monkeypatch.setattr(runtime, "CRASH_PROBE", "raise SystemExit(1)")  # ORT's own error
    assert runtime.session_crash(tmp_path / "m.onnx") is None

    def windows_exit(code):  # Windows ends a crashed process with its exception's code
        return lambda *args, **kwargs: subprocess.CompletedProcess(args, code)

    monkeypatch.setattr(runtime.subprocess, "run", windows_exit(0xC0000005))
    assert runtime.session_crash(tmp_path / "m.onnx") == "ACCESS_VIOLATION"
    monkeypatch.setattr(runtime.subprocess, "run", windows_exit(-1073741819))  # the same, signed
    assert runtime.session_crash(tmp_path / "m.onnx") == "ACCESS_VIOLATION"
    monkeypatch.setattr(runtime.subprocess, "run", windows_exit(3))
    assert runtime.session_crash(tmp_path / "m.onnx") is None


@pytest.mark.parametrize(
    "crashes, builds_at",
    [
        (["ORT_ENABLE_ALL"], "; it builds at level extended"),
        (["ORT_ENABLE_ALL", "ORT_ENABLE_EXTENDED"], ":"),
    ],
)
def test_a_float16_model_that_crashes_onnx_runtime_is_refused_not_written(
    tmp_path, monkeypatch, crashes, builds_at
):
    from onnxslim import runtime
    from onnxslim.errors import CheckFailedError
    from onnxslim.optimizer import OptimizeOptions, optimize_with_report

    assert runtime.session_crash(REPO / "models" / "demo.onnx") is None  # the real probe
    monkeypatch.setattr(runtime, "CRASH_PROBE", CRASHING_PROBE.format(crashes))
    out = tmp_path / "o.onnx"
    with pytest.raises(CheckFailedError) as refused:
        optimize_with_report(mixed_model(), OptimizeOptions(dtype="fp16"), output=out)
    assert str(refused.value).startswith(
        f"the float16 model crashes ONNX Runtime {ort.__version__} (SIGSEGV) when it builds a "
        f"session at its default optimization level (ORT_ENABLE_ALL){builds_at}"
    )
    assert not out.exists() and list(tmp_path.iterdir()) == []
    with pytest.raises(CheckFailedError, match="crashes ONNX Runtime"):  # unchecked too
        optimize_with_report(mixed_model(), OptimizeOptions(dtype="fp16", check=False))


def half_transposes_into_matmul(tmp_path):
    """A float16 model with the pair ORT 1.32 may crash on, Transpose(1,0,2) into a MatMul, behind
    two Transposes that fuse-chains makes one (a batched MatMul: ORT builds it); its file."""
    w = np.random.default_rng(0).standard_normal((2, 8, 4)).astype(np.float16)
    half = onnx.TensorProto.FLOAT16
    model = make_model(
        [
            N("Transpose", ["x"], ["a"], perm=[0, 2, 1]),
            N("Transpose", ["a"], ["b"], perm=[0, 2, 1]),
            N("Transpose", ["b"], ["t"], perm=[1, 0, 2]),
            N("MatMul", ["t", "w"], ["y"]),
        ],
        [vi("x", half, [3, 2, 8])],
        [vi("y", half, [2, 3, 4])],
        [const("w", w)],
    )
    return save_model(model, tmp_path / "half.onnx")


#: a child that dies as ORT 1.32 does, on a model of at most {} Transposes (a result, not the input)
CRASHING_WHEN_FUSED = """
import os, signal, sys, onnx
if sum(n.op_type == "Transpose" for n in onnx.load(sys.argv[1]).graph.node) <= {}:
    os.kill(os.getpid(), signal.SIGSEGV)
"""


def test_a_lossless_result_onnx_runtime_crashes_on_is_made_again_without_its_rewrites(
    tmp_path, monkeypatch
):
    """Tried in a child process before any session of ours (a float16 encoder's residual sums as
    Sum made ORT 1.32 die at level all, taking the command with it: exit 139, no message); made
    again without the rewrites applied, with a note."""
    from onnxslim import runtime
    from onnxslim.optimizer import OptimizeOptions, optimize_with_report

    path, out = half_transposes_into_matmul(tmp_path), tmp_path / "o.onnx"
    monkeypatch.setattr(runtime, "CRASH_PROBE", CRASHING_WHEN_FUSED.format(1))
    result = optimize_with_report(path, OptimizeOptions(), output=out)
    assert result.checked and "fuse-chains" not in result.applied
    assert [n.op_type for n in onnx.load(out).graph.node] == ["Transpose"] * 3 + ["MatMul"]
    assert result.notes[-1] == (
        f"the optimized model crashes ONNX Runtime {ort.__version__} (SIGSEGV) when it builds a "
        "session at its default optimization level (ORT_ENABLE_ALL): an ONNX Runtime bug: made "
        "again without fuse-chains"
    )
    monkeypatch.setattr(runtime, "CRASH_PROBE", "raise SystemExit(0)")  # builds: fused, one probe
    fused = optimize_with_report(path, OptimizeOptions(), output=out)
    assert fused.applied["fuse-chains"] and not any("crashes" in n for n in fused.notes)


#: a child that dies as ORT 1.32 does, on any model but the file half.onnx (the input)
CRASHING_BUT_THE_INPUT = """
import os, signal, sys
if not sys.argv[1].endswith("half.onnx"):
    os.kill(os.getpid(), signal.SIGSEGV)
"""


def test_int8_starts_from_a_lossless_model_made_again_without_the_crashing_rewrites(
    tmp_path, monkeypatch
):
    """INT8 optimizes the model in memory first: the retry without the rewrites loads it again
    (exit 1 before, where the lossless command made it again)."""
    from onnxslim import runtime
    from onnxslim.quantization import quantize

    path = half_transposes_into_matmul(tmp_path)
    monkeypatch.setattr(runtime, "CRASH_PROBE", CRASHING_WHEN_FUSED.format(1))
    result = quantize(str(path), "random:8", progress=False, measure_latency=False)
    assert any(note.endswith(": made again without fuse-chains") for note in result.report.notes)
    assert [n.op_type for n in result.model.graph].count("Transpose") >= 2


def test_a_lossless_result_that_crashes_onnx_runtime_either_way_is_refused(tmp_path, monkeypatch):
    from onnxslim import runtime
    from onnxslim.errors import CheckFailedError
    from onnxslim.optimizer import OptimizeOptions, optimize_with_report

    path, out = half_transposes_into_matmul(tmp_path), tmp_path / "o.onnx"
    monkeypatch.setattr(runtime, "CRASH_PROBE", CRASHING_BUT_THE_INPUT)
    for check in (True, False):
        with pytest.raises(CheckFailedError) as refused:
            optimize_with_report(path, OptimizeOptions(check=check), output=out)
        assert str(refused.value).endswith(
            ": an ONNX Runtime bug (rewritten with fuse-chains); nothing was written"
        )
        assert not out.exists()
    proc = run_cli(path, "-o", out)  # the real ORT: it builds, the Transposes fused
    assert proc.returncode == 0, proc.stderr
    assert op_counts(onnx.load(out)) == {"Transpose": 1, "MatMul": 1}


def test_a_model_that_crashes_onnx_runtime_is_refused_for_the_check(tmp_path, monkeypatch):
    """A clear error where ORT would take the command down (exit 139, no message); optimized
    with --no-check, its result not refused for crashing as it does."""
    from onnxslim import runtime
    from onnxslim.errors import CheckFailedError, OnnxSlimError
    from onnxslim.optimizer import OptimizeOptions, optimize_with_report

    path, out = half_transposes_into_matmul(tmp_path), tmp_path / "o.onnx"
    monkeypatch.setattr(runtime, "CRASH_PROBE", CRASHING_PROBE.format(["ORT_ENABLE_ALL"]))
    with pytest.raises(OnnxSlimError) as refused:
        optimize_with_report(path, OptimizeOptions(), output=out)
    assert not isinstance(refused.value, CheckFailedError) and not out.exists()
    assert str(refused.value).startswith(
        f"the model crashes ONNX Runtime {ort.__version__} (SIGSEGV) when it builds a session at "
        "its default optimization level (ORT_ENABLE_ALL); it builds at level extended"
    )
    assert str(refused.value).endswith("; no result can be checked against it (--no-check)")
    unchecked = optimize_with_report(path, OptimizeOptions(check=False), output=out)
    assert unchecked.applied["fuse-chains"] and op_counts(onnx.load(out))["Transpose"] == 1


def test_no_session_of_ours_on_a_model_that_crashes_onnx_runtime(tmp_path, monkeypatch):
    """With --no-check, keeping a 1-D conv's zero Pad apart compared ORT's graphs of the original:
    an in-process session on the model that crashes ORT (exit 139, found in review)."""
    from onnxslim import optimizer, runtime
    from onnxslim.optimizer import OptimizeOptions, optimize_with_report

    half = half_transposes_into_matmul(tmp_path)
    model = onnx.load(half)
    w = np.random.default_rng(1).standard_normal((4, 4, 1, 9)).astype(np.float32)
    model.graph.node.extend([N("Conv", ["c", "cw"], ["cy"], pads=[0, 4, 0, 4])])
    model.graph.initializer.append(const("cw", w))
    model.graph.input.append(vi("c", FLOAT, [1, 4, 1, 64]))
    model.graph.output.append(vi("cy", FLOAT, [1, 4, 1, 64]))
    path = save_model(model, tmp_path / "half.onnx")
    monkeypatch.setattr(runtime, "CRASH_PROBE", CRASHING_PROBE.format(["ORT_ENABLE_ALL"]))
    monkeypatch.setattr(optimizer, "has_slow_padded_convs", lambda model: True)
    monkeypatch.setattr(optimizer, "_ort_graph", lambda *a: pytest.fail("a session of ours"))
    result = optimize_with_report(path, OptimizeOptions(check=False), output=tmp_path / "o.onnx")
    assert not result.checked and (tmp_path / "o.onnx").exists()


def test_optimize_bench_retries_dims_where_the_first_random_pick_breaks_the_original(tmp_path):
    """Reflect padding by 40 needs more than 40 values: the benchmark's first random pick breaks the
    original; it retries other dims, as the check does, and says which it used."""
    pads = helper.make_tensor("pads", onnx.TensorProto.INT64, [4], [0, 40, 0, 40])
    graph = helper.make_graph(
        [
            helper.make_node("Pad", ["x", "pads"], ["p"], mode="reflect"),
            helper.make_node("Relu", ["p"], ["y"]),
        ],
        "g",
        [vi("x", FLOAT, [1, "n"])],
        [vi("y", FLOAT, [1, None])],
        [pads],
    )
    path = tmp_path / "reflect.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    proc = run_cli(path, "-o", tmp_path / "o.onnx", "--bench")
    assert proc.returncode == 0, proc.stderr
    (picked,) = re.findall(r"benchmarked x float32\[1,n\] at \[1,(\d+)\]", proc.stderr)
    assert int(picked) > 40
    assert "verdict: o.onnx vs reflect.onnx" in proc.stdout


def test_long_work_prints_progress_lines_in_a_log(monkeypatch, capsys):
    """Off a terminal (a CI log) long work prints a line every HEARTBEAT_S seconds and a last one;
    work shorter than that prints nothing (the reports stay clean)."""
    from onnxslim.render import progress as progress_module

    with progress_module.progress_bar("calibrating", 3) as bar:
        for _ in range(3):
            bar.advance()
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(progress_module, "HEARTBEAT_S", 0.0)
    with progress_module.progress_bar("calibrating", 3) as bar:
        bar.advance()
        bar.describe("comparing", total=5)
        bar.advance(2)
    assert capsys.readouterr().err.splitlines() == [
        "calibrating: 1/3 (0 s)",
        "comparing: 3/5 (0 s)",
        "comparing: done (0 s)",
    ]
    with progress_module.progress_bar("calibrating", 3, enabled=False) as bar:
        bar.advance()
    assert capsys.readouterr().err == ""


def test_int8_phases_report_progress_in_a_log(tmp_path, monkeypatch, capsys):
    import onnxslim
    from onnxslim.data import input_specs, random_inputs
    from onnxslim.render import progress as progress_module

    monkeypatch.setattr(progress_module, "HEARTBEAT_S", 0.0)
    onnx.save(conv_bn_model(), tmp_path / "m.onnx")
    samples = [random_inputs(input_specs(conv_bn_model()), seed=i) for i in range(40)]
    onnxslim.quantize(tmp_path / "m.onnx", samples, measure_latency=False, max_drift="snr>=99")
    # each line ends with the seconds the phase has taken: "(0 s)" on a fast machine
    lines = [line.rsplit(" (", 1)[0] for line in capsys.readouterr().err.splitlines()]
    assert "calibrating: observing activations: 1/16" in lines  # (40: 16 / 16 / 8 with a budget)
    assert "INT8: trying CLE and bias correction: 2/2" in lines
    assert any(line.startswith("INT8: ranking nodes by sensitivity: 1/") for line in lines)
    assert any(line.startswith("INT8: returning nodes to float for snr>=99") for line in lines)


def test_int8_timings_report_their_runs_in_a_log(tmp_path, monkeypatch, capsys):
    """The timed choices and the final timing ran silent: caustic-nmr's GNN (a second a run) sat
    minutes without a line. Each run is a step of the stage that timed it."""
    import onnxslim
    from onnxslim.data import input_specs, random_inputs
    from onnxslim.render import progress as progress_module

    monkeypatch.setattr(progress_module, "HEARTBEAT_S", 0.0)
    onnx.save(conv_bn_model(), tmp_path / "m.onnx")
    samples = [random_inputs(input_specs(conv_bn_model()), seed=i) for i in range(8)]
    onnxslim.quantize(tmp_path / "m.onnx", samples, target="auto")
    lines = capsys.readouterr().err.splitlines()
    for stage in ("INT8: speed/accuracy choices: timed runs", "INT8: timing the models: runs"):
        assert any(re.fullmatch(rf"{re.escape(stage)}: \d+ so far \(\d+ s\)", x) for x in lines)
    with progress_module.progress_bar("outer", None, enabled=False):  # quiet: no runs shown
        onnxslim.bench.latencies([tmp_path / "m.onnx"], samples[0], 3)
    assert capsys.readouterr().err == ""


def test_work_inside_work_shows_one_display_on_a_terminal(monkeypatch):
    """On a terminal, a bar started inside another's work joins its display (two live displays
    would redraw over each other)."""
    from onnxslim.render import progress as progress_module

    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    with progress_module.progress_bar("choosing", 2) as outer:
        live = progress_module._live
        assert live is not None and outer.bar is live
        with progress_module.progress_bar("calibrating", 4) as inner:
            assert inner.bar is live and len(live.tasks) == 2
            inner.advance()
        assert len(live.tasks) == 1
    assert progress_module._live is None


def spectrogram_model() -> onnx.ModelProto:
    """An STFT's power through a [201, 8] filterbank, its hop a Constant node and its output
    annotated by type only: fix the signal's length and ONNX's shape inference gives the STFT 400
    bins where ORT computes 201 (onesided), a shape ORT refuses if it is written."""
    window = np.hanning(400).astype(np.float32)
    return make_model(
        [
            N(
                "Constant",
                [],
                ["hop"],
                value=helper.make_tensor("hop", onnx.TensorProto.INT64, [], [160]),
            ),
            N("STFT", ["x", "hop", "window"], ["stft"]),
            N("ReduceSumSquare", ["stft"], ["power"], axes=[-1], keepdims=0),
            N("MatMul", ["power", "bank"], ["y"]),
        ],
        [vi("x", FLOAT, [1, "n"])],
        [vi("y", FLOAT, None)],
        [const("window", window), const("bank", np.ones((201, 8), np.float32))],
        value_info=[helper.make_value_info("stft", helper.make_tensor_type_proto(FLOAT, None))],
        check=False,
    )


@pytest.mark.parametrize("check", [[], ["--no-check"]])
def test_input_shapes_write_no_shape_the_original_did_not_give(tmp_path, check):
    onnx.save(spectrogram_model(), tmp_path / "m.onnx")
    proc = run_cli(
        tmp_path / "m.onnx", "-o", tmp_path / "o.onnx", "--input-shapes", "x:1,1600", *check
    )
    assert proc.returncode == 0, proc.stderr
    feed = {"x": np.random.default_rng(1).standard_normal((1, 1600)).astype(np.float32)}
    out = onnx.load(tmp_path / "o.onnx")
    np.testing.assert_allclose(run(out, feed)[0], run(spectrogram_model(), feed)[0], rtol=1e-4)
    (stft,) = [v for v in out.graph.value_info if v.name == "stft"]
    assert stft.type.tensor_type.elem_type == FLOAT and not stft.type.tensor_type.HasField("shape")


def test_int8_with_input_shapes_writes_no_shape_the_original_did_not_give(tmp_path):
    """Calibration runs the float model on ORT: the same wrong STFT shape refused it."""
    onnx.save(spectrogram_model(), tmp_path / "m.onnx")
    proc = run_cli(
        *(tmp_path / "m.onnx", "-o", tmp_path / "q.onnx", "--input-shapes", "x:1,1600"),
        *("--int8", "--calibration", "random:12", "--target", "avx2"),
    )
    assert proc.returncode == 0, proc.stderr
    feed = {"x": np.random.default_rng(1).standard_normal((1, 1600)).astype(np.float32)}
    assert run(onnx.load(tmp_path / "q.onnx"), feed)[0].shape == (1, 8, 8)  # 8 frames


def test_fp16_refusal_names_outputs_below_float16s_range(monkeypatch):
    """Vanishing activations (a randomly initialised EfficientNet's logits, ~1e-14, whose SE
    blocks' ReduceMean stays float32 between explicit Casts): float16 gives 0 whatever stays
    float32, so the refusal says so instead of "keep more ops in float32"."""
    from onnxslim import fp16, optimizer
    from onnxslim.drift import compare_outputs
    from onnxslim.errors import CheckFailedError

    tiny = [{"y": np.full((1, 8), 1e-14, np.float32) * (i + 1)} for i in range(3)]
    zeros = [{"y": np.zeros((1, 8), np.float32)} for _ in range(3)]
    drifts = compare_outputs(tiny, zeros)
    assert drifts["y"].reference_rms == pytest.approx(
        np.sqrt(np.mean(np.square([1, 2, 3]))) * 1e-14
    )
    assert fp16.underflow_hint(compare_outputs(zeros, zeros)) is None  # all zero: nothing to say
    assert fp16.underflow_hint(compare_outputs(tiny, tiny)).startswith(
        "the original's output 'y' (2.2e-14 RMS) is below float16's smallest normal number "
    )
    small = [{"z": np.full(4, 1e-6, np.float32)}] * 3  # tiny too, but float16 held it: not named
    drifts = {**drifts, **compare_outputs(small, small)}
    monkeypatch.setattr(fp16, "measure_drift", lambda *a: (drifts, "3 samples", {}))
    with pytest.raises(CheckFailedError, match=r"\(the original's output 'y' \([^)]*\) is below"):
        optimizer.optimize(mixed_model(), dtype="fp16")


def test_no_hint_to_pass_check_inputs_when_the_given_ones_fail():
    """The original fails on the user's own check inputs: the report says so, without telling
    them to pass inputs."""
    import onnxslim

    model = make_model(
        [N("Reshape", ["x", "shape"], ["y"])],
        [vi("x", FLOAT, ["N"])],
        [vi("y", FLOAT, [3])],
        [const("shape", np.array([3]))],
    )
    options = onnxslim.optimizer.OptimizeOptions(check_inputs=[{"x": np.ones(4, np.float32)}])
    with pytest.warns(UserWarning, match="not checked: the original model fails"):
        result = onnxslim.optimizer.optimize_with_report(model, options)
    assert result.check_skipped and "pass inputs to check on" not in result.check_skipped


def test_check_inputs_from_python_take_a_path_as_the_cli_does(tmp_path):
    """`check_inputs="folder"` read as --check-inputs reads it (it raised AttributeError: 'str'
    object has no attribute 'items'); a missing one is a one-line OnnxSlimError."""
    import onnxslim
    from onnxslim.errors import OnnxSlimError

    folder = tmp_path / "feeds"
    folder.mkdir()
    for i in range(3):
        np.save(folder / f"{i}.npy", np.full((1, 3, 6, 6), i - 1.0, np.float32))
    result = onnxslim.optimizer.optimize_with_report(
        shape_math_model(), onnxslim.optimizer.OptimizeOptions(check_inputs=folder)
    )
    assert result.check_feeds is not None and len(result.check_feeds) == 3
    np.testing.assert_array_equal(result.check_feeds[2]["x"], np.ones((1, 3, 6, 6), np.float32))
    assert onnxslim.slim(shape_math_model(), check_inputs=str(folder))
    with pytest.raises(OnnxSlimError, match=r"^check_inputs \S+missing: no such file or folder$"):
        onnxslim.slim(shape_math_model(), check_inputs=str(tmp_path / "missing"))


def test_input_shapes_the_model_cannot_take_are_named_in_the_warning(tmp_path):
    """A 3-wide conv kernel cannot slide over 2 samples: the original fails at the dims given."""
    w = np.ones((1, 1, 3), np.float32)
    model = make_model(
        [N("Conv", ["x", "w"], ["y"])],
        [vi("x", FLOAT, ["N", 1, "W"])],
        [vi("y", FLOAT, ["N", 1, "V"])],
        [const("w", w)],
    )
    onnx.save(model, tmp_path / "m.onnx")
    proc = run_cli(tmp_path / "m.onnx", "-o", tmp_path / "o.onnx", "--input-shapes", "x:1,1,2")
    assert proc.returncode == 0, proc.stderr
    assert "not checked: the original model fails on ONNX Runtime" in proc.stderr
    assert (
        "(on the inputs at the dims given (--input-shapes, --shape)); pass inputs to check on "
        "(--check-inputs" in proc.stderr
    )
