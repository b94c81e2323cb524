"""Check an optimized model against its original on ONNX Runtime CPU."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections import Counter
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import ml_dtypes
import numpy as np
import onnx
import onnx_ir as ir

from onnxslim import synth
from onnxslim.data import sample_shapes
from onnxslim.errors import CheckFailedError, OnnxSlimError
from onnxslim.model import io
from onnxslim.model.graph import all_nodes, proto_readers
from onnxslim.passes.fold import is_random
from onnxslim.render.format import counted, input_shapes
from onnxslim.runtime import Session

#: (rtol, atol) per float dtype; the ml_dtypes floats (bfloat16, float8 ...) within one unit of
#: rounding (their epsilon); other dtypes must match exactly.
TOLERANCES = {
    np.dtype(np.float64): (1e-4, 1e-5),
    np.dtype(np.float32): (1e-4, 1e-5),
    np.dtype(np.float16): (1e-2, 1e-3),
}
#: A float32 output of a model computing in float16 or bfloat16 inside: compared as float16's.
HALF_TOLERANCE = TOLERANCES[np.dtype(np.float16)]
#: A float output beyond TOLERANCES still matches within this many times the original's own
#: rounding noise (`rounding_noise`): deep or recurrent models amplify rounding past fixed bounds.
NOISE_FACTOR = 4.0
NOISE_ULPS = 4  # how far `rounding_noise` moves each float input, in units of its dtype's epsilon


class NotCheckable(OnnxSlimError):
    """No comparison possible: the original does not run in ONNX Runtime, or cannot be fed."""


class Nondeterministic(NotCheckable):
    """The original gives other values on each run for every output (random ops): nothing to
    compare, whatever the inputs."""


class OriginalDoesNotLoad(NotCheckable):
    """ONNX Runtime cannot load the original (missing kernels, custom ops, invalid graphs)."""


class OutputsDiffer(CheckFailedError):
    """The checked model's outputs differ from the original's (not: it could not be checked)."""


DIFFERS = "optimized model differs from the original: "  # how an OutputsDiffer's message starts


@dataclass(frozen=True)
class Mismatch:
    """One output that differs between the original and the optimized model."""

    output: str
    detail: str

    def __str__(self) -> str:
        return f"{self.output}: {self.detail}"


@contextlib.contextmanager
def model_file(model: str | os.PathLike | onnx.ModelProto | ir.Model) -> Iterator[Path]:
    """A path ORT can load: the model's file, or a temp copy of an in-memory model made on entry."""
    if not isinstance(model, (onnx.ModelProto, ir.Model)):
        yield Path(model)
        return
    with tempfile.TemporaryDirectory(prefix="onnxslim-") as folder:
        path = Path(folder) / "model.onnx"
        if isinstance(model, onnx.ModelProto):
            onnx.save(model, path)
        else:
            io.save(model, path)
        yield path


@dataclass
class CheckInputs:
    """The samples a check ran on and where they came from, with a description for the report."""

    samples: list[dict]
    source: str  # "given", "shipped test data" or "synthesized"
    description: dict[str, str]
    #: outputs beyond TOLERANCES that matched within the original's own rounding noise: why
    within_noise: dict[str, str] = field(default_factory=dict)
    #: outputs the original gives as all zeros (or NaN) on synthesized inputs: the check says
    #: little there
    all_zero: list[str] = field(default_factory=list)
    #: the last sample, synthesized at other dynamic dims (`synth.other_dims`): each input's text
    other_dims: dict[str, str] = field(default_factory=dict)
    #: the synthesized samples left out (all zeros, other dims: the original did not take them, or
    #: not as ONNX Runtime runs it by default), and why
    left_out: list[str] = field(default_factory=list)
    #: outputs the original gives other values for on a second run of the same inputs (random
    #: ops), not compared; and those ops, counted by kind
    random: list[str] = field(default_factory=list)
    random_ops: str = ""
    #: outputs the original gives partly as NaN or inf on synthesized inputs: their share
    not_finite: dict[str, float] = field(default_factory=dict)

    def __str__(self) -> str:
        other = {name: f", then {text}" for name, text in self.other_dims.items()}
        shapes = "; ".join(
            f"{name} {text}{other.get(name, '')}" for name, text in self.description.items()
        )
        noise = "; ".join(f"{name} {text}" for name, text in self.within_noise.items())
        zero = ", ".join(f"'{name}'" for name in self.all_zero)
        nan = ", ".join(
            f"{f'{share:.0%}' if share >= 0.01 else 'under 1%'} of '{name}'"
            for name, share in self.not_finite.items()
        )
        return (
            f"{self.source} inputs"
            + (f" ({shapes})" if shapes else "")
            + "".join(f"; {text}" for text in self.left_out)
            + (f"; within the original's own rounding noise or precision: {noise}" if noise else "")
            + (
                f"; the original gives all zeros (or NaN) there for {zero}, so the check says "
                "little about them (--check-inputs: real inputs)"
                if zero
                else ""
            )
            + (
                f"; the original gives NaN or inf there for {nan}: the check compares the rest "
                "(--check-inputs: real inputs)"
                if nan
                else ""
            )
            + (
                f"; not compared: {', '.join(repr(name) for name in self.random)} (the original "
                f"gives other values on each run; random ops: {self.random_ops})"
                if self.random
                else ""
            )
        )


@dataclass
class Reference:
    """The original's side of a check: the inputs, its outputs on them, its output names."""

    inputs: CheckInputs
    outputs: list
    names: list[str]


def reference_outputs(
    original: str | os.PathLike | ir.Model,
    samples: Sequence[dict[str, np.ndarray]] | None = None,
    shapes: dict[str, tuple[int, ...]] | None = None,
    random_ops: Counter | None = None,
) -> Reference:
    """Run the original on the check's inputs: `samples`, else the test data shipped beside its
    file (`test_data_set_*`), else inputs synthesized from how the model uses them, retried with
    other dims and values while the original rejects them (`shapes` fixes dynamic dims), then the
    same with every float input all zeros where the original gives finite outputs on them, then
    at other values of the dynamic dims where the original takes them (`synth.other_dims`).
    `random_ops`: the original's `random_nodes` (None: read from it)."""
    if random_ops is None:
        model = original if isinstance(original, ir.Model) else _graph_of(original)
        random_ops = random_nodes(model)
    with model_file(original) as original_path:
        session = Session(
            original_path,
            what="the original model",
            error=NotCheckable,
            load_error=OriginalDoesNotLoad,
            prepack=False,
        )
        try:
            inputs, expected = _reference_run(session, original_path, samples, shapes)
            _find_random_outputs(session, random_ops, inputs, expected[0])
        except BaseException:  # (the error's traceback holds it: not beside the next session)
            session.close()
            raise
        if inputs.source == "synthesized":
            inputs.all_zero = [
                name
                for name, *values in zip(session.output_names, *expected)
                if all(_zeros(value) for value in values)
            ]
            inputs.not_finite = {
                name: share
                for name, *values in zip(session.output_names, *expected)
                if name not in inputs.all_zero and (share := _not_finite_share(values))
            }
        return Reference(inputs, expected, session.output_names)


def _find_random_outputs(
    reference: Session, kinds: Counter, inputs: CheckInputs, outputs: list
) -> None:
    """Where the original has random nodes (`kinds`, `random_nodes`), the outputs it gives other
    values for on a second run of the first sample (`outputs`: the first run's) go to
    `inputs.random`, not compared; all of them: Nondeterministic. A model exported in training
    mode keeps its Dropouts random (a BERT's five: "differs from the original, max abs difference
    4.02", exit 1)."""
    if not kinds:
        return
    again = reference.run(synth.ort_feeds(inputs.samples[0]))
    inputs.random = [
        name
        for name, first, second in zip(reference.output_names, outputs, again)
        if _difference(first, second, (0.0, 0.0))
    ]
    inputs.random_ops = counted(kinds.items())
    if TRAINING_DROPOUT in kinds:
        inputs.random_ops += f"; {TRAINING_HINT}"
    if inputs.random and len(inputs.random) == len(outputs):
        raise Nondeterministic(
            "the original gives other values on each run for every output, so there is nothing "
            f"to compare (random ops: {inputs.random_ops})"
        )


TRAINING_DROPOUT = "Dropout in training mode"
#: What a model with TRAINING_DROPOUT is told (torch's exporter keeps a module's mode).
TRAINING_HINT = "a model exported in training mode? export it after model.eval()"


def random_nodes(model: ir.Model) -> Counter:
    """The random nodes of `model` (its graphs, their bodies and its functions) by kind
    (`fold.is_random`: RANDOM_OPS, and Dropout in training mode)."""
    return Counter(
        TRAINING_DROPOUT if node.op_type == "Dropout" else node.op_type
        for node in all_nodes(model)
        if is_random(node)
    )


def _graph_of(original: str | os.PathLike | onnx.ModelProto) -> ir.Model:
    """The nodes of a model file or proto, without its external weights."""
    if not isinstance(original, onnx.ModelProto):
        original = onnx.load(original, load_external_data=False)
    return io.from_proto(original)


def _not_finite_share(values: Sequence) -> float:
    """The share of NaN and inf among the float values of `values` (one output's arrays)."""
    floats = [v for v in values if isinstance(v, np.ndarray) and v.dtype.kind in "fc"]
    size = sum(v.size for v in floats)
    return sum(int(np.count_nonzero(~np.isfinite(v))) for v in floats) / size if size else 0.0


def _zeros(value) -> bool:
    """Whether `value` is a numeric array (with at least one element) of zeros, or NaN and inf
    (matching them checks nothing either)."""
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "biufc" or not value.size:
        return False
    if value.dtype.kind in "fc":
        return not np.any(np.isfinite(value) & (value != 0))
    return not value.any()


def compare(
    original: str | os.PathLike | ir.Model,
    optimized: str | os.PathLike | ir.Model,
    samples: Sequence[dict[str, np.ndarray]] | None = None,
    shapes: dict[str, tuple[int, ...]] | None = None,
    tolerance: tuple[float | None, float | None] | None = None,
    reference: Reference | None = None,
) -> tuple[list[Mismatch], CheckInputs]:
    """Run both models on the same inputs (see `reference_outputs`; `reference` when the original
    already ran) and list the outputs that differ. `tolerance` (rtol, atol) overrides TOLERANCES
    for every float dtype (None keeps that one's default); without it, a float output beyond
    TOLERANCES still matches within NOISE_FACTOR times the original's own `rounding_noise` (the
    inputs returned say so). A synthesized sample at other dynamic dims on which the result fails
    or differs is left out where the original, as ORT runs it by default, fails or differs there
    too (`_other_dims_untaken`); a mismatch found there alone says so."""
    # One session at a time: for a large model, two live sessions would double the peak memory.
    reference = reference or reference_outputs(original, samples, shapes)
    resized = len(reference.inputs.samples) - 1 if reference.inputs.other_dims else None
    #: output -> sample -> how it differs, and the optimized model's value for float outputs
    #: (None where only exact comparison can tell)
    problems: dict[str, dict[int, str]] = {}
    suspects: dict[str, dict[int, np.ndarray | None]] = {}
    failure = None  # the optimized model's error on the sample at other dims
    with model_file(optimized) as optimized_path:
        candidate = Session(
            optimized_path, what="the optimized model", error=CheckFailedError, prepack=False
        )
        for index, (feed, outputs) in enumerate(zip(reference.inputs.samples, reference.outputs)):
            try:
                actual = candidate.run(synth.ort_feeds(feed))
            except CheckFailedError as err:
                if index != resized:
                    raise
                failure = err
                continue
            if len(actual) != len(reference.names):
                raise CheckFailedError(
                    f"the optimized model has {len(actual)} outputs instead of "
                    f"{len(reference.names)}"
                )
            for name, want, got in zip(reference.names, outputs, actual):
                if name in reference.inputs.random:
                    continue
                problem = _difference(want, got, tolerance)
                if problem:
                    problems.setdefault(name, {})[index] = problem
                    suspects.setdefault(name, {})[index] = got if _comparable(want, got) else None
        del candidate
    if resized is not None and (failure or any(resized in p for p in problems.values())):
        feed, expected = reference.inputs.samples[resized], reference.outputs[resized]
        why = _other_dims_untaken(original, feed, expected, reference.inputs.random)
        if why:  # the original itself, as ORT runs it by default, does not take them: left out
            inputs = replace(
                reference.inputs,
                samples=reference.inputs.samples[:-1],
                other_dims={},
                left_out=[*reference.inputs.left_out, why],
            )
            reference = Reference(inputs, reference.outputs[:-1], reference.names)
            for found in (problems, suspects):
                for name in list(found):
                    found[name].pop(resized, None)
                    if not found[name]:
                        del found[name]
            resized = None
        elif failure:
            raise failure
    inputs = reference.inputs
    floating = [name for name, got in suspects.items() if all(v is not None for v in got.values())]
    within = {}
    if floating and tolerance is None:  # tolerances given are the rule
        within = _within_noise(original, reference, {name: suspects[name] for name in floating})
        inputs = replace(inputs, within_noise=within) if within else inputs
    mismatches = []
    for name, by_sample in problems.items():
        if name not in within:
            index, problem = next(iter(by_sample.items()))
            where = _feed_shapes(inputs.samples[index]) if index == resized else None
            mismatches.append(
                Mismatch(name, f"{problem} (at other dynamic dims: {where})" if where else problem)
            )
    return mismatches, inputs


def _feed_shapes(feed: Mapping) -> str:
    """`x float32[2,4]; y int64[2]`: each input's type and shape."""
    return input_shapes(sample_shapes([feed]))


#: Why a check leaves out its sample at other dynamic dims (`_other_dims_untaken`).
OTHER_DIMS_UNTAKEN = (
    "at other dynamic dims ({dims}) the original itself, as ONNX Runtime runs it by default "
    "(graph optimizations on), {how}: not checked there"
)
#: Why a check has no sample of all zeros: "{why}" what the original does on them.
ZEROS_LEFT_OUT = "no sample of all zeros: the original {why}"
OTHER_DIMS_REJECTED = (
    "no sample at other sizes of its dynamic dims: the original rejects them (or they are too "
    "large to try)"
)
OTHER_DIMS_NOT_FINITE = (
    "at other dynamic dims ({dims}) the original gives NaN or inf: not checked there"
)


def _other_dims_untaken(
    original, feed: Mapping, expected: list, random: Collection[str] = ()
) -> str | None:
    """Why the original does not take `feed` (the check's sample at other dynamic dims) as ONNX
    Runtime runs it by default, where its outputs with the optimizations off were `expected`
    (a shape traced into the graph, which ORT's own rewrites bake in), or None where it does;
    the `random` outputs (CheckInputs.random) differ anyway and are not compared."""
    dims = _feed_shapes(feed)
    try:
        with model_file(original) as path:
            session = Session(path, opt_level="all", what="the original model", prepack=False)
            outputs = session.run(synth.ort_feeds(feed))
    except OnnxSlimError:
        return OTHER_DIMS_UNTAKEN.format(dims=dims, how="fails")
    compared = [
        (want, got)
        for name, want, got in zip(session.output_names, expected, outputs)
        if name not in random
    ]
    if any(_difference(want, got) for want, got in compared):
        return OTHER_DIMS_UNTAKEN.format(dims=dims, how="gives other outputs")
    return None


def _within_noise(
    original, reference: Reference, suspects: Mapping[str, Mapping[int, np.ndarray]]
) -> dict[str, str]:
    """The outputs of `suspects` (the optimized model's values by sample) whose every element is
    within its tolerance plus NOISE_FACTOR times the original's own `rounding_noise` there; with
    what was measured. An output computed through a cast to float16 or bfloat16 (`_half_computed`)
    is held to float16's tolerance. A non-finite element matches only itself."""
    with model_file(original) as path:
        half = _half_computed(path)
        measured = {sample for by_sample in suspects.values() for sample in by_sample}
        noise = rounding_noise(path, reference, list(suspects), half, measured)
    within = {}
    for name, samples in suspects.items():
        index = reference.names.index(name)
        gap = floor = 0.0
        for sample, got in samples.items():
            want = reference.outputs[sample][index]
            rtol, atol = _tolerance(want.dtype)
            if half and name in half[1]:
                rtol, atol = max(rtol, HALF_TOLERANCE[0]), max(atol, HALF_TOLERANCE[1])
            got, want = got.astype(np.float64), want.astype(np.float64)
            diff = np.abs(got - want)
            allowed = atol + rtol * np.abs(want) + NOISE_FACTOR * noise[name][sample]
            same = (got == want) | (np.isnan(got) & np.isnan(want))
            if not np.all(same | (np.isfinite(want) & (diff <= allowed))):
                break
            gap = max(gap, float(np.max(np.where(same, 0.0, diff))))
            floor = max(floor, float(np.max(noise[name][sample])))
        else:
            within[name] = (
                f"(largest difference {gap:.3g}: computed in float16 or bfloat16, within "
                f"float16's tolerance; its own noise {floor:.3g})"
                if half and name in half[1]
                else f"(largest difference {gap:.3g}; its own {floor:.3g})"
            )
    return within


def rounding_noise(
    original,
    reference: Reference,
    names: Sequence[str],
    half: tuple[float, frozenset[str]] | None = None,
    samples: Collection[int] | None = None,
) -> dict[str, list]:
    """Per output of `names` and per sample (of `samples` only, when given: the others 0), how far
    rounding alone moves each element of the original's float output (0 where it cannot say): the
    largest change with ONNX Runtime's graph optimizations on (its fusions reorder the arithmetic)
    and with the float32/float64 inputs moved by NOISE_ULPS units of rounding (how much the model
    amplifies each step's rounding);
    for the outputs of `half` (`_half_computed`: computed through a cast to a coarser float), also
    with the inputs moved by NOISE_ULPS units of that float. An original that ORT's optimizations
    break has no noise to offer (zeros)."""
    rng = np.random.default_rng(0)
    indices = {name: reference.names.index(name) for name in names}
    noise: dict[str, list] = {name: [] for name in names}
    steps = [None, half[0]] if half else [None]
    with model_file(original) as path:
        try:
            session = Session(path, opt_level="all", what="the original model", prepack=False)
            runs = []
            for sample, feed in enumerate(reference.inputs.samples):
                if samples is not None and sample not in samples:
                    runs.append([])
                    continue
                feeds = [feed, *(_moved(feed, rng, eps) for eps in steps)]
                runs.append([session.run(synth.ort_feeds(f)) for f in feeds])
        except OnnxSlimError:
            runs = [[] for _ in reference.inputs.samples]
    for expected, changed in zip(reference.outputs, runs):
        for name, index in indices.items():
            want = expected[index].astype(np.float64)
            kept = changed if half and name in half[1] else changed[:2]
            with np.errstate(invalid="ignore"):  # inf - inf: NaN, counted as no move below
                moves = [np.abs(run[index].astype(np.float64) - want) for run in kept]
            move = np.maximum.reduce(moves) if moves else np.zeros_like(want)
            noise[name].append(np.where(np.isfinite(move), move, 0.0))
    return noise


#: Float types a model may compute in below float32, by ONNX type, and their epsilon.
_HALF_EPSILON = {
    onnx.TensorProto.FLOAT16: float(np.finfo(np.float16).eps),
    onnx.TensorProto.BFLOAT16: float(ml_dtypes.finfo(ml_dtypes.bfloat16).eps),
}


def _half_computed(path: str | os.PathLike) -> tuple[float, frozenset[str]] | None:
    """The epsilon of the coarsest float below float32 that the model's main graph casts to
    (float16, bfloat16: it computes in it; weights stored so and cast to float32 do not count)
    and the graph outputs computed through such a cast; None: none."""
    graph = onnx.load(path, load_external_data=False).graph
    readers = proto_readers(graph)
    eps, frontier = 0.0, []
    for node in graph.node:
        to = next((a.i for a in node.attribute if a.name == "to"), None)
        if node.op_type == "Cast" and to in _HALF_EPSILON:
            eps = max(eps, _HALF_EPSILON[to])
            frontier += node.output
    reached = set(frontier)
    while frontier:  # every value computed from a cast's output (files may not be sorted)
        for node in readers.get(frontier.pop(), []):
            new = [name for name in node.output if name not in reached]
            reached.update(new)
            frontier += new
    outputs = frozenset(output.name for output in graph.output if output.name in reached)
    return (eps, outputs) if outputs else None


def _moved(feed: Mapping, rng: np.random.Generator, eps: float | None = None) -> dict:
    """`feed` with each element of its float32 and float64 arrays moved by NOISE_ULPS relative
    units of their rounding (or of `eps`, a coarser float's the model computes in), either way
    (coarser float inputs move too far to say anything about rounding), and a zero by as many
    units of rounding at 1 (zeros have no scale of their own, and a model's rounding on them is
    that of its own constants: a LayerNorm of rows all alike divides the residue of subtracting
    their mean by sqrt(epsilon)); anything else as it is."""
    moved = dict(feed)
    for name, value in feed.items():
        if isinstance(value, np.ndarray) and value.dtype in (np.float32, np.float64):
            step = NOISE_ULPS * (eps or float(np.finfo(value.dtype).eps))
            signs = rng.choice([-1.0, 1.0], value.shape)
            wide = value.astype(np.float64)
            moved[name] = (wide * (1 + step * signs) + (wide == 0) * step * signs).astype(
                value.dtype
            )
    return moved


def _comparable(expected, actual) -> bool:
    """Whether two outputs are float arrays of one shape and dtype, NaN in the same places: what
    only their values' closeness can tell apart."""
    if not isinstance(expected, np.ndarray) or not isinstance(actual, np.ndarray):
        return False
    if expected.shape != actual.shape or expected.dtype != actual.dtype:
        return False
    if _tolerance(expected.dtype) is None or expected.dtype.type.__module__ == "ml_dtypes":
        return False
    return bool(np.array_equal(np.isnan(expected), np.isnan(actual)))


def _reference_run(reference: Session, path: Path, samples, shapes) -> tuple[CheckInputs, list]:
    """The check's inputs and the original's outputs on them."""
    if samples is not None:
        inputs = CheckInputs(list(samples), "given", {})
        return inputs, [reference.run(synth.ort_feeds(feed)) for feed in inputs.samples]
    shipped = synth.shipped_inputs(path) if shapes is None else None
    if shipped:
        inputs = CheckInputs(shipped, "shipped test data", {})
        return inputs, [reference.run(synth.ort_feeds(feed)) for feed in inputs.samples]
    proto = onnx.load(path, load_external_data=False)

    def run(feed):
        return reference.run(synth.ort_feeds(feed))

    try:
        made, outputs = synth.first_runnable(proto, run, shapes)
    except OnnxSlimError as err:  # NotFeedable, bad shapes, or the original rejects every attempt
        dims = "at the dims given (--input-shapes, --shape)" if shapes else "onnxslim synthesized"
        raise NotCheckable(f"{err} (on the inputs {dims})") from err
    inputs = CheckInputs([made.feeds], "synthesized", dict(made.description))
    expected = [outputs]
    # every float input all zeros (silence, a blank image: where an epsilon guards a Log or a
    # division), the others as they were
    zeroed = {
        name: np.zeros_like(value) for name, value in made.feeds.items() if _float_array(value)
    }
    zeros = {**made.feeds, **zeroed}
    try:
        silent = run(zeros) if zeroed else None
    except NotCheckable:  # the original rejects zeros: the random sample alone
        silent = None
        inputs.left_out.append(ZEROS_LEFT_OUT.format(why="rejects them"))
    if silent is not None and all(_finite(value) for value in silent):
        inputs.samples.append(zeros)
        expected.append(silent)
        for name in zeroed.keys() & inputs.description.keys():
            inputs.description[name] += ", then all zeros"
    elif silent is not None and all(_finite(value) for value in outputs):
        inputs.left_out.append(ZEROS_LEFT_OUT.format(why="gives NaN or inf there"))
    resized = synth.other_dims(proto, made, run, shapes)
    if resized and all(_finite(value) for value in resized[1]):  # where the original takes them
        inputs.samples.append(resized[0].feeds)
        expected.append(resized[1])
        inputs.other_dims = dict(resized[0].description)
    elif resized and all(_finite(value) for value in outputs):  # (not the model's way anyway)
        dims = _feed_shapes(resized[0].feeds)
        inputs.left_out.append(OTHER_DIMS_NOT_FINITE.format(dims=dims))
    elif resized is None and synth.free_dims(proto, made, shapes):
        inputs.left_out.append(OTHER_DIMS_REJECTED)
    return inputs, expected


def _float_array(value) -> bool:
    """Whether `value` (a synthesized feed) is an array of floats: numpy's or ml_dtypes'
    (bfloat16, float8 ...)."""
    return isinstance(value, np.ndarray) and ir.DataType.from_numpy(value.dtype).is_floating_point()


def _finite(value) -> bool:
    """Whether an output holds no inf or NaN (a sequence: in none of its arrays)."""
    if isinstance(value, (list, tuple)):
        return all(_finite(item) for item in value)
    if isinstance(value, np.ndarray) and value.dtype.kind in "fc":
        return bool(np.isfinite(value).all())
    return True


def assert_loads(optimized: str | os.PathLike | ir.Model, unchecked: str) -> None:
    """CheckFailedError when ONNX Runtime cannot load the `optimized` model, where the check could
    not run (why: `unchecked`) but ORT loads the original: a fold left it invalid (a broken Mamba
    export's Tile repeats, computed 2-D, failed only at run; folded, at load)."""
    with model_file(optimized) as path:
        try:
            Session(path, what="the optimized model", error=CheckFailedError, prepack=False)
        except CheckFailedError as err:
            raise CheckFailedError(
                f"{err} (the original loads; it was not checked: {unchecked})"
            ) from err


def check(
    original, optimized, samples=None, shapes=None, tolerance=None, reference=None
) -> CheckInputs:
    """Raise CheckFailedError naming every output whose values differ beyond float rounding;
    return the inputs the check ran on."""
    mismatches, inputs = compare(original, optimized, samples, shapes, tolerance, reference)
    if mismatches:
        raise OutputsDiffer(DIFFERS + "; ".join(map(str, mismatches)))
    return inputs


def _difference(expected, actual, override=None) -> str | None:
    """None when equal within tolerance, else a short description of the difference."""
    if isinstance(expected, list) or expected is None:  # a sequence, or an empty optional
        if not isinstance(actual, type(expected)) or len(expected or ()) != len(actual or ()):
            return f"{actual!r:.40} instead of {expected!r:.40}"
        problems = (
            _difference(want, got, override) for want, got in zip(expected or (), actual or ())
        )
        return next((problem for problem in problems if problem), None)
    if isinstance(expected, dict):  # an element of a ZipMap's seq(map): values by class
        if not isinstance(actual, dict) or list(actual) != list(expected):
            return f"{actual!r:.40} instead of {expected!r:.40}"
        return _difference(
            np.array(list(expected.values())), np.array(list(actual.values())), override
        )
    expected, actual = np.asarray(expected), np.asarray(actual)
    if expected.shape != actual.shape:
        return f"shape {actual.shape} instead of {expected.shape}"
    if expected.dtype != actual.dtype:
        return f"dtype {actual.dtype} instead of {expected.dtype}"
    tolerance = _tolerance(expected.dtype)
    if expected.dtype.type.__module__ == "ml_dtypes":  # compared as float32 or int64 values
        wide = np.float32 if tolerance else np.int64
        expected, actual = expected.astype(wide), actual.astype(wide)
    if tolerance is None:
        if np.array_equal(expected, actual):
            return None
        return f"{int(np.sum(expected != actual))} of {expected.size} values differ"
    rtol, atol = (
        tolerance
        if override is None
        else (o if o is not None else t for o, t in zip(override, tolerance))
    )
    if np.allclose(actual, expected, rtol=rtol, atol=atol, equal_nan=True):
        return None
    nan = np.isnan(actual) != np.isnan(expected)
    if nan.any():
        return f"{int(nan.sum())} of {expected.size} values NaN on one side only"
    diff = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
    return f"max abs difference {np.nanmax(diff):.3g} (rtol {rtol:g}, atol {atol:g})"


def _tolerance(dtype: np.dtype) -> tuple[float, float] | None:
    """(rtol, atol) for a float dtype, None for exact comparison."""
    if dtype in TOLERANCES:
        return TOLERANCES[dtype]
    if dtype.type.__module__ != "ml_dtypes":
        return None
    try:
        eps = float(ml_dtypes.finfo(dtype).eps)
    except ValueError:  # an integer type (int4, uint2 ...)
        return None
    return eps, eps
