"""Constant folding with a size guard, on top of onnxscript's folder (which also inlines
constant-condition If)."""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field

import numpy as np
import onnx
import onnx_ir as ir
import onnx_ir.passes.common as common
from onnx.reference import ReferenceEvaluator

from onnxslim.model.graph import all_nodes, fresh_name, has_subgraphs
from onnxslim.model.stats import constant_bytes, tensor_bytes
from onnxslim.passes import upstream
from onnxslim.passes.dims import forget_misinferred
from onnxslim.passes.marks import UpstreamMarks
from onnxslim.passes.rules.common import constant, parameter, slice_params
from onnxslim.render.format import human_bytes

logger = logging.getLogger(__name__)

#: Ops whose outputs are random (Dropout too, in training mode).
RANDOM_OPS = frozenset(
    {
        "RandomNormal",
        "RandomNormalLike",
        "RandomUniform",
        "RandomUniformLike",
        "Multinomial",
        "Bernoulli",
    }
)
#: Ops never folded as they carry quantization information (random ones: `is_random`).
NEVER_FOLD = frozenset({"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"})


def is_random(node: ir.Node) -> bool:
    """Whether `node` gives random outputs: an op of RANDOM_OPS, or a Dropout whose training_mode
    is not a constant False (folded, a training-mode Dropout of a constant baked one random mask
    into the model)."""
    if node.domain not in ("", "ai.onnx"):
        return False
    if node.op_type in RANDOM_OPS:
        return True
    mode = node.inputs[2] if node.op_type == "Dropout" and len(node.inputs) > 2 else None
    if mode is None:
        return False
    return mode.const_value is None or bool(mode.const_value.numpy().any())


KIB = 1024
#: The default size budget: the model may grow by 1% of its constants, or by 64 KiB if more.
BUDGET_SHARE, BUDGET_FLOOR = 0.01, 64 * KIB


@dataclass
class SizeBudget:
    """What constant folding may add to the whole model, over every round of one run, and the
    folds it stopped.

    A fold whose result is bigger than what it removes (the constants only it used, and the node)
    grows the file. It is kept only when it removes work ONNX Runtime would otherwise do on every
    run: ORT folds every node whose inputs are constants in the file when it creates a session
    (values folded here from work it cannot fold included, such as a static dim of a dynamic
    shape), so growing the file for them gains nothing. Those kept together may add at most
    `growth` bytes (None: 1% of the original's constants, at least 64 KiB).
    """

    growth: int | None = None
    #: Most bytes of constants the model may hold; set by `start`.
    limit: float = math.inf
    #: reason -> {folded value's name: bytes the fold would have added}
    stopped: dict[str, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))

    def start(self, model: ir.Model) -> None:
        """Measure the original: the limit is its constants plus the growth allowed."""
        original = constant_bytes(model)
        growth = self.growth
        if growth is None:
            growth = max(int(original * BUDGET_SHARE), BUDGET_FLOOR)
        self.limit = original + growth
        self.stopped.clear()

    def notes(self, model: ir.Model) -> list[str]:
        """One line per reason that stopped folds of values still in `model` (a later pass may
        fold or merge them), for the report."""
        computed = {value.name for node in all_nodes(model) for value in node.outputs}
        lines = {
            STOPPED_CONSTANT_ONLY: "kept {n} constant-only computation(s) ONNX Runtime folds "
            "itself at load: folding them would add {b} to the file",
            STOPPED_BUDGET: "the size budget stopped {n} fold(s) that would add {b} "
            "(--size-budget)",
        }
        kept = {
            reason: [size for name, size in folds.items() if name in computed]
            for reason, folds in self.stopped.items()
        }
        return [
            lines[reason].format(n=len(sizes), b=human_bytes(sum(sizes)))
            for reason, sizes in kept.items()
            if sizes
        ]


STOPPED_CONSTANT_ONLY, STOPPED_BUDGET = "constant-only", "budget"


class FoldConstants(ir.passes.InPlacePass):
    """Lift Constant nodes to initializers, then evaluate every node whose inputs are all constant.

    A folded tensor larger than the single-use constants it replaces is kept only if it removes
    work ORT cannot fold itself, is at most `size_threshold` bytes larger, and fits in the model's
    `budget` (see SizeBudget), so folding never blows the model up. `node_inference`: infer the
    shapes of the nodes it meets with onnx (onnxscript's folder does).
    """

    def __init__(
        self, size_threshold: int, budget: SizeBudget | None = None, node_inference: bool = True
    ) -> None:
        super().__init__()
        self.size_threshold = size_threshold
        self.budget = budget if budget is not None else SizeBudget()
        self.node_inference = node_inference

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        lifted = common.LiftConstantsToInitializersPass(lift_all_constants=True, size_limit=0)(
            model
        ).modified
        if self.budget.limit == math.inf:  # run alone, not by run_passes
            self.budget.start(model)
        folder = _GuardedFolder(self.size_threshold, self.budget, self.node_inference)
        marks = UpstreamMarks(model)
        folded = folder(model).modified
        if folded:
            marks.remove(model)
        folded |= FoldComputations()(model).modified
        return ir.passes.PassResult(model, lifted or folded)


class FoldComputations(ir.passes.InPlacePass):
    """Replace each value a node computes from constants only, read by a node that is not, by its
    result, when that is no bigger than the constants only its computation reads.

    Folding node by node misses these: in a weight standardization (timm's NFNet: a Conv weight is
    BatchNormalization(W, mean(W'), var(W')) of the weight and a transposed copy W'), each step
    alone adds to the file because what it reads has other readers in the computation, while the
    whole computation frees both copies for one weight of their size.
    """

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        computable = computable_values(model.graph)
        names = {
            value.name
            for node in model.graph
            if not any(value in computable for value in node.outputs)
            for value in node.inputs
            if value in computable and _static_shape(value) is not None  # no inference run
        }
        if not names:
            return ir.passes.PassResult(model, False)
        return FoldProducers(names, stored_bits=None)(model)


class FoldProducers(ir.passes.InPlacePass):
    """Replace each of `values` (names) that constants compute by a constant, when stored at
    `stored_bits` bits per element it is no bigger than the constants it frees; no other node is
    touched.

    For a consumer that needs its inputs constant and stores them compactly itself: INT8 quantizes
    a weight only when it is a constant (a Cast of float16 weights, a Transpose of an initializer
    are not) and stores it in 8 bits. Lossless folding (`FoldComputations`) gives `stored_bits`
    None: the value's own element size. A value is replaced only when its computation is its own
    (no other node reads what is computed on the way) and its shape is known before anything is
    computed (the static shape the model declares, else ONNX shape inference of that computation
    alone), and when the result computed is no bigger either; one computed from a graph input,
    through an If/Loop/Scan or a node never folded, is left as it is. The computation runs on
    ONNX's reference evaluator.

    `stored` holds node inputs (node, input index) whose node stores that constant at
    `stored_bits` itself (weights INT8 quantizes): a constant the computation shares only with such
    readers is freed too (GPT-2's tied embedding, read by a Gather and transposed for the output
    MatMul: both store it in 8 bits then, its float copy goes)."""

    def __init__(
        self,
        values: Iterable[str],
        stored_bits: int | None = 8,
        stored: Collection[tuple[ir.Node, int]] = frozenset(),
    ) -> None:
        super().__init__()
        self.values = frozenset(values)
        self.stored_bits = stored_bits
        self.stored = frozenset(stored)
        #: value name -> the computation it replaced (a model whose output is the value), and
        #: the array it computed
        self.computations: dict[str, tuple[onnx.ModelProto, np.ndarray]] = {}

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        graph = model.graph
        computable = computable_values(graph)
        outputs, order = set(graph.outputs), {node: i for i, node in enumerate(graph)}
        folds = {}
        for node in graph:
            for value in node.outputs:
                if (
                    value in computable
                    and value.name in self.values
                    and value not in outputs
                    and not isinstance(value.type, (ir.SequenceType, ir.OptionalType))
                ):
                    producers = _own_producers(value, order)
                    if producers:
                        folds[value] = producers
        replaced = False
        for value, producers in folds.items():
            # serialized once (its shape when not declared, its value, its record), if it pays
            computation = None
            shape = _static_shape(value)
            if shape is None:
                computation = _computation(model, value, producers)
                shape = _inferred_shape(value, computation)
            if not self._pays(value, shape, producers):
                continue
            computation = computation or _computation(model, value, producers)
            try:
                array = ReferenceEvaluator(computation).run(None, {})[0]
            except Exception as err:  # noqa: BLE001 - an op the evaluator lacks: leave it computed
                logger.debug("not folding %s: %s", value.name, err)
                continue
            if not isinstance(array, np.ndarray) or (
                value.dtype is not None and ir.DataType.from_numpy(array.dtype) != value.dtype
            ):
                continue  # a sequence or optional, or not what the model declares: left computed
            if not self._pays(value, list(array.shape), producers):
                continue  # bigger than its declared shape said
            self.computations[value.name] = (computation, array)
            _replace_by_constant(graph, value, array, producers)
            replaced = True
        return ir.passes.PassResult(model, replaced)

    def _pays(self, value: ir.Value, shape: list | None, producers: list[ir.Node]) -> bool:
        """Whether `value` of `shape`, stored at `stored_bits` (None: its own element size), is no
        bigger than what computing it from `producers` frees (`_freed_bytes`)."""
        if shape is None or not all(isinstance(dim, int) for dim in shape):
            return False
        if self.stored_bits is None and value.dtype in (None, ir.DataType.STRING):
            return False  # no element size to weigh
        bits = value.dtype.itemsize * 8 if self.stored_bits is None else self.stored_bits
        return math.prod(shape) * bits <= 8 * self._freed_bytes(producers)

    def _freed_bytes(self, producers: list[ir.Node]) -> int:
        """Bytes of the constants that go with `producers`: the initializers only they read (or
        `stored` readers besides), and Constant nodes among them."""
        inside = set(producers)
        freed = 0
        for value in _constants_read(producers):
            others = [(user, at) for user, at in value.uses() if user not in inside]
            if not value.is_graph_output() and self.stored.issuperset(others):
                freed += tensor_bytes(value.const_value)
        for node in producers:
            attribute = node.attributes.get("value") if node.op_type == "Constant" else None
            freed += tensor_bytes(attribute.value) if attribute is not None else 0
        return freed


def restore_computations(
    model: ir.Model, computations: dict[str, tuple[onnx.ModelProto, np.ndarray]]
) -> ir.Model:
    """`model` with each of `computations` (`FoldProducers.computations`) back in place of the
    constant it became, where `model` still holds that constant unchanged (its consumer stayed
    float on float weights): a constant folded for nothing does not grow the file."""
    graph = model.graph
    back = {}
    for name, (computation, computed) in computations.items():
        held = graph.initializers.get(name)
        unchanged = held is not None and held.const_value is not None
        if unchanged and np.array_equal(computed, held.const_value.numpy()):
            back[name] = computation
    if not back:
        return model
    proto = ir.to_proto(model)
    kept = [init for init in proto.graph.initializer if init.name not in back]
    names = {init.name for init in kept}
    for computation in back.values():
        kept += [init for init in computation.graph.initializer if init.name not in names]
        names.update(init.name for init in computation.graph.initializer)
    # they read initializers only: first, they are in order
    nodes = [node for computation in back.values() for node in computation.graph.node]
    nodes += proto.graph.node
    del proto.graph.initializer[:], proto.graph.node[:]
    proto.graph.initializer.extend(kept)
    proto.graph.node.extend(nodes)
    return ir.from_proto(proto)


def computable_values(graph: ir.Graph) -> set[ir.Value]:
    """Outputs of the main graph's nodes computed from constants only (one pass in graph order)."""
    computable: set[ir.Value] = set()
    for node in graph:
        if (
            node.domain in ("", "ai.onnx")
            and node.op_type not in NEVER_FOLD
            and not is_random(node)
            and not has_subgraphs(node)
            and not _order_unspecified(node)
            and all(v is None or _is_constant(v) or v in computable for v in node.inputs)
        ):
            computable.update(v for v in node.outputs if v is not None)
    return computable


def _order_unspecified(node: ir.Node) -> bool:
    """Whether `node` is a TopK or Unique with `sorted=0`, whose output order ONNX leaves to the
    runtime: onnx's reference evaluator gave a TopK's indices in another order than ORT."""
    return node.op_type in ("TopK", "Unique") and node.attributes.get_int("sorted", 1) == 0


def _own_producers(value: ir.Value, order: dict[ir.Node, int]) -> list[ir.Node]:
    """The nodes computing `value` (a computable one) in graph `order`, when nothing else reads
    what they compute on the way; else empty."""
    nodes: list[ir.Node] = []
    pending = [value.producer()]
    while pending:
        node = pending.pop()
        if node is None or node in nodes:
            continue
        nodes.append(node)
        pending += [v.producer() for v in node.inputs if v is not None and not _is_constant(v)]
    inside = set(nodes)
    for node in nodes:
        for out in node.outputs:
            if out is not value and (
                out.is_graph_output() or any(user not in inside for user, _ in out.uses())
            ):
                return []
    return sorted(nodes, key=order.__getitem__)


def _computation(model: ir.Model, value: ir.Value, producers: list[ir.Node]) -> onnx.ModelProto:
    """A model of `producers` alone computing `value`, their constants as initializers."""
    graph = onnx.helper.make_graph(
        [ir.serde.serialize_node(node) for node in producers],
        "computation",
        [],
        [onnx.helper.make_empty_tensor_value_info(value.name)],
        [_named_tensor(v) for v in _constants_read(producers)],
    )
    opsets = [onnx.helper.make_opsetid(d, v) for d, v in model.opset_imports.items()]
    return onnx.helper.make_model(graph, opset_imports=opsets, ir_version=model.ir_version)


def _named_tensor(value: ir.Value) -> onnx.TensorProto:
    """The constant `value` as a TensorProto holding its data, named as the nodes read it (a
    lifted Constant's tensor may carry another name, or none)."""
    const = value.const_value  # its data read in: external data would not resolve here
    return ir.serde.serialize_tensor(ir.Tensor(const.numpy(), dtype=const.dtype, name=value.name))


def _static_shape(value: ir.Value) -> list[int] | None:
    """The shape the model declares for `value` when every dim is known, else None."""
    shape = value.shape
    if shape is None or not all(isinstance(dim, int) for dim in shape):
        return None
    return list(shape)


def _inferred_shape(value: ir.Value, computation: onnx.ModelProto) -> list | None:
    """The shape ONNX infers for `value` from its `computation` alone (a dim it cannot tell is
    None), else the one the model declares."""
    shape = list(value.shape) if value.shape is not None else None
    try:
        inferred = onnx.shape_inference.infer_shapes(computation, data_prop=True)
    except onnx.shape_inference.InferenceError:
        return shape
    (info,) = inferred.graph.output
    if info.type.tensor_type.HasField("shape"):
        dims = info.type.tensor_type.shape.dim
        return [d.dim_value if d.HasField("dim_value") else None for d in dims]
    return shape


def _replace_by_constant(
    graph: ir.Graph, value: ir.Value, array: np.ndarray, producers: list[ir.Node]
) -> None:
    """`value` becomes an initializer holding `array`; `producers` and the constants only they
    read leave the graph."""
    name, value.name = value.name, f"{value.name}__computed"
    initializer = _constant(name, array)
    graph.register_initializer(initializer)
    value.replace_all_uses_with(initializer)
    read = _constants_read(producers)
    for node in reversed(producers):
        graph.remove(node, safe=True)
    for v in read:
        if _only_read_by(v, set()) and v.name in graph.initializers:
            graph.initializers.pop(v.name)


def _constants_read(producers: list[ir.Node]) -> list[ir.Value]:
    """The constants `producers` read, each once, in the order they read them."""
    return list(dict.fromkeys(v for node in producers for v in node.inputs if _is_constant(v)))


def _is_constant(value: ir.Value | None) -> bool:
    """A constant no caller can override (an initializer that is also a graph input is not)."""
    return value is not None and value.const_value is not None and not value.is_graph_input()


def _only_read_by(value: ir.Value, nodes: set[ir.Node]) -> bool:
    """Whether `value` goes when `nodes` go: no other node reads it and it is no graph output."""
    return not value.is_graph_output() and all(user in nodes for user, _ in value.uses())


class _GuardedFolder(upstream.FoldConstantsPass):
    """onnxscript's folder with onnxslim's size guard in place of its element-count limits."""

    def __init__(
        self, size_threshold: int, budget: SizeBudget, node_inference: bool = True
    ) -> None:
        super().__init__(
            shape_inference=node_inference,
            input_size_limit=2**62,
            output_size_limit=2**62,
            should_fold=self._should_fold,
        )
        self.size_threshold = size_threshold
        self.budget = budget
        #: Bytes the model may still grow by in this run.
        self._room = 0.0

    def call(self, model: ir.Model):
        self._room = self.budget.limit - constant_bytes(model)
        return super().call(model)

    def _should_fold(self, node: ir.Node) -> bool:
        if node.domain not in ("", "ai.onnx"):
            return False  # custom domains are left untouched
        if node.op_type in NEVER_FOLD or is_random(node):
            return False
        if any(value.dtype == ir.DataType.STRING for value in node.outputs):
            return False  # a folded string tensor breaks onnx-ir's serialization for the checker
        # Estimate the result before evaluating it, so a huge tensor is never even computed.
        estimate = _OUTPUT_BYTES.get(node.op_type, _static_output_bytes)
        return self._may_grow(node, estimate(node) - _input_bytes(node), charge=False)

    def _may_grow(self, node: ir.Node, growth: float, charge: bool) -> bool:
        """Whether a fold adding `growth` bytes of constants is kept (see SizeBudget); `charge`
        takes it from the budget."""
        if growth <= 0:
            return True
        growth -= _node_bytes(node)  # the node itself leaves the file
        if growth <= 0:
            return True
        name = node.outputs[0].name if node.outputs else node.name
        if self._ort_folds(node):
            self.budget.stopped[STOPPED_CONSTANT_ONLY][name] = int(growth)
            return False
        if growth > self.size_threshold:
            return False
        if growth > self._room:
            self.budget.stopped[STOPPED_BUDGET][name] = int(growth)
            return False
        if charge:
            self._room -= growth
        return True

    def _ort_folds(self, node: ir.Node) -> bool:
        """ONNX Runtime folds the node itself when it loads the model: its inputs are constants it
        sees (or, for Shape and Size, a static shape)."""
        if node.op_type in ("Shape", "Size") and node.inputs and node.inputs[0] is not None:
            shape = node.inputs[0].shape
            return shape is not None and all(isinstance(d, int) for d in shape)
        return all(value is None or value.const_value is not None for value in node.inputs)

    def _do_inference(self, node: ir.Node) -> None:
        """onnxscript's node-by-node shape inference, skipped when it cannot change anything: every
        output already has a type and a static shape (it keeps a known dim over an inferred one),
        as whole-model inference or an earlier round left them. Most of the folder's time otherwise.
        Skipped too for a node holding large attribute lists (a tree ensemble's millions of node
        ids: serializing it for onnx takes seconds), left to whole-model inference.
        """
        if node.outputs and all(_fully_known(value) for value in node.outputs):
            return
        if _attribute_elements(node) > NODE_INFERENCE_ELEMENTS:
            return
        super()._do_inference(node)
        forget_misinferred(node)

    def process_node(self, node: ir.Node, is_function: bool):
        named, replacement = _name_unnamed_outputs(node), None
        try:
            replacement = self._replacement(node, is_function)
        finally:
            if replacement is None:  # (a named output ORT would compute: an LSTM's Y)
                for value in named:
                    value.name = ""
        return replacement

    def _replacement(self, node: ir.Node, is_function: bool):
        try:
            replacement = super().process_node(node, is_function)
        except RuntimeError as err:  # one of onnxscript's evaluators failed: leave the node as is
            logger.debug("not folding %s node %r: %s", node.op_type, node.name, err.__cause__)
            return None
        if replacement is None and node.op_type in ("Slice", "Gather"):
            replacement = self._fold_shape_piece(node, is_function)
        if replacement is None and node.op_type == "Split" and not is_function:
            replacement = self._fold_shape_split(node)
        if replacement is None and len(node.outputs) > 1 and not is_function:
            replacement = self._fold_outputs(node)
        if replacement is None:
            return None
        _keep_saturate(node, replacement.new_nodes)
        opsets = self._opset_imports
        if _stores_a_graph_output(node, replacement) or not all(
            _fits_opset(new, opsets, is_function) for new in replacement.new_nodes
        ):
            _drop_registered(replacement)
            return None
        return replacement

    def _fold_outputs(self, node: ir.Node):
        """A Split of constants (no caller overrides), which onnxscript's folder leaves as a node
        of several outputs (paddle2onnx's Split of a constant into the Concat of a Pad's pads, at
        opset 11): each output a constant, evaluated as onnxscript evaluates one. Only Split: onnx's
        reference gives other multi-output ops otherwise than ORT (TopK's unsorted indices)."""
        if (
            node.op_type != "Split"
            or node.domain not in ("", "ai.onnx")
            or not all(value is None or _is_constant(value) for value in node.inputs)
            or not self._should_fold(node)
        ):
            return None
        inputs = [None if value is None else value.const_value.numpy() for value in node.inputs]
        attributes = {
            name: ir.serde.serialize_tensor(attr.value)
            if attr.type == ir.AttributeType.TENSOR
            else attr.value
            for name, attr in node.attributes.items()
        }
        try:
            version = self._opset_imports[""]
            arrays = upstream.evaluate("", node.op_type, version, *inputs, **attributes)
        except Exception as err:  # noqa: BLE001 the reference implementation's own limits
            logger.debug("not folding %s node %r: %s", node.op_type, node.name, err)
            return None
        if not isinstance(arrays, (tuple, list)) or len(arrays) != len(node.outputs):
            return None
        values = [_constant(value.name, array) for value, array in zip(node.outputs, arrays)]
        added = sum(tensor_bytes(value.const_value) for value in values) - _input_bytes(node)
        if not self._may_grow(node, added, charge=True):
            return None
        for value in values:
            node.graph.register_initializer(value)
        return upstream.Replacement(values, [])

    def _fold_shape_piece(self, node: ir.Node, is_function: bool):
        """Slice/Gather of a partly known shape (e.g. `[N, 3, 4, 4]`) picking only static dims."""
        if node.domain not in ("", "ai.onnx") or len(node.outputs) != 1 or node.outputs[0] is None:
            return None
        dims = self._state.get_shape_value(node.inputs[0]) if node.inputs else None
        if dims is None:
            return None
        dims = list(dims)
        picked = _pick_dims(node, dims)
        if picked is None:
            return None
        values, scalar = picked
        if not scalar:
            self._state.set_sym_value(node.outputs[0], ir.Shape(values))
        if not all(isinstance(d, int) for d in values):
            return None
        array = np.array(values[0] if scalar else values, dtype=np.int64)
        if is_function:
            new = self.new_constant(node, array)
            return None if new is None else upstream.Replacement(new.outputs, [new])
        value = self.new_initializer(node, array)
        if value is None:
            return None
        node.graph.register_initializer(value)
        return upstream.Replacement([value], [])

    def _fold_shape_split(self, node: ir.Node):
        """A Split of a partly known shape (paddle2onnx's yolo_box splits `[N, 27, 14, 14]` in
        four): each output read that holds static dims only becomes a constant, a Split like the
        old one computes the others; each output's dims are known to the folds downstream. Not
        where an output is a graph output (the Split stays as it is)."""
        dims = self._state.get_shape_value(node.inputs[0]) if node.inputs else None
        pieces = None if dims is None else _split_dims(node, list(dims))
        if pieces is None or node.domain not in ("", "ai.onnx"):
            return None
        if any(value is not None and value.is_graph_output() for value in node.outputs):
            return None
        folded = {
            index: _constant(value.name, np.array(piece, dtype=np.int64))
            for index, (value, piece) in enumerate(zip(node.outputs, pieces))
            if value is not None
            and value.uses()
            and all(isinstance(d, int) for d in piece)
            and self._may_grow(node, 8 * len(piece), charge=True)
        }
        split = node
        if folded:  # (else the same Split again, visited next: a loop)
            split = ir.Node(
                node.domain,
                "Split",
                node.inputs,
                attributes=node.attributes.values(),
                num_outputs=len(node.outputs),
                version=node.version,
            )
        for index, (value, piece) in enumerate(zip(split.outputs, pieces)):
            if index not in folded:
                self._state.set_sym_value(value, ir.Shape(piece))
        if not folded:
            return None
        for value in folded.values():
            node.graph.register_initializer(value)
        outputs = [folded.get(index, value) for index, value in enumerate(split.outputs)]
        return upstream.Replacement(outputs, [split])

    def _prepare_folded_tensor(self, node, output_name, output_array):
        tensor = super()._prepare_folded_tensor(node, output_name, output_array)
        if tensor is None or not self._may_grow(
            node, tensor_bytes(tensor) - _input_bytes(node), charge=True
        ):
            return None
        return tensor


#: Most attribute list elements a node may hold to be inferred node by node by the folder.
NODE_INFERENCE_ELEMENTS = 100_000
_LIST_ATTRIBUTES = (ir.AttributeType.INTS, ir.AttributeType.FLOATS, ir.AttributeType.STRINGS)


def _attribute_elements(node: ir.Node) -> int:
    """How many elements the node's list attributes hold together (a function's attribute the
    caller gives, a reference, holds none here)."""
    return sum(
        len(attr.value)
        for attr in node.attributes.values()
        if attr.type in _LIST_ATTRIBUTES and not attr.is_ref()
    )


def _fully_known(value: ir.Value | None) -> bool:
    """A value with a type and a shape of int dims only (or no value: an omitted output)."""
    if value is None:
        return True
    shape = value.shape
    return (
        value.type is not None and shape is not None and all(isinstance(dim, int) for dim in shape)
    )


def _keep_saturate(node: ir.Node, new_nodes) -> None:
    """CastLike(x, like, saturate=0) -> Cast(x, to=like's type) keeps `saturate` (onnxscript's
    evaluator drops it, and the default 1 clamps what saturate=0 turns into NaN or inf)."""
    saturate = node.attributes.get("saturate")
    if node.op_type != "CastLike" or saturate is None:
        return
    for new in new_nodes:
        if new.op_type == "Cast" and new.domain in ("", "ai.onnx"):
            new.attributes["saturate"] = ir.AttrInt64("saturate", saturate.as_int())


def _fits_opset(new: ir.Node, opsets: dict[str, int], is_function: bool) -> bool:
    """Whether a node an evaluator emits exists in the model's opset with these inputs and
    attributes: onnxscript writes the newest form (Unsqueeze/Split with an axes/split input,
    opset 13), which an older model cannot hold. A Constant in a graph becomes an initializer."""
    if new.domain not in ("", "ai.onnx") or (new.op_type == "Constant" and not is_function):
        return True
    version = opsets.get("", opsets.get("ai.onnx"))
    if version is None:
        return False
    try:
        schema = onnx.defs.get_schema(new.op_type, version, "")
    except onnx.defs.SchemaError:
        return False
    inputs = list(new.inputs)
    while inputs and inputs[-1] is None:
        inputs.pop()
    if not schema.min_input <= len(inputs) <= schema.max_input:
        return False
    return all(name in schema.attributes for name in new.attributes)


def _pick_dims(node: ir.Node, dims: list) -> tuple[list, bool] | None:
    """Dims a Slice (constant starts/ends/axes/steps) or Gather (axis 0, constant indices) picks."""
    if node.op_type == "Gather":
        indices = constant(node.inputs[1]) if len(node.inputs) > 1 else None
        if node.attributes.get_int("axis", 0) != 0 or indices is None or indices.ndim > 1:
            return None
        if not np.issubdtype(indices.dtype, np.integer) or any(
            not -len(dims) <= i < len(dims) for i in indices.reshape(-1)
        ):
            return None
        return [dims[int(i)] for i in indices.reshape(-1)], indices.ndim == 0
    params = slice_params(node)
    if params is None or any(p.size != 1 for p in params):
        return None
    start, end, axis, step = (int(p[0]) for p in params)
    if axis not in (0, -1) or step == 0:
        return None
    return dims[slice(start, end, step)], False


def _constant(name: str, array) -> ir.Value:
    """A value holding `array`, to be registered as an initializer."""
    tensor = ir.tensor(np.asarray(array), name=name)
    return ir.Value(
        name=name, type=ir.TensorType(tensor.dtype), shape=tensor.shape, const_value=tensor
    )


def _split_dims(node: ir.Node, dims: list) -> list[list] | None:
    """The dims each output of a Split of a shape holds (constant sizes, or equal parts)."""
    if node.attributes.get_int("axis", 0) not in (0, -1):
        return None
    count = len(node.outputs)
    sizes = parameter(node, "split", 1)
    given = "split" in node.attributes or len(node.inputs) > 1 and node.inputs[1] is not None
    if not given and len(dims) % count == 0:
        sizes = np.full(count, len(dims) // count)
    if sizes is None or sizes.size != count or sizes.sum() != len(dims) or (sizes < 0).any():
        return None
    ends = np.cumsum(sizes.reshape(-1)).tolist()
    return [dims[end - int(size) : end] for end, size in zip(ends, sizes.reshape(-1))]


def _static_output_bytes(node: ir.Node) -> float:
    """Bytes of the node's outputs when shape inference knows them; 0 when it does not."""
    total = 0.0
    for value in node.outputs:
        if value is None or value.shape is None or value.dtype is None:
            continue
        if not all(isinstance(d, int) for d in value.shape):
            continue
        try:
            itemsize = value.dtype.itemsize
        except TypeError:  # no fixed size (STRING, UNDEFINED)
            itemsize = 8
        total += float(np.prod(list(value.shape), dtype=np.float64)) * itemsize
    return total


def _drop_registered(replacement: upstream.Replacement) -> None:
    """Remove the initializers a refused replacement registered for its outputs (onnxscript, and
    `_fold_shape_piece`, register a folded value before returning it): left in, one would bear
    the name of the output the node still produces, and pruning it every round would never
    settle."""
    for value in replacement.new_outputs:
        if value is not None and value.is_initializer() and not value.uses():
            value.graph.initializers.pop(value.name)


def _name_unnamed_outputs(node: ir.Node) -> list[ir.Value]:
    """Name the outputs of `node` that have none (an optional output written as "", not asked
    for), and return them: onnxscript gives a node's replacement its output names, and a constant
    without one cannot be stored (a Dropout's mask becomes ConstantOfShape(Shape(x)), which then
    folds: "Initializer must have a name")."""
    unnamed = [value for value in node.outputs if not value.name]
    graph = node.graph
    if not unnamed or not isinstance(graph, ir.Graph):
        return []
    taken = {v.name for v in (*graph.inputs, *graph.initializers.values())}
    taken |= {v.name for other in graph for v in other.outputs}
    for value in unnamed:
        value.name = fresh_name(taken, f"{node.name or node.op_type}_unused_{value.index()}")
    return unnamed


def _stores_a_graph_output(node: ir.Node, replacement: upstream.Replacement) -> bool:
    """Whether folding `node`, one of whose outputs is a graph output, would take more bytes than
    the node and what it alone reads: no node downstream gains from it (the Shape of a static
    input given as an output), the file only grows. Each fold is judged alone: a chain of folds
    can still grow the file (a Dropout's mask given as an output: Shape, then ConstantOfShape).
    Not for If/Loop/Scan: onnxscript moves a branch's nodes out as it makes the replacement, so it
    must be taken."""
    if has_subgraphs(node):
        return False
    if not any(value is not None and value.is_graph_output() for value in node.outputs):
        return False
    stored = sum(_node_bytes(new) for new in replacement.new_nodes) + sum(
        tensor_bytes(value.const_value)
        for value in replacement.new_outputs
        if value is not None and value.const_value is not None
    )
    return stored > _node_bytes(node) + _input_bytes(node)


def _node_bytes(node: ir.Node) -> int:
    """Roughly the bytes the node takes in the file (the folded tensor's header takes a few)."""
    try:
        return ir.serde.serialize_node(node).ByteSize()
    except Exception:  # noqa: BLE001 an estimate only
        return 0


def _input_bytes(node: ir.Node) -> int:
    """Bytes of the constant inputs that folding `node` frees (those used by it alone)."""
    return sum(
        tensor_bytes(value.const_value)
        for value in node.inputs
        if value is not None and value.const_value is not None and len(value.uses()) == 1
    )


def _constant_of_shape_bytes(node: ir.Node) -> float:
    shape = constant(node.inputs[0])
    if shape is None:
        return math.inf
    attr = node.attributes.get("value")
    itemsize = attr.as_tensor().dtype.itemsize if attr is not None else 4
    return float(np.prod(shape, dtype=np.float64)) * itemsize


def _expand_bytes(node: ir.Node) -> float:
    data, shape = constant(node.inputs[0]), constant(node.inputs[1])
    if data is None or shape is None:
        return math.inf
    try:
        out = np.broadcast_shapes(data.shape, tuple(int(d) for d in shape.reshape(-1)))
    except (ValueError, TypeError):
        return math.inf
    return float(np.prod(out, dtype=np.float64)) * data.itemsize


def _tile_bytes(node: ir.Node) -> float:
    data, repeats = constant(node.inputs[0]), constant(node.inputs[1])
    if data is None or repeats is None:
        return math.inf
    return float(data.nbytes) * float(np.prod(repeats, dtype=np.float64))


def _range_bytes(node: ir.Node) -> float:
    start, limit, delta = (constant(v) for v in node.inputs[:3])
    if any(v is None or v.size != 1 for v in (start, limit, delta)):
        return math.inf  # not constant, or not one value (ORT also takes shape [1])
    start_, limit_, delta_ = (float(v.reshape(-1)[0]) for v in (start, limit, delta))
    if delta_ == 0 or not math.isfinite((limit_ - start_) / delta_):
        return math.inf
    count = max(math.ceil((limit_ - start_) / delta_), 0)
    return float(count) * start.itemsize


#: Ops whose output can be far larger than their inputs: estimated before evaluating, to bound
#: memory use.
_OUTPUT_BYTES = {
    "ConstantOfShape": _constant_of_shape_bytes,
    "Expand": _expand_bytes,
    "Tile": _tile_bytes,
    "Range": _range_bytes,
}
