"""Benchmark: report figures, drift, pass/fail checks, JSON/HTML output, the CLI, CPU detection."""

from __future__ import annotations

import json
import math
import types

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from click.testing import CliRunner
from helpers import FLOAT, INT64, REPO, assert_one_line_error, const, make_model, run_cli, vi
from onnx import helper
from rich.console import Console

import onnxslim.bench
from onnxslim.bench import (
    SCHEMA_VERSION,
    BenchReport,
    Latency,
    ModelResult,
    _timed_runs,
    benchmark,
    fewest_runs,
    timing_verdict,
)
from onnxslim.cli.bench import bench_command
from onnxslim.cpu import available_memory, cpu_info, parse_cpuinfo
from onnxslim.errors import OnnxSlimError
from onnxslim.passes.registry import rewrites
from onnxslim.render.jsonfile import write_json
from onnxslim.render.progress import Steps
from onnxslim.render.verdict import slower_warning

FAST = {"runs": 5, "warmup": 1, "measure_memory": False, "progress": False}
WEIGHTS = np.arange(12, dtype=np.float32).reshape(4, 3) / 10


def classifier(weights=WEIGHTS, classes=3):
    """scores = x @ W (float[batch, classes]) and label = argmax (int64[batch])."""
    nodes = [
        helper.make_node("MatMul", ["x", "W"], ["scores"]),
        helper.make_node("ArgMax", ["scores"], ["label"], axis=1, keepdims=0),
    ]
    return make_model(
        nodes,
        [vi("x", FLOAT, ["batch", 4])],
        [vi("scores", FLOAT, ["batch", classes]), vi("label", INT64, ["batch"])],
        [const("W", weights)],
    )


@pytest.fixture
def models(model_path):
    """Reference, an identical copy, and a model whose weights drifted."""
    return (
        model_path(classifier(), "ref.onnx"),
        model_path(classifier(), "same.onnx"),
        model_path(classifier(WEIGHTS + 0.05), "drift.onnx"),
    )


def test_report_figures(models):
    ref, same, drifted = models
    report = benchmark([ref, same, drifted], **FAST)
    assert [m.name for m in report.models] == ["ref.onnx", "same.onnx", "drift.onnx"]
    assert (
        report.samples == 8
        and report.random_inputs
        and "drift on random inputs says little" in report.notes[0]
    )
    assert (report.threads, report.ort_opt_level, report.runs, report.warmup) == (1, "all", 5, 1)
    first = report.models[0]
    assert first.drift is None and first.nodes == 2 and first.file_size == ref.stat().st_size
    assert first.latency.min <= first.latency.median <= first.latency.p90
    assert first.session_ms > 0 and first.throughput > 0 and first.peak_memory_mb is None
    assert report.size_ratio(report.models[1]) == 1.0 and report.speedup(first) == 1.0
    identical = report.models[1].drift
    assert set(identical) == {"scores", "label"}
    assert identical["scores"].max_abs == 0 and identical["scores"].cosine == 1.0
    assert identical["label"].exact_match is True
    drift = report.models[2].drift["scores"]
    assert drift.max_abs > 0 and drift.cosine < 1.0 and drift.top1_agreement is not None


def test_drift_matches_hand_computed_on_given_inputs(models):
    ref, _, drifted = models
    x = np.array([[1, 0, 0, 0], [0, 0, 0, 2]], np.float32)
    report = benchmark([ref, drifted], inputs=[{"x": x}], **FAST)
    drift = report.models[1].drift["scores"]
    # (x @ (W + 0.05)) - (x @ W) = 0.05 * row sums of x: 0.05 per element in row 0, 0.1 in row 1
    assert drift.max_abs == pytest.approx(0.1) and drift.mean_abs == pytest.approx(0.075)
    assert drift.top1_agreement == 1.0 and report.samples == 1 and not report.random_inputs
    assert report.notes == []


def test_check_flags(models):
    ref, same, drifted = models
    report = benchmark([ref, same, drifted], **FAST)
    assert report.check() == []
    assert report.check(max_drift="max_abs<=0") == [
        "drift.onnx: output 'scores': "
        f"max_abs {report.models[2].drift['scores'].max_abs:.6g} fails max_abs<=0"
    ]
    assert report.check(max_drift="cosine>=0.5", min_speedup=1e-9) == []
    failures = report.check(min_speedup=1e9)
    assert (
        len(failures) == 2
        and failures[0].startswith("same.onnx: speedup ")
        and "below 1e+09x" in failures[0]
    )


def test_shape_mismatch_is_reported(model_path):
    ref = model_path(classifier(), "ref.onnx")
    wider = model_path(classifier(np.ones((4, 5), np.float32), classes=5), "wider.onnx")
    report = benchmark([ref, wider], **FAST)
    assert (
        report.models[1].drift["scores"].mismatch == "shape [1, 5] vs reference [1, 3] (sample 0)"
    )
    assert report.check(max_drift="cosine>=0.9")[0].startswith(
        "wider.onnx: output 'scores': shape [1, 5]"
    )


def test_models_as_protos_shapes_and_input_sources(tmp_path):
    proto = classifier()
    report = benchmark([proto, classifier()], shapes=["x:3,4"], inputs=None, **FAST)
    assert [m.name for m in report.models] == ["model0", "model1"]
    assert benchmark([ir.serde.deserialize_model(proto)], **FAST).models[0].nodes == 2
    serialized = benchmark([proto.SerializeToString(), proto], shapes=["x:3,4"], **FAST)
    assert [(m.nodes, m.file_size) for m in serialized.models] == [(2, proto.ByteSize())] * 2
    assert serialized.models[1].drift["scores"].max_abs == 0
    with pytest.raises(OnnxSlimError, match="serialized model, onnx.ModelProto .* got int"):
        benchmark([1], **FAST)
    with pytest.raises(OnnxSlimError, match="cannot read model 0: "):
        benchmark([b"\x00junk"], **FAST)
    assert report.models[1].drift["scores"].shape == (3, 3)
    np.savez(tmp_path / "data.npz", x=np.ones((4, 4), np.float32))
    assert benchmark([proto], inputs=tmp_path / "data.npz", **FAST).samples == 4
    assert benchmark([proto], inputs="random:2", **FAST).samples == 2


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"inputs": [{"y": np.ones((1, 4), np.float32)}]}, "unknown input 'y'"),
        (
            {"inputs": [{"x": np.ones((1, 4), np.int32)}]},
            "has dtype int32, the model expects float32",
        ),
        (
            {"inputs": [{"x": np.ones((1, 5), np.float32)}]},
            r"has shape \[1,5\], the model expects float32\[batch,4\]",
        ),
        (
            {"inputs": [{"x": np.ones((1, 4), np.float32)}], "shapes": {"x": (1, 4)}},
            "shapes apply to random inputs",
        ),
        ({"inputs": []}, "no input samples"),
        ({"ort_opt_level": "max"}, "unknown ORT optimization level 'max'"),
        ({"runs": 0}, "runs must be >= 1"),
    ],
)
def test_user_errors(models, kwargs, message):
    with pytest.raises(OnnxSlimError, match=message):
        benchmark([models[0]], **{**FAST, **kwargs})


def test_model_errors(tmp_path, models):
    with pytest.raises(OnnxSlimError, match="nothing to benchmark"):
        benchmark([], **FAST)
    with pytest.raises(OnnxSlimError, match="missing.onnx: no such file"):
        benchmark([tmp_path / "missing.onnx"], **FAST)
    (tmp_path / "junk.onnx").write_bytes(b"\x00junk")
    with pytest.raises(OnnxSlimError, match="junk.onnx: not a valid ONNX model"):
        benchmark([tmp_path / "junk.onnx"], **FAST)
    other = make_model(
        [helper.make_node("Identity", ["z"], ["scores"])],
        [vi("z", FLOAT, [1, 3])],
        [vi("scores", FLOAT, [1, 3])],
    )
    with pytest.raises(OnnxSlimError, match="model1: sample 0: unknown input 'x'"):
        benchmark([classifier(), other], **FAST)


def test_peak_memory_in_subprocess(models):
    report = benchmark([models[0]], runs=2, warmup=0, progress=False)
    assert (
        isinstance(report.models[0].peak_memory_mb, float) and report.models[0].peak_memory_mb >= 0
    )


def test_json_schema(models, tmp_path):
    report = benchmark(models[:3:2], **FAST)
    report.write_json(tmp_path / "bench.json")
    data = json.loads((tmp_path / "bench.json").read_text())
    assert data == json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["schema_version"] == SCHEMA_VERSION
    assert set(data) == {
        "schema_version",
        "onnxruntime",
        "cpu",
        "settings",
        "notes",
        "warnings",
        "created",
        "versions",
        "command",
        "reference",
        "verdicts",
        "models",
    }
    assert set(data["cpu"]) == {"model", "arch", "flags"} and set(data["cpu"]["flags"]) >= {
        "avx2",
        "avx512",
        "vnni",
    }
    assert data["settings"] == {
        "threads": 1,
        "ort_opt_level": "all",
        "runs": 5,
        "warmup": 1,
        "samples": 8,
        "random_inputs": True,
        "inputs": data["settings"]["inputs"],
    }
    assert all(set(entry) == {"dtype", "shapes"} for entry in data["settings"]["inputs"].values())
    ref, other = data["models"]
    assert set(ref) == {
        "name",
        "file_size_bytes",
        "nodes",
        "session_create_ms",
        "session_create_min_ms",
        "latency_ms",
        "throughput_per_s",
        "peak_memory_mb",
        "speedup",
        "size_ratio",
        "drift",
    }
    assert set(ref["latency_ms"]) == {"median", "p90", "mean", "min"}
    assert ref["drift"] is None and ref["speedup"] == 1.0 and data["reference"] == "ref.onnx"
    assert set(other["drift"]) == {"scores", "label"}
    assert set(other["drift"]["scores"]) == {
        "name",
        "dtype",
        "shape",
        "max_abs",
        "mean_abs",
        "rel_error",
        "reference_rms",
        "cosine",
        "min_cosine",
        "predicted_cosine",
        "snr_db",
        "predicted_snr_db",
        "top1_agreement",
        "one_value_each",
        "saturated",
        "exact_match",
        "nonfinite_mismatches",
        "mismatch",
    }


def test_html_report(models, tmp_path):
    report = benchmark(list(models), **FAST)
    report.write_html(tmp_path / "bench.html")
    page = (tmp_path / "bench.html").read_text()
    assert page.startswith("<!doctype html>") and page.count("<div class='chart'>") == 3
    for text in (
        "ref.onnx",
        "drift.onnx",
        "scores",
        "label",
        "Median latency",
        "Max abs error per output",
        f"{report.models[0].latency.median:.3f}",
        f"{report.models[2].drift['scores'].max_abs:.4g}",
        report.cpu.model,
        "drift on random inputs says little",
    ):
        assert text in page
    assert "<script" not in page and "src=" not in page and "<link" not in page  # self-contained
    # no temporary file left behind
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]


def test_write_errors(models, tmp_path):
    report = benchmark([models[0]], **FAST)
    with pytest.raises(OnnxSlimError, match="cannot write"):
        report.write_json(tmp_path / "no" / "such" / "dir.json")


def test_render(models):
    report = benchmark(list(models), **FAST)
    console = Console(record=True, width=160)
    report.render(console)
    text = console.export_text()
    for word in (
        "AVX2",
        "AVX-512",
        "VNNI",
        "onnxruntime",
        "1 intra-op thread",
        "level: all",
        "drift.onnx",
        "Speedup",
        "Mean",
        "Output drift vs reference",
        "exact",
        "note: inputs are random",
    ):
        assert word in text
    assert "Mem" not in text  # not measured: no column, no caption
    report.models[1].peak_memory_mb = 12.5
    report.render(console := Console(record=True, width=160))
    text = console.export_text()
    assert "Mem MB" in text and "Mem = peak RSS" in text
    report.models[1].peak_memory_mb = None
    narrow = Console(record=True, width=80)
    report.render(narrow)
    assert "mean/min latency and runs/s: see --json/--html" in narrow.export_text()


def test_cli_pass_fail_and_outputs(models, tmp_path):
    ref, same, drifted = map(str, models)
    runner = CliRunner()
    common = ["--runs", "5", "--warmup", "1", "--no-memory"]
    result = runner.invoke(
        bench_command,
        [
            ref,
            same,
            *common,
            "--json",
            str(tmp_path / "b.json"),
            "--html",
            str(tmp_path / "b.html"),
            "--max-drift",
            "max_abs<=0",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "Benchmark" in result.stdout
    assert result.stderr.startswith("warning: dynamic input dims picked by onnxslim")  # batch
    assert json.loads((tmp_path / "b.json").read_text())["models"][1]["name"] == "same.onnx"
    assert (tmp_path / "b.html").is_file()

    result = runner.invoke(
        bench_command, [ref, drifted, *common, "-q", "--max-drift", "cosine>=0.999999999"]
    )
    assert result.exit_code == 1 and result.stdout == ""
    warning, fail = result.stderr.splitlines()  # -q keeps warnings
    assert warning.startswith("warning: dynamic input dims picked by onnxslim")
    assert "pass --shape NAME:DIMS (shapes= in Python) with the dims you deploy" in warning
    assert fail.startswith("FAIL drift.onnx: output 'scores': worst-sample cosine ")

    result = runner.invoke(bench_command, [ref, same, *common, "-q", "--min-speedup", "1000000"])
    assert result.exit_code == 1 and "FAIL same.onnx: speedup" in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--max-drift", "cosine<=1"], "error: bad drift limit 'cosine<=1'"),
        (["--shape", "x=1"], "error: bad shape 'x=1'"),
        (["--inputs", "nowhere"], "error: inputs nowhere: no such file or folder"),
        (["--inputs", "pics", "--preprocess", "zoom=2"], "error: bad preprocess item 'zoom=2'"),
        (["--preprocess", "scale=1"], "error: --preprocess applies to images given as --inputs"),
    ],
)
def test_cli_user_errors(models, args, message):
    result = CliRunner().invoke(
        bench_command, [str(models[0]), "--runs", "1", "--no-memory", *args]
    )
    assert (
        result.exit_code == 2
        and result.stderr.startswith(message)
        and result.stderr.count("\n") == 1
    )


def test_cli_end_to_end_subprocess(models, tmp_path):
    ref, same, drifted = models
    proc = run_cli(
        "bench",
        ref,
        same,
        "--runs",
        "5",
        "--warmup",
        "1",
        "--json",
        tmp_path / "r.json",
        "--max-drift",
        "cosine>=0.99",
        "--threads",
        "1",
        "--ort-opt-level",
        "basic",
    )
    assert proc.returncode == 0, proc.stderr
    assert "same.onnx" in proc.stdout and "ORT optimization level: basic" in proc.stdout
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["settings"]["ort_opt_level"] == "basic" and data["models"][0]["peak_memory_mb"] >= 0

    proc = run_cli(
        "bench", ref, drifted, "--runs", "2", "--no-memory", "--max-drift", "max_abs<=1e-6", "-q"
    )
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[-1].startswith("FAIL drift.onnx: output 'scores': max_abs")

    assert_one_line_error(
        run_cli("bench", tmp_path / "nope.onnx", "--no-memory"), 2, "nope.onnx: no such file"
    )
    assert_one_line_error(
        run_cli("bench", ref, "--no-memory", "--inputs", "random:zero"), 2, "random:N"
    )


def test_a_reference_that_does_not_load_is_the_one_named(tmp_path):
    # both fail (a custom op ORT lacks): the error names the reference, not the model after it
    model = make_model(
        [helper.make_node("Foo", ["x"], ["y"], domain="my.custom")],
        [vi("x", FLOAT, [2])],
        [vi("y", FLOAT, [2])],
        opsets={"my.custom": 1},
    )
    for name in ("ref.onnx", "other.onnx"):
        onnx.save(model, tmp_path / name)
    proc = run_cli("bench", tmp_path / "ref.onnx", tmp_path / "other.onnx", "--no-memory")
    assert_one_line_error(proc, 2, "error: ref.onnx does not load in ONNX Runtime")


def test_cpu_info_parsing(tmp_path):
    x86 = (
        "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu sse4_2 avx avx2 fma\n\n"
        "processor\t: 1\n"
    )
    info = parse_cpuinfo(x86, "x86_64")
    assert info.model == "AMD EPYC 7B13" and info.features == ["AVX2"]
    assert info.flags == {"avx2": True, "avx512": False, "vnni": False, "neon": False}
    assert parse_cpuinfo("flags : avx2 avx512f avx512_vnni\n", "x86_64").features == [
        "AVX2",
        "AVX-512",
        "VNNI",
    ]
    assert parse_cpuinfo("flags : avx2 avx_vnni\n", "x86_64").flags["vnni"] is True
    arm = parse_cpuinfo(
        "processor : 0\nFeatures : fp asimd asimddp\nCPU implementer : 0x41\n", "aarch64"
    )
    assert arm.features == ["NEON"] and arm.arch == "aarch64"
    fallback = cpu_info(tmp_path / "missing")
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24000000 kB\nMemAvailable:   20000000 kB\n")
    assert available_memory(meminfo) == 20000000 * 1024
    meminfo.write_text("MemTotal:       24000000 kB\n")
    assert available_memory(meminfo) is None and available_memory(tmp_path / "missing") is None
    assert fallback.model and fallback.flags["avx2"] is False


def test_random_inputs_take_the_given_shapes(tmp_path):
    model = make_model(
        [helper.make_node("Relu", ["x"], ["y"])],
        [vi("x", FLOAT, ["n", 4])],
        [vi("y", FLOAT, ["n", 4])],
    )
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    report = benchmark(
        [path, path],
        inputs="random:3",
        shapes=["x:5,4"],
        runs=2,
        warmup=0,
        measure_memory=False,
        progress=False,
    )
    assert report.samples == 3
    proc = run_cli(
        "bench",
        path,
        path,
        "--inputs",
        "random:2",
        "--shape",
        "x:5,4",
        "--runs",
        "2",
        "--no-memory",
        "-q",
    )
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(
    "median, fastest, verdict",
    [
        (1.05, 1.05, "slower"),
        (1.00, 1.00, "same"),
        (1.05, 1.01, "same"),  # the min disagrees: noise
        (1.01, 1.05, "same"),
        (0.95, 0.90, "faster"),
        (0.95, 0.99, "same"),
    ],
)
def test_timing_verdict_rule(median, fastest, verdict):
    assert timing_verdict(median, fastest) == verdict


def synthetic_report(size, load, median, fastest) -> BenchReport:
    """A reference at 1000 bytes, 10 ms load (min 9) and 1 ms per run (min 0.8), and a model at
    the given multiples of those figures."""

    def result(name, k_size, k_load, k_median, k_min):
        latency = Latency(k_median, 1.2 * k_median, k_median, 0.8 * k_min)
        drift = None if name == "ref.onnx" else {}
        return ModelResult(
            name, int(1000 * k_size), 3, 10 * k_load, latency, None, drift, 9 * k_load
        )

    return BenchReport(
        [result("ref.onnx", 1, 1, 1, 1), result("ours.onnx", size, load, median, fastest)],
        cpu_info(),
        "1.0",
        1,
        "all",
        50,
        5,
        8,
        True,
    )


def test_verdict_on_synthetic_measurements():
    report = synthetic_report(size=0.5, load=0.5, median=1.05, fastest=1.05)
    (verdict,) = report.verdicts
    assert (verdict.size.verdict, verdict.load.verdict, verdict.per_run.verdict) == (
        "smaller",
        "faster",
        "slower",
    )
    assert verdict.per_run.ratio == pytest.approx(1.05) and verdict.slower == ["per run"]
    data = report.to_dict()["verdicts"][0]
    assert data["per_run"]["verdict"] == "slower" and data["per_run"]["noise"] == 0.02
    assert data["text"].startswith("ours.onnx vs ref.onnx: smaller: 0.50x file size")
    assert "load: faster, 0.50x (5.0 vs 10.0 ms median" in data["text"]
    assert "per run: SLOWER, 1.05x (1.050 vs 1.000 ms median; min 1.05x" in data["text"]
    text = report.render()
    assert f"verdict: {data['text']}" in text and "verdict rule: " in text

    same = synthetic_report(size=1, load=1.04, median=1.0, fastest=1.0).verdicts[0]
    assert (same.size.verdict, same.load.verdict, same.per_run.verdict) == ("same",) * 3
    assert same.slower == [] and "same size: 1.00x" in same.to_dict()["text"]
    assert "per run: same within noise, 1.00x" in same.to_dict()["text"]
    quick = synthetic_report(size=1, load=1.08, median=1.0, fastest=1.0).verdicts[0]
    assert quick.load.verdict == "same"  # 10.8 vs 10.0 ms: under LOAD_FLOOR_MS apart
    almost = synthetic_report(size=0.9999, load=1.0, median=1.0, fastest=1.0).verdicts[0]
    assert almost.size.verdict == "same"  # a 1,920-byte saving on 30 MiB read "smaller: 1.00x"
    assert (
        synthetic_report(size=0.994, load=1.0, median=1.0, fastest=1.0).verdicts[0].size.verdict
        == "smaller"
    )
    bigger = synthetic_report(size=1.4, load=1.5, median=1.0, fastest=1.0).verdicts[0]
    assert bigger.size.verdict == "bigger" and bigger.slower == ["load"]


def test_a_verdict_says_when_other_load_disturbed_the_timing():
    """mtcnn_onet timed while other jobs ran: medians 3.08x, fastest runs 1.02x. The verdict line
    and the JSON say the timing was disturbed; ratios that agree say nothing."""
    busy = synthetic_report(size=1, load=1, median=3.08, fastest=1.03).verdicts[0]
    assert busy.per_run.disturbed and busy.to_dict()["per_run"]["disturbed"] is True
    assert (
        "min 1.03x; 50 interleaved runs) [DISTURBED: median and min disagree"
        in (busy.to_dict()["text"])
    )
    quiet = synthetic_report(size=1, load=1, median=1.10, fastest=1.04).verdicts[0]
    assert not quiet.per_run.disturbed and "DISTURBED" not in quiet.to_dict()["text"]
    assert not quiet.size.disturbed  # sizes have no minimums
    assert "by a disturbed timing" in slower_warning(busy, None)
    assert "disturbed" not in slower_warning(quiet, None)


def test_interleaved_runs_rotate_which_model_runs_first():
    """Run r starts at model r: no model always runs right after the same other one (a cache or
    clock state one leaves would favour or hurt the next every time)."""
    order = []

    class Recorder:
        def __init__(self, label):
            self.label = label

        def run(self, feed):
            order.append(self.label)

    sessions = [Recorder(label) for label in "abc"]
    times = _timed_runs(sessions, [{}], warmup=0, runs=3, bar=Steps(None, None), phases=False)
    assert order == list("abcbcacab") and [len(t) for t in times] == [3, 3, 3]
    # two models on two samples: each runs first on each sample (not A always first on sample 0)
    order.clear()
    samples = [{"n": 0}, {"n": 1}]
    _timed_runs(sessions[:2], samples, warmup=0, runs=4, bar=Steps(None, None), phases=False)
    assert order == list("abbabaab")


def test_slower_warning_names_the_passes_to_skip():
    verdict = synthetic_report(size=1, load=1, median=1.1, fastest=1.1).verdicts[0]
    applied = ["fold-constants", "fuse-layernorm", "prune", "residual-sum", "fuse-layernorm"]
    suspects = rewrites(applied)
    assert suspects == ["fuse-layernorm", "residual-sum"]
    line = slower_warning(verdict, suspects)
    assert line.startswith("ours.onnx is measurably SLOWER than ref.onnx (per run 1.10x)")
    assert "--skip fuse-layernorm,residual-sum" in line
    assert slower_warning(verdict, None).endswith("(per run 1.10x)")


def test_a_bfloat16_input_is_fed(tmp_path):
    """bench read its inputs' types from ORT, which names bfloat16 `tensor(bfloat16)`: it refused
    a jax2onnx bf16 MLP that optimize checked on synthesized bfloat16 inputs (exit 2)."""
    bf16 = onnx.TensorProto.BFLOAT16
    model = make_model(
        [
            helper.make_node("Cast", ["x"], ["f"], to=onnx.TensorProto.FLOAT),
            helper.make_node("Relu", ["f"], ["r"]),
            helper.make_node("Cast", ["r"], ["y"], to=bf16),
        ],
        [vi("x", bf16, [2, 8])],
        [vi("y", bf16, [2, 8])],
    )
    onnx.save(model, tmp_path / "bf16.onnx")
    report = benchmark([tmp_path / "bf16.onnx", tmp_path / "bf16.onnx"], **FAST)
    assert "same size: 1.00x file size" in report.to_dict()["verdicts"][0]["text"]
    proc = run_cli("bench", tmp_path / "bf16.onnx", "--runs", "2", "--no-memory")
    assert proc.returncode == 0, proc.stderr


def test_verdict_in_every_report(models, tmp_path):
    report = benchmark(list(models[:2]), **FAST)
    line = report.to_dict()["verdicts"][0]["text"]
    assert line.startswith("same.onnx vs ref.onnx: same size: 1.00x file size")
    assert "; load: " in line and "; per run: " in line and "5 interleaved runs" in line
    assert f"verdict: {line}" in report.render()
    report.write_html(tmp_path / "bench.html")
    assert "verdict rule: " in (tmp_path / "bench.html").read_text()


def test_optimize_bench_says_verdict_and_warns_once(tmp_path):
    report = tmp_path / "r.json"
    proc = run_cli(
        REPO / "models" / "demo.onnx", "-o", tmp_path / "d.onnx", "--bench", "--report", report
    )
    assert proc.returncode == 0, proc.stderr
    verdicts = [line for line in proc.stdout.splitlines() if line.startswith("verdict: ")]
    assert len(verdicts) == 1 and verdicts[0].startswith("verdict: d.onnx vs demo.onnx: smaller: ")
    assert (proc.stdout + proc.stderr).count("dynamic input dims picked by onnxslim") == 1
    data = json.loads(report.read_text())
    assert data["history"] and f"verdict: {data['bench']['verdicts'][0]['text']}" == verdicts[0]


def test_json_reports_are_strict_json(tmp_path):
    """Python writes inf and NaN as Infinity / NaN, which strict JSON readers (jq, a browser's
    JSON.parse) refuse: a report writes them null."""

    def refuse(name):
        raise ValueError(f"not strict JSON: {name}")

    write_json(
        {"snr_db": math.inf, "rows": [{"noise_db": -math.inf}, math.nan, 1.5]}, tmp_path / "r.json"
    )
    data = json.loads((tmp_path / "r.json").read_text(), parse_constant=refuse)
    assert data == {"snr_db": None, "rows": [{"noise_db": None}, None, 1.5]}


def detector(score_gain: float) -> onnx.ModelProto:
    """A conv's 4 box channels (times 100: pixels) concatenated with the sigmoids of its 2 score
    logits (times `score_gain`), as a detector's output."""
    w = np.random.default_rng(0).normal(size=(6, 3, 3, 3)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Split", ["c", "sizes"], ["raw", "logits"], axis=1),
        helper.make_node("Mul", ["raw", "pixels"], ["boxes"]),
        helper.make_node("Mul", ["logits", "gain"], ["scaled"]),
        helper.make_node("Sigmoid", ["scaled"], ["scores"]),
        helper.make_node("Concat", ["boxes", "scores"], ["y"], axis=1),
    ]
    inits = [const("w", w), const("sizes", np.array([4, 2], np.int64))]
    inits += [const("pixels", np.float32(100.0)), const("gain", np.float32(score_gain))]
    return make_model(nodes, [vi("x", FLOAT, [1, 3, 8, 8])], [vi("y", FLOAT, [1, 6, 8, 8])], inits)


def test_a_detectors_scores_drift_is_given_apart_from_its_boxes():
    """nudenet's INT8 YOLOv8 read 40.9 dB on its output whole, its class scores 14 dB: the drift
    table and a budget hid them. Each part of an output mixing scores with other channels gets
    its own row, which a budget judges too."""
    rng = np.random.default_rng(1)
    inputs = [{"x": rng.normal(size=(1, 3, 8, 8)).astype(np.float32)} for _ in range(4)]
    report = benchmark(
        [detector(1.0), detector(1.2)], inputs=inputs, runs=1, warmup=0, measure_memory=False,
        progress=False,
    )  # fmt: skip
    drift = report.models[1].drift
    scores = ["y (its [0, 1] channel 4)", "y (its [0, 1] channel 5)"]
    assert set(drift) == {"y", *scores, "y (its other channels)"}
    assert max(drift[name].snr_db for name in scores) < 30 and drift["y"].snr_db > 80
    assert drift["y (its other channels)"].snr_db == math.inf
    failures = report.check("snr>=40")  # the scores miss it
    assert [f.split(":")[1] for f in failures] == [f" output '{name}'" for name in scores]


def test_runs_a_microsecond_apart_are_the_same_speed():
    """A 10 us classifier read SLOWER at 1.02x (0.2 us apart, both ratios past 2%): timer and call
    jitter. Medians within PER_RUN_FLOOR_MS run alike; further apart, the noise rule decides."""
    ref = Latency(0.0100, 0.0110, 0.0100, 0.0098)
    assert Latency(0.0103, 0.0113, 0.0103, 0.0101).versus(ref)[1] == "same"
    assert Latency(0.0150, 0.0160, 0.0150, 0.0140).versus(ref)[1] == "slower"
    # a choice between models counts every difference; bench's verdict has the floor too
    assert Latency(0.0103, 0.0113, 0.0103, 0.0101).versus(ref, floor_ms=0)[1] == "slower"
    report = synthetic_report(size=1, load=1, median=1.03, fastest=1.03)
    for model in report.models:
        model.latency = Latency(*(t / 100 for t in vars(model.latency).values()))  # 10 us
    (verdict,) = report.verdicts
    assert verdict.per_run.verdict == "same" and verdict.per_run.ratio == pytest.approx(1.03)
    assert "medians at least 1 us apart" in report.render()


def _within(seconds: float):
    """A timing's `enough` that stops once its runs take `seconds`, after `fewest_runs` at least."""
    return lambda done, elapsed, _: fewest_runs(done, elapsed) and elapsed > seconds


def test_a_timing_given_a_time_makes_fewer_rounds_of_a_model_taking_a_second_a_run(monkeypatch):
    """A 1024x1024 segmenter (not tuned on), a second a run: 5 warm-up rounds and 10 timed ones of
    two models each timing, 214 s of 570 quantizing. Now 2 warm-up rounds and 5 timed ones; a
    timing given no time (the bench command's) warms up and runs as asked."""
    clock = types.SimpleNamespace(now=0.0)
    monkeypatch.setattr(onnxslim.bench.time, "perf_counter", lambda: clock.now)

    class SecondARun:
        runs = 0

        def run(self, feed):
            clock.now += 1.0
            self.runs += 1

    class Steps:
        def advance(self):
            pass

        def describe(self, text):
            pass

    sessions = [SecondARun(), SecondARun()]
    times = _timed_runs(sessions, [{}], 5, 100, Steps(), enough=_within(6.0))
    assert [len(t) for t in times] == [5, 5] and [s.runs for s in sessions] == [7, 7]
    assert fewest_runs(10, 0.1) and not fewest_runs(5, 0.1)  # fast rounds: 10
    sessions = [SecondARun(), SecondARun()]
    times = _timed_runs(sessions, [{}], 5, 8, Steps())
    assert [len(t) for t in times] == [8, 8] and [s.runs for s in sessions] == [13, 13]
