"""The lossless pipeline: setup passes, rounds of passes to a fixed point, then finishing passes."""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Callable, Iterable, Sequence

import onnx
import onnx_ir as ir

from onnxslim.errors import first_line
from onnxslim.model.external import call_onnx_api
from onnxslim.model.graph import all_graphs, graph_values, node_count, subgraphs
from onnxslim.model.shapes import InferenceCrash, infer_shapes_apart
from onnxslim.passes import dims, prune, registry
from onnxslim.passes.registry import PassOptions, PassSpec

MAX_ROUNDS = 20
logger = logging.getLogger(__name__)


def selected_passes(skip: Iterable[str]) -> list[PassSpec]:
    """Registered passes minus `skip` (unknown names are an error)."""
    skipped = {registry.get(name).name for name in skip}
    return [spec for spec in registry.REGISTRY if spec.name not in skipped]


def run_passes(
    model: ir.Model,
    specs: Sequence[PassSpec],
    options: PassOptions,
    on_pass: Callable[[str], None] | None = None,
    history: list[tuple[int | str, str, int, int]] | None = None,
    proto: onnx.ModelProto | None = None,
) -> tuple[int, Counter[str]]:
    """Run setup passes, round passes until nothing changes (<= MAX_ROUNDS), then finish passes.

    `history`, when given, receives (round number or "setup"/"finish", pass name, nodes before,
    nodes after) for every pass run that changed the model. `proto`, when given, is what
    `call_onnx_api` made of `model` as given (for the onnx checker): shape inference reuses it
    when the setup passes leave the model unchanged, instead of serializing the model again.
    """
    applied: Counter[str] = Counter()
    counted: list[int] = []  # the node count while the model is unchanged

    def run(spec: PassSpec) -> bool:
        if on_pass:
            on_pass(spec.name)
        if history is not None and not counted:
            counted.append(_nodes(model))
        modified = spec.build(options)(model).modified
        applied[spec.name] += modified
        if modified and history is not None:
            stage = rounds if spec.stage == "round" else spec.stage
            before = counted.pop()
            counted.append(_nodes(model))
            history.append((stage, spec.name, before, counted[-1]))
        return modified

    # Invariants every pass relies on, so not skippable: the default opset imported as "", and
    # placeholder dim names ("?") that promise no equality, and onnx's inferred names forgotten.
    changed = prune.NormalizeOpsetImports()(model).modified
    changed |= dims.forget_placeholder_dims(model)
    changed |= dims.forget_misinferred_dims(model)
    options.budget.start(model)  # the size budget counts from the model as given
    for spec in specs:
        if spec.stage == "setup":
            changed |= run(spec)
    rounds, version, clean_at = 0, 0, {}
    # later rounds rely on the folder's node-by-node inference, much cheaper
    safe = infer_shapes(model, None if changed else proto)
    for _ in range(MAX_ROUNDS):  # a Loop state shape the body changes: widened, inferred again
        if not dims.widen_loop_states(model):
            break
        safe &= infer_shapes(model)
    if not safe:  # the node-by-node inference would crash this process as the child's did
        options = dataclasses.replace(options, node_inference=False)
    while rounds < MAX_ROUNDS:
        rounds += 1
        start = version
        for spec in specs:
            if spec.stage != "round" or clean_at.get(spec.name) == version:
                continue  # the graph has not changed since this pass last found nothing to do
            if run(spec):
                version += 1
            else:
                clean_at[spec.name] = version
        if version == start:
            # a fixed point: shapes or dims a fold or fusion left unknown (a Reshape to a Concat
            # that now ends in a constant) onnx's inference may know now; if it does, another round
            if not (safe and refine_shapes(model)):
                break
            version += 1
    for spec in specs:
        if spec.stage == "finish":
            run(spec)
    return rounds, applied


def _nodes(model: ir.Model) -> int:
    return node_count(model.graph)


def infer_shapes(model: ir.Model, proto: onnx.ModelProto | None = None) -> bool:
    """Refresh value types and shapes with onnx shape inference; a model it cannot handle is left
    as is. `proto`: what `call_onnx_api` hands onnx for `model` as it is now, when the caller has
    it (serializing a large model takes long). False when the inference crashed (its child
    process: see infer_shapes_apart), so onnx's inference must not run in this process.

    Unlike onnx-ir's ShapeInferencePass, which copies only the element type (a sequence of float
    tensors would become a float tensor, which ONNX Runtime then refuses), whole types are copied.
    """
    try:
        pairs = _inferred(model, proto)
    except Exception as err:  # noqa: BLE001 shape inference is an aid, not a requirement
        logger.info("shape inference skipped: %s", first_line(err))
        return not isinstance(err, InferenceCrash)
    for value, other in pairs:
        if other.type is not None and value.type != other.type:
            value.type = other.type
        if other.shape is not None and value.shape != other.shape:
            value.shape = other.shape
    return True


def drop_contradicted_shapes(proto: onnx.ModelProto) -> int:
    """Remove the main graph's value_info entries whose static dims onnx's inference, run without
    them, contradicts (jax2onnx wrote a ResNet's NHWC shapes for values it computes NCHW: ORT runs
    the float model, but refused its INT8 model at the residual Add); how many. A model the
    inference cannot handle keeps them all."""
    if not proto.graph.value_info:
        return 0
    bare = onnx.ModelProto()
    bare.CopyFrom(proto)
    del bare.graph.value_info[:]
    try:
        inferred = infer_shapes_apart(bare, check_type=False, strict_mode=False, data_prop=True)
    except Exception as err:  # noqa: BLE001 shape inference is an aid, not a requirement
        logger.info("shape inference skipped: %s", first_line(err))
        return 0
    known = {info.name: _static_dims(info) for info in inferred.graph.value_info}
    kept = [
        info
        for info in proto.graph.value_info
        if not _contradicts(_static_dims(info), known.get(info.name))
    ]
    dropped = len(proto.graph.value_info) - len(kept)
    if dropped:
        del proto.graph.value_info[:]
        proto.graph.value_info.extend(kept)
    return dropped


def _static_dims(info: onnx.ValueInfoProto) -> list[int | None] | None:
    """A tensor value_info's dims, None for each unknown one; None without a shape."""
    if not info.type.HasField("tensor_type") or not info.type.tensor_type.HasField("shape"):
        return None
    dims = info.type.tensor_type.shape.dim
    return [d.dim_value if d.HasField("dim_value") else None for d in dims]


def _contradicts(given: list[int | None] | None, inferred: list[int | None] | None) -> bool:
    """Whether two shapes differ in rank or in a dim both know."""
    if given is None or inferred is None:
        return False
    if len(given) != len(inferred):
        return True
    return any(a is not None and b is not None and a != b for a, b in zip(given, inferred))


def refine_shapes(model: ir.Model) -> bool:
    """Give values the dims onnx shape inference knows as numbers where they have a name or none
    (same rank; a value without a shape takes the inferred one); whether any value learned a
    shape, a number or a name of an input's.
    An intermediate value's dims with no name or a name onnx made up (`dims.made_up`) take the
    name inference relates them to (a graph input's "batch" where a fold made that known): a
    second run then finds the names the first wrote; so do those with a name of their own that
    says nothing of the graph's inputs and outputs (`dims.private`), where inference, run without
    it, relates them to one of those."""
    shapes = {v: v.shape for graph in all_graphs(model) for v in graph_values(graph)}
    dims.forget_placeholder_dims(model)  # (what inference would keep over what it relates)
    hidden = dims.hide_private_dims(model)  # (... and what it may relate better)
    try:
        pairs = _inferred(model, None)
    except Exception as err:  # noqa: BLE001 shape inference is an aid, not a requirement
        logger.info("shape inference skipped: %s", first_line(err))
        for value, shape in shapes.items():  # (onnx's names: ORT's planner relates dims by them)
            value.shape = shape
        return False
    for value, shape in hidden.items():
        value.shape = shape
    changed = False
    ends, words = {*model.graph.inputs, *model.graph.outputs}, dims.interface_words(model)
    for value, other in pairs:
        known, inferred = value.shape, other.shape
        if inferred is None or (known is not None and len(known) != len(inferred)):
            continue
        known = list(known or [None] * len(inferred))
        renamed = value not in ends
        refined = [_refined(old, new, renamed, words) for old, new in zip(known, inferred)]
        if value.shape is None or refined != known:
            learned = value.shape is None or any(
                isinstance(new, int) != isinstance(old, int)
                or new != old
                and not dims.made_up(new)  # (a Reshape may be a no-op now)
                for old, new in zip(known, refined)
            )
            value.shape = ir.Shape(refined)
            changed |= learned
    return changed


def _refined(old, new, renamed: bool, interface: frozenset[str]):
    """`refine_shapes`'s dim: `new` where it is a number and `old` is not, or where `renamed` and
    `old` has a made-up name or none, or a private name (`dims.private`) where `new` has a name
    that speaks of the graph's inputs and outputs."""
    if isinstance(new, int) and not isinstance(old, int):
        return new
    if not renamed or new is None or isinstance(old, int):
        return old
    if dims.made_up(old):
        return new
    speaks = not dims.made_up(new) and not dims.private(new, interface)
    return new if speaks and dims.private(old, interface) else old


def _inferred(model: ir.Model, proto: onnx.ModelProto | None) -> list[tuple[ir.Value, ir.Value]]:
    """Each value of `model`'s graphs beside the value onnx shape inference gives it (with the
    type and shape inferred); raises what the inference raises."""

    def infer(proto: onnx.ModelProto) -> onnx.ModelProto:
        return infer_shapes_apart(proto, check_type=True, strict_mode=False, data_prop=True)

    proto = call_onnx_api(infer, model) if proto is None else infer(proto)
    if subgraphs(model.graph) or _has_subgraphs(proto.graph):
        inferred = ir.serde.deserialize_model(proto)
        pairs = [
            (graph, ir.convenience.create_value_mapping(inferred_graph))
            for graph, inferred_graph in zip(all_graphs(model), all_graphs(inferred))
        ]
    else:  # one graph: its types read from the proto, not a whole deserialized model
        pairs = [(model.graph, _inferred_types(proto.graph))]
    inferred = [
        (value, found[name])
        for graph, found in pairs
        for name, value in ir.convenience.create_value_mapping(graph).items()
        if name in found
    ]
    for value, other in inferred:
        other.shape = dims.misinferred(value, other.shape)
    return inferred


def _has_subgraphs(graph: onnx.GraphProto) -> bool:
    return any(
        attr.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
        for node in graph.node
        for attr in node.attribute
    )


def _static_tensor_type(proto: onnx.TypeProto) -> tuple[ir.TensorType, ir.Shape] | None:
    """The type and shape `ir.serde` gives a tensor type with a static shape and no denotations,
    built directly (its generic deserializer costs ~10 us per dim: seconds on large graphs);
    None for any other type."""
    if proto.WhichOneof("value") != "tensor_type" or proto.denotation:
        return None
    tensor = proto.tensor_type
    if not tensor.elem_type or not tensor.HasField("shape"):
        return None
    dims = tensor.shape.dim
    if any(dim.WhichOneof("value") != "dim_value" or dim.denotation for dim in dims):
        return None
    shape = ir.Shape([dim.dim_value for dim in dims], frozen=True)
    return ir.TensorType(ir.DataType(tensor.elem_type)), shape


def _inferred_types(graph: onnx.GraphProto) -> dict[str, ir.Value]:
    """The values of a graph without subgraphs with the type and shape `ir.serde` would give them
    on deserializing it (the value_info of node outputs and initializers, an initializer's own
    type otherwise, graph inputs and outputs as declared), without deserializing its nodes and
    tensors. Only names that get a type or a shape are mapped; not those of a type onnx-ir cannot
    hold (a map: skl2onnx's ZipMap output, whose inference left a LinearClassifier's label
    untyped, its no-op Cast kept).
    """
    found: dict[str, ir.Value] = {}
    unheld: set[str] = set()

    def typed(info: onnx.ValueInfoProto) -> ir.Value:
        static = _static_tensor_type(info.type)
        if static is not None:
            return ir.Value(name=info.name, type=static[0], shape=static[1])
        try:
            type_ = ir.serde.deserialize_type_proto_for_type(info.type)
            shape = ir.serde.deserialize_type_proto_for_shape(info.type)
        except ir.serde.SerdeError:
            unheld.add(info.name)
            return ir.Value(name=info.name)
        return ir.Value(name=info.name, type=type_, shape=shape)

    for info in graph.input:
        found.setdefault(info.name, typed(info))
    value_info = {info.name: info for info in graph.value_info}
    declared = {info.name for info in graph.input}
    for tensor in graph.initializer:
        if not tensor.name or tensor.name in declared:
            continue
        declared.add(tensor.name)
        if tensor.name in value_info:
            found[tensor.name] = typed(value_info[tensor.name])
        else:
            found[tensor.name] = ir.Value(
                name=tensor.name,
                type=ir.TensorType(ir.DataType(tensor.data_type)),
                shape=ir.Shape(tensor.dims),
            )
    for node in graph.node:
        for name in node.output:
            if not name:
                continue
            if name in declared:  # as ir.serde refuses it
                raise ValueError(f"output {name!r} is redeclared: the model is invalid")
            declared.add(name)
            if name in value_info:
                found[name] = typed(value_info[name])
    for info in graph.output:
        if info.name in declared:
            found[info.name] = typed(info)
    return {name: value for name, value in found.items() if name not in unheld}
