"""A zero Pad before a Conv folded into the Conv's pads (onnxscript's rules):

    Conv(Pad(x, p), pads=q) = Conv(x, pads=p + q)      (p: zeros, spatial axes only)

onnxscript's fusion needs the Conv's pads explicit (auto_pad NOTSET) and makes them so on every
Conv, which gains nothing where no Pad feeds it and makes the file bigger (a NOTSET string and a
pads attribute where VALID stood); ours makes them explicit only where a Pad feeds the Conv.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import pattern
from onnxscript.rewriter.rules import common as onnxscript_rules

from onnxslim.model.graph import default_opset, fresh_name, producer, value_names
from onnxslim.passes.upstream import NormalizePadFormatConv


class ExplicitPadsBeforeFusion(NormalizePadFormatConv):
    """auto_pad -> explicit pads on a Conv whose input a constant zero Pad of its own graph
    computes (the step before FuseConvPad, which may still find the Pad's axes unfit)."""

    def check(self, context, conv, **kwargs) -> pattern.MatchResult:
        node = conv.producer()
        pad = node.inputs[0].producer()
        if pad is None or pad.op_type != "Pad" or pad.graph is not node.graph:
            return pattern.MatchResult().fail("no Pad of the Conv's graph feeds it")
        mode = pad.attributes.get_string("mode", "constant")
        value = pad.inputs[2] if len(pad.inputs) > 2 else None
        if mode != "constant" or len(pad.inputs) < 2 or pad.inputs[1].const_value is None:
            return pattern.MatchResult().fail("the Pad is not a constant-width zero pad")
        if value is not None and (value.const_value is None or value.const_value.numpy().any()):
            return pattern.MatchResult().fail("the Pad fills with a value other than zero")
        return super().check(context, conv, **kwargs)


rules = (ExplicitPadsBeforeFusion.rule(), onnxscript_rules.fuse_pad_into_conv_rule)


#: Pad's fill value that ORT's PadFusion leaves apart: it fuses a Pad whose constant value is
#: zero in every byte; -0.0 compares equal to 0.0 in every sum a Conv makes of it.
APART = -0.0


#: A 2-D Conv whose kernel is 1 across a 1-wide map and at least this long along it (a 1-D
#: conv written 2-D) runs several times slower padded than on a padded input in ORT's blocked
#: kernels (measured: 64x1 4.4x, 16x1 2.0x, 7x1 1.7x; 3x3 on 2-D maps: as fast or faster).
SLOW_PADDED_KERNEL = 7


def keep_pads_apart(model: ir.Model, inputs: Collection[str]) -> int:
    """Keep apart from their Conv the zero Pads ORT ran as nodes for the original (`inputs`: the
    tensors they read) where the Conv is one ORT runs slower padded (`_slow_padded`): folding
    their widths lets ORT fuse them into the Conv (CREPE's 64x1 kernels on 1-wide maps: 2.2x
    the model's time). A Conv reading such a tensor with pads gets them back as a Pad before it,
    and a zero Pad reading it fills with -0.0 (APART); both only from opset 11 (pads as an
    input). Returns how many were kept apart."""
    if (default_opset(model.opset_imports) or 1) < 11:
        return 0
    kept, taken = 0, value_names(model) | {node.name for node in model.graph if node.name}
    for node in list(model.graph):
        value = node.inputs[0] if node.inputs else None
        if value is None or value.name not in inputs or node.domain not in ("", "ai.onnx"):
            continue
        apart = {"Conv": _split_pads, "Pad": _fill_apart}.get(node.op_type)
        kept += bool(apart and apart(model, node, taken))
    return kept


def has_slow_padded_convs(model: ir.Model) -> bool:
    """Whether a Conv of the main graph, padded or after a Pad, is one ORT runs slower padded
    (`_slow_padded`): only then is ORT's graph of the original worth making."""
    for conv in model.graph:
        x = conv.inputs[0] if conv.op_type == "Conv" and conv.inputs else None
        pad = producer(x)
        if pad is not None and pad.op_type == "Pad" and pad.inputs:
            x = pad.inputs[0]
        if x is not None and _slow_padded(conv, x):
            return True
    return False


def _split_pads(model: ir.Model, conv: ir.Node, taken: set[str]) -> bool:
    """Conv(x, pads=p) -> Conv(Pad(x, p, -0.0)) where `p` has a nonzero width."""
    pads = conv.attributes.get_ints("pads", None)
    x = conv.inputs[0]
    if (
        not pads
        or not any(pads)
        or conv.attributes.get_string("auto_pad", "NOTSET") != "NOTSET"
        or x.dtype is None
        or not x.dtype.is_floating_point()
        or not _slow_padded(conv, x)
    ):
        return False
    half = len(pads) // 2
    widths = [0, 0, *pads[:half], 0, 0, *pads[half:]]
    name = fresh_name(taken, f"{conv.name or x.name}_pads_apart")
    widths_value = _constant(model, fresh_name(taken, f"{name}_widths"), np.array(widths, np.int64))
    pad = ir.node("Pad", [x, widths_value, _fill(model, x, name, taken)], name=name)
    pad.outputs[0].name, pad.outputs[0].dtype = fresh_name(taken, f"{name}_output"), x.dtype
    model.graph.insert_before(conv, pad)
    conv.replace_input_with(0, pad.outputs[0])
    conv.attributes["pads"] = ir.AttrInt64s("pads", [0] * len(pads))
    return True


def _fill_apart(model: ir.Model, pad: ir.Node, taken: set[str]) -> bool:
    """A zero constant-mode Pad with constant widths fills with -0.0 instead."""
    x = pad.inputs[0]
    fill = pad.inputs[2] if len(pad.inputs) > 2 else None
    if (
        pad.attributes.get_string("mode", "constant") != "constant"
        or len(pad.inputs) < 2
        or pad.inputs[1] is None
        or pad.inputs[1].const_value is None
        or len(pad.inputs) > 3
        or x.dtype is None
        or not x.dtype.is_floating_point()
        or (fill is not None and (fill.const_value is None or fill.const_value.numpy().any()))
        or pad.outputs[0].is_graph_output()
        or not all(  # another reader would see -0.0 where it saw 0.0
            use.op_type == "Conv" and index == 0 and _slow_padded(use, x)
            for use, index in pad.outputs[0].uses()
        )
    ):
        return False
    value = _fill(model, x, pad.name or x.name, taken)
    if fill is None:
        pad.resize_inputs(3)
    pad.replace_input_with(2, value)
    return True


def _slow_padded(conv: ir.Node, x: ir.Value) -> bool:
    """Whether `conv` on `x` (its input before padding) is a 1-D conv written 2-D: a kernel of 1
    across a 1-wide map, SLOW_PADDED_KERNEL or longer along it."""
    weight = conv.inputs[1] if len(conv.inputs) > 1 else None
    if weight is None or weight.shape is None or x.shape is None or len(x.shape) != 4:
        return False
    kernel, spatial = list(weight.shape)[2:], list(x.shape)[2:]
    if len(kernel) != 2 or not all(isinstance(d, int) for d in kernel):
        return False
    return any(
        kernel[across] == 1 and spatial[across] == 1 and kernel[1 - across] >= SLOW_PADDED_KERNEL
        for across in (0, 1)
    )


def _fill(model: ir.Model, x: ir.Value, name: str, taken: set[str]) -> ir.Value:
    return _constant(model, fresh_name(taken, f"{name}_fill"), np.array(APART, x.dtype.numpy()))


def _constant(model: ir.Model, name: str, array: np.ndarray) -> ir.Value:
    value = ir.Value(name=name, const_value=ir.tensor(array, name=name))
    value.shape, value.dtype = ir.Shape(array.shape), ir.DataType.from_numpy(array.dtype)
    model.graph.register_initializer(value)
    return value
