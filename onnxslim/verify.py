"""Check an optimized model against its original on ONNX Runtime CPU."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnx_ir as ir

from onnxslim.data import input_specs, random_inputs
from onnxslim.errors import CheckFailedError, OnnxSlimError
from onnxslim.model import io
from onnxslim.runtime import Session

#: (rtol, atol) per float dtype; other dtypes must match exactly.
TOLERANCES = {
    np.dtype(np.float64): (1e-4, 1e-5),
    np.dtype(np.float32): (1e-4, 1e-5),
    np.dtype(np.float16): (1e-2, 1e-3),
}


class NotCheckable(OnnxSlimError):
    """No comparison possible: the original does not run in ONNX Runtime, or cannot be fed."""


class OriginalDoesNotLoad(NotCheckable):
    """ONNX Runtime cannot load the original (missing kernels, custom ops, invalid graphs)."""


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


def compare(
    original: str | os.PathLike | ir.Model,
    optimized: str | os.PathLike | ir.Model,
    samples: Sequence[dict[str, np.ndarray]] | None = None,
    shapes: dict[str, tuple[int, ...]] | None = None,
) -> list[Mismatch]:
    """Run both models on the same inputs (random by default) and list the outputs that differ."""
    # One session at a time: for a large model, two live sessions would double the peak memory.
    with model_file(original) as original_path:
        reference = Session(
            original_path,
            what="the original model",
            error=NotCheckable,
            load_error=OriginalDoesNotLoad,
        )
        if samples is None:
            try:
                samples = [random_inputs(input_specs(reference.session), shapes=shapes, seed=0)]
            except OnnxSlimError as err:
                raise NotCheckable(str(err)) from err
        names = reference.output_names
        expected = [reference.run(feed) for feed in samples]
        del reference
    mismatches: dict[str, Mismatch] = {}
    with model_file(optimized) as optimized_path:
        candidate = Session(optimized_path, what="the optimized model", error=CheckFailedError)
        for feed, outputs in zip(samples, expected):
            actual = candidate.run(feed)
            if len(actual) != len(names):
                raise CheckFailedError(
                    f"the optimized model has {len(actual)} outputs instead of {len(names)}"
                )
            for name, want, got in zip(names, outputs, actual):
                problem = _difference(want, got)
                if problem and name not in mismatches:
                    mismatches[name] = Mismatch(name, problem)
        del candidate
    return list(mismatches.values())


def check(original, optimized, samples=None, shapes=None) -> None:
    """Raise CheckFailedError naming every output whose values differ beyond float rounding."""
    mismatches = compare(original, optimized, samples, shapes)
    if mismatches:
        raise CheckFailedError(
            "optimized model differs from the original: " + "; ".join(map(str, mismatches))
        )


def _difference(expected, actual) -> str | None:
    """None when equal within tolerance, else a short description of the difference."""
    expected, actual = np.asarray(expected), np.asarray(actual)
    if expected.shape != actual.shape:
        return f"shape {actual.shape} instead of {expected.shape}"
    if expected.dtype != actual.dtype:
        return f"dtype {actual.dtype} instead of {expected.dtype}"
    tolerance = TOLERANCES.get(expected.dtype)
    if tolerance is None:
        if np.array_equal(expected, actual):
            return None
        return f"{int(np.sum(expected != actual))} of {expected.size} values differ"
    rtol, atol = tolerance
    if np.allclose(actual, expected, rtol=rtol, atol=atol, equal_nan=True):
        return None
    diff = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
    return f"max abs difference {np.nanmax(diff):.3g} (rtol {rtol:g}, atol {atol:g})"
