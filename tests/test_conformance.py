"""scripts/conformance.py on a fixed sample of ONNX's backend test models: none broken."""

from __future__ import annotations

import sys

from conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
import conformance


def test_sample_of_the_corpus_is_never_broken_or_mismatching():
    report = conformance.run_corpus(sample=40, timeout=120)
    assert report["models"] == 40
    assert sum(report["counts"].values()) == 40
    assert report["counts"]["same"] > 10
    wrong = [r for r in report["results"] if r["category"] in ("broken", "mismatch")]
    assert not wrong, wrong


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
