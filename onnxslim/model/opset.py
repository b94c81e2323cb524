"""Opset conversion with onnx's version converter: old models up to what the passes read, or to a
target the user names; where the converter changes what an op computes, its result mended."""

from __future__ import annotations

import re

import onnx
import onnx_ir as ir
from onnx import version_converter

from onnxslim.errors import OnnxSlimError, first_line
from onnxslim.model import io
from onnxslim.model.graph import default_opset, fresh_name, proto_graphs

#: Resize's coordinate modes before opset 11 (Upsample-7/9 and Resize-10): x_in = x_out / scale,
#: nearest taking the floor (ONNX Runtime: the ceiling where it downsamples). The converter gives
#: their Resize-11+ form the defaults, half_pixel and round_prefer_floor: other pixels.
OLD_RESIZE = {"coordinate_transformation_mode": "asymmetric"}
OLD_NEAREST = {True: "floor", False: "ceil"}  # by whether every axis upsamples


def convert(model: ir.Model, target: int) -> ir.Model:
    """`model` with its default opset converted to `target`; a user error when onnx cannot."""
    current = default_opset(model.opset_imports)
    if current is None:
        raise OnnxSlimError("the model imports no default ONNX opset: there is nothing to convert")
    newest = onnx.defs.onnx_opset_version()
    if not 1 <= target <= newest:
        raise OnnxSlimError(
            f"target opset {target} is not one this onnx release knows (1..{newest})"
        )
    given = io.to_proto(model)
    try:
        proto = version_converter.convert_version(given, target)
    except Exception as err:
        raise OnnxSlimError(
            f"cannot convert the model from opset {current} to {target}: {_why(err, target)}"
        ) from err
    if current < 11 <= target:
        _keep_old_resize(given, proto)
    if current < 13 <= target:
        _keep_old_hardmax(given, proto)
    return io.from_proto(proto, f"the model converted to opset {target}")


def _keep_old_resize(given: onnx.ModelProto, converted: onnx.ModelProto) -> None:
    """The Resizes the converter made of `given`'s Upsamples and Resize-10s given their old
    coordinates (`OLD_RESIZE`), found by output name. A nearest one whose scales both up- and
    downsample has no Resize-11 form: left as converted (a check of the outputs finds it)."""
    nearest = {}  # output name -> nearest mode (None: linear)
    for graph in proto_graphs(given.graph):
        resizes = [n for n in graph.node if n.op_type in ("Upsample", "Resize") and n.output]
        constants = _constants(graph, {n.input[1] for n in resizes if len(n.input) > 1})
        for node in resizes:
            mode = _attribute(node, "mode", b"nearest")
            scales = _attribute(node, "scales", None)
            if scales is None and len(node.input) > 1:
                scales = constants.get(node.input[1])
            upsamples = scales is None or min(scales) >= 1
            downsamples = scales is not None and max(scales) <= 1
            if mode == b"nearest" and not upsamples and not downsamples:
                continue
            nearest[node.output[0]] = OLD_NEAREST[upsamples] if mode == b"nearest" else None
    for graph in proto_graphs(converted.graph):
        for node in graph.node:
            if node.op_type == "Resize" and node.output and node.output[0] in nearest:
                mode = nearest[node.output[0]]
                _set(node, {**OLD_RESIZE, **({"nearest_mode": mode} if mode else {})})


def _keep_old_hardmax(given: onnx.ModelProto, converted: onnx.ModelProto) -> None:
    """Hardmax before opset 13 flattens its input to 2-D at `axis` (default 1) and picks along
    the second dim; from 13 it picks along `axis` alone, and the converter keeps the node as it
    is. Each such Hardmax not over the last axis becomes Flatten(axis) -> Hardmax(axis=1) ->
    Reshape to the input's shape, as the converter does for Softmax."""
    old = {
        node.output[0]: _attribute(node, "axis", 1)
        for graph in proto_graphs(given.graph)
        for node in graph.node
        if node.op_type == "Hardmax" and node.output
    }
    taken = {name for graph in proto_graphs(converted.graph) for name in _names(graph)}
    for graph in proto_graphs(converted.graph):
        nodes = []
        for node in graph.node:
            axis = old.get(node.output[0]) if node.op_type == "Hardmax" and node.output else None
            if axis is None or axis == -1:
                nodes.append(node)
                continue
            x, y = node.input[0], node.output[0]
            shape, flat, picked = (
                fresh_name(taken, f"{y}_{part}") for part in ("shape", "2d", "max")
            )
            nodes += [
                onnx.helper.make_node("Shape", [x], [shape]),
                onnx.helper.make_node("Flatten", [x], [flat], axis=axis),
                onnx.helper.make_node("Hardmax", [flat], [picked], node.name, axis=1),
                onnx.helper.make_node("Reshape", [picked, shape], [y]),
            ]
        del graph.node[:]
        graph.node.extend(nodes)


def _attribute(node: onnx.NodeProto, name: str, default):
    found = [a for a in node.attribute if a.name == name]
    return onnx.helper.get_attribute_value(found[0]) if found else default


def _set(node: onnx.NodeProto, attributes: dict[str, str]) -> None:
    kept = [a for a in node.attribute if a.name not in attributes]
    del node.attribute[:]
    node.attribute.extend(kept)
    node.attribute.extend(onnx.helper.make_attribute(k, v) for k, v in attributes.items())


def _constants(graph: onnx.GraphProto, names: set[str]) -> dict[str, list[float]]:
    """The values of `graph`'s initializers and Constant nodes named `names`."""
    tensors = {t.name: t for t in graph.initializer if t.name in names}
    for node in graph.node:
        if node.op_type == "Constant" and node.output and node.output[0] in names:
            value = _attribute(node, "value", None)
            if isinstance(value, onnx.TensorProto):
                tensors[node.output[0]] = value
    return {name: onnx.numpy_helper.to_array(t).ravel().tolist() for name, t in tensors.items()}


def _names(graph: onnx.GraphProto) -> set[str]:
    names = {v.name for v in [*graph.input, *graph.output]} | {t.name for t in graph.initializer}
    return names | {name for node in graph.node for name in [*node.input, *node.output]}


def _why(err: Exception, target: int) -> str:
    """The converter's error without its C++ source line and assertion text."""
    text = first_line(err)
    missing = re.search(r"No Adapter (To|From) Version \$(\d+) for (\w+)", text)
    if missing:
        direction, version, op = missing.groups()
        return (
            f"onnx's version converter has no rule for {op} {direction.lower()} its opset "
            f"{version} form; export the model at opset {target} instead"
        )
    newer = re.search(r"No Previous Version of (\w+) exists", text)
    if newer:
        return (
            f"{newer[1]} has no form before the opset that introduced it, above {target}; "
            f"export the model at opset {target} instead"
        )
    return re.sub(r"^\S+:\d+: .*?: Assertion `.*?` failed: ", "", text)
