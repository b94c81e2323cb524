"""INT8 of a model too large for one protobuf (2 GB): dynamic INT8 of its MatMul weights, worked on
files. The lossless passes run first; ORT's `quantize_dynamic` reads and writes external data; the
drift is measured on the test samples with sessions built from the files. No choice is made per
node or variant (each would quantize and load the whole model again): smoothing and the per-node
fallback of `dynamic.quantize_model` are left out, and a drift budget is checked, not sought."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path

import onnx_ir as ir
import onnx_ir.passes.common as common
from onnxruntime.quantization import QuantType, quantize_dynamic

from onnxslim.bench import latencies
from onnxslim.cpu import available_memory
from onnxslim.drift import Budget, compare_outputs
from onnxslim.errors import CheckFailedError, OnnxSlimError
from onnxslim.model import external, io
from onnxslim.model.graph import node_count
from onnxslim.model.stats import file_bytes
from onnxslim.quantization import dynamic
from onnxslim.quantization.caveats import (
    drift_warning,
    memory_warning,
    not_faster_note,
    saturated_outputs_warning,
    silent_outputs_warning,
)
from onnxslim.quantization.pairs import PAIR_LIMIT
from onnxslim.quantization.report import NO_INT8_MODE, QuantizeReport
from onnxslim.quantization.targets import Target, saturates_here
from onnxslim.runtime import Session

#: Weight bytes from which a model is quantized here: what one protobuf cannot hold (with room
#: for the graph).
LARGE_MODEL_BYTES = io.PROTOBUF_LIMIT - 64 * 1024**2
#: Memory INT8 needs here, in bytes per byte of weights: the float and INT8 sessions timed side by
#: side, quantize_dynamic's copy of the model, the INT8 model returned.
MEMORY_PER_WEIGHT_BYTE = 4
LATENCY_RUNS = 10  # each run of a model this large takes long
OVER_2GB = (
    "over 2 GB: dynamic INT8 of the MatMul weights (ORT's quantize_dynamic on files), without "
    "smoothing, per-node fallback or calibration choices"
)


def is_large(model: ir.Model) -> bool:
    """Whether `model`'s weights are too large to quantize as one protobuf."""
    return external.weight_bytes(model) >= LARGE_MODEL_BYTES


def quantize_large(
    model, splits: tuple[list, list], notes: list[str], config, profile: Target, reason: str
) -> tuple[ir.Model, QuantizeReport]:
    """`api.quantize` for a model over LARGE_MODEL_BYTES (`model`: its path, or a loaded model,
    left unchanged) on the selection and test `splits`, `notes` on them: dynamic INT8 of the
    lossless model's MatMul weights, its drift on the test samples (the selection samples hold a
    budget). Returns the INT8 model (in memory) and its report; `reason`: the target's."""
    if config.mode == "static":
        raise OnnxSlimError(
            "static INT8 holds the model as one protobuf, which cannot exceed 2 GB: use dynamic "
            "INT8 (--int8 dynamic, mode='dynamic'), which works on files"
        )
    selection, test = splits
    with tempfile.TemporaryDirectory(prefix="onnxslim-int8-") as folder:
        folder = Path(folder)
        if isinstance(model, (str, os.PathLike)):
            reference = Path(model)
        else:  # a copy on disk: ORT loads files, and the caller's model stays as it is
            reference = folder / "original.onnx"
            io.save(io.to_ir(model), reference, external_data=True)
        float_model = io.load(reference)
        if config.debug_layers:
            notes.append("per-layer errors (--debug-layers) are not measured over 2 GB")
        short = memory_warning(
            external.weight_bytes(float_model), available_memory(), MEMORY_PER_WEIGHT_BYTE
        )
        notes = [OVER_2GB, *notes] + ([f"warning: {short}"] if short else [])
        nodes_before = node_count(float_model.graph)
        size_before = file_bytes(float_model, reference)
        float_path = folder / "float.onnx"
        if config.optimize:
            from onnxslim.optimizer import optimize as lossless

            float_model = lossless(float_model, check=False, **(config.optimize_options or {}))
        common.NameFixPass()(float_model)  # the MatMuls' names tell which stayed float
        ir.save(float_model, float_path, external_data="float.onnx.data")
        matmuls = _matmul_names(float_model)
        del float_model  # its weights stay mapped from the files, not held
        int8_path = folder / "int8.onnx"
        # 7-bit weights (ORT's reduce_range) keep within the pair limit of the target's kernels
        reduced = profile.pair_limit is not None
        if saturates_here(profile):
            notes.append(
                f"drift measured on this CPU's u8s8 kernels, which saturate full 8-bit weights "
                f"(no VNNI): the {profile.name} target computes them exactly and drifts less"
            )
        with dynamic.quiet_quantizer():
            quantize_dynamic(
                float_path,
                int8_path,
                op_types_to_quantize=list(dynamic.QUANTIZED_OPS),
                per_channel=True,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=sorted(_excluded(matmuls, config)),
                reduce_range=reduced,
                use_external_data_format=True,
            )
        quantized = io.load(int8_path)
        count = len(matmuls - _matmul_names(quantized))
        if not count:
            notes.append(
                "warning: no MatMul reads a stored float weight: dynamic INT8, what a model over "
                "2 GB gets, added nothing (the result is onnxslim's lossless model)"
            )
        drift = _drift(reference, int8_path, selection, test)
        report = QuantizeReport(
            mode="dynamic" if count else NO_INT8_MODE,
            target=profile.name,
            target_reason=reason,
            method="run time",
            activation_type="uint8 (dynamic)",
            weight_pair_limit=PAIR_LIMIT if reduced else None,
            per_channel=True,
            calibration_samples=0,
            selection_samples=len(selection),
            test_samples=len(test),
            nodes_before=nodes_before,
            nodes_after=node_count(quantized.graph),
            size_before=size_before,
            size_after=file_bytes(quantized, int8_path),
            quantized={"MatMul": count} if count else {},
            kept_float=_kept_float(matmuls & _matmul_names(quantized), _excluded(matmuls, config)),
            fallback=[],
            drift=drift["test"],
            budget=str(config.max_drift) if config.max_drift else None,
            violations=[],
            notes=notes,
            weight_range="minmax",
        )
        _hold_budget(config.max_drift, drift, report)
        report.notes += drift_warning(report.drift, config.max_drift, "test", len(selection))
        report.notes += silent_outputs_warning(report.drift, "test")
        report.notes += saturated_outputs_warning(report.drift, "test")
        if config.measure_latency:
            timed = latencies({"float": reference, "int8": int8_path}, test[0], LATENCY_RUNS)
            report.latency_float_ms, report.latency_int8_ms = (t.median for t in timed)
            note = not_faster_note(timed[1], timed[0], report.speedup, config.require_speedup)
            if not report.unquantized:
                report.notes += note
        elif config.require_speedup:
            raise OnnxSlimError("require_speedup needs the latency measurement")
        external.read_into_memory(quantized, folder / "int8.onnx.data")  # the folder goes
    return quantized, report


def _drift(reference: Path, int8_path: Path, selection: list, test: list) -> dict:
    """The INT8 model's drift from the original on the selection and test samples, by split."""
    runs = {}
    for path in (reference, int8_path):
        session = Session(path, what="the INT8 model" if path == int8_path else "the model")
        runs[path] = [session.run_dict(sample) for sample in (*selection, *test)]
        del session  # one model this large in memory at a time
    ref, ours, n = runs[reference], runs[int8_path], len(selection)
    return {
        "selection": compare_outputs(ref[:n], ours[:n]) if n else {},
        "test": compare_outputs(ref[n:], ours[n:]),
    }


def _hold_budget(budget: Budget | None, drift: dict, report: QuantizeReport) -> None:
    """A budget missed on the selection samples is an error (no node goes back to float here);
    missed on the test samples only, a warning."""
    if not budget:
        return
    for_new = dataclasses.replace(budget, for_new_samples=True)  # as the selection must hold it
    missed = for_new.check(drift["selection"]) if drift["selection"] else []
    if missed:
        raise CheckFailedError(
            f"INT8 drift over budget {budget}: {missed[0]} (a model over 2 GB gets no per-node "
            "fallback: leave the noisiest MatMuls float with --exclude-node)"
        )
    missed = budget.check(report.drift)
    if missed:
        report.notes.append(
            f"warning: the budget {budget} held on the {report.selection_samples} selection "
            f"samples but not on the {report.test_samples} test samples: {missed[0]}"
        )


def _matmul_names(model: ir.Model) -> set[str]:
    return {node.name for node in model.graph if node.op_type in dynamic.QUANTIZED_OPS}


def _excluded(matmuls: set[str], config) -> dict[str, str]:
    """The MatMuls left float by the options, with why: by name, or all by op type."""
    ops = config.quantize_ops
    if "MatMul" in config.exclude_ops or (ops is not None and "MatMul" not in ops):
        return dict.fromkeys(matmuls, "op type not selected")
    return dict.fromkeys(config.exclude_nodes, "excluded by name")


def _kept_float(names: set[str], excluded: dict[str, str]) -> dict[str, str]:
    return {name: excluded.get(name, dynamic.LEFT_FLOAT) for name in sorted(names)}
