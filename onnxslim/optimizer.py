"""`optimize`: the lossless pipeline on a model, then the onnx checker and the check against the
original on ORT."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx
import onnx_ir as ir
import onnx_ir.passes.common as common

from onnxslim import verify
from onnxslim.errors import CheckFailedError, OnnxSlimError, first_line
from onnxslim.model import io
from onnxslim.model.external import onnx_c_api_view, release_external_data
from onnxslim.model.stats import ModelStats, model_stats
from onnxslim.passes.pipeline import run_passes, selected_passes
from onnxslim.passes.registry import PassOptions

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

    def to_dict(self) -> dict:
        return {
            "before": self.before.to_dict(),
            "after": self.after.to_dict(),
            "seconds": round(self.seconds, 3),
            "rounds": self.rounds,
            "passes_applied": self.applied,
            "checked": self.checked,
            "check_skipped": self.check_skipped,
        }


def _checker_error(model: ir.Model) -> str | None:
    """What the onnx checker says about the model (None: nothing); large weights are left out
    of its proto."""
    try:
        with onnx_c_api_view(model):
            common.CheckerPass()(model)
    except Exception as err:  # noqa: BLE001 the onnx checker raises assorted types
        return first_line(err)
    return None


def _checker(model: ir.Model, input_error: str | None = None) -> None:
    """The onnx checker on the result. A model the checker already rejected as given (many exported
    models run fine in ORT regardless) is left to the ORT check instead."""
    error = _checker_error(model)
    if error is not None and input_error is None:
        raise CheckFailedError(f"the optimized model fails the onnx checker: {error}")


def optimize_with_report(
    model: ModelLike,
    *,
    skip: Iterable[str] = (),
    size_threshold: int | None = None,
    check: bool = True,
    check_inputs: Sequence[dict[str, np.ndarray]] | None = None,
    shapes: dict[str, tuple[int, ...]] | None = None,
    inline_functions: bool = False,
    on_pass: Callable[[str], None] | None = None,
    source: str | os.PathLike | None = None,
) -> OptimizeResult:
    """Optimize losslessly and report before/after statistics; see `optimize`.

    `source` is the file an `onnx_ir.Model` given as `model` was just loaded from, unchanged: the
    check then runs that file as the original instead of saving a copy.
    """
    started = time.perf_counter()
    if isinstance(model, (str, os.PathLike)):
        source = model
    ir_model = io.to_ir(model)
    before = model_stats(ir_model, source)
    options = PassOptions() if size_threshold is None else PassOptions(size_threshold)
    specs = selected_passes(skip)
    skipped_check = None
    # The original as ORT loads it: its file, or a copy saved now, before the in-place passes run.
    with verify.model_file(source or model) as reference, io.quiet_library_logs():
        if inline_functions and ir_model.functions:
            if on_pass:
                on_pass("inline-functions")
            common.InlinePass()(ir_model)
            common.RemoveUnusedOpsetsPass()(ir_model)
        declared = _interface(ir_model)
        input_error = _checker_error(ir_model)
        rounds, applied = run_passes(ir_model, specs, options, on_pass)
        _restore_interface(ir_model, declared)
        _checker(ir_model, input_error)
        if check:
            if on_pass:
                on_pass("check on ONNX Runtime")
            release_external_data(ir_model)
            skipped_check = _check(reference, ir_model, check_inputs, shapes)
    return OptimizeResult(
        model=ir_model,
        before=before,
        after=model_stats(ir_model),
        seconds=time.perf_counter() - started,
        rounds=rounds,
        applied={name: count for name, count in applied.items() if count},
        checked=check and skipped_check is None,
        check_skipped=skipped_check,
    )


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
    if [value.name for value in model.graph.outputs] != [name for name, _, _ in outputs]:
        raise CheckFailedError("internal error: the graph outputs were renamed or reordered")
    for value, (_, type_, shape) in zip(model.graph.outputs, outputs):
        if type_ is not None:
            value.type = type_
        # the onnx checker wants a shape on graph outputs: keep an inferred one
        if shape is not None:
            value.shape = shape


#: Domains ONNX Runtime's CPU provider implements.
ORT_DOMAINS = frozenset({"", "ai.onnx", "ai.onnx.ml", "com.microsoft"})


def _check(reference, ir_model: ir.Model, check_inputs, shapes) -> str | None:
    """Compare on ORT; returns why the check could not run if the original uses ops ORT lacks."""
    try:
        verify.check(reference, ir_model, check_inputs, shapes)
    except verify.OriginalNotRunnable:
        local = {domain for domain, _, _ in ir_model.functions}
        custom = sorted(
            {
                node.domain
                for node in ir.traversal.RecursiveGraphIterator(ir_model.graph)
                if node.domain not in ORT_DOMAINS and node.domain not in local
            }
        )
        if not custom:
            raise
        return (
            "the original model does not run on ONNX Runtime "
            f"(custom domain {', '.join(map(repr, custom))})"
        )
    return None


def optimize(
    model: ModelLike,
    *,
    skip: Iterable[str] = (),
    size_threshold: int | None = None,
    check: bool = True,
    inline_functions: bool = False,
) -> ir.Model:
    """Optimize a model losslessly: prune, fold, fuse to a fixed point, then verify on ONNX Runtime.

    `model` is a path, an `onnx.ModelProto` (left unchanged) or an `onnx_ir.Model` (changed in
    place). `skip` names passes to leave out (see `onnxslim.passes.REGISTRY`); `size_threshold` is
    the most bytes constant folding may add per folded tensor (default 1 MiB); `check` compares the
    outputs of the original and the result on ONNX Runtime and raises CheckFailedError on a mismatch
    (models with custom-domain ops ORT cannot load are not checked); `inline_functions` inlines
    model-local functions first (by default they are kept and optimized in place).
    """
    return optimize_with_report(
        model,
        skip=skip,
        size_threshold=size_threshold,
        check=check,
        inline_functions=inline_functions,
    ).model


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
