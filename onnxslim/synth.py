"""Check inputs synthesized from the model: shapes from its inputs, values bounded by their uses.

Random values break valid models: an index into a 2-row embedding table must be 0 or 1, the axes of
a ReduceSum must exist, a reflect Pad needs a longer input than 32. This module reads the graph:

- every dynamic dim gets one value per dim name (shared names stay equal): 1 for a batch-like dim
  (only ever the first dim of inputs of rank 2 or more), `dim` (32) otherwise;
- a length input (`_length_inputs`: `waveforms_lens[batch]` beside `waveforms[batch, N]`) holds
  the full length, N: a length of 0 or 1 leaves an audio front end's output all zeros;
- an integer input's values follow how the graph uses it, through Cast, Reshape, Unsqueeze,
  Concat, Add/Sub of a constant, a where() written as masked arithmetic and the like: indices
  of Gather, GatherElements, GatherND, Scatter*, OneHot stay inside the indexed dim; Slice
  starts/ends/axes/steps, Reduce* and Unsqueeze axes, Split sizes, Reshape shapes,
  Expand/Tile/ConstantOfShape/TopK/Range sizes, Pad pads and integer divisors get values that are
  valid whatever the data; other integers are 0 or 1. Floats are N(0, 1), except where a use
  bounds them (Resize scales, Dropout ratio, ...);
- every ONNX element type is produced: numpy dtypes, strings (object arrays) and the ml_dtypes
  types ONNX uses for bfloat16, float8, int4 ... (`ort_feeds` hands those to ORT as OrtValues);
  sequences are lists of 2 tensors, optionals hold a value.

When the original model still fails, `candidates` yields a bounded number of alternatives (the
dim that fits a Reshape ORT names, other dims for the inputs upstream of the failing node, other
integer values) and `first_runnable` is the retry loop; it also retries inputs on which every
float output of the model is all zeros (or NaN), which check and calibrate nothing, and those on
which some output holds NaN or inf (a padding mask hiding every key of a query), which compare
less. `other_dims` makes the same at other sizes of the free dynamic dims, for a check that a
rewrite kept them dynamic. `shipped_inputs` reads the test data a model folder ships (ONNX model
zoo layout).
"""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import onnx
from onnx import numpy_helper

from onnxslim.errors import OnnxSlimError, first_line
from onnxslim.model.shapes import infer_shapes_apart
from onnxslim.model.stats import type_text

DEFAULT_DIM = 32
#: The dynamic height and width of an image input where speed counts (`synthesize_samples`: INT8
#: calibration, bench): at DEFAULT_DIM every conv is too small for int8 to pay.
IMAGE_DIM = 224
#: Channels that make a rank-4 float input an image (NCHW, or NHWC).
IMAGE_CHANNELS = (1, 3, 4)
#: Elements of a synthesized sequence input.
SEQUENCE_LENGTH = 2
#: Dims tried, after those an error message names, for the dynamic dims upstream of a failure.
RETRY_DIMS = (1, 64, 256, 1024, 16)
#: The sizes an ORT error names that a retry tries first (but those the inputs have), this many at
#: most: an LSTM's "Input W must have shape {1,20,32}. Actual:{1,20,266}" names the size its input
#: needs after the one it has (madmom).
MENTIONED = 2
#: Elementwise ops whose inputs broadcast together: a constant beside an input fixes its dims.
BROADCASTING = frozenset(
    {"Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Mod", "Where"}
    | {"Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual", "And", "Or", "Xor"}
)
#: Where a picture's size counts, retries try its height and width from the picture size down to
#: this first, then larger, then smaller: calibrating or timing a conv net on a 2x2 picture tells
#: little; the check tries sizes below this last.
SMALLEST_PICTURE = 16
#: `other_dims` doubles a dynamic dim up to this value and halves a larger one.
LARGEST_DOUBLED = 512
#: Alternatives `first_runnable` tries at most after the first inputs.
RETRY_LIMIT = 16
#: A candidate with an input larger than this (elements) is skipped.
MAX_ELEMENTS = 1 << 24
#: Where inputs ran but the outputs were silent or held NaN or inf, `first_runnable` spends at
#: most this on alternatives, and tries none it expects (by elements, from that run's time) to take
#: longer: a zero-initialized classifier is silent at any batch (torchvision's ViT-B at random
#: init: batches 64 and 16 took 40 s).
WEAK_RETRY_SECONDS = 5.0
WORDS = np.array(["onnx", "slim", "a", "b"], dtype=object)
#: The name of an integer input that holds lengths (`_length_inputs`); of one that holds widths.
LENGTH_NAME = re.compile("len", re.IGNORECASE)
WIDTH_NAME = re.compile("width", re.IGNORECASE)
#: A KV cache input (past keys and values) and an attention mask, by name.
CACHE_NAME = re.compile("past|cache|key_values", re.IGNORECASE)
MASK_NAME = re.compile("mask", re.IGNORECASE)
#: The name of an integer input that holds where each bag of another input starts (`_offsets`).
OFFSETS_NAME = re.compile("offset", re.IGNORECASE)
#: ORT's error for a Reshape whose sizes do not fit its input: the input's dims, then those asked.
RESHAPE_ERROR = re.compile(r"Input shape:\{([\d,]*)\}, requested shape:\{([-\d,]*)\}")

Feeds = dict[str, Any]


class NotFeedable(OnnxSlimError):
    """An input of a type onnxslim cannot give ONNX Runtime (a map, a sparse or complex tensor)."""


@dataclass(frozen=True)
class Synthesized:
    """Feeds for one run, what each input holds (`int64[1,32] in [0, 1]`), and the dynamic dims."""

    feeds: Feeds
    description: dict[str, str]
    dims: dict[str, int]
    #: The range of the integers no use bounds (`_Planner.make`'s `ints`).
    ints: tuple[int, int] = (0, 1)

    def __str__(self) -> str:
        return ", ".join(f"{name}: {text}" for name, text in self.description.items())


def synthesize(
    model: onnx.ModelProto | str | os.PathLike,
    shapes: Mapping[str, Sequence[int]] | None = None,
    *,
    seed: int = 0,
    dim: int = DEFAULT_DIM,
) -> Synthesized:
    """Inputs for `model` (a ModelProto or a path; weights are not read); `shapes` fixes some."""
    return _Planner(model, shapes, dim).make(seed=seed)


def synthesize_samples(
    model: onnx.ModelProto | str | os.PathLike,
    count: int,
    shapes: Mapping[str, Sequence[int]] | None = None,
    *,
    seed: int = 0,
    dim: int = DEFAULT_DIM,
    image_dim: int = IMAGE_DIM,
    run: Callable[[Feeds], Any] | None = None,
) -> list[Feeds]:
    """`count` samples, `synthesize(model, shapes, seed=seed + i).feeds` for each i (but with
    `image_dim` for an image's dynamic height and width), with the model read and planned once;
    given `run` (the original model on ORT), at the dims and integer range of the synthesized
    inputs `first_runnable` finds, each one `run` accepts (so each runs once more): a seed whose
    draw it rejects is passed over for the next (a random attention mask hiding more keys than
    GroupQueryAttention takes), up to `count` more seeds; OnnxSlimError where it rejects more."""
    planner = _Planner(model, shapes, dim, image_dim)
    if run is None:
        found = planner.make(seed=seed)
        return [planner.make(found.dims, found.ints, seed + i).feeds for i in range(count)]
    try:
        found = _first_runnable(planner, run, seed, RETRY_LIMIT)[0]
    except OnnxSlimError as err:
        raise OnnxSlimError(
            f"{err}; that was on the inputs onnxslim synthesized: give real samples, or the dims "
            "the model takes (--shape NAME:DIMS)"
        ) from err
    samples, rejected = [], []
    for draw in range(seed, seed + 2 * count):
        feeds = planner.make(found.dims, found.ints, draw).feeds
        try:
            run(feeds)
        except Exception as err:  # noqa: BLE001 - whatever `run` raises: another draw
            rejected.append(first_line(err))
            continue
        samples.append(feeds)
        if len(samples) == count:
            return samples
    raise OnnxSlimError(
        f"{len(rejected)} of the {2 * count} samples onnxslim synthesized fail on the model "
        f"({rejected[0]}): give real samples, or the dims the model takes (--shape NAME:DIMS)"
    )


def candidates(
    model: onnx.ModelProto | str | os.PathLike,
    shapes: Mapping[str, Sequence[int]] | None = None,
    *,
    error: str | None = None,
    seed: int = 0,
    dim: int = DEFAULT_DIM,
    limit: int = RETRY_LIMIT,
) -> Iterator[Synthesized]:
    """Up to `limit` alternatives to `synthesize`'s inputs, the likeliest first.

    With ORT's `error` for the first try, the dims that fit the Reshape it names come first
    (`_Planner.reshaped`); then the dims that change are those of the inputs upstream of the node
    it names, and the numbers it mentions are tried first, then `RETRY_DIMS`, each also
    with the other dynamic dims at 1 (one may be the failing input's batch, unnamed). Then the
    integer inputs that no use bounds are tried all 0, all 1, all one of the numbers the error
    mentions, and in [0, 9].
    """
    yield from _Planner(model, shapes, dim).alternatives(error, seed, limit)


def first_runnable(
    model: onnx.ModelProto | str | os.PathLike,
    run: Callable[[Feeds], Any],
    shapes: Mapping[str, Sequence[int]] | None = None,
    *,
    seed: int = 0,
    limit: int = RETRY_LIMIT,
) -> tuple[Synthesized, Any]:
    """The synthesized inputs `run` accepts that check most (`_first_runnable`), and what it
    returned; else its first error."""
    return _first_runnable(_Planner(model, shapes, DEFAULT_DIM), run, seed, limit)


def other_dims(
    model: onnx.ModelProto | str | os.PathLike,
    made: Synthesized,
    run: Callable[[Feeds], Any],
    shapes: Mapping[str, Sequence[int]] | None = None,
    *,
    seed: int = 1,
) -> tuple[Synthesized, Any] | None:
    """Inputs like `made` (`first_runnable`'s) at other values of the dynamic dims nothing fixes
    (1 -> 2, a batch; n -> 2n, or n / 2 past LARGEST_DOUBLED), and what `run` returned on them:
    every such dim changed, else those at 1 alone, else the others alone; None when no dim is free
    or `run` rejects each. A rewrite that takes a dynamic dim for the value it once had differs
    there."""
    planner = _Planner(model, shapes, DEFAULT_DIM)
    kept = {key: value for key, value in made.dims.items() if key not in planner.cache_spans}
    free = _free(planner, kept)
    changed = {
        key: 2 if value == 1 else 2 * value if value <= LARGEST_DOUBLED else value // 2
        for key, value in free.items()
    }
    batches = {key: value for key, value in changed.items() if free[key] == 1}
    others = {key: value for key, value in changed.items() if free[key] != 1}
    for dims in (changed, batches, others) if batches and others else (changed,):
        if not dims or planner.too_large({**kept, **dims}):
            continue
        attempt = planner.make({**kept, **dims}, made.ints, seed)
        try:
            return attempt, run(attempt.feeds)
        except Exception:  # noqa: BLE001 - whatever `run` raises means "not at these dims"
            continue
    return None


def free_dims(
    model: onnx.ModelProto | str | os.PathLike,
    made: Synthesized,
    shapes: Mapping[str, Sequence[int]] | None = None,
) -> bool:
    """Whether `made` (`first_runnable`'s) has dynamic dims nothing fixes: `other_dims` tries
    other values of them."""
    planner = _Planner(model, shapes, DEFAULT_DIM)
    return bool(_free(planner, made.dims))


def _free(planner: _Planner, dims: Mapping) -> dict:
    """The dims of `dims` (a Synthesized's) the planner's shapes leave free, cache spans aside."""
    return {
        key: value
        for key, value in dims.items()
        if key not in planner.cache_spans and key not in planner.fixed
    }


def _first_runnable(
    planner: _Planner, run: Callable[[Feeds], Any], seed: int, limit: int
) -> tuple[Synthesized, Any]:
    """The first inputs `run` accepts and what it returned, passing over those on which every
    float output is all zeros, or some holds NaN or inf (a padding mask that hides every key of
    a query), while an alternative gives better (else the best accepted); when `run` accepts
    none, its first error. An alternative that fits a Reshape (`_Planner.reshaped`) and then fails
    at another one is followed: its dims stay and the next Reshape is fitted (a decoder traced at
    7 tokens with 5 of memory has a Reshape to constant sizes for each)."""
    first = planner.make(seed=seed)
    accepted, error, cost, weakness = None, None, 0.0, 0
    try:
        started = time.perf_counter()
        accepted = first, run(first.feeds)
        cost = (time.perf_counter() - started) / _elements(first)  # seconds per input element
        weakness = _weakness(accepted[1])
    except Exception as err:  # noqa: BLE001 - whatever `run` raises means "try other inputs"
        error = err
    if accepted and not weakness:
        return accepted
    followed = None if accepted else _error_text(error)
    attempts = planner.alternatives(followed, seed, limit)
    spent = 0.0  # on alternatives since inputs were accepted
    for _ in range(limit):
        attempt = next(attempts, None)
        if attempt is None:
            break
        if accepted and spent + cost * _elements(attempt) > WEAK_RETRY_SECONDS:
            continue
        if accepted and weakness == 1 and attempt.dims != accepted[0].dims:
            continue  # NaN from the data: inputs finite by luck at a few elements check less
        started, failure = time.perf_counter(), None
        try:
            result = run(attempt.feeds)
        except Exception as err:  # noqa: BLE001 - the next candidate may run
            failure = _error_text(err)
        took = time.perf_counter() - started
        spent += took if accepted else 0.0
        changed = planner.changed(attempt.dims)
        if failure is not None:
            if (
                not accepted
                and _failing_node(failure) != _failing_node(followed)
                and planner.reshaped(failure, attempt.dims, changed)
            ):
                followed = failure
                attempts = planner.alternatives(followed, seed, limit, changed)
            continue
        weak = _weakness(result)
        if not weak:
            return attempt, result
        if not accepted and changed:  # the other alternatives at the dims that ran
            attempts = planner.alternatives(None, seed, limit, changed)
        if not accepted or weak < weakness:
            accepted, weakness, cost = (attempt, result), weak, took / _elements(attempt)
    if accepted:
        return accepted
    raise error


def _error_text(err: BaseException) -> str:
    """The whole text of what ORT raised: the innermost cause (a `Session` error quotes its first
    line, cut in the middle)."""
    while err.__cause__ is not None:
        err = err.__cause__
    return str(err)


def _failing_node(error: str | None) -> tuple[str, str] | None:
    """The op type and name of the node ORT's `error` names; the last named is the innermost (an
    If's error names the failing node within it)."""
    matches = re.findall(r"running (\w+) node\. Name:'([^']*)'", error or "")
    return matches[-1] if matches else None


def _elements(made: Synthesized) -> int:
    """The elements of `made`'s inputs (at least 1)."""
    return max(1, sum(int(np.size(value)) for value in _arrays(made.feeds)))


def _weakness(outputs: Any) -> int:
    """How little a run's list of `outputs` checks: 0, 1 where a float output holds NaN or inf, 2
    where float outputs hold no finite value other than 0 (an audio front end gives NaN for a
    clip of one frame)."""
    arrays = [
        value
        for value in (outputs if isinstance(outputs, (list, tuple)) else [outputs])
        if isinstance(value, np.ndarray) and value.dtype.kind == "f"
    ]
    if arrays and not any(np.any(np.isfinite(a) & (a != 0)) for a in arrays):
        return 2
    return int(not all(np.isfinite(a).all() for a in arrays))


def shipped_inputs(model_path: str | os.PathLike) -> list[Feeds] | None:
    """The inputs of each `test_data_set_*` folder beside the model (`input_<i>.pb`), or None.

    As in ONNX's backend tests, `input_<i>.pb` belongs to graph input i, unless the proto names
    another input; a sequence input is read as a SequenceProto, an optional one as an OptionalProto.
    """
    path = Path(model_path)
    folders = sorted(p for p in path.parent.glob("test_data_set_*") if p.is_dir())
    if not folders:
        return None
    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as err:
        raise OnnxSlimError(f"{path}: cannot read ONNX model: {err}") from err
    types = {value.name: value.type for value in model.graph.input}
    names = list(types)
    data_sets = []
    for folder in folders:
        feeds: Feeds = {}
        files = sorted(folder.glob("input_*.pb"), key=lambda p: int(re.sub(r"\D", "", p.stem) or 0))
        for index, file in enumerate(files):
            data = file.read_bytes()
            name = names[index] if index < len(names) else None
            try:
                value, proto_name = _read_value(data, types.get(name))
                if proto_name in types and proto_name != name:
                    name = proto_name
                    value, _ = _read_value(data, types[name])
            except Exception as err:
                raise OnnxSlimError(f"{file}: cannot read test data: {err}") from err
            if name is None:
                raise OnnxSlimError(f"{file}: the model has only {len(names)} inputs")
            feeds[name] = value
        data_sets.append(feeds)
    return data_sets


def ort_feeds(feeds: Mapping[str, Any]) -> Feeds:
    """`feeds` as `InferenceSession.run` takes them: arrays of an ml_dtypes type (bfloat16, float8,
    int4 ...) become OrtValues holding ONNX's packed bytes; sequences stay lists, optionals None."""
    from onnxslim import runtime

    try:
        return runtime.ort_feeds(feeds)
    except ValueError as err:
        raise NotFeedable(str(err)) from err


# --- reading the model ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Use:
    """What one use of an input allows: values in [lo, hi] ("range"; "hint": values the model
    tells apart, used where nothing else bounds them), or a pattern valid whatever the data:
    "axes" (0, 1, ...), "reshape" (1, ..., 1, -1), "max" (the largest int32), "split" (sizes
    adding up to `total`); "length": every item's full length, `total`; "offsets": where each bag of
    `total` items starts (0 first, then non-decreasing, at most `total`). `size`: a range that only
    keeps a size the value gives small (`_SIZES`), which a length input's full length overrides."""

    kind: str = "range"
    lo: float = 0
    hi: float = 0
    total: int = 0
    size: bool = False


#: op -> input slots whose values reach every output unchanged (only their positions may change).
_PASS_THROUGH = {
    "Identity": (0,),
    "Cast": (0,),
    "CastLike": (0,),
    "Unsqueeze": (0,),
    "Squeeze": (0,),
    "Reshape": (0,),
    "Flatten": (0,),
    "Transpose": (0,),
    "Expand": (0,),
    "Tile": (0,),
    "Slice": (0,),
    "Split": (0,),
    "Gather": (0,),
    "GatherElements": (0,),
    "GatherND": (0,),
    "Where": (1, 2),
    "ReduceMax": (0,),
    "ReduceMin": (0,),
    "Concat": None,
    "Min": None,
    "Max": None,  # None: every slot
}
#: (op, slot) -> the value range every model accepts there.
_RANGES = {
    ("Expand", 1): (1, 1),
    ("Tile", 1): (1, 1),
    ("ConstantOfShape", 0): (1, 1),
    ("TopK", 1): (1, 1),
    ("Range", 0): (0, 0),
    ("Range", 1): (1, 1),
    ("Range", 2): (1, 1),
    ("Resize", 2): (1, 1),
    ("Resize", 3): (1, 1),
    ("Upsample", 1): (1, 1),
    ("Pad", 1): (0, 0),
    ("Loop", 0): (3, 3),  # more than one iteration: a state the body changes is exercised
    ("OneHot", 1): (1, 1),
    ("NonMaxSuppression", 2): (1, 1),
    ("NonMaxSuppression", 3): (0, 1),
    ("Dropout", 1): (0, 0.5),
    ("Dropout", 2): (0, 0),
    ("CumSum", 1): (0, 0),
    ("CumProd", 1): (0, 0),
    ("Trilu", 1): (0, 0),
    ("Slice", 1): (0, 0),
    ("Slice", 4): (1, 1),
    ("SequenceAt", 1): (0, 0),
    ("SequenceErase", 1): (0, 0),
    ("SequenceInsert", 2): (0, 0),
    ("CenterCropPad", 1): (1, 1),
}
#: (op, slot) of `_RANGES` where the value is a size the op makes, kept small, not a bound: a
#: padding mask's arange(max(lengths)) (torchaudio's Conformer).
_SIZES = frozenset({("Expand", 1), ("Tile", 1), ("ConstantOfShape", 0), ("Range", 1)})
#: (op, slot) of indices into the dim `axis` (attribute, default 0) of the op's first input.
_INDICES = {("Gather", 1), ("GatherElements", 1), ("ScatterElements", 1), ("Scatter", 1)}
#: (op, slot) of ids into a table another input holds: (op, slot) -> the table's slot (ORT's
#: fused BERT embedding: input ids, segment ids, position ids; quantized: its int8 tables)
_TABLE_ROWS = {
    ("EmbedLayerNormalization", 0): 2,
    ("EmbedLayerNormalization", 1): 4,
    ("EmbedLayerNormalization", 8): 3,
    ("QEmbedLayerNormalization", 0): 2,
    ("QEmbedLayerNormalization", 1): 4,
}
#: (op, slot) of a pattern that is valid only when the input reaches it unchanged and whole.
_PATTERNS = {
    ("Slice", 2): "max",
    ("Slice", 3): "axes",
    ("Unsqueeze", 1): "axes",
    ("Reshape", 1): "reshape",
    ("Split", 1): "split",
    ("SplitToSequence", 1): "split",
}
_WALK_LIMIT = 200
#: Ops whose output is a condition (bool), cast to 0/1 masks by tf2onnx's where (`_Planner._mask`).
_CONDITIONS = frozenset(
    {"Less", "LessOrEqual", "Greater", "GreaterOrEqual", "Equal", "Not", "And", "Or", "Xor"}
)


@dataclass(frozen=True)
class _Input:
    """A graph input: "tensor", "sequence" or "optional" of an element type with dims (an int,
    or the key of a dynamic dim: its name, or `input[axis]` when unnamed)."""

    name: str
    kind: str
    elem_type: int
    dims: tuple[int | str, ...]
    #: False where the model declares no shape: one dynamic dim unless the caller gives others
    ranked: bool = True


class _Planner:
    """What a model tells about its inputs; `make` turns it into feeds for given dim values."""

    def __init__(
        self,
        model,
        shapes: Mapping[str, Sequence[int]] | None,
        dim: int,
        image_dim: int | None = None,
    ) -> None:
        if isinstance(model, (str, os.PathLike)):
            try:
                model = onnx.load(os.fspath(model), load_external_data=False)
            except Exception as err:
                raise OnnxSlimError(f"{model}: cannot read ONNX model: {err}") from err
        self.skeleton = _skeleton(model)
        self._inferred: dict[tuple, dict] = {}  # `_inferred_shapes` by the input shapes asked
        weights = {init.name for init in model.graph.initializer}
        self.inputs = [
            _ranked_as_given(_input(value), shapes or {})
            for value in model.graph.input
            if value.name not in weights
        ]
        self.pictures = _picture_keys(self.inputs)
        #: A picture's size where it counts (INT8 calibration, timing; retries try near it first),
        #: else None (the check: any size that runs).
        self.picture_size = image_dim if image_dim and image_dim > dim else None
        self.defaults = self._default_dims(dim, shapes or {}, image_dim or dim)
        self.lengths = _length_inputs(self.inputs)
        self.offsets = _offsets(self.inputs)
        self.cache_spans = _cache_spans(self.inputs)
        #: Dim keys `shapes` sets (or, below, a broadcast with a constant), which retries leave
        #: alone.
        self.fixed = {
            key
            for item in self.inputs
            if item.name in (shapes or {})
            for key in item.dims
            if isinstance(key, str)
        }
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        self.producer: dict[str, onnx.NodeProto] = {}
        self.constants: dict[str, np.ndarray] = {}
        for init in model.graph.initializer:
            if _small(init):
                self.constants[init.name] = numpy_helper.to_array(init)
        for node in _nodes(model.graph):
            for name in node.input:
                if name:
                    self.consumers.setdefault(name, []).append(node)
            for name in node.output:
                self.producer[name] = node
            value = node.attribute[0] if node.op_type == "Constant" and node.attribute else None
            if value is not None and value.name == "value" and _small(value.t):
                self.constants[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
        fitted = self._constant_dims(model.graph, shapes or {})
        self.defaults.update(fitted)
        self.fixed |= set(fitted)

    def _default_dims(
        self, dim: int, shapes: Mapping[str, Sequence[int]], image_dim: int
    ) -> dict[str, int]:
        """A value per dynamic dim key: from `shapes`, else 1 if batch-like (named batch, as in an
        RNN's [seq, batch, features] and [layers, batch, hidden], or leading an input and no
        other's later dims), else
        `image_dim` for an image's height and width (`_image_dims`), else `dim`."""
        known = {item.name: item for item in self.inputs}
        values: dict[str, int] = {}
        for name, shape in shapes.items():
            if name not in known:
                raise OnnxSlimError(
                    f"shape given for unknown input {name!r} (model inputs: {', '.join(known)})"
                )
            declared = known[name].dims
            if len(shape) != len(declared) or any(
                isinstance(d, int) and d != s for d, s in zip(declared, shape)
            ):
                raise OnnxSlimError(
                    f"shape {tuple(shape)} of input {name!r} does not fit its declared dims "
                    f"{_dims_text(declared)}"
                )
            values.update({d: int(s) for d, s in zip(declared, shape) if isinstance(d, str)})
        first = {
            d
            for item in self.inputs
            if len(item.dims) > 1
            for d in item.dims[:1]
            if isinstance(d, str)
        }
        later = {d for item in self.inputs for d in item.dims[1:] if isinstance(d, str)}
        for item in self.inputs:
            for key in item.dims:
                if isinstance(key, str) and key not in values:
                    batch = "batch" in key.lower() or (key in first and key not in later)
                    values[key] = 1 if batch else image_dim if key in self.pictures else dim
        return values

    def _constant_dims(
        self, graph: onnx.GraphProto, shapes: Mapping[str, Sequence[int]]
    ) -> dict[str, int]:
        """The dims an input must have to fit a constant a node reads beside it, for the inputs
        `shapes` leaves free: to broadcast with it in an elementwise op (audio features scaled by
        an [80, 3] table: the input is [T, 80, 3]), or to be multiplied by it (`_reduced_dim`: a
        feature count no name tells, [batch, features] into a [features, N] weight)."""
        dims = {init.name: tuple(init.dims) for init in graph.initializer}
        dims.update(
            {
                n.output[0]: tuple(a.t.dims)
                for n in graph.node
                if n.op_type == "Constant"
                for a in n.attribute[:1]
                if a.name == "value"
            }
        )
        found: dict[str, int] = {}
        for item in self.inputs:
            if item.name in shapes:
                continue
            for node in self.consumers.get(item.name, []):
                others = [dims[name] for name in node.input if name != item.name and name in dims]
                for shape in others if node.op_type in BROADCASTING else []:
                    for key, size in zip(reversed(item.dims), reversed(shape)):
                        if isinstance(key, str) and size > 1:
                            found.setdefault(key, size)
                reduced = _reduced_dim(node, item, dims)
                if reduced is not None:
                    found.setdefault(*reduced)
        return found

    def make(
        self, dims: Mapping[str, int] | None = None, ints: tuple[int, int] = (0, 1), seed: int = 0
    ) -> Synthesized:
        """Feeds with the default dims updated by `dims`; `ints`: the range of free integers."""
        values, shapes = self._shapes(dims)
        known = self._inferred_shapes(shapes)
        rng = np.random.default_rng(seed)
        feeds, description = {}, {}
        for item in self.inputs:
            shape = shapes[item.name]
            use = self._combined_use(item, known)
            # a length's size range (a Range to max(lengths) for a padding mask: at most 1) gives
            # way: a mask of 1 beside 32 frames fails, and the check then ran at 1 frame
            if item.name in self.lengths and (use is None or use.kind == "hint" or use.size):
                measured = self.lengths[item.name]
                total = values[measured] if isinstance(measured, str) else measured
                use = _Use("length", total=total)
            if item.name in self.offsets:  # (what its uses allow holds for the first bag only)
                bagged = self.offsets[item.name]
                use = _Use("offsets", total=values[bagged] if isinstance(bagged, str) else bagged)
            if item.kind == "sequence":
                elements = [_values(item, shape, use, ints, rng) for _ in range(SEQUENCE_LENGTH)]
                feeds[item.name] = [array for array, _ in elements]
                description[item.name] = f"seq({elements[0][1]}) x{SEQUENCE_LENGTH}"
            else:
                feeds[item.name], description[item.name] = _values(item, shape, use, ints, rng)
        used = {
            key: values[key] for item in self.inputs for key in item.dims if isinstance(key, str)
        }
        return Synthesized(feeds, description, used, ints)

    def _shapes(
        self, dims: Mapping[str, int] | None
    ) -> tuple[dict[str, int], dict[str, tuple[int, ...]]]:
        """Every dim key's value (the defaults updated by `dims`) and each input's shape."""
        values = {**self.defaults, **(dims or {})}
        for span, (past, new) in self.cache_spans.items():
            if span not in self.fixed and span not in (dims or {}):
                values[span] = values[past] + values[new]
        shapes = {
            item.name: tuple(d if isinstance(d, int) else values[d] for d in item.dims)
            for item in self.inputs
        }
        return values, shapes

    def too_large(self, dims: Mapping[str, int]) -> bool:
        """Whether an input at `dims` would hold more than MAX_ELEMENTS elements."""
        return any(math.prod(shape) > MAX_ELEMENTS for shape in self._shapes(dims)[1].values())

    def alternatives(
        self, error: str | None, seed: int, limit: int, kept: Mapping[str, int] | None = None
    ) -> Iterator[Synthesized]:
        """See `candidates`; the dims in `kept` stay as they are (an earlier attempt's)."""
        kept = dict(kept or {})
        upstream = [key for key in self._upstream_keys(error) if key not in kept]
        focus = self._focus(upstream)
        # Not ORT's status code nor its source lines.
        text = re.sub(r"\[ONNXRuntimeError\] : \d+|\S+\.(cc|cpp|h):\d+", "", error or "")
        mentioned = [int(n) for n in re.findall(r"(?<![\w.])\d+(?![\w.])", text)]
        named = [n for n in dict.fromkeys(mentioned) if 2 <= n <= 4096]
        mentioned = named[:2]  # (also tried as integer values, below)
        current = {self.defaults[key] for key in focus}
        sizes = [n for n in named if n not in current][:MENTIONED]
        sizes += [n for n in RETRY_DIMS if n not in current and n not in sizes]
        near = self.picture_size
        if near and self.pictures & set(focus):
            # not a few pixels where larger runs, nor 1024 before what is nearer the picture size
            sizes.sort(key=lambda n: (n < SMALLEST_PICTURE, n > near, abs(n - near)))
        elif self.pictures & set(focus):
            # the check: not a few pixels where larger runs (a table detector whose error named
            # 2 ran its skip Adds at 2x2, broadcasting their size-1 dims)
            sizes.sort(key=lambda n: n < SMALLEST_PICTURE)
        # Other dims at 1 too: no name ties them to the failing input's, yet one may be its batch
        # (an RNN state [layers, batch, hidden] whose dims are unnamed).
        others = {
            key: 1
            for key, value in self.defaults.items()
            if value != 1 and key not in focus and key not in self.fixed
        }
        trials = [(fit, (0, 1)) for fit in self.reshaped(error, {**self.defaults, **kept}, kept)]
        pictured = self.pictures & set(focus)
        for size in dict.fromkeys(sizes if focus else []):
            at_size = {key: size for key in focus}
            trials.append((at_size, (0, 1)))
            if others:
                trials.append(({**others, **at_size}, (0, 1)))
            if pictured and pictured < set(focus):
                # a video's height and width alone: a pool that needs 7x7 of its frames at 256
                # pixels, where its frames at 256 too are more than MAX_ELEMENTS (S3D)
                trials.append((dict.fromkeys(pictured, size), (0, 1)))
        trials += [({}, ints) for ints in [(0, 0), (1, 1), *[(n, n) for n in mentioned], (0, 9)]]
        # last, the batch-like dims too: a [frames, bins] input whose leading frames a conv needs
        # several of (madmom's TCN)
        batch_like = [key for key in upstream if key not in focus]
        for size in dict.fromkeys(sizes if batch_like else []):
            trials.append(({key: size for key in [*focus, *batch_like]}, (0, 1)))
        seen = {str(self.make(kept, seed=seed))}
        for dims, ints in trials:
            if len(seen) > limit:
                return
            if self.too_large({**kept, **dims}):
                continue
            attempt = self.make({**kept, **dims}, ints, seed)
            if str(attempt) not in seen:
                seen.add(str(attempt))
                yield attempt

    def reshaped(
        self, error: str | None, dims: Mapping[str, int], kept: Mapping[str, int] | None = None
    ) -> list[dict[str, int]]:
        """Dims that make the Reshape ORT's `error` names fit (`RESHAPE_ERROR`), the inputs having
        been at `dims`: for each dynamic dim upstream (but those `kept`) whose value is one of the
        input's dims, that value scaled to the element count asked; where a size is asked as -1,
        the size asked where the dim sits, or where none is, the least that makes the count a
        multiple of the sizes asked. The TorchScript exporter writes the length a model was
        traced at as a constant: a Reshape of 32 x 1 x 64 elements to [7, 4, 16] (or [7, -1, 16])
        fits with the dim at 32 set to 7; madmom's key CNN flattens [1, 24, bins] to [-1, 2520]:
        105 bins."""
        match = RESHAPE_ERROR.search(error or "")
        if not match:
            return []
        have = [int(n) for n in match[1].split(",") if n]
        asked = [int(n) for n in match[2].split(",") if n]
        count, total = math.prod(have), math.prod(asked)
        upstream = [key for key in self._upstream_keys(error) if key not in (kept or {})]
        fits = []
        for key in dict.fromkeys(self._focus(upstream) + upstream):
            value = dims[key]
            if not count or value not in have:
                continue
            if -1 in asked:  # each place the dim may sit, else the least that divides evenly
                found = [
                    asked[i] for i, size in enumerate(have) if size == value and i < len(asked)
                ]
                known = math.prod(n for n in asked if n > 0)
                found = [n for n in found if n >= 1] or [known // math.gcd(count // value, known)]
            else:
                found = [total * value // count] if total * value % count == 0 else []
            fits += [{key: fit} for fit in dict.fromkeys(found) if fit >= 1 and fit != value]
        return fits

    def changed(self, dims: Mapping[str, int]) -> dict[str, int]:
        """The dims in `dims` that differ from the defaults."""
        return {key: value for key, value in dims.items() if self.defaults.get(key) != value}

    def _focus(self, keys: list[str]) -> list[str]:
        """`keys` (`_upstream_keys`) without batch-like dims (at 1) when others remain."""
        wide = [key for key in keys if self.defaults[key] != 1]
        return wide or keys

    def _upstream_keys(self, error: str | None) -> list[str]:
        """The dynamic dim keys of the inputs upstream of the node ORT's error names (else of all
        inputs), without those `shapes` (or a broadcast) fixed."""
        names = {item.name for item in self.inputs}
        upstream = names
        named = _failing_node(error)
        if named:
            op, node_name = named
            failing = [
                node
                for node in self.producer.values()
                if (node.name == node_name if node_name else node.op_type == op)
            ]
            reached = self._ancestors(failing) & names
            upstream = reached or names
        keys = [
            key
            for item in self.inputs
            if item.name in upstream
            for key in item.dims
            if isinstance(key, str)
        ]
        return [key for key in dict.fromkeys(keys) if key not in self.fixed]

    def _ancestors(self, nodes: list[onnx.NodeProto]) -> set[str]:
        seen: set[str] = set()
        stack = [name for node in nodes for name in _reads(node)]
        while stack:
            name = stack.pop()
            if name in seen:
                continue
            seen.add(name)
            if name in self.producer:
                stack.extend(_reads(self.producer[name]))
        return seen

    def _inferred_shapes(
        self, shapes: dict[str, tuple[int, ...]]
    ) -> dict[str, tuple[int | None, ...]]:
        """Static shapes of the model's values with the inputs at `shapes` (by shape inference)."""
        key = tuple(sorted(shapes.items()))
        if key not in self._inferred:
            self._inferred[key] = self._infer(shapes)
        return self._inferred[key]

    def _infer(self, shapes: dict[str, tuple[int, ...]]) -> dict[str, tuple[int | None, ...]]:
        for value in self.skeleton.graph.input:
            if value.name in shapes and value.type.HasField("tensor_type"):
                value.type.tensor_type.shape.Clear()
                for size in shapes[value.name]:
                    value.type.tensor_type.shape.dim.add().dim_value = size
        try:
            graph = infer_shapes_apart(self.skeleton, strict_mode=False, data_prop=True).graph
        except Exception:  # noqa: BLE001 - an aid: without it, uses fall back to safe values
            graph = self.skeleton.graph
        known = {}
        for value in [*graph.input, *graph.value_info, *graph.output]:
            if value.type.HasField("tensor_type") and value.type.tensor_type.HasField("shape"):
                known[value.name] = tuple(
                    d.dim_value if d.HasField("dim_value") else None
                    for d in value.type.tensor_type.shape.dim
                )
        for init in graph.initializer:
            known[init.name] = tuple(init.dims)
        return known

    def _combined_use(self, item: _Input, known: dict) -> _Use | None:
        """One rule from all the uses of an input: a pattern first, else the ranges' overlap, else
        the first hint."""
        found = self._uses(item, known)
        uses = [use for use in found if use.kind != "hint"]
        for use in uses:
            if use.kind != "range":
                return use
        if not uses:
            hints = [use for use in found if use.kind == "hint"]
            return _Use("range", hints[0].lo, hints[0].hi) if hints else None
        lo, hi = max(u.lo for u in uses), min(u.hi for u in uses)
        size = all(u.size for u in uses)
        return _Use("range", lo, hi, size=size) if lo <= hi else uses[0]

    def _uses(self, item: _Input, known: dict) -> list[_Use]:
        """The uses reached from an input through value-preserving ops and Add/Sub of constants."""
        integer = _kind(item.elem_type) == "int"
        found = []
        queue = [
            (item.name, 0, True)
        ]  # value, offset added on the way, reached unchanged and whole
        seen = {item.name}
        while queue and len(seen) < _WALK_LIMIT:
            name, offset, whole = queue.pop(0)
            for node in self.consumers.get(name, ()):
                for slot in [i for i, n in enumerate(node.input) if n == name]:
                    use = self._use(node, slot, known, integer, whole)
                    if use is not None:
                        if use.kind not in ("range", "hint"):
                            found.append(use)
                        elif use.hi - offset >= max(use.lo - offset, 0):
                            found.append(
                                replace(use, lo=max(use.lo - offset, 0), hi=use.hi - offset)
                            )
                        continue
                    step = self._step(node, slot)
                    if step is None:
                        continue
                    keeps = whole and node.op_type in ("Identity", "Cast", "CastLike")
                    for out in node.output:
                        if out and out not in seen:
                            seen.add(out)
                            queue.append((out, offset + step, keeps))
        return found

    def _use(
        self, node: onnx.NodeProto, slot: int, known: dict, integer: bool, whole: bool
    ) -> _Use | None:
        """What `node` allows at input `slot`, if anything."""
        op, attrs = (
            node.op_type,
            {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute},
        )
        key = (op, slot)
        if key in _INDICES:
            size = _size(known.get(node.input[0]), attrs.get("axis", 0))
            return _Use("range", 0, size - 1 if size else 0)
        if key in _TABLE_ROWS and node.domain == "com.microsoft":
            table = node.input[_TABLE_ROWS[key]] if len(node.input) > _TABLE_ROWS[key] else ""
            size = _size(known.get(table), 0)
            return _Use("range", 0, size - 1) if size else None
        if op in ("GatherND", "ScatterND") and slot == 1:
            data = known.get(node.input[0]) or ()
            sizes = [d for d in data[attrs.get("batch_dims", 0) :] if d]
            return _Use("range", 0, min(sizes) - 1 if sizes else 0)
        if key == ("OneHot", 0):
            depth = self.constants.get(node.input[1]) if len(node.input) > 1 else None
            return _Use(
                "range", 0, int(depth.flat[0]) - 1 if depth is not None and depth.size == 1 else 0
            )
        if key == ("ReverseSequence", 1):
            size = _size(known.get(node.input[0]), attrs.get("time_axis", 0))
            return _Use("range", 1, size or 1)
        if key in _PATTERNS:
            if not whole:
                return _Use("range", 1, 1) if op == "Slice" else None
            if op in ("Split", "SplitToSequence"):
                total = _size(known.get(node.input[0]), attrs.get("axis", 0))
                return _Use("split", total=total) if total else None
            return _Use(_PATTERNS[key])
        if slot == 1 and op.startswith("Reduce"):
            return _Use("axes") if whole else _Use("range", 0, 0)
        if key in _RANGES:
            return _Use("range", *_RANGES[key], size=key in _SIZES)
        if integer and op in ("Div", "Mod") and slot == 1:
            return _Use("range", 1, 3)
        if integer and op == "Equal":  # codes: the values it is compared with
            other = self.constants.get(node.input[1 - slot])
            if other is not None and other.size and other.dtype.kind in "iu":
                lo, hi = int(other.min()), int(other.max())
                if lo == hi:  # one value (a mask == 0): it and another, both sides of the test
                    lo, hi = (lo - 1, hi) if lo > 0 else (lo, hi + 1)
                return _Use("hint", lo, hi)
        return None

    def _step(self, node: onnx.NodeProto, slot: int) -> int | None:
        """How `node` shifts the value at `slot` on its way to its outputs (0: not at all); None:
        the value does not reach them."""
        if node.op_type in _PASS_THROUGH:
            slots = _PASS_THROUGH[node.op_type]
            return 0 if slots is None or slot in slots else None
        other_name = node.input[1 - slot] if len(node.input) == 2 and slot < 2 else ""
        if node.op_type == "Mul" and self._mask(other_name):
            return 0  # one branch of a where() written as arithmetic: the value, or 0
        if node.op_type == "Add" and self._masked(other_name):
            return 0  # the other branch, 0 wherever this one holds the value
        if node.op_type in ("Add", "Sub") and len(node.input) == 2:
            if node.op_type == "Sub" and slot == 1:
                return None
            other = self.constants.get(node.input[1 - slot])
            if (
                other is not None
                and other.size
                and other.dtype.kind in "iu"
                and np.all(other == other.flat[0])
            ):
                return int(other.flat[0]) * (1 if node.op_type == "Add" else -1)
        return None

    def _mask(self, name: str) -> bool:
        """Whether `name` is a condition cast to numbers (0 or 1): tf2onnx writes `where(c, a, b)`
        on integers as `Cast(c) * a + Cast(Not(c)) * b` (Keras embeddings' negative ids)."""
        node = self.producer.get(name)
        source = self.producer.get(node.input[0]) if node is not None and node.input else None
        return (
            node is not None
            and node.op_type == "Cast"
            and source is not None
            and (source.op_type in _CONDITIONS)
        )

    def _masked(self, name: str) -> bool:
        """Whether `name` is a value times a `_mask` (one branch of such a where)."""
        node = self.producer.get(name)
        return (
            node is not None
            and node.op_type == "Mul"
            and any(self._mask(operand) for operand in node.input)
        )


def _skeleton(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model for shape inference: large weights reduced to their dims and type."""
    graph = onnx.GraphProto(
        name=model.graph.name,
        node=model.graph.node,
        input=model.graph.input,
        output=model.graph.output,
        value_info=model.graph.value_info,
        initializer=[
            init
            if _small(init)
            else onnx.TensorProto(name=init.name, dims=init.dims, data_type=init.data_type)
            for init in model.graph.initializer
        ],
    )
    return onnx.ModelProto(
        ir_version=model.ir_version,
        opset_import=model.opset_import,
        functions=model.functions,
        graph=graph,
    )


def _small(tensor: onnx.TensorProto) -> bool:
    """Whether a constant is read for planning: one-hot codes (magika: 257) and shapes, not
    weights."""
    return tensor.data_location != onnx.TensorProto.EXTERNAL and math.prod(tensor.dims) <= 1024


def _nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    """Every node, those of subgraphs included (they may read outer values by name)."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            for sub in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else attr.graphs:
                yield from _nodes(sub)


def _reads(node: onnx.NodeProto) -> list[str]:
    """The names `node` reads: its inputs and, for If/Loop/Scan, those its subgraphs read."""
    subgraphs = [
        sub
        for attr in node.attribute
        for sub in ([attr.g] if attr.type == onnx.AttributeProto.GRAPH else attr.graphs)
    ]
    inner = [n for sub in subgraphs for n in _nodes(sub)]
    return [name for n in [node, *inner] for name in n.input if name]


def _input(value: onnx.ValueInfoProto) -> _Input:
    kind, type_ = "tensor", value.type
    if type_.HasField("optional_type"):
        kind, type_ = "optional", type_.optional_type.elem_type
    if type_.HasField("sequence_type"):
        kind, type_ = "sequence", type_.sequence_type.elem_type
    if not type_.HasField("tensor_type") or _kind(type_.tensor_type.elem_type) is None:
        raise NotFeedable(
            f"input {value.name!r} has type {type_text(value.type)}, which onnxslim cannot feed"
        )
    tensor = type_.tensor_type
    if not tensor.HasField("shape"):
        return _Input(value.name, kind, tensor.elem_type, (f"{value.name}[0]",), ranked=False)
    dims = tuple(
        d.dim_value
        if d.HasField("dim_value") and d.dim_value >= 0
        else d.dim_param
        if d.dim_param and d.dim_param != "?"
        else f"{value.name}[{axis}]"
        for axis, d in enumerate(tensor.shape.dim)
    )
    return _Input(value.name, kind, tensor.elem_type, dims)


def _length_inputs(inputs: Sequence[_Input]) -> dict[str, str | int]:
    """Integer inputs that hold each batch item's length -> the key of the dim they measure (or
    its size, when the other input's dims are all static).
    Such an input has one dim, a name like a length (`waveforms_lens`, `seq_len`, `lengths`), and
    its dim is the first of another input: it measures that input's first dynamic dim after it
    (`waveforms[batch, N]`: N; `feats[batch, T, 80]`: T; a TTS model's `text[batch, T]`: T), or
    with none, of a sequence, its smaller dim after the batch (torchaudio's Emformer exported at
    `x[1, 21, 32]`: 21; never more than the length whichever the layout). A name like a width
    (`widths`) measures the last dynamic dim (a text line reader's `x[B, 1, 96, W]`: W; it was
    given 0 or 1, and the check compared outputs the original gives as zeros)."""
    found: dict[str, str | int] = {}
    for item in inputs:
        width = WIDTH_NAME.search(item.name)
        if not (_integer_vector(item) and (width or LENGTH_NAME.search(item.name))):
            continue
        for other in inputs:
            measured: list[str | int] = [d for d in other.dims[1:] if isinstance(d, str)]
            static = [d for d in other.dims[1:] if isinstance(d, int)]
            if not measured and static and len(other.dims) <= 3:
                # a sequence ([batch, T], [batch, T, F] or [batch, F, T]; not a picture): the
                # smaller dim, which the length does not exceed whichever the layout
                measured = [min(static)]
            if other.kind == "tensor" and other.dims[:1] == item.dims and measured:
                found[item.name] = measured[-1] if width else measured[0]
                break
    return found


def _offsets(inputs: Sequence[_Input]) -> dict[str, str | int]:
    """Integer inputs that hold where each bag of another input's items starts -> that input's
    dim (its key, or its size): torch's EmbeddingBag(tokens, offsets), exported as a Loop over
    the bags that slices tokens[offsets[i]:offsets[i + 1]]. Such an input has one dim, a name
    like offsets, and beside it is another one-dim integer input of another dim."""
    found: dict[str, str | int] = {}
    for item in inputs:
        if not (_integer_vector(item) and OFFSETS_NAME.search(item.name)):
            continue
        bagged = [
            other.dims[0] for other in inputs if _integer_vector(other) and other.dims != item.dims
        ]
        if len(bagged) == 1:
            found[item.name] = bagged[0]
    return found


def _integer_vector(item: _Input) -> bool:
    """Whether the input is a tensor of integers of one dim."""
    return item.kind == "tensor" and _kind(item.elem_type) == "int" and len(item.dims) == 1


def _cache_spans(inputs: Sequence[_Input]) -> dict[str, tuple[str, str]]:
    """A decoder with a KV cache: the dim key of an attention mask over the cached and the new
    tokens -> the keys of the cache's length and of the new tokens' (the mask spans both).

    The cache is a float input of rank 4 named like one (`past_key_values.0.key`, `past_key_0`:
    [batch, heads, past, head size]), the new tokens the second dim of a rank-2 integer input that
    is not the mask (`input_ids[batch, seq]`), and the mask a rank-2 input named like one whose
    second dim no other input has (an encoder's mask shares it with the encoder's states)."""
    past = [
        item.dims[2]
        for item in inputs
        if CACHE_NAME.search(item.name)
        and _kind(item.elem_type) == "float"
        and len(item.dims) == 4
        and isinstance(item.dims[2], str)
    ]
    masks = [item for item in inputs if MASK_NAME.search(item.name) and len(item.dims) == 2]
    tokens = [
        item.dims[1]
        for item in inputs
        if _kind(item.elem_type) == "int"
        and len(item.dims) == 2
        and isinstance(item.dims[1], str)
        and item not in masks
    ]
    if not past or not tokens:
        return {}
    others = {d for item in inputs if item not in masks for d in item.dims}
    return {  # an encoder's mask measures an input of its own (encoder_hidden_states): not this
        mask.dims[1]: (past[0], tokens[0])
        for mask in masks
        if isinstance(mask.dims[1], str) and mask.dims[1] not in others
    }


def _ranked_as_given(item: _Input, shapes: Mapping[str, Sequence[int]]) -> _Input:
    """`item` with the rank of the shape `shapes` gives it, where the model declares none."""
    if item.ranked or item.name not in shapes:
        return item
    return replace(
        item, dims=tuple(f"{item.name}[{axis}]" for axis in range(len(shapes[item.name])))
    )


def _reduced_dim(
    node: onnx.NodeProto, item: _Input, dims: Mapping[str, tuple[int, ...]]
) -> tuple[str, int] | None:
    """(dim key, size) of `item`'s dim that `node` multiplies by a constant weight, where that dim
    is dynamic: a MatMul's first input's last dim (the weight's second to last), a Gemm's reduced
    dim, a Conv's input channels (the weight's times its groups)."""
    if not node.input or node.input[0] != item.name or len(node.input) < 2:
        return None
    weight = dims.get(node.input[1])
    if weight is None or len(weight) < 2:
        return None
    attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    if node.op_type == "MatMul":
        axis, size = -1, weight[-2]
    elif node.op_type == "Gemm" and len(weight) == 2:  # x [M, K] (transA: [K, M])
        axis = -1 - int(attributes.get("transA", 0))
        size = weight[int(attributes.get("transB", 0))]  # B [K, N] (transB: [N, K])
    elif node.op_type == "Conv" and len(weight) >= 3:
        axis, size = 1, weight[1] * int(attributes.get("group", 1))
    else:
        return None
    if not -len(item.dims) <= axis < len(item.dims) or not isinstance(item.dims[axis], str):
        return None
    return item.dims[axis], int(size)


def _image_dims(item: _Input) -> list[str]:
    """The dynamic height and width keys of a picture: a rank-4 float tensor with IMAGE_CHANNELS
    channels (axis 1, NCHW, or else axis 3, NHWC), both dims dynamic unless it has 3 channels (a
    text line's width); not a KV cache [batch, heads, past, 64] or a spectrogram [batch, 1, 80,
    time]. A video's frames (rank 5: NCTHW, or else NTHWC) likewise; where both layouts have
    IMAGE_CHANNELS channels, the one with more dynamic height and width."""
    dims = item.dims
    if item.kind != "tensor" or len(dims) not in (4, 5) or _kind(item.elem_type) != "float":
        return []
    layouts = [(dims[1], dims[-2:]), (dims[-1], dims[-3:-1])]  # channels first, else last
    channels, spatial = max(
        layouts,
        key=lambda layout: (
            layout[0] in IMAGE_CHANNELS,
            sum(isinstance(d, str) for d in layout[1]),
        ),
    )
    dynamic = [d for d in spatial if isinstance(d, str)]
    if channels not in IMAGE_CHANNELS or (len(dynamic) < 2 and channels != 3):
        return []
    return dynamic


def _picture_keys(inputs: Sequence[_Input]) -> set[str]:
    """The dynamic height and width keys of the picture inputs (`_image_dims`) that no other
    input's dims share."""
    pictures = [item for item in inputs if _image_dims(item)]
    others = {d for item in inputs if item not in pictures for d in item.dims}
    return {key for item in pictures for key in _image_dims(item)} - others


def _kind(elem_type: int) -> str | None:
    """`float`, `int`, `bool` or `string`; None for types onnxslim does not feed (complex, ...)."""
    if elem_type == onnx.TensorProto.STRING:
        return "string"
    if elem_type == onnx.TensorProto.BOOL:
        return "bool"
    try:
        dtype = onnx.helper.tensor_dtype_to_np_dtype(elem_type)
    except (KeyError, TypeError, ValueError):
        return None
    if dtype.kind in "iu" or dtype in (
        ml_dtypes.int4,
        ml_dtypes.uint4,
        ml_dtypes.int2,
        ml_dtypes.uint2,
    ):
        return "int"
    return "float" if dtype.kind == "f" or dtype.type.__module__ == "ml_dtypes" else None


def _size(shape: tuple | None, axis: int) -> int | None:
    if not shape or not -len(shape) <= axis < len(shape):
        return None
    return shape[axis] or None


def _values(
    item: _Input,
    shape: tuple[int, ...],
    use: _Use | None,
    ints: tuple[int, int],
    rng: np.random.Generator,
) -> tuple[np.ndarray, str]:
    """An array for one input (one sequence element) and its description."""
    dtype = (
        np.dtype(object)
        if _kind(item.elem_type) == "string"
        else onnx.helper.tensor_dtype_to_np_dtype(item.elem_type)
    )
    kind = _kind(item.elem_type)
    text = f"{'string' if kind == 'string' else dtype.name}[{','.join(map(str, shape))}]"
    if kind == "string":
        return rng.choice(WORDS, size=shape), text
    if use is not None and use.kind == "length":
        return np.full(shape, use.total, dtype), f"{text} = {use.total} (the full length)"
    if use is not None and use.kind == "offsets":
        starts = np.sort(rng.integers(0, use.total + 1, size=shape))
        starts[:1] = 0
        return starts.astype(dtype), f"{text} sorted in [0, {use.total}] (bag offsets)"
    if use is not None and use.kind != "range":
        array = _pattern(use, shape)
        return array.astype(dtype), f"{text} {use.kind}"
    if kind == "float" and use is None:
        return rng.standard_normal(shape).astype(np.float32).astype(dtype), f"{text} ~ N(0, 1)"
    lo, hi = (use.lo, use.hi) if use else ints
    if kind == "float":
        array = rng.uniform(lo, hi, shape) if hi > lo else np.full(shape, lo)
        return array.astype(np.float32).astype(dtype), f"{text} in [{lo:g}, {hi:g}]"
    lo, hi = int(lo), int(hi)
    if kind == "bool":  # (a range tried for the integers, [12, 12], is all True)
        lo, hi = (min(max(bound, 0), 1) for bound in (lo, max(lo, hi)))
        array = rng.integers(lo, hi + 1, size=shape).astype(bool)
        return array, f"{text} all {bool(lo)}" if lo == hi else text
    info = ml_dtypes.iinfo(dtype)
    lo, hi = max(lo, int(info.min)), min(max(lo, hi), int(info.max))
    return rng.integers(lo, hi + 1, size=shape).astype(dtype), f"{text} in [{lo}, {hi}]"


def _pattern(use: _Use, shape: tuple[int, ...]) -> np.ndarray:
    """Values valid for the use whatever the data: along the last axis for a 1-D shape input."""
    count = shape[-1] if shape else 1
    if use.kind == "axes":
        row = np.arange(count)
    elif use.kind == "reshape":
        row = np.ones(count, dtype=np.int64)
        row[-1:] = -1
    elif use.kind == "split":
        row = np.full(count, use.total // max(count, 1))
        row[-1:] = use.total - row[:-1].sum()
    else:  # "max"
        row = np.full(count, np.iinfo(np.int32).max)
    return np.broadcast_to(row, shape).copy() if shape else row.reshape(())


def _dims_text(dims: tuple) -> str:
    return "[" + ",".join(map(str, dims)) + "]"


def _arrays(feeds: Feeds) -> Iterator[Any]:
    for value in feeds.values():
        yield from value if isinstance(value, list) else [value]


def _read_value(data: bytes, type_: onnx.TypeProto | None) -> tuple[Any, str]:
    """A test-data proto as the input type says: (value, the name the proto gives)."""
    if type_ is not None and type_.HasField("sequence_type"):
        proto = onnx.SequenceProto.FromString(data)
        return numpy_helper.to_list(proto), proto.name
    if type_ is not None and type_.HasField("optional_type"):
        proto = onnx.OptionalProto.FromString(data)
        return numpy_helper.to_optional(proto), proto.name
    proto = onnx.TensorProto.FromString(data)
    return numpy_helper.to_array(proto), proto.name
