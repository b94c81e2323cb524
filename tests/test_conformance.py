"""scripts/conformance.py on every ONNX backend test model ORT runs with its shipped inputs: none
refused, crashed, broken or mismatching (`python scripts/conformance.py` prints the table)."""

from __future__ import annotations

import sys

from conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
import conformance


def test_every_corpus_model_comes_out_optimized_with_the_same_outputs():
    report = conformance.run_corpus(timeout=120)
    counts = report["counts"]
    assert report["models"] > 1800 and counts["same"] > 1800
    wrong = [
        (r["name"], r["category"], r.get("reason"))
        for r in report["results"]
        if r["category"] in ("refused", "crash", "broken", "invalid", "mismatch")
    ]
    assert not wrong, wrong
    # lossless means never bigger: a few single-node models whose one node folds into bigger
    # constants (a Dropout's mask given as an output, SplitToSequence, expanded losses) are left
    assert len(report["bigger"]) <= 10, report["bigger"]
    # what stays unchecked is the few models whose synthesized inputs ORT rejects (no shipped data)
    assert counts["not_checked"] <= 10, [
        r["name"] for r in report["results"] if r["category"] == "not_checked"
    ]


def test_reasons_group_like_failures():
    first = (
        "the original model fails on ONNX Runtime: [ONNXRuntimeError] : 2 : INVALID_ARGUMENT : "
        "Non-zero status code returned while running Gather node. Name:'g1' Status Message: "
        "indices element out of data bounds, idx=8 must be within the inclusive range [-2,1]"
    )
    second = first.replace("'g1'", "'emb'").replace("idx=8", "idx=5").replace("[-2,1]", "[-5,4]")
    assert conformance.reason_key(first) == conformance.reason_key(second)
    assert conformance.reason_key(first).startswith(
        "the original model fails on ONNX Runtime: Gather: indices"
    )


def test_a_case_reports_the_bytes_its_result_grew_by():
    """Hand-built cases: a Relu chain shrinks (no `grown_bytes` above 0); a Shape of a static input
    given as an output stays as it was, never bigger; both come out `same`."""
    import numpy as np
    from helpers import FLOAT, INT64, make_model, vi
    from onnx import helper

    x = np.ones((3, 4), np.float32)
    chain = make_model(
        [helper.make_node("Identity", ["x"], ["i"]), helper.make_node("Relu", ["i"], ["y"])],
        [vi("x", FLOAT, [3, 4])],
        [vi("y", FLOAT, [3, 4])],
    )
    shape = make_model(
        [helper.make_node("Shape", ["x"], ["s"])], [vi("x", FLOAT, [3, 4])], [vi("s", INT64, [2])]
    )
    results = [
        conformance.run_case(conformance.Case(name, model, [({"x": x}, [])]))
        for name, model in (("chain", chain), ("shape", shape))
    ]
    assert [r["category"] for r in results] == ["same", "same"]
    assert results[0]["grown_bytes"] < 0 and results[1]["grown_bytes"] <= 0
