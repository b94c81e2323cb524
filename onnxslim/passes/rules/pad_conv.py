"""A zero Pad before a Conv folded into the Conv's pads (onnxscript's rules):

    Conv(Pad(x, p), pads=q) = Conv(x, pads=p + q)      (p: zeros, spatial axes only)

onnxscript's fusion needs the Conv's pads explicit (auto_pad NOTSET) and makes them so on every
Conv, which gains nothing where no Pad feeds it and makes the file bigger (a NOTSET string and a
pads attribute where VALID stood); ours makes them explicit only where a Pad feeds the Conv.
"""

from __future__ import annotations

from onnxscript.rewriter import pattern
from onnxscript.rewriter.rules import common as onnxscript_rules

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
