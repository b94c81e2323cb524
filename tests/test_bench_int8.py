"""benchmarks/int8.py's readings of outputs: a classifier's logits (the Softmax input behind the
output), a CTC recognizer's text."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from benchmarks.int8 import softmax_input, text_agreement


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


def _steps(*best: int, classes: int = 4) -> dict:
    """A recognizer's output [1, steps, classes] whose best class at each step is `best`."""
    p = np.full((1, len(best), classes), 0.1, np.float32)
    p[0, np.arange(len(best)), best] = 0.7
    return {"p": p}


def test_text_agreement_reads_greedy_ctc_text():
    """1 1 0 2 reads [1, 2]; 1 0 1 2 reads [1, 1, 2] (a blank between repeats keeps both)."""
    ref = [_steps(1, 1, 0, 2), _steps(3, 3, 3, 3)]
    same_text = [_steps(1, 0, 0, 2), _steps(0, 3, 3, 0)]  # other steps, the same text
    assert text_agreement(ref, same_text, blank=0) == {"texts": 1.0, "steps": 0.625}
    other = [_steps(1, 0, 1, 2), _steps(3, 3, 3, 3)]
    assert text_agreement(ref, other, blank=0) == {"texts": 0.5, "steps": 0.75}
