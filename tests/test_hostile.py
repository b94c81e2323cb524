"""Hostile and broken input, for every CLI command and API function: one clear line, a non-zero
exit (never a traceback, never exit 3), and no output file left behind; SIGINT mid-way leaves
nothing either."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import onnx
import pytest
from helpers import (
    FLOAT,
    REPO,
    assert_one_line_error,
    const,
    external_data_model,
    make_model,
    run,
    run_cli,
    vi,
)
from onnx import helper

import onnxslim
from onnxslim import cli

N = helper.make_node
DEMO = REPO / "models" / "demo.onnx"


def _relu(**kwargs) -> onnx.ModelProto:
    return make_model(
        [N("Relu", ["x"], ["y"])],
        [vi("x", FLOAT, [2])],
        [vi("y", FLOAT, [2])],
        check=False,
        **kwargs,
    )


#: name -> (how to build it into `folder/name.onnx`, what the optimize error line must contain)
def _cases() -> dict:
    cases = {
        "empty": (lambda f, p: p.write_bytes(b""), "empty file, not an ONNX model"),
        "random bytes": (
            lambda f, p: p.write_bytes(np.random.default_rng(1).bytes(5000)),
            "not a valid ONNX model (truncated or not protobuf",
        ),
        "truncated": (
            lambda f, p: p.write_bytes(DEMO.read_bytes()[:3000]),
            "not a valid ONNX model (truncated or not protobuf",
        ),
        "tensor proto": (
            lambda f, p: p.write_bytes(const("t", np.ones((3, 3), np.float32)).SerializeToString()),
            "not a valid ONNX model",
        ),
        "graph proto": (
            lambda f, p: p.write_bytes(_relu().graph.SerializeToString()),
            "not an ONNX model (the graph has no outputs)",
        ),
        "no graph": (
            lambda f, p: p.write_bytes(onnx.ModelProto(ir_version=8).SerializeToString()),
            "not an ONNX model (the graph has no outputs)",
        ),
        "cycle": (
            lambda f, p: onnx.save(
                make_model(
                    [N("Add", ["x", "b"], ["a"]), N("Relu", ["a"], ["b"]), N("Neg", ["a"], ["y"])],
                    [vi("x", FLOAT, [2])],
                    [vi("y", FLOAT, [2])],
                    check=False,
                ),
                p,
            ),
            "the graph has a cycle",
        ),
        "dangling input": (
            lambda f, p: onnx.save(
                make_model(
                    [N("Add", ["x", "ghost"], ["y"])],
                    [vi("x", FLOAT, [2])],
                    [vi("y", FLOAT, [2])],
                    check=False,
                ),
                p,
            ),
            "reads 'ghost', which no node, graph input or initializer defines",
        ),
        "duplicate names": (
            lambda f, p: onnx.save(
                make_model(
                    [N("Relu", ["x"], ["a"]), N("Neg", ["x"], ["a"]), N("Abs", ["a"], ["y"])],
                    [vi("x", FLOAT, [2])],
                    [vi("y", FLOAT, [2])],
                    check=False,
                ),
                p,
            ),
            "'a' is redeclared",
        ),
        "unknown op": (
            lambda f, p: onnx.save(
                make_model(
                    [N("FooBar", ["x"], ["y"])],
                    [vi("x", FLOAT, [2])],
                    [vi("y", FLOAT, [2])],
                    check=False,
                ),
                p,
            ),
            "'FooBar' is not an ONNX operator",
        ),
        "op newer than opset": (
            lambda f, p: onnx.save(
                make_model(
                    [N("Gelu", ["x"], ["y"])],
                    [vi("x", FLOAT, [2])],
                    [vi("y", FLOAT, [2])],
                    opset=17,
                    check=False,
                ),
                p,
            ),
            "'Gelu' does not exist in opset 17 (it needs opset 20 or later)",
        ),
        "op deprecated at the opset": (
            lambda f, p: onnx.save(
                make_model(
                    [N("ImageScaler", ["x"], ["y"], scale=0.5)],
                    [vi("x", FLOAT, [1, 1, 2, 2])],
                    [vi("y", FLOAT, [1, 1, 2, 2])],
                    check=False,
                ),
                p,
            ),
            "'ImageScaler' is not an ONNX operator",  # ORT's below opset 10 only
        ),
        "attribute of a later opset": (
            lambda f, p: onnx.save(
                make_model(  # Shape's `end` is from opset 15: the reshape's rank is off
                    [
                        N("Shape", ["x"], ["s"], end=2),
                        N("Concat", ["s", "four"], ["shape"], axis=0),
                        N("Reshape", ["x", "shape"], ["r"]),
                        N("Identity", ["r"], ["y"]),
                    ],
                    [vi("x", FLOAT, ["a", "b", 4])],
                    [vi("y", FLOAT, ["a", "b", 4])],
                    [const("four", np.array([4], np.int64))],
                    opset=14,
                    check=False,
                ),
                p,
            ),
            "does not load in ONNX Runtime",
        ),
        "future opset": (
            lambda f, p: onnx.save(_relu(opset=99), p),
            "opset 99 is newer than this onnx release",
        ),
        "no default opset": (
            lambda f, p: onnx.save(
                onnx.ModelProto(
                    ir_version=8, graph=_relu().graph, opset_import=[helper.make_opsetid("my", 1)]
                ),
                p,
            ),
            "imports no default ONNX opset",
        ),
        "missing external data": (
            lambda f, p: onnx.save(external_data_model(f, "w.bin", write=False), p),
            "external data file 'w.bin' of 'w' is missing",
        ),
        "short external data": (
            lambda f, p: onnx.save(external_data_model(f, "w.bin", short=True), p),
            "external data file 'w.bin' is too short for 'w'",
        ),
        "escaping external data": (
            lambda f, p: onnx.save(external_data_model(f, "../../etc/passwd", write=False), p),
            "external data location '../../etc/passwd' of 'w' escapes the model's folder",
        ),
        "absolute external data": (
            lambda f, p: onnx.save(external_data_model(f, "/etc/passwd", write=False), p),
            "external data location '/etc/passwd' of 'w' escapes the model's folder",
        ),
        "type mismatch": (
            lambda f, p: onnx.save(
                make_model(
                    [N("Add", ["x", "k"], ["y"])],
                    [vi("x", FLOAT, [2])],
                    [vi("y", FLOAT, [2])],
                    [const("k", np.ones(2, np.int64))],
                    check=False,
                ),
                p,
            ),
            "the original model does not load in ONNX Runtime",
        ),
    }
    cases["future IR version"] = (
        lambda f, p: onnx.save(_relu(ir_version=onnx.IR_VERSION + 1), p),
        f"IR version {onnx.IR_VERSION + 1} is newer than this onnx release reads",
    )
    return cases


CASES = _cases()


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> dict[str, Path]:
    """Each hostile model in its own folder (external data files sit beside it)."""
    root = tmp_path_factory.mktemp("hostile")
    paths = {}
    for name, (build, _) in CASES.items():
        folder = root / name.replace(" ", "_")
        folder.mkdir()
        path = folder / "model.onnx"
        build(folder, path)
        paths[name] = path
    return paths


def _listing(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


@pytest.mark.parametrize("name", list(CASES))
def test_optimize_command(name, hostile):
    path = hostile[name]
    before = _listing(path.parent)
    proc = run_cli(path, "-o", path.parent / "out.onnx")
    line = assert_one_line_error(proc, 2, CASES[name][1])
    assert str(path) in line or name == "type mismatch"
    assert _listing(path.parent) == before


def _commands() -> list[str]:
    """Each command but `optimize` taking model paths (bench, and int8/inspect once they exist)."""
    return sorted(name for name in cli.main.commands if name != "optimize")


@pytest.mark.parametrize("command", _commands())
@pytest.mark.parametrize(
    "name",
    [
        "empty",
        "random bytes",
        "truncated",
        "graph proto",
        "cycle",
        "future opset",
        "missing external data",
        "escaping external data",
    ],
)
def test_other_commands(command, name, hostile, tmp_path):
    path = hostile[name]
    before = _listing(path.parent)
    args = {"bench": [path, "--runs", "1", "--warmup", "0"]}.get(
        command, [path, "-o", tmp_path / "out.onnx"]
    )
    proc = run_cli(command, *args)
    if proc.returncode == 2 and "No such option" in proc.stderr:  # a command without those options
        proc = run_cli(command, path)
    if command == "inspect" and proc.returncode == 0:  # a model it can read: described
        assert f"refused by onnxslim: {path}: " in proc.stdout and proc.stderr == ""
        assert CASES[name][1] in proc.stdout.split("refused by onnxslim: ")[1]
    else:
        assert_one_line_error(proc, 2)
    assert _listing(path.parent) == before
    assert not (tmp_path / "out.onnx").exists()


@pytest.mark.parametrize(
    "name",
    [
        "empty",
        "random bytes",
        "graph proto",
        "cycle",
        "unknown op",
        "future IR version",
        "short external data",
        "escaping external data",
        "type mismatch",
    ],
)
def test_int8_option(name, hostile, tmp_path):
    path = hostile[name]
    before = _listing(path.parent)
    calibration = tmp_path / "calib.npz"
    np.savez(calibration, x=np.ones((4, 2), np.float32))  # 4 samples for the models' x[2]
    proc = run_cli(path, "-o", tmp_path / "out.onnx", "--int8", "--calibration", calibration)
    assert_one_line_error(proc, 2, CASES[name][1] if name != "type mismatch" else "")
    assert _listing(path.parent) == before and _listing(tmp_path) == ["calib.npz"]


def test_int8_option_on_a_custom_domain_model(tmp_path):
    model = make_model(
        [N("Relu", ["x"], ["r"]), N("FooBar", ["r"], ["y"], domain="my.custom")],
        [vi("x", FLOAT, [1, 3])],
        [vi("y", FLOAT, [1, 3])],
        opsets={"my.custom": 1},
    )
    onnx.save(model, tmp_path / "m.onnx")
    np.savez(tmp_path / "calib.npz", x=np.ones((4, 1, 3), np.float32))
    proc = run_cli(
        tmp_path / "m.onnx",
        "-o",
        tmp_path / "out.onnx",
        "--int8",
        "--calibration",
        tmp_path / "calib.npz",
    )
    assert_one_line_error(proc, 2)
    assert _listing(tmp_path) == ["calib.npz", "m.onnx"]


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("api", ["load", "optimize", "slim"])
def test_api_functions_raise_onnxslim_errors(api, name, hostile, tmp_path):
    path = hostile[name]
    call = {
        "load": lambda: onnxslim.load(path),
        "optimize": lambda: onnxslim.optimize(path),
        "slim": lambda: onnxslim.slim(path, tmp_path / "out.onnx"),
    }[api]
    # a well-formed graph: only ONNX Runtime rejects it
    if api == "load" and name in ("type mismatch", "attribute of a later opset"):
        onnxslim.load(path)
        return
    with pytest.raises(onnxslim.OnnxSlimError) as info:
        call()
    assert "\n" not in str(info.value)
    assert not (tmp_path / "out.onnx").exists()


@pytest.mark.parametrize(
    "name", ["cycle", "dangling input", "unknown op", "future IR version", "future opset"]
)
def test_hostile_model_protos(name, hostile):
    proto = onnx.load(hostile[name], load_external_data=False)
    with pytest.raises(
        onnxslim.OnnxSlimError, match=CASES[name][1].split(" (")[0].replace("'", ".")
    ):
        onnxslim.optimize(proto)


def test_benchmark_api_raises_onnxslim_errors(hostile):
    if not hasattr(onnxslim, "benchmark"):
        pytest.skip("no benchmark API")
    for name in ("empty", "random bytes", "cycle"):
        with pytest.raises(onnxslim.OnnxSlimError):
            onnxslim.benchmark([hostile[name]])


def test_custom_domain_op_is_kept(tmp_path):
    model = make_model(
        [N("Relu", ["x"], ["r"]), N("FooBar", ["r"], ["y"], domain="my.custom", k=3)],
        [vi("x", FLOAT, [2])],
        [vi("y", FLOAT, [2])],
        opsets={"my.custom": 1},
    )
    onnx.save(model, tmp_path / "m.onnx")
    proc = run_cli(tmp_path / "m.onnx", "-o", tmp_path / "o.onnx", "-q")
    assert (proc.returncode, proc.stdout) == (0, "")
    assert proc.stderr == (  # --quiet keeps warnings
        "warning: not checked: the original model does not run on ONNX Runtime (custom domain "
        "'my.custom')\n"
    )
    out = onnx.load(tmp_path / "o.onnx")
    assert [(n.op_type, n.domain) for n in out.graph.node] == [
        ("Relu", ""),
        ("FooBar", "my.custom"),
    ]
    assert out.graph.node[1].attribute == model.graph.node[1].attribute


ORT_OWN_OPS = {
    "SimplifiedLayerNormalization": (N("SimplifiedLayerNormalization", ["i", "g"], ["n"]), 17),
    "LayerNormalization": (N("LayerNormalization", ["i", "g"], ["n"], epsilon=1e-5), 14),
    "ImageScaler": (N("ImageScaler", ["i"], ["n"], scale=0.5, bias=[0.25]), 8),
}


@pytest.mark.parametrize("op", list(ORT_OWN_OPS))
def test_onnx_runtimes_own_ops_in_the_onnx_domain_are_optimized(op, tmp_path):
    """ORT's transformer optimizer writes SimplifiedLayerNormalization (Llama, T5) and, below
    opset 17, LayerNormalization (BERT at opset 14) in the ONNX domain, which ORT registers
    itself (so too ImageScaler below opset 10, onnx's no more): refused as "not an ONNX
    operator" / "does not exist in opset 14", exit 2."""
    node, opset = ORT_OWN_OPS[op]
    model = make_model(
        [N("Identity", ["x"], ["i"]), node, N("Relu", ["n"], ["y"])],
        [vi("x", FLOAT, ["batch", 1, 2, 4])],
        [vi("y", FLOAT, ["batch", 1, 2, 4])],
        [const("g", np.linspace(0.5, 1.5, 4, dtype=np.float32))] if op != "ImageScaler" else [],
        opset=opset,
        check=False,
    )
    onnx.save(model, tmp_path / "m.onnx")
    proc = run_cli(tmp_path / "m.onnx", "-o", tmp_path / "o.onnx")
    assert proc.returncode == 0, proc.stderr
    assert "outputs match the original on ONNX Runtime" in proc.stdout
    assert [n.op_type for n in onnx.load(tmp_path / "o.onnx").graph.node] == [op, "Relu"]
    feeds = {"x": np.random.default_rng(0).normal(size=(3, 1, 2, 4)).astype(np.float32)}
    np.testing.assert_allclose(run(tmp_path / "o.onnx", feeds)[0], run(model, feeds)[0])


def test_onnx_runtimes_own_ops_cross_an_opset_conversion(tmp_path):
    """onnx's version converter refuses an op it has no schema for: ORT's T5 at opset 12 failed
    --target-opset 13 and --int8 (static INT8 converts to 13) with onnx's unformatted message."""
    model = make_model(
        [N("SimplifiedLayerNormalization", ["x", "g"], ["n"]), N("Relu", ["n"], ["y"])],
        [vi("x", FLOAT, ["batch", 4])],
        [vi("y", FLOAT, ["batch", 4])],
        [const("g", np.linspace(0.5, 1.5, 4, dtype=np.float32))],
        opset=12,
        check=False,
    )
    onnx.save(model, tmp_path / "m.onnx")
    proc = run_cli(tmp_path / "m.onnx", "-o", tmp_path / "o.onnx", "--target-opset", "13")
    assert proc.returncode == 0, proc.stderr
    out = onnx.load(tmp_path / "o.onnx")
    assert [(n.op_type, n.domain) for n in out.graph.node] == [
        ("SimplifiedLayerNormalization", ""),
        ("Relu", ""),
    ]
    assert {(o.domain, o.version) for o in out.opset_import} == {("", 13)}
    feeds = {"x": np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)}
    np.testing.assert_allclose(run(tmp_path / "o.onnx", feeds)[0], run(model, feeds)[0])


def test_an_image_scaler_crosses_opset_10_as_what_it_computes(tmp_path):
    """ImageScaler (old model zoo exports: tiny YOLOv2 at opset 8) is ONNX Runtime's below opset
    10 only: converted up (--target-opset, static INT8's opset 13) it was refused. It becomes
    x * scale + bias[c]."""
    model = make_model(
        [N("ImageScaler", ["x"], ["s"], scale=0.5, bias=[0.1, -0.2, 0.3]), N("Relu", ["s"], ["y"])],
        [vi("x", FLOAT, ["batch", 3, 2, 2])],
        [vi("y", FLOAT, ["batch", 3, 2, 2])],
        opset=8,
        check=False,
    )
    onnx.save(model, tmp_path / "m.onnx")
    quiet = run_cli(tmp_path / "m.onnx", "-o", tmp_path / "q.onnx", "-q")
    # (onnx's checker printed "Warning: Model contains experimental ops: ImageScaler" there)
    assert (quiet.returncode, quiet.stdout, quiet.stderr) == (0, "", "")
    proc = run_cli(tmp_path / "m.onnx", "-o", tmp_path / "o.onnx", "--target-opset", "13")
    assert proc.returncode == 0, proc.stderr
    out = onnx.load(tmp_path / "o.onnx")
    assert [n.op_type for n in out.graph.node] == ["Mul", "Add", "Relu"]
    feeds = {"x": np.random.default_rng(0).normal(size=(2, 3, 2, 2)).astype(np.float32)}
    np.testing.assert_allclose(run(tmp_path / "o.onnx", feeds)[0], run(model, feeds)[0])


def test_read_only_output_folder(tmp_path):
    if os.geteuid() == 0:
        target, message = Path("/sys/out.onnx"), "cannot write to /sys"
    else:
        folder = tmp_path / "ro"
        folder.mkdir()
        folder.chmod(0o555)
        target, message = folder / "out.onnx", "is not writable"
    assert_one_line_error(run_cli(DEMO, "-o", target), 2, message)
    with pytest.raises(
        onnxslim.OnnxSlimError, match=message if os.geteuid() == 0 else "cannot write"
    ):
        onnxslim.slim(DEMO, target)
    assert not target.exists()


def test_output_equal_to_input(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(DEMO.read_bytes())
    assert_one_line_error(
        run_cli(path, path), 2, "is the input model; pass --overwrite to replace it"
    )
    assert path.read_bytes() == DEMO.read_bytes() and _listing(tmp_path) == ["m.onnx"]


# ---------------------------------------------------------------- interruption


_SLOW = r"""
import sys, time
import onnx_ir as ir
from onnxslim import cli
from onnxslim.passes import pipeline
where = sys.argv.pop(1)

def slow(real):
    def wrapper(*args, **kwargs):
        result = real(*args, **kwargs)
        print("REACHED", file=sys.stderr, flush=True)
        # short sleeps: the signal may land on another thread (ORT's, the check's), which only
        # sets Python's flag; the main thread reads it between bytecodes, not inside one sleep
        for _ in range(600):
            time.sleep(0.1)
        return result
    return wrapper

if where == "save":  # staged files written, not yet moved into place
    ir.save = slow(ir.save)
else:  # between two rounds of passes
    pipeline.infer_shapes = slow(pipeline.infer_shapes)
sys.argv = ["onnxslim", *sys.argv[1:]]
cli.main()
"""


@pytest.mark.parametrize("where", ["passes", "save"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_mid_way_leaves_nothing(where, sig, tmp_path):
    out = tmp_path / "out.onnx"
    if sig == signal.SIGTERM and where == "passes":
        pytest.skip("SIGTERM outside a save ends the process at once (nothing is staged yet)")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", _SLOW, where, str(DEMO), "-o", str(out), "--external-data", "-q"],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stderr.readline().strip() == "REACHED"
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert stderr.strip() == "interrupted: nothing written"
    assert _listing(tmp_path) == []


_SLOW_CHECK = r"""
import sys, time
import numpy as np
from onnxslim import cli, verify
from onnxslim.runtime import Session

def slow_reference(path, *_args):  # the original's side of the check: ORT runs for minutes
    session = Session(path)
    feed = {i.name: np.zeros([d if isinstance(d, int) else 1 for d in i.shape], np.float32)
            for i in session.inputs}
    print("REACHED", file=sys.stderr, flush=True)
    while True:
        session.run(feed)

verify.reference_outputs = slow_reference
sys.argv = ["onnxslim", *sys.argv[1:]]
cli.main()
"""


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_while_the_check_waits_for_the_original_ends_at_once(sig, tmp_path):
    # the wait, and an executor's worker joined at exit, held Ctrl-C and SIGTERM for minutes;
    # the check's ORT runs are stopped now, the temporary copies removed
    out, temporary = tmp_path / "out.onnx", tmp_path / "tmp"
    temporary.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(temporary)}
    proc = subprocess.Popen(
        [sys.executable, "-c", _SLOW_CHECK, str(DEMO), "-o", str(out), "-q"],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stderr.readline().strip() == "REACHED"
    time.sleep(2)  # the passes done: the main thread waits for the reference outputs
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert stderr.strip() == "interrupted: nothing written"
    assert _listing(tmp_path) == ["tmp"]
    assert [name for name in _listing(temporary) if "onnxslim" in name] == []  # (not ORT's .ses)


def test_interrupt_at_any_moment_leaves_nothing_or_a_complete_model(tmp_path):
    """SIGINT at several moments of a real run: no file at all, or exit 0 and a valid model."""
    from models.encoder import build_encoder

    path, _ = build_encoder(tmp_path / "src", hidden=256, layers=3, heads=4, vocab=3000, max_len=64)
    env = {**os.environ, "PYTHONPATH": str(REPO)}

    def start(out_dir: Path) -> subprocess.Popen:
        out_dir.mkdir()
        return subprocess.Popen(
            [sys.executable, "-m", "onnxslim", str(path), "-o", str(out_dir / "m.onnx"), "-q"],
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )

    started = time.perf_counter()
    start(tmp_path / "timing").communicate(timeout=120)
    duration = time.perf_counter() - started
    for fraction in (0.75, 0.85, 0.9, 0.95, 0.98):
        out_dir = tmp_path / f"out{fraction}"
        proc = start(out_dir)
        time.sleep(duration * fraction)
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=120)
        assert proc.returncode in (0, 130, -signal.SIGINT), stderr  # -SIGINT: still importing
        if _listing(out_dir):  # interrupted after the save (while reporting) or not at all
            assert _listing(out_dir) == ["m.onnx", "m.onnx.data"]
            onnx.checker.check_model(out_dir / "m.onnx", full_check=True)
            x = {"input_ids": np.zeros((1, 4), np.int64)}
            np.testing.assert_allclose(
                run(out_dir / "m.onnx", x)[0], run(path, x)[0], rtol=1e-4, atol=1e-5
            )
        else:
            assert proc.returncode != 0


_FORK_HOOK = {"armed": False, "finished": False}


def _interrupt_after_fork():
    """An at-fork parent hook (as logging's lock release): SIGINT lands while it runs."""
    if _FORK_HOOK["armed"]:
        _FORK_HOOK["armed"] = False
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)  # the signal is handled here unless it is held back
        _FORK_HOOK["finished"] = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_parent=_interrupt_after_fork)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
def test_a_ctrl_c_as_shape_inference_forks_waits_for_the_fork_handlers(monkeypatch):
    """A Ctrl-C inside Python's at-fork handlers left logging's lock held (the next log call
    hung): it is raised once the fork is done, the child killed and reaped."""
    from onnxslim.model import shapes

    children = []
    fork = os.fork
    monkeypatch.setattr(shapes.os, "fork", lambda: children.append(fork()) or children[-1])
    _FORK_HOOK.update(armed=True, finished=False)
    with pytest.raises(KeyboardInterrupt):
        shapes.infer_shapes_apart(_relu())
    assert _FORK_HOOK["finished"]
    with pytest.raises(ChildProcessError):
        os.waitpid(children[0], os.WNOHANG)  # reaped: no child left behind


class _InterruptedImport(types.ModuleType):
    """A module whose names cannot be imported: as onnxruntime's C extension fails when Ctrl-C
    lands while it loads (ImportError raised from the KeyboardInterrupt)."""

    def __getattr__(self, name):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as err:
            raise ImportError("initialization failed") from err


class _InterruptedDefinition(types.ModuleType):
    """A module whose names cannot be imported: as a dataclass being defined when Ctrl-C lands
    (RuntimeError raised from the KeyboardInterrupt by its __set_name__)."""

    def __getattr__(self, name):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as err:
            raise RuntimeError("Error calling __set_name__") from err


@pytest.mark.parametrize("module", [_InterruptedImport, _InterruptedDefinition])
def test_interrupt_while_a_dependency_loads_is_one_line(monkeypatch, capsys, module):
    from onnxslim.__main__ import run

    monkeypatch.setitem(sys.modules, "onnxslim.cli", module("onnxslim.cli"))
    with pytest.raises(SystemExit) as exit_info:
        run()
    assert exit_info.value.code == 130
    assert capsys.readouterr().err == "interrupted: nothing written\n"


def test_an_import_error_of_its_own_is_not_called_an_interruption(monkeypatch):
    from onnxslim.__main__ import run

    monkeypatch.setitem(sys.modules, "onnxslim.cli", None)  # import of it raises ImportError
    with pytest.raises(ImportError):
        run()


class _SelfCausedImport(types.ModuleType):
    """A module whose import fails with an error that is its own cause (`raise err from err`)."""

    def __getattr__(self, name):
        err = ImportError("broken")
        raise err from err


def test_an_import_error_that_causes_itself_is_raised_not_looped_on(monkeypatch):
    from onnxslim.__main__ import run

    monkeypatch.setitem(sys.modules, "onnxslim.cli", _SelfCausedImport("onnxslim.cli"))
    with pytest.raises(ImportError, match="broken"):
        run()
