"""Never bigger: the size budget of constant folding, constants stored once across subgraphs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import pytest
from helpers import assert_same_outputs, op_counts

import onnxslim
from onnxslim.optimizer import make_options, optimize_with_report
from onnxslim.passes import fold
from onnxslim.passes.registry import PassOptions

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
KIB = 1024


def _budget(path: Path) -> int:
    return max(path.stat().st_size // 100, 64 * KIB)


def test_default_budget_is_one_percent_or_64_kib():
    assert PassOptions().budget.growth is None
    model = ir.Model(ir.Graph([], [], nodes=[]), ir_version=10)
    budget = fold.SizeBudget()
    budget.start(model)
    assert budget.limit == 64 * KIB
    weights = ir.Value(name="w", const_value=ir.tensor(np.zeros(10 * 2**20, np.uint8)))
    model.graph.register_initializer(weights)
    budget.start(model)
    assert budget.limit == 10 * 2**20 + 10 * 2**20 // 100


@pytest.mark.skipif(not (LIGHT / "light_vgg19.onnx").is_file(), reason="onnx test data absent")
def test_light_vgg19_stays_within_the_budget(tmp_path):
    # 36 ConstantOfShape nodes build ~550 MB of weights: ORT folds them at load, we must not
    original = LIGHT / "light_vgg19.onnx"
    result = optimize_with_report(original, make_options(check=False))
    onnxslim.save(result.model, tmp_path / "out.onnx")
    assert (tmp_path / "out.onnx").stat().st_size <= original.stat().st_size + _budget(original)
    assert op_counts(tmp_path / "out.onnx")["ConstantOfShape"] == 16  # 20 were duplicates
    assert any("kept 36 constant-only computation(s)" in note for note in result.notes)


@pytest.mark.skipif(not (LIGHT / "light_squeezenet.onnx").is_file(), reason="onnx test data absent")
def test_light_squeezenet_no_bigger_and_same_outputs(tmp_path):
    original = LIGHT / "light_squeezenet.onnx"
    onnxslim.save(onnxslim.optimize(original), tmp_path / "out.onnx")
    assert (tmp_path / "out.onnx").stat().st_size <= original.stat().st_size
    feeds = {"data_0": np.random.default_rng(0).standard_normal((1, 3, 224, 224), np.float32)}
    assert_same_outputs(original, tmp_path / "out.onnx", feeds)
