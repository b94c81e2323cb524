"""Per-layer INT8 error: how much noise each quantized node makes by itself, and how much has piled
up at its output (the tool to find the layer that ruins a model, like ORT's qdq_loss_debug)."""

from __future__ import annotations

import dataclasses
import itertools

import onnx
import onnx_ir as ir

from onnxslim.drift import TensorSnr
from onnxslim.model import io
from onnxslim.quantization.builder import BuildInfo, QuantBuilder, iter_samples

FLOAT_INPUT = "{}::float"  # the probe model's graph input carrying a float tensor
OWN_OUTPUT = "{}::own"  # the probe model's output: a node's result on quantized float inputs


@dataclasses.dataclass(frozen=True)
class LayerError:
    """SQNR (dB, higher is better) of one quantized node's output against the float model's.

    `own_db`: with its inputs taken from the float model (the error this layer adds by itself);
    `accumulated_db`: in the quantized model (the error of every layer up to here).
    """

    node: str
    op: str
    own_db: float
    accumulated_db: float


def layer_errors(
    builder: QuantBuilder, quantized: ir.Model, info: BuildInfo, samples
) -> list[LayerError]:
    """A LayerError per quantized node of `quantized` (built by `builder`), in graph order, measured
    on `samples` as the QDQ model computes (ORT's graph optimizations off)."""
    closing = {owner: act for act, owner in info.plan.folded.items()}
    by_name = {node.name: node for node in builder.model.graph}
    # (node, float tensor at its output, that tensor in the quantized model: its DQ output, or
    # itself where nothing quantizes it, e.g. a graph output)
    layers = []
    for name in info.plan.nodes:
        node = by_name[name]
        out = by_name[closing[name]].outputs[0] if name in closing else node.outputs[0]
        layers.append((node, out.name, info.dequantized.get(out.name, out.name)))
    if not layers:
        return []
    proto = io.to_proto(quantized)
    probe, fed = _probe(proto, [dq for _, _, dq in layers])
    float_names = _float_names(proto, info)
    wanted = sorted({*(float_names.get(t, t) for t in fed), *(out for _, out, _ in layers)})
    # one sample at a time: the float run feeds the probe and is the reference of both SNRs
    floats_fed, floats = itertools.tee(iter_samples(builder.proto, samples, wanted, int8=False))
    feeds = (
        {**sample, **{FLOAT_INPUT.format(t): values[float_names.get(t, t)] for t in fed}}
        for sample, values in zip(samples, floats_fed)
    )
    own = iter_samples(probe, feeds, opt_level="disable")
    dq_names = [dq for _, _, dq in layers]
    accumulated = iter_samples(proto, samples, dq_names, opt_level="disable")
    own_snr, accumulated_snr = TensorSnr(), TensorSnr()
    for own_values, accumulated_values, float_values in zip(own, accumulated, floats):
        for _, out, dq in layers:
            own_snr.add(dq, float_values[out], own_values[OWN_OUTPUT.format(dq)])
            accumulated_snr.add(dq, float_values[out], accumulated_values[dq])
    return [
        LayerError(node.name, node.op_type, own_snr.db(dq), accumulated_snr.db(dq))
        for node, _, dq in layers
    ]


def _float_names(proto: onnx.ModelProto, info: BuildInfo) -> dict[str, str]:
    """{a float tensor's name in the QDQ model `proto`: its name in the float model} where they
    differ: a graph output a Conv writes is its DequantizeLinear's there, the float tensor the
    QuantizeLinear reads renamed (`QuantPlan.dequantized_outputs`)."""
    producer = {out: node for node in proto.graph.node for out in node.output}
    names = {}
    for tensor in info.plan.dequantized_outputs:
        dq = producer.get(info.dequantized.get(tensor, ""))
        q = producer.get(dq.input[0]) if dq is not None else None
        if q is not None and q.op_type == "QuantizeLinear":
            names[q.input[0]] = tensor
    return names


def _probe(proto: onnx.ModelProto, outputs: list[str]) -> tuple[onnx.ModelProto, list[str]]:
    """A copy of the QDQ model in which every QuantizeLinear reads a float tensor fed from outside,
    so each node computes on its float inputs, quantized; each of `outputs` that a
    DequantizeLinear makes is re-made by a copy of its Q/DQ pair reading the node's own result.
    Returns the probe (outputs named OWN_OUTPUT) and the names of the float tensors it is fed."""
    probe = onnx.ModelProto()
    probe.CopyFrom(proto)
    graph = probe.graph
    producer = {out: node for node in graph.node for out in node.output}
    copies = []
    for name in outputs:
        dq = producer.get(name)
        q = (
            producer.get(dq.input[0])
            if dq is not None and dq.op_type == "DequantizeLinear"
            else None
        )
        if q is None or q.op_type != "QuantizeLinear":
            copies.append(onnx.helper.make_node("Identity", [name], [OWN_OUTPUT.format(name)]))
            continue
        quantized = f"{name}::own_quantized"
        copies.append(
            onnx.helper.make_node(
                "QuantizeLinear", [q.input[0], *q.input[1:]], [quantized], **_attributes(q)
            )
        )
        copies.append(
            onnx.helper.make_node(
                "DequantizeLinear",
                [quantized, *dq.input[1:]],
                [OWN_OUTPUT.format(name)],
                **_attributes(dq),
            )
        )
    inputs = {value.name for value in graph.input} | {init.name for init in graph.initializer}
    fed = []
    for node in graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] not in inputs:
            if node.input[0] not in fed:
                fed.append(node.input[0])
                graph.input.append(
                    onnx.helper.make_tensor_value_info(
                        FLOAT_INPUT.format(node.input[0]), onnx.TensorProto.FLOAT, None
                    )
                )
            node.input[0] = FLOAT_INPUT.format(node.input[0])
    graph.node.extend(copies)
    del graph.output[:]
    graph.output.extend(onnx.ValueInfoProto(name=OWN_OUTPUT.format(name)) for name in outputs)
    return probe, fed


def _attributes(node: onnx.NodeProto) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
