"""benchmarks/int8.py's reading of a classifier's logits: the Softmax input behind the output."""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper

from benchmarks.int8 import softmax_input


def _graph(*tail: onnx.NodeProto, output: str) -> onnx.ModelProto:
    nodes = [helper.make_node("Relu", ["x"], ["logits"]), *tail]
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, [1, 4])],
    )
    return helper.make_model(graph)


def test_softmax_input_through_identity_and_an_output_quantization():
    softmax = helper.make_node("Softmax", ["logits"], ["probs"])
    assert softmax_input(_graph(softmax, output="probs")) == "logits"
    identity = helper.make_node("Identity", ["probs"], ["out"])
    assert softmax_input(_graph(softmax, identity, output="out")) == "logits"
    q = helper.make_node("QuantizeLinear", ["probs", "s"], ["q"])
    dq = helper.make_node("DequantizeLinear", ["q", "s"], ["out"])
    assert softmax_input(_graph(softmax, q, dq, output="out")) == "logits"


def test_no_softmax_behind_the_output_is_none():
    assert softmax_input(_graph(output="logits")) is None
    sigmoid = helper.make_node("Sigmoid", ["logits"], ["p"])
    assert softmax_input(_graph(sigmoid, output="p")) is None
