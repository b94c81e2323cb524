"""The check of an optimized model against its original: fixed float tolerances, and the
original's own rounding noise for models that amplify rounding past them."""

from __future__ import annotations

import numpy as np
from helpers import FLOAT, const, make_model, vi
from onnx import helper

from onnxslim import verify

N = helper.make_node
SAMPLES = [{"x": np.linspace(100, 200, 64, dtype=np.float32).reshape(1, 64)}]


def chain(ops: list[tuple[str, float]]) -> object:
    """y = ops applied in turn to x (each a binary op with a scalar constant, or a unary op)."""
    nodes, inits, last = [], [], "x"
    for index, (op, value) in enumerate(ops):
        out = "y" if index == len(ops) - 1 else f"t{index}"
        if value is None:
            nodes.append(N(op, [last], [out]))
        else:
            inits.append(const(f"c{index}", np.float32(value)))
            nodes.append(N(op, [last, f"c{index}"], [out]))
        last = out
    return make_model(nodes, [vi("x", FLOAT, [1, 64])], [vi("y", FLOAT, [1, 64])], inits)


# sin of a large argument: the rounding of 97.3 * x (~1e4) moves its output by ~1e-3
ILL_CONDITIONED = [("Mul", 9.73), ("Mul", 10.0), ("Sin", None)]
FOLDED = [("Mul", np.float32(9.73) * np.float32(10.0)), ("Sin", None)]


def test_a_difference_within_the_originals_rounding_noise_matches_and_says_so():
    original, folded = chain(ILL_CONDITIONED), chain(FOLDED)
    ref = verify.reference_outputs(original, SAMPLES)
    gap = float(np.max(np.abs(ref.outputs[0][0] - verify.Session(folded).run(SAMPLES[0])[0])))
    assert gap > 1e-4  # beyond the fixed tolerance of float32 (atol 1e-5, rtol 1e-4 of |y| <= 1)
    mismatches, inputs = verify.compare(original, folded, reference=ref)
    assert mismatches == []
    assert list(inputs.within_noise) == ["y"]
    assert "within the original's own rounding noise: y (largest difference" in str(inputs)


def test_a_real_difference_in_a_well_conditioned_model_still_fails():
    original = chain([("Mul", 2.0), ("Add", 0.0)])
    shifted = chain([("Mul", 2.0), ("Add", 1e-3)])
    samples = [{"x": np.linspace(0, 1, 64, dtype=np.float32).reshape(1, 64)}]
    mismatches, inputs = verify.compare(original, shifted, samples)
    assert [m.output for m in mismatches] == ["y"]
    assert "max abs difference 0.001" in mismatches[0].detail
    assert inputs.within_noise == {}


def test_a_difference_beyond_the_noise_of_an_ill_conditioned_model_fails():
    original = chain(ILL_CONDITIONED)
    other = chain([("Mul", 97.3), ("Sin", None), ("Add", 0.5)])
    mismatches, _ = verify.compare(original, other, SAMPLES)
    assert [m.output for m in mismatches] == ["y"]


def test_rounding_noise_of_an_identity_is_its_inputs_moved_by_a_few_units_of_rounding():
    model = chain([("Mul", 1.0)])
    ref = verify.reference_outputs(model, SAMPLES)
    (noise,) = verify.rounding_noise(model, ref)["y"]
    step = verify.NOISE_ULPS * float(np.finfo(np.float32).eps)
    assert step * 100 < noise <= step * 200 * 1.01  # x in [100, 200]
