"""Reshape to a shape computed at run time (Shape -> Gather/Slice -> Concat ...) given a constant
shape instead.

The shape tensor is traced back element by element: a constant, or dim i of some tensor (static,
or DimOf: that tensor's dim, known by its symbolic name when shape inference gave one). An element
equal to the input's own dim at that position becomes 0 (copy it), a single unknown one becomes -1
(inferred from the element count), so the shape subgraph is left dead. This is torch's flatten with
a dynamic batch (`Shape -> Gather(0) -> Unsqueeze -> Concat([n, -1])`, or `x.view(x.size(0), -1)`),
which becomes `Reshape(x, [0, -1])` as OnnxSlim and ORT write it.

Math: Reshape(x, s) with allowzero=0 reads s[j] == 0 as x.shape[j]. A traced s[j] that is x's dim j
(the same tensor, a tensor of the same shape through elementwise ops, or the same symbolic name)
is therefore 0 in the constant shape; the new Reshape has allowzero=0. With allowzero=1 a 0 in s is
a literal 0: copying is still exact when s has no literal 0 (s[j] = x.shape[j] at run time either
way); with a literal 0, neither 0 (copy) nor -1 (invalid beside a 0) can stand for a traced dim,
and the Reshape is left as it is.

A Reshape of a Reshape only depends on the order of the elements: Reshape(Reshape(y, s1), s)
becomes Reshape(y, constant) when s traced against y gives one (torch's `x.flatten(2)` ...
`.reshape(b, c, h, w)` back to x's own dims, which then goes as a no-op). A literal 0 of s copies
dim j of the inner Reshape's output, element j of s1: a dim of y for a 0 there (allowzero=0), or
s1[j] itself.

Shape elements are traced through Shape, Gather, Slice, Concat, Cast, (Un)Squeeze, Reshape, Mul
(products of dims: `h * w`) and Where(Equal(a, b), c, d) when each comparison is decided (two ints,
the same dim, or a dim and a negative int: dims are never negative), which is how torch's `expand`
writes its shape. When more than one element is neither a constant nor a copy, the element count
decides one of them (`_counted`): `x.view(-1, c, h * w)` is [0, 0, -1].

Dims proved equal through the graph (EfficientNet's `bs = inputs.size(0)` at the top of forward,
`x.view(bs, -1)` after the pooling: shape inference names the pooled batch dim apart from the
input's). A dim (v, k) is traced up to its root, a dim (r, m) it provably equals; two dims with
the same root are equal at run time, whatever the values. Each step keeps the dim by the op's
definition:
- ops whose output has the shape of input 0 (Relu, Cast, Clip, Softmax, BatchNormalization, LRN,
  ...):
  (out, k) <- (in, k);
- Conv, ConvTranspose, the pools (Max, Average, Lp, Global*), DepthToSpace, SpaceToDepth:
  their output is N x ... for an input N x ...: (out, 0) <- (in, 0); Conv and the windowed pools
  with stride 1 and pads covering the dilated kernel ("same" convs) also keep the spatial dims:
  (out, k) <- (in, k) for k >= 2;
- multidirectional broadcasting (Add, Mul, Where, Max, ...; every operand's rank known): operands
  are aligned from the right, so out axis k is operand axis k - (rank(out) - rank(operand)); an
  operand without that axis, or with a static 1 there, leaves the dim to the others (max(1, d) is d,
  and 1 broadcasts to 0 too); the remaining operands must all trace to the same root, and then out
  has it (two unrelated dims d and e broadcast to whichever is not 1: provably neither). A constant
  bias ([C, 1, 1], a scalar) is thereby transparent on the axes where it is 1 or absent;
- Transpose: (out, j) <- (in, perm[j]) (perm defaults to the reversed axes: the rank must be known);
- Concat on axis a: (out, k) for k != a when every input traces to the same root at k (the inputs
  must agree there anyway; requiring the proof keeps a model that fails at run time failing);
- Pad: (out, k) <- (in, k) when the pads of axis k are constant zeros (or k is not in `axes`);
- Reshape: (out, k) <- (in, k) when its traced shape has a literal 0 at k (allowzero=0); with
  allowzero=1, <- the dim that element k is (Shape(v)[m] there: (v, m)).
- MatMul by a 2-D B: every dim of A but the last: (out, k) <- (A, k) for k < rank(A) - 1.
Resize, Gemm and anything else end the trace: their output is its own root.
The trace is depth first without recursion, memoized per Reshape (each op is looked at once per
axis), and stops after _MAX_STEPS ops: a dim whose trace stops is its own root, which proves
nothing but is never wrong, so a Reshape costs at most that many steps each round.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import onnx_ir as ir
from onnxscript.rewriter import pattern
from onnxscript.rewriter.pattern import MatchResult

from onnxslim.passes.rules.common import (
    constant,
    keeps_shape,
    new_initializer,
    normalize_axes,
    parameter,
    slice_params,
)


@dataclass(frozen=True, eq=False)
class DimOf:
    """Dim `index` (>= 0) of `value`; `symbol` its symbolic dim when shape inference named it."""

    value: ir.Value
    index: int
    symbol: ir.SymbolicDim | None = None


@dataclass(frozen=True, eq=False)
class Product:
    """The product of dims `factors` and `scale` >= 1 (not a lone dim): torch's `h * w`."""

    factors: tuple[DimOf, ...]
    scale: int = 1


#: One element of a traced shape tensor: a known int, a dim of some tensor, a product of dims, or
#: None (unknown).
Dim = int | DimOf | Product | None

_MAX_DEPTH = 8


class ReshapeToTracedShape(pattern.RewriteRuleClassBase):
    """Reshape(x, <computed shape>) -> Reshape(x, constant) when every element is known,
    copied or inferable; Reshape(Reshape(y, s1), s) -> Reshape(y, constant) likewise."""

    def pattern(self, op, x, shape):
        return op.Reshape(x, shape, _allow_other_attributes=True, _outputs=["out"])

    def check(self, context, x, shape, out) -> MatchResult:  # noqa: ARG002 onnxscript passes the matched values by keyword
        if _rebuilt(x, shape, out) is None:
            return MatchResult().fail("shape not traceable, or constant and nothing to compose")
        return MatchResult()

    def rewrite(self, op, x, shape, out):
        source, target = _rebuilt(x, shape, out)
        return op.Reshape(source, new_initializer(op, target, out, "shape"))


def _rebuilt(x: ir.Value, shape: ir.Value, out: ir.Value) -> tuple[ir.Value, np.ndarray] | None:
    """(source, constant shape) with Reshape(source, constant) equal to `out`: source is x when
    the shape is computed, or the input of the Reshape producing x (the result only depends on
    the elements' order); None if neither gives a constant shape.

    A literal 0 of the outer shape (allowzero=0) copies x's dim j, which is element j of the inner
    shape: a dim of the inner input for its own 0 (when its allowzero=0), or the element itself.
    A constant shape without a 0 on a Reshape is onnxscript's reshape_reshape_rule.
    """
    elements = trace(shape)
    if elements is None:
        return None
    if out.producer().attributes.get_int("allowzero", 0) and 0 in elements:
        return None
    if constant(shape) is None:
        target = _target(x, elements)
        if target is not None:
            return x, target
    elif 0 not in elements:
        return None
    inner = x.producer()
    if inner is None or inner.op_type != "Reshape" or inner.domain not in ("", "ai.onnx"):
        return None
    source, copies_zero = inner.inputs[0], not inner.attributes.get_int("allowzero", 0)
    inner_elements = trace(inner.inputs[1])
    if source is None or inner_elements is None:
        return None
    composed = []
    for j, element in enumerate(elements):
        if element == 0:
            copied = inner_elements[j] if j < len(inner_elements) else None
            if copied == 0:
                copied = DimOf(source, j) if copies_zero else None
            element = copied if copied != -1 else None
        composed.append(element)
    target = _target(source, composed)
    return (source, target) if target is not None else None


def _target(x: ir.Value, elements: list[Dim]) -> np.ndarray | None:
    """The constant shape (for allowzero=0) giving x the traced shape `elements` (ints are kept:
    a 0 there copies x's dim, as the caller meant); None if more than one element stays unknown
    after the element count decided what it can (`_counted`).

    A copied dim equals the original element even if it is 0: allowzero only matters for literal 0s.
    """
    roots = DimRoots()
    target = []
    for j, element in enumerate(elements):
        if not isinstance(element, int):
            element = 0 if same_dim(element, x, j, roots) else -1
        target.append(element)
    if target.count(-1) > 1:
        target = _counted(x, elements, target, roots)
    return np.array(target, dtype=np.int64) if target is not None else None


def _counted(
    x: ir.Value, elements: list[Dim], target: list[int], roots: DimRoots
) -> list[int] | None:
    """`target` with one -1 (an inferred or unknown element) resolved by the element count, so
    that a single -1 remains; None if none can be.

    Math: Reshape keeps the element count, so the element at p is numel(x) / (product of the
    others). With each other element a product of x's dims and constants (a 0 copies x's dim at
    its position), the quotient is a product of x's dims: x's dim p itself gives 0, a constant
    gives itself (torch's `x.view(-1, c, h * w)` on x [n, c, h, w] is [0, 0, -1]). An empty x
    (a dim 0) leaves a -1 undetermined, and runtimes differ on what they make of it; torch
    refuses such a view, and the rewrite may pick a different one.
    """
    if x.shape is None:
        return None
    dims = list(x.shape.dims)

    def product(axes: list[int], scale: int = 1) -> tuple[int, Counter]:
        """x's dims `axes` times `scale`: (constant, Counter of symbolic dims by run-time identity:
        their name, or their root)."""
        symbols = Counter()
        for axis in axes:
            dim = dims[axis]
            if isinstance(dim, int):
                scale *= dim
            else:
                symbols[dim.value if dim.value is not None else roots.root(x, axis)] += 1
        return scale, symbols

    def as_product(position: int) -> tuple[int, Counter] | None:
        """The element at `position` as a product of x's dims; None if it is not one."""
        value, element = target[position], elements[position]
        if value > 0:
            return value, Counter()
        if value == 0:
            return product([position]) if position < len(dims) else None
        parts = element.factors if isinstance(element, Product) else [element]
        axes = [_axis_of(part, x, dims, roots) for part in parts if isinstance(part, DimOf)]
        if len(axes) != len(parts) or None in axes:
            return None
        return product(axes, element.scale if isinstance(element, Product) else 1)

    scale_all, symbols_all = product(list(range(len(dims))))
    for p in (j for j, value in enumerate(target) if value == -1):
        others = [as_product(j) for j in range(len(target)) if j != p]
        if None in others:
            continue
        scale, symbols = scale_all, Counter(symbols_all)
        for other_scale, other_symbols in others:
            if other_scale <= 0 or scale % other_scale:
                scale = 0
                break
            scale //= other_scale
            symbols.subtract(other_symbols)
        if scale <= 0 or any(count < 0 for count in symbols.values()):
            continue
        own = product([p]) if p < len(dims) and not isinstance(dims[p], int) else None
        if not +symbols:
            resolved = scale  # a constant
        elif own is not None and (scale, +symbols) == own:
            resolved = 0  # x's own dim at p
        else:
            continue
        counted = [*target[:p], resolved, *target[p + 1 :]]
        if counted.count(-1) <= 1:
            return counted
    return None


def _axis_of(element: DimOf, x: ir.Value, dims: list, roots: DimRoots) -> int | None:
    """The first axis of x whose dim `element` provably is; None if none."""
    return next((k for k in range(len(dims)) if same_dim(element, x, k, roots)), None)


def same_dim(element: Dim, value: ir.Value, axis: int, roots: DimRoots) -> bool:
    """Whether the traced `element` is dim `axis` (>= 0) of `value` at run time: the same static
    int, the same dim of a tensor of the same shape (through elementwise ops), the same symbolic
    name, or a dim with the same root (`roots`: the dim roots traced so far)."""
    dims = list(value.shape.dims) if value.shape is not None else []
    if value.shape is not None and axis >= len(dims):  # value has no such axis
        return False
    dim = dims[axis] if axis < len(dims) else None
    if isinstance(element, int):
        return isinstance(dim, int) and dim == element
    if not isinstance(element, DimOf):
        return False
    if element.index == axis and _shape_root(element.value) is _shape_root(value):
        return True
    if (
        element.symbol is not None
        and isinstance(dim, ir.SymbolicDim)
        and dim.value is not None
        and element.symbol == dim
    ):
        return True
    return roots.root(element.value, element.index) == roots.root(value, axis)


#: Ops whose output 0 has the shape of their input 0.
_SAME_SHAPE = frozenset(
    {
        *("Identity", "Cast", "CastLike", "Dropout", "Relu", "LeakyRelu", "Elu", "Selu", "Gelu"),
        *("Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Softplus", "Softsign", "Mish", "Clip"),
        *("Neg", "Abs", "Sign", "Exp", "Log", "Sqrt", "Reciprocal", "Erf", "Floor", "Ceil"),
        *("Round", "Sin", "Cos", "Not", "Softmax", "LogSoftmax", "LayerNormalization"),
        *("BatchNormalization", "InstanceNormalization", "LpNormalization", "LRN"),
    }
)


#: Binary ops whose output has the shape of their non-constant input when broadcasting the
#: constant one keeps it.
_BROADCAST = frozenset({"Add", "Sub", "Mul", "Div", "Pow"})


def _shape_root(value: ir.Value) -> ir.Value:
    """The first tensor up the chain of shape-keeping ops (Relu, Cast, x + bias, ...) that ends
    in `value`: tensors with the same root have the same shape."""
    for _ in range(_MAX_DEPTH * 4):
        node = value.producer()
        if node is None or node.domain not in ("", "ai.onnx") or node.outputs[0] is not value:
            break
        source = None
        if node.op_type in _SAME_SHAPE and node.inputs and node.inputs[0] is not None:
            source = node.inputs[0]
        elif node.op_type in _BROADCAST and len(node.inputs) == 2 and None not in node.inputs:
            source = _keeping_operand(*node.inputs)
        if source is None:
            break
        value = source
    return value


#: Ops whose output 0 keeps the batch dim (axis 0) of input 0: N x C x ... -> N x M x ...
_KEEPS_BATCH = frozenset(
    {
        *("Conv", "ConvTranspose", "MaxPool", "AveragePool", "LpPool", "GlobalAveragePool"),
        *("GlobalMaxPool", "GlobalLpPool", "DepthToSpace", "SpaceToDepth"),
    }
)

#: Ops whose spatial output dims (axes >= 2) follow from the input's by kernel, stride, dilation
#: and pads.
_WINDOWED = frozenset({"Conv", "MaxPool", "AveragePool", "LpPool"})

#: Ops broadcasting all their inputs multidirectionally (numpy-style) to the output's shape.
_MULTI_BROADCAST = frozenset(
    {
        *_BROADCAST,
        *("Sum", "Max", "Min", "Mean", "Mod", "Where", "PRelu", "BitShift"),
        *("Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "And", "Or", "Xor"),
    }
)

#: Ops traced for one Reshape's dims (see the module docstring).
_MAX_STEPS = 4096

#: A dim: (tensor, axis >= 0).
_Axis = tuple[ir.Value, int]


class DimRoots:
    """Roots of dims (value, axis): dims with the same root are equal at run time. Memoized; only
    valid while the graph does not change (one per Reshape checked)."""

    def __init__(self) -> None:
        self._memo: dict[_Axis, _Axis] = {}
        self._steps = 0

    def root(self, value: ir.Value, axis: int) -> _Axis:
        """The root of dim (value, axis): the common root of the dims it is made of (_sources),
        or itself. Depth first without recursion (a ResNet's residual Adds nest hundreds deep)."""
        start: _Axis = (value, axis)
        stack, sources_of = [start], {}
        while stack:
            dim = stack[-1]
            if dim in self._memo:
                stack.pop()
                continue
            sources = sources_of.get(dim)
            if sources is None:
                if self._steps >= _MAX_STEPS:  # out of budget: its own root, proves nothing
                    self._memo[dim] = dim
                    continue
                self._steps += 1
                sources = sources_of[dim] = self._sources(*dim)
                pending = [source for source in sources if source not in self._memo]
                if pending:
                    stack.extend(pending)
                    continue
            found = {self._memo[source] for source in sources}
            self._memo[dim] = found.pop() if len(found) == 1 else dim
            stack.pop()
        return self._memo[start]

    @staticmethod
    def _sources(value: ir.Value, axis: int) -> list[_Axis]:
        """Dims one op up that (value, axis) equals when they all share a root; [] if none."""
        node = value.producer()
        if node is None or node.domain not in ("", "ai.onnx") or node.outputs[0] is not value:
            return []
        op, inputs = node.op_type, node.inputs
        if not inputs or inputs[0] is None:
            return []
        if op in _SAME_SHAPE or (op in _KEEPS_BATCH and axis == 0):
            sources = [(inputs[0], axis)]
        elif op in _WINDOWED and axis >= 2:
            sources = [(inputs[0], axis)] if _keeps_spatial(node, axis) else None
        elif op == "Transpose":
            sources = _transposed(node, axis)
        elif op == "Pad":
            sources = [(inputs[0], axis)] if _unpadded(node, axis) else None
        elif op == "Concat":
            sources = _concatenated(node, axis)
        elif op == "Reshape":
            sources = _reshaped(node, axis)
        elif op in _MULTI_BROADCAST:
            sources = _broadcast_operands(node, axis)
        elif op == "MatMul":
            sources = _matmul_rows(node, axis)
        else:
            sources = None
        return sources or []


def _dims(value: ir.Value) -> tuple | None:
    """The value's dims (static ints or symbolic), from its data if only that gives them."""
    if value.shape is not None:
        return tuple(value.shape.dims)
    array = constant(value)
    return array.shape if array is not None else None


def rank_of(value: ir.Value) -> int | None:
    """The value's rank, from its data if only that gives it; None if unknown."""
    dims = _dims(value)
    return len(dims) if dims is not None else None


def _broadcast_operands(node: ir.Node, axis: int) -> list[_Axis] | None:
    """The operands' dims that out axis `axis` is the broadcast of, leaving out the absent ones
    and static 1s; None if a rank is unknown or an input is missing.

    Add, Mul, ... before opset 7 broadcast by a `broadcast`/`axis` attribute from `axis` on, not
    from the right: not traced.
    """
    if None in node.inputs or "broadcast" in node.attributes:
        return None
    shapes = [_dims(value) for value in node.inputs]
    if None in shapes:
        return None
    rank = max(len(dims) for dims in shapes)
    if not 0 <= axis < rank:
        return None
    operands = []
    for value, dims in zip(node.inputs, shapes):
        at = axis - (rank - len(dims))
        if at < 0 or (isinstance(dims[at], int) and dims[at] == 1):
            continue
        operands.append((value, at))
    return operands


def _concatenated(node: ir.Node, axis: int) -> list[_Axis] | None:
    """Concat's inputs at `axis` when it is not the concatenated axis; None otherwise."""
    ranks = {rank_of(value) for value in node.inputs if value is not None}
    ranks.discard(None)
    joined = normalize_axes([node.attributes.get_int("axis", 0)], ranks.pop() if ranks else None)
    if None in node.inputs or joined is None or joined[0] == axis:
        return None
    return [(value, axis) for value in node.inputs]


def _reshaped(node: ir.Node, axis: int) -> list[_Axis] | None:
    """The dim Reshape's output axis `axis` is: the input's for a literal 0 (allowzero=0), the
    dim a traced shape element names (allowzero=1: with 0, a size 0 there would copy the input's
    dim instead); None otherwise."""
    elements = trace(node.inputs[1]) if len(node.inputs) > 1 else None
    if elements is None or not 0 <= axis < len(elements):
        return None
    element, allowzero = elements[axis], node.attributes.get_int("allowzero", 0)
    if isinstance(element, DimOf) and allowzero:
        return [(element.value, element.index)]
    if element == 0 and not allowzero:
        return [(node.inputs[0], axis)]
    return None


def _transposed(node: ir.Node, axis: int) -> list[_Axis] | None:
    source = node.inputs[0]
    perm = node.attributes.get("perm")
    if perm is not None:
        perm = perm.as_ints()
    else:
        rank = rank_of(source)
        perm = list(reversed(range(rank))) if rank is not None else None
    if perm is None or not 0 <= axis < len(perm):
        return None
    return [(source, perm[axis])]


def _matmul_rows(node: ir.Node, axis: int) -> list[_Axis] | None:
    """MatMul(A, B) with B 2-D ([K, N]) gives A's dims but the last ([..., M, N]): out axis
    `axis` is A's below rank(A) - 1; None otherwise (a batched B broadcasts with A)."""
    a, b = node.inputs[0], node.inputs[1] if len(node.inputs) > 1 else None
    rank = rank_of(a)
    if b is None or rank is None or rank < 2 or rank_of(b) != 2 or axis >= rank - 1:
        return None
    return [(a, axis)]


def _keeps_spatial(node: ir.Node, axis: int) -> bool:
    """Whether a windowed op's output dim `axis` (>= 2) is its input's: out = floor((in + pads -
    dilation * (kernel - 1) - 1) / stride) + 1 (ceil for pools with ceil_mode: the same at stride
    1) is in for stride 1 when the pads sum to the dilated kernel's span, or auto_pad is SAME_*
    (out = ceil(in / stride))."""
    if any(attr.is_ref() for attr in node.attributes.values()):
        return False  # (a function's attribute its caller gives)
    kernel = node.attributes.get("kernel_shape")
    kernel = list(kernel.as_ints()) if kernel is not None else None
    if kernel is None and node.op_type == "Conv" and len(node.inputs) > 1:
        weight = _dims(node.inputs[1]) if node.inputs[1] is not None else None
        kernel = list(weight[2:]) if weight is not None else None
    spatial = len(kernel) if kernel is not None else 0
    at = axis - 2
    if not at < spatial or not isinstance(kernel[at], int):
        return False

    def ints(name: str, default: int) -> list[int]:
        attr = node.attributes.get(name)
        return list(attr.as_ints()) if attr is not None else [default] * spatial

    strides, dilations = ints("strides", 1), ints("dilations", 1)
    if len(strides) != spatial or len(dilations) != spatial or strides[at] != 1:
        return False
    span = dilations[at] * (kernel[at] - 1)
    auto_pad = node.attributes.get_string("auto_pad", "NOTSET")
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        return True
    if auto_pad == "VALID":
        return span == 0
    pads = node.attributes.get("pads")
    pads = list(pads.as_ints()) if pads is not None else [0] * (2 * spatial)
    return len(pads) == 2 * spatial and pads[at] + pads[at + spatial] == span


def _unpadded(node: ir.Node, axis: int) -> bool:
    """Whether Pad leaves axis `axis` unpadded: its pads there are constant zeros."""
    pads = parameter(node, "pads", 1)
    if pads is None or pads.ndim != 1 or pads.size % 2:
        return False
    count = pads.size // 2
    if len(node.inputs) > 3 and node.inputs[3] is not None:
        given = constant(node.inputs[3])
        axes = (
            normalize_axes(given.reshape(-1), rank_of(node.inputs[0]))
            if given is not None
            else None
        )
        if axes is None or len(axes) != count:
            return False
        if axis not in axes:
            return True
        at = axes.index(axis)
    elif axis < count:
        at = axis
    else:
        return False
    return int(pads[at]) == 0 and int(pads[at + count]) == 0


def _keeping_operand(a: ir.Value, b: ir.Value) -> ir.Value | None:
    """The operand whose shape a broadcast with the other, constant, operand keeps."""
    for data, other in ((a, b), (b, a)):
        array = constant(other)
        if array is not None and (array.ndim == 0 or keeps_shape(data, array.shape)):
            return data
    return None


def trace(value: ir.Value | None, depth: int = 0) -> list[Dim] | None:
    """The elements of a 1-D (or scalar) int tensor, each known, symbolic or None; None if its
    length is unknown.

    Tensors of rank > 1 are not traced: flattening them would make Gather/Slice pick wrong elements.
    """
    if value is None or depth > _MAX_DEPTH or (value.shape is not None and value.shape.rank() > 1):
        return None
    array = constant(value)
    if array is not None:
        integers = array.ndim <= 1 and np.issubdtype(array.dtype, np.integer)
        return [int(v) for v in array.reshape(-1)] if integers else None
    node = value.producer()
    rule = (
        _TRACERS.get(node.op_type) if node is not None and node.domain in ("", "ai.onnx") else None
    )
    elements = rule(node, depth + 1) if rule is not None else None
    return elements if elements is not None else _unknown(value)


def _unknown(value: ir.Value) -> list[Dim] | None:
    """Unknown elements, as many as the value's static length says (None if that is unknown too)."""
    shape = value.shape
    if shape is None or shape.rank() > 1 or (shape.rank() == 1 and not isinstance(shape[0], int)):
        return None
    return [None] * (shape[0] if shape.rank() == 1 else 1)


def _shape(node: ir.Node, _depth: int) -> list[Dim] | None:
    source = node.inputs[0]
    if source.shape is None:
        return None
    dims = [
        d if isinstance(d, int) else DimOf(source, j, d if d.value is not None else None)
        for j, d in enumerate(source.shape.dims)
    ]
    start = node.attributes.get_int("start", 0)
    return dims[slice(start, node.attributes.get_int("end", len(dims)))]


def _dims_of_unknown_rank(value: ir.Value) -> tuple[ir.Value, int] | None:
    """(x, start) when `value` is Shape(x, start) with x's rank unknown and start >= 0."""
    node = value.producer()
    if node is None or node.op_type != "Shape" or node.domain not in ("", "ai.onnx"):
        return None
    source, start = node.inputs[0], node.attributes.get_int("start", 0)
    if source.shape is not None or start < 0:
        return None
    return source, start


def _gather(node: ir.Node, depth: int) -> list[Dim] | None:
    indices = constant(node.inputs[1])
    if indices is None or indices.ndim > 1 or node.attributes.get_int("axis", 0) != 0:
        return None
    picked = _dims_of_unknown_rank(node.inputs[0])
    if picked is not None:  # dims of a tensor of unknown rank: only counted from the front
        source, start = picked
        if indices.size == 0 or any(int(i) < 0 for i in indices.reshape(-1)):
            return None
        return [DimOf(source, start + int(i)) for i in indices.reshape(-1)]
    elements = trace(node.inputs[0], depth)
    if elements is None:
        return None
    if any(not -len(elements) <= int(i) < len(elements) for i in indices.reshape(-1)):
        return None
    return [elements[int(i)] for i in indices.reshape(-1)]


def _slice(node: ir.Node, depth: int) -> list[Dim] | None:
    elements, params = trace(node.inputs[0], depth), slice_params(node)
    if (
        elements is None
        or params is None
        or params[0].size != 1
        or int(params[2][0]) not in (0, -1)
    ):
        return None
    start, end, _, step = (int(p[0]) for p in params)
    return elements[slice(start, end, step)] if step != 0 else None


def _concat(node: ir.Node, depth: int) -> list[Dim] | None:
    pieces = [trace(value, depth) for value in node.inputs]
    if any(piece is None for piece in pieces) or node.attributes.get_int("axis", 0) not in (0, -1):
        return None
    return [element for piece in pieces for element in piece]


def _same_elements(node: ir.Node, depth: int) -> list[Dim] | None:
    """Ops that keep the elements as they are (a scalar and a one-element 1-D tensor trace alike).

    Reshape, Squeeze and Unsqueeze only to a known rank <= 1 (trace() itself refuses inputs of
    rank > 1).
    """
    if node.op_type == "Cast" and node.attributes.get_int("to") not in (
        ir.DataType.INT64,
        ir.DataType.INT32,
    ):
        return None
    out = node.outputs[0].shape
    if node.op_type in ("Reshape", "Squeeze", "Unsqueeze") and (out is None or out.rank() > 1):
        return None
    return trace(node.inputs[0], depth)


def _where(node: ir.Node, depth: int) -> list[Dim] | None:
    """Where(Equal(a, b), c, d) element by element, each comparison decided (`_equal`): torch's
    `expand` writes its shape as Where(Equal(s, -1), 1, s)."""
    valid = len(node.inputs) == 3 and None not in node.inputs
    condition = node.inputs[0].producer() if valid else None
    if (
        condition is None
        or condition.op_type != "Equal"
        or condition.domain not in ("", "ai.onnx")
        or len(condition.inputs) != 2
    ):
        return None
    pieces = _broadcast([trace(v, depth) for v in (*condition.inputs, *node.inputs[1:])])
    if pieces is None:
        return None
    a, b, chosen, other = pieces
    decided = [_equal(x, y) for x, y in zip(a, b)]
    return [None if eq is None else c if eq else d for eq, c, d in zip(decided, chosen, other)]


def _broadcast(pieces: list[list[Dim] | None]) -> list[list[Dim]] | None:
    """Traced 1-D pieces broadcast to one length (a single element repeats); None if one is
    unknown or two lengths differ."""
    if any(piece is None for piece in pieces):
        return None
    length = max(len(piece) for piece in pieces)
    if any(len(piece) not in (1, length) for piece in pieces):
        return None
    return [piece * length if len(piece) == 1 else piece for piece in pieces]


def _equal(a: Dim, b: Dim) -> bool | None:
    """Whether two traced elements are equal; None if undecided. A dim (and a product of dims) is
    never negative."""
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    if isinstance(a, DimOf) and isinstance(b, DimOf) and (a.value, a.index) == (b.value, b.index):
        return True
    if isinstance(b, (DimOf, Product)):
        a, b = b, a
    return False if isinstance(a, (DimOf, Product)) and isinstance(b, int) and b < 0 else None


def _mul(node: ir.Node, depth: int) -> list[Dim] | None:
    """Mul element by element (one side may be a single element): products of dims."""
    pieces = _broadcast([trace(value, depth) for value in node.inputs])
    if pieces is None or len(pieces) != 2:
        return None
    return [_times(a, b) for a, b in zip(*pieces)]


def _times(a: Dim, b: Dim) -> Dim:
    """a * b as a traced element: an int, a dim (times 1) or a Product; None if either is unknown
    or a factor is not positive."""
    if isinstance(a, int) and isinstance(b, int):
        return a * b
    scale, factors = 1, []
    for element in (a, b):
        if isinstance(element, int):
            scale *= element
        elif isinstance(element, DimOf):
            factors.append(element)
        elif isinstance(element, Product):
            scale *= element.scale
            factors += element.factors
        else:
            return None
    if scale <= 0:
        return None
    return factors[0] if scale == 1 and len(factors) == 1 else Product(tuple(factors), scale)


_TRACERS = {
    "Shape": _shape,
    "Where": _where,
    "Gather": _gather,
    "Slice": _slice,
    "Concat": _concat,
    "Mul": _mul,
    **dict.fromkeys(("Identity", "Cast", "Squeeze", "Unsqueeze", "Reshape"), _same_elements),
}


class WhereOfDecidedEqual(pattern.RewriteRuleClassBase):
    """Where(Equal(a, b), c, d) -> d when no element of a equals b's, -> c when all do: torch's
    `expand` writes its shape s as Where(Equal(s, -1), 1, s), and a size is never -1.

    Math: Where picks c where the condition holds and d elsewhere, broadcast to the output's
    shape; the picked operand is the output when it already has that shape (the same rank and,
    traced, the most elements of the four)."""

    def pattern(self, op, a, b, c, d):
        return op.Where(op.Equal(a, b), c, d)

    def check(self, context, a, b, c, d) -> MatchResult:  # noqa: ARG002 onnxscript passes the matched values by keyword
        if _decided_pick(a, b, c, d) is None:
            return MatchResult().fail("a comparison is undecided, or the pick is broadcast")
        return MatchResult()

    def rewrite(self, op, a, b, c, d):
        return op.Identity(_decided_pick(a, b, c, d))


def _decided_pick(a: ir.Value, b: ir.Value, c: ir.Value, d: ir.Value) -> ir.Value | None:
    """c or d: the operand Where(Equal(a, b), c, d) picks everywhere, when it has the output's
    shape (the highest rank and the most elements of the four); None if undecided."""
    values = (a, b, c, d)
    traced = [trace(value) for value in values]
    pieces, ranks = _broadcast(traced), [rank_of(value) for value in values]
    if pieces is None or None in ranks:
        return None
    decided = {_equal(x, y) for x, y in zip(pieces[0], pieces[1])}
    if decided not in ({True}, {False}):
        return None
    index = 2 if decided == {True} else 3
    full = len(traced[index]) == len(pieces[index]) and ranks[index] == max(ranks)
    return values[index] if full else None


rules = (ReshapeToTracedShape.rule(), WhereOfDecidedEqual.rule())
