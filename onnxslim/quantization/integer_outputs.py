"""What INT8 measures where a model's outputs are integers: an ArgMax's class ids or a Cast's
rounded values have no cosine or SNR, and a changed id says little of how close the rest came, so
the float tensor each is computed from is measured too, as an extra output the written model
drops."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import onnx
import onnx_ir as ir

from onnxslim.drift import Budget
from onnxslim.errors import OnnxSlimError

#: Ops whose integer output is computed from their float first input.
FROM_FLOAT_INPUT = frozenset({"ArgMax", "ArgMin", "TopK", "Cast"})
FLOAT_TYPES = frozenset(
    {onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.BFLOAT16}
    | {onnx.TensorProto.DOUBLE}
)
#: Budget metrics that only float outputs have.
FLOAT_METRICS = frozenset({"cosine", "snr", "top1"})


def float_sources(proto: onnx.ModelProto) -> dict[str, onnx.ValueInfoProto]:
    """For each graph output that is not float but computed by one of FROM_FLOAT_INPUT from a float
    tensor of the graph's own (not an input, initializer or output already measured), that tensor
    typed by shape inference, keyed by the output's name."""
    graph = proto.graph
    integer = {o.name for o in graph.output if _not_float(o)}
    given = {v.name for v in [*graph.input, *graph.output]} | {t.name for t in graph.initializer}
    sources = {
        out: node.input[0]
        for node in graph.node
        if node.op_type in FROM_FLOAT_INPUT and node.input and node.input[0] not in given
        for out in node.output
        if out in integer
    }
    if not sources:
        return {}
    try:
        inferred = onnx.shape_inference.infer_shapes(proto).graph.value_info
    except Exception:  # noqa: BLE001 onnx raises assorted types; then nothing is measured more
        return {}
    typed = {v.name: v for v in inferred if v.type.tensor_type.elem_type in FLOAT_TYPES}
    return {out: typed[name] for out, name in sources.items() if name in typed}


def _not_float(value: onnx.ValueInfoProto) -> bool:
    """Whether `value` is a tensor of a known type that is not float (a sequence or map, e.g.
    ZipMap's probabilities, may hold floats: drift measures it as an array)."""
    if value.type.WhichOneof("value") != "tensor_type":
        return False
    elem_type = value.type.tensor_type.elem_type
    return elem_type != onnx.TensorProto.UNDEFINED and elem_type not in FLOAT_TYPES


def add_outputs(proto: onnx.ModelProto, extra: Iterable[onnx.ValueInfoProto]) -> list[str]:
    """Append the tensors `extra` to `proto`'s graph outputs (in place), each once; their names."""
    have = {o.name for o in proto.graph.output}
    added = []
    for value in extra:
        if value.name not in have:
            have.add(value.name)
            proto.graph.output.append(value)
            added.append(value.name)
    return added


def drop_outputs(model: ir.Model | None, names: Iterable[str]) -> None:
    """Remove the graph outputs `names` from `model` (in place; None: nothing to do)."""
    names = set(names)
    if model is None or not names:
        return
    for value in [v for v in model.graph.outputs if v.name in names]:
        model.graph.outputs.remove(value)


def source_note(sources: Mapping[str, onnx.ValueInfoProto]) -> str:
    """Which float tensors stand in for which integer outputs in every measurement."""
    pairs = ", ".join(f"{out!r} from {info.name!r}" for out, info in sources.items())
    return (
        f"integer output(s) computed from float tensors ({pairs}): INT8's choices, budget and "
        "drift also read those tensors (their rows in the drift table), as no cosine reads an id"
    )


def refuse_budget_without_float_outputs(
    budget: Budget | None, proto: onnx.ModelProto, extra: int
) -> None:
    """A cosine, snr or top1 budget on a model with no float output to read (none of its own, no
    float source of an integer one: `extra`) would hold on nothing: refuse it."""
    metrics = {metric for metric, _, _ in budget.criteria} if budget else set()
    if extra or not metrics & FLOAT_METRICS or not all(map(_not_float, proto.graph.output)):
        return
    raise OnnxSlimError(
        f"the budget {budget} reads float outputs, and this model has none "
        f"({', '.join(repr(o.name) for o in proto.graph.output)}): give a max_abs, mean_abs or "
        "rel_err budget"
    )
