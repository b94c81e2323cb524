"""No slower without timing: the graph ORT runs for our result has no more nodes than for the
original, and none of the op types known to be slower (benchmarks/ort_graphs.py SLOWER_OPS)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import DEMO, ZOO_DIR
from helpers import FLOAT, const, make_model, save_model, vi
from onnx import helper

import onnxslim
from benchmarks.ort_graphs import SLOWER_OPS, compare, compare_optimized
from onnxslim.runtime import ort_op_counts

try:
    from models.zoo import ZOO_MODELS
except ImportError:  # pragma: no cover - the repo layout always has it
    ZOO_MODELS = []

HIDDEN = 16


def residual_layernorm():
    """y = LayerNormalization(x + r): ORT fuses it into SkipLayerNormalization at level all."""
    nodes = [
        helper.make_node("Add", ["x", "r"], ["s"]),
        helper.make_node("LayerNormalization", ["s", "g", "b"], ["y"], axis=-1, epsilon=1e-5),
    ]
    dims = ["batch", "seq", HIDDEN]
    return make_model(
        nodes,
        [vi("x", FLOAT, dims), vi("r", FLOAT, dims)],
        [vi("y", FLOAT, dims)],
        [const("g", np.ones(HIDDEN, np.float32)), const("b", np.zeros(HIDDEN, np.float32))],
        opset=17,
    )


def test_ort_op_counts_are_what_ort_runs():
    counts = ort_op_counts(residual_layernorm())
    assert counts == {"com.microsoft.SkipLayerNormalization": 1}
    assert ort_op_counts(residual_layernorm(), "basic") == {"Add": 1, "LayerNormalization": 1}


def test_ours_keeps_ort_from_the_slower_skip_layernorm(tmp_path):
    original = save_model(residual_layernorm(), tmp_path / "original.onnx")
    ours = save_model(onnxslim.optimize(original, check=False), tmp_path / "ours.onnx")
    result = compare(original, ours)
    assert "com.microsoft.SkipLayerNormalization" not in result.ours["all"]
    # the deliberate trade: Sum + LayerNormalization (2 nodes) where ORT would run 1 slower one
    assert result.ours["all"] == {"Sum": 1, "LayerNormalization": 1}
    # the reverse direction is flagged: the original run as "ours" brings the slower kernel in
    assert any("SkipLayerNormalization" in line for line in compare(ours, original).failures())


def test_demo_runs_no_more_nodes_in_ort(tmp_path):
    result = compare_optimized(DEMO, tmp_path)
    assert result.failures() == []
    assert result.nodes("ours", "basic") <= result.nodes("original", "basic")


@pytest.mark.zoo
@pytest.mark.parametrize("name", ZOO_MODELS)
def test_zoo_model_runs_no_more_nodes_in_ort(name, tmp_path):
    path = ZOO_DIR / f"{name}.onnx"
    if not path.is_file():
        pytest.skip(f"{path} not built: run `python models/zoo.py`")
    result = compare_optimized(path, tmp_path)
    assert result.failures() == [], SLOWER_OPS
