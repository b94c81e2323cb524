"""The HTML benchmark page: what it states, and how it renders in headless Chromium (when
installed) at 1280 px: no sideways overflow, long names wrapped."""

from __future__ import annotations

import importlib.util
import re

import numpy as np
import pytest
from helpers import REPO
from test_bench import FAST, WEIGHTS, classifier

from onnxslim.bench import benchmark
from onnxslim.render.html import bench_page

LONG = "a_classifier_with_a_very_long_and_descriptive_file_name_that_would_overflow_a_table.onnx"


def _screenshot_script():
    spec = importlib.util.spec_from_file_location(
        "html_screenshot", REPO / "scripts" / "html_screenshot.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def page(model_path, tmp_path):
    ref = model_path(classifier(), "ref.onnx")
    same = model_path(classifier(), "same.onnx")
    drifted = model_path(classifier(WEIGHTS + 0.05), LONG)
    report = benchmark([ref, same, drifted], shapes={"x": (2, 4)}, **FAST)
    report.command = f"onnxslim bench ref.onnx same.onnx {LONG} --html report.html"
    path = tmp_path / "report.html"
    report.write_html(path)
    return path, report


def test_page_states_units_shapes_command_date_versions(page):
    path, report = page
    text = path.read_text()
    headers = ("Median (ms)", "Session load (ms)", "SNR (dB)", "Rel error (RMS)")
    for header in headers:
        assert f">{header}</th>" in text
    assert "Peak mem" not in text  # not measured: no column
    report.models[0].peak_memory_mb = 10.0
    assert ">Peak mem (MB)</th>" in bench_page(report)
    assert "<code>x float32[2,4]</code>" in text  # the input shapes
    assert f"<code>onnxslim bench ref.onnx same.onnx {LONG} --html report.html</code>" in text
    assert re.search(r"<dt>Date</dt><dd>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", text)
    for tool in ("onnxslim", "onnx", "onnxruntime"):
        assert f"{tool} {report.versions[tool]}" in text
    # identical outputs: SNR infinite, shown as "exact" (table and chart); max abs on a log scale
    assert "<td class='num'>exact</td>" in text and ">inf<" not in text
    assert "log scale, 1e-" in text and "0 = exact" in text
    assert "a_<wbr>classifier_<wbr>with_<wbr>" in text  # long names wrap at separators
    assert "<script" not in text and "src=" not in text and "<link" not in text


def test_log_scale_bars_order_errors_by_decade():
    from onnxslim.render.html import bars

    chart = bars("max abs", [("a", 1e-6), ("b", 1e-3), ("c", 0.0), ("d", None)], "", log=True)
    widths = [float(w) for w in re.findall(r"width:([\d.]+)%", chart)]
    assert 0 < widths[0] < widths[1] <= 100 and widths[2] == 0 and widths[3] == 0
    assert "log scale, 1e-7 to 1e-3" in chart
    assert chart.count("exact'>exact<") == 1 and ">n/a<" in chart


def test_page_renders_in_chromium_without_overflow(page, tmp_path):
    script = _screenshot_script()
    browser = script.find_browser()
    if browser is None:
        pytest.skip("no Chromium installed (apt-get install -y chromium)")
    path, _ = page
    png = script.screenshot(browser, path, tmp_path / "page.png", 1280, 900)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    scroll, inner = script.page_width(browser, path, 1280)
    assert inner == 1280 and scroll <= inner, f"page {scroll} px wide in a {inner} px window"
    shot = np.frombuffer(png.read_bytes(), np.uint8)
    assert shot.size > 0


def _int8_report(**changes):
    from onnxslim.drift import Drift
    from onnxslim.quantization.report import QuantizeReport

    fields = dict(
        mode="static", target="avx2", target_reason="avx2 (detected)", method="percentile",
        activation_type="uint8", weight_pair_limit=128, per_channel=True, calibration_samples=40,
        selection_samples=16, test_samples=64, nodes_before=100, nodes_after=140,
        size_before=4000, size_after=1100, quantized={"Conv": 3}, kept_float={},
        fallback=[{"node": "conv_b", "op": "Conv", "noise_db": 12.5}],
        drift={"y": Drift("y", "float32", (1, 10), cosine=0.988, min_cosine=0.985, snr_db=15.2)},
        budget="cosine>=0.99", violations=[], latency_float_ms=2.0, latency_int8_ms=1.25,
        test_violations=["output 'y': worst-sample cosine 0.985 fails cosine>=0.99"],
        notes=["samples: 40 calibration ...", "warning: ORT rewrites", "kept CLE"],
        layers=[
            {"node": "conv_a", "op": "Conv", "own_db": 30.0, "accumulated_db": 30.0},
            {"node": "conv_b", "op": "Conv", "own_db": float("inf"), "accumulated_db": 29.0},
            {"node": "conv_c", "op": "Conv", "own_db": 9.5, "accumulated_db": 9.0},
        ],
    )  # fmt: skip
    return QuantizeReport(**{**fields, **changes})


def test_int8_page_states_the_outcome_and_puts_the_worst_layer_first():
    from onnxslim.render.html import int8_page

    text = int8_page(_int8_report(), command="onnxslim m.onnx --int8", files=[("Input", "m.onnx")])
    assert "<code>onnxslim m.onnx --int8</code>" in text
    assert "worst-sample cosine 0.985000, worst output SNR 15.2 dB on 64 test samples" in text
    assert "dB on 64 test samples; size 0.28x" in text
    assert "; latency 0.62x float" in text
    # held on selection (after one fallback), not on test: the page says which
    assert (
        "cosine&gt;=0.99 held on the selection samples (predicted for new ones) with 1 node(s) "
        "back in float, missed on the test samples: output &#x27;y&#x27;: worst-sample cosine "
        "0.985 fails cosine&gt;=0.99"
    ) in text
    assert "<p class='warning'>warning: ORT rewrites</p>" in text
    assert "<p class='note'>note: kept CLE</p>" in text
    assert "samples: 40 calibration ..." not in text  # the Samples entry says it
    assert "<td class='text'>conv_<wbr>b</td><td class='text'>Conv</td><td class='num'>12.5" in text
    rows = re.findall(r"<tr( class='worst')?><td class='num'>(\d)</td>", text)
    assert rows == [(" class='worst'", "3"), ("", "1"), ("", "2")]  # lowest own SQNR first
    assert "<td class='num'>exact</td>" in text  # an infinite SQNR


def test_int8_page_without_layers_budget_or_latency():
    from onnxslim.render.html import int8_page

    report = _int8_report(layers=[], budget=None, fallback=[], latency_int8_ms=None)
    text = int8_page(report)
    assert "no drift budget" in text and "Per-layer error" not in text and "latency" not in text


def test_int8_latency_within_noise_is_said_to_be():
    """An INT8 model timed 1.02x float by its medians but not by its fastest runs (or the lossless
    model, INT8 adding nothing) showed "speedup" figures that were noise (sweep 15)."""
    from onnxslim.render.html import int8_page

    timed = {"latency_float_ms": 2.0, "latency_int8_ms": 2.04}
    same = _int8_report(**timed, latency_verdict="same")
    assert "latency 1.02x float (same within noise)" in int8_page(same)
    assert "1.02x (same within noise)" in same.render()
    slower = _int8_report(**timed, latency_verdict="slower")
    assert "(speedup 0.98x)" in slower.render()
    assert "same within noise" not in int8_page(slower)
    # float compute after the lossless passes: faster than the original, not than their model
    weight_only = _int8_report(
        latency_float_ms=2.0,
        latency_int8_ms=1.5,
        latency_verdict="faster",
        latency_lossless_ms=1.4,
        latency_lossless_verdict="slower",
    )
    assert "latency 0.75x float; 1.07x onnxslim&#x27;s lossless float model (slower)" in int8_page(
        weight_only
    )
