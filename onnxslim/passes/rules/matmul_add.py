"""MatMul(x, W) + b -> Gemm(x, W, b) for 2-D x and W when W, b are constants Gemm can broadcast.

A bias of one row ([1, N]) is written as the vector [N] it is: what a Gemm's bias usually is, and
what the INT8 quantizer takes (it keeps a Gemm with a 2-D bias in float)."""

from __future__ import annotations

from onnxslim.passes.rules.common import FLOAT_TYPES, new_initializer
from onnxslim.passes.upstream import MatMulAddToGemm


class ConstantMatMulAddToGemm(MatMulAddToGemm):
    """onnxscript's rule, for a constant weight and a rank <= 2 bias that keeps the output shape."""

    def check(self, context, input_a, input_b, input_c, **_):
        result = super().check(context, input_a, input_b)
        if not result:
            return result
        weight, bias = input_b.const_value, input_c.const_value
        if weight is None or bias is None:
            return result.fail("weight and bias must be constants")
        if input_a.dtype not in FLOAT_TYPES or bias.dtype != weight.dtype:
            return result.fail("Gemm does not take this dtype")
        columns = weight.shape[1]
        if bias.shape.rank() > 2 or (bias.shape.rank() >= 1 and bias.shape[-1] not in (1, columns)):
            return result.fail("bias does not broadcast over the Gemm output")
        # input_a is 2-D (super().check): bias rows must be 1 or its rows
        if bias.shape.rank() == 2 and bias.shape[0] not in (1, input_a.shape[0]):
            return result.fail("bias rows do not match the input rows")
        return result

    def rewrite(self, op, input_a, input_b, input_c):
        bias = input_c.const_value
        if bias.shape.rank() == 2 and bias.shape[0] == 1:
            input_c = new_initializer(op, bias.numpy().reshape(-1), input_c, "row")
        return super().rewrite(op, input_a, input_b, input_c)


rules = (ConstantMatMulAddToGemm().rule(),)
