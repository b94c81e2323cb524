"""How the command line reads: reports on stdout in a plain layout for logs, tolerances of the
check, byte sizes, the help text."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from helpers import FLOAT, REPO, assert_one_line_error, const, make_model, run_cli, vi
from onnx import helper

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
    onnx.save(conv_bn_model(), tmp_path / "m.onnx")
    exact = run_cli(
        tmp_path / "m.onnx", "-o", tmp_path / "o.onnx", "--check-rtol", "0", "--check-atol", "0"
    )
    assert_one_line_error(exact, 1, "max abs difference")
    assert "(rtol 0, atol 0)" in exact.stderr and not (tmp_path / "o.onnx").exists()
    loose = run_cli(tmp_path / "m.onnx", "-o", tmp_path / "o.onnx", "--check-atol", "1e-3", "-q")
    assert loose.returncode == 0, loose.stderr
    assert (tmp_path / "o.onnx").is_file()


def test_check_tolerances_from_python():
    import onnxslim
    from onnxslim.errors import CheckFailedError

    onnxslim.optimize(conv_bn_model())  # default tolerances: fusion rounding is fine
    with pytest.raises(CheckFailedError, match="rtol 0, atol 0"):
        onnxslim.optimize(conv_bn_model(), check_rtol=0, check_atol=0)


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
    assert "inputs: 8 random sample(s) of x float32[1,3,32,32]" in proc.stdout
    warning = [line for line in proc.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warning) == 1 and "x float32[N,3,H,W] at [1,3,32,32]" in warning[0]
    assert "--shape x:1,3,32,32" in warning[0]
    data = json.loads(json_path.read_text())
    assert data["settings"]["inputs"] == {"x": {"dtype": "float32", "shapes": [[1, 3, 32, 32]]}}
    assert len(data["warnings"]) == 1 and "--shape" in data["warnings"][0]
    page = html_path.read_text()
    assert "x float32[1,3,32,32]" in page and "--shape x:" in page
    # drift: a relative error column; no top-1 for a 4-D feature map
    header = next(
        line for line in proc.stdout.splitlines() if line.split()[:2] == ["Model", "Output"]
    )
    assert " Rel err " in header and header.split()[-3:] == ["dB", "Top-1", "Note"]
    row = proc.stdout.splitlines()[-1].split()
    assert row[1:5] == ["y", "0", "0", "0"] and row[-1] == "-"
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
    assert "--shape x:1,3,32,32" in guessed.stderr
    assert json.loads(report.read_text())["int8"]["drift"]["y"]["shape"] == [1, 4, 32, 32]


def test_images_on_a_dynamic_model_need_a_size(tmp_path, dynamic):
    from PIL import Image

    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(4):
        Image.new("RGB", (40 + i, 30), (i * 40, 100, 200)).save(folder / f"{i}.png")
    args = (dynamic, "-o", tmp_path / "q.onnx", "--int8", "--calibration", folder)
    proc = run_cli(*args)
    line = assert_one_line_error(proc, 2, "dynamic height and width")
    assert "--preprocess" in line and "resize=256,crop=224" in line
    proc = run_cli(*args, "--preprocess", "mean=0.5,std=0.5")  # still no size
    assert_one_line_error(proc, 2, "dynamic height and width")
    proc = run_cli(*args, "--preprocess", "resize=24,crop=16", "-q")
    assert proc.returncode == 0, proc.stderr
    proc = run_cli(*args, "--shape", "x:1,3,16,16")
    assert_one_line_error(proc, 2, "--shape applies to random inputs")
