"""Placeholder dim names ("?", as Paddle writes) promise no equality; the interface keeps them."""

from __future__ import annotations

import numpy as np
from helpers import const, interface, make_model, run, vi
from onnx import helper

import onnxslim


def _swap_reshape_model(dim_name: str):
    """Reshape x[N, a, b] to [N, b, a] through a computed shape: only a no-op when a == b."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "i0"], ["d0"], axis=0),
        helper.make_node("Gather", ["s", "i2"], ["d2"], axis=0),
        helper.make_node("Gather", ["s", "i1"], ["d1"], axis=0),
        helper.make_node("Concat", ["d0", "d2", "d1"], ["shape"], axis=0),
        helper.make_node("Reshape", ["x", "shape"], ["y"]),
    ]
    initializers = [const(f"i{i}", np.array([i], np.int64)) for i in range(3)]
    return make_model(
        nodes,
        [vi("x", shape=["N", dim_name, dim_name])],
        [vi("y", shape=["N", None, None])],
        initializers,
    )


def test_question_mark_dims_are_not_taken_for_equal():
    model = _swap_reshape_model("?")
    optimized = onnxslim.slim(model)
    x = np.arange(6, dtype=np.float32).reshape(1, 2, 3)
    assert run(optimized, {"x": x})[0].shape == (1, 3, 2)
    assert run(model, {"x": x})[0].shape == (1, 3, 2)


def test_real_dim_names_still_let_equal_dims_simplify():
    optimized = onnxslim.slim(_swap_reshape_model("side"))
    assert [node.op_type for node in optimized.graph.node] == ["Identity"]
    x = np.zeros((1, 4, 4), np.float32)
    assert run(optimized, {"x": x})[0].shape == (1, 4, 4)


def test_placeholder_dims_stay_in_the_interface():
    model = _swap_reshape_model("?")
    assert interface(onnxslim.slim(model)) == interface(model)
