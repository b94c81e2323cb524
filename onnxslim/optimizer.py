"""`optimize`: the lossless pipeline on a model, then the onnx checker and the check against the
original on ORT."""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent import futures
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir
import onnx_ir.passes.common as common

from onnxslim import fp16, verify
from onnxslim.data import input_specs, load_samples, parse_shapes
from onnxslim.drift import parse_max_drift
from onnxslim.errors import CheckFailedError, OnnxSlimError, first_line
from onnxslim.model import interface, io, opset
from onnxslim.model.external import call_onnx_api, has_external_data, release_external_data
from onnxslim.model.graph import MIN_OPSET, all_nodes, default_opset
from onnxslim.model.stats import (
    ModelStats,
    constant_bytes,
    location_bytes,
    model_stats,
    written_location_bytes,
)
from onnxslim.passes.fold import SizeBudget
from onnxslim.passes.pipeline import infer_shapes, run_passes, selected_passes
from onnxslim.passes.registry import REGISTRY, PassOptions, rewrites
from onnxslim.passes.rules.pad_conv import has_slow_padded_convs, keep_pads_apart
from onnxslim.render.format import human_bytes
from onnxslim.runtime import (
    OrtGraph,
    Session,
    gained_integer_kernels,
    lost_fusions,
    ort_graph,
    terminate_runs,
)

logger = logging.getLogger(__name__)

ModelLike = str | os.PathLike | onnx.ModelProto | ir.Model


@dataclass
class OptimizeResult:
    """The optimized model with what happened to it."""

    model: ir.Model
    before: ModelStats
    after: ModelStats
    seconds: float
    rounds: int
    applied: dict[str, int] = field(default_factory=dict)
    checked: bool = False
    #: Why the ORT check did not run although asked for (e.g. custom-domain ops ORT cannot load).
    check_skipped: str | None = None
    #: What the check ran on: "synthesized inputs (x float32[1,3,32,32] in [-1, 1])".
    check_inputs: str | None = None
    #: The feeds themselves (inputs the original accepts: a benchmark can reuse them).
    check_feeds: list[dict] | None = field(default=None, repr=False)
    notes: list[str] = field(default_factory=list)
    #: Every pass run that changed the model: round (or "setup"/"finish"), pass, nodes before/after.
    history: list[tuple[int | str, str, int, int]] = field(default_factory=list)
    #: `dtype="fp16"`: fp16.Fp16Result's fields, the drift budget, the drift per output, the
    #: inputs it was measured on and whether they were synthesized.
    fp16: dict | None = None
    #: ORT's fused kernels it runs fewer of for the result (runtime.lost_fusions), op -> (original's
    #: count, the result's); empty when none, or not compared (no check, weights over
    #: ORT_GRAPH_LIMIT, or ORT could not build one of them).
    fusions_lost: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: ORT's integer kernels it runs more of for the result (runtime.gained_integer_kernels), op
    #: -> (original's count, the result's); compared as `fusions_lost` is.
    integer_kernels_gained: dict[str, tuple[int, int]] = field(default_factory=dict)
    #: The bytes the written file's external-data file names add over the input's (a longer
    #: output name repeated in each external tensor): not the model growing.
    location_growth: int = 0

    @property
    def warnings(self) -> list[str]:
        """The warnings beyond "not checked" (lost ORT fusions, float16's), for the CLI's stderr
        and the API's UserWarnings."""
        found = (
            self.fusion_warning,
            self.integer_kernel_warning,
            self.fp16_nothing_warning,
            self.fp16_warning,
            self.fp16_slower_warning,
        )
        return [warning for warning in found if warning]

    @property
    def fp16_nothing_warning(self) -> str | None:
        """That no node went to float16 (None: some did, or no conversion asked): the result is
        the lossless float32 model, its size and speed the lossless passes' own."""
        if not self._fp16_converted_nothing:
            return None
        kept = ", ".join(f"{reason} {count}" for reason, count in self.fp16["kept"].items())
        why = f"kept in float32: {kept}" if kept else "the model computes nothing in float"
        return (
            f"no node went to float16 ({why}): the result is the lossless float32 model, and "
            "what it saves in size or time the lossless passes saved"
        )

    @property
    def _fp16_converted_nothing(self) -> bool:
        """Whether float16 was asked for and changed nothing (no node, no Cast)."""
        return bool(self.fp16) and not self.fp16["nodes_float16"] and not self.fp16["casts"]

    @property
    def fp16_slower_warning(self) -> str | None:
        """That the float16 model runs slower than the original on this CPU (None: not slower, or
        not timed)."""
        if not self.fp16 or self.fp16["time_verdict"] != "slower" or self._fp16_converted_nothing:
            return None
        before, after = self.fp16["weights_before"], self.fp16["weights_after"]
        saves = (
            f"it saves size ({after / before:.2f}x the weights), not time"
            if after < 0.9 * before
            else "it saves neither size nor time here"
        )
        timed_on = (
            f"; timed on {self.fp16['inputs']}: at your inputs' sizes, time both with "
            "`onnxslim bench ORIGINAL RESULT --inputs ...`"
            if self.fp16["synthesized"]
            else ""
        )
        return (
            f"the float16 model runs {self.fp16['time_ratio']:.2f}x the time of the original on "
            f"this CPU (ONNX Runtime computes most float16 ops on CPU through Casts to float32): "
            + saves
            + timed_on
        )

    @property
    def fp16_warning(self) -> str | None:
        """That the float16 drift was measured on synthesized inputs (None: on given ones, or not
        measured): float16 may overflow on real data where it did not on those (another scale,
        other token ids)."""
        if not self.fp16 or not self.fp16["synthesized"] or self._fp16_converted_nothing:
            return None
        return (
            f"the float16 drift was measured on {self.fp16['inputs']}: on real data float16 may "
            "overflow (past 65504: inf or NaN) or lose precision where it did not on these; check "
            "it on yours (--check-inputs, check_inputs= in Python)"
        )

    @property
    def fusion_warning(self) -> str | None:
        """What fewer fused kernels in ORT's graph of the result say of its speed (None: none)."""
        if not self.fusions_lost:
            return None
        lost = ", ".join(f"{op} {old} -> {new}" for op, (old, new) in self.fusions_lost.items())
        return (
            f"ONNX Runtime fuses less of the result than of the original ({lost}): it may run "
            "slower. Time both with `onnxslim bench ORIGINAL RESULT`; `-v` lists the passes that "
            "changed the graph, `--skip PASS` leaves one out"
        )

    @property
    def integer_kernel_warning(self) -> str | None:
        """What more of ORT's integer kernels for the result say of its outputs (None: none)."""
        if not self.integer_kernels_gained:
            return None
        gained = ", ".join(
            f"{op} {old} -> {new}" for op, (old, new) in self.integer_kernels_gained.items()
        )
        return (
            f"ONNX Runtime runs more of the result in integer kernels than the original ({gained}):"
            " its QDQ fusions take nodes of the result they could not take in the original (a "
            "shape now static), and those round otherwise than the QDQ math the check compared "
            "(ORT's optimizations off). Compare both as ORT runs them: `onnxslim bench ORIGINAL "
            "RESULT --inputs DATA`"
        )

    @property
    def growth(self) -> str | None:
        """What a written file bigger than its input says of it (None: not bigger, or a size not
        known): by how much, and how much of it the constants hold."""
        before, after = self.before.file_bytes, self.after.file_bytes
        if not before or not after or after - self.location_growth <= before + SERIALIZER_BYTES:
            return None
        constants = self.after.weight_bytes - self.before.weight_bytes
        held = (
            f"; its constants {human_bytes(constants)} more (folded values)"
            if constants > 0
            else ""
        )
        return (
            f"the result is {human_bytes(after - before)} bigger than the input "
            f"({after / before - 1:+.1%}){held}"
        )

    def to_dict(self) -> dict:
        return {
            "before": self.before.to_dict(),
            "after": self.after.to_dict(),
            "seconds": round(self.seconds, 3),
            "rounds": self.rounds,
            "passes_applied": self.applied,
            "checked": self.checked,
            "check_skipped": self.check_skipped,
            "check_inputs": self.check_inputs,
            "notes": self.notes,
            "growth": self.growth,
            "fusions_lost": {op: list(counts) for op, counts in self.fusions_lost.items()},
            "integer_kernels_gained": {
                op: list(counts) for op, counts in self.integer_kernels_gained.items()
            },
            "fp16": None
            if self.fp16 is None
            else {
                **self.fp16,
                "drift": None
                if self.fp16["drift"] is None
                else {name: d.to_dict() for name, d in self.fp16["drift"].items()},
            },
            "history": [
                {"round": stage, "pass": name, "nodes_before": old, "nodes_after": new}
                for stage, name, old, new in self.history
            ],
        }


def _checker_error(model: ir.Model, keep: list | None = None) -> str | None:
    """What the onnx checker says about the model (None: nothing); large weights are left out
    of its proto, which is appended to `keep` when given (shape inference can reuse it)."""

    def check(proto: onnx.ModelProto) -> None:
        if keep is not None:  # for shape inference, which reads no map types
            keep.append(proto)
        if io.MAP_TYPED in model.meta:  # checked with them, on a copy
            proto = io.with_kept_aside(model, onnx.ModelProto.FromString(proto.SerializeToString()))
        with _native_stdout_dropped():
            onnx.checker.check_model(proto)

    try:
        call_onnx_api(check, model)
    except Exception as err:  # noqa: BLE001 the onnx checker raises assorted types
        return first_line(err)
    return None


@contextlib.contextmanager
def _native_stdout_dropped() -> Iterator[None]:
    """What native code prints on stdout while the block runs, dropped: the onnx checker's
    "Warning: Model contains experimental ops" (an ImageScaler), where the report owns stdout
    (nothing at all with --quiet). A no-op where stdout is no file descriptor."""
    try:
        sys.stdout.flush()
        saved = os.dup(1)
    except (OSError, ValueError, AttributeError):  # (no fd 1, or a stdout without one)
        yield
        return
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.close(null)
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


#: Bytes a file may grow by with nothing added, from how the same model is written (an opset's
#: empty domain written out, a dim inference names "4*B"): no growth to warn of.
SERIALIZER_BYTES = 32
#: Model files up to this size go to the onnx checker (and shape inference) as files: parsed in
#: C++, no Python serialization of a large graph. A bigger one goes as `call_onnx_api`'s lean proto,
#: without its large weights: the file's proto would be copied a few times over (peak memory);
#: unless weights are under half of it (a tree ensemble's attributes: the lean proto is as large,
#: and serializing them takes seconds).
FILE_CHECK_LIMIT = 32 * 1024**2


def _file_checker_error(path: Path, keep: list | None = None) -> str | None:
    """What the onnx checker says about the model file at `path` (None: nothing). With `keep`,
    the file is parsed once, into the proto appended there (shape inference can reuse it), and
    that proto is checked: only for a model without external data, whose files a proto check
    cannot find."""
    try:
        if keep is None:
            with _native_stdout_dropped():
                onnx.checker.check_model(os.fspath(path))
        else:
            keep.append(onnx.load(path, load_external_data=False))
            io.clear_negative_dims(keep[-1].graph)  # as loaded for the passes
            with _native_stdout_dropped():
                onnx.checker.check_model(keep[-1])
    except Exception as err:  # noqa: BLE001 the onnx checker raises assorted types
        return first_line(err)
    return None


def _checkable_file(path: str | os.PathLike | None, weights: int) -> Path | None:
    """`path` when it names a model file the checker may read whole (FILE_CHECK_LIMIT), of a
    model with `weights` bytes of constants."""
    if path is None:
        return None
    size = Path(path).stat().st_size
    return Path(path) if size <= FILE_CHECK_LIMIT or 2 * weights < size else None


def _checker(model: ir.Model, input_error: str | None = None, written: Path | None = None) -> None:
    """The onnx checker on the result (the file it was `written` to, when small). A model the
    checker already rejected as given (many exported models run fine in ORT regardless) is left to
    the ORT check instead."""
    file = _checkable_file(written, constant_bytes(model))
    error = _checker_error(model) if file is None else _file_checker_error(file)
    if error is not None and input_error is None:
        raise CheckFailedError(f"the optimized model fails the onnx checker: {error}")


@dataclass(frozen=True)
class OptimizeOptions:
    """How `optimize` runs.

    `skip`: pass names to leave out (`onnxslim.passes.registry.REGISTRY`); `size_threshold`: most
    bytes constant folding may add per folded tensor (default 1 MiB); `size_budget`: most bytes it
    may add to the whole model (default 1% of the original, at least 64 KiB; a fold only grows the
    file for work ONNX Runtime would otherwise run on every call); `inline_functions`: inline
    model-local functions first; `target_opset`: convert the default opset first (models below opset
    7 are converted to 7 anyway); `check`: compare the outputs of the original and the result on
    ONNX Runtime (CheckFailedError on a mismatch); `check_inputs`: samples for it, `{name: array}`
    dicts or a path as --check-inputs takes it (default: inputs synthesized from the model),
    `shapes`: dims for dynamic inputs; `check_rtol`/`check_atol`: the check's tolerances for
    every float output (default: per dtype, 1e-4/1e-5 for float32);
    `require_check`: a model that cannot be checked (ORT cannot run the original, an input cannot
    be fed) is an error instead of a "not checked" result; `input_shapes`: static dims for graph
    inputs, written into the result (what becomes static is folded; the check feeds these dims);
    `inputs`/`outputs`: value names to cut the graph at first, like `onnx.utils.extract_model`
    (the check compares with the cut original); `dtype="fp16"`: convert to float16 afterwards
    (`onnxslim.fp16`; graph inputs and outputs stay float32 with `keep_io_types`), measure its
    drift from the original and refuse it beyond `max_drift` (default fp16.DEFAULT_BUDGET).
    """

    skip: tuple[str, ...] = ()
    size_threshold: int | None = None
    size_budget: int | None = None
    inline_functions: bool = False
    target_opset: int | None = None
    check: bool = True
    check_inputs: Sequence[dict[str, np.ndarray]] | str | os.PathLike | None = None
    shapes: Mapping[str, tuple[int, ...]] | None = None
    require_check: bool = False
    check_rtol: float | None = None
    check_atol: float | None = None
    input_shapes: Mapping[str, tuple[int, ...]] | None = None
    inputs: tuple[str, ...] | None = None
    outputs: tuple[str, ...] | None = None
    dtype: str | None = None
    keep_io_types: bool = True
    max_drift: str | None = None


def optimize_with_report(
    model: ModelLike,
    options: OptimizeOptions = OptimizeOptions(),
    *,
    on_pass: Callable[[str], None] | None = None,
    source: str | os.PathLike | None = None,
    output: str | os.PathLike | None = None,
    external_data: bool | None = None,
) -> OptimizeResult:
    """Optimize losslessly and report before/after statistics; see `optimize`.

    `source` is the file an `onnx_ir.Model` given as `model` was just loaded from, unchanged: the
    check then runs that file as the original instead of saving a copy. With `output`, the result
    is saved there (`external_data` as in `save`) and the check runs on the written file before it
    replaces `output`, so a large model's weights are not written twice; a result that fails the
    check is not written. `on_pass(name)` is called as each pass starts.

    A result whose outputs differ from the original's is made once more from the file `source`
    (not a ModelProto or a cut model) without its value_info (the shapes it states for
    intermediate values: stale ones, from a model whose input dims were edited, let the passes
    drop a Reshape ORT needs); kept, with a note, when that one matches; else made again without
    `fold-constants` (onnx's reference evaluator and ORT disagree on some ops: Resize with
    align_corners, MaxUnpool), then without the rewrites too (`_made_again`). A result ONNX Runtime
    crashes on (`CrashingResult`) is made once more without the rewrites it applied, from the
    file `source` or the ModelProto (an onnx-ir Model given has changed in place: raised).
    """
    started = time.perf_counter()
    if isinstance(model, (str, os.PathLike)):
        source = model
    # what a result is made again from (None: nothing, an onnx-ir Model given changed in place)
    unchanged = source if source is not None or isinstance(model, ir.Model) else model

    def again(
        made_from: ModelLike, skipped: Sequence[str] = (), what: str = "", as_in_source=True
    ) -> OptimizeResult:
        """The result made once more, from `made_from`, with the passes `skipped` skipped too
        (`what`: what it goes without, where no pass)."""
        if on_pass:
            on_pass(f"again without {what or ', '.join(skipped)}")
        fewer = replace(options, skip=(*options.skip, *skipped))
        return _optimize_with_report(
            made_from, fewer, on_pass, source, output, external_data, as_in_source
        )

    try:
        return _optimize_with_report(model, options, on_pass, source, output, external_data)
    except verify.OutputsDiffer as err:
        result = _made_again(err, source, unchanged, options.skip, again)
    except CrashingResult as err:
        if unchanged is None or not err.rewrites:
            raise
        try:
            result = again(unchanged, err.rewrites)
        except CrashingResult:
            raise err from None
        result.notes.append(err.made_again)
    result.seconds = time.perf_counter() - started  # (both attempts)
    return result


def _made_again(
    err: verify.OutputsDiffer,
    source: str | os.PathLike | None,
    unchanged: ModelLike | None,
    skip: Sequence[str],
    again: Callable[..., OptimizeResult],
) -> OptimizeResult:
    """The result made again (`again`) after its outputs differed (`err`): from `source` without
    its value_info, else from `unchanged` without `fold-constants`, else without the rewrites
    too (`skip`: the passes skipped already); the first that matches, with a note saying why;
    `err` when none does, or when there is nothing to make it from."""
    unannotated = _without_value_info(source)
    if unannotated is not None:
        try:  # (`source` still the original the check runs and the size before)
            result = again(unannotated, what="the file's value_info", as_in_source=False)
        except verify.OutputsDiffer:
            pass
        else:
            result.notes.append(STALE_VALUE_INFO)
            return result
    tried = []
    for passes in (["fold-constants"], ["fold-constants", *rewrites(s.name for s in REGISTRY)]):
        skipped = [name for name in passes if name not in skip]
        if unchanged is None or not skipped or skipped in tried:
            continue
        tried.append(skipped)
        try:
            result = again(unchanged, skipped)
        except (verify.OutputsDiffer, CrashingResult):
            continue
        result.notes.append(
            f"made again without {', '.join(skipped)}: the full result's outputs differed from "
            f"the original's ({first_line(err).removeprefix(verify.DIFFERS)})"
        )
        return result
    raise err


def _without_value_info(source: str | os.PathLike | None) -> ir.Model | None:
    """The model in the file `source` with no shape or type on its intermediate values (None:
    no file, or none had one)."""
    if source is None:
        return None
    model = io.load(source)
    annotated = [
        value
        for node in all_nodes(model)
        for value in node.outputs
        if not value.is_graph_output() and (value.shape is not None or value.type is not None)
    ]
    if not annotated:
        return None
    for value in annotated:
        value.shape = value.type = None
    model.meta[io.ANNOTATED] = io.annotated_values(model)
    return model


def _optimize_with_report(
    model: ModelLike,
    options: OptimizeOptions,
    on_pass: Callable[[str], None] | None,
    source: str | os.PathLike | None,
    output: str | os.PathLike | None,
    external_data: bool | None,
    as_in_source: bool = True,
) -> OptimizeResult:
    """`optimize_with_report`, once; `as_in_source`: `model` is as loaded from `source` (else
    the onnx checker and shape inference do not read that file for it)."""
    started = time.perf_counter()
    ir_model = io.to_ir(model)
    annotated = io.annotated_values(ir_model)
    notes: list[str] = []
    cut = bool(options.inputs or options.outputs)
    if cut:
        notes.append(cut_graph(ir_model, options.inputs, options.outputs))
    if isinstance(options.check_inputs, (str, os.PathLike)):  # as --check-inputs reads it
        samples = load_samples(
            options.check_inputs, input_specs(ir_model), what="check_inputs", default_pixels=True
        )
        options = replace(options, check_inputs=samples)
    before = model_stats(ir_model, None if cut else source)
    locations_before = location_bytes(ir_model)
    pass_options = PassOptions(
        size_threshold=PassOptions.size_threshold
        if options.size_threshold is None
        else options.size_threshold,
        budget=SizeBudget(growth=options.size_budget),
    )
    specs = selected_passes(options.skip)
    check_inputs = not_checked = None
    fusions_lost: dict[str, tuple[int, int]] = {}
    integer_kernels_gained: dict[str, tuple[int, int]] = {}
    # The original as ORT loads it: its file, or a copy saved before the in-place passes change it
    # (the cut original when cut).
    original = ir_model if cut else (source or model)
    with (
        verify.model_file(original) as reference,
        io.quiet_library_logs(),
        _Background() as background,
    ):
        crashing = fp16.crash_prone(ir_model) and _original_crash(reference, options.check)
        # the original's side of the check runs while the passes do (ORT works outside the GIL);
        # its ORT graph first: keeping Pads apart waits for it before the result is written
        original_graph = (
            background.submit(_ort_graph, reference)
            if options.check and before.weight_bytes <= ORT_GRAPH_LIMIT
            else None
        )
        prefetched = (
            background.submit(
                verify.reference_outputs,
                reference,
                options.check_inputs,
                _check_shapes(options),
                verify.random_nodes(ir_model),  # (the model as loaded: no second load)
            )
            if options.check
            else None
        )
        ir_model, converted = _convert_opset(ir_model, options.target_opset)
        notes += [converted] if converted else []
        # the onnx checker and shape inference read the input file itself while the model is as
        # loaded from it (external tensors excepted: shape inference reads small ones inlined)
        as_loaded = (
            as_in_source
            and not (
                cut
                or converted
                or options.input_shapes
                or options.inline_functions
                and ir_model.functions
            )
            and not has_external_data(ir_model)
        )
        input_file = _checkable_file(source, before.weight_bytes) if as_loaded else None
        if options.inline_functions and ir_model.functions:
            if on_pass:
                on_pass("inline-functions")
            common.InlinePass()(ir_model)
            common.RemoveUnusedOpsetsPass()(ir_model)
        given = _interface(ir_model)
        if options.input_shapes:
            interface.set_input_shapes(ir_model, options.input_shapes)
        declared = _interface(ir_model)
        checked_proto: list[onnx.ModelProto] = []
        input_error = (
            _checker_error(ir_model, checked_proto)
            if input_file is None
            else _file_checker_error(input_file, checked_proto)
        )
        history: list[tuple[int | str, str, int, int]] = []
        try:
            rounds, applied = run_passes(
                ir_model, specs, pass_options, on_pass, history, *checked_proto[:1]
            )
        except Exception:
            if input_error is not None and not crashing:  # an invalid model can break a pass
                _refuse_if_unloadable(reference, input_error)
            raise
        checked_proto.clear()  # no longer the model
        notes += pass_options.budget.notes(ir_model)
        _restore_interface(ir_model, declared)
        for value, (_, _, shape) in zip(ir_model.graph.outputs, given[1]):
            if value.shape is None:  # not inferred from the new input dims: as the model gave it
                value.shape = shape
        ir_model.meta[io.ANNOTATED] = annotated  # saved without the value_info inference added
        apart = 0
        pads_compared = before.weight_bytes <= ORT_GRAPH_LIMIT and not crashing
        if pads_compared and has_slow_padded_convs(ir_model):
            # made whatever the check option, as it changes the result (no inference: cheap)
            theirs = original_graph.result() if original_graph else _ort_graph(reference)
            apart = keep_pads_apart(ir_model, theirs.pads_apart) if theirs else 0
        if apart:
            notes.append(
                f"{apart} zero Pad(s) kept apart from their Conv, as ONNX Runtime runs them for "
                "the original (fused, its 1-D convs written 2-D run several times slower)"
            )

        crash_prone = fp16.crash_prone(ir_model)
        if crash_prone and not crashing:  # tried in a child process before any session of ours
            _refuse_if_crashing(ir_model, history)
        named, weighed = False, None  # weighed: ORT's graph of the result as it is written
        weigh = options.check and before.weight_bytes <= ORT_GRAPH_LIMIT and not crash_prone
        if weigh and not _float16_requested(options):
            named, weighed = _named_shapes_pay(ir_model, os.path.getsize(reference))
        ir_model.meta[io.NAMED_SHAPES] = named

        def check(written: Path | None = None) -> None:
            nonlocal check_inputs, not_checked
            _checker(ir_model, input_error, written)
            if not options.check:
                return
            if on_pass:
                on_pass("check on ONNX Runtime")
            release_external_data(ir_model)
            try:
                checked = _check(reference, prefetched, ir_model, options, written)
            except verify.OutputsDiffer as err:
                if not converted:
                    raise
                raise verify.OutputsDiffer(
                    f"{err} (the model was {converted} first: onnx's version converter may "
                    "change what an op computes; "
                    f"export the model at opset {options.target_opset or MIN_OPSET} instead)"
                ) from err
            check_inputs, not_checked = checked
            checked_graphs = original_graph is not None and not not_checked
            theirs = original_graph.result() if checked_graphs else None
            ours = (
                (weighed or _ort_graph(ir_model if written is None else written))
                if theirs
                else None
            )
            if ours is not None:
                fusions_lost.update(lost_fusions(theirs.counts, ours.counts))
                integer_kernels_gained.update(gained_integer_kernels(theirs.counts, ours.counts))

        written = precision = None
        if not _float16_requested(options) and output is not None:
            written = io.save(ir_model, output, external_data, check)
        else:  # the lossless result is checked, then converted, then written
            check()
            precision = _to_float16(reference, ir_model, options, on_pass)
            if output is not None:
                written = io.save(ir_model, output, external_data)
    after = model_stats(ir_model)
    after.file_bytes = written
    grew = written is not None and before.file_bytes is not None and written > before.file_bytes
    # (written inline after external input: the names are gone, nothing to discount)
    location_growth = max(0, written_location_bytes(output) - locations_before) if grew else 0
    return OptimizeResult(
        model=ir_model,
        before=before,
        after=after,
        seconds=time.perf_counter() - started,
        rounds=rounds,
        applied={name: count for name, count in applied.items() if count},
        checked=options.check and not_checked is None,
        check_skipped=not_checked,
        check_inputs=str(check_inputs) if check_inputs else None,
        check_feeds=check_inputs.samples if check_inputs else None,
        notes=notes,
        history=history,
        fp16=precision,
        fusions_lost=fusions_lost,
        integer_kernels_gained=integer_kernels_gained,
        location_growth=location_growth,
    )


def _float16_requested(options: OptimizeOptions) -> bool:
    """Whether `options.dtype` asks for float16 (fp32 is the model as it is)."""
    dtype = (options.dtype or "fp32").lower()
    if dtype not in ("fp32", "float32", "float", "fp16", "float16", "half"):
        raise OnnxSlimError(f"dtype {options.dtype!r}: choose fp32 or fp16")
    return dtype in ("fp16", "float16", "half")


def _to_float16(reference, model: ir.Model, options: OptimizeOptions, on_pass) -> dict | None:
    """With `dtype="fp16"`: convert, then (with `check`) measure the drift from the original and
    refuse the result beyond `max_drift`; what happened, for the report (None: no conversion)."""
    if not _float16_requested(options):
        return None
    if on_pass:
        on_pass("float16")
    converted = fp16.to_float16(model, keep_io_types=options.keep_io_types)
    report = {**converted.to_dict(), "budget": None, "drift": None, "inputs": None}
    report["synthesized"] = None  # then whether `inputs` were made up (no data given)
    report["time_ratio"] = report["time_verdict"] = None  # then fp16.time_ratio's
    with verify.model_file(model) as path:  # one copy on disk, for the crash probe and the drift
        fp16.refuse_crashing(path)  # with or without the check: no user could load it
        if not options.check:
            return report
        if on_pass:
            on_pass("float16 drift on ONNX Runtime")
        budget = parse_max_drift(options.max_drift or fp16.DEFAULT_BUDGET)
        drifts, described, feed = fp16.measure_drift(
            reference, path, options.check_inputs, _check_shapes(options)
        )
        report.update(
            budget=str(budget),
            drift=drifts,
            inputs=described,
            synthesized=options.check_inputs is None,
        )
        failures = budget.check(drifts)
        if failures:
            failed = {name: d for name, d in drifts.items() if budget.check({name: d})}
            hint = fp16.underflow_hint(failed) or "keep more ops in float32, or loosen --max-drift"
            raise CheckFailedError(
                f"the float16 model drifts beyond {budget}: {'; '.join(failures)} ({hint})"
            )
        if options.keep_io_types:  # a float16 interface takes other inputs than the original
            if on_pass:
                on_pass("float16 timing on ONNX Runtime")
            timed = fp16.time_ratio(reference, path, feed)
            report.update(time_ratio=timed and timed[0], time_verdict=timed and timed[1])
    return report


def cut_graph(model: ir.Model, inputs: Sequence[str] | None, outputs: Sequence[str] | None) -> str:
    """Cut `model` in place to the subgraph between the named values (`interface.extract`, after
    shape inference gave the values their types); returns a note for the report."""
    total = model_stats(model).nodes
    infer_shapes(model)
    interface.extract(model, inputs, outputs)
    graph = model.graph
    return (
        f"cut to the subgraph from {', '.join(v.name for v in graph.inputs)} "
        f"to {', '.join(v.name for v in graph.outputs)}: "
        f"{model_stats(model).nodes} of {total} nodes"
    )


def _convert_opset(model: ir.Model, target: int | None) -> tuple[ir.Model, str | None]:
    """The model at `target` opset, or at MIN_OPSET when older; and a note (None: as given)."""
    current = default_opset(model.opset_imports)
    if target is None and (current is None or current >= MIN_OPSET):
        return model, None
    target = target or MIN_OPSET
    if target == current:
        return model, None
    return opset.convert(model, target), f"converted from opset {current} to {target}"


def _interface(model: ir.Model) -> tuple[dict[str, tuple], list[tuple]]:
    """Graph inputs (by name) and outputs (by position) as declared: name, type, shape."""
    inputs = {value.name: (value.type, value.shape) for value in model.graph.inputs}
    outputs = [(value.name, value.type, value.shape) for value in model.graph.outputs]
    return inputs, outputs


def _restore_interface(model: ir.Model, declared: tuple[dict[str, tuple], list[tuple]]) -> None:
    """Put back the declared dtypes and (symbolic) dims that shape inference replaced.

    Inference may name a dim `unk__1` where the model said `sequence`, or drop a dim it cannot
    infer; the graph's interface is the user's contract and stays as it was.
    """
    inputs, outputs = declared
    for value in model.graph.inputs:
        if value.name in inputs:
            value.type, value.shape = inputs[value.name]
    _merge_repeated_outputs(model, [name for name, _, _ in outputs])
    if [value.name for value in model.graph.outputs] != [name for name, _, _ in outputs]:
        raise CheckFailedError("internal error: the graph outputs were renamed or reordered")
    for value, (_, type_, shape) in zip(model.graph.outputs, outputs):
        if type_ is not None:
            value.type = type_
        # the onnx checker wants a shape on tensor graph outputs: keep an inferred one (on a
        # sequence it would be its elements', which the model did not promise)
        if shape is not None or not isinstance(value.type, ir.TensorType):
            value.shape = shape


def _merge_repeated_outputs(model: ir.Model, declared: list[str]) -> None:
    """A tensor the model lists twice as an output is one value again (passes may split it in two,
    e.g. an Identity copy named `y_1`); the copy is dropped when nothing else reads it."""
    outputs = model.graph.outputs
    first = {}
    for index, name in enumerate(declared):
        if name not in first:
            first[name] = index
            continue
        copy, value = outputs[index], outputs[first[name]]
        if copy is value:
            continue
        outputs[index] = value
        producer = copy.producer()
        if producer is not None and not copy.uses() and copy not in outputs:
            model.graph.remove(producer, safe=True)


class _Waited(futures.Future):
    """A Future waited for in short steps: between them the main thread acts on Ctrl-C and
    SIGTERM, which the kernel may hand another thread (one long wait never saw them)."""

    def result(self, timeout=None):
        while True:
            try:
                return super().result(timeout=0.1 if timeout is None else timeout)
            except futures.TimeoutError:
                if timeout is not None:
                    raise


class _Background:
    """One daemon thread running the calls submitted, in order (the original's side of the
    check, beside the passes), Ctrl-C and SIGTERM left to the main thread. As the block ends
    the calls not started are cancelled and the one under way is waited for, in short steps;
    after Ctrl-C or SIGTERM its ORT runs are stopped first (`runtime.terminate_runs`): a
    ThreadPoolExecutor's worker, joined in one wait, held them for the whole run (minutes on
    many samples)."""

    def __init__(self) -> None:
        self._calls: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="onnxslim-check", daemon=True)

    def __enter__(self) -> _Background:
        self._thread.start()
        return self

    def __exit__(self, exc_type, *_exc) -> None:
        self._closed = True
        self._calls.put(None)
        if exc_type is KeyboardInterrupt:
            terminate_runs()
        while self._thread.is_alive():
            self._thread.join(0.1)

    def submit(self, fn: Callable, *args) -> _Waited:
        future = _Waited()
        self._calls.put((future, fn, args))
        return future

    def _work(self) -> None:
        if hasattr(signal, "pthread_sigmask"):  # (POSIX) signals go to the main thread
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        while (call := self._calls.get()) is not None:
            future, fn, args = call
            if self._closed:
                future.cancel()
            elif future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args))
                except BaseException as err:  # noqa: BLE001 the caller's to raise, as an executor's
                    future.set_exception(err)


#: What a check ORT could run on the user's inputs says (not where ORT cannot run the original).
CHECK_INPUTS_HINT = "pass inputs to check on (--check-inputs, check_inputs= in Python)"
STALE_VALUE_INFO = (
    "the shapes the file's value_info gives intermediate values contradict what the model "
    "computes (a model whose input dims were edited after shape inference?): optimized without "
    "them, as the first result differed from the original"
)
#: Domains ONNX Runtime's CPU provider implements.
ORT_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml", "com.microsoft"})
#: Domains of onnxruntime-extensions' custom ops (tokenizers, image decoding, string ops).
EXTENSIONS_DOMAINS = frozenset({"ai.onnx.contrib", "com.microsoft.extensions"})


def _check(
    reference,
    prefetched: futures.Future,
    model: ir.Model,
    options: OptimizeOptions,
    written: Path | None = None,
) -> tuple[verify.CheckInputs | None, str | None]:
    """Compare on ORT (`model`, or the file it was `written` to) with the original's outputs
    (`prefetched`: verify.reference_outputs of `reference`); returns the inputs it ran on, or why
    it could not run.

    A check that cannot run (custom ops ORT lacks, inputs ORT refuses or we cannot feed) is an error
    only with `require_check`; otherwise the result says "not checked" and why, with a warning.
    """
    try:
        tolerance = (options.check_rtol, options.check_atol)
        inputs = verify.check(
            reference,
            model if written is None else written,
            tolerance=None if tolerance == (None, None) else tolerance,
            reference=prefetched.result(),
        )
    except verify.NotCheckable as err:
        reason = str(err)
        custom = _custom_domains(model)
        if custom:
            reason = (
                "the original model does not run on ONNX Runtime "
                f"(custom domain {', '.join(map(repr, custom))})"
            )
            if EXTENSIONS_DOMAINS.intersection(custom):
                reason += (
                    " as onnxslim runs it: its custom ops are onnxruntime-extensions', whose "
                    "library onnxslim does not register"
                )
        elif isinstance(err, verify.OriginalDoesNotLoad):
            _refuse_if_invalid(reference, reason)
        else:
            verify.assert_loads(model if written is None else written, reason)
            if options.check_inputs is None and not isinstance(err, verify.Nondeterministic):
                reason += f"; {CHECK_INPUTS_HINT}"  # runs on inputs onnxslim could not make: yours
    else:
        return inputs, None
    if options.require_check:
        raise CheckFailedError(f"not checked: {reason}")
    warnings.warn(f"onnxslim: not checked: {reason}", stacklevel=3)
    return None, reason


#: Models with up to this many bytes of weights have ORT's optimized graphs of the original and the
#: result compared (`lost_fusions`); ORT writes a copy of the model for each.
ORT_GRAPH_LIMIT = 256 * 1024**2


def _ort_graph(model: str | os.PathLike | ir.Model) -> OrtGraph | None:
    """`ort_graph` of `model` at ORT's level all; None when it cannot be had (ORT cannot build
    the model: the check says why; or writing its optimized graph failed): the comparison is
    advisory and never stops a result from being written."""
    try:
        with verify.model_file(model) as path:  # saved as the check saves it: no whole proto
            return ort_graph(path)
    except Exception:  # noqa: BLE001 ORT, onnx and the file system raise assorted types
        return None


#: Ops whose ONNX shape inference can be wrong where ORT's is right (an STFT's bins, which ORT then
#: refuses): a model holding one is written without the shapes inference named.
UNRELIABLE_SHAPES = frozenset({"STFT", "DFT"})


def _named_shapes_pay(model: ir.Model, original_bytes: int) -> tuple[bool, OrtGraph | None]:
    """Whether `model` is written with its main graph's named shapes (`io.named_shapes`): where
    it has some, none from an op of UNRELIABLE_SHAPES, no external data, and ORT runs the same
    ops with them as without (an fp16 EfficientNet's `unk__N` dims, one name per value, left 14
    residual Adds unfused), in a file no bigger than the original's (`original_bytes`); and ORT's
    graph of the model as it is then written, where it was built (the check compares it with the
    original's)."""
    if not io.named_shapes(model) or has_external_data(model):
        return False, None
    if any(node.op_type in UNRELIABLE_SHAPES for node in all_nodes(model)):
        return False, None
    graphs, sizes = [], []
    for named in (False, True):
        model.meta[io.NAMED_SHAPES] = named
        with verify.model_file(model) as path:
            graphs.append(_ort_graph(path))
            sizes.append(path.stat().st_size)
    lean, shaped = graphs
    same = lean is not None and shaped is not None and shaped.counts == lean.counts
    pays = same and sizes[1] <= original_bytes
    return pays, shaped if pays else lean


def _check_shapes(options: OptimizeOptions) -> dict[str, tuple[int, ...]] | None:
    """Dims for the check's inputs: `shapes`, and `input_shapes` (they must agree)."""
    shapes = dict(options.input_shapes or {})
    for name, dims in (options.shapes or {}).items():
        if name in shapes and tuple(shapes[name]) != tuple(dims):
            raise OnnxSlimError(
                f"input {name!r}: --shape {','.join(map(str, dims))} disagrees with "
                f"--input-shapes {','.join(map(str, shapes[name]))}"
            )
        shapes[name] = tuple(dims)
    return shapes or None


def _refuse_if_unloadable(reference, checker_error: str) -> None:
    """A model failing the onnx checker (`checker_error`) that ORT cannot load either is invalid:
    refuse it (a Shape with opset 15's `end` at opset 14 broke a pass, exit 3)."""
    try:
        Session(reference, what="the original model", prepack=False)
    except OnnxSlimError as err:
        raise OnnxSlimError(f"{err} (the onnx checker agrees: {checker_error})") from err


def _original_crash(reference, check: bool) -> bool:
    """Whether ONNX Runtime crashes building a session on the original (the file `reference`),
    tried in a child process; with `check`, OnnxSlimError then (nothing to check against)."""
    crash = fp16.crash_message(reference, "the model")
    if crash is not None and check:
        raise OnnxSlimError(f"{crash}; no result can be checked against it (--no-check)")
    return crash is not None


class CrashingResult(CheckFailedError):
    """ONNX Runtime crashes building a session on the lossless result (`crash`: what happened),
    where it builds one on the original; `rewrites`: the rewrite passes the run applied."""

    def __init__(self, crash: str, rewrites: Sequence[str]):
        self.crash, self.rewrites = crash, list(rewrites)
        applied = f" (rewritten with {', '.join(self.rewrites)})" if self.rewrites else ""
        super().__init__(f"{crash}{applied}; nothing was written")

    @property
    def made_again(self) -> str:
        """The note of a result made again without `rewrites`."""
        return f"{self.crash}: made again without {', '.join(self.rewrites)}"


def _refuse_if_crashing(model: ir.Model, history) -> None:
    """CrashingResult when ONNX Runtime crashes building a session on the lossless `model`, as it
    may on a float16 Transpose into a MatMul (`fp16.crash_prone`); `history`: the passes run."""
    with verify.model_file(model) as path:
        crash = fp16.crash_message(path, "the optimized model")
    if crash is not None:
        raise CrashingResult(crash, rewrites(name for _, name, _, _ in history))


def _refuse_if_invalid(reference, ort_error: str) -> None:
    """A model ORT cannot load that fails the onnx checker's full check is invalid: refuse it."""
    try:
        with _native_stdout_dropped():
            onnx.checker.check_model(os.fspath(reference), full_check=True)
    except Exception as err:
        raise OnnxSlimError(f"{ort_error} (the onnx checker agrees: {first_line(err)})") from err


def _custom_domains(model: ir.Model) -> list[str]:
    """Domains of the model's nodes ONNX Runtime lacks, model-local functions aside."""
    local = {domain for domain, _, _ in model.functions}
    return sorted(
        {
            node.domain
            for node in ir.traversal.RecursiveGraphIterator(model.graph)
            if node.domain not in ORT_DOMAINS and node.domain not in local
        }
    )


def optimize(model: ModelLike, **options) -> ir.Model:
    """Optimize a model losslessly: prune, fold, fuse to a fixed point, then verify on ONNX Runtime.

    `model` is a path, an `onnx.ModelProto` (left unchanged) or an `onnx_ir.Model` (changed in
    place). `options` are the fields of OptimizeOptions (skip, size_threshold, size_budget,
    inline_functions, target_opset, check, check_inputs, shapes, require_check, check_rtol,
    check_atol). A model that cannot be checked comes back with a warning ("not checked: ..."),
    or raises CheckFailedError with `require_check=True`.
    """
    result = optimize_with_report(model, make_options(**options))
    for warning in result.warnings:
        warnings.warn(f"onnxslim: {warning}", stacklevel=2)
    return result.model


def make_options(**options) -> OptimizeOptions:
    """OptimizeOptions from keyword arguments; an unknown name is a user error."""
    known = {field.name for field in fields(OptimizeOptions)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise OnnxSlimError(
            f"unknown option(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    if isinstance(options.get("skip"), str):
        options["skip"] = (options["skip"],)
    options["skip"] = tuple(options.get("skip", ()))
    for key in ("inputs", "outputs"):
        if options.get(key) is not None:
            options[key] = names(options[key]) or None
    for key in ("shapes", "input_shapes"):
        value = options.get(key)
        if value is not None and not isinstance(value, Mapping):
            options[key] = parse_shapes([value] if isinstance(value, str) else value)
        elif value is not None:
            options[key] = {name: tuple(int(d) for d in dims) for name, dims in value.items()}
    return OptimizeOptions(**options)


def names(items: str | Sequence[str]) -> tuple[str, ...]:
    """Value names from "a,b" or ["a", "b,c"] (repeated and comma-separated, as the CLI takes)."""
    items = [items] if isinstance(items, str) else items
    return tuple(name.strip() for item in items for name in item.split(",") if name.strip())


def save(
    model: ir.Model | onnx.ModelProto, path: str | os.PathLike, external_data: bool | None = None
) -> int:
    """Save atomically; external data (`<name>.data`) when asked or when the weights exceed 2 GB."""
    if isinstance(model, onnx.ModelProto):
        model = io.to_ir(model)
    if not isinstance(model, ir.Model):
        raise OnnxSlimError(
            f"expected an onnx_ir.Model or onnx.ModelProto, got {type(model).__name__}"
        )
    return io.save(model, path, external_data)
