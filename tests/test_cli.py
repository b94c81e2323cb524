"""The `onnxslim` CLI, run as a subprocess: output forms, options, report, errors and exit codes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from helpers import (
    FLOAT,
    REPO,
    assert_one_line_error,
    assert_same_outputs,
    const,
    external_data_model,
    make_model,
    node_count,
    op_counts,
    run,
    run_cli,
    vi,
)
from onnx import helper

import onnxslim
from onnxslim import cli
from onnxslim.model import opset

N = helper.make_node
DEMO = REPO / "models" / "demo.onnx"


@pytest.fixture
def demo(tmp_path) -> Path:
    path = tmp_path / "demo.onnx"
    shutil.copy(DEMO, path)
    return path


def listing(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


def test_positional_output(demo, tmp_path):
    proc = run_cli(demo, tmp_path / "small.onnx")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # the report is on stdout: `onnxslim ... > log.txt` keeps it
    assert "nodes" in proc.stdout and f"wrote {tmp_path / 'small.onnx'}" in proc.stdout
    assert "outputs match the original on ONNX Runtime" in proc.stdout
    assert node_count(tmp_path / "small.onnx") < node_count(demo)
    assert_same_outputs(demo, tmp_path / "small.onnx")
    assert listing(tmp_path) == ["demo.onnx", "small.onnx"]


def test_dash_o_output_and_quiet(demo, tmp_path):
    proc = run_cli(demo, "-o", tmp_path / "small.onnx", "-q")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    assert_same_outputs(demo, tmp_path / "small.onnx")
    proc = run_cli(
        demo, tmp_path / "same.onnx", "-o", tmp_path / "same.onnx", "-q"
    )  # the same path twice is fine
    assert proc.returncode == 0 and (tmp_path / "same.onnx").is_file()


def test_relative_paths_resolve_against_the_working_directory(demo, tmp_path):
    proc = run_cli("demo.onnx", "small.onnx", "-q", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "small.onnx").is_file()


def test_without_output_nothing_is_written(demo, tmp_path):
    proc = run_cli(demo, cwd=tmp_path)
    assert proc.returncode == 0
    assert "no output path given: nothing written" in proc.stdout
    assert listing(tmp_path) == ["demo.onnx"]


def test_report_json(demo, tmp_path):
    out, report = tmp_path / "small.onnx", tmp_path / "report.json"
    proc = run_cli(demo, "-o", out, "--report", report, "-q")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(report.read_text())
    assert data["input"] == str(demo) and data["output"] == str(out)
    assert data["checked"] is True and data["check_skipped"] is None
    assert data["before"]["nodes"] == node_count(demo) == sum(data["before"]["op_counts"].values())
    assert data["after"]["nodes"] == node_count(out) == sum(data["after"]["op_counts"].values())
    assert data["after"]["op_counts"] == dict(op_counts(out))
    assert data["after"]["file_bytes"] == out.stat().st_size
    assert data["before"]["file_bytes"] == demo.stat().st_size
    assert data["after"]["parameters"] <= data["before"]["parameters"]
    assert data["passes_applied"] and all(
        isinstance(v, int) and v > 0 for v in data["passes_applied"].values()
    )
    assert data["rounds"] >= 1 and data["seconds"] > 0


def test_no_check(demo, tmp_path):
    proc = run_cli(demo, "-o", tmp_path / "o.onnx", "--no-check", "--report", tmp_path / "r.json")
    assert proc.returncode == 0
    assert "not checked (--no-check)" in proc.stdout
    assert json.loads((tmp_path / "r.json").read_text())["checked"] is False


@pytest.mark.parametrize(
    ("shape", "error"),
    [
        ("foo:5,3", "shape given for unknown input 'foo' (model inputs: x)"),
        ("x:5,4", "--shape: input 'x' has shape [5,4], the model expects float32[N,3]"),
    ],
)
def test_a_shape_that_fits_no_input_is_an_error_not_a_check_left_out(tmp_path, shape, error):
    model = make_model(
        [N("Relu", ["x"], ["y"])], [vi("x", FLOAT, ["N", 3])], [vi("y", FLOAT, ["N", 3])]
    )
    onnx.save(model, tmp_path / "m.onnx")
    proc = run_cli(tmp_path / "m.onnx", "-o", tmp_path / "a.onnx", "--shape", shape)
    assert_one_line_error(proc, 2, error)
    assert not (tmp_path / "a.onnx").exists()


def test_check_inputs_and_shapes(tmp_path):
    model = make_model(
        [N("Relu", ["x"], ["y"])], [vi("x", FLOAT, ["N", 3])], [vi("y", FLOAT, ["N", 3])]
    )
    onnx.save(model, tmp_path / "m.onnx")
    np.savez(tmp_path / "inputs.npz", x=np.ones((4, 2, 3), np.float32))  # 4 samples of [2, 3]
    assert (
        run_cli(
            tmp_path / "m.onnx",
            "-o",
            tmp_path / "a.onnx",
            "--check-inputs",
            tmp_path / "inputs.npz",
            "-q",
        ).returncode
        == 0
    )
    assert (
        run_cli(tmp_path / "m.onnx", "-o", tmp_path / "b.onnx", "--shape", "x:5,3", "-q").returncode
        == 0
    )


def test_size_threshold_and_budget_options(tmp_path):
    # n read from x's static dim while its batch is dynamic: the shape folds to a constant, and
    # the matrix is left to ORT's folding at load, however much the options let the file grow
    model = make_model(
        [
            N("Shape", ["x"], ["s"]),
            N("Gather", ["s", "one"], ["d"], axis=0),
            N("Concat", ["d", "d"], ["shape"], axis=0),
            N("ConstantOfShape", ["shape"], ["z"], value=const("v", np.array([1.0], np.float32))),
            N("MatMul", ["x", "z"], ["y"]),
        ],
        [vi("x", FLOAT, ["N", 1024])],
        [vi("y", FLOAT, ["N", 1024])],
        [const("one", np.array([1]))],
    )
    onnx.save(model, tmp_path / "m.onnx")
    for limits in ([], ["--size-threshold", "8MiB", "--size-budget", "8MiB"]):
        proc = run_cli(tmp_path / "m.onnx", "-o", tmp_path / "out.onnx", "--overwrite", *limits)
        assert proc.returncode == 0, proc.stderr
        assert op_counts(tmp_path / "out.onnx") == {"ConstantOfShape": 1, "MatMul": 1}
        assert "ONNX Runtime folds itself at load" in " ".join(proc.stdout.split())
        assert (tmp_path / "out.onnx").stat().st_size < 1024


def test_skip_and_keep_initializer_inputs(tmp_path):
    model = make_model(
        [N("Identity", ["x"], ["a"]), N("Neg", ["k"], ["nk"]), N("Mul", ["a", "nk"], ["y"])],
        [vi("x", FLOAT, [3]), vi("k", FLOAT, [3])],
        [vi("y", FLOAT, [3])],
        [const("k", np.full(3, 2.0, np.float32))],
        ir_version=4,
        opset=9,
    )
    onnx.save(model, tmp_path / "m.onnx")
    assert run_cli(tmp_path / "m.onnx", "-o", tmp_path / "a.onnx", "-q").returncode == 0
    assert op_counts(tmp_path / "a.onnx") == {"Mul": 1}
    proc = run_cli(
        tmp_path / "m.onnx",
        "-o",
        tmp_path / "b.onnx",
        "--skip",
        "remove-no-ops,prune",
        "--skip",
        "fold-constants",
        "--keep-initializer-inputs",
        "-q",
    )
    assert proc.returncode == 0, proc.stderr
    kept = onnx.load(tmp_path / "b.onnx")
    assert [v.name for v in kept.graph.input] == ["x", "k"]
    assert op_counts(kept)["Neg"] == 1


def test_external_data_and_overwrite(demo, tmp_path):
    out = tmp_path / "ext.onnx"
    assert run_cli(demo, "-o", out, "--external-data", "-q").returncode == 0
    assert listing(tmp_path) == ["demo.onnx", "ext.onnx", "ext.onnx.data"]
    assert_same_outputs(DEMO, out)
    before = node_count(demo)
    proc = run_cli(demo, demo, "--overwrite", "-q")
    assert proc.returncode == 0, proc.stderr
    assert node_count(demo) < before
    assert_same_outputs(DEMO, demo)
    assert listing(tmp_path) == ["demo.onnx", "ext.onnx", "ext.onnx.data"]


def test_overwrite_an_external_data_model_in_place(tmp_path):
    from test_api import external_model

    path = external_model(tmp_path)
    reference = tmp_path / "reference"
    shutil.copytree(tmp_path, reference, ignore=shutil.ignore_patterns("reference"))
    proc = run_cli(path, path, "--overwrite", "--external-data", "-q")
    assert proc.returncode == 0, proc.stderr
    assert_same_outputs(reference / "model.onnx", path)


def test_inline_functions(tmp_path):
    twice = helper.make_function(
        "local", "Twice", ["a"], ["b"], [N("Add", ["a", "a"], ["b"])], [helper.make_opsetid("", 17)]
    )
    model = make_model(
        [N("Twice", ["x"], ["t"], domain="local"), N("Twice", ["t"], ["y"], domain="local")],
        [vi("x", FLOAT, ["N", 3])],
        [vi("y", FLOAT, ["N", 3])],
        opsets={"local": 1},
        functions=[twice],
    )
    onnx.save(model, tmp_path / "m.onnx")
    assert run_cli(tmp_path / "m.onnx", "-o", tmp_path / "kept.onnx", "-q").returncode == 0
    assert [f.name for f in onnx.load(tmp_path / "kept.onnx").functions] == ["Twice"]
    assert (
        run_cli(
            tmp_path / "m.onnx", "-o", tmp_path / "inlined.onnx", "--inline-functions", "-q"
        ).returncode
        == 0
    )
    inlined = onnx.load(tmp_path / "inlined.onnx")
    assert not inlined.functions and op_counts(inlined) == {"Add": 2}
    assert {o.domain for o in inlined.opset_import} == {""}
    assert_same_outputs(model, inlined)


def test_an_onnxruntime_extensions_model_says_whose_ops_it_uses(tmp_path):
    model = make_model(
        [N("StringLower", ["x"], ["y"], domain="ai.onnx.contrib")],
        [vi("x", onnx.TensorProto.STRING, [2])],
        [vi("y", onnx.TensorProto.STRING, [2])],
        opsets={"ai.onnx.contrib": 1},
    )
    onnx.save(model, tmp_path / "m.onnx")
    proc = run_cli(tmp_path / "m.onnx", "-o", tmp_path / "o.onnx", "-q")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.startswith(
        "warning: not checked: the original model does not run on ONNX Runtime (custom domain "
        "'ai.onnx.contrib') as onnxslim runs it: its custom ops are onnxruntime-extensions', "
        "whose library onnxslim does not register"
    )


def test_custom_domain_model_is_written_but_reported_unchecked(tmp_path):
    model = make_model(
        [N("Identity", ["x"], ["r"]), N("FooBar", ["r"], ["y"], domain="my.custom")],
        [vi("x", FLOAT, [2])],
        [vi("y", FLOAT, [2])],
        opsets={"my.custom": 1},
    )
    onnx.save(model, tmp_path / "m.onnx")
    proc = run_cli(tmp_path / "m.onnx", "-o", tmp_path / "o.onnx", "--report", tmp_path / "r.json")
    assert proc.returncode == 0, proc.stderr
    reason = "the original model does not run on ONNX Runtime (custom domain 'my.custom')"
    assert f"not checked: {reason}" in proc.stdout
    assert proc.stderr.startswith(f"warning: not checked: {reason}")
    assert "--check-inputs" not in proc.stderr  # no inputs make ORT run a custom domain
    assert json.loads((tmp_path / "r.json").read_text())["checked"] is False
    out = onnx.load(tmp_path / "o.onnx")
    assert [(n.op_type, n.domain, list(n.input)) for n in out.graph.node] == [
        ("FooBar", "my.custom", ["x"])
    ]


# ------------------------------------------------ errors: one line, exit code, nothing written


def _external_model(
    folder: Path, *, write: bool = True, short: bool = False, location: str = "w.bin"
) -> Path:
    onnx.save(external_data_model(folder, location, write=write, short=short), folder / "m.onnx")
    return folder / "m.onnx"


def _bad_input(kind: str, folder: Path) -> Path:
    path = folder / "m.onnx"
    if kind == "missing":
        return folder / "missing.onnx"
    if kind == "not onnx":
        path.write_text("hello, I am text\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(DEMO.read_bytes()[:2000])
    elif kind == "missing external data":
        return _external_model(folder, write=False)
    elif kind == "short external data":
        return _external_model(folder, short=True)
    elif kind == "escaping external data":
        return _external_model(folder, write=False, location="../../etc/passwd")
    elif kind == "future IR version":
        model = make_model([N("Relu", ["x"], ["y"])], [vi("x", FLOAT, [2])], [vi("y", FLOAT, [2])])
        model.ir_version = onnx.IR_VERSION + 1
        onnx.save(model, path)
    elif kind == "folder":
        path.mkdir()
    return path


@pytest.mark.parametrize(
    "kind, message",
    [
        ("missing", "missing.onnx: no such file"),
        ("not onnx", "m.onnx: not a valid ONNX model (truncated or not protobuf"),
        ("empty", "m.onnx: empty file, not an ONNX model"),
        ("truncated", "m.onnx: not a valid ONNX model (truncated or not protobuf"),
        ("missing external data", "m.onnx: external data file 'w.bin' of 'w' is missing"),
        (
            "short external data",
            "m.onnx: external data file 'w.bin' is too short for 'w' (100 bytes, needs 256)",
        ),
        (
            "escaping external data",
            "external data location '../../etc/passwd' of 'w' escapes the model's folder",
        ),
        ("future IR version", f"m.onnx: IR version {onnx.IR_VERSION + 1} is newer than this onnx"),
        ("folder", "m.onnx: is a folder, not an ONNX model"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(kind, message, tmp_path):
    path = _bad_input(kind, tmp_path)
    before = listing(tmp_path)
    proc = run_cli(path, "-o", tmp_path / "out.onnx")
    assert_one_line_error(proc, 2, message)
    assert listing(tmp_path) == before


def test_unknown_skip_name(demo, tmp_path):
    proc = run_cli(demo, "-o", tmp_path / "out.onnx", "--skip", "prune,nope")
    line = assert_one_line_error(
        proc, 2, "unknown pass 'nope' (known passes: freeze-initializer-inputs,"
    )
    assert "fold-constants" in line
    assert listing(tmp_path) == ["demo.onnx"]


def test_output_equal_to_input_needs_overwrite(demo, tmp_path):
    original = demo.read_bytes()
    for args in ([demo, demo], [demo, "-o", tmp_path / "." / "demo.onnx"]):
        proc = run_cli(*args)
        assert_one_line_error(proc, 2, "is the input model; pass --overwrite to replace it")
    assert demo.read_bytes() == original and listing(tmp_path) == ["demo.onnx"]


@pytest.mark.parametrize(
    "where, message",
    [
        ("missing/out.onnx", "output folder {tmp}/missing does not exist"),
        ("demo.onnx/out.onnx", "output folder {tmp}/demo.onnx does not exist"),
        (".", "is a folder; give a file name for the output"),
    ],
)
def test_bad_output_path(where, message, demo, tmp_path):
    proc = run_cli(demo, "-o", tmp_path / where)
    assert_one_line_error(proc, 2, message.format(tmp=tmp_path))
    assert listing(tmp_path) == ["demo.onnx"]


def test_unwritable_output_folder(demo, tmp_path):
    if os.geteuid() == 0:  # root passes permission bits: use a file system that refuses new files
        target = Path("/sys/out.onnx")
        message = "/sys/out.onnx: cannot write to /sys: Operation not permitted"
    else:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        target = locked / "out.onnx"
        message = f"{target}: output folder {target.parent} is not writable"
    proc = run_cli(demo, "-o", target)
    assert_one_line_error(proc, 2, message)
    assert not target.exists()
    assert listing(tmp_path) == ["demo.onnx"] + (["locked"] if os.geteuid() else [])


def test_two_different_outputs(demo, tmp_path):
    proc = run_cli(demo, tmp_path / "a.onnx", "-o", tmp_path / "b.onnx")
    assert_one_line_error(proc, 2, "give the output once: either as OUTPUT or with -o")


def test_version_and_module_entry():
    proc = run_cli("--version")
    assert proc.returncode == 0 and "version" in proc.stdout


# In-process runs (monkeypatching a broken pass is not possible in a subprocess).


class _BreakRelu:
    """A pass that changes results: every Relu becomes Neg."""

    def __call__(self, model):
        import onnx_ir as ir

        for node in model.graph:
            if node.op_type == "Relu":
                node.op_type = "Neg"
        return ir.passes.PassResult(model, True)


class _Crash:
    def __call__(self, model):
        raise RuntimeError("boom\nsecond line")


@pytest.mark.parametrize(
    "pass_, code, message",
    [
        (
            _BreakRelu(),
            1,
            "error: optimized model differs from the original: y: max abs difference",
        ),
        (_Crash(), 3, "error: internal error (RuntimeError: boom); set ONNXSLIM_DEBUG=1"),
    ],
)
def test_failed_check_and_internal_error_write_nothing(pass_, code, message, tmp_path, monkeypatch):
    from onnxslim.passes import registry as passes

    spec = passes.PassSpec("inject", "test", lambda options: pass_, stage="setup")
    monkeypatch.setattr(passes, "REGISTRY", (spec, *passes.REGISTRY))
    monkeypatch.delenv("ONNXSLIM_DEBUG", raising=False)
    model = make_model(
        [N("Relu", ["x"], ["y"])], [vi("x", FLOAT, [4, 5])], [vi("y", FLOAT, [4, 5])]
    )
    onnx.save(model, tmp_path / "m.onnx")
    result = CliRunner().invoke(
        cli.main, [str(tmp_path / "m.onnx"), "-o", str(tmp_path / "out.onnx")]
    )
    assert result.exit_code == code
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(message), result.stderr
    assert "Traceback" not in result.output
    assert listing(tmp_path) == ["m.onnx"]


def test_unwritable_report_leaves_no_output(demo, tmp_path):
    proc = run_cli(demo, "-o", tmp_path / "out.onnx", "--report", tmp_path / "missing" / "r.json")
    assert_one_line_error(proc, 2, "r.json")
    assert listing(tmp_path) == ["demo.onnx"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--size-threshold", "-5"], "'-5' is not a size"),
        (["--size-threshold", "3 parsecs"], "is not a size"),
        (["--bogus"], "No such option '--bogus'"),
        (["--shape"], "Option '--shape' requires an argument"),
    ],
)
def test_usage_errors_are_one_line(demo, tmp_path, args, message):
    proc = run_cli(demo, "-o", tmp_path / "out.onnx", *args)
    assert_one_line_error(proc, 2, message)
    assert not (tmp_path / "out.onnx").exists()


def test_opset_below_7_is_converted_and_checked(tmp_path):
    model = make_model(
        [N("Relu", ["x"], ["y"])],
        [vi("x", FLOAT, [2])],
        [vi("y", FLOAT, [2])],
        opset=6,
        ir_version=3,
    )
    onnx.save(model, tmp_path / "m.onnx")
    proc = run_cli(tmp_path / "m.onnx", "-o", tmp_path / "out.onnx")
    assert proc.returncode == 0, proc.stderr
    assert "converted from opset 6 to 7" in proc.stderr + proc.stdout
    assert "outputs match the original" in proc.stderr + proc.stdout
    assert onnx.load(tmp_path / "out.onnx").opset_import[0].version == 7


def test_an_ir_version_3_model_that_folding_gives_initializers_is_written_as_ir_4(tmp_path):
    """IR 3 wants every initializer listed as a graph input: the lifted Constant made the result
    fail the onnx checker, and the default command refused a valid model (PixelShuffle of ONNX's
    own backend tests). It is written as IR 4, same meaning, and no bigger."""
    shape = helper.make_tensor("shape", onnx.TensorProto.INT64, [2], [2, 3])
    model = make_model(
        [N("Constant", [], ["s"], value=shape), N("Reshape", ["x", "s"], ["y"])],
        [vi("x", FLOAT, [6])],
        [vi("y", FLOAT, [2, 3])],
        opset=9,
        ir_version=3,
    )
    onnx.save(model, tmp_path / "m.onnx")
    proc = run_cli(tmp_path / "m.onnx", "-o", tmp_path / "out.onnx")
    assert proc.returncode == 0, proc.stderr
    saved = onnx.load(tmp_path / "out.onnx")
    onnx.checker.check_model(saved, full_check=True)
    assert saved.ir_version == 4 and [i.name for i in saved.graph.initializer] == ["s"]
    assert not saved.opset_import[0].HasField("domain")  # as given: an explicit "" costs 2 bytes
    assert (tmp_path / "out.onnx").stat().st_size <= (tmp_path / "m.onnx").stat().st_size
    assert_same_outputs(model, saved)


def test_a_longer_external_data_name_is_not_a_bigger_result(tmp_path):
    """A dynamo export keeps its weights in `<name>.data`; the result's longer name, repeated in
    each external tensor, grows the file by a few bytes that are not the model's: no warning."""
    rng = np.random.default_rng(0)
    layers = 12
    model = make_model(
        [N("Conv", [f"x{i}", f"w{i}"], [f"x{i + 1}"], pads=[1, 1, 1, 1]) for i in range(layers)],
        [vi("x0", FLOAT, [1, 8, 8, 8])],
        [vi(f"x{layers}", FLOAT, [1, 8, 8, 8])],
        [const(f"w{i}", rng.normal(size=(8, 8, 3, 3)).astype(np.float32)) for i in range(layers)],
    )
    onnx.save(model, tmp_path / "m0.onnx", save_as_external_data=True, size_threshold=0)
    assert run_cli(tmp_path / "m0.onnx", "-o", tmp_path / "m.onnx").returncode == 0
    out = tmp_path / "m.with.a.much.longer.name.onnx"  # onnxslim's result again: same model
    proc = run_cli(tmp_path / "m.onnx", "-o", out, "--report", tmp_path / "r.json")
    assert proc.returncode == 0, proc.stderr
    sizes = json.loads((tmp_path / "r.json").read_text())
    assert sizes["after"]["file_bytes"] > sizes["before"]["file_bytes"]  # the name, 12 times
    assert "bigger than the input" not in proc.stderr and sizes["growth"] is None


def test_a_bigger_result_is_said(tmp_path):
    """A Dropout whose mask is a graph output (ONNX's backend test_dropout_default_mask): folding
    stores the mask (60 bools) in the file; the result is written, with a warning that it is
    bigger."""
    model = make_model(
        [N("Dropout", ["x"], ["y", "mask"], seed=0)],
        [vi("x", FLOAT, [3, 4, 5])],
        [vi("y", FLOAT, [3, 4, 5]), vi("mask", onnx.TensorProto.BOOL, [3, 4, 5])],
        opset=22,
    )
    onnx.save(model, tmp_path / "m.onnx")
    proc = run_cli(
        tmp_path / "m.onnx", "-o", tmp_path / "out.onnx", "--report", tmp_path / "r.json"
    )
    assert proc.returncode == 0, proc.stderr
    grown = (tmp_path / "out.onnx").stat().st_size - (tmp_path / "m.onnx").stat().st_size
    assert grown > 0
    assert f"warning: the result is {grown} B bigger than the input" in proc.stderr
    assert "its constants 60 B more (folded values)" in proc.stderr
    assert json.loads((tmp_path / "r.json").read_text())["growth"].startswith("the result is")


def test_target_opset_converts_any_model(tmp_path, demo_path):
    proc = run_cli(demo_path, "-o", tmp_path / "out.onnx", "--target-opset", "18")
    assert proc.returncode == 0, proc.stderr
    opsets = {o.domain: o.version for o in onnx.load(tmp_path / "out.onnx").opset_import}
    assert opsets[""] == 18


@pytest.mark.parametrize(
    ("op", "target", "why"),
    [
        ("Pad", 17, "no rule for Pad to its opset 17 form"),
        ("Pad", 12, "no rule for Pad to its opset 17 form"),  # the step it stops at
        ("Relu", 13, "no rule for Relu from its opset 14 form"),
    ],
)
def test_a_conversion_onnx_cannot_make_is_one_clear_line(tmp_path, op, target, why):
    pads = [const("pads", np.array([1, 1], np.int64))] if op == "Pad" else []
    inputs = ["x", "pads"] if pads else ["x"]
    model = make_model([N(op, inputs, ["y"])], [vi("x", FLOAT, [2])], [vi("y")], pads)
    model.opset_import[0].version = 18
    onnx.save(model, tmp_path / "m.onnx")
    proc = run_cli(tmp_path / "m.onnx", "-o", tmp_path / "out.onnx", "--target-opset", target)
    assert assert_one_line_error(proc, 2) == (
        f"error: cannot convert the model from opset 18 to {target}: onnx's version converter "
        f"has {why}; export the model at opset {target} instead"
    )
    assert not (tmp_path / "out.onnx").exists()


def test_a_conversion_below_an_ops_first_opset_is_one_clear_line(tmp_path):
    """A BERT at opset 17 (not tuned on) to 13: its LayerNormalization came in opset 17."""
    scale = [const("s", np.ones(4, np.float32))]
    model = make_model(
        [N("LayerNormalization", ["x", "s"], ["y"])], [vi("x", FLOAT, [2, 4])], [vi("y")], scale
    )
    onnx.save(model, tmp_path / "m.onnx")
    proc = run_cli(tmp_path / "m.onnx", "-o", tmp_path / "out.onnx", "--target-opset", 13)
    assert assert_one_line_error(proc, 2) == (
        "error: cannot convert the model from opset 17 to 13: LayerNormalization has no form "
        "before the opset that introduced it, above 13; export the model at opset 13 instead"
    )


def resize10_both_ways() -> onnx.ModelProto:
    """An opset-10 nearest Resize that upsamples one axis and downsamples another: ORT computes
    it by rules (floor up, ceiling down) no Resize-11+ attributes give."""
    scales = const("scales", np.array([1, 1, 3, 0.4], np.float32))
    return make_model(
        [N("Resize", ["x", "scales"], ["y"], mode="nearest", name="resize")],
        [vi("x", FLOAT, [1, 2, 6, 6])],
        [vi("y", FLOAT, [1, 2, 18, 2])],
        [scales],
        opset=10,
    )


def test_a_conversion_with_no_form_that_computes_alike_is_one_clear_line(tmp_path):
    onnx.save(resize10_both_ways(), tmp_path / "m.onnx")
    proc = run_cli(tmp_path / "m.onnx", "-o", tmp_path / "out.onnx", "--target-opset", 13)
    assert assert_one_line_error(proc, 2) == (
        "error: cannot convert the model from opset 10 to 13: Resize 'resize' (nearest) upsamples "
        "one axis and downsamples another, which no Resize from opset 11 on computes alike; "
        "export the model at opset 13 instead"
    )
    assert not (tmp_path / "out.onnx").exists()
    assert run_cli(tmp_path / "m.onnx", "-o", tmp_path / "out.onnx").returncode == 0


def _converter_turning_relu_into_abs(monkeypatch) -> None:
    """onnx's version converter, changing what the model computes as it did Upsample-9's."""
    real = opset.version_converter.convert_version

    def converted(model: onnx.ModelProto, target: int) -> onnx.ModelProto:
        out = real(model, target)
        for node in out.graph.node:
            node.op_type = "Abs" if node.op_type == "Relu" else node.op_type
        return out

    monkeypatch.setattr(opset.version_converter, "convert_version", converted)


def test_a_conversion_that_changes_the_outputs_is_named_as_the_likely_cause(tmp_path, monkeypatch):
    _converter_turning_relu_into_abs(monkeypatch)
    model = make_model([N("Relu", ["x"], ["y"])], [vi("x", FLOAT, [4])], [vi("y", FLOAT, [4])])
    onnx.save(model, tmp_path / "m.onnx")
    args = [str(tmp_path / "m.onnx"), "-o", str(tmp_path / "out.onnx"), "--target-opset", "18"]
    result = CliRunner().invoke(cli.main, args)
    assert result.exit_code == 1
    assert result.stderr.startswith("error: optimized model differs from the original: y: ")
    assert result.stderr.rstrip().endswith(
        "(the model was converted from opset 17 to 18 first: onnx's version converter may change "
        "what an op computes; export the model at opset 18 instead)"
    )
    assert not (tmp_path / "out.onnx").exists()


def _old_resize_nodes(op: str, opset: int, mode: str, scales: list[float], out: str = "y"):
    """An Upsample or Resize of x read by a Relu (the converter renames a Resize's output that is
    not a graph output), its scales an attribute (Upsample-7) or a Constant node."""
    relu = N("Relu", ["u"], [out])
    if op == "Upsample" and opset < 9:
        return [N(op, ["x"], ["u"], mode=mode, scales=[float(s) for s in scales]), relu]
    scales = N("Constant", [], ["scales"], value=const("s", np.array(scales, np.float32)))
    return [scales, N(op, ["x", "scales"], ["u"], mode=mode), relu]


def _old_resize(op: str, opset: int, mode: str, scales: list[float]) -> onnx.ModelProto:
    x, y = vi("x", FLOAT, [1, 2, 6, 6]), vi("y", FLOAT, ["n", "c", "h", "w"])
    return make_model(_old_resize_nodes(op, opset, mode, scales), [x], [y], opset=opset)


def _old_resizes_in_branches() -> onnx.ModelProto:
    """If(c) Upsample-9 linear, else Upsample-9 nearest: the bodies converted too."""
    bodies = [
        helper.make_graph(
            _old_resize_nodes("Upsample", 9, mode, [1, 1, 3, 1.5], "b"),
            name,
            [],
            [vi("b", FLOAT, None)],
        )
        for name, mode in (("then", "linear"), ("else", "nearest"))
    ]
    node = N("If", ["c"], ["y"], then_branch=bodies[0], else_branch=bodies[1])
    inputs = [vi("x", FLOAT, [1, 2, 6, 6]), vi("c", onnx.TensorProto.BOOL, [])]
    return make_model([node], inputs, [vi("y", FLOAT, None)], opset=9, check=False)


def _hardmax(opset: int, axis: int | None) -> onnx.ModelProto:
    node = N("Hardmax", ["x"], ["y"], **({} if axis is None else {"axis": axis}))
    return make_model([node], [vi("x", FLOAT, [2, 3, 4, 5])], [vi("y")], opset=opset)


@pytest.mark.parametrize(
    "model",
    [
        *(
            pytest.param(_old_resize(op, opset, mode, scales), id=f"{op}{opset}-{mode}-{scales}")
            for op, opset in (("Upsample", 7), ("Upsample", 9), ("Resize", 10))
            for mode in ("linear", "nearest")
            for scales in ([1, 1, 2, 2], [1, 1, 3, 1.5], [1, 1, 1.7, 2.6])
        ),
        *(
            pytest.param(
                _old_resize("Resize", 10, mode, [1, 1, 0.5, 0.4]), id=f"Resize10-{mode}-down"
            )
            for mode in ("linear", "nearest")
        ),
        pytest.param(_old_resizes_in_branches(), id="Upsample9-in-If"),
        *(
            pytest.param(_hardmax(opset, axis), id=f"Hardmax{opset}-axis{axis}")
            for opset in (9, 12)
            for axis in (None, 0, 2, 3)
        ),
        *(pytest.param(_hardmax(12, axis), id=f"Hardmax12-axis{axis}") for axis in (-1, -2)),
    ],
)
def test_conversion_to_opset_13_keeps_what_old_resizes_and_hardmaxes_compute(tmp_path, model):
    """onnx's version converter gives Upsample-7/9 and Resize-10 Resize-11's half-pixel
    coordinates (theirs were asymmetric, nearest taking the floor) and keeps a Hardmax-12 as
    it is where opset 13 reads its axis alone: `--target-opset 13` refused them (outputs
    differ), and `--int8` at every such model (it needs opset 13)."""
    onnx.save(model, tmp_path / "m.onnx")
    proc = run_cli(tmp_path / "m.onnx", "-o", tmp_path / "out.onnx", "--target-opset", 13)
    assert proc.returncode == 0, proc.stderr
    out = onnx.load(tmp_path / "out.onnx")
    assert out.opset_import[0].version == 13
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    x = np.random.default_rng(0).random(dims, np.float32)
    branches = len(model.graph.input) == 2  # (x, and the If's condition c)
    for feeds in [{"x": x, "c": np.array(c)} for c in (True, False)] if branches else [{"x": x}]:
        assert_same_outputs(model, out, feeds)


def _int8_on_16_samples(
    tmp_path, model: onnx.ModelProto, rng, mode: str = "auto"
) -> subprocess.CompletedProcess:
    """`--int8 MODE` on `model` (saved as m.onnx, written to q.onnx), calibrated on 16 samples of
    x [1, 16, 32, 32]."""
    onnx.save(model, tmp_path / "m.onnx")
    np.savez(tmp_path / "data.npz", x=rng.standard_normal((16, 1, 16, 32, 32)).astype(np.float32))
    args = ("--int8", mode, "--calibration", tmp_path / "data.npz")
    return run_cli(tmp_path / "m.onnx", "-o", tmp_path / "q.onnx", *args)


def _conv_then_resize(op: str, opset: int, mode: str, scales: list[float]) -> onnx.ModelProto:
    """A 3x3 Conv [1, 16, 32, 32] (2.4M multiply-adds: INT8 whatever the timing), resized."""
    weight = np.random.default_rng(1).standard_normal((16, 16, 3, 3)).astype(np.float32)
    return make_model(
        [
            N("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
            N(op, ["c", "scales"], ["y"], mode=mode),
        ],
        [vi("x", FLOAT, [1, 16, 32, 32])],
        [vi("y", FLOAT, ["n", "c", "h", "w"])],
        [const("w", weight), const("scales", np.array(scales, np.float32))],
        opset=opset,
    )


def test_int8_quantizes_an_old_upsampling_conv_net_as_it_computes(tmp_path):
    """An opset-9 conv net upsampling linearly: INT8 (which converts it to opset 13) was
    refused, the converted Resize computing other pixels; its drift is now INT8's alone."""
    rng = np.random.default_rng(0)
    model = _conv_then_resize("Upsample", 9, "linear", [1, 1, 2, 2])
    proc = _int8_on_16_samples(tmp_path, model, rng, "static")
    assert proc.returncode == 0, proc.stderr
    out = onnx.load(tmp_path / "q.onnx")
    assert out.opset_import[0].version == 13 and op_counts(out)["QuantizeLinear"] >= 1
    feeds = {"x": rng.standard_normal((1, 16, 32, 32)).astype(np.float32)}
    (want,), (got,) = run(model, feeds), run(out, feeds)
    cosine = float(np.dot(want.ravel(), got.ravel())) / (np.linalg.norm(want) * np.linalg.norm(got))
    assert cosine > 0.999


def test_int8_refuses_a_model_the_conversion_to_opset_13_changes(monkeypatch):
    """INT8 converts to opset 13 (per-channel QDQ): the converted Resize's error was reported as
    INT8's own drift, exit 0 (cosine 0.79 on a conv net, not tuned on, before the conversion of
    Upsample-9 was mended)."""
    _converter_turning_relu_into_abs(monkeypatch)
    model = make_model(
        [N("Relu", ["x"], ["r"]), N("MatMul", ["r", "w"], ["y"])],
        [vi("x", FLOAT, [1, 16])],
        [vi("y", FLOAT, [1, 16])],
        [const("w", np.eye(16, dtype=np.float32))],
        opset=12,
    )
    data = [{"x": np.random.default_rng(i).standard_normal((1, 16), np.float32)} for i in range(16)]
    with pytest.raises(onnxslim.OnnxSlimError) as raised:
        onnxslim.quantize(model, data, mode="static", measure_latency=False, progress=False)
    assert str(raised.value).startswith(
        "static INT8 needs opset 13 (QDQ), and onnx's version converter changes the model's "
        "outputs converting it from opset 12 (y: max abs difference "
    )


def test_int8_refuses_a_conversion_with_no_form_that_computes_alike(tmp_path):
    model = _conv_then_resize("Resize", 10, "nearest", [1, 1, 3, 0.4])
    proc = _int8_on_16_samples(tmp_path, model, np.random.default_rng(0))
    assert assert_one_line_error(proc, 2).startswith(
        "error: static INT8 needs opset 13 (QDQ): cannot convert the model from opset 10 to 13: "
        "Resize "
    )
    assert not (tmp_path / "q.onnx").exists()


def test_int8_names_what_the_conversion_to_opset_13_cannot_do(tmp_path):
    """An opset-7 BatchNormalization with spatial=0: the converter's C++ assertion is left out."""
    rng = np.random.default_rng(0)
    weight = const("w", rng.standard_normal((16, 16, 3, 3)).astype(np.float32))
    statistics = [const(n, np.ones((16, 32, 32), np.float32)) for n in ("s", "b", "m", "v")]
    model = make_model(
        [
            N("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
            N("BatchNormalization", ["c", "s", "b", "m", "v"], ["y"], spatial=0),
        ],
        [vi("x", FLOAT, [1, 16, 32, 32])],
        [vi("y", FLOAT, [1, 16, 32, 32])],
        [weight, *statistics],
        opset=7,
    )
    proc = _int8_on_16_samples(tmp_path, model, rng)
    assert assert_one_line_error(proc, 2) == (
        "error: static INT8 needs opset 13 (QDQ): cannot convert the model from opset 7 to 13: "
        "Attribute spatial must have value 1"
    )


def test_a_model_ort_cannot_run_is_written_as_not_checked_or_refused_with_require_check(tmp_path):
    model = make_model(
        [N("Relu", ["x"], ["r"]), N("Relu", ["r"], ["y"]), N("FooBar", ["x"], ["z"], domain="my")],
        [vi("x", FLOAT, [2])],
        [vi("y", FLOAT, [2]), vi("z", FLOAT, [2])],
        opsets={"my": 1},
    )
    onnx.save(model, tmp_path / "m.onnx")
    proc = run_cli(tmp_path / "m.onnx", "-o", tmp_path / "out.onnx")
    assert proc.returncode == 0, proc.stderr
    assert "not checked: the original model does not run on ONNX Runtime" in proc.stdout
    assert "custom domain 'my'" in proc.stdout and op_counts(tmp_path / "out.onnx")["Relu"] == 2
    proc = run_cli(tmp_path / "m.onnx", "-o", tmp_path / "strict.onnx", "--require-check")
    assert_one_line_error(proc, 1, "not checked")
    assert not (tmp_path / "strict.onnx").exists()


def unranked_matmul() -> onnx.ModelProto:
    """x, declared without a shape (any rank), @ w[4, 3]."""
    w = const("w", np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32))
    x, y = vi("x", FLOAT, None), vi("y", FLOAT, None)
    return make_model([N("MatMul", ["x", "w"], ["y"])], [x], [y], [w], check=False)


@pytest.mark.parametrize(
    ("args", "fed"),
    [
        ((), "x float32[4]"),  # the vector the weight reduces
        (("--shape", "x:2,4"), "x float32[2,4]"),
        (("--input-shapes", "x:2,4"), "x float32[2,4]"),
    ],
)
def test_an_input_declared_without_a_shape_takes_any(tmp_path, args, fed):
    """It was taken for a scalar: shapes given for it were refused, 'not checked'."""
    onnx.save(unranked_matmul(), tmp_path / "m.onnx")
    proc = run_cli(tmp_path / "m.onnx", "-o", tmp_path / "out.onnx", *args)
    assert proc.returncode == 0, proc.stderr
    assert (
        f"outputs match the original on ONNX Runtime, on synthesized inputs ({fed} " in proc.stdout
    )


@pytest.mark.parametrize("option", ["--bench", "--int8"])
def test_bench_and_int8_feed_an_input_declared_without_a_shape(tmp_path, option):
    """ORT reports such an input as a scalar: --bench and --int8 refused their own samples
    ("input 'x' has shape [4], the model expects float32[]")."""
    onnx.save(unranked_matmul(), tmp_path / "m.onnx")
    extra = ("--calibration", "random:16") if option == "--int8" else ()
    proc = run_cli(tmp_path / "m.onnx", "-o", tmp_path / "out.onnx", option, *extra)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and (tmp_path / "out.onnx").exists()


@pytest.mark.parametrize("option", ["--bench", "--int8"])
def test_bench_and_int8_feed_an_optional_tensor_input(tmp_path, option):
    """The check fed it; --bench and --int8 refused it ("not a tensor, which onnxslim cannot
    feed"). An optional tensor input is fed a tensor."""
    rng = np.random.default_rng(0)
    optional = helper.make_tensor_value_info("o", FLOAT, [1, 16])
    optional.type.CopyFrom(helper.make_optional_type_proto(optional.type))
    model = make_model(
        [
            N("OptionalGetElement", ["o"], ["e"]),
            N("MatMul", ["x", "w"], ["m"]),
            N("Add", ["m", "e"], ["y"]),
        ],
        [vi("x", FLOAT, [1, 16]), optional],
        [vi("y", FLOAT, [1, 16])],
        [const("w", rng.standard_normal((16, 16)).astype(np.float32))],
        opset=18,
    )
    onnx.save(model, tmp_path / "m.onnx")
    extra = ("--calibration", "random:16") if option == "--int8" else ()
    proc = run_cli(tmp_path / "m.onnx", "-o", tmp_path / "out.onnx", option, *extra)
    assert proc.returncode == 0, proc.stderr


def test_stale_value_info_is_dropped_where_the_result_differs(tmp_path):
    """x[2, 6] -> Relu -> Reshape to [3, 4], the Relu's value_info still [3, 4] (input dims
    edited after shape inference; ORT runs it): the Reshape went as a no-op, the check refused
    the result (exit 1). It is made again without the value_info."""
    model = make_model(
        [N("Relu", ["x"], ["r"]), N("Reshape", ["r", "shape"], ["y"])],
        [vi("x", FLOAT, [2, 6])],
        [vi("y", FLOAT, [3, 4])],
        [const("shape", np.array([3, 4], np.int64))],
        check=False,
    )
    model.graph.value_info.append(vi("r", FLOAT, [3, 4]))
    onnx.save(model, tmp_path / "m.onnx")
    proc = run_cli(tmp_path / "m.onnx", "-o", tmp_path / "out.onnx")
    assert proc.returncode == 0, proc.stderr
    assert "note: the shapes the file's value_info gives intermediate values contradict" in (
        proc.stdout
    )
    assert "outputs match the original on ONNX Runtime" in proc.stdout
    assert op_counts(tmp_path / "out.onnx") == {"Relu": 1, "Reshape": 1}


def test_a_result_that_differs_without_the_value_info_too_is_refused_with_the_first_error(
    tmp_path, monkeypatch
):
    from onnxslim import optimizer, verify
    from onnxslim.passes.registry import REGISTRY

    model = make_model(
        [N("Relu", ["x"], ["r"]), N("Neg", ["r"], ["y"])],
        [vi("x", FLOAT, [2])],
        [vi("y", FLOAT, [2])],
    )
    model.graph.value_info.append(vi("r", FLOAT, [2]))
    onnx.save(model, tmp_path / "m.onnx")
    errors = iter(["first", "second", "third", "fourth"])

    def differs(*_, **__):
        raise verify.OutputsDiffer(f"optimized model differs from the original: {next(errors)}")

    monkeypatch.setattr(verify, "check", differs)
    with pytest.raises(verify.OutputsDiffer, match="original: first$"):
        optimizer.optimize_with_report(tmp_path / "m.onnx", output=tmp_path / "out.onnx")
    # made four times: as given, without the value_info, fold-constants, the rewrites too
    assert next(errors, None) is None
    assert not (tmp_path / "out.onnx").exists()
    # the rewrites skipped already: without fold-constants once, not twice
    errors = iter(["first", "second", "third"])
    rewrites = [s.name for s in REGISTRY if s.family == "rewrite"]
    with pytest.raises(verify.OutputsDiffer, match="original: first$"):
        optimizer.optimize_with_report(
            tmp_path / "m.onnx",
            optimizer.make_options(skip=rewrites),
            output=tmp_path / "out.onnx",
        )
    assert next(errors, None) is None
