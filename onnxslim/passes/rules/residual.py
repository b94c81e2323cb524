"""The residual sum before a LayerNormalization written as Sum: the form ORT's CPU runs fastest.

    LayerNormalization(Add(a, b)) = LayerNormalization(Sum(a, b))      (same elementwise a + b)

ORT (level extended and up) fuses ``Add`` + ``LayerNormalization`` into
``com.microsoft.SkipLayerNormalization`` when it can prove the Add's two inputs have the same 3-D
shape. Its CPU kernel is a scalar loop with a division per element: about 3x slower than the
``Add`` and ``LayerNormalization`` it replaces (measured on ORT 1.32, float32, 1 and 2 threads). A
model whose shapes ORT could not follow gets no such fusion; once folding makes a computed
Reshape shape constant, or the saved shapes tie the two inputs together, ORT fuses and the
optimized model runs slower than the original. ORT matches ``Add`` only, so ``Sum`` keeps the pair
as it is. The rule touches nothing else: a bias Add (constant operand), an Add whose result is
also used elsewhere or an input of known rank other than 3 is never fused by ORT.

The price: ORT's CPU Sum is not multithreaded where Add is, so with many threads the sum costs
one serial add (still far less than SkipLayerNormalization). ORT's CUDA SkipLayerNormalization
is fast: for GPU targets, ``--skip residual-sum``.
"""

from __future__ import annotations

from onnxscript.rewriter import pattern

from onnxslim.passes.rules.common import FLOAT_TYPES, constant, opset


class ResidualSum(pattern.RewriteRuleClassBase):
    """Add(a, b) -> Sum(a, b) when its only use is the input of a LayerNormalization: ONNX's
    from opset 17, ONNX Runtime's own (which it fuses alike) below."""

    def pattern(self, op, a, b):
        return op.Add(a, b, _outputs=["total"])

    def check(self, context, a, b, total, **_) -> pattern.MatchResult:
        result = pattern.MatchResult()
        uses = list(total.uses())
        if len(uses) != 1 or total.is_graph_output():
            return result.fail("the sum has other uses than one LayerNormalization")
        user, index = uses[0]
        if user.op_type != "LayerNormalization" or user.domain not in ("", "ai.onnx") or index != 0:
            return result.fail("the sum is not normalized")
        if opset(context) < 8:  # (below 17 LayerNormalization is ONNX Runtime's own op)
            return result.fail("Sum broadcasts from opset 8")
        if a.dtype not in FLOAT_TYPES:
            return result.fail("not a float sum", a)
        for value in (a, b):
            if constant(value) is not None:
                return result.fail("a constant operand (a bias): ORT does not fuse it", value)
            if value.shape is not None and value.shape.rank() != 3:
                return result.fail("ORT fuses 3-D sums only", value)
        return result

    def rewrite(self, op, a, b, **_):
        return op.Sum(a, b)


rules = (ResidualSum.rule(),)
