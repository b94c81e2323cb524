"""Shared pytest setup: `tests/` importable as `helpers`, the `slow` option, common fixtures."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
for folder in (str(TESTS), str(REPO)):
    if folder not in sys.path:
        sys.path.insert(0, folder)

ZOO_DIR = REPO / "models" / "zoo"
DEMO = REPO / "models" / "demo.onnx"


def pytest_addoption(parser):
    parser.addoption(
        "--runslow", action="store_true", default=False, help="also run tests marked slow"
    )


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def demo_path() -> Path:
    return DEMO


@pytest.fixture
def model_path(tmp_path):
    """`model_path(model, name="model.onnx")` saves a ModelProto/onnx_ir.Model into tmp_path."""
    from helpers import save_model

    def save(model, name: str = "model.onnx") -> Path:
        return save_model(model, tmp_path / name)

    return save
