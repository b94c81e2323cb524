"""The forms of a linear layer: MatMul(x, W) + b -> Gemm(x, W, b) for 2-D x and W when W, b are
constants Gemm can broadcast; a Gemm over x flattened to 2-D and reshaped back -> MatMul (+ Add)
over x itself.

A bias of one row ([1, N]) is written as the vector [N] it is: what a Gemm's bias usually is, and
what the INT8 quantizer takes (it keeps a Gemm with a 2-D bias in float)."""

from __future__ import annotations

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import pattern
from onnxscript.rewriter.pattern import MatchResult

from onnxslim.passes.rules.common import FLOAT_TYPES, constant, new_initializer, static_dims
from onnxslim.passes.rules.reshape import DimRoots, same_dim, trace
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


class FlattenedGemmToMatMul(pattern.RewriteRuleClassBase):
    """Reshape(Gemm(Reshape(x, [-1, K]), W, b), s) -> Reshape(MatMul(x, W) + b, s).

    HF GPT-2's Conv1D (`addmm` over a view) exports so, and onnx-simplifier writes every linear
    layer over a 3-D x so (BERT 153 nodes against 126 from the raw export, 1.04x its time on ORT,
    which fuses the MatMul form into its attention and bias kernels; GPT-2 188 -> 120 nodes,
    0.89-0.91x the time); the Reshape left goes as a no-op where s is
    x.shape[:-1] + [N] (`remove-no-ops`), or takes a constant shape (`fuse-chains`).

    Math: the flattened row r of x is x[i, ..., :] for the leading index (i, ...) whose row-major
    rank is r, and Gemm's row r is x[i, ..., :] @ W + b; MatMul broadcasts W over the leading axes
    and gives x[i, ..., :] @ W at (i, ...), and adding b (a vector [N]) broadcasts the same: the
    two products hold the same elements in the same row-major order, and a Reshape reads only
    that order and the element count, but for the dims a 0 in s copies (allowzero=0) from the
    tensor it reshapes. So s is traced (`reshape.trace`): no literal 0, and each element not a
    constant is x's own dim at its position (`reshape.same_dim`; a 0 there at run time copies x's
    dim, itself). x is flattened to [-1, K] by a constant, or by its own last dim (traced: a
    head merge's `h * d`, symbolic, which the Gemm holds to K). transB: W^T, a new constant (only
    where no other node reads W); alpha and beta must be 1 (no scaling to carry), transA 0. A
    flattening Reshape other Gemms read (onnxsim shares one between the query, key and value
    projections) stays for them: the rule leaves the nodes it matched, and onnxscript then drops
    those no output needs.
    """

    def __init__(self) -> None:
        super().__init__(remove_nodes=False)  # (a flattening Reshape others read must stay)

    def pattern(self, op, x, flat_shape, w, shape):
        flat = op.Reshape(x, flat_shape, _allow_other_attributes=True, _outputs=["flat"])
        y = op.Gemm(flat, w, _allow_other_inputs=True, _allow_other_attributes=True, _outputs=["y"])
        return op.Reshape(y, shape, _allow_other_attributes=True, _outputs=["out"])

    def check(self, context, x, flat_shape, w, shape, flat, y, out) -> MatchResult:  # noqa: ARG002 onnxscript passes the matched values by keyword
        result = MatchResult()
        gemm = y.producer()
        weight = constant(w)
        dims = static_dims(x)
        if weight is None or weight.ndim != 2 or dims is None or len(dims) < 3:
            return result.fail("not a constant 2-D weight over an input of rank 3 or more")
        attrs = gemm.attributes
        if attrs.get_int("transA", 0) or attrs.get_float("alpha", 1.0) != 1.0:
            return result.fail("Gemm with transA or alpha")
        k, n = weight.shape[::-1] if attrs.get_int("transB", 0) else weight.shape
        if attrs.get_int("transB", 0) and len(list(w.uses())) > 1:
            return result.fail("a transposed weight other nodes read too (a copy)")
        if _bias(gemm, n) is False:
            return result.fail("bias is not a constant vector of N, or beta is not 1")
        flattened, roots = trace(flat_shape), DimRoots()
        if (
            k == 0
            or flattened is None
            or len(flattened) != 2
            or flattened[0] != -1
            or not (
                dims[-1] == k == flattened[1] or same_dim(flattened[1], x, len(dims) - 1, roots)
            )
        ):
            return result.fail("not x flattened to [-1, K]")
        if len(list(y.uses())) > 1 or y.is_graph_output():
            return result.fail("the 2-D product is read elsewhere")
        source = x.producer()
        if source is not None and source.op_type in _UNIT_DIMS and source.domain in ("", "ai.onnx"):
            # (`fuse-chains` makes the two one Reshape first: tf2onnx's einsum, an Unsqueeze
            # before the flattening, was kept as a node of its own, 10 more in a transformer)
            return result.fail("x comes out of a Squeeze or Unsqueeze")
        elements = trace(shape)
        if elements is None or any(
            e == 0 if isinstance(e, int) else j >= len(dims) - 1 or not same_dim(e, x, j, roots)
            for j, e in enumerate(elements)
        ):
            return result.fail("the shape back has a 0, or a computed dim not x's own")
        return result

    def rewrite(self, op, x, flat_shape, w, shape, flat, y, out):  # noqa: ARG002 onnxscript passes the matched values by keyword
        gemm = y.producer()
        if gemm.attributes.get_int("transB", 0):
            w = new_initializer(op, np.ascontiguousarray(constant(w).T), w, "transposed")
        n = constant(w).shape[-1]
        # (typed and shaped here: the rules of this round, `fuse-chains` after this one, read
        # the shape of what they reshape)
        shape_of_product = ir.Shape([*x.shape.dims[:-1], n])
        product = op.MatMul(x, w)
        bias = _bias(gemm, n)
        if bias is not None:
            product.type, product.shape = x.type, shape_of_product
            product = op.Add(product, bias)
        product.type, product.shape = x.type, shape_of_product
        attrs = out.producer().attributes  # (allowzero: opset 14 on)
        allowzero = {"allowzero": attrs.get_int("allowzero")} if "allowzero" in attrs else {}
        return op.Reshape(product, shape, **allowzero)


#: Ops the chain rules merge with the flattening Reshape after them
_UNIT_DIMS = frozenset({"Squeeze", "Unsqueeze"})


def _bias(gemm, n: int):
    """The Gemm's bias as a vector of `n` to add (None: no bias), or False where it is not one."""
    c = gemm.inputs[2] if len(gemm.inputs) > 2 else None
    if c is None:
        return None
    bias = constant(c)
    if bias is None or gemm.attributes.get_float("beta", 1.0) != 1.0:
        return False
    return c if bias.shape in ((n,), (1, n)) else False


rules = (ConstantMatMulAddToGemm().rule(), FlattenedGemmToMatMul().rule())
