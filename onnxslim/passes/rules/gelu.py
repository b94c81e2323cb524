"""Gelu written out elementwise fused into Gelu (opset 20+).

Erf form (exact)::

    x * 0.5 * (1 + erf(x / sqrt(2)))                                  = Gelu(x)

Tanh form (approximation)::

    x * 0.5 * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x^3)))        = Gelu(x, approximate="tanh")

x / sqrt(2) may be written x * (1 / sqrt(2)), x^3 as Pow(x, 3) or x * (x * x), and the three factors
x, 0.5 and (1 + ...) may be multiplied in any order; operand order of every Add and Mul is free.
A constant matches when it is the exact value rounded to its dtype, or within 1e-6 relative of it.
"""

from __future__ import annotations

import math

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import pattern

from onnxslim.model.graph import producer
from onnxslim.passes.rules.common import constant, keeps_shape, opset
from onnxslim.passes.rules.operands import either, ordered

_TYPES = frozenset({ir.DataType.FLOAT, ir.DataType.FLOAT16, ir.DataType.DOUBLE})
SQRT2 = math.sqrt(2.0)
SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
CUBIC = 0.044715
#: How the three factors x, 0.5 and (1 + erf/tanh(...)) are grouped.
GROUPINGS = ("(x*h)*c", "x*(h*c)", "(x*c)*h")


def _is(value: ir.Value | None, expected: float) -> bool:
    """`value` is a constant of one element equal to `expected` rounded to its dtype, or closer
    than 1e-6 relative."""
    array = constant(value)
    if array is None or array.size != 1 or array.dtype.kind != "f":
        return False
    actual = float(array.reshape(-1)[0])
    rounded = float(np.array(expected, dtype=array.dtype))
    return actual == rounded or math.isclose(actual, expected, rel_tol=1e-6)


def _pair_is(x: ir.Value, a: ir.Value | None, b: ir.Value | None, expected: float) -> bool:
    """{a, b} is {x, a constant `expected`}, in either order."""
    return (a is x and _is(b, expected)) or (b is x and _is(a, expected))


class _Gelu(pattern.RewriteRuleClassBase):
    """x * 0.5 * cdf, grouped as `grouping`; `swapped`: the root Mul's operands the other way round.

    The pair of plain operands of "(x*h)*c" is matched as free variables (p, q) and sorted out in
    the check: a pattern alternative between two plain variables would always take the first order.
    """

    approximate = "none"

    def __init__(self, form: str, grouping: str, swapped: bool) -> None:
        order = GROUPINGS.index(grouping)
        super().__init__(f"{type(self).__name__}{form}{order}{'Swapped' if swapped else ''}")
        self.grouping, self.swapped = grouping, swapped

    def product(self, op, x, cdf, half, p, q):
        if self.grouping == "(x*h)*c":
            return ordered("Mul", op, op.Mul(p, q), cdf, self.swapped)
        if self.grouping == "x*(h*c)":
            return ordered("Mul", op, x, either("Mul", op, half, cdf), self.swapped)
        return ordered("Mul", op, either("Mul", op, x, cdf), half, self.swapped)

    def check_product(self, context, x, half, one, p, q, bindings) -> pattern.MatchResult:
        """The checks shared by both forms; `bindings` are all the matched values."""
        result = pattern.MatchResult()
        if opset(context) < 20:
            return result.fail("Gelu exists from opset 20")
        if x.dtype not in _TYPES:
            return result.fail("Gelu takes float types only", x)
        for value in bindings.values():
            array = constant(value) if isinstance(value, ir.Value) else None
            if array is not None and array.ndim and not keeps_shape(x, array.shape):
                return result.fail("a constant broadcasts x to another shape", value)
        if self.grouping == "(x*h)*c" and not _pair_is(x, p, q, 0.5):
            return result.fail("not x times 0.5", p)
        if self.grouping != "(x*h)*c" and not _is(half, 0.5):
            return result.fail("not times 0.5", half)
        if not _is(one, 1.0):
            return result.fail("not 1 + ...", one)
        return result

    def rewrite(self, op, x, **_):
        if self.approximate == "none":
            return op.Gelu(x)
        return op.Gelu(x, approximate=self.approximate)


class ErfGelu(_Gelu):
    """x * 0.5 * (1 + erf(x / sqrt(2))) -> Gelu(x).

    `divide`: x / sqrt(2) (else x * (1 / sqrt(2)), whose operands are free variables u, v).
    """

    def __init__(self, grouping: str, swapped: bool, divide: bool) -> None:
        super().__init__("Div" if divide else "Mul", grouping, swapped)
        self.divide = divide

    def pattern(self, op, x, root2, u, v, one, half, p, q):
        scaled = op.Div(x, root2) if self.divide else op.Mul(u, v)
        return self.product(op, x, either("Add", op, op.Erf(scaled), one), half, p, q)

    def check(
        self, context, x=None, root2=None, u=None, v=None, half=None, p=None, q=None, **bound
    ):
        result = pattern.MatchResult()
        if self.divide:
            if not _is(root2, SQRT2):
                return result.fail("erf's argument is not x / sqrt(2)", root2)
        else:
            # x is bound by the product unless the grouping is "(x*h)*c": then the shared value is x
            if x is None:
                x = next((value for value in (u, v) if value is p or value is q), None)
            if x is None or not _pair_is(x, u, v, 1 / SQRT2):
                return result.fail("erf's argument is not x * (1 / sqrt(2))", u)
        bound.update(root2=root2, u=u, v=v, half=half, p=p, q=q)
        return self.check_product(context, x, half, bound.get("one"), p, q, bound)

    def rewrite(self, op, x=None, u=None, v=None, p=None, q=None, **_):
        if x is None:  # x * (1/sqrt2) inside, x * 0.5 outside: x is the value both share
            x = u if u is p or u is q else v
        return super().rewrite(op, x)


class TanhGelu(_Gelu):
    """x * 0.5 * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x^3))) -> Gelu(x, approximate="tanh").

    `power`: x^3 written Pow(x, 3) (else x * (x * x)).
    """

    approximate = "tanh"

    def __init__(self, grouping: str, swapped: bool, power: bool) -> None:
        super().__init__("Pow" if power else "Mul", grouping, swapped)
        self.power = power

    def pattern(self, op, x, three, cubic, k, one, half, p, q):
        cube = op.Pow(x, three) if self.power else either("Mul", op, x, op.Mul(x, x))
        inner = either("Mul", op, either("Add", op, x, either("Mul", op, cube, cubic)), k)
        return self.product(op, x, either("Add", op, op.Tanh(inner), one), half, p, q)

    def check(self, context, x, **bound):
        result = pattern.MatchResult()
        if self.power and not _is(bound.get("three"), 3.0):
            return result.fail("Pow exponent is not 3", bound.get("three"))
        if not (_is(bound.get("cubic"), CUBIC) and _is(bound.get("k"), SQRT_2_OVER_PI)):
            return result.fail("the constants are not 0.044715 and sqrt(2/pi)", bound.get("k"))
        parts = (bound.get(name) for name in ("half", "one", "p", "q"))
        return self.check_product(context, x, *parts, bound)


def awaits_half(value: ir.Value) -> bool:
    """Whether `value` is x * (1 + erf(...)) or x * (1 + tanh(...)): a Gelu written out, before
    opset 20, that only its * 0.5 completes. ORT fuses the whole product into one Gelu kernel, so
    no rule may fold that 0.5 elsewhere (into the next Conv's weights: 16% slower on PP-OCRv6)."""
    node = value.producer()
    return node is not None and node.op_type == "Mul" and any(map(_is_one_plus_cdf, node.inputs))


def _is_one_plus_cdf(value: ir.Value | None) -> bool:
    """`value` is Add(erf(...) or tanh(...), 1), in either order."""
    node = producer(value)
    if node is None or node.op_type != "Add" or len(node.inputs) != 2:
        return False
    for cdf, one in (node.inputs, reversed(node.inputs)):
        source = producer(cdf)
        if source is not None and source.op_type in ("Erf", "Tanh") and _is(one, 1.0):
            return True
    return False


rules = tuple(
    rule(grouping, swapped, flag)
    for rule in (ErfGelu.rule, TanhGelu.rule)
    for grouping in GROUPINGS
    for swapped in (False, True)
    for flag in (True, False)
)
