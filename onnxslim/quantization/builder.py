"""Quantized copies of one prepared float model, built on demand from cached calibration stats."""

from __future__ import annotations

import dataclasses
import functools
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence

import numpy as np
import onnx_ir as ir

from onnxslim.errors import CheckFailedError, OnnxSlimError
from onnxslim.model import io
from onnxslim.model.graph import OutputKinds, output_kinds
from onnxslim.quantization import exact, gptq
from onnxslim.quantization.bias_correction import input_channel_axis
from onnxslim.quantization.calibration import (
    Histogram,
    collect,
    compute_range,
)
from onnxslim.quantization.ops import RULES, WEIGHT_ONLY, WEIGHTED, stored_weight
from onnxslim.quantization.plan import QuantOptions, QuantPlan, make_plan
from onnxslim.quantization.qdq import QParams, QuantizePass, activation_qparams
from onnxslim.runtime import Session


@dataclasses.dataclass
class BuildInfo:
    plan: QuantPlan
    dequantized: dict[str, str]
    op_types: dict[str, str]
    kept_float: dict[str, str]


#: Ops whose output holds the very values of their first input, reordered or reshaped: its
#: histogram is the input's (a Transpose that a float producer made float: observed afresh, a run
#: over the samples for one tensor, ppocrv4_rec 1 s of its 28)
SAME_VALUES = frozenset({"Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose"})

#: Bytes of GPTQ's layer input statistics (`gptq.hessian_bytes`) one builder holds at most: the
#: nodes past it, in graph order, round to nearest (a large transformer's would not fit in memory).
GPTQ_MEMORY = 1024**3


class QuantBuilder:
    """Builds quantized copies of one prepared float model, with what it observed of it on the
    calibration samples: tensor histograms, channel means and GPTQ's ``X X^T``."""

    def __init__(
        self,
        model: ir.Model,
        samples,
        options: QuantOptions,
        method: str,
        method_options,
        progress: bool,
        equalized: bool = False,
        kinds: OutputKinds | None = None,
    ):
        self.proto = io.lean_proto(model)
        self.model = model
        self.equalized = equalized
        # the softmax and score outputs of the model as given (graph.output_kinds; `model` may be
        # converted to another opset, where a Softmax over an inner axis is Flatten -> Softmax ->
        # Reshape)
        self.kinds = output_kinds(model) if kinds is None else kinds
        self.samples, self.options, self.method = samples, options, method
        self.method_options, self.progress = method_options, progress
        self.stats: dict[str, Histogram] = {}
        self.means: dict[str, np.ndarray] = {}
        # X X^T of the readers of one weight (summed over several), by their names
        self.hessians: dict[tuple[str, ...], np.ndarray] = {}
        self.rounded = gptq.RoundingCache()  # GPTQ's, shared by this builder's builds
        self.gptq_memory = GPTQ_MEMORY
        self.gptq_skipped: set[str] = set()  # nodes past gptq_memory, rounded to nearest
        # an equalized model's builder: the unequalized model's builder and the scales its convs'
        # inputs were divided by (EqualizePass.input_scales), to derive Hessians from its
        self.hessian_source: tuple[QuantBuilder, Mapping[str, np.ndarray]] | None = None
        # whether a variant may turn bias correction on: its channel means observed with the rest
        # (Mask R-CNN: 60 s a run over the samples of their own)
        self.may_correct_bias = False
        self.op_types = {n.name: n.op_type for n in model.graph}
        self.readers = weight_readers(model)  # the weights GPTQ may round, by their readers

    def _fresh(self) -> ir.Model:
        return ir.from_proto(self.proto)

    def _ensure_stats(
        self, model: ir.Model, plan: QuantPlan, groups: Sequence[tuple[str, ...]]
    ) -> None:
        """Observe what `plan` needs and was not observed yet, in one run of the model per
        sample: its tensors' histograms, the channel means of bias correction (`_mean_axes`,
        where a build may use them) and the ``X X^T`` of GPTQ's `groups` (`_hessian_groups`)."""
        missing = [n for n in plan.observed if n not in self.stats]
        self._copy_same_values(model, missing)
        missing = [n for n in missing if n not in self.stats]
        means = {}
        if self.options.bias_correction or self.may_correct_bias:
            means = {n: a for n, a in self._mean_axes(model, plan).items() if n not in self.means}
        hessians = self._missing_hessians(model, groups)
        if missing or means or hessians:
            collected = collect(
                self.proto,
                self.samples,
                histograms=missing,
                means=means,
                hessians=hessians,
                progress=self.progress,
                total=len(self.samples),
            )
            self.stats.update(collected.stats)
            self.means.update(collected.means)
            self.hessians.update(collected.hessians)

    def _copy_same_values(self, model: ir.Model, names: Sequence[str]) -> None:
        """Give each of `names` that a chain of SAME_VALUES ops makes of an observed tensor that
        tensor's histogram."""
        producers = {value.name: node for node in model.graph for value in node.outputs}
        for name in names:
            source, node = name, producers.get(name)
            while (
                source not in self.stats
                and node is not None
                and node.op_type in SAME_VALUES
                and node.domain == ""
                and node.inputs[0] is not None
            ):
                source = node.inputs[0].name
                node = producers.get(source)
            if source in self.stats:
                self.stats[name] = self.stats[source]

    def build(
        self, exclude: Sequence[str] = (), weight_only: Sequence[str] = ()
    ) -> tuple[ir.Model, BuildInfo]:
        """A quantized copy with the nodes ``exclude`` entirely in float (weights too) and the nodes
        ``weight_only`` computing in float on int8-stored weights."""
        options = dataclasses.replace(
            self.options,
            exclude_nodes=self.options.exclude_nodes | set(exclude),
            weight_only_nodes=self.options.weight_only_nodes | frozenset(weight_only),
        )
        model = self._fresh()
        first = make_plan(model, options)
        self._ensure_stats(model, first, self._hessian_groups(model, first, final=False))
        sizes = output_sizes(model, first, self.stats)
        dtypes = {name: h.dtype for name, h in self.stats.items() if h.dtype}
        final = make_plan(model, options, sizes, dtypes)
        groups = self._hessian_groups(model, final)
        self._ensure_stats(model, final, groups)
        qparams = {name: self._qparams(name, final) for name in final.observed}
        axes = self._mean_axes(model, final) if self.options.bias_correction else {}
        means = {name: self.means[name] for name in axes}
        hessians = {name: self._hessian(group) for group in groups for name in group}
        rewrite = QuantizePass(final, qparams, options, means, hessians, self.rounded)
        rewrite(model)
        kept = {
            n: r
            for n, r in final.floats.items()
            if RULES[self.op_types[n]].kind in (WEIGHTED, WEIGHT_ONLY)
            and r != "op type not selected"
        }
        return model, BuildInfo(final, rewrite.dequantized, self.op_types, kept)

    def _mean_axes(self, model: ir.Model, plan: QuantPlan) -> dict[str, int]:
        """The channel axis of each input whose means bias correction reads (the nodes of `plan`
        whose bias it adjusts)."""
        by_name = {n.name: n for n in model.graph}
        nodes = [by_name[n] for n in [*plan.nodes, *plan.weight_only]]
        return {
            n.inputs[0].name: input_channel_axis(n)
            for n in nodes
            if input_channel_axis(n) is not None
        }

    def _rounded_groups(self, model: ir.Model, plan: QuantPlan) -> list[tuple[str, ...]]:
        """The readers of each weight GPTQ rounds in `plan` (none unless ``weight_rounding`` is
        "gptq"): those computing in INT8 and, with ``gptq_float_compute``, those computing in
        float on int8-stored weights. A weight several nodes read is rounded once, for all of
        them (one int8 copy in the file), the same in every build: against the sum of the
        ``X X^T`` of all its readers in the model, collected once, or to nearest for all where one
        it quantizes is not GPTQ-rounded (another op: a Gather of a tied embedding) or their
        ``X X^T`` differ in size."""
        if self.options.weight_rounding != "gptq":
            return []
        by_name = {n.name: n for n in model.graph}
        quantized = Counter(  # the readers of each weight this build quantizes
            name
            for n in [*plan.nodes, *plan.weight_only]
            if (name := _stored_name(by_name[n])) is not None
        )
        rounded = gptq_candidates(plan, self.options)
        return [
            group
            for weight, group in self.readers.items()
            if 0 < len(rounded.intersection(group)) == quantized[weight]
            and len({gptq.hessian_bytes(by_name[n]) for n in group}) == 1
        ]

    def _hessian_groups(
        self, model: ir.Model, plan: QuantPlan, final: bool = True
    ) -> list[tuple[str, ...]]:
        """`_rounded_groups` of `plan` whose ``X X^T`` fits: in graph order, the weights whose
        statistics pass `gptq_memory` round to nearest (the nodes reading them are in
        `gptq_skipped`). A plan made before sizes and dtypes are known (not `final`) gives the
        groups before the first that does not fit, and only where the final plan rounds the
        same weights (with ``gptq_float_compute``, a node too small for INT8 computes in float
        on GPTQ-rounded weights instead): it observes them early, and decides nothing."""
        if not (final or self.options.gptq_float_compute):
            return []
        by_name = {n.name: n for n in model.graph}
        held = sum(h.nbytes for h in self.hessians.values())
        kept = []
        for group in self._rounded_groups(model, plan):
            if group not in self.hessians and not self.gptq_skipped & set(group):
                held += gptq.hessian_bytes(by_name[group[0]])
                if held > self.gptq_memory:
                    if not final:
                        break
                    self.gptq_skipped.update(group)
            if group in self.hessians or not self.gptq_skipped & set(group):
                kept.append(group)
        return kept

    def _missing_hessians(
        self, model: ir.Model, groups: Sequence[tuple[str, ...]]
    ) -> dict[tuple[str, ...], list[tuple[str, Callable]]]:
        """What `collect` needs to observe the ``X X^T`` of `groups` neither held nor derivable
        (`_source_hessian`)."""
        by_name = {n.name: n for n in model.graph}
        return {
            group: [
                (by_name[n].inputs[0].name, functools.partial(gptq.input_columns, by_name[n]))
                for n in group
            ]
            for group in groups
            if group not in self.hessians and self._source_hessian(group) is None
        }

    def _source_hessian(self, names: tuple[str, ...]) -> np.ndarray | None:
        """The ``X X^T`` of `names` in `hessian_source`'s builder, where theirs derives from it
        (an equalized model's from the plain one's: its inputs divided by the scales; several
        readers: only unscaled ones)."""
        if self.hessian_source is None:
            return None
        source, scales = self.hessian_source
        if len(names) > 1 and any(n in scales for n in names):
            return None
        return source.hessians.get(names)

    def _hessian(self, names: tuple[str, ...]) -> np.ndarray:
        """The ``X X^T`` of `names`: observed, or derived from `_source_hessian` once the runs
        over the samples are done (held during them, Mask R-CNN's peak RSS was 0.75 GB higher), and
        kept."""
        if names not in self.hessians:
            scales = self.hessian_source[1]
            self.hessians[names] = _rescaled(self._source_hessian(names), scales.get(names[0]))
        return self.hessians[names]

    def _qparams(self, name: str, plan: QuantPlan) -> QParams:
        symmetric = self.options.activation_type == "int8" and name not in plan.asymmetric
        lo, hi = compute_range(
            self.stats[name], self.method, symmetric=symmetric, **self.method_options
        )
        return activation_qparams(lo, hi, self.options.activation_type, symmetric)


def gptq_memory_note(count: int, what: str, limit: int) -> str:
    """The note for `count` `what` (nodes, weights) GPTQ left to nearest rounding: their layer
    input statistics past its memory `limit` (bytes)."""
    return (
        f"GPTQ rounding left out for {count} {what} past its memory limit "
        f"({limit / 1024**2:g} MiB of layer input statistics): they round to nearest"
    )


def gptq_candidates(plan: QuantPlan, options: QuantOptions) -> set[str]:
    """The nodes of a build of `plan` whose weights GPTQ may round: those computing in INT8 and,
    with ``options.gptq_float_compute``, those computing in float on int8-stored weights."""
    return {*plan.nodes, *(plan.weight_only if options.gptq_float_compute else ())}


def _stored_name(node: ir.Node) -> str | None:
    """The name of the constant INT8 stores for `node` (a Gather's table, a conv's weight), if
    any."""
    where = stored_weight(node)
    value = node.inputs[where[0]] if where and len(node.inputs) > where[0] else None
    return None if value is None else value.name


def weight_readers(model: ir.Model) -> dict[str, tuple[str, ...]]:
    """Each constant weight GPTQ can round -> the nodes reading it, in graph order."""
    readers = defaultdict(list)
    for node in model.graph:
        if gptq.supports(node):
            readers[node.inputs[1].name].append(node.name)
    return {weight: tuple(names) for weight, names in readers.items()}


def _rescaled(hessian: np.ndarray, scales: np.ndarray | None) -> np.ndarray:
    """The ``X X^T`` of a layer whose input channels were divided by `scales` (each channel's
    rows consecutive in ``X``: a conv's taps; a grouped conv's groups in turn), from that of the
    undivided input."""
    if scales is None:
        return hessian
    rows = hessian.size // hessian.shape[-1]  # of all groups
    taps, rest = divmod(rows, len(scales))
    if rest:
        raise OnnxSlimError(f"{len(scales)} input scales for a Hessian of {rows} rows")
    d = np.repeat(1.0 / np.asarray(scales, np.float64), taps).reshape(hessian.shape[:-1])
    return hessian * d[..., :, None] * d[..., None, :]


def output_sizes(
    model: ir.Model, plan: QuantPlan, stats: Mapping[str, Histogram]
) -> dict[str, float]:
    """Elements per sample of each weighted node's output (a folded Relu/Clip: its input's size)."""
    sizes = {name: h.mean_size for name, h in stats.items()}
    by_name = {n.name: n for n in model.graph}
    for act, owner in plan.folded.items():
        out = by_name[act].outputs[0].name
        if out in sizes:
            sizes[by_name[owner].outputs[0].name] = sizes[out]
    return sizes


def run_samples(
    model,
    samples,
    names: Sequence[str] | None = None,
    *,
    int8: bool = True,
    opt_level: str | None = None,
) -> list[dict[str, np.ndarray]]:
    """Outputs (or the tensors ``names``) of ``model`` for each sample, with ORT's graph
    optimizations at `opt_level` (default: all, basic to observe tensors; off, integer MatMuls
    exact, within `exact.exact_math`); ORT failing on an ``int8`` model is a CheckFailedError."""
    return list(iter_samples(model, samples, names, int8=int8, opt_level=opt_level))


def iter_samples(
    model,
    samples,
    names: Sequence[str] | None = None,
    *,
    int8: bool = True,
    opt_level: str | None = None,
) -> Iterator[dict[str, np.ndarray]]:
    """`run_samples` one sample at a time, for tensors too many to hold for every sample."""
    if exact.enabled():  # as the target CPU computes it, the float reference alike (exact.py)
        model = exact.exact_integer_math(model)
        opt_level = "disable"
    session = Session(
        model,
        threads=0,  # every core: nothing here is timed
        opt_level=opt_level or ("basic" if names else "all"),
        extra_outputs=names or (),
        what=f"the {'INT8' if int8 else 'float'} model",
        error=CheckFailedError if int8 else OnnxSlimError,
    )
    keys = list(names) if names else session.output_names
    for sample in samples:
        yield dict(zip(keys, session.run(sample, names or None)))
