"""The check of an optimized model against its original: fixed float tolerances, and the
original's own rounding noise for models that amplify rounding past them."""

from __future__ import annotations

import gc
import warnings

import numpy as np
import onnx
import onnx_ir as ir
import onnxruntime as ort
import pytest
from helpers import FLOAT, const, make_model, vi
from onnx import TensorProto, helper

import onnxslim
import onnxslim.optimizer
from onnxslim import verify
from onnxslim.errors import CheckFailedError
from onnxslim.model import io
from onnxslim.optimizer import CHECK_INPUTS_HINT

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
    assert "within the original's own rounding noise or precision: y (largest difference" in str(
        inputs
    )


def test_a_real_difference_in_a_well_conditioned_model_still_fails():
    original = chain([("Mul", 2.0), ("Add", 0.0)])
    shifted = chain([("Mul", 2.0), ("Add", 1e-3)])
    samples = [{"x": np.linspace(0, 1, 64, dtype=np.float32).reshape(1, 64)}]
    mismatches, inputs = verify.compare(original, shifted, samples)
    assert [m.output for m in mismatches] == ["y"]
    assert "max abs difference 0.001" in mismatches[0].detail
    assert inputs.within_noise == {}


def half_chain(scale: float, half: bool) -> object:
    """y = float32(h(x) * scale), h: a cast to float16 (`half`) or to float32 (none)."""
    to = TensorProto.FLOAT16 if half else TensorProto.FLOAT
    nodes = [
        N("Cast", ["x"], ["h"], to=to),
        N("Mul", ["h", "s"], ["m"]),
        N("Cast", ["m"], ["y"], to=TensorProto.FLOAT),
    ]
    scalar = np.array(scale, np.float16 if half else np.float32)
    return make_model(
        nodes, [vi("x", FLOAT, [1, 64])], [vi("y", FLOAT, [1, 64])], [const("s", scalar)]
    )


def test_a_model_computing_in_float16_is_compared_at_float16s_tolerance():
    """imgly's background remover casts its float32 input to float16: ORT rounds its float16
    steps differently once a Shape is folded, half a float16 unit on float32 outputs (4.6e-4 of
    them), and the lossless result was refused. A float16 unit's difference now matches, and
    says why; the same difference in a float32 model still fails."""
    samples = [{"x": np.linspace(1, 2, 64, dtype=np.float32).reshape(1, 64)}]
    step = float(np.finfo(np.float16).eps)
    original, nudged = half_chain(1.0, True), half_chain(1.0 + step, True)
    mismatches, inputs = verify.compare(original, nudged, samples)
    assert mismatches == [] and "computed in float16 or bfloat16" in inputs.within_noise["y"]
    mismatches, _ = verify.compare(half_chain(1.0, False), half_chain(1.0 + step, False), samples)
    assert [m.output for m in mismatches] == ["y"]


def test_only_outputs_computed_through_a_half_cast_get_its_tolerance():
    """A float32 output beside a float16 one keeps float32's tolerance: y = x * s off by 0.5%
    still fails though the model also casts x to float16 for z."""

    def model(scale):
        nodes = [
            N("Mul", ["x", "s"], ["y"]),
            N("Cast", ["x"], ["h"], to=TensorProto.FLOAT16),
            N("Cast", ["h"], ["z"], to=TensorProto.FLOAT),
        ]
        outputs = [vi("y", FLOAT, [1, 64]), vi("z", FLOAT, [1, 64])]
        return make_model(
            nodes, [vi("x", FLOAT, [1, 64])], outputs, [const("s", np.float32(scale))]
        )

    samples = [{"x": np.linspace(1, 2, 64, dtype=np.float32).reshape(1, 64)}]
    mismatches, _ = verify.compare(model(1.0), model(1.005), samples)
    assert [m.output for m in mismatches] == ["y"]


def test_an_infinity_of_the_other_sign_is_no_rounding_noise():
    """1 / (x - x) is +inf; 1 / -(x - x) is -inf: its tolerance (rtol times inf) let it pass.
    Measuring the original's noise on infinities warns nothing (numpy's inf - inf warning reached
    the user's stderr)."""
    plus = make_model(
        [N("Sub", ["x", "x"], ["d"]), N("Reciprocal", ["d"], ["y"])],
        [vi("x", FLOAT, [1, 64])],
        [vi("y", FLOAT, [1, 64])],
    )
    minus = make_model(
        [N("Sub", ["x", "x"], ["d"]), N("Neg", ["d"], ["n"]), N("Reciprocal", ["n"], ["y"])],
        [vi("x", FLOAT, [1, 64])],
        [vi("y", FLOAT, [1, 64])],
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        mismatches, _ = verify.compare(plus, minus, SAMPLES)
    assert [m.output for m in mismatches] == ["y"]


def test_a_difference_beyond_the_noise_of_an_ill_conditioned_model_fails():
    original = chain(ILL_CONDITIONED)
    other = chain([("Mul", 97.3), ("Sin", None), ("Add", 0.5)])
    mismatches, _ = verify.compare(original, other, SAMPLES)
    assert [m.output for m in mismatches] == ["y"]


def test_rounding_noise_of_an_identity_is_its_inputs_moved_by_a_few_units_of_rounding():
    model = chain([("Mul", 1.0)])
    ref = verify.reference_outputs(model, SAMPLES)
    (noise,) = verify.rounding_noise(model, ref, ["y"])["y"]
    step = verify.NOISE_ULPS * float(np.finfo(np.float32).eps)
    x, ulp = SAMPLES[0]["x"].astype(np.float64), np.spacing(SAMPLES[0]["x"]).astype(np.float64)
    assert noise.shape == x.shape  # element by element, to within float32's own spacing of x
    assert np.all(np.abs(noise - step * x) <= ulp)


def test_a_small_error_beside_large_values_is_no_rounding_noise():
    """The noise is element by element: a 1% error in an output's small values (YOLO's class
    scores beside its box pixels) is not excused by the rounding of its large ones."""
    samples = [{"x": np.concatenate([np.full(32, 1e4), np.full(32, 0.5)]).astype(np.float32)[None]}]
    original = chain([("Mul", 1.0)])
    wrong = chain([("Mul", 1.0), ("Add", 0.005)])
    mismatches, inputs = verify.compare(original, wrong, samples)
    assert [m.output for m in mismatches] == ["y"] and not inputs.within_noise


def test_an_output_of_another_dtype_is_no_rounding_noise():
    original = chain([("Mul", 2.0)])
    wider = make_model(
        [N("Mul", ["x", "c"], ["t"]), N("Cast", ["t"], ["y"], to=11)],
        [vi("x", FLOAT, [1, 64])],
        [vi("y", 11, [1, 64])],
        [const("c", np.float32(2.0))],
    )
    mismatches, _ = verify.compare(original, wider, SAMPLES)
    assert [m.detail for m in mismatches] == ["dtype float64 instead of float32"]


def test_elements_that_overflow_when_moved_excuse_nothing():
    """exp(88.7) is near float32's largest: moved by a few ulps it overflows to inf, which must not
    make every difference rounding noise."""
    samples = [{"x": np.full((1, 64), 88.72, np.float32)}]
    original = chain([("Exp", None)])
    tripled = chain([("Exp", None), ("Mul", 3.0)])
    mismatches, _ = verify.compare(original, tripled, samples)
    assert [m.output for m in mismatches] == ["y"]


def zipmap(scale: float):
    """Softmax scores times `scale`, as ZipMap's list of {class: probability} (scikit-learn)."""
    maps = helper.make_sequence_type_proto(
        helper.make_map_type_proto(TensorProto.INT64, helper.make_tensor_type_proto(1, []))
    )
    graph = helper.make_graph(
        [
            N("Softmax", ["x"], ["p"]),
            N("Mul", ["p", "s"], ["q"]),
            N("ZipMap", ["q"], ["y"], domain="ai.onnx.ml", classlabels_int64s=[0, 1, 2]),
        ],
        "zipmap",
        [vi("x", FLOAT, [4, 3])],
        [helper.make_value_info("y", maps)],
        [const("s", np.float32(scale))],
    )
    opsets = [helper.make_operatorsetid("", 13), helper.make_operatorsetid("ai.onnx.ml", 1)]
    return helper.make_model(graph, opset_imports=opsets, ir_version=8)


def test_zipmap_probabilities_compare_within_float_tolerance():
    """A fusion moves scikit-learn's probabilities by rounding (5e-7 in an MLP): they used to be
    compared exactly, so the default command refused such models."""
    samples = [{"x": np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)}]
    rounded, _ = verify.compare(zipmap(1.0), zipmap(1 + 1e-6), samples)
    assert rounded == []
    (wrong,) = verify.compare(zipmap(1.0), zipmap(1.01), samples)[0]
    assert wrong.output == "y" and "max abs difference" in wrong.detail


def test_outputs_the_original_gives_as_zeros_on_synthesized_inputs_are_named():
    """A length input synthesized as 0 masks everything: matching zeros says little."""
    model = make_model(
        [
            helper.make_node("Abs", ["x"], ["a"]),
            helper.make_node("Neg", ["a"], ["n"]),
            helper.make_node("Relu", ["n"], ["y"]),  # 0 whatever x is
            helper.make_node("Add", ["x", "one"], ["z"]),
        ],
        [vi("x", FLOAT, [2, 3])],
        [vi("y", FLOAT, [2, 3]), vi("z", FLOAT, [2, 3])],
        [const("one", np.array(1.0, np.float32))],
    )
    synthesized = verify.reference_outputs(model).inputs
    assert synthesized.all_zero == ["y"]
    assert str(synthesized).endswith(
        "; the original gives all zeros (or NaN) there for 'y', so the check says little about "
        "them (--check-inputs: real inputs)"
    )
    given = [{"x": np.zeros((2, 3), np.float32)}]
    assert verify.reference_outputs(model, given).inputs.all_zero == []  # the caller's choice


def test_an_output_the_original_gives_as_nan_everywhere_is_named():
    """Log(-(x * x) - 1): NaN whatever x is; NaN matching NaN checks nothing."""
    model = make_model(
        [
            helper.make_node("Mul", ["x", "x"], ["square"]),
            helper.make_node("Neg", ["square"], ["negative"]),
            helper.make_node("Sub", ["negative", "one"], ["below"]),
            helper.make_node("Log", ["below"], ["y"]),
            helper.make_node("Add", ["x", "one"], ["z"]),
        ],
        [vi("x", FLOAT, [2, 3])],
        [vi("y", FLOAT, [2, 3]), vi("z", FLOAT, [2, 3])],
        [const("one", np.array(1.0, np.float32))],
    )
    assert verify.reference_outputs(model).inputs.all_zero == ["y"]


def test_a_sample_at_other_dims_the_original_gives_nan_on_is_left_out_and_said():
    """y = x * sqrt(40 - n) over a row of n: finite at n = 32, NaN at 64."""
    model = make_model(
        [
            helper.make_node("Shape", ["x"], ["n"]),
            helper.make_node("Cast", ["n"], ["size"], to=TensorProto.FLOAT),
            helper.make_node("Sub", ["forty", "size"], ["left"]),
            helper.make_node("Sqrt", ["left"], ["scale"]),
            helper.make_node("Mul", ["x", "scale"], ["y"]),
        ],
        [vi("x", FLOAT, ["n"])],
        [vi("y", FLOAT, ["n"])],
        [const("forty", np.array([40], np.float32))],
    )
    inputs = verify.reference_outputs(model).inputs
    assert [feed["x"].shape for feed in inputs.samples] == [(32,), (32,)]  # random, zeros
    assert str(inputs).endswith(
        "; at other dynamic dims (x float32[64]) the original gives NaN or inf: not checked there"
    )


def test_a_session_with_inner_outputs_leaves_the_callers_model_as_it_is():
    proto = chain([("Mul", 2.0), ("Neg", None)])
    expected = {"t0": 2 * SAMPLES[0]["x"], "y": -2 * SAMPLES[0]["x"]}
    for model in (proto, io.from_proto(proto), proto.SerializeToString()):
        session = verify.Session(model, extra_outputs=["t0"])
        assert session.output_names == ["y", "t0"]
        for name, value in session.run_dict(SAMPLES[0]).items():
            np.testing.assert_allclose(value, expected[name])
    assert [output.name for output in proto.graph.output] == ["y"]


def log_power(epsilon: float | None, bfloat16: bool = False) -> object:
    """y = Log(x * x + epsilon) (no Add without an epsilon); `bfloat16`: x is, cast to float."""
    nodes = [N("Cast", ["x"], ["f"], to=FLOAT)] if bfloat16 else []
    source = "f" if bfloat16 else "x"
    nodes.append(N("Mul", [source, source], ["p" if epsilon else "q"]))
    if epsilon:
        nodes.append(N("Add", ["p", "e"], ["q"]))
    nodes.append(N("Log", ["q"], ["y"]))
    inits = [const("e", np.float32(epsilon))] if epsilon else []
    x = vi("x", TensorProto.BFLOAT16 if bfloat16 else FLOAT, [1, 64])
    return make_model(nodes, [x], [vi("y", FLOAT, [1, 64])], inits)


def test_synthesized_inputs_include_all_zeros_where_an_epsilon_guards_the_output():
    """Random inputs alone cannot tell Log(x^2 + 1e-10) from Log(x^2): silence can."""
    mismatches, inputs = verify.compare(log_power(1e-10), log_power(None))
    assert [m.output for m in mismatches] == ["y"]
    assert mismatches[0].detail.startswith("max abs difference inf")  # -inf against log(1e-10)
    assert len(inputs.samples) == 2 and not inputs.samples[1]["x"].any()
    assert str(inputs) == "synthesized inputs (x float32[1,64] ~ N(0, 1), then all zeros)"


def test_a_bfloat16_input_is_zeroed_too():
    mismatches, inputs = verify.compare(log_power(1e-10, True), log_power(None, True))
    assert [m.output for m in mismatches] == ["y"]
    assert str(inputs) == "synthesized inputs (x bfloat16[1,64] ~ N(0, 1), then all zeros)"


def test_zeros_the_original_gives_no_finite_output_for_are_left_out():
    mismatches, inputs = verify.compare(log_power(None), log_power(None))
    assert mismatches == [] and len(inputs.samples) == 1
    assert "then all zeros" not in str(inputs)
    assert str(inputs).endswith("; no sample of all zeros: the original gives NaN or inf there")


def instance_norm(fused: bool) -> object:
    """y = a LayerNorm over time (epsilon 1e-5) of x * w + b per channel: written out, or fused.
    On x = 0 each row is its bias: y is the residue of subtracting the mean over sqrt(1e-5)."""
    rng = np.random.default_rng(1)
    inits = [
        const("w", rng.normal(size=(1, 8, 1)).astype(np.float32)),
        const("b", rng.normal(size=(1, 8, 1)).astype(np.float32)),
    ]
    nodes = [N("Mul", ["x", "w"], ["h0"]), N("Add", ["h0", "b"], ["h"])]
    if fused:
        inits += [const("one", np.ones(100, np.float32)), const("zero", np.zeros(100, np.float32))]
        nodes.append(N("LayerNormalization", ["h", "one", "zero"], ["y"], axis=-1, epsilon=1e-5))
    else:
        inits.append(const("eps", np.float32(1e-5)))
        nodes += [
            N("ReduceMean", ["h"], ["m"], axes=[-1]),
            N("Sub", ["h", "m"], ["d"]),
            N("Mul", ["d", "d"], ["sq"]),
            N("ReduceMean", ["sq"], ["v"], axes=[-1]),
            N("Add", ["v", "eps"], ["ve"]),
            N("Sqrt", ["ve"], ["s"]),
            N("Div", ["d", "s"], ["y"]),
        ]
    return make_model(nodes, [vi("x", FLOAT, [1, 8, 100])], [vi("y", FLOAT, [1, 8, 100])], inits)


def test_zeros_an_output_is_ill_conditioned_on_match_within_its_rounding_noise():
    """The fused LayerNorm differs on the zeros sample by 3e-5 (rounding residue / sqrt(1e-5));
    the original moves as far when its zero inputs move by a few units of rounding at 1."""
    mismatches, inputs = verify.compare(instance_norm(fused=False), instance_norm(fused=True))
    assert mismatches == [] and len(inputs.samples) == 2
    assert list(inputs.within_noise) == ["y"]


def column_sums(baked: bool, rows: str | int = "n") -> object:
    """y = the sum of x's rows: ReduceSum, or (`baked`) its first row alone, as a rewrite that
    took the dynamic row count for the 1 it had on one sample would write it."""
    if baked:
        inits = [const(name, np.array([v], np.int64)) for name, v in (("s", 0), ("e", 1))]
        nodes = [N("Slice", ["x", "s", "e", "s"], ["y"])]
    else:
        inits, nodes = [const("a", np.array([0], np.int64))], [N("ReduceSum", ["x", "a"], ["y"])]
    return make_model(nodes, [vi("x", FLOAT, [rows, 4])], [vi("y", FLOAT, [1, 4])], inits)


def test_synthesized_inputs_vary_the_dynamic_dims_where_the_original_takes_them():
    """At n = 1 alone, the first row is the sum of the rows; at n = 2 it is not."""
    mismatches, inputs = verify.compare(column_sums(False), column_sums(True))
    assert [m.output for m in mismatches] == ["y"]
    assert mismatches[0].detail.endswith("(at other dynamic dims: x float32[2,4])")
    assert [s["x"].shape for s in inputs.samples] == [(1, 4), (1, 4), (2, 4)]
    assert str(inputs) == (
        "synthesized inputs (x float32[1,4] ~ N(0, 1), then all zeros, then float32[2,4] ~ N(0, 1))"
    )
    _, fixed = verify.compare(column_sums(False, rows=1), column_sums(False, rows=1))
    assert str(fixed) == "synthesized inputs (x float32[1,4] ~ N(0, 1), then all zeros)"


def test_other_dims_the_original_rejects_are_left_out():
    """x [n, 4] reshaped to [1, 4] runs at n = 1 only: the check runs there alone."""
    inits = [const("to", np.array([1, 4], np.int64))]
    nodes = [N("Reshape", ["x", "to"], ["y"])]
    one_row = make_model(nodes, [vi("x", FLOAT, ["n", 4])], [vi("y", FLOAT, [1, 4])], inits)
    mismatches, inputs = verify.compare(one_row, one_row)
    assert mismatches == [] and [s["x"].shape for s in inputs.samples] == [(1, 4), (1, 4)]
    rejected = "; no sample at other sizes of its dynamic dims: the original rejects them"
    assert rejected in str(inputs)


def test_an_output_the_original_gives_partly_as_nan_says_the_check_compares_the_rest():
    """A graph network given graphs without nodes (minimol, not tuned on) averages nothing for
    them: 97% of its output NaN on the inputs found, which the report did not say."""
    model = make_model(
        [N("Sqrt", ["x"], ["y"])], [vi("x", FLOAT, [1, 64])], [vi("y", FLOAT, [1, 64])]
    )
    inputs = verify.reference_outputs(model).inputs
    assert 0.2 < inputs.not_finite["y"] < 0.8  # the negative half of N(0, 1)
    share = f"{inputs.not_finite['y']:.0%}"
    assert f"; the original gives NaN or inf there for {share} of 'y': the check compares" in str(
        inputs
    )


def test_other_dims_the_original_takes_only_with_its_optimizations_off_are_left_out():
    """A shape traced into value_info ([1, 4]) where the input is dynamic: ORT's own rewrites (on
    by default) fold it, and the original fails at n = 2 as the result does, which was refused."""
    traced = make_model(
        [N("Relu", ["x"], ["t"]), N("Shape", ["t"], ["s"]), N("Reshape", ["x", "s"], ["y"])],
        [vi("x", FLOAT, ["n", 4])],
        [vi("y", FLOAT, ["n", 4])],
    )
    traced.graph.value_info.append(vi("t", FLOAT, [1, 4]))
    folded = make_model(
        [N("Reshape", ["x", "s"], ["y"])],
        [vi("x", FLOAT, ["n", 4])],
        [vi("y", FLOAT, ["n", 4])],
        [const("s", np.array([1, 4], np.int64))],
    )
    mismatches, inputs = verify.compare(traced, folded)
    assert mismatches == [] and [s["x"].shape for s in inputs.samples] == [(1, 4), (1, 4)]
    assert str(inputs) == (
        "synthesized inputs (x float32[1,4] ~ N(0, 1), then all zeros); at other dynamic dims "
        "(x float32[2,4]) the original itself, as ONNX Runtime runs it by default (graph "
        "optimizations on), fails: not checked there"
    )


def dropout_model(training: bool, deterministic_output: bool = True) -> object:
    """z = Dropout(x * 1, ratio 0.5, training_mode=`training`) and, with `deterministic_output`,
    y = x * 2 + 0 beside it."""
    nodes = [
        N("Mul", ["x", "one"], ["m"]),
        N("Dropout", ["m", "ratio", "training"], ["z"]),
        N("Mul", ["x", "two"], ["t"]),
        N("Add", ["t", "zero"], ["y"]),
    ]
    inits = [
        const("one", np.float32(1)),
        const("two", np.float32(2)),
        const("zero", np.float32(0)),
        const("ratio", np.float32(0.5)),
        const("training", np.bool_(training)),
    ]
    outputs = [vi("z", FLOAT, [1, 64]), vi("y", FLOAT, [1, 64])]
    if not deterministic_output:
        nodes, outputs = nodes[:2], outputs[:1]
    return make_model(nodes, [vi("x", FLOAT, [1, 64])], outputs, inits)


def test_outputs_of_a_dropout_in_training_mode_are_not_compared_the_others_are():
    """A BERT exported from a module left in train() keeps its Dropouts random: the check failed
    ("differs from the original: max abs difference 4.02", exit 1; onnxsim took it). An output
    the original gives other values for on each run is not compared, and the check says so."""
    original = dropout_model(training=True)
    optimized = onnxslim.optimize(original, check=False)
    mismatches, inputs = verify.compare(original, optimized, SAMPLES)
    assert mismatches == [] and inputs.random == ["z"]
    assert (
        "not compared: 'z' (the original gives other values on each run; random ops: 1 Dropout in "
        "training mode; a model exported in training mode? export it after model.eval())"
    ) in str(inputs)
    broken = dropout_model(training=True)
    broken.graph.initializer[1].CopyFrom(const("two", np.float32(3)))  # y: 3x, not 2x
    mismatches, _ = verify.compare(original, broken, SAMPLES)
    assert [m.output for m in mismatches] == ["y"]
    _, inputs = verify.compare(dropout_model(training=False), dropout_model(training=False))
    assert inputs.random == []  # training_mode False: deterministic, compared


def test_a_model_random_in_every_output_is_written_not_checked():
    original = dropout_model(training=True, deterministic_output=False)
    with pytest.warns(UserWarning, match="not checked: the original gives other values") as caught:
        onnxslim.optimize(original)
    assert CHECK_INPUTS_HINT not in str(caught[0].message)  # other inputs would not help


def test_a_dropout_in_training_mode_of_a_constant_is_not_folded():
    """Folded, a training-mode Dropout of a constant baked one random mask into the model; now
    that random outputs are not compared, nothing would have said so (found in review)."""
    nodes = [N("Dropout", ["c", "ratio", "training"], ["d"]), N("Add", ["x", "d"], ["y"])]
    inits = [
        const("c", np.ones((1, 64), np.float32)),
        const("ratio", np.float32(0.5)),
        const("training", np.bool_(True)),
    ]
    model = make_model(nodes, [vi("x", FLOAT, [1, 64])], [vi("y", FLOAT, [1, 64])], inits)
    with pytest.warns(UserWarning, match="not checked: the original gives other values"):
        optimized = onnxslim.optimize(model)
    assert [node.op_type for node in optimized.graph] == ["Dropout", "Add"]


def test_a_result_ort_cannot_load_is_refused_where_the_original_loads_but_fails_to_run(
    tmp_path, monkeypatch
):
    """A broken Mamba export (transformers, TorchScript) loads in ORT and fails on every input
    (its Tile's repeats computed 2-D): not checked, written; folded, the repeats made the written
    model fail at load, which the run did not say. Now an unloadable result is refused."""
    model = make_model(  # x [a, 3] reshaped to 7 elements: never runs
        [
            N("Reshape", ["x", "seven"], ["r"]),
            N("Relu", ["r"], ["y"]),
            N("Tile", ["x", "reps"], ["z"]),
        ],
        [vi("x", FLOAT, ["a", 3])],
        [vi("y", FLOAT, [7]), vi("z", FLOAT, ["a", 6])],
        [const("seven", np.array([7], np.int64)), const("reps", np.array([1, 2], np.int64))],
    )
    path, out = tmp_path / "m.onnx", tmp_path / "out.onnx"
    onnx.save(model, path)
    with pytest.warns(UserWarning, match="not checked: the original model fails on ONNX Runtime"):
        onnxslim.optimizer.optimize_with_report(path, output=out)
    assert out.exists()
    out.unlink()
    run_passes = onnxslim.optimizer.run_passes

    def then_2d_repeats(model, *args, **kwargs):  # what ORT's Tile refuses at load
        ran = run_passes(model, *args, **kwargs)
        model.graph.initializers["reps"].const_value = ir.tensor(np.array([[1, 2]], np.int64))
        return ran

    monkeypatch.setattr(onnxslim.optimizer, "run_passes", then_2d_repeats)
    originals = []  # the original's ORT sessions still alive as the result's is built
    assert_loads = verify.assert_loads

    def counting(*args):
        gc.collect()
        originals.append(
            sum(
                isinstance(o, ort.InferenceSession) and o._model_path == str(path)
                for o in gc.get_objects()
            )
        )
        return assert_loads(*args)

    monkeypatch.setattr(verify, "assert_loads", counting)
    with pytest.raises(CheckFailedError) as caught:
        onnxslim.optimizer.optimize_with_report(path, output=out)
    message = str(caught.value)
    assert message.startswith("the optimized model does not load in ONNX Runtime: ")
    assert "(the original loads; it was not checked: the original model fails on ONNX " in message
    assert not out.exists()
    assert originals == [0]  # (its error's traceback kept it: two sessions of a large model)
