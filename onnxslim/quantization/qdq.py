"""QDQ insertion: rewrite the graph as planned with QuantizeLinear / DequantizeLinear pairs, int8
weights and int32 biases, in the shape ORT fuses into integer kernels."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping

import numpy as np
import onnx_ir as ir

from onnxslim.errors import OnnxSlimError
from onnxslim.model.graph import producer
from onnxslim.passes.prune import remove_unused_nodes
from onnxslim.quantization import gptq
from onnxslim.quantization.bias_correction import corrected_bias, input_channel_axis
from onnxslim.quantization.ops import RULES, WEIGHT_ONLY, WEIGHTED, attribute, stored_weight
from onnxslim.quantization.pairs import limit_pairs, pair_amax, reduction_layout
from onnxslim.quantization.plan import WEIGHT_RANGES, QuantOptions, QuantPlan

INT32_MAX = 2**31 - 1


@dataclasses.dataclass(frozen=True)
class QParams:
    scale: np.ndarray  # float32, scalar or 1-D
    zero_point: np.ndarray  # same shape, uint8 / int8 / int32
    axis: int | None = None


def activation_qparams(lo: float, hi: float, activation_type: str, symmetric: bool) -> QParams:
    """Scale and zero point mapping ``[lo, hi]`` (which contains 0) onto uint8, or int8 (symmetric:
    zero point 0 and range +-127; asymmetric: the full -128..127)."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    if activation_type == "int8" and symmetric:
        t = max(-lo, hi)
        scale = t / 127.0 if t > 0 else 1.0
        return QParams(np.array(scale, np.float32), np.array(0, np.int8))
    qmin, qmax, dtype = (0, 255, np.uint8) if activation_type == "uint8" else (-128, 127, np.int8)
    scale = (hi - lo) / (qmax - qmin) if hi > lo else 1.0
    scale = np.float32(scale)
    zero_point = int(np.clip(round(qmin - lo / float(scale)), qmin, qmax))
    return QParams(np.array(scale, np.float32), np.array(zero_point, dtype))


MSE_GRID = 100  # clip ratios tried by the "mse" weight range, evenly in [MSE_LOWEST, 1]
MSE_LOWEST = 0.3
WEIGHT_BITS = 8  # symmetric int8: |q| <= WEIGHT_QMAX
WEIGHT_QMAX = 2 ** (WEIGHT_BITS - 1) - 1


def quantize_weight(
    weight: np.ndarray,
    axis: int | None,
    bits: int,
    method: str = "minmax",
    rounding=None,
    min_amax: np.ndarray | None = None,
) -> tuple[np.ndarray, QParams]:
    """Symmetric int8 weights with ``bits`` of range (``|q| <= 2^(bits-1) - 1``), per
    channel on ``axis``; the scale from ``weight_amax(method)``, raised to ``min_amax`` (per
    channel) if given. ``rounding(w, scale, qmax)``, if given, replaces nearest rounding (e.g.
    GPTQ)."""
    qmax = 2 ** (bits - 1) - 1
    w = weight.astype(np.float32)
    axis = None if axis is None else axis % w.ndim
    amax = weight_amax(w, axis, qmax, method)
    if min_amax is not None:
        amax = np.maximum(amax, min_amax if axis is not None else min_amax.max())
    scale = np.where(amax > 0, amax / qmax, 1.0).astype(np.float32)
    q = _round_weight(w, scale, axis, qmax) if rounding is None else rounding(w, scale, qmax)
    return q, QParams(scale, np.zeros(scale.shape, np.int8), axis)


def weight_amax(w: np.ndarray, axis: int | None, qmax: int, method: str = "minmax") -> np.ndarray:
    """The clip threshold ``t`` of each channel (scale ``t / qmax``): "minmax" its largest ``|w|``;
    "mse" the ``t = a * max|w|`` (``a`` on a grid of ``MSE_GRID`` ratios in ``[MSE_LOWEST, 1]``)
    minimizing the channel's quantization error ``sum (w - s * clip(round(w / s), -qmax, qmax))^2``
    with ``s = t / qmax``: an outlier weight is clipped when that buys finer steps for the rest."""
    if method not in WEIGHT_RANGES:
        raise OnnxSlimError(f"unknown weight range {method!r}: choose {', '.join(WEIGHT_RANGES)}")
    rows = w.reshape(1, -1) if axis is None else np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)
    amax = np.abs(rows).max(axis=1)
    if method == "mse":
        best, best_err = amax.copy(), np.full(amax.shape, np.inf)
        for ratio in np.linspace(MSE_LOWEST, 1.0, MSE_GRID):
            t = amax * ratio
            s = np.where(t > 0, t / qmax, 1.0)[:, None]
            err = np.square(rows - s * np.clip(np.round(rows / s), -qmax, qmax)).sum(axis=1)
            better = err < best_err
            best[better], best_err[better] = t[better], err[better]
        amax = best
    return np.array(amax[0] if axis is None else amax, np.float32)


def kernel_weight(
    weight: np.ndarray,
    axis: int | None,
    layout: str | None,
    pair_limit: int | None,
    method: str = "minmax",
    rounding=None,
) -> tuple[np.ndarray, QParams]:
    """8-bit weights for an integer kernel (``quantize_weight``); with ``pair_limit``, no same-sign
    neighbours along ``layout``'s reduction sum past it (``quantization.pairs``)."""
    limited = None if pair_limit is None else pair_amax(weight, layout, pair_limit, WEIGHT_QMAX)
    q, qp = quantize_weight(weight, axis, WEIGHT_BITS, method, rounding, limited)
    if rounding is not None and pair_limit is not None:  # keep its choice: fix from q itself
        return limit_pairs(q, q.astype(np.float64), layout, pair_limit, WEIGHT_QMAX), qp
    return fit_pairs(weight, q, qp, layout, pair_limit), qp


def fit_pairs(
    weight: np.ndarray, q: np.ndarray, qp: QParams, layout: str | None, pair_limit: int | None
) -> np.ndarray:
    """``q``, the int8 ``weight``, with the neighbours rounding took past ``pair_limit`` moved
    back onto it (``pairs.limit_pairs``); unchanged without a limit."""
    if pair_limit is None:
        return q
    exact = weight / _per_axis(qp.scale, qp.axis, weight.ndim)
    return limit_pairs(q, exact, layout, pair_limit, WEIGHT_QMAX)


def _round_weight(w: np.ndarray, scale: np.ndarray, axis: int | None, qmax: int) -> np.ndarray:
    return np.clip(np.round(w / _per_axis(scale, axis, w.ndim)), -qmax, qmax).astype(np.int8)


def quantize_bias(
    bias: np.ndarray,
    input_scale: np.ndarray,
    weight: np.ndarray,
    wq: QParams,
    bits: int,
    weight_q: np.ndarray | None = None,
):
    """int32 bias with scale ``input_scale * weight_scale``. Channels whose bias would overflow
    int32 get a larger weight scale (a per-tensor weight: its one scale) and requantized weights
    (nearest rounding); otherwise ``weight_q`` (if given) is kept as it was rounded.
    Returns (bias_q, bias_qparams, weight_q, weight_qparams)."""
    w_scale = wq.scale.astype(np.float64)
    need = np.abs(bias.astype(np.float64)) / (float(input_scale) * INT32_MAX)
    if np.any(need > w_scale):
        need = need * 1.0001 if wq.axis is not None else need.max() * 1.0001
        wq = QParams(np.maximum(w_scale, need).astype(np.float32), wq.zero_point, wq.axis)
        weight_q = None
    if weight_q is None:
        weight_q = _round_weight(weight.astype(np.float32), wq.scale, wq.axis, 2 ** (bits - 1) - 1)
    scale = (float(input_scale) * wq.scale.astype(np.float64)).astype(np.float32)
    bias_q = np.clip(np.round(bias / scale), -INT32_MAX, INT32_MAX).astype(np.int32)
    bq = QParams(scale, np.zeros(scale.shape, np.int32), 0 if scale.ndim else None)
    return bias_q, bq, weight_q, wq


class QuantizePass(ir.passes.InPlacePass):
    """Insert the Q/DQ pairs of ``plan`` with activation ``qparams`` (keyed by source tensor)."""

    def __init__(
        self,
        plan: QuantPlan,
        qparams: Mapping[str, QParams],
        options: QuantOptions,
        means: Mapping[str, np.ndarray] | None = None,
        hessians: Mapping[str, np.ndarray] | None = None,
        rounded: gptq.RoundingCache | None = None,
    ):
        super().__init__()
        self.plan, self.qparams, self.options = plan, qparams, options
        # activation -> per-channel float means: bias correction for its readers
        self.means = means or {}
        # node -> X X^T of its float inputs: GPTQ rounding of its weights
        self.hessians = hessians or {}
        # GPTQ's results by node, weight and scales: the builds of one quantization share them
        self.rounded = gptq.RoundingCache() if rounded is None else rounded
        # quantized tensor -> name of its DequantizeLinear output
        self.dequantized: dict[str, str] = {}

    def call(self, model: ir.Model) -> ir.passes.PassResult:
        graph = model.graph
        missing = sorted(set(self.plan.observed) - set(self.qparams))
        if missing:
            raise OnnxSlimError(f"no calibration range for tensor(s) {', '.join(missing[:5])}")
        builder = _Builder(graph)
        values = _values_by_name(graph)
        dq = {name: self.qparams[source] for name, source in self.plan.tensors.items()}
        by_name = {n.name: n for n in graph}
        # weights first: biases need the input scale, looked up by input name
        for name in self.plan.nodes:
            node = by_name[name]
            rule = RULES[node.op_type]
            if rule.kind == WEIGHTED and node.inputs[rule.weight].const_value is not None:
                self._quantize_weights(builder, node, rule, dq)
        for name in self.plan.weight_only + [
            n for n in self.plan.nodes if RULES[by_name[n].op_type].kind == WEIGHT_ONLY
        ]:
            self._store_weights(builder, by_name[name])
        readers = set(self.plan.nodes)
        quantized = readers | set(self.plan.folded)
        for name, source in self.plan.tensors.items():
            value = values[name]
            # The output of a quantized node is read through DQ everywhere (its Q lets ORT fuse the
            # node); a float op's output is dequantized only for quantized readers, the rest keep
            # the exact value.
            exact = value.producer() is None or value.producer().name not in quantized
            self.dequantized[name] = builder.qdq(
                value,
                source,
                self.qparams[source],
                readers if exact else None,
                output=name in self.plan.dequantized_outputs,
            )
        guards = {}  # a DQ output -> the per-channel DQ output that replaced it for a float node
        for node in list(graph):
            if node.op_type in GUARDED and node.name not in readers:
                guards.update(builder.guard_float_compute(node))
        graph.sort()
        remove_unused_nodes(model)
        present = set(_values_by_name(graph))
        for tensor, name in self.dequantized.items():
            if name not in present and name in guards:  # only float nodes read it: measure there
                self.dequantized[tensor] = guards[name]
        return ir.passes.PassResult(model, modified=bool(dq))

    def _store_weights(self, builder: _Builder, node: ir.Node) -> None:
        """Int8 weights for a node that computes in float: Cast + Mul, which ORT folds back to a
        float initializer at session load (so its kernels still pre-pack the weights), unlike
        DequantizeLinear."""
        index, axis = stored_weight(node)
        weight = node.inputs[index]
        w = weight.const_value.numpy()
        wq_array, wq = quantize_weight(
            w,
            axis if self.options.per_channel else None,
            WEIGHT_BITS,
            self.options.weight_range,
            self._rounding(node),
        )
        rule = RULES[node.op_type]
        if node.inputs[0].name in self.means and rule.bias is not None:
            bias = self._float_bias(node, rule, w, dequantize(wq_array, wq))
            if bias is not None:
                _set_input(node, rule.bias, builder.constant(f"{node.name}_bias", bias))
        node.replace_input_with(index, builder.scaled_constant(f"{node.name}_weight", wq_array, wq))

    def _rounding(self, node: ir.Node):
        """GPTQ's rounding of the node's weight (``rounding(w, scale, qmax)``, see
        `quantize_weight`) where the builder handed out its layer input statistics, else None
        (nearest)."""
        hessian = self.hessians.get(node.name)  # (nodes sharing a weight: one summed over them)
        if hessian is None:
            return None
        to_matrix = functools.partial(gptq.weight_matrix, node)
        return gptq.cached_rounding(
            hessian, self.rounded, to_matrix, functools.partial(gptq.from_matrix, node)
        )

    def _quantize_weights(
        self, builder: _Builder, node: ir.Node, rule, dq: Mapping[str, QParams]
    ) -> None:
        weight = node.inputs[rule.weight]
        w = weight.const_value.numpy()
        axis = rule.weight_axis(node) if self.options.per_channel else None
        rounding = self._rounding(node)
        layout, limit = reduction_layout(node), self.options.weight_pair_limit
        wq_array, wq = kernel_weight(w, axis, layout, limit, self.options.weight_range, rounding)
        bias = (
            self._float_bias(node, rule, w, dequantize(wq_array, wq))
            if rule.bias is not None
            else None
        )
        if bias is not None:
            input_scale = dq[node.inputs[0].name].scale
            bias_q, bq, requantized, bias_wq = quantize_bias(
                bias, input_scale, w, wq, WEIGHT_BITS, wq_array
            )
            if bias_wq is not wq:  # a larger weight scale for the bias: the weights rounded
                # afresh (to nearest), and the bias corrected for them
                requantized = fit_pairs(w, requantized, bias_wq, layout, limit)
                bias = self._float_bias(node, rule, w, dequantize(requantized, bias_wq))
                bias_q, bq, requantized, bias_wq = quantize_bias(
                    bias, input_scale, w, bias_wq, WEIGHT_BITS, requantized
                )
            wq_array, wq = requantized, bias_wq
            _set_input(
                node, rule.bias, builder.dequantized_constant(f"{node.name}_bias", bias_q, bq)
            )
        node.replace_input_with(
            rule.weight,
            builder.dequantized_constant(
                f"{node.name}_weight", wq_array, wq, rule.weight_zero_point
            ),
        )

    def _float_bias(
        self, node: ir.Node, rule, weight: np.ndarray, dequantized: np.ndarray
    ) -> np.ndarray | None:
        """The node's constant bias, corrected for the weight error when the input's channel means
        are known (a zero bias is added then if there was none); None when there is no constant
        bias to write."""
        bias = node.inputs[rule.bias] if len(node.inputs) > rule.bias else None
        if bias is not None and bias.const_value is None:
            return None
        b = None if bias is None else bias.const_value.numpy().astype(np.float64)
        mean = self.means.get(node.inputs[0].name)
        if mean is not None and input_channel_axis(node) is not None:
            b = corrected_bias(node, b, weight, dequantized, mean)
        return b


def _set_input(node: ir.Node, index: int, value: ir.Value) -> None:
    if len(node.inputs) <= index:
        node.resize_inputs(index + 1)
    node.replace_input_with(index, value)


def dequantize(array: np.ndarray, qp: QParams) -> np.ndarray:
    """The float values of a symmetric quantized weight."""
    return array.astype(np.float32) * _per_axis(qp.scale, qp.axis, array.ndim)


def _per_axis(scale: np.ndarray, axis: int | None, ndim: int) -> np.ndarray:
    return (
        scale
        if axis is None
        else scale.reshape([-1 if i == axis % ndim else 1 for i in range(ndim)])
    )


#: Float ops ORT would turn integer between a DequantizeLinear and a QuantizeLinear.
GUARDED = frozenset({"Conv", "ConvTranspose", "Gemm"})


def _input_channels(node: ir.Node) -> int | None:
    """The size of axis 1 of the node's first input, read from its weight's shape."""
    shape = node.inputs[1].shape if len(node.inputs) > 1 and node.inputs[1] is not None else None
    dims = [d if isinstance(d, int) else None for d in shape.dims] if shape is not None else []
    if len(dims) < 2 or None in dims[:2]:
        return None
    if node.op_type == "Conv":
        return dims[1] * attribute(node, "group", 1)
    if node.op_type == "ConvTranspose":
        return dims[0]
    if attribute(node, "transA", 0):
        return None
    return dims[1] if attribute(node, "transB", 0) else dims[0]


def _values_by_name(graph: ir.Graph) -> dict[str, ir.Value]:
    values = {v.name: v for v in graph.inputs}
    values.update({v.name: v for n in graph for v in n.outputs})
    return values


class _Builder:
    """Creates one graph's Q/DQ nodes and constants; scale/zero-point initializers are shared by
    source."""

    def __init__(self, graph: ir.Graph):
        self.graph = graph
        self._params: dict[str, tuple[ir.Value, ir.Value]] = {}
        # value, initializer and node names, in If/Loop/Scan bodies too (a renamed graph output
        # is read there): an input quantized before may hold our node names
        nested = list(ir.traversal.RecursiveGraphIterator(graph))
        self._taken = (
            set(graph.initializers)
            | {v.name for v in graph.inputs}
            | {v.name for n in nested for v in n.outputs}
            | {n.name for n in nested}
        )

    def _name(self, base: str) -> str:
        name, i = base, 1
        while name in self._taken:
            name, i = f"{base}_{i}", i + 1
        self._taken.add(name)
        return name

    def _initializer(self, base: str, array: np.ndarray) -> ir.Value:
        name = self._name(base)
        value = ir.Value(name=name, const_value=ir.tensor(array, name=name))
        self.graph.register_initializer(value)
        return value

    def _scale_zp(self, key: str, qp: QParams) -> tuple[ir.Value, ir.Value]:
        if key not in self._params:
            self._params[key] = (
                self._initializer(f"{key}_scale", qp.scale),
                self._initializer(f"{key}_zero_point", qp.zero_point),
            )
        return self._params[key]

    def qdq(
        self,
        value: ir.Value,
        source: str,
        qp: QParams,
        readers: set[str] | None,
        output: bool = False,
    ) -> str:
        """Route ``readers`` of ``value`` (None: all) through QuantizeLinear -> DequantizeLinear;
        other readers keep the exact value. ``output``: the DQ output takes the place and name of
        ``value`` as a graph output too (so that ORT fuses the Conv writing it), ``value``
        renamed. Returns the DQ output's name."""
        scale, zp = self._scale_zp(source, qp)
        dq_out = ir.Value(
            name=self._name(f"{value.name}_dequantized"), shape=value.shape, type=value.type
        )
        for use in list(value.uses()):
            if readers is None or use.node.name in readers:
                use.node.replace_input_with(use.idx, dq_out)
        q = ir.node(
            "QuantizeLinear", [value, scale, zp], name=self._name(f"{value.name}_QuantizeLinear")
        )
        q.outputs[0].name = self._name(f"{value.name}_quantized")
        q.outputs[0].dtype = ir.DataType(ir.tensor(qp.zero_point).dtype)
        q.outputs[0].shape = value.shape
        dq = ir.node(
            "DequantizeLinear",
            [q.outputs[0], scale, zp],
            name=self._name(f"{value.name}_DequantizeLinear"),
            outputs=[dq_out],
        )
        self.graph.extend([q, dq])
        if output:
            outputs = self.graph.outputs
            for i in [i for i, output in enumerate(outputs) if output is value]:
                outputs[i] = dq_out
            value.name, dq_out.name = self._name(f"{value.name}_float"), value.name
        return dq_out.name

    def guard_float_compute(self, node: ir.Node) -> dict[str, str]:
        """Keep a float Conv/ConvTranspose/Gemm float under ONNX Runtime.

        ORT rewrites `DequantizeLinear (per tensor) -> Conv -> QuantizeLinear` with float weights
        into an integer conv, quantizing the weights itself, per tensor (its WeightBiasQuantization
        transformer): depthwise kernels with outlier channels lose most of their accuracy. The
        node's input is read instead through a DequantizeLinear per channel of the same values
        (the scale repeated), which neither that transformer nor ORT's QDQ fusions take. Returns
        {the replaced DQ output: the new one} (empty when the node needs no guard).
        """
        x = node.inputs[0]
        dq = producer(x)
        channels = _input_channels(node)
        if (
            dq is None
            or dq.op_type != "DequantizeLinear"
            or "axis" in dq.attributes
            or not channels
        ):
            return {}
        scale, zero_point = (
            v.const_value.numpy() if v is not None else None
            for v in (dq.inputs[1], dq.inputs[2] if len(dq.inputs) > 2 else None)
        )
        if scale is None or scale.size != 1:
            return {}
        inputs = [
            dq.inputs[0],
            self._initializer(
                f"{x.name}_channel_scale", np.full(channels, scale.item(), scale.dtype)
            ),
        ]
        if zero_point is not None:
            inputs.append(
                self._initializer(
                    f"{x.name}_channel_zero_point",
                    np.full(channels, zero_point.item(), zero_point.dtype),
                )
            )
        per_channel = ir.node(
            "DequantizeLinear",
            inputs,
            attributes={"axis": 1},
            name=self._name(f"{node.name}_input_DequantizeLinear"),
        )
        per_channel.outputs[0].name = self._name(f"{node.name}_input_dequantized")
        per_channel.outputs[0].dtype, per_channel.outputs[0].shape = ir.DataType.FLOAT, x.shape
        self.graph.extend([per_channel])
        node.replace_input_with(0, per_channel.outputs[0])
        return {x.name: per_channel.outputs[0].name}

    def constant(self, base: str, array: np.ndarray) -> ir.Value:
        """A new float32 initializer."""
        return self._initializer(base, array.astype(np.float32))

    def scaled_constant(self, base: str, array: np.ndarray, qp: QParams) -> ir.Value:
        """``Cast(array) * scale``: a quantized constant that ORT's constant folding restores."""
        q = self._initializer(f"{base}_quantized", array)
        scale_value = self._initializer(
            f"{base}_scale", _per_axis(qp.scale, qp.axis, array.ndim).astype(np.float32)
        )
        cast = ir.node(
            "Cast", [q], attributes={"to": ir.DataType.FLOAT}, name=self._name(f"{base}_Cast")
        )
        cast.outputs[0].name = self._name(f"{base}_cast")
        mul = ir.node("Mul", [cast.outputs[0], scale_value], name=self._name(f"{base}_Mul"))
        self.graph.extend([cast, mul])
        return self._float_output(mul, base, array.shape)

    def dequantized_constant(
        self, base: str, array: np.ndarray, qp: QParams, zero_point: bool = False
    ) -> ir.Value:
        """A constant stored quantized, read through DequantizeLinear (per axis when ``qp.axis`` is
        set); a zero zero point is left out (the default) unless ``zero_point``."""
        q = self._initializer(f"{base}_quantized", array)
        inputs = [q, self._initializer(f"{base}_scale", qp.scale)]
        if zero_point or np.any(qp.zero_point):
            inputs.append(self._initializer(f"{base}_zero_point", qp.zero_point))
        attrs = {"axis": qp.axis} if qp.axis is not None else {}
        dq = ir.node(
            "DequantizeLinear",
            inputs,
            attributes=attrs,
            name=self._name(f"{base}_DequantizeLinear"),
        )
        self.graph.extend([dq])
        return self._float_output(dq, base, array.shape)

    def _float_output(self, node: ir.Node, base: str, shape) -> ir.Value:
        out = node.outputs[0]
        out.name, out.dtype, out.shape = (
            self._name(f"{base}_dequantized"),
            ir.DataType.FLOAT,
            ir.Shape(shape),
        )
        return out
