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
    """auto_pad -> explicit pads on a Conv whose input a Pad computes (the step before
    FuseConvPad)."""

    def check(self, context, conv, **kwargs) -> pattern.MatchResult:
        source = conv.producer().inputs[0].producer()
        if source is None or source.op_type != "Pad":
            return pattern.MatchResult().fail("no Pad feeds the Conv: nothing to fold")
        return super().check(context, conv, **kwargs)


rules = (ExplicitPadsBeforeFusion.rule(), onnxscript_rules.fuse_pad_into_conv_rule)
