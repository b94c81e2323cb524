"""Opset conversion with onnx's version converter: old models up to what the passes read, or to a
target the user names; where the converter changes what an old Resize or Hardmax computes going
up, its result mended."""

from __future__ import annotations

import re

import numpy as np
import onnx
import onnx_ir as ir
from onnx import version_converter

from onnxslim.errors import OnnxSlimError, first_line
from onnxslim.model import io
from onnxslim.model.graph import (
    default_opset,
    fresh_name,
    proto_graphs,
    proto_names,
    replace_proto_nodes,
)

#: What Resize-11+ needs to compute as Upsample-7/9 and Resize-10 did (x_in = x_out / scale,
#: nearest taking the floor: ONNX Runtime's ceiling where it downsamples): the converter leaves
#: Resize-11's defaults, half_pixel and round_prefer_floor, which read other pixels.
OLD_COORDINATES = {"coordinate_transformation_mode": "asymmetric"}


def convert(model: ir.Model, target: int) -> ir.Model:
    """`model` with its default opset converted to `target`; a user error when onnx cannot. Where
    onnx's converter changes what an op computes going up past opset 11 or 13, its result is
    mended (`_old_resizes`, `_old_hardmax_axes`)."""
    current = default_opset(model.opset_imports)
    if current is None:
        raise OnnxSlimError("the model imports no default ONNX opset: there is nothing to convert")
    newest = onnx.defs.onnx_opset_version()
    if not 1 <= target <= newest:
        raise OnnxSlimError(
            f"target opset {target} is not one this onnx release knows (1..{newest})"
        )
    cannot = f"cannot convert the model from opset {current} to {target}"
    given = io.to_proto(model)
    resizes = _old_resizes(given, cannot, target) if current < 11 <= target else []
    hardmaxes = _old_hardmax_axes(given) if current < 13 <= target else []
    if current < 10 <= target:
        _expand_image_scalers(given)
    _set_apart_runtime_ops(given)
    try:
        proto = version_converter.convert_version(given, target)
    except Exception as err:
        raise OnnxSlimError(f"{cannot}: {_why(err, target)}") from err
    del given
    _restore_runtime_ops(proto)
    for graph, attributes in zip(_resizes_by_graph(proto), resizes):
        for node, mended in zip(graph, attributes):
            _set(node, mended)
    flattened = [
        (graph, axes)
        for graph, axes in zip(proto_graphs(proto.graph), hardmaxes)
        if any(axis is not None for axis in axes)
    ]
    taken = proto_names(proto_graphs(proto.graph)) if flattened else set()
    for graph, axes in flattened:
        _flatten_hardmaxes(graph, axes, taken)
    return io.from_proto(proto, f"the model converted to opset {target}")


def _expand_image_scalers(model: onnx.ModelProto) -> None:
    """Each float32 ImageScaler (an experimental op onnx dropped, which ONNX Runtime runs below
    opset 10 only: old model zoo exports) written as what it computes, `x * scale + bias[c]` with
    the bias over the channels of NCHW `x`: Mul and Add of Constants."""
    graphs = list(proto_graphs(model.graph))
    floats = {
        info.name
        for graph in graphs
        for info in [*graph.input, *graph.value_info, *graph.output]
        if info.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    }
    taken = proto_names(graphs)
    for graph in graphs:
        replace_proto_nodes(graph, lambda node: _scaled(node, floats, taken))


def _scaled(node: onnx.NodeProto, floats: set[str], taken: set[str]) -> list[onnx.NodeProto]:
    """`_expand_image_scalers`'s nodes for `node` (none for another op, an input not among
    `floats`, or no bias: ORT runs it with one only, and the conversion then says it cannot)."""
    if node.op_type != "ImageScaler" or node.domain not in ("", "ai.onnx"):
        return []
    if node.input[0] not in floats or not _attribute(node, "bias", None):
        return []
    make, out = onnx.helper.make_node, node.output[0]
    scale = onnx.numpy_helper.from_array(np.float32(_attribute(node, "scale", 1.0)))
    bias = np.asarray(_attribute(node, "bias", []), np.float32).reshape(1, -1, 1, 1)
    factor, scaled, shift = (fresh_name(taken, f"{out}_{part}") for part in ("s", "x", "b"))
    return [
        make("Constant", [], [factor], value=scale),
        make("Mul", [node.input[0], factor], [scaled]),
        make("Constant", [], [shift], value=onnx.numpy_helper.from_array(bias)),
        make("Add", [scaled, shift], [out]),
    ]


#: The domain ONNX Runtime's own ONNX-domain ops cross the converter in (`_set_apart_runtime_ops`).
APART = "onnxslim.apart"


def _set_apart_runtime_ops(model: onnx.ModelProto) -> None:
    """The default-domain nodes of ops onnx has no schema for (ONNX Runtime's own, which validation
    let in: the SimplifiedLayerNormalization of its transformer optimizer), moved to domain APART,
    which the converter leaves alone (it refuses an op it has no schema for)."""
    moved = [
        node
        for graph in proto_graphs(model.graph)
        for node in graph.node
        if node.domain in ("", "ai.onnx") and not onnx.defs.has(node.op_type)
    ]
    for node in moved:
        node.domain = APART
    if moved:
        model.opset_import.append(onnx.helper.make_opsetid(APART, 1))


def _restore_runtime_ops(model: onnx.ModelProto) -> None:
    """The nodes `_set_apart_runtime_ops` moved, back in the default domain."""
    if all(entry.domain != APART for entry in model.opset_import):
        return
    for graph in proto_graphs(model.graph):
        for node in graph.node:
            if node.domain == APART:
                node.domain = ""
    kept = [entry for entry in model.opset_import if entry.domain != APART]
    del model.opset_import[:]
    model.opset_import.extend(kept)


def _old_resizes(given: onnx.ModelProto, cannot: str, target: int) -> list[list[dict]]:
    """Per graph of `given` (`proto_graphs` order), the attributes each Upsample and Resize-10
    needs as a Resize-11+ to compute as before (the converter swaps each for one Resize, in
    order, renaming its output). A user error for a nearest one whose scales both up- and
    downsample, which no Resize-11 computes; scales computed at run time are taken to upsample
    (an Upsample's must)."""
    found = []
    for graph in proto_graphs(given.graph):
        resizes = [n for n in graph.node if n.op_type in ("Upsample", "Resize")]
        constants = _constants(graph, {n.input[1] for n in resizes if len(n.input) > 1})
        attributes = []
        for node in resizes:
            if _attribute(node, "mode", b"nearest") != b"nearest":
                attributes.append(OLD_COORDINATES)
                continue
            scales = _attribute(node, "scales", None)
            if scales is None and len(node.input) > 1:
                scales = constants.get(node.input[1])
            if scales is None or min(scales) >= 1:
                attributes.append({**OLD_COORDINATES, "nearest_mode": "floor"})
            elif max(scales) <= 1:
                attributes.append({**OLD_COORDINATES, "nearest_mode": "ceil"})
            else:
                raise OnnxSlimError(
                    f"{cannot}: {node.op_type} {node.name or node.output[0]!r} (nearest) "
                    f"upsamples one axis and downsamples another, which no Resize from opset 11 "
                    f"on computes alike; export the model at opset {target} instead"
                )
        found.append(attributes)
    return found


def _resizes_by_graph(converted: onnx.ModelProto) -> list[list[onnx.NodeProto]]:
    return [[n for n in g.node if n.op_type == "Resize"] for g in proto_graphs(converted.graph)]


def _old_hardmax_axes(given: onnx.ModelProto) -> list[list[int | None]]:
    """Per graph of `given`, per node, the axis of each Hardmax before opset 13 to flatten at
    (`_flatten_hardmaxes`), None for other nodes and for a Hardmax over axis -1."""
    axes = []
    for graph in proto_graphs(given.graph):
        axes.append(
            [
                axis
                if node.op_type == "Hardmax" and (axis := _attribute(node, "axis", 1)) != -1
                else None
                for node in graph.node
            ]
        )
    return axes


def _flatten_hardmaxes(graph: onnx.GraphProto, axes: list[int | None], taken: set[str]) -> None:
    """Hardmax before opset 13 flattens its input to 2-D at `axis` (default 1) and picks along
    the second dim; from 13 it picks along `axis` alone, and the converter keeps the node as it
    is (in place: `axes` lines up with `graph`'s nodes). Each Hardmax with an axis in `axes`
    becomes Flatten(axis) -> Hardmax(axis=1) -> Reshape to the input's shape, as the converter
    does for Softmax. `taken`: the names of every graph of the model, which new ones join."""
    in_order = iter(axes)

    def flattened(node: onnx.NodeProto) -> list[onnx.NodeProto] | None:
        axis = next(in_order)
        if axis is None:
            return None
        x, y = node.input[0], node.output[0]
        shape, flat, picked = (fresh_name(taken, f"{y}_{p}") for p in ("shape", "2d", "max"))
        return [
            onnx.helper.make_node("Shape", [x], [shape]),
            onnx.helper.make_node("Flatten", [x], [flat], axis=axis),
            onnx.helper.make_node("Hardmax", [flat], [picked], node.name, axis=1),
            onnx.helper.make_node("Reshape", [picked, shape], [y]),
        ]

    replace_proto_nodes(graph, flattened)


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
