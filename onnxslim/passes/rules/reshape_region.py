"""A Reshape whose result only elementwise ops read, on their way to other Reshapes, removed.

HF's GPT-2 (its Conv1D layers) computes `view(-1, k) -> addmm -> view(b, s, n)`, then the
written-out Gelu, then `view(-1, n)` again for the next addmm: two Reshapes around elementwise
work that does not care about shape.

Math: let y = Reshape(x, s1), and R the set of values computed from y by elementwise ops whose
other inputs are values of R or size-1 constants of rank at most that of x and of y (rank 0
when a rank is unknown: such scalars broadcast the same way in either shape). Every element of a
value of R is computed from the elements of y at the same flat index, so computing R from x
instead gives the same elements in the same order, in x's shape. When the only other readers of R
are Reshapes to a constant shape with no 0 (a 0 copies a dim of the Reshape's input; -1 counts the
elements, which are as many), those Reshapes read the same elements in the same order: their
results are unchanged. y's Reshape goes (one node less), and a Reshape back to x's shape becomes a
no-op that `remove-no-ops` drops.
"""

from __future__ import annotations

import onnx_ir as ir

from onnxslim.model.graph import all_graphs
from onnxslim.passes.rules.common import constant
from onnxslim.passes.rules.transpose import BINARY, UNARY

_ELEMENTWISE = frozenset((*UNARY, *BINARY))


class RemoveReshapeBeforeElementwise(ir.passes.InPlacePass):
    """Reshape(x) -> elementwise ops -> Reshape(s2): the ops read x; the first Reshape goes."""

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        modified = False
        for graph in [*all_graphs(model), *(f.graph for f in model.functions.values())]:
            for node in list(graph):
                if node.op_type != "Reshape" or node.domain != "" or node.graph is not graph:
                    continue
                region = _region(node)
                if region is not None:
                    _read_input(node, region)
                    modified = True
        return ir.passes.PassResult(model, modified)


def _region(reshape: ir.Node) -> list[ir.Value] | None:
    """The values computed elementwise from `reshape`'s result (itself first), when Reshapes to a
    constant shape are their only other readers; None otherwise."""
    x, y = reshape.inputs[0], reshape.outputs[0]
    if x is None or x.const_value is not None:
        return None
    region, ops, pending = [y], [], [y]
    while pending:
        value = pending.pop()
        if value.is_graph_output():
            return None
        for user, index in value.uses():
            if user.graph is not reshape.graph:
                return None  # read inside an If/Loop body
            if user.op_type == "Reshape" and user.domain == "":
                if index != 0 or not _result_ignores_input_shape(user):
                    return None
            elif user.op_type not in _ELEMENTWISE or user.domain != "" or len(user.outputs) != 1:
                return None
            elif user not in ops:
                ops.append(user)
                region.append(user.outputs[0])
                pending.append(user.outputs[0])
    known = x.shape is not None and y.shape is not None
    rank = min(x.shape.rank(), y.shape.rank()) if known else 0
    if not all(_scalar_or_in(value, region, rank) for op in ops for value in op.inputs):
        return None
    return region


def _scalar_or_in(value: ir.Value | None, region: list[ir.Value], rank: int) -> bool:
    """`value` is absent, in `region`, or a size-1 constant of rank <= `rank`."""
    if value is None or value in region:
        return True
    data = constant(value)
    return data is not None and data.size == 1 and data.ndim <= rank


def _result_ignores_input_shape(reshape: ir.Node) -> bool:
    """A Reshape to a constant shape that copies no dim of its input (no 0, or allowzero): its
    result depends on its input's elements, not on its input's shape."""
    target = constant(reshape.inputs[1]) if len(reshape.inputs) > 1 else None
    if target is None or target.ndim != 1:
        return False
    return 0 not in target.tolist() or bool(reshape.attributes.get_int("allowzero", 0))


def _read_input(reshape: ir.Node, region: list[ir.Value]) -> None:
    """Make the region's ops read `reshape`'s input, give its values that shape, drop `reshape`."""
    x, y = reshape.inputs[0], reshape.outputs[0]
    for value in region[1:]:
        value.shape = None if x.shape is None else ir.Shape(x.shape.dims)
    y.replace_all_uses_with(x)
    reshape.graph.remove(reshape, safe=True)
