"""`onnxslim IN -o OUT --int8 --calibration DATA` end to end on the demo model."""

from __future__ import annotations

import json
import re

import numpy as np
import onnx
import pytest
from helpers import assert_one_line_error, op_counts, run_cli, session


def _calibration_folder(tmp_path, count=10, dtype=np.float32, name="input"):
    folder = tmp_path / "calib"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        np.savez(folder / f"{i}.npz", **{name: rng.standard_normal((1, 3, 32, 32)).astype(dtype)})
    return folder


def test_int8_reports_the_sizes_on_disk_of_models_with_external_data(tmp_path, demo_path):
    """A dynamo export keeps its weights in `<name>.data`: the report's sizes are the files' on
    disk, weights included, as the lossless report and `ls` give them."""
    model = tmp_path / "m.onnx"
    onnx.save(onnx.load(demo_path), model, save_as_external_data=True, location="m.onnx.data")
    out, report = tmp_path / "m.int8.onnx", tmp_path / "report.json"
    calibration = ("--calibration", _calibration_folder(tmp_path), "--report", report)
    proc = run_cli(model, "-o", out, "--int8", "static", *calibration)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(report.read_text())["int8"]
    on_disk = [sum(f.stat().st_size for f in tmp_path.glob(f"{m}.onnx*")) for m in ("m", "m.int8")]
    assert [data["size_before"], data["size_after"]] == on_disk
    assert (tmp_path / "m.int8.onnx.data").is_file()  # the input's layout kept


def test_int8_writes_a_qdq_model_and_a_report(tmp_path, demo_path):
    out, report = tmp_path / "demo.int8.onnx", tmp_path / "report.json"
    proc = run_cli(
        demo_path,
        "-o",
        out,
        "--int8",
        "static",  # INT8 compute even where this CPU runs it no faster (auto: float compute)
        "--calibration",
        _calibration_folder(tmp_path),
        "--report",
        report,
    )
    assert proc.returncode == 0, proc.stderr
    ops = op_counts(out)
    assert ops["QuantizeLinear"] > 0 and ops["DequantizeLinear"] > 0
    assert out.stat().st_size < 0.5 * demo_path.stat().st_size
    data = json.loads(report.read_text())["int8"]
    assert data["calibration_samples"] == 6
    assert data["selection_samples"] == 2 and data["test_samples"] == 2
    assert data["drift"]["logits"]["cosine"] > 0.99
    feed = {"input": np.zeros((2, 3, 32, 32), np.float32)}
    assert session(out).run(None, feed)[0].shape == (2, 10)
    assert "drift on test samples (no decision saw them)" in proc.stdout + proc.stderr
    assert any("held out: spread through the data" in note for note in data["notes"])
    assert data["method"] == "percentile 99.99"  # 2 selection samples: too few to choose by
    assert any(note.startswith("kept percentile 99.99 (") for note in data["notes"])


def test_int8_held_out_samples_can_be_the_last_ones(tmp_path, demo_path):
    out, report = tmp_path / "demo.int8.onnx", tmp_path / "report.json"
    calibration = _calibration_folder(tmp_path)
    proc = run_cli(
        demo_path, "-o", out, "--int8", "--calibration", calibration, "--held-out", "last",
        "--report", report,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    notes = json.loads(report.read_text())["int8"]["notes"]
    assert any("held out: the last ones given" in note for note in notes)
    proc = run_cli(demo_path, "-o", out, "--int8", "--calibration", calibration, "--held-out", "x")
    assert proc.returncode == 2 and "--held-out" in proc.stderr


def test_int8_given_data_instead_of_a_mode_points_to_calibration(tmp_path, demo_path):
    proc = run_cli(demo_path, "-o", tmp_path / "x.onnx", "--int8", _calibration_folder(tmp_path))
    assert_one_line_error(proc, 2, "calibration data goes after --calibration")


def test_int8_needs_calibration(tmp_path, demo_path):
    out = tmp_path / "x.onnx"
    proc = run_cli(demo_path, "-o", out, "--int8")
    assert_one_line_error(proc, 2, "--int8 needs --calibration DATA")
    assert "random:N" in proc.stderr
    assert not out.exists()


def test_calibration_needs_int8(tmp_path, demo_path):
    out = tmp_path / "x.onnx"
    proc = run_cli(demo_path, "-o", out, "--calibration", "random:4")
    assert_one_line_error(proc, 2, "--calibration is for INT8: add --int8")
    assert not out.exists()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--calibration", "nowhere"], "--calibration nowhere: no such file or folder"),
        (["--calibration", "random:0"], "bad --calibration 'random:0': expected random:N"),
        (["--calibration", "random:8", "--preprocess", "scale=1"], "random:8 makes random ones"),
        (["--calibration", "CALIB", "--preprocess", "scale=1"], "holds arrays; preprocess"),
        (["--calibration", "CALIB", "--shape", "input:1,3,32,32"], "--shape applies to random"),
        (["--calibration", "random:8", "--eval-split", "0.5", "--test-split", "0.6"], "sum"),
    ],
)
def test_int8_calibration_errors_name_the_option(tmp_path, demo_path, args, message):
    """Errors about the calibration data name --calibration; a --preprocess it cannot apply,
    or splits that leave nothing to calibrate on, are errors (they were ignored: exit 0)."""
    out = tmp_path / "x.onnx"
    folder = str(_calibration_folder(tmp_path))
    proc = run_cli(demo_path, "-o", out, "--int8", *[folder if a == "CALIB" else a for a in args])
    assert_one_line_error(proc, 2, message)
    assert not out.exists()


def test_preprocess_without_int8_or_inputs_is_an_error(tmp_path, demo_path):
    """--preprocess reads calibration, check or benchmark images: alone, or with arrays, it
    would do nothing (and --check-inputs with --no-check)."""
    proc = run_cli(demo_path, "-o", tmp_path / "x.onnx", "--preprocess", "resize=32")
    message = "--preprocess reads images: add --int8 --calibration FOLDER or --check-inputs"
    assert_one_line_error(proc, 2, message)
    folder = _calibration_folder(tmp_path)
    arrays = run_cli(demo_path, "--check-inputs", folder, "--preprocess", "scale=1")
    assert_one_line_error(arrays, 2, "holds arrays; preprocess applies to images only")
    unchecked = run_cli(demo_path, "--check-inputs", folder, "--no-check")
    assert_one_line_error(unchecked, 2, "--check-inputs gives the check inputs; --no-check skips")
    proc = run_cli("bench", demo_path, "--preprocess", "scale=1", "--no-memory")
    assert_one_line_error(proc, 2, "--preprocess applies to images given as --inputs; none were")


def test_int8_rejects_calibration_data_of_the_wrong_dtype(tmp_path, demo_path):
    out = tmp_path / "x.onnx"
    proc = run_cli(
        demo_path,
        "-o",
        out,
        "--int8",
        "--calibration",
        _calibration_folder(tmp_path, dtype=np.int32),
    )
    line = assert_one_line_error(proc, 2, "int32")
    assert "input" in line and "float32" in line
    assert not out.exists()


def test_int8_rejects_calibration_data_with_an_unknown_input(tmp_path, demo_path):
    out = tmp_path / "x.onnx"
    proc = run_cli(
        demo_path,
        "-o",
        out,
        "--int8",
        "--calibration",
        _calibration_folder(tmp_path, name="pixels"),
    )
    assert_one_line_error(proc, 2, "pixels")
    assert not out.exists()


def test_int8_random_calibration_warns(tmp_path, demo_path):
    out = tmp_path / "x.onnx"
    report = tmp_path / "x.json"
    proc = run_cli(demo_path, "-o", out, "--int8", "--calibration", "random:6", "--report", report)
    assert proc.returncode == 0, proc.stderr
    assert "random data" in proc.stderr
    assert "drift on random test samples (no decision saw them; random inputs say" in proc.stdout
    assert json.loads(report.read_text())["int8"]["random_inputs"] is True
    onnx.checker.check_model(onnx.load(out))


def test_int8_equalization_and_bias_correction_flags(tmp_path, demo_path):
    calibration = _calibration_folder(tmp_path)
    chosen = {}
    for equalize, bias in (("on", "off"), ("off", "on")):
        report = tmp_path / f"{equalize}.json"
        proc = run_cli(
            demo_path,
            "-o",
            tmp_path / f"{equalize}.onnx",
            "--int8",
            "--calibration",
            calibration,
            "--equalize",
            equalize,
            "--bias-correction",
            bias,
            "--report",
            report,
            "-q",
        )
        assert proc.returncode == 0, proc.stderr
        data = json.loads(report.read_text())["int8"]
        chosen[equalize] = (data["equalized_pairs"], data["bias_correction"])
    assert chosen["on"][0] > 0 and chosen["on"][1] is False
    assert chosen["off"] == (0, True)


def test_int8_runs_the_lossless_passes_with_the_given_options(tmp_path, demo_path):
    calibration = _calibration_folder(tmp_path)
    kept, fused = tmp_path / "kept.onnx", tmp_path / "fused.onnx"
    assert (
        run_cli(
            demo_path,
            "-o",
            kept,
            "--int8",
            "--calibration",
            calibration,
            "--skip",
            "fuse-batchnorm",
            "-q",
        ).returncode
        == 0
    )
    assert (
        run_cli(demo_path, "-o", fused, "--int8", "--calibration", calibration, "-q").returncode
        == 0
    )
    assert op_counts(kept)["BatchNormalization"] == 2
    assert op_counts(fused)["BatchNormalization"] == 0


def test_int8_refuses_check_inputs(tmp_path, demo_path):
    proc = run_cli(
        demo_path,
        "-o",
        tmp_path / "x.onnx",
        "--int8",
        "--calibration",
        "random:4",
        "--check-inputs",
        _calibration_folder(tmp_path),
    )
    assert_one_line_error(proc, 2, "--check-inputs is for the lossless check")


def test_int8_html_page_states_the_summary_and_every_layer_worst_first(tmp_path, demo_path):
    out, page, report = tmp_path / "demo.int8.onnx", tmp_path / "int8.html", tmp_path / "r.json"
    calibration = _calibration_folder(tmp_path, count=12)
    proc = run_cli(
        demo_path, "-o", out, "--int8", "static", "--calibration", calibration, "--debug-layers",
        "--max-drift", "snr>=15", "--html", page, "--json", report,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    text, data = page.read_text(), json.loads(report.read_text())["int8"]
    # the summary: mode, samples per split, drift on test, size and latency ratios, the budget
    assert "<dd>static INT8</dd>" in text
    assert "8 calibration (activation ranges), 2 selection" in text and "2 test (the" in text
    assert f"worst-sample cosine {data['drift']['logits']['min_cosine']:.6f}" in text
    assert f"size {data['size_after'] / data['size_before']:.2f}x float" in text
    assert f"latency {data['latency_int8_ms'] / data['latency_float_ms']:.2f}x float" in text
    held = r"snr&gt;=15 held on the selection samples (with \d+ node\(s\) back in float )?"
    assert re.search(held + "and on the test samples", text)
    assert "is held on only 2 selection samples" in text  # the protocol warning
    # every layer of the JSON is a row of the page, lowest own SQNR first, the worst highlighted
    layers = data["layers"]
    assert len(layers) >= 3 and {"node", "op", "own_db", "accumulated_db"} <= set(layers[0])
    cells = text.replace("<wbr>", "")  # the line-break hints in long names
    rows = re.findall(r"<tr[^>]*><td class='num'>(\d+)</td><td class='text'>([^<]+)</td>", cells)
    assert [int(position) for position, _ in rows] == [
        index + 1 for index, _ in sorted(enumerate(layers), key=lambda item: item[1]["own_db"])
    ]
    worst = min(layers, key=lambda layer: layer["own_db"])
    assert (
        f"<tr class='worst'><td class='num'>{layers.index(worst) + 1}</td>"
        f"<td class='text'>{worst['node']}</td>"
    ) in cells
    assert f"<td class='num'>{worst['own_db']:.1f}</td>" in text
    assert text.count("<tr class='worst'>") == 1  # one in five layers
    assert "<script" not in text and "src=" not in text


def test_html_is_the_int8_report(tmp_path, demo_path):
    proc = run_cli(demo_path, "-o", tmp_path / "x.onnx", "--html", tmp_path / "x.html")
    assert_one_line_error(proc, 2, "--html writes the INT8 report (with --int8)")


def test_int8_weight_range_and_rounding_flags(tmp_path, demo_path):
    report = tmp_path / "report.json"
    proc = run_cli(
        demo_path,
        "-o",
        tmp_path / "gptq.onnx",
        "--int8",
        "static",  # GPTQ rounds the weights of int8 compute
        "--calibration",
        _calibration_folder(tmp_path),
        "--weight-range",
        "mse",
        "--weight-rounding",
        "gptq",
        "--report",
        report,
        "-q",
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(report.read_text())["int8"]
    assert (data["weight_range"], data["weight_rounding"]) == ("mse", "gptq")


def test_int8_percentile_flag_fixes_the_percentile(tmp_path, demo_path):
    report = tmp_path / "report.json"
    folder = _calibration_folder(tmp_path)
    args = ["-o", tmp_path / "p.onnx", "--int8", "static", "--calibration", folder]
    proc = run_cli(demo_path, *args, "--percentile", "99.9", "--report", report, "-q")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(report.read_text())["int8"]
    assert data["method"] == "percentile 99.9"
    assert not any(note.startswith("kept percentile") for note in data["notes"])
    proc = run_cli(demo_path, *args, "--percentile", "99.9", "--calibration-method", "minmax")
    assert_one_line_error(proc, contains="percentile applies to calibration method")


def test_int8_dynamic_smooth_flag(tmp_path):
    """`--smooth on|off` reaches dynamic INT8: the JSON report says how many MatMul inputs were
    balanced onto the weights."""
    rng = np.random.default_rng(1)
    weight = onnx.numpy_helper.from_array(rng.normal(size=(32, 24)).astype(np.float32), "w")
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("MatMul", ["x", "w"], ["y"], name="proj")],
        "proj",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 16, 32])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 16, 24])],
        [weight],
    )
    model = tmp_path / "proj.onnx"
    onnx.save(
        onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]), model
    )
    folder = tmp_path / "calib"
    folder.mkdir()
    for i in range(10):
        np.save(folder / f"{i}.npy", rng.normal(size=(1, 16, 32)).astype(np.float32) * 10)
    smoothed = {}
    for setting in ("on", "off"):
        report = tmp_path / f"{setting}.json"
        proc = run_cli(
            model, "-o", tmp_path / f"{setting}.onnx", "--int8", "dynamic", "--calibration",
            folder, "--smooth", setting, "--report", report, "-q",
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        smoothed[setting] = json.loads(report.read_text())["int8"]["smoothed_inputs"]
    assert smoothed == {"on": 1, "off": 0}


def test_int8_random_calibration_is_valid_for_the_model(tmp_path):
    """random:N calibration follows the model's uses: token ids into a 2-row table stay 0 or 1,
    where plain random integers (0..9) made ORT fail on the original."""
    table = onnx.numpy_helper.from_array(np.ones((2, 64), np.float32), "table")
    weight = onnx.numpy_helper.from_array(np.ones((64, 64), np.float32), "w")
    graph = onnx.helper.make_graph(
        [
            onnx.helper.make_node("Gather", ["table", "ids"], ["e"], name="embed"),
            onnx.helper.make_node("MatMul", ["e", "w"], ["y"], name="proj"),
        ],
        "embed",
        [onnx.helper.make_tensor_value_info("ids", onnx.TensorProto.INT64, [1, 16])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 16, 64])],
        [table, weight],
    )
    model = tmp_path / "embed.onnx"
    onnx.save(
        onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]), model
    )
    for command in (
        (model, "-o", tmp_path / "q.onnx", "--int8", "--calibration", "random:6", "-q"),
        ("bench", model, "--no-memory", "--runs", "3"),
    ):
        proc = run_cli(*command)
        assert proc.returncode == 0, proc.stderr


def test_int8_random_calibration_finds_dims_the_model_runs_with(tmp_path):
    """A reflect Pad of 40 needs more than 40 samples: random:N calibration (and bench's random
    inputs, and quantize() in Python) retry other dims as the lossless check does, and the
    warning states those used."""
    weight = onnx.numpy_helper.from_array(np.ones((4, 1, 3), np.float32), "w")
    pads = onnx.numpy_helper.from_array(np.array([0, 0, 40, 0, 0, 40], np.int64), "pads")
    graph = onnx.helper.make_graph(
        [
            onnx.helper.make_node("Pad", ["audio", "pads"], ["padded"], mode="reflect"),
            onnx.helper.make_node("Conv", ["padded", "w"], ["y"], name="conv"),
        ],
        "audio",
        [onnx.helper.make_tensor_value_info("audio", onnx.TensorProto.FLOAT, [1, 1, "n"])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4, None])],
        [weight, pads],
    )
    model = tmp_path / "audio.onnx"
    onnx.save(
        onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]), model
    )
    for command in (
        (model, "-o", tmp_path / "q.onnx", "--int8", "--calibration", "random:12"),
        ("bench", model, "--no-memory", "--runs", "3"),
    ):
        proc = run_cli(*command)
        assert proc.returncode == 0, proc.stderr
        (picked,) = re.findall(r"audio float32\[1,1,n\] at \[1,1,(\d+)\]", proc.stderr)
        assert int(picked) > 40
    import onnxslim  # the same from Python

    result = onnxslim.quantize(model, "random:12", progress=False, measure_latency=False)
    assert result.report.calibration_samples > 0


def test_int8_warnings_go_to_stderr_and_survive_quiet(tmp_path, demo_path):
    """A warning of the INT8 report is a stderr line, shown once, with --quiet too (a script that
    keeps only errors still hears that the model it gets drifts or is slower); the report stays on
    stdout without it."""
    calibration = _calibration_folder(tmp_path, count=12)
    args = ["--int8", "static", "--calibration", calibration, "--max-drift", "snr>=15"]
    warning = re.compile(r"^warning: the budget snr>=15 is held on only 2 selection samples", re.M)
    loud = run_cli(demo_path, "-o", tmp_path / "a.onnx", *args)
    assert loud.returncode == 0, loud.stderr
    assert len(warning.findall(loud.stderr)) == 1 and "warning:" not in loud.stdout
    assert "INT8 quantization" in loud.stdout  # the report
    quiet = run_cli(demo_path, "-o", tmp_path / "b.onnx", *args, "-q")
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stdout == "" and len(warning.findall(quiet.stderr)) == 1


def test_int8_on_random_data_of_a_cut_model(tmp_path, demo_path):
    """`--inputs` cuts the graph: random:N calibration synthesizes the cut model's inputs (it
    was refused: 'sample 0: unknown input' for the original's)."""
    out, report = tmp_path / "cut.int8.onnx", tmp_path / "r.json"
    proc = run_cli(
        demo_path,
        "-o",
        out,
        "--inputs",
        "relu2_out",
        "--int8",
        "--calibration",
        "random:12",
        "--report",
        report,
    )
    assert proc.returncode == 0, proc.stderr
    assert "cut to the subgraph from relu2_out" in proc.stdout
    # sizes of what was quantized: the cut model as serialized, not the whole file
    size_before = json.loads(report.read_text())["int8"]["size_before"]
    assert size_before < 0.5 * demo_path.stat().st_size
    model = onnx.load(out)
    assert [v.name for v in model.graph.input] == ["relu2_out"]
    shape = [d.dim_value or 1 for d in model.graph.input[0].type.tensor_type.shape.dim]
    feed = np.abs(np.random.default_rng(0).standard_normal(shape)).astype(np.float32)
    assert session(out).run(None, {"relu2_out": feed})[0].shape == (1, 10)
