"""Conformance of `onnxslim.slim` on ONNX's backend test models, checked with the inputs they ship.

Usage: python scripts/conformance.py [--sample N] [--details FILE] [--timeout SECONDS]

The corpus: every node test case of `onnx.backend.test.case.node.collect_testcases()` and the model
folders `pytorch-converted`, `pytorch-operator` and `simple` of the installed onnx wheel, each with
its inputs and expected outputs. A model is kept when ONNX Runtime runs it on those inputs and gives
the same outputs twice (random-number ops do not); the rest are counted as excluded. Each kept model
goes through `onnxslim.slim(model)` with the defaults and lands in one category:

    same         the optimized model runs on ORT and its outputs match the original's
    not_checked  as `same`, but slim warned that it did not check its result on ORT
    refused      slim raised OnnxSlimError (a clear refusal, including its own check failing)
    crash        slim raised anything else, timed out, or killed its worker process
    broken       the optimized model does not load or run on ORT with the shipped inputs
    invalid      it runs and matches, but fails the onnx checker that the original passes
    mismatch     it runs, but an output differs from the original's on ORT

Apart from the category, a case whose optimized model serializes bigger than the original is
listed under `bigger` with the bytes it grew by (lossless means never bigger).

Outputs are compared with the original model's outputs on ORT (graph optimizations off for both):
float32/64 within rtol 1e-4, atol 1e-5; float16 and bfloat16 within 1e-2; 8-bit floats within 0.1;
other types exactly; sequences and optionals element by element. The table lists the most common
reasons per category (numbers and quoted names folded together); `--details FILE` writes every
case that is not `same`, with its full reason, as JSON.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import logging
import multiprocessing
import os
import re
import sys
import time
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

CATEGORIES = ("same", "not_checked", "refused", "crash", "broken", "invalid", "mismatch")
DATA_FOLDERS = ("pytorch-converted", "pytorch-operator", "simple")
DEFAULT_TIMEOUT = 60.0

#: (rtol, atol) by numpy dtype name; integer, bool and string outputs must be equal.
TOLERANCES = {
    "float64": (1e-4, 1e-5),
    "float32": (1e-4, 1e-5),
    "float16": (1e-2, 1e-3),
    "bfloat16": (1e-2, 1e-2),
}
FLOAT8_TOLERANCE = (1e-1, 1e-1)


@dataclass
class Case:
    """A model with the inputs it ships and the outputs expected for them, a pair per data set."""

    name: str
    model: onnx.ModelProto
    data_sets: list[tuple[dict[str, Any], list[Any]]]
    rtol: float = 1e-3
    atol: float = 1e-7


# --- the corpus -----------------------------------------------------------------------------


def corpus_cases() -> list[Case]:
    """Every case of the corpus, sorted by name (`node/test_abs`, `simple/test_sequence_model1`)."""
    from onnx.backend.test.case.node import collect_testcases

    cases = []
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # the generators' own numpy overflow warnings
        node_cases = collect_testcases(None)
    for test in node_cases:
        names = _feed_names(test.model)
        data_sets = [
            (
                {name: _from_proto(value) for name, value in zip(names, inputs)},
                [_from_proto(v) for v in outputs],
            )
            for inputs, outputs in test.data_sets
        ]
        cases.append(Case(f"node/{test.name}", test.model, data_sets, test.rtol, test.atol))
    root = Path(onnx.__file__).parent / "backend" / "test" / "data"
    for folder in DATA_FOLDERS:
        for model_dir in sorted((root / folder).iterdir()):
            if (model_dir / "model.onnx").is_file():
                cases.append(_folder_case(f"{folder}/{model_dir.name}", model_dir))
    return sorted(cases, key=lambda case: case.name)


def sample_cases(cases: list[Case], sample: int | None) -> list[Case]:
    """A fixed spread of `sample` cases (every k-th by name), or all of them."""
    if sample is None or sample >= len(cases):
        return cases
    return [cases[index * len(cases) // sample] for index in range(sample)]


def _feed_names(model: onnx.ModelProto) -> list[str]:
    weights = {init.name for init in model.graph.initializer}
    return [value.name for value in model.graph.input if value.name not in weights]


def _folder_case(name: str, model_dir: Path) -> Case:
    """A model folder as ONNX's backend runner reads it: input_i.pb belongs to graph input i."""
    model = onnx.load(model_dir / "model.onnx")
    data_sets = []
    for data_dir in sorted(model_dir.glob("test_data_set_*")):
        inputs = {
            model.graph.input[i].name: _read_pb(
                data_dir / f"input_{i}.pb", model.graph.input[i].type
            )
            for i in range(len(list(data_dir.glob("input_*.pb"))))
        }
        outputs = [
            _read_pb(data_dir / f"output_{i}.pb", model.graph.output[i].type)
            for i in range(len(list(data_dir.glob("output_*.pb"))))
        ]
        data_sets.append((inputs, outputs))
    return Case(name, model, data_sets)


def _read_pb(path: Path, type_proto: onnx.TypeProto) -> Any:
    data = path.read_bytes()
    if type_proto.HasField("sequence_type"):
        return numpy_helper.to_list(onnx.SequenceProto.FromString(data))
    if type_proto.HasField("optional_type"):
        return numpy_helper.to_optional(onnx.OptionalProto.FromString(data))
    return numpy_helper.to_array(onnx.TensorProto.FromString(data))


def _from_proto(value: Any) -> Any:
    """Node cases keep tensors numpy has no dtype for as TensorProto; ml_dtypes arrays hold them."""
    if isinstance(value, onnx.TensorProto):
        return numpy_helper.to_array(value)
    if isinstance(value, list):
        return [_from_proto(item) for item in value]
    return np.asarray(value) if isinstance(value, np.generic) else value


# --- ONNX Runtime ---------------------------------------------------------------------------


def _session(model: onnx.ModelProto):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 4
    return ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


def _run(session, feeds: dict[str, Any]) -> list[Any]:
    """Outputs as numpy (ml_dtypes for bfloat16, float8, int4 ...), lists (sequences) or None."""
    feeds = {name: _ort_input(value) for name, value in feeds.items()}
    try:
        outputs = session.run(None, feeds)
    except Exception as err:
        if "No corresponding Numpy type" not in str(err):
            raise
    else:  # ORT gives 8-bit floats as uint8
        return [_declared(out, meta.type) for out, meta in zip(outputs, session.get_outputs())]
    import onnxruntime as ort

    feeds = {
        name: ort.OrtValue.ortvalue_from_numpy(value) if isinstance(value, np.ndarray) else value
        for name, value in feeds.items()
    }
    return [_ort_output(value) for value in session.run_with_ort_values(None, feeds)]


def _ort_input(value: Any) -> Any:
    """ORT's numpy bridge knows numpy's dtypes only; others go in as OrtValues of ONNX's bytes."""
    if isinstance(value, list):
        return [_ort_input(item) for item in value]
    if (
        not isinstance(value, np.ndarray)
        or value.dtype.kind != "V"
        and value.dtype.type.__module__ == "numpy"
    ):
        return value
    import onnxruntime as ort

    tensor = numpy_helper.from_array(value)
    ort_value = ort.OrtValue.ortvalue_from_shape_and_type(list(value.shape), tensor.data_type)
    if len(tensor.raw_data) != ort_value.tensor_size_in_bytes():
        raise ValueError(f"cannot feed {value.dtype} to ONNX Runtime")
    ctypes.memmove(ort_value.data_ptr(), tensor.raw_data, len(tensor.raw_data))
    return ort_value


def _declared(output: Any, ort_type: str) -> Any:
    """`output` viewed as the ml_dtypes type its ORT type (`tensor(float8e4m3fn)`) names."""
    elem_type = getattr(onnx.TensorProto, ort_type.removeprefix("tensor(")[:-1].upper(), None)
    if not isinstance(output, np.ndarray) or not isinstance(elem_type, int):
        return output
    dtype = onnx.helper.tensor_dtype_to_np_dtype(elem_type)
    if dtype.type.__module__ == "ml_dtypes" and dtype.itemsize == output.dtype.itemsize:
        return output.view(dtype)
    return output


def _ort_output(value) -> Any:
    """An OrtValue as numpy; a tensor of a type numpy lacks as ml_dtypes, from ONNX's bytes."""
    if not value.is_tensor():
        return value.numpy()
    if onnx.helper.tensor_dtype_to_np_dtype(value.element_type()).type.__module__ == "numpy":
        return value.numpy()
    raw = ctypes.string_at(value.data_ptr(), value.tensor_size_in_bytes())
    tensor = onnx.helper.make_tensor("", value.element_type(), value.shape(), raw, raw=True)
    return numpy_helper.to_array(tensor)


# --- comparison -----------------------------------------------------------------------------


def difference(
    expected: Any, actual: Any, rtol: float | None = None, atol: float | None = None
) -> str | None:
    """None when `actual` matches `expected` (tolerances by dtype unless given), else how not."""
    if expected is None or actual is None:
        return (
            None if expected is None and actual is None else "an optional is empty on one side only"
        )
    if isinstance(expected, list) or isinstance(actual, list):
        if not (isinstance(expected, list) and isinstance(actual, list)):
            return "a sequence on one side only"
        if len(expected) != len(actual):
            return f"sequence of {len(actual)} instead of {len(expected)}"
        for index, (want, got) in enumerate(zip(expected, actual)):
            problem = difference(want, got, rtol, atol)
            if problem:
                return f"item {index}: {problem}"
        return None
    expected, actual = np.asarray(expected), np.asarray(actual)
    if expected.shape != actual.shape:
        return f"shape {actual.shape} instead of {expected.shape}"
    if expected.dtype != actual.dtype:
        return f"dtype {actual.dtype} instead of {expected.dtype}"
    name = expected.dtype.name
    default = TOLERANCES.get(name, FLOAT8_TOLERANCE if name.startswith("float8") else None)
    if default is None or expected.dtype.kind in "OSU":
        same = np.array_equal(expected, actual)
        return (
            None if same else f"{int(np.sum(expected != actual))} of {expected.size} values differ"
        )
    rtol = default[0] if rtol is None else rtol
    atol = default[1] if atol is None else atol
    want, got = expected.astype(np.float64), actual.astype(np.float64)
    if np.allclose(got, want, rtol=rtol, atol=atol, equal_nan=True):
        return None
    nan = np.isnan(got) != np.isnan(want)
    if nan.any():
        return f"{int(nan.sum())} of {want.size} values NaN on one side only"
    return f"max abs difference {np.nanmax(np.abs(got - want)):.3g} (rtol {rtol:g}, atol {atol:g})"


def _first_difference(
    expected: list[Any], actual: list[Any], names: list[str], **tolerance
) -> str | None:
    if len(expected) != len(actual):
        return f"{len(actual)} outputs instead of {len(expected)}"
    for name, want, got in zip(names, expected, actual):
        problem = difference(want, got, **tolerance)
        if problem:
            return f"{name}: {problem}"
    return None


# --- one case -------------------------------------------------------------------------------


def run_case(case: Case) -> dict:
    """{name, category, reason}; category "excluded" when ORT cannot serve as the reference."""
    import onnxslim

    result = {"name": case.name, "category": "excluded", "reason": None}
    names = [output.name for output in case.model.graph.output]
    try:
        session = _session(case.model)
        reference = [_run(session, feeds) for feeds, _ in case.data_sets]
        again = [_run(session, feeds) for feeds, _ in case.data_sets]
    except Exception as err:  # noqa: BLE001 - any failure excludes the model
        return {**result, "reason": f"the original fails on ORT: {_line(err)}"}
    if any(_first_difference(a, b, names, rtol=0, atol=0) for a, b in zip(reference, again)):
        return {**result, "reason": "the original gives different outputs on two runs"}
    result["shipped_outputs_differ"] = any(
        _first_difference(shipped, got, names, rtol=case.rtol, atol=max(case.atol, 1e-5))
        for (_, shipped), got in zip(case.data_sets, reference)
    )
    with warnings.catch_warnings(record=True) as caught, _captured_logs() as logged:
        warnings.simplefilter("always")
        try:
            optimized = onnxslim.slim(case.model)
        except onnxslim.OnnxSlimError as err:
            return {**result, "category": "refused", "reason": _line(err)}
        except Exception as err:  # noqa: BLE001 - a crash is what this counts
            return {**result, "category": "crash", "reason": f"{type(err).__name__}: {_line(err)}"}
    try:
        session = _session(optimized)
        actual = [_run(session, feeds) for feeds, _ in case.data_sets]
    except Exception as err:  # noqa: BLE001 - any ORT failure means broken
        return {**result, "category": "broken", "reason": _line(err)}
    for want, got in zip(reference, actual):
        problem = _first_difference(want, got, names)
        if problem:
            return {**result, "category": "mismatch", "reason": problem}
    result["grown_bytes"] = optimized.ByteSize() - case.model.ByteSize()
    invalid = _checker_error(optimized)
    if invalid and not _checker_error(case.model):
        return {**result, "category": "invalid", "reason": invalid}
    unchecked = [
        text for text in [str(w.message) for w in caught] + logged if "check" in text.lower()
    ]
    if unchecked:
        return {**result, "category": "not_checked", "reason": _line(unchecked[0])}
    return {**result, "category": "same"}


def _checker_error(model: onnx.ModelProto) -> str | None:
    """The onnx checker's complaint about `model` (None: it passes)."""
    try:
        onnx.checker.check_model(model)
    except Exception as err:  # noqa: BLE001 - whatever the checker raises is its complaint
        return _line(err)
    return None


class _captured_logs:
    """WARNING and above records of onnxslim's loggers, as text."""

    def __enter__(self) -> list[str]:
        self.records: list[str] = []
        self.handler = logging.Handler(logging.WARNING)
        self.handler.emit = lambda record: self.records.append(record.getMessage())
        logging.getLogger("onnxslim").addHandler(self.handler)
        return self.records

    def __exit__(self, *exc) -> None:
        logging.getLogger("onnxslim").removeHandler(self.handler)


def _line(err: BaseException | str, limit: int = 400) -> str:
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0][:limit]


# --- the corpus run -------------------------------------------------------------------------


class _Worker:
    """A child process that runs cases one at a time, so that a hang or a crash costs one case."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child,), daemon=True)
        self.process.start()
        child.close()

    def run(self, case: Case, timeout: float) -> dict:
        self.conn.send(case)
        if self.conn.poll(timeout):
            try:
                return self.conn.recv()
            except EOFError:
                self.process.join(5)
                reason = f"the worker process died (exit code {self.process.exitcode})"
        else:
            reason = f"timeout after {timeout:g} s"
        self.close()
        self.__init__()
        return {"name": case.name, "category": "crash", "reason": reason}

    def close(self) -> None:
        self.process.kill()
        self.process.join()
        self.conn.close()


def _serve(conn) -> None:
    import onnxruntime as ort

    ort.set_default_logger_severity(4)
    logging.getLogger().setLevel(logging.ERROR)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)  # ORT prints the errors of the runs that fail on purpose
    warnings.simplefilter("ignore")
    while True:
        try:
            case = conn.recv()
        except EOFError:
            return
        conn.send(run_case(case))


def run_corpus(
    sample: int | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    isolate: bool = True,
    progress: bool = False,
) -> dict:
    """Run the corpus (or a fixed sample of it); returns counts, reasons and one result per case.

    With `isolate` each case runs in a worker process, bounded by `timeout` seconds; without it,
    in this process and unbounded (for a small sample in a test).
    """
    started = time.perf_counter()
    cases = sample_cases(corpus_cases(), sample)
    results = []
    worker = _Worker() if isolate else None
    try:
        for index, case in enumerate(cases):
            results.append(worker.run(case, timeout) if worker else run_case(case))
            if progress and (index + 1) % 100 == 0:
                print(
                    f"  {index + 1}/{len(cases)} ({time.perf_counter() - started:.0f} s)",
                    file=sys.stderr,
                )
    finally:
        if worker:
            worker.close()
    counts = Counter(result["category"] for result in results)
    return {
        "models": len(cases),
        "counts": {category: counts[category] for category in (*CATEGORIES, "excluded")},
        "reasons": {
            category: Counter(
                reason_key(r["reason"]) for r in results if r["category"] == category
            ).most_common()
            for category in (*CATEGORIES, "excluded")
            if category != "same"
        },
        "shipped_outputs_differ": sum(bool(r.get("shipped_outputs_differ")) for r in results),
        "bigger": sorted(
            ((r["name"], r["grown_bytes"]) for r in results if r.get("grown_bytes", 0) > 0),
            key=lambda item: -item[1],
        ),
        "seconds": round(time.perf_counter() - started, 1),
        "results": results,
    }


def reason_key(reason: str | None) -> str:
    """A reason with ORT's boilerplate cut and numbers and quoted names folded, so that like
    failures group together."""
    text = re.sub(r"\[ONNXRuntimeError\] : \d+ : \w+ : ", "", reason or "")
    text = re.sub(
        r"Non-zero status code returned while running (\w+) node\. Name:'[^']*' Status Message: ",
        r"\1: ",
        text,
    )
    text = re.sub(r"\S*\.(cc|h):\d+ ", "", text)  # ORT's source line and C++ signature
    text = re.sub(r"([\w*]+ )*onnxruntime::[\w:]+\([^)]*(\)|$)( \[with [^]]*(\]|$))? ?", "", text)
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", text)
    text = re.sub(r"\[[-\d, ]*\]|\([-\d, ]*\)", "[…]", text)
    return re.sub(r"(?<![A-Za-z_])\d+(\.\d+)?(e-?\d+)?", "N", text)[:160]


def format_table(report: dict, top: int = 5) -> str:
    """The counts per category with the `top` most common reasons of each."""
    kept = report["models"] - report["counts"]["excluded"]
    lines = [
        (
            f"{report['models']} models, {kept} run on ONNX Runtime with their shipped inputs "
            f"({report['shipped_outputs_differ']} of them not matching the shipped outputs), "
            f"{report['seconds']} s"
        ),
        "",
        f"{'category':<12} {'count':>6}",
    ]
    for category in (*CATEGORIES, "excluded"):
        lines.append(f"{category:<12} {report['counts'][category]:>6}")
        for reason, count in report["reasons"].get(category, [])[:top]:
            lines.append(f"{'':<12} {count:>6}  {reason}")
    bigger = report["bigger"]
    lines += ["", f"bigger than the original: {len(bigger)}"]
    lines += [f"{'':<12} {grown:>+6}  {name}" for name, grown in bigger[:top]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sample", type=int, help="a fixed sample of N models (every k-th by name)"
    )
    parser.add_argument(
        "--details", type=Path, help="write every case that is not `same` as JSON here"
    )
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds per model")
    parser.add_argument("--top", type=int, default=5, help="reasons listed per category")
    args = parser.parse_args(argv)
    report = run_corpus(args.sample, timeout=args.timeout, progress=True)
    print(format_table(report, args.top))
    if args.details:
        details = {key: value for key, value in report.items() if key != "results"}
        details["cases"] = [r for r in report["results"] if r["category"] != "same"]
        args.details.write_text(json.dumps(details, indent=1, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
