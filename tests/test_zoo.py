"""Real models (models/zoo, built by `python models/zoo.py`; CI builds it): optimized, they load in
ORT and match."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from conftest import ZOO_DIR
from helpers import interface, node_count, run, session

import onnxslim
import onnxslim.optimizer

try:
    from models.zoo import SAMPLE_INPUTS, ZOO_MODELS, random_inputs
except ImportError:  # pragma: no cover - the repo layout always has it
    ZOO_MODELS, SAMPLE_INPUTS, random_inputs = [], {}, None

pytestmark = pytest.mark.zoo


@pytest.mark.parametrize("name", ZOO_MODELS)
def test_zoo_model_optimizes_loads_and_matches(name, tmp_path):
    path = ZOO_DIR / f"{name}.onnx"
    if not path.is_file():
        pytest.skip(f"{path} not built: run `python models/zoo.py`")
    # the default command: no shapes, no inputs given; the check synthesizes inputs the model takes
    result = onnxslim.optimizer.optimize_with_report(path)
    assert result.checked, result.check_skipped
    out = tmp_path / f"{name}.onnx"
    onnxslim.save(result.model, out)
    onnx.checker.check_model(out)
    assert interface(out) == interface(path)
    assert node_count(out) <= node_count(path)
    session(out)  # loads in ORT
    for seed in (0, 1):
        feeds = random_inputs(name, seed)
        for want, got in zip(run(path, feeds), run(out, feeds)):
            assert got.dtype == want.dtype and got.shape == want.shape
            np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)


def test_efficientnet_flatten_by_the_input_batch_becomes_zero_minus_one(tmp_path):
    # `bs = inputs.size(0)` at the top of forward, `x.view(bs, -1)` after the pooling: the pooled
    # batch dim is proved equal through 100+ convs and residual adds (issue 11, item 3)
    name = "efficientnet_lite1"
    path = ZOO_DIR / f"{name}.onnx"
    if not path.is_file():
        pytest.skip(f"{path} not built: run `python models/zoo.py`")
    out = tmp_path / f"{name}.onnx"
    onnxslim.save(onnxslim.optimize(path), out)
    assert node_count(out) <= 124  # OnnxSlim's and ORT's basic optimizer's count
    assert "Shape" not in {n.op_type for n in onnx.load(out).graph.node}
    one = random_inputs(name, 0)
    for feeds in (one, {k: np.concatenate([v, v[:, ::-1]]) for k, v in one.items()}):  # batch 1, 2
        for want, got in zip(run(path, feeds), run(out, feeds)):
            assert got.shape == want.shape
            np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)
