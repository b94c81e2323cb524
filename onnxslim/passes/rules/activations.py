"""Hard-swish written out as x * Clip(x + 3, 0, 6) / 6 fused into HardSwish (opset 14+) or
x * HardSigmoid(x).

Clip(x + 3, 0, 6) / 6 alone becomes HardSigmoid(x, 1/6, 0.5) by onnxscript's rule, wired alongside.
"""

from __future__ import annotations

import onnx_ir as ir
from onnxscript.rewriter.pattern import MatchResult

from onnxslim.passes import upstream
from onnxslim.passes.rules.common import opset

_TYPES = frozenset({ir.DataType.FLOAT, ir.DataType.FLOAT16, ir.DataType.DOUBLE})


class HardSwish(upstream.HardSwishFusion):
    """x * Clip(x + 3, 0, 6) / 6 -> HardSwish(x) (opset 14+), else x * HardSigmoid(x, 1/6, 0.5)."""

    def __init__(self, native: bool) -> None:
        super().__init__("HardSwish" if native else "HardSwishAsHardSigmoid")
        self.native = native

    def check(self, context, x, **kwargs) -> MatchResult:
        result = super().check(context, x, **kwargs)
        if result and x.dtype not in _TYPES:
            return result.fail("HardSwish/HardSigmoid take float types only")
        if result and (opset(context) >= 14) != self.native:
            return result.fail("HardSwish exists from opset 14")
        return result

    def rewrite(self, op, x, **_):
        if self.native:
            return op.HardSwish(x)
        return op.Mul(x, op.HardSigmoid(x, alpha=1 / 6, beta=0.5))


class HardSigmoid(upstream.HardSigmoidFusion):
    """Clip(x + 3, 0, 6) / 6 -> HardSigmoid(x, 1/6, 0.5) for float x."""

    def check(self, context, x, **kwargs) -> MatchResult:
        result = super().check(context, x, **kwargs)
        if result and x.dtype not in _TYPES:
            return result.fail("HardSigmoid takes float types only")
        return result


class HardSwishFromHardSigmoid(upstream.HardSwishFusionFromHardSigmoid):
    """x * HardSigmoid(x, 1/6, 0.5) -> HardSwish(x) from opset 14."""

    def check(self, context, x, **kwargs) -> MatchResult:
        result = super().check(context, x, **kwargs)
        if result and opset(context) < 14:
            return result.fail("HardSwish exists from opset 14")
        return result


rules = tuple(
    rule
    for base in (
        HardSwish.rule(True),
        HardSwish.rule(False),
        HardSigmoid.rule(),
        HardSwishFromHardSigmoid.rule(),
    )
    for rule in base.commute()
)
