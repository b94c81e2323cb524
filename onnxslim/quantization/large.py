"""INT8 of a model too large for one protobuf (2 GB): dynamic INT8 of its MatMul and Gemm weights,
its Gather tables stored in int8, worked on files. The lossless passes run first; ORT's
`quantize_dynamic` reads and writes external data; the drift is measured on the test samples with
sessions built from the files. No choice is made per node or variant (each would quantize and load
the whole model again): smoothing and the per-node fallback of `dynamic.quantize_model` are left
out, and a drift budget is checked, not sought."""

from __future__ import annotations

import dataclasses
import os
import tempfile
import warnings
from collections import Counter
from collections.abc import Collection
from pathlib import Path

import onnx
import onnx_ir as ir
import onnx_ir.passes.common as common
from onnx.external_data_helper import (
    load_external_data_for_tensor,
    set_external_data,
    uses_external_data,
)

from onnxslim.bench import latencies
from onnxslim.cpu import available_memory
from onnxslim.drift import Budget, compare_outputs, scored_drift, with_parts
from onnxslim.errors import CheckFailedError, OnnxSlimError
from onnxslim.model import external, files, io
from onnxslim.model.graph import OutputKinds, node_count, output_kinds
from onnxslim.model.stats import file_bytes
from onnxslim.quantization import dynamic
from onnxslim.quantization.caveats import (
    drift_warning,
    memory_warning,
    missed_on_test_warning,
    not_faster_note,
    parts_notes,
    saturated_outputs_warning,
    silent_outputs_warning,
)
from onnxslim.quantization.pairs import PAIR_LIMIT
from onnxslim.quantization.report import NO_INT8_MODE, QuantizeReport
from onnxslim.quantization.targets import Target, saturates_here
from onnxslim.runtime import Session

#: Weight bytes from which a model is quantized here without trying it as one protobuf.
LARGE_MODEL_BYTES = io.PROTOBUF_LIMIT
#: Memory INT8 needs here, in bytes per byte of weights: the float and INT8 sessions timed side by
#: side, quantize_dynamic's copy of the model, the INT8 model returned.
MEMORY_PER_WEIGHT_BYTE = 4
LATENCY_RUNS = 10  # each run of a model this large takes long
OVER_2GB = (
    "over 2 GB: dynamic INT8 of the MatMul and Gemm weights (ORT's quantize_dynamic on files), "
    "without smoothing, per-node fallback or calibration choices"
)
#: What a drift warning suggests here, where no node goes back to float by itself.
REMEDY = "leave the noisiest MatMuls float with --exclude-node (exclude_nodes= in Python)"


def is_large(model: ir.Model) -> bool:
    """Whether `model`'s weights are too large to quantize as one protobuf."""
    return external.weight_bytes(model) >= LARGE_MODEL_BYTES


def quantize_large(
    model, splits: tuple[list, list], notes: list[str], config, profile: Target, reason: str
) -> tuple[ir.Model, QuantizeReport]:
    """`api.quantize` for a model one protobuf cannot hold (`model`: its path, or a loaded model,
    left unchanged) on the selection and test `splits`, `notes` on them: dynamic INT8 of the
    lossless model's MatMul and Gemm weights, its drift on the test samples (the selection
    samples, or without them the test samples, hold a budget). Returns the INT8 model (in memory)
    and its report; `reason`: the target's. Its files live in a temporary folder (TMPDIR)."""
    if config.mode == "static":
        raise OnnxSlimError(
            "static INT8 holds the model as one protobuf, which cannot exceed 2 GB: use dynamic "
            "INT8 (--int8 dynamic, mode='dynamic'), which works on files"
        )
    selection, test = splits
    notes = [OVER_2GB, *notes, *_unused_options(config)]
    with (
        tempfile.TemporaryDirectory(prefix="onnxslim-int8-") as folder,
        files.terminate_as_interrupt(),  # SIGTERM removes the folder too
    ):
        folder = Path(folder)
        reference = _on_disk(model, folder)
        float_model = io.load(reference)
        short = memory_warning(
            external.weight_bytes(float_model), available_memory(), MEMORY_PER_WEIGHT_BYTE
        )
        if short:
            warnings.warn(f"onnxslim: {short}", stacklevel=4)
        nodes_before = node_count(float_model.graph)
        size_before = file_bytes(float_model, reference)
        if config.optimize:
            from onnxslim.optimizer import optimize as lossless

            float_model = lossless(float_model, check=False, **(config.optimize_options or {}))
        common.NameFixPass()(float_model)  # the names tell which nodes stayed float
        candidates, ort_names = _candidates(float_model), dynamic.ort_matmul_names(float_model)
        excluded = _excluded(candidates, config)
        excluded |= dynamic.always_float(float_model)
        unknown = sorted(set(config.exclude_nodes) - set(candidates))
        if unknown:
            notes.append(
                "--exclude-node (exclude_nodes= in Python): no MatMul, Gemm or LSTM named "
                + ", ".join(unknown)
            )
        kinds = output_kinds(float_model)  # a detector's scores are judged apart
        table_excluded = config.dynamic_excluded(float_model)
        path = folder / "float.onnx"
        ir.save(float_model, path, external_data="float.onnx.data")
        del float_model  # its weights stay mapped from the files, not held
        reduced = profile.pair_limit is not None  # 7-bit weights (ORT's reduce_range) keep to it
        if saturates_here(profile):
            notes.append(
                f"drift measured on this CPU's u8s8 kernels, which saturate full 8-bit weights "
                f"(no VNNI): the {profile.name} target computes them exactly and drifts less"
            )
        if set(candidates) - set(excluded):
            path = _dynamic_int8(path, [ort_names.get(n, n) for n in excluded], reduced)
            path, tables = _store_tables(path, table_excluded)
            notes += tables
        quantized = io.load(path)
        float_ops = (*dynamic.QUANTIZED_OPS, "Gemm")  # as they were: left float
        left = {node.name for node in quantized.graph if node.op_type in float_ops}
        done = [n for n in candidates if n not in left and ort_names.get(n, n) not in left]
        if not done:
            notes.append(_nothing_note(candidates, excluded))
        drift, judged, parts = _drift(reference, path, (selection, test), kinds)
        report = QuantizeReport(
            mode="dynamic" if done else NO_INT8_MODE,
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
            size_after=file_bytes(quantized, path),
            quantized=dict(Counter(candidates[n] for n in done)),
            kept_float={
                n: excluded.get(n, dynamic.LEFT_FLOAT) for n in candidates if n not in done
            },
            fallback=[],
            drift=drift,
            budget=str(config.max_drift) if config.max_drift else None,
            violations=[],
            notes=notes + parts,
            weight_range="minmax",
        )
        _judge(report, judged, config, (reference, path, test[0]))
        external.read_into_memory(quantized, path.with_name(f"{path.name}.data"))  # folder goes
    return quantized, report


def _judge(report: QuantizeReport, judged: dict, config, timing: tuple) -> None:
    """Hold the budget (on `judged`, the drift by split as budgets judge it), add the drift
    warnings and, where asked, time the float and INT8 files of `timing` (with the sample to time
    on) side by side."""
    _hold_budget(config.max_drift, judged, report)
    report.notes += drift_warning(
        judged["test"],
        config.max_drift,
        "test",
        report.selection_samples,
        remedy=REMEDY,
        selection_drift=judged["selection"],
    )
    report.notes += silent_outputs_warning(report.drift, "test")
    report.notes += saturated_outputs_warning(report.drift, "test")
    if not config.measure_latency:
        return
    reference, path, sample = timing
    floats, ints = latencies([reference, path], sample, LATENCY_RUNS)
    report.latency_float_ms, report.latency_int8_ms = floats.median, ints.median
    report.latency_verdict = ints.versus(floats)[1]
    note = not_faster_note(ints, floats, report.speedup, config.require_speedup)
    if not report.unquantized:
        report.notes += note


def _on_disk(model, folder: Path) -> Path:
    """`model`'s file: its path, or a copy saved in `folder` (ORT loads files; the caller's model
    stays as it is)."""
    if isinstance(model, (str, os.PathLike)):
        return Path(model)
    path = folder / "original.onnx"
    io.save(io.to_ir(model), path, external_data=True)
    return path


def _candidates(model: ir.Model) -> dict[str, str]:
    """The main graph's nodes dynamic INT8 may quantize, name -> op type: MatMuls, LSTMs, and the
    Gemms `quantize_dynamic` turns into MatMuls (`dynamic.ort_matmul_names`)."""
    gemms = dynamic.ort_matmul_names(model)
    return {
        node.name: node.op_type
        for node in model.graph
        if node.op_type in dynamic.QUANTIZED_OPS or node.name in gemms
    }


def _excluded(candidates: dict[str, str], config) -> dict[str, str]:
    """The candidates the options leave float, with why: their op type, or their name."""
    ops = config.quantize_ops
    excluded = {
        name: "op type not selected"
        for name, op in candidates.items()
        if op in config.exclude_ops or (ops is not None and op not in ops)
    }
    named = {n: "excluded by name" for n in config.exclude_nodes if n in candidates}
    return named | excluded


def _dynamic_int8(path: Path, exclude: list[str], reduced: bool) -> Path:
    """ORT's quantize_dynamic of the model file `path` (per-channel int8 MatMul weights, 7-bit
    when `reduced`), `exclude` left float; the INT8 model's file beside it."""
    target = path.with_name("int8.onnx")
    dynamic.ort_quantize_dynamic(path, target, exclude, reduce_range=reduced, external_data=True)
    return target


def _store_tables(path: Path, exclude: Collection[str]) -> tuple[Path, list[str]]:
    """`dynamic.store_tables` on the INT8 model file `path`, `exclude` left float: the tables read
    from the files (the other weights stay on disk), their int8 copies appended to its data file
    as onnx.save writes them, then the model written afresh beside it without the float tables'
    bytes (`path` and its data removed); that file, and the note on the tables. ORT's
    quantize_dynamic, asked for MatMuls, leaves them float (a GPT-2's word embedding: 0.44-0.52x
    float's file, stored 0.27x)."""
    proto = onnx.load(path, load_external_data=False)
    tables = dynamic.storable_tables(proto.graph, exclude)
    if not tables:
        return path, []
    for table in tables:
        if uses_external_data(table):
            load_external_data_for_tensor(table, os.fspath(path.parent))
            table.data_location = onnx.TensorProto.DEFAULT
            del table.external_data[:]
    note = dynamic.tables_note(proto, exclude)
    data = path.with_name(f"{path.name}.data")
    for tensor in dynamic.store_tables(proto, exclude):
        set_external_data(tensor, data.name)
    del tables  # (the float tables' bytes)
    onnx.save(proto, path)
    del proto
    stored = path.with_name("tables.onnx")
    io.save(io.load(path), stored, external_data=True)
    path.unlink()
    data.unlink()
    return stored, note


def _nothing_note(candidates: dict[str, str], excluded: dict[str, str]) -> str:
    why = (
        "the options leave every MatMul, Gemm and LSTM float"
        if candidates and len(excluded) == len(candidates)
        else "no MatMul, Gemm or LSTM reads a stored float weight"
    )
    return (
        f"warning: {why}: dynamic INT8, what a model over 2 GB gets, added nothing (the result is "
        "onnxslim's lossless model)"
    )


def _unused_options(config) -> list[str]:
    """Notes on the options given that do not apply over 2 GB."""
    unused = {
        "--per-tensor (weights per channel)": not config.per_channel,
        "--smooth on": config.smooth is True,
        f"--weight-range {config.weight_range}": config.weight_range != "minmax",
    }
    return [f"{option}: does not apply over 2 GB" for option, given in unused.items() if given]


def _drift(
    reference: Path, int8_path: Path, splits: tuple[list, list], kinds: OutputKinds
) -> tuple[dict, dict, list[str]]:
    """The INT8 model's drift from the original on the test samples of `splits` (selection,
    test); by split, the drift as budgets and warnings judge it (`drift.with_parts`: with the
    parts of each score output of `kinds`, a detector's scores apart from its boxes); and notes
    of those parts' SNRs on the test samples."""
    selection, test = splits
    runs = {}
    for path in (reference, int8_path):
        what = "the INT8 model" if path == int8_path else "the model"
        session = Session(path, threads=0, what=what)  # every core: not timed
        runs[path] = [session.run_dict(sample) for sample in (*selection, *test)]
        del session  # one model this large in memory at a time
    ref, ours, n = runs[reference], runs[int8_path], len(selection)

    def compared(r: list, o: list) -> tuple[dict, dict]:
        drift = compare_outputs(r, o)
        return drift, scored_drift(r, o, kinds, drift)

    drift, scored = compared(ref[n:], ours[n:])
    judged = {
        "selection": with_parts(*compared(ref[:n], ours[:n])) if n else {},
        "test": with_parts(drift, scored),
    }
    return drift, judged, parts_notes(scored)


def _hold_budget(budget: Budget | None, drift: dict, report: QuantizeReport) -> None:
    """A budget missed on the selection samples (none held out: the test samples) is an error,
    no node going back to float here; missed on the test samples only, a warning (`drift` by
    split, as budgets judge it)."""
    if not budget:
        return
    for_new = dataclasses.replace(budget, for_new_samples=True)  # as the selection must hold it
    held_on = drift["selection"] or drift["test"]
    missed = for_new.check(held_on) if drift["selection"] else budget.check(held_on)
    if missed:
        raise CheckFailedError(
            f"INT8 drift over budget {budget}: {missed[0]} (a model over 2 GB gets no per-node "
            f"fallback: {REMEDY})"
        )
    missed = budget.check(drift["test"]) if drift["selection"] else []
    report.test_violations = missed
    selection, test = report.selection_samples, report.test_samples
    report.notes += missed_on_test_warning(budget, selection, test, missed)
    if not missed:
        held = f"{selection} selection samples and the " if drift["selection"] else ""
        report.notes.append(f"the budget {budget} held on the {held}{test} test samples")
