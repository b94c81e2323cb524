"""float16 conversion (`--dtype fp16`): float32 tensors of the main graph become float16, except
where float16 is unsafe; then the drift from the original is measured on ONNX Runtime.

Kept in float32, with Casts at the borders:
- ops unsafe in float16 (`KEEP_FLOAT`): resizing and ranges (coordinates lose precision), sums,
  means, products and norms over many elements (they overflow at 65504), exponentials and powers;
- shape math: nodes that compute on shapes (from Shape/Size) and constants only;
- nodes reading a constant beyond float16's range (a -1e9 attention mask would become -inf);
- a Transpose swapping the first two of three axes into a MatMul (ONNX Runtime 1.32's level-all
  optimizations crash building a session on that pair in float16: `CRASHING_TRANSPOSE`);
- ops whose output type comes from an attribute (Cast, ConstantOfShape, random ops, ...),
  QuantizeLinear/DequantizeLinear, custom domains, If/Loop/Scan and everything inside them,
  model-local functions, ops whose schema has no float16;
- the graph inputs and outputs (`keep_io_types`, the default): callers keep feeding float32.
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import onnx
import onnx_ir as ir

from onnxslim.drift import Drift, compare_outputs
from onnxslim.errors import CheckFailedError, OnnxSlimError
from onnxslim.model.graph import all_graphs, all_nodes, has_subgraphs, subgraphs

FLOAT, HALF = ir.DataType.FLOAT, ir.DataType.FLOAT16
FP16_MAX = 65504.0

#: Ops kept in float32: their float16 results are wrong or overflow on ordinary inputs.
KEEP_FLOAT = frozenset(
    {
        "Resize",
        "Upsample",
        "Range",
        "CumSum",
        "ReduceSum",
        "ReduceSumSquare",
        "ReduceMean",
        "ReduceProd",
        "ReduceL1",
        "ReduceL2",
        "ReduceLogSum",
        "ReduceLogSumExp",
        "LayerNormalization",
        "GroupNormalization",
        "InstanceNormalization",
        "LpNormalization",
        "MeanVarianceNormalization",
        "Pow",
        "Exp",
        "Einsum",
        "NonMaxSuppression",
        "RoiAlign",
        "TopK",
        "GridSample",
        "AffineGrid",
        "STFT",
        "DFT",
    }
)
#: Ops whose output type is set by an attribute, or that mix in quantized types: left as they are.
AS_GIVEN = frozenset(
    {
        "Cast",
        "CastLike",
        "Constant",
        "ConstantOfShape",
        "EyeLike",
        "RandomNormal",
        "RandomUniform",
        "RandomNormalLike",
        "RandomUniformLike",
        "Multinomial",
        "Bernoulli",
        "QuantizeLinear",
        "DequantizeLinear",
        "DynamicQuantizeLinear",
    }
)
#: Ops that read any element type: a float16 input needs no Cast back to float32.
ANY_INPUT = frozenset({"Cast", "Shape", "Size"})
SHAPE_OPS = frozenset({"Shape", "Size"})
#: The Transpose permutation that ONNX Runtime 1.32 (CPU, level all, seen on AVX-512) crashes on
#: when it feeds a float16 MatMul: such a Transpose stays float32, a Cast between the two.
CRASHING_TRANSPOSE = (1, 0, 2)


@dataclasses.dataclass
class Fp16Result:
    """What the conversion did: nodes now in float16, nodes kept in float32 and why, Casts added,
    weight bytes before and after."""

    nodes_float16: int = 0
    kept: dict[str, int] = dataclasses.field(default_factory=dict)
    casts: int = 0
    weights_before: int = 0
    weights_after: int = 0
    keep_io_types: bool = True

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


#: ONNX Runtime's names of the float types the Casts at float16's borders go by.
ORT_FLOAT_TYPES = {"tensor(float)": FLOAT, "tensor(float16)": HALF}


def _type_untyped_values(model: ir.Model) -> None:
    """Give the main graph's values that have no dtype (those of nodes outside onnx's domain,
    com.microsoft's Attention, FastGelu, ..., which onnx's inference knows none of, and the
    values computed from them) the float type ONNX Runtime gives them: the Casts at float16's
    borders go by dtype (a float32 output read by a float16 node went uncast, and the model did
    not load). Left untyped where ORT cannot load the model (the conversion's check says so)."""
    from onnxslim.runtime import Session

    untyped = [
        value
        for node in model.graph
        for value in node.outputs
        if value.dtype is None and value.name and not value.is_graph_output()
    ]
    if not untyped:
        return
    try:
        session = Session(model, extra_outputs=[value.name for value in untyped])
    except (OnnxSlimError, ValueError):
        return
    types = {output.name: output.type for output in session.session.get_outputs()}
    for value in untyped:
        value.dtype = ORT_FLOAT_TYPES.get(types.get(value.name), value.dtype)


def to_float16(
    model: ir.Model, *, keep_io_types: bool = True, keep_ops: Iterable[str] = ()
) -> Fp16Result:
    """Convert `model`'s main graph to float16 in place (see the module docstring)."""
    graph = model.graph
    _type_untyped_values(model)
    keep_ops = KEEP_FLOAT | frozenset(keep_ops)
    opset = graph.opset_imports.get("", graph.opset_imports.get("ai.onnx", 1))
    result = Fp16Result(keep_io_types=keep_io_types)
    result.weights_before = _weight_bytes(graph)
    shape_math = _shape_math(graph)
    half_nodes: set[ir.Node] = set()
    kept: Counter[str] = Counter()
    for node in graph:
        if not _has_float(node):
            continue
        reason = _keep_reason(node, opset, keep_ops, node in shape_math)
        if reason is None:
            half_nodes.add(node)
        elif reason:
            kept[reason] += 1
    interface = {id(v) for v in graph.inputs} | {id(v) for v in graph.outputs}
    for node in half_nodes:
        for output in node.outputs:
            if output.dtype == FLOAT:
                _to_half(output)
    if not keep_io_types:
        for value in graph.inputs:
            if value.dtype == FLOAT and not value.is_initializer():
                _to_half(value)
    _convert_initializers(graph, half_nodes, interface)
    result.casts = _insert_casts(graph, half_nodes, keep_io_types)
    result.nodes_float16 = len(half_nodes)
    inner = sum(_has_float(n) for n in ir.traversal.RecursiveGraphIterator(graph))
    inner -= sum(_has_float(n) for n in graph)
    if inner:  # a control flow node keeps its bodies as they are
        kept["inside control flow bodies"] += inner
    result.kept = dict(kept.most_common())
    result.weights_after = _weight_bytes(graph)
    return result


def to_float32(model: ir.Model) -> int:
    """`model` computing in float32 what it computes in float16, in place (INT8 starts from
    float32): every float16 constant, attribute and tensor of its graphs made float32, exactly;
    the main graph's float16 inputs and outputs stay float16 behind Casts. Returns how many
    float16 constants were made float32; 0, and `model` unchanged, where a model-local function
    or a sequence or optional holds float16 (not converted here)."""
    graph = model.graph
    graphs = [graph, *subgraphs(graph)]
    nodes = [node for g in graphs for node in g]
    values = [v for g in graphs for v in (*g.inputs, *g.initializers.values())]
    values += [output for node in nodes for output in node.outputs]
    half = [v for v in values if v.dtype == HALF]
    if model.functions or any(not isinstance(v.type, ir.TensorType) for v in half):
        return 0
    inputs = [v for v in graph.inputs if v.dtype == HALF and not v.is_initializer()]
    outputs = [(i, v) for i, v in enumerate(graph.outputs) if v.dtype == HALF and v not in inputs]
    constants = 0
    for value in half:
        if value.const_value is not None:
            data = value.const_value.numpy().astype(np.float32)
            value.const_value = ir.Tensor(data, name=value.name)
            constants += 1
        value.type = ir.TensorType(FLOAT)
    for node in nodes:
        constants += _attributes_to_float(node)
    for value in inputs:  # read as given, float16, then upcast
        value.type = ir.TensorType(HALF)
        _read_as_float(graph, value, _unique(graph, f"{value.name}_fp32"))
    given_back: dict[int, ir.Value] = {}  # an output listed twice: one Cast
    for index, value in outputs:
        if id(value) not in given_back:
            name = value.name
            value.name = _unique(graph, f"{name}_fp32")
            given_back[id(value)] = _cast(value, HALF, name)
            graph.append(given_back[id(value)].producer())
        graph.outputs[index] = given_back[id(value)]
    return constants


#: Fewest elements of a float32 weight `half_stored` stores as float16 (scales stay as they are).
HALF_STORED_ELEMENTS = 64


def half_stored(model: ir.Model) -> int:
    """Store each float32 initializer of `model`'s main graph that float16 holds exactly (of
    HALF_STORED_ELEMENTS or more) as float16 behind a Cast to float32, which ONNX Runtime folds at
    load: the weights of a float16 model that INT8 (starting from float32) left float take the
    bytes they took (dynamic INT8 of a float16 CNN wrote a file 1.97x its input's). Returns how
    many."""
    graph, stored = model.graph, 0
    for name, value in list(graph.initializers.items()):
        tensor = value.const_value
        if value.dtype != FLOAT or tensor is None or tensor.size < HALF_STORED_ELEMENTS:
            continue
        if value.is_graph_input() or value.is_graph_output():
            continue
        array = tensor.numpy()
        half = array.astype(np.float16)
        if not np.array_equal(half.astype(np.float32), array):
            continue
        graph.initializers.pop(name)
        value.name = _unique(graph, f"{name}_fp16")
        value.const_value = ir.Tensor(half, name=value.name)
        value.type = ir.TensorType(HALF)
        graph.register_initializer(value)
        _read_as_float(graph, value, name)
        stored += 1
    return stored


def _read_as_float(graph: ir.Graph, value: ir.Value, name: str) -> None:
    """Every reader of `value` reads it through a Cast to float32 at the top of `graph`, its
    output named `name`."""
    upcast = _cast(value, FLOAT, name)
    for use in list(value.uses()):
        if use.node is not upcast.producer():
            use.node.replace_input_with(use.idx, upcast)
    if len(graph):
        graph.insert_before(graph.node(0), upcast.producer())
    else:
        graph.append(upcast.producer())


def _cast(value: ir.Value, to: ir.DataType, name: str) -> ir.Value:
    """The output, named `name`, of a Cast of `value` to `to` (in no graph yet)."""
    node = ir.node("Cast", [value], attributes={"to": to})
    node.outputs[0].type, node.outputs[0].shape = ir.TensorType(to), value.shape
    node.outputs[0].name = name
    return node.outputs[0]


#: Attributes naming a tensor type: Cast's "to", the random and EyeLike ops' "dtype".
TYPE_ATTRIBUTES = ("to", "dtype")


def _attributes_to_float(node: ir.Node) -> int:
    """`node`'s float16 attributes made float32 (a type it casts to or makes, a tensor a
    Constant or ConstantOfShape holds); how many constants there were."""
    constants = 0
    for name, attr in list(node.attributes.items()):
        if attr.type == ir.AttributeType.INT and name in TYPE_ATTRIBUTES and attr.value == HALF:
            node.attributes[name] = ir.AttrInt64(name, FLOAT)
        elif attr.type == ir.AttributeType.TENSOR and attr.value.dtype == HALF:
            data = attr.value.numpy().astype(np.float32)
            node.attributes[name] = ir.AttrTensor(name, ir.Tensor(data, name=attr.value.name))
            constants += 1
    return constants


def _to_half(value: ir.Value) -> None:
    """`value` as float16, in a type of its own: a dtype set in place would change every value
    sharing its type object too (a rewrite may give a new value the type of the one it replaces),
    and a float32 node would then give a float16 reader float32 with no Cast between."""
    if isinstance(value.type, ir.TensorType) or value.type is None:
        value.type = ir.TensorType(HALF)
    else:  # a sequence or optional: as before (the Casts around it are ORT's to refuse)
        value.dtype = HALF


def _has_float(node: ir.Node) -> bool:
    return any(v is not None and v.dtype == FLOAT for v in (*node.inputs, *node.outputs))


def _keep_reason(node: ir.Node, opset: int, keep_ops: frozenset, shape_math: bool) -> str | None:
    """Why `node` stays float32 ("" when it is simply left as it is), or None to convert it."""
    if node.domain not in ("", "ai.onnx"):
        return "custom domain"
    if node.op_type in AS_GIVEN:
        return ""
    if has_subgraphs(node):
        return "control flow"
    if node.op_type in keep_ops:
        return f"{node.op_type} (unsafe in float16)"
    if shape_math:
        return "shape math"
    if _crashing_transpose(node):
        return "Transpose(1,0,2) into a MatMul (crashes ONNX Runtime in float16)"
    for value in node.inputs:
        tensor = value.const_value if value is not None and value.dtype == FLOAT else None
        if tensor is not None and tensor.size:
            array = np.abs(tensor.numpy())
            if np.any(np.isfinite(array) & (array > FP16_MAX)):
                return "constant beyond float16 range"
    if not _schema_allows_half(node, opset):
        return "no float16 in its schema"
    return None


def _crashing_transpose(node: ir.Node) -> bool:
    """Whether `node` is a Transpose by CRASHING_TRANSPOSE that a MatMul reads."""
    if node.op_type != "Transpose":
        return False
    perm = node.attributes.get("perm")
    if perm is None or perm.is_ref() or tuple(perm.as_ints()) != CRASHING_TRANSPOSE:
        return False
    return any(user.op_type == "MatMul" for user, _ in node.outputs[0].uses())


def _schema_allows_half(node: ir.Node, opset: int) -> bool:
    """Every float input and output of `node` has a type parameter that float16 may bind."""
    try:
        schema = onnx.defs.get_schema(node.op_type, opset, "")
    except onnx.defs.SchemaError:
        return False
    allowed = {c.type_param_str: set(c.allowed_type_strs) for c in schema.type_constraints}

    def params(formals, values) -> Iterable[str | None]:
        for index, value in enumerate(values):
            if value is None or value.dtype != FLOAT:
                continue
            if not formals:
                yield None
                continue
            yield formals[min(index, len(formals) - 1)].type_str

    for param in (*params(schema.inputs, node.inputs), *params(schema.outputs, node.outputs)):
        if param is None or "tensor(float16)" not in allowed.get(param, {param}):
            return False
    return True


def _shape_math(graph: ir.Graph) -> set[ir.Node]:
    """Nodes computing on shapes only: every non-constant input comes from Shape/Size or from
    other such nodes."""
    derived: set[ir.Value] = set()
    nodes: set[ir.Node] = set()
    for node in graph:
        if node.op_type in SHAPE_OPS:
            derived.update(node.outputs)
            continue
        inputs = [v for v in node.inputs if v is not None]
        variable = [v for v in inputs if v.const_value is None and not _constant_node(v)]
        if variable and all(v in derived for v in variable):
            nodes.add(node)
            derived.update(node.outputs)
    return nodes


def _constant_node(value: ir.Value) -> bool:
    producer = value.producer()
    return producer is not None and producer.op_type == "Constant"


def _convert_initializers(graph: ir.Graph, half_nodes: set[ir.Node], interface: set[int]) -> None:
    """float32 weights read only by float16 nodes become float16; weights also read in float32
    get a float16 copy for the float16 readers."""
    for name, value in list(graph.initializers.items()):
        if value.dtype != FLOAT or value.const_value is None or id(value) in interface:
            continue
        uses = list(value.uses())
        half_uses = [use for use in uses if use.node in half_nodes]
        if not half_uses:
            continue
        data = value.const_value.numpy().astype(np.float16)
        if len(half_uses) == len(uses):
            value.const_value = ir.Tensor(data, name=name)
            _to_half(value)
            continue
        copy = ir.Value(name=_unique(graph, f"{name}_fp16"), const_value=ir.Tensor(data))
        copy.const_value.name = copy.name
        copy.dtype, copy.shape = HALF, value.shape
        graph.register_initializer(copy)
        for use in half_uses:
            use.node.replace_input_with(use.idx, copy)


def _insert_casts(graph: ir.Graph, half_nodes: set[ir.Node], keep_io_types: bool) -> int:
    """Casts where float16 and float32 meet, one per value and direction; the graph outputs
    keep their names and (with `keep_io_types`) float32."""
    casts: dict[tuple[int, ir.DataType], ir.Value] = {}

    def cast(value: ir.Value, to: ir.DataType) -> ir.Value:
        key = (id(value), to)
        if key not in casts:
            node = ir.node("Cast", [value], attributes={"to": to})
            node.outputs[0].dtype, node.outputs[0].shape = to, value.shape
            node.outputs[0].name = _unique(
                graph, f"{value.name}_{'fp16' if to == HALF else 'fp32'}"
            )
            producer = value.producer()
            if producer is not None and producer.graph is graph:
                graph.insert_after(producer, node)
            elif len(graph):
                graph.insert_before(graph.node(0), node)
            else:
                graph.append(node)
            casts[key] = node.outputs[0]
        return casts[key]

    values = [*graph.inputs, *graph.initializers.values()]
    values += [output for node in list(graph) for output in node.outputs]
    for value in values:
        for use in list(value.uses()):
            node = use.node
            half_reader = node in half_nodes
            if value.dtype == FLOAT and half_reader:
                node.replace_input_with(use.idx, cast(value, HALF))
            elif value.dtype == HALF and not half_reader and node.op_type not in ANY_INPUT:
                if node.op_type == "Cast" and node.graph is graph:
                    continue
                node.replace_input_with(use.idx, cast(value, FLOAT))
    want = FLOAT if keep_io_types else HALF
    for index, value in enumerate(list(graph.outputs)):
        if value.dtype not in (FLOAT, HALF) or value.dtype == want or value in graph.inputs:
            continue
        name = value.name
        value.name = _unique(graph, f"{name}_{'fp16' if value.dtype == HALF else 'fp32'}")
        converted = cast(value, want)
        converted.name = name
        graph.outputs[index] = converted
    return len(casts)


def _unique(graph: ir.Graph, name: str) -> str:
    taken = {v.name for v in graph.inputs} | set(graph.initializers)
    taken |= {o.name for node in graph for o in node.outputs}
    candidate, index = name, 1
    while candidate in taken:
        candidate, index = f"{name}_{index}", index + 1
    return candidate


def _weight_bytes(graph: ir.Graph) -> int:
    return sum(
        v.const_value.nbytes for v in graph.initializers.values() if v.const_value is not None
    )


#: How far float16 may drift from the original before the conversion is refused.
DEFAULT_BUDGET = "cosine>=0.999,rel_err<=0.01"
SAMPLES = 3


def measure_drift(
    original,
    converted: ir.Model | str | os.PathLike,
    samples: Sequence[Mapping[str, np.ndarray]] | None = None,
    shapes: Mapping[str, Sequence[int]] | None = None,
):
    """Drift of `converted` from `original` (each a path or model) per output, on `samples` or on
    inputs synthesized from the original; returns (drifts, what the inputs were, the first
    input)."""
    from onnxslim import synth
    from onnxslim.runtime import Session
    from onnxslim.verify import model_file

    with model_file(original) as path:
        expected, feeds, described = _reference_outputs(path, samples, shapes)
    with model_file(converted) as path:
        # a float16 model ORT cannot load or run is a result refused (exit 1), not a bad input
        candidate = Session(
            path, opt_level="all", what="the float16 model", prepack=False, error=CheckFailedError
        )
        # a float16 interface (keep_io_types=False) is fed the same values in float16
        half = {arg.name for arg in candidate.inputs if arg.type == "tensor(float16)"}
        feeds = [
            {k: np.asarray(v, np.float16) if k in half else v for k, v in feed.items()}
            for feed in feeds
        ]
        actual = [candidate.run_dict(synth.ort_feeds(feed)) for feed in feeds]
    return compare_outputs(expected, actual), described, feeds[0]


def underflow_hint(failed: Mapping[str, Drift]) -> str | None:
    """Why float16 missed the budget on `failed` outputs whose scale (RMS) is below its smallest
    normal number (a model with vanishing activations, ~1e-14); None when none is."""
    tiny = float(np.finfo(np.float16).tiny)
    small = {n: d.reference_rms for n, d in failed.items() if d.reference_rms not in (None, 0.0)}
    under = [f"{name!r} ({rms:.2g} RMS)" for name, rms in small.items() if rms < tiny]
    if not under:
        return None
    return (
        f"the original's output {', '.join(under)} is below float16's smallest normal number "
        f"({tiny:.2g}): in float16 it underflows; keep this model in float32"
    )


#: Interleaved runs of each model `time_ratio` times.
TIMED_RUNS = 20


def time_ratio(original, converted, feed: Mapping[str, np.ndarray]) -> tuple[float, str] | None:
    """The float16 model's median time on `feed` as a ratio to the original's, both timed side
    by side on one thread at ORT's default optimization level, and bench's verdict on it
    ("faster", "slower" or "same"); None where ORT fails. `feed` must suit both (a float32
    interface). ORT's CPU kernels compute most float16 ops through Casts to float32: the
    converted model is often slower there."""
    from onnxslim.bench import latencies
    from onnxslim.errors import OnnxSlimError

    try:
        first, second = latencies([original, converted], feed, TIMED_RUNS, warmup=3)
    except OnnxSlimError:
        return None
    return second.versus(first)


def crash_prone(model: ir.Model) -> bool:
    """Whether `model` has a Transpose by CRASHING_TRANSPOSE that a MatMul reads, in a model that
    computes in float16: the pair ORT 1.32 may crash on as it builds a session, depending on the
    graph around it (a float16 encoder's residual sums written as Sum made it crash). Before shape
    inference a value may have no type: float16 around the pair, or float16 inputs or weights
    anywhere, count."""
    pairs = [node for node in all_nodes(model) if _crashing_transpose(node)]
    if not pairs:
        return False
    if any(HALF in _pair_dtypes(node) for node in pairs):
        return True
    graphs = all_graphs(model)
    return any(v.dtype == HALF for g in graphs for v in (*g.inputs, *g.initializers.values()))


def _pair_dtypes(transpose: ir.Node) -> set[ir.DataType | None]:
    """The element types around `transpose`: its input's, its output's, its MatMuls' operands'."""
    matmuls = [user for user, _ in transpose.outputs[0].uses() if user.op_type == "MatMul"]
    values = [*transpose.inputs, *transpose.outputs, *(v for m in matmuls for v in m.inputs)]
    return {value.dtype for value in values if value is not None}


def crash_message(path: str | os.PathLike, what: str) -> str | None:
    """What happens when ONNX Runtime crashes as it builds a session on the model file `path`
    (`what`) at its default optimization level, as every user of the model would (ORT 1.32's
    NCHWc layout transformer on a Transpose feeding a float16 MatMul, on AVX-512), and a level it
    builds at; None when it does not crash."""
    import onnxruntime

    from onnxslim.runtime import session_crash

    crash = session_crash(path)
    if crash is None:
        return None
    extended = (
        "; it builds at level extended (ORT_ENABLE_EXTENDED, without the layout optimizations)"
        if session_crash(path, "extended") is None
        else ""
    )
    return (
        f"{what} crashes ONNX Runtime {onnxruntime.__version__} ({crash}) when it builds a "
        f"session at its default optimization level (ORT_ENABLE_ALL){extended}: an ONNX Runtime "
        "bug"
    )


def refuse_crashing(path: str | os.PathLike) -> None:
    """Refuse the float16 model file `path` when it crashes ONNX Runtime (`crash_message`)."""
    message = crash_message(path, "the float16 model")
    if message is not None:
        raise CheckFailedError(f"{message}; keep float32 (without --dtype fp16)")


def _reference_outputs(path, samples, shapes):
    """The original's outputs on `samples`, or on SAMPLES inputs synthesized from it."""
    from onnxslim import synth
    from onnxslim.runtime import Session

    reference = Session(path, what="the original model")

    def run(feed):
        return reference.run(synth.ort_feeds(feed))

    if samples is not None:
        feeds = [dict(sample) for sample in samples]
        described = f"{len(feeds)} given sample(s)"
    else:
        proto = onnx.load(path, load_external_data=False)
        made = [synth.first_runnable(proto, run, shapes, seed=s)[0] for s in range(SAMPLES)]
        feeds = [m.feeds for m in made]
        described = f"{len(feeds)} synthesized sample(s) ({made[0]})"
    return [reference.run_dict(synth.ort_feeds(feed)) for feed in feeds], feeds, described
