"""Check inputs synthesized from the model: they run on ONNX Runtime where random inputs do not."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
from helpers import FLOAT, INT64, const, session, vi
from helpers import make_model as _make_model
from onnx import TensorProto, helper, numpy_helper

from onnxslim import synth
from onnxslim.data import input_specs, random_inputs
from onnxslim.errors import OnnxSlimError
from onnxslim.model.shapes import infer_shapes_apart
from onnxslim.runtime import Session


def make_model(*args, **kwargs):
    """Outputs of unknown shape, which the onnx checker rejects and ORT runs."""
    return _make_model(*args, check=False, **kwargs)


def run(model, feeds):
    return session(model).run(None, synth.ort_feeds(feeds))


def bert_embeddings():
    """input_ids -> a 100-row table; token_type_ids (Cast) -> 2 rows; position_ids + 2 -> 8 rows."""
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Gather", ["words", "input_ids"], ["w"]),
        helper.make_node("Cast", ["token_type_ids"], ["types32"], to=TensorProto.INT32),
        helper.make_node("Gather", ["types", "types32"], ["t"]),
        helper.make_node("Add", ["position_ids", "two"], ["shifted"]),
        helper.make_node("Gather", ["positions", "shifted"], ["p"]),
        helper.make_node("Add", ["w", "t"], ["wt"]),
        helper.make_node("Add", ["wt", "p"], ["y"]),
    ]
    weights = [
        const("words", rng.standard_normal((100, 4)).astype(np.float32)),
        const("types", rng.standard_normal((2, 4)).astype(np.float32)),
        const("positions", rng.standard_normal((8, 4)).astype(np.float32)),
        const("two", np.int64(2)),
    ]
    inputs = [
        vi("input_ids", INT64, ["batch", "seq"]),
        vi("token_type_ids", INT64, ["batch", "seq"]),
        vi("position_ids", INT64, ["batch", "seq"]),
    ]
    return make_model(nodes, inputs, [vi("y", FLOAT, None)], weights)


def test_bert_like_runs_where_random_integers_fail():
    model = bert_embeddings()
    with pytest.raises(Exception, match="out of data bounds"):
        run(model, random_inputs(input_specs(model)))
    inputs = synth.synthesize(model, {"position_ids": (1, 6)})
    assert inputs.description["token_type_ids"] == "int64[1,6] in [0, 1]"
    assert inputs.description["input_ids"] == "int64[1,6] in [0, 99]"
    assert (
        inputs.description["position_ids"] == "int64[1,6] in [0, 5]"
    )  # 8 rows, 2 added on the way
    (y,) = run(model, inputs.feeds)
    assert y.shape == (1, 6, 4)


def test_ids_of_orts_fused_embedding_span_its_tables():
    """ORT's transformer optimizer fuses a BERT's embeddings into com.microsoft's
    EmbedLayerNormalization: its word ids (through a Cast to int32) index a 100-row table, its
    segment ids a 3-row one, its position ids a 16-row one. Not bounded, they were all 0 or 1."""
    rng = np.random.default_rng(0)
    ids = ("input_ids", "token_type_ids", "position_ids")
    int32 = [helper.make_node("Cast", [name], [f"{name}32"], to=TensorProto.INT32) for name in ids]
    tables = ["words", "positions", "types", "gamma", "beta", "", "position_ids32"]
    embed = helper.make_node(
        "EmbedLayerNormalization",
        ["input_ids32", "token_type_ids32", *tables],
        ["y", "mask_index"],
        domain="com.microsoft",
    )
    weights = [
        const("words", rng.standard_normal((100, 4)).astype(np.float32)),
        const("positions", rng.standard_normal((16, 4)).astype(np.float32)),
        const("types", rng.standard_normal((3, 4)).astype(np.float32)),
        const("gamma", np.ones(4, np.float32)),
        const("beta", np.zeros(4, np.float32)),
    ]
    inputs = [vi(name, INT64, ["batch", "seq"]) for name in ids]
    model = make_model(
        [*int32, embed],
        inputs,
        [vi("y", FLOAT, None)],
        weights,
        opsets={"com.microsoft": 1},
    )
    made = synth.synthesize(model, {"input_ids": (1, 6)})
    assert made.description["input_ids"] == "int64[1,6] in [0, 99]"
    assert made.description["token_type_ids"] == "int64[1,6] in [0, 2]"
    assert made.description["position_ids"] == "int64[1,6] in [0, 15]"
    (y,) = run(model, made.feeds)[:1]
    assert y.shape == (1, 6, 4)
    # quantized by ORT's quantize_dynamic (QEmbedLayerNormalization: its int8 tables, in the same
    # slots; not tuned on: its ids were 0 or 1)
    model.graph.node[-1].op_type = "QEmbedLayerNormalization"
    del model.graph.node[-1].input[5:]
    made = synth.synthesize(model, {"input_ids": (1, 6)})
    assert made.description["input_ids"] == "int64[1,6] in [0, 99]"
    assert made.description["token_type_ids"] == "int64[1,6] in [0, 2]"


def test_bag_offsets_start_at_0_and_never_decrease():
    """torch's EmbeddingBag(tokens, offsets) exported: a Loop slices tokens[offsets[i]:offsets[i +
    1]]. Drawn as free integers the offsets ran (they came out all 0: every bag but the last
    empty, so the check compared 31 empty bags)."""
    rng = np.random.default_rng(0)
    model = make_model(
        [
            helper.make_node("Gather", ["table", "tokens"], ["rows"]),
            helper.make_node("Cast", ["offsets"], ["starts"], to=TensorProto.FLOAT),
        ],
        [vi("tokens", INT64, ["N"]), vi("offsets", INT64, ["B"])],
        [vi("rows", FLOAT, None), vi("starts", FLOAT, None)],
        [const("table", rng.standard_normal((50, 4)).astype(np.float32))],
    )
    made = synth.synthesize(model, {"tokens": (20,), "offsets": (6,)})
    offsets = made.feeds["offsets"]
    assert made.description["offsets"] == "int64[6] sorted in [0, 20] (bag offsets)"
    assert offsets[0] == 0 and (np.diff(offsets) >= 0).all() and offsets[-1] <= 20
    assert len(set(offsets.tolist())) > 2
    assert made.description["tokens"] == "int64[20] in [0, 49]"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="shape inference runs apart where forks are")
def test_shape_inference_aborting_does_not_take_the_run_down(monkeypatch):
    """onnx 1.23's shape inference aborts the process on dims too small for some models (madmom's
    onset CNN): the guesses then go on without it, on the same safe values."""
    model = bert_embeddings()
    expected = synth.synthesize(model, {"position_ids": (1, 6)}).description
    monkeypatch.setattr(onnx.shape_inference, "infer_shapes", lambda *a, **k: os.abort())
    assert synth.synthesize(model, {"position_ids": (1, 6)}).description == expected


def test_shape_inference_apart_infers():
    inferred = infer_shapes_apart(bert_embeddings())
    assert {"w", "t", "p", "shifted"} <= {v.name for v in inferred.graph.value_info}


def test_shape_inference_apart_sends_back_types_not_attribute_values():
    """A tree ensemble's millions of attribute values crossed the pipe from the child and were
    parsed again: only subgraphs are kept of the attributes, the types inferred inside them too."""
    branch = helper.make_graph(
        [
            helper.make_node("Transpose", ["x"], ["t"], perm=[1, 0]),
            helper.make_node("Neg", ["t"], ["b"]),
        ],
        "branch",
        [],
        [helper.make_tensor_value_info("b", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(
        helper.make_graph(
            [helper.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=branch)],
            "g",
            [
                helper.make_tensor_value_info("c", TensorProto.BOOL, []),
                helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3]),
            ],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        ),
        opset_imports=[helper.make_opsetid("", 17)],
    )
    (node,) = infer_shapes_apart(model).graph.node
    assert [a.name for a in node.attribute] == ["else_branch", "then_branch"]
    for attribute in node.attribute:
        assert [len(n.attribute) for n in attribute.g.node] == [0, 0]
        (t,) = (v for v in attribute.g.value_info if v.name == "t")
        assert [d.dim_value for d in t.type.tensor_type.shape.dim] == [3, 2]
    given = model.graph.node[0].attribute[0].g  # left as it was
    assert [len(n.attribute) for n in given.node] == [1, 0]


def test_ids_through_tf2onnx_negative_index_arithmetic_span_the_table():
    """tf2onnx writes a Keras embedding's `where(ids < 0, ids + rows, ids)` as
    `Cast(ids < 0) * (ids + rows) + Cast(Not(ids < 0)) * ids`: the ids still index all 49 rows."""
    nodes = [
        helper.make_node("Less", ["ids", "zero"], ["negative"]),
        helper.make_node("Not", ["negative"], ["positive"]),
        helper.make_node("Cast", ["negative"], ["negative_mask"], to=TensorProto.INT64),
        helper.make_node("Cast", ["positive"], ["positive_mask"], to=TensorProto.INT64),
        helper.make_node("Shape", ["table"], ["shape"]),
        helper.make_node("Gather", ["shape", "zero"], ["rows"]),
        helper.make_node("Add", ["ids", "rows"], ["wrapped"]),
        helper.make_node("Mul", ["negative_mask", "wrapped"], ["when_negative"]),
        helper.make_node("Mul", ["ids", "positive_mask"], ["when_positive"]),
        helper.make_node("Add", ["when_negative", "when_positive"], ["index"]),
        helper.make_node("Gather", ["table", "index"], ["y"]),
    ]
    table = np.random.default_rng(0).standard_normal((49, 4)).astype(np.float32)
    weights = [const("table", table), const("zero", np.int64(0))]
    model = make_model(nodes, [vi("ids", INT64, [1, 32])], [vi("y", FLOAT, None)], weights)
    inputs = synth.synthesize(model)
    assert inputs.description["ids"] == "int64[1,32] in [0, 48]"
    (y,) = run(model, inputs.feeds)
    assert np.array_equal(y, table[inputs.feeds["ids"]])


def test_shared_dim_names_stay_equal_and_batch_is_one():
    nodes = [
        helper.make_node("Add", ["a", "b"], ["ab"]),
        helper.make_node("Add", ["ab", "c"], ["y"]),
    ]
    model = make_model(
        nodes,
        [
            vi("a", FLOAT, ["batch", "seq", 4]),
            vi("b", FLOAT, ["batch", "seq", 4]),
            vi("c", FLOAT, ["seq", 1]),
        ],
        [vi("y", FLOAT, None)],
    )
    inputs = synth.synthesize(model)
    assert inputs.dims == {"batch": 1, "seq": synth.DEFAULT_DIM}
    assert [inputs.feeds[name].shape for name in "abc"] == [(1, 32, 4), (1, 32, 4), (32, 1)]
    run(model, inputs.feeds)
    assert synth.synthesize(model, {"c": (5, 1)}).feeds["a"].shape == (1, 5, 4)


def test_a_batch_inside_an_rnn_state_is_one():
    """`batch` leads the features and sits second in the state [layers, batch, hidden]: still 1."""
    model = make_model(
        [helper.make_node("Identity", ["x"], ["y"]), helper.make_node("Identity", ["h0"], ["h"])],
        [vi("x", FLOAT, ["batch", "time", 8]), vi("h0", FLOAT, [3, "batch", 8])],
        [vi("y", FLOAT, None), vi("h", FLOAT, None)],
    )
    inputs = synth.synthesize(model)
    assert inputs.dims == {"batch": 1, "time": synth.DEFAULT_DIM}
    assert inputs.feeds["h0"].shape == (3, 1, 8)
    # ONNX's own RNN layout, sequence first: batch leads no input
    seq_first = make_model(
        [helper.make_node("Identity", ["x"], ["y"]), helper.make_node("Identity", ["h0"], ["h"])],
        [vi("x", FLOAT, ["time", "batch", 8]), vi("h0", FLOAT, [3, "batch", 8])],
        [vi("y", FLOAT, None), vi("h", FLOAT, None)],
    )
    assert synth.synthesize(seq_first).dims["batch"] == 1


def test_given_shapes_are_checked():
    model = make_model(
        [helper.make_node("Relu", ["x"], ["y"])], [vi("x", FLOAT, ["n", 3])], [vi("y", FLOAT, None)]
    )
    with pytest.raises(OnnxSlimError, match="unknown input 'z'"):
        synth.synthesize(model, {"z": (1,)})
    with pytest.raises(OnnxSlimError, match="does not fit"):
        synth.synthesize(model, {"x": (2, 4)})


def test_string_bool_float16_and_bfloat16_inputs_run():
    nodes = [
        helper.make_node("StringNormalizer", ["s"], ["s_out"], case_change_action="NONE"),
        helper.make_node("Not", ["flag"], ["flag_out"]),
        helper.make_node("Relu", ["h"], ["h_out"]),
        helper.make_node("Cast", ["bf"], ["bf_out"], to=FLOAT),
    ]
    model = make_model(
        nodes,
        [
            vi("s", TensorProto.STRING, [3]),
            vi("flag", TensorProto.BOOL, ["n"]),
            vi("h", TensorProto.FLOAT16, ["n", 2]),
            vi("bf", TensorProto.BFLOAT16, [2]),
        ],
        [
            vi("s_out", TensorProto.STRING, None),
            vi("flag_out", TensorProto.BOOL, None),
            vi("h_out", TensorProto.FLOAT16, None),
            vi("bf_out", FLOAT, None),
        ],
    )
    inputs = synth.synthesize(model)
    feeds = inputs.feeds
    assert (
        feeds["s"].dtype == object
        and feeds["flag"].dtype == bool
        and feeds["h"].dtype == np.float16
    )
    assert inputs.description["bf"] == "bfloat16[2] ~ N(0, 1)"
    strings, flags, halves, floats = run(model, feeds)
    assert halves.dtype == np.float16
    assert list(strings) == list(feeds["s"]) and (flags == ~feeds["flag"]).all()
    np.testing.assert_array_equal(floats, feeds["bf"].astype(np.float32))


def test_sequence_and_optional_inputs_run():
    seq = helper.make_tensor_sequence_value_info("seq", FLOAT, ["n"])
    optional = helper.make_value_info(
        "opt", helper.make_optional_type_proto(helper.make_tensor_type_proto(INT64, [2]))
    )
    nodes = [
        helper.make_node("SequenceLength", ["seq"], ["length"]),
        helper.make_node("OptionalGetElement", ["opt"], ["value"]),
    ]
    model = make_model(
        nodes, [seq, optional], [vi("length", INT64, None), vi("value", INT64, None)], opset=18
    )
    inputs = synth.synthesize(model)
    assert inputs.description["seq"] == "seq(float32[32] ~ N(0, 1)) x2"
    length, value = run(model, inputs.feeds)
    assert length == synth.SEQUENCE_LENGTH and value.shape == (2,)


def test_map_inputs_are_not_feedable():
    value = helper.make_value_info(
        "m", helper.make_map_type_proto(INT64, helper.make_tensor_type_proto(FLOAT, []))
    )
    graph = helper.make_graph([helper.make_node("Identity", ["m"], ["y"])], "g", [value], [value])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(synth.NotFeedable, match="'m' has type map"):
        synth.synthesize(model)


def test_shape_and_axes_inputs_get_values_valid_for_any_data():
    nodes = [
        helper.make_node("ReduceSum", ["x", "axes"], ["r"]),
        helper.make_node("Reshape", ["x", "shape"], ["flat"]),
        helper.make_node("Slice", ["x", "starts", "ends", "slice_axes", "steps"], ["part"]),
        helper.make_node("Expand", ["x", "sizes"], ["big"]),
    ]
    ints = [vi(name, INT64, [2]) for name in ("axes", "starts", "ends", "slice_axes", "steps")]
    model = make_model(
        nodes,
        [
            vi("x", FLOAT, ["n", 3, 5]),
            *ints[:1],
            vi("shape", INT64, [3]),
            *ints[1:],
            vi("sizes", INT64, [3]),
        ],
        [vi(name, FLOAT, None) for name in ("r", "flat", "part", "big")],
        opset=18,
    )
    feeds = synth.synthesize(model).feeds
    assert feeds["axes"].tolist() == [0, 1] and feeds["shape"].tolist() == [1, 1, -1]
    assert feeds["steps"].tolist() == [1, 1]
    r, flat, part, big = run(model, feeds)
    assert (
        r.shape == (1, 1, 5)
        and flat.shape == (1, 1, 15)
        and part.shape == (1, 3, 5)
        and big.shape == (1, 3, 5)
    )


def audio_model(pad: int = 40):
    """A reflect Pad of `pad` samples each side: it needs more than `pad` samples."""
    nodes = [
        helper.make_node("Pad", ["audio", "pads"], ["padded"], mode="reflect"),
        helper.make_node("ReduceMean", ["padded"], ["y"], axes=[1], keepdims=0),
    ]
    return make_model(
        nodes,
        [vi("audio", FLOAT, ["batch", "samples"])],
        [vi("y", FLOAT, None)],
        [const("pads", np.array([0, pad, 0, pad], dtype=np.int64))],
    )


def test_retry_finds_a_length_for_a_reflect_pad():
    model = audio_model()
    sess = session(model)
    first = synth.synthesize(model)
    with pytest.raises(Exception, match="Pad"):
        sess.run(None, first.feeds)
    inputs, (y,) = synth.first_runnable(model, lambda feeds: sess.run(None, feeds))
    assert inputs.dims["batch"] == 1 and inputs.dims["samples"] > 40
    assert y.shape == (1,)


def test_retry_finds_a_length_for_a_reflect_pad_inside_an_if():
    """The Pad reads the audio from inside an If whose condition comes from another input: ORT's
    error names the If first, and the audio reaches the Pad only through the branch."""
    branch = helper.make_graph(
        [
            helper.make_node("Pad", ["audio", "pads"], ["padded"], mode="reflect"),
            helper.make_node("ReduceMean", ["padded"], ["mean"], axes=[1], keepdims=0),
        ],
        "padded",
        [],
        [vi("mean", FLOAT, None)],
    )
    plain = helper.make_graph(
        [helper.make_node("ReduceMean", ["audio"], ["mean2"], axes=[1], keepdims=0)],
        "plain",
        [],
        [vi("mean2", FLOAT, None)],
    )
    nodes = [
        helper.make_node("Greater", ["rate", "zero"], ["cond"]),
        helper.make_node("Not", ["cond"], ["pad_it"]),
        helper.make_node("If", ["pad_it"], ["y"], then_branch=branch, else_branch=plain),
    ]
    model = make_model(
        nodes,
        [vi("audio", FLOAT, ["batch", "samples"]), vi("rate", INT64, [])],
        [vi("y", FLOAT, None)],
        [const("pads", np.array([0, 40, 0, 40], np.int64)), const("zero", np.int64(5))],
    )
    sess = session(model)
    inputs, (y,) = synth.first_runnable(model, lambda feeds: sess.run(None, feeds))
    assert inputs.dims["samples"] > 40 and y.shape == (1,)


def test_retry_follows_an_input_read_only_inside_a_branch():
    """The reflect Pad is in the main graph, after an If whose branches read the audio by name:
    the audio is upstream of the Pad through the If, not only the If's condition (from `rate`,
    whose own dynamic dim cannot help)."""
    branch = helper.make_graph(
        [helper.make_node("Identity", ["audio"], ["copy"])], "b", [], [vi("copy", FLOAT, None)]
    )
    nodes = [
        helper.make_node("ReduceSum", ["rate"], ["total"], keepdims=0),
        helper.make_node("Greater", ["total", "zero"], ["cond"]),
        helper.make_node("If", ["cond"], ["chosen"], then_branch=branch, else_branch=branch),
        helper.make_node("Pad", ["chosen", "pads"], ["padded"], mode="reflect"),
        helper.make_node("ReduceMean", ["padded"], ["y"], axes=[1], keepdims=0),
    ]
    model = make_model(
        nodes,
        [vi("audio", FLOAT, ["batch", "samples"]), vi("rate", FLOAT, ["k"])],
        [vi("y", FLOAT, None)],
        [const("pads", np.array([0, 40, 0, 40], np.int64)), const("zero", np.float32(0))],
    )
    sess = session(model)
    inputs, (y,) = synth.first_runnable(model, lambda feeds: sess.run(None, feeds))
    assert inputs.dims["samples"] > 40 and y.shape == (1,)


def test_retry_sets_an_unnamed_state_batch_to_one():
    """silero-vad's inputs: audio [?, ?] and an RNN state [2, ?, 4], no dim named. The audio needs
    a length for its reflect Pad, and the state's middle dim must be the audio's batch, which no
    name tells: a retry also sets the other dims to 1."""
    nodes = [
        helper.make_node("Pad", ["audio", "pads"], ["padded"], mode="reflect"),
        helper.make_node("ReduceMean", ["padded"], ["mean"], axes=[1], keepdims=1),
        helper.make_node("Expand", ["mean", "width"], ["wide"]),
        helper.make_node("Unsqueeze", ["wide", "first"], ["layer"]),
        helper.make_node("Concat", ["layer", "state"], ["y"], axis=0),  # [1, B, 4] + [2, B', 4]
    ]
    model = make_model(
        nodes,
        [vi("audio", FLOAT, [None, None]), vi("state", FLOAT, [2, None, 4])],
        [vi("y", FLOAT, None)],
        [
            const("pads", np.array([0, 40, 0, 40], np.int64)),
            const("width", np.array([1, 4], np.int64)),
            const("first", np.array([0], np.int64)),
        ],
    )
    sess = session(model)
    inputs, (y,) = synth.first_runnable(model, lambda feeds: sess.run(None, feeds))
    assert inputs.feeds["audio"].shape[1] > 40 and inputs.feeds["state"].shape == (2, 1, 4)
    assert y.shape == (3, 1, 4)


def test_samples_are_synthesized_at_dims_the_model_runs_with():
    model = audio_model()
    sess = session(model)
    plain = synth.synthesize_samples(model, 3)
    assert {feeds["audio"].shape for feeds in plain} == {(1, 32)}  # the reflect Pad rejects these
    made = synth.synthesize_samples(model, 3, run=lambda feeds: sess.run(None, feeds))
    assert len({feeds["audio"].shape for feeds in made}) == 1 and made[0]["audio"].shape[1] > 40
    assert not np.array_equal(made[0]["audio"], made[1]["audio"])  # one seed per sample
    for feeds in made:
        sess.run(None, feeds)


def test_samples_the_model_rejects_are_drawn_again():
    """A GroupQueryAttention decoder (by hand, not tuned on): its seqlens come from the random 0/1
    attention mask, and 2 of `onnxslim bench`'s 8 draws hid more keys than it takes (exit 2,
    where the optimizer's check had run on one that fit). Here x[4] is reshaped to
    min(sum(mask), 4) elements: a mask of fewer than 4 ones fails."""
    model = _make_model(
        [
            helper.make_node("ReduceSum", ["mask"], ["ones"], keepdims=0),
            helper.make_node("Min", ["ones", "four"], ["kept"]),
            helper.make_node("Reshape", ["kept", "one"], ["size"]),
            helper.make_node("Reshape", ["x", "size"], ["y"]),
        ],
        [vi("x", FLOAT, [4]), vi("mask", INT64, [1, 8])],
        [vi("y", FLOAT, [None])],
        [const("four", np.array(4, np.int64)), const("one", np.array([1], np.int64))],
    )
    sess = session(model)
    plain = synth.synthesize_samples(model, 16)
    assert any(feeds["mask"].sum() < 4 for feeds in plain)  # (what a draw may give)
    made = synth.synthesize_samples(model, 16, run=lambda feeds: sess.run(None, feeds))
    assert len(made) == 16 and all(feeds["mask"].sum() >= 4 for feeds in made)
    assert len({feeds["mask"].tobytes() for feeds in made}) > 8  # draws, not one repeated

    def fussy(feeds):  # a model taking only masks of 6 ones or more: most draws fail
        if feeds["mask"].sum() < 6:
            raise OnnxSlimError("the model fails on ONNX Runtime: too few ones")
        return sess.run(None, feeds)

    with pytest.raises(OnnxSlimError) as caught:
        synth.synthesize_samples(model, 16, run=fussy)
    assert str(caught.value).endswith(
        " of the 32 samples onnxslim synthesized fail on the model (the model fails on ONNX "
        "Runtime: too few ones): give real samples, or the dims the model takes (--shape "
        "NAME:DIMS)"
    )


def test_candidates_are_bounded_distinct_and_try_the_numbers_in_the_error():
    model = audio_model()
    error = (
        "[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Non-zero status code returned while running "
        "Pad node. Name:'' Status Message: pad.cc:12 need 81"
    )
    tries = list(synth.candidates(model, error=error, limit=4))
    assert [t.dims["samples"] for t in tries] == [81, 1, 64, 256]
    assert all(t.dims["batch"] == 1 for t in tries)
    # No integer input: only the dims vary, the batch last; dims fixed by `shapes` never do.
    tries = [(t.dims["batch"], t.dims["samples"]) for t in synth.candidates(model)]
    assert tries == [(1, n) for n in synth.RETRY_DIMS] + [(n, n) for n in synth.RETRY_DIMS[1:]]
    assert list(synth.candidates(model, {"audio": (1, 100)})) == []


def test_failing_run_raises_its_first_error():
    model = audio_model(pad=5000)

    def run_once(feeds):
        session(model).run(None, feeds)

    with pytest.raises(Exception, match="Pad"):
        synth.first_runnable(model, run_once, limit=2)


def test_shipped_test_data_is_found(tmp_path):
    model = bert_embeddings()
    onnx.save(model, tmp_path / "model.onnx")
    assert synth.shipped_inputs(tmp_path / "model.onnx") is None
    feeds = synth.synthesize(model, seed=3).feeds
    folder = tmp_path / "test_data_set_0"
    folder.mkdir()
    # input_0.pb names the second input: the name wins over the position.
    for index, name in enumerate(["token_type_ids", "input_ids", "position_ids"]):
        (folder / f"input_{index}.pb").write_bytes(
            numpy_helper.from_array(feeds[name], name).SerializeToString()
        )
    (shipped,) = synth.shipped_inputs(tmp_path / "model.onnx")
    assert sorted(shipped) == sorted(feeds)
    for name, array in feeds.items():
        np.testing.assert_array_equal(shipped[name], array)


def test_shipped_sequence_is_read_as_a_list(tmp_path):
    seq = helper.make_tensor_sequence_value_info("seq", FLOAT, None)
    model = make_model(
        [helper.make_node("SequenceLength", ["seq"], ["n"])], [seq], [vi("n", INT64, None)]
    )
    onnx.save(model, tmp_path / "model.onnx")
    (tmp_path / "test_data_set_0").mkdir()
    items = [np.ones(2, np.float32), np.zeros(3, np.float32)]
    proto = numpy_helper.from_list(items, "seq")
    (tmp_path / "test_data_set_0" / "input_0.pb").write_bytes(proto.SerializeToString())
    (shipped,) = synth.shipped_inputs(tmp_path / "model.onnx")
    assert [a.tolist() for a in shipped["seq"]] == [[1, 1], [0, 0, 0]]
    assert run(model, shipped)[0] == 2


def test_retry_tries_the_value_an_error_asks_for():
    """AffineGrid's size[0] must be theta's batch (2): ORT says so, and the retry takes the hint."""
    model = make_model(
        [helper.make_node("AffineGrid", ["theta", "size"], ["grid"])],
        [vi("theta", FLOAT, [2, 2, 3]), vi("size", INT64, [4])],
        [vi("grid", FLOAT, None)],
        opset=20,
    )
    sess = session(model)
    inputs, (grid,) = synth.first_runnable(model, lambda feeds: sess.run(None, feeds))
    assert inputs.feeds["size"].tolist() == [2, 2, 2, 2] and grid.shape == (2, 2, 2, 2)


def traced_decoder():
    """Tokens [b, t, 64] and memory [b, s, 64], each time-major then reshaped to heads with the
    sizes the TorchScript exporter wrote at trace time (7 tokens, 5 of memory); cross attention:
    the second Reshape's input reads both."""
    nodes = [
        helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2]),
        helper.make_node("Reshape", ["xt", "x_heads"], ["q"], name="self_attn/Reshape"),
        helper.make_node("Transpose", ["memory"], ["mt"], perm=[1, 0, 2]),
        helper.make_node("ReduceMean", ["xt"], ["x_mean"], keepdims=1),
        helper.make_node("Add", ["mt", "x_mean"], ["kv"]),
        helper.make_node("Reshape", ["kv", "memory_heads"], ["k"], name="cross_attn/Reshape"),
    ]
    weights = [
        const("x_heads", np.array([7, 4, 16], np.int64)),
        const("memory_heads", np.array([5, 4, 16], np.int64)),
    ]
    inputs = [vi("x", FLOAT, ["b", "t", 64]), vi("memory", FLOAT, ["b", "s", 64])]
    return make_model(nodes, inputs, [vi("q", FLOAT, None), vi("k", FLOAT, None)], weights)


def test_retry_fits_reshapes_to_the_sizes_a_model_was_traced_at():
    model = traced_decoder()
    with pytest.raises(Exception, match=r"requested shape:\{[75],4,16\}"):
        run(model, synth.synthesize(model).feeds)
    sess = Session(model)  # its errors quote ORT's cut in the middle: the retry reads the cause
    made, (q, k) = synth.first_runnable(model, sess.run)
    assert made.dims == {"b": 1, "t": 7, "s": 5}
    assert q.shape == (7, 4, 16) and k.shape == (5, 4, 16)
    samples = synth.synthesize_samples(model, 2, run=sess.run)
    assert [sample["memory"].shape for sample in samples] == [(1, 5, 64)] * 2


def test_retry_fits_a_traced_reshape_with_an_inferred_size():
    """[T, B, 64] to [12, -1, 16]: the -1 hides the count, so T takes the 12 asked where it sits;
    the bool mask beside it gets bools whatever integers the retries try."""
    nodes = [
        helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2]),
        helper.make_node("Reshape", ["xt", "heads"], ["y"]),
        helper.make_node("Unsqueeze", ["mask", "last"], ["m"]),
        helper.make_node("Where", ["m", "zero", "x"], ["z"]),
    ]
    weights = [
        const("heads", np.array([12, -1, 16], np.int64)),
        const("last", np.array([2], np.int64)),
        const("zero", np.float32(0)),
    ]
    inputs = [vi("x", FLOAT, ["b", "t", 64]), vi("mask", TensorProto.BOOL, ["b", "t"])]
    model = make_model(nodes, inputs, [vi("y", FLOAT, None), vi("z", FLOAT, None)], weights)
    made, (y, _) = synth.first_runnable(model, Session(model).run)
    assert made.dims["t"] == 12 and y.shape == (12, 4, 16)
    error = "Input shape:{32,1,64}, requested shape:{12,-1,16}"
    tried = list(synth.candidates(model, error=error))
    assert len(tried) > 3 and all(c.feeds["mask"].dtype == bool for c in tried)


def masked_rows():
    """y = scores + log(1 - mask): -inf wherever the mask is True."""
    nodes = [
        helper.make_node("Cast", ["mask"], ["hidden"], to=TensorProto.FLOAT),
        helper.make_node("Sub", ["one", "hidden"], ["kept"]),
        helper.make_node("Log", ["kept"], ["penalty"]),
        helper.make_node("Add", ["scores", "penalty"], ["y"]),
    ]
    inputs = [vi("scores", FLOAT, ["b", 4]), vi("mask", TensorProto.BOOL, ["b", 4])]
    return make_model(nodes, inputs, [vi("y", FLOAT, None)], [const("one", np.float32(1))])


def test_retry_passes_over_inputs_whose_outputs_hold_nan():
    model = masked_rows()
    sess = Session(model)
    first = synth.synthesize(model)
    assert not np.isfinite(sess.run(first.feeds)[0]).all()  # a random mask has a True
    made, (y,) = synth.first_runnable(model, sess.run)
    assert np.isfinite(y).all() and made.dims == first.dims and not made.feeds["mask"].all()


def test_nan_from_the_data_keeps_the_inputs_at_their_size():
    """Sqrt of N(0, 1) values: one element may be finite by luck, which checks less than 32 with
    NaN where the input is negative."""
    model = make_model(
        [helper.make_node("Sqrt", ["x"], ["y"])],
        [vi("x", FLOAT, ["b", "t"])],
        [vi("y", FLOAT, None)],
    )
    made, (y,) = synth.first_runnable(model, Session(model).run)
    assert made.dims == {"b": 1, "t": 32} and not np.isfinite(y).all()


def test_a_reshape_fit_past_the_element_limit_is_not_tried():
    """A Reshape to [2**56, 1, 64]: the fit would fill 2**62 elements, so the original's failure
    is what the retry returns."""
    model = make_model(
        [
            helper.make_node("Transpose", ["x"], ["xt"], perm=[1, 0, 2]),
            helper.make_node("Reshape", ["xt", "shape"], ["y"]),
        ],
        [vi("x", FLOAT, ["b", "t", 64])],
        [vi("y", FLOAT, None)],
        [const("shape", np.array([2**56, 1, 64], np.int64))],
    )
    assert synth.synthesize(model).dims["t"] == 32
    with pytest.raises(OnnxSlimError, match="requested shape"):
        synth.first_runnable(model, Session(model).run)


@pytest.mark.parametrize(
    "dims, shape",
    [
        (["batch", 3, "h", "w"], (1, 3, 224, 224)),  # NCHW picture
        (["N", "h", "w", 3], (1, 224, 224, 3)),  # NHWC (mtcnn)
        ([1, 3, 48, "w"], (1, 3, 48, 224)),  # a text line of dynamic width
        (["batch", 1, "h", "w"], (1, 1, 224, 224)),  # a gray picture
        (["batch", 16, "h", "w"], (1, 16, 32, 32)),  # 16 channels: not a picture
        (["batch", 4, "past", 64], (1, 4, 32, 64)),  # a KV cache
        (["batch", 1, 80, "time"], (1, 1, 80, 32)),  # a spectrogram
        (["batch", 3, "t", "h", "w"], (1, 3, 32, 224, 224)),  # a video (NCTHW)
        (["batch", "t", "h", "w", 3], (1, 32, 224, 224, 3)),  # NTHWC
        (["batch", 3, "h", "w", 3], (1, 3, 224, 224, 3)),  # NTHWC, 3 frames
    ],
)
def test_samples_where_speed_counts_give_pictures_a_real_size(dims, shape):
    """nudenet (YOLOv8, [batch,3,h,w]) calibrated at 32x32 had every conv too small for int8 and
    got a "no faster" verdict; at 320x320 int8 made it 1.46x faster. The check keeps 32."""
    model = make_model(
        [helper.make_node("Relu", ["x"], ["y"])], [vi("x", FLOAT, dims)], [vi("y", FLOAT, dims)]
    )
    (sample,) = synth.synthesize_samples(model, 1)
    assert sample["x"].shape == shape
    check_shape = tuple(1 if d in ("batch", "N") else 32 if isinstance(d, str) else d for d in dims)
    assert synth.synthesize(model).feeds["x"].shape == check_shape
    ids = make_model(
        [helper.make_node("Identity", ["t"], ["u"])],
        [vi("t", INT64, ["batch", 3, "h", "w"])],
        [vi("u", INT64, ["batch", 3, "h", "w"])],
    )
    assert synth.synthesize_samples(ids, 1)[0]["t"].shape == (1, 3, 32, 32)  # not float
    mask_and_ids = make_model(
        [helper.make_node("Identity", ["mask"], ["m"]), helper.make_node("Identity", ["t"], ["u"])],
        [vi("mask", FLOAT, ["batch", 1, "seq", "seq"]), vi("t", INT64, ["batch", "seq"])],
        [vi("m", FLOAT, ["batch", 1, "seq", "seq"]), vi("u", INT64, ["batch", "seq"])],
    )
    assert synth.synthesize_samples(mask_and_ids, 1)[0]["t"].shape == (1, 32)  # token ids' seq


def test_a_mask_compared_with_one_value_takes_both_sides_of_the_test():
    """attention_mask == 0 hides a key: all 0 would hide every key (every row NaN), all 1 none."""
    nodes = [
        helper.make_node("Equal", ["attention_mask", "zero"], ["hidden"]),
        helper.make_node("Where", ["hidden", "minus_inf", "scores"], ["masked"]),
        helper.make_node("Softmax", ["masked"], ["y"], axis=-1),
    ]
    model = make_model(
        nodes,
        [vi("scores", FLOAT, ["b", "t"]), vi("attention_mask", INT64, ["b", "t"])],
        [vi("y", FLOAT, None)],
        [const("zero", np.array(0, np.int64)), const("minus_inf", np.float32(-np.inf))],
    )
    made = synth.synthesize(model)
    assert sorted(np.unique(made.feeds["attention_mask"])) == [0, 1]
    assert np.isfinite(run(model, made.feeds)[0]).all()


def test_integers_compared_with_codes_take_their_values_unless_a_use_bounds_them():
    """magika one-hots its input bytes by Equal with 0..256: inputs of 0 and 1 alone left most of
    the model untested. A use that bounds the values (a Gather's table) still wins."""
    codes = const("codes", np.arange(257, dtype=np.int32).reshape(1, 257))
    one_hot = [
        helper.make_node("Unsqueeze", ["b", "axis"], ["b1"]),
        helper.make_node("Equal", ["b1", "codes"], ["y"]),
    ]
    axis = const("axis", np.array([-1]))
    shape = [1, 64]
    model = make_model(
        one_hot,
        [vi("b", TensorProto.INT32, shape)],
        [vi("y", TensorProto.BOOL, [*shape, 257])],
        [codes, axis],
    )
    values = synth.synthesize(model).feeds["b"]
    assert values.min() >= 0 and values.max() <= 256 and values.max() > 9
    table = const("table", np.zeros((5, 2), np.float32))
    bounded = make_model(
        [*one_hot, helper.make_node("Gather", ["table", "b"], ["g"])],
        [vi("b", TensorProto.INT32, shape)],
        [vi("y", TensorProto.BOOL, [*shape, 257]), vi("g", FLOAT, [*shape, 2])],
        [codes, axis, table],
    )
    assert synth.synthesize(bounded).feeds["b"].max() <= 4


def masked_audio(length_name: str = "waveforms_lens", dims: tuple = ("batch", "N")):
    """waveforms[batch, N] masked past each item's length: y = waveforms * (arange(N) < length);
    the mean of the unmasked samples, `z`, beside it."""
    nodes = [
        helper.make_node("Shape", ["waveforms"], ["n"], start=1, end=2),
        helper.make_node("Squeeze", ["n"], ["n0"]),
        helper.make_node("Range", ["zero", "n0", "one"], ["positions"]),
        helper.make_node("Unsqueeze", [length_name, "axis"], ["limit"]),
        helper.make_node("Less", ["positions", "limit"], ["inside"]),
        helper.make_node("Cast", ["inside"], ["keep"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["waveforms", "keep"], ["y"]),
        helper.make_node("ReduceSum", ["keep"], ["z"], keepdims=0),
    ]
    return make_model(
        nodes,
        [vi("waveforms", FLOAT, list(dims)), vi(length_name, INT64, list(dims[:1]))],
        [vi("y", FLOAT, None), vi("z", FLOAT, None)],
        [const("zero", np.int64(0)), const("one", np.int64(1)), const("axis", np.array([1]))],
    )


def test_a_length_that_sizes_a_mask_holds_the_full_length():
    """torchaudio's Conformer (dynamo export, not tuned on) masks with arange(max(lengths)) >=
    lengths: a Range's limit, which alone would keep the lengths at 1; its mask beside 32 frames
    then failed and the check ran at 1 frame."""
    nodes = [
        helper.make_node("ReduceMax", ["lengths"], ["longest"], keepdims=0),
        helper.make_node("Range", ["zero", "longest", "one"], ["positions"]),
        helper.make_node("Unsqueeze", ["lengths", "axis"], ["limit"]),
        helper.make_node("GreaterOrEqual", ["positions", "limit"], ["padded"]),
        helper.make_node("Unsqueeze", ["padded", "last"], ["padded3"]),
        helper.make_node("Where", ["padded3", "zero_f", "feats"], ["y"]),
    ]
    model = make_model(
        nodes,
        [vi("feats", FLOAT, ["b", "t", 80]), vi("lengths", INT64, ["b"])],
        [vi("y", FLOAT, None)],
        [
            const("zero", np.int64(0)),
            const("one", np.int64(1)),
            const("axis", np.array([1])),
            const("last", np.array([2])),
            const("zero_f", np.float32(0)),
        ],
    )
    sess = session(model)
    made, (y,) = synth.first_runnable(model, lambda feeds: sess.run(None, feeds))
    assert made.feeds["feats"].shape == (1, 32, 80)
    assert made.feeds["lengths"].tolist() == [32]
    np.testing.assert_array_equal(y, made.feeds["feats"])
    # A length read as indices (rows of a table of 20) keeps their bound: 32 is out of range.
    indexed = make_model(
        [
            helper.make_node("Gather", ["table", "lengths"], ["row"]),
            helper.make_node("Unsqueeze", ["row", "axis"], ["row3"]),
            helper.make_node("Add", ["feats", "row3"], ["y"]),
        ],
        [vi("feats", FLOAT, ["b", "t", 8]), vi("lengths", INT64, ["b"])],
        [vi("y", FLOAT, None)],
        [const("table", np.ones((20, 8), np.float32)), const("axis", np.array([1]))],
    )
    sess = session(indexed)
    made, _ = synth.first_runnable(indexed, lambda feeds: sess.run(None, feeds))
    assert made.feeds["feats"].shape == (1, 32, 8) and made.feeds["lengths"].max() < 20


def test_a_length_input_holds_the_full_length():
    """An ASR front end's `waveforms_lens` of 0 or 1 masks all but one sample: the check and the
    calibration saw (almost) nothing. A length holds the dim it measures, at any dims."""
    model = masked_audio()
    made = synth.synthesize(model)
    assert made.feeds["waveforms_lens"].tolist() == [32]
    assert made.description["waveforms_lens"] == "int64[1] = 32 (the full length)"
    y, z = run(model, made.feeds)
    np.testing.assert_array_equal(y, made.feeds["waveforms"])
    assert float(z) == 32
    other = synth.synthesize(model, {"waveforms": (2, 100)}).feeds["waveforms_lens"]
    assert other.tolist() == [100, 100]
    # Named otherwise, an integer no use bounds stays in [0, 1].
    assert synth.synthesize(masked_audio("speaker")).feeds["speaker"].max() <= 1
    # A TTS model's text lengths measure its token ids.
    tts = make_model(
        [helper.make_node("Identity", ["text_lengths"], ["y"])],
        [vi("text", INT64, ["batch", "T"]), vi("text_lengths", INT64, ["batch"])],
        [vi("y", INT64, None)],
    )
    assert synth.synthesize(tts, {"text": (1, 7)}).feeds["text_lengths"].tolist() == [7]
    # Exported at fixed dims (torchaudio's Emformer: x[1, 21, 32], lengths[1]): the fixed length.
    assert synth.synthesize(masked_audio(dims=(1, 21))).feeds["waveforms_lens"].tolist() == [21]
    # A text line reader's widths (trueocr, not tuned on: they were 0 or 1) measure its width.
    reader = make_model(
        [helper.make_node("Identity", ["widths"], ["y"])],
        [vi("x", FLOAT, ["B", 1, "H", "W"]), vi("widths", INT64, ["B"])],
        [vi("y", INT64, None)],
    )
    assert synth.synthesize(reader, {"x": (1, 1, 48, 320)}).feeds["widths"].tolist() == [320]


def sliced_sum(start: int = 40):
    """y = the sum of the samples from `start` on: 0 for fewer samples."""
    nodes = [
        helper.make_node("Slice", ["audio", "start", "end", "axis"], ["tail"]),
        helper.make_node("ReduceSum", ["tail", "axis"], ["y"], keepdims=0),
    ]
    return make_model(
        nodes,
        [vi("audio", FLOAT, ["batch", "samples"])],
        [vi("y", FLOAT, None)],
        [
            const("start", np.array([start])),
            const("end", np.array([1 << 30])),
            const("axis", np.array([1])),
        ],
    )


def test_inputs_on_which_every_output_is_zero_are_retried():
    """At 32 samples the model runs and gives 0: a check that compares zeros says nothing, so
    other dims are tried, and the first that gives more is taken (64 here, after 1)."""
    model = sliced_sum()
    sess = session(model)
    assert run(model, synth.synthesize(model).feeds)[0].tolist() == [0]
    made, (y,) = synth.first_runnable(model, lambda feeds: sess.run(None, feeds))
    assert made.dims["samples"] == 64 and y.tolist() != [0]
    samples = synth.synthesize_samples(model, 2, run=lambda feeds: sess.run(None, feeds))
    assert {feeds["audio"].shape for feeds in samples} == {(1, 64)}
    # A model that gives zeros at every dim tried keeps the first inputs it accepted.
    never = sliced_sum(start=1 << 20)
    made, (y,) = synth.first_runnable(never, lambda feeds: session(never).run(None, feeds))
    assert made.dims["samples"] == 32 and y.tolist() == [0]


def test_a_silent_model_is_not_retried_where_a_run_would_take_long(monkeypatch):
    """torchvision's ViT-B at random init (its classifier all zeros) is silent at any batch: the
    retries at batches 64 and 16 took 40 s of a 48 s check. Alternatives expected (by elements,
    from the silent run's time) past WEAK_RETRY_SECONDS are not tried."""
    never = sliced_sum(start=1 << 20)
    sess = session(never)
    tried = []

    def run(feeds):
        tried.append(feeds["audio"].shape)
        return sess.run(None, feeds)

    synth.first_runnable(never, run)
    assert len(tried) > 1  # cheap: retried
    tried.clear()
    monkeypatch.setattr(synth, "WEAK_RETRY_SECONDS", 0.0)
    made, (y,) = synth.first_runnable(never, run)
    assert tried == [(1, 32)] and y.tolist() == [0]


def pooled_beside_rows(stride: int, rows: int):
    """A picture `x[batch, 3, h, w]` pooled along its height with `stride`, concatenated with its
    first `rows` rows: it runs only where the two heights agree."""
    return make_model(
        [
            helper.make_node("MaxPool", ["x"], ["p"], kernel_shape=[1, 1], strides=[stride, 1]),
            helper.make_node("Slice", ["x", "zero", "rows", "height"], ["first"]),
            helper.make_node("Concat", ["p", "first"], ["y"], axis=1),
        ],
        [vi("x", FLOAT, ["batch", 3, "h", "w"])],
        [vi("y", FLOAT, None)],
        [
            const("zero", np.array([0])),
            const("rows", np.array([rows])),
            const("height", np.array([2])),
        ],
    )


def test_a_picture_that_fails_at_its_size_is_retried_larger_first():
    """A text recognizer (PP-OCR rec: its height pooled to 1, then concatenated) fails at 224x224;
    its error names 2 and 4, on which it runs. Where a picture's size counts (calibration), sizes
    from 16 up are tried first (64 here), not a 2x2 picture."""
    model = pooled_beside_rows(stride=64, rows=1)
    sess = session(model)
    (sample,) = synth.synthesize_samples(model, 1, run=lambda feeds: sess.run(None, feeds))
    assert sample["x"].shape == (1, 3, 64, 64)
    made, _ = synth.first_runnable(model, lambda feeds: sess.run(None, feeds))
    assert made.feeds["x"].shape == (1, 3, 32, 32)  # the check's size runs as it is


def test_the_check_retries_a_picture_at_a_few_pixels_last():
    """A table detector (lineless-table-rec, not tuned on) fails at the check's 32x32; its error
    named 2, at which it ran, its skip Adds broadcasting size-1 dims: the check then compared a
    path the model never takes. Sizes from 16 up come first (64 here), a pixel last (its 2 rows
    sliced beside 2 pooled ones: 1 row of each at 1 pixel)."""
    model = pooled_beside_rows(stride=32, rows=2)
    sess = session(model)
    made, _ = synth.first_runnable(model, lambda feeds: sess.run(None, feeds))
    assert made.feeds["x"].shape == (1, 3, 64, 64)  # (it runs at 1 too, and at 33 to 64)


def test_the_check_retries_a_videos_frames_larger_alone():
    """S3D (torchvision, T, H and W dynamic; not tuned on) ends in an AveragePool that needs 7x7
    of its frames at 1/32 of their size: its T, H and W at 64 are too small and at 256 more than
    MAX_ELEMENTS, so the check said "not checked". Its frames' height and width grow alone."""
    model = make_model(
        [helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[2, 200, 200])],
        [vi("x", FLOAT, ["batch", 3, "t", "h", "w"])],
        [vi("y", FLOAT, None)],
    )
    sess = session(model)
    made, _ = synth.first_runnable(model, lambda feeds: sess.run(None, feeds))
    assert made.feeds["x"].shape == (1, 3, 32, 256, 256)


def cached_decoder(mask_dim: str = "total"):
    """One attention step of a decoder with a KV cache: the new tokens' keys join the cached ones
    (Concat on the length axis) and the attention mask weighs all of them, so the mask's length
    must be the cache's plus the new tokens'."""
    rng = np.random.default_rng(0)
    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["embedded"]),
        helper.make_node("Reshape", ["embedded", "heads_shape"], ["split"]),
        helper.make_node("Transpose", ["split"], ["new_key"], perm=[0, 2, 1, 3]),
        helper.make_node("Concat", ["past_key_values.0.key", "new_key"], ["present_key"], axis=2),
        helper.make_node("Cast", ["attention_mask"], ["mask_float"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mask_float", "axes"], ["mask4"]),
        helper.make_node("Mul", ["present_key", "mask4"], ["y"]),
    ]
    inputs = [
        vi("input_ids", INT64, ["batch", "seq"]),
        vi("attention_mask", INT64, ["batch", mask_dim]),
        vi("past_key_values.0.key", FLOAT, ["batch", 2, "past", 4]),
    ]
    weights = [
        const("table", rng.standard_normal((50, 8)).astype(np.float32)),
        const("heads_shape", np.array([0, 0, 2, 4])),
        const("axes", np.array([1, 3])),
    ]
    return make_model(nodes, inputs, [vi("y", FLOAT, None)], weights)


def test_a_kv_cache_decoders_mask_spans_the_cache_and_the_new_tokens():
    """Equal dims for the cache, the new tokens and the mask break every KV-cache decoder (its
    check was left out as "not checked"): the mask spans both."""
    made = synth.synthesize(cached_decoder())
    assert made.description["attention_mask"] == "int64[1,64] in [0, 1]"
    (y,) = run(cached_decoder(), made.feeds)
    assert y.shape == (1, 2, 64, 4)
    given = synth.synthesize(cached_decoder(), {"past_key_values.0.key": (1, 2, 5, 4)})
    assert given.feeds["attention_mask"].shape == (1, 5 + 32)
    # A mask over the new tokens alone (its dim is theirs) is left as it is.
    assert synth.synthesize(cached_decoder("seq")).feeds["attention_mask"].shape == (1, 32)


def test_an_encoder_mask_in_a_cached_decoder_keeps_the_encoders_length():
    """A decoder step of an encoder-decoder (Whisper, T5) has the encoder's mask beside the
    cache: it measures the encoder's states, not the cache and the new tokens."""
    model = cached_decoder()
    model.graph.input.extend(
        [
            vi("encoder_hidden_states", FLOAT, ["batch", "encoder_length", 8]),
            vi("encoder_attention_mask", INT64, ["batch", "encoder_length"]),
        ]
    )
    made = synth.synthesize(model)
    assert made.feeds["attention_mask"].shape == (1, 64)
    assert made.feeds["encoder_attention_mask"].shape == (1, 32)


def test_dims_a_broadcast_with_a_constant_requires_are_taken_and_kept():
    """madmom's onset CNN scales its [T, 80, 3] spectrogram by an [80, 3] table first, then runs
    a 7-frame conv over T: 80 and 3 come from the table, and retries move T alone."""
    rng = np.random.default_rng(0)
    model = _make_model(
        [
            helper.make_node("Mul", ["x", "scale"], ["scaled"]),
            helper.make_node("Unsqueeze", ["scaled", "axes"], ["batched"]),
            helper.make_node("Transpose", ["batched"], ["nchw"], perm=[0, 3, 1, 2]),
            helper.make_node("Conv", ["nchw", "w"], ["y"]),
        ],
        [vi("x", FLOAT, ["T", "F", "C"])],
        [vi("y", FLOAT, None)],
        [
            const("scale", rng.standard_normal((80, 3)).astype(np.float32)),
            const("axes", np.array([0], np.int64)),
            const("w", rng.standard_normal((4, 3, 7, 3)).astype(np.float32)),
        ],
        check=False,
    )
    assert synth.synthesize(model).feeds["x"].shape[1:] == (80, 3)
    made, _ = synth.first_runnable(model, lambda feeds: session(model).run(None, feeds))
    t, f, c = made.feeds["x"].shape
    assert (f, c) == (80, 3) and t >= 7


@pytest.mark.parametrize(
    ("node", "shape", "weight", "wanted"),
    [
        # an input of unknown rank into a MatMul: a vector of the weight's rows
        (helper.make_node("MatMul", ["x", "w"], ["y"]), None, (4, 3), (4,)),
        (helper.make_node("MatMul", ["x", "w"], ["y"]), ["N", "S", "F"], (2, 20, 3), (1, 32, 20)),
        (helper.make_node("Gemm", ["x", "w"], ["y"], transB=1), ["N", "F"], (3, 20), (1, 20)),
        (helper.make_node("Gemm", ["x", "w"], ["y"], transA=1), ["F", "N"], (20, 3), (20, 32)),
        (
            helper.make_node("Conv", ["x", "w"], ["y"], group=2),
            ["N", "C", 5, 5],
            (4, 3, 1, 1),
            (1, 6, 5, 5),
        ),
    ],
)
def test_an_inputs_dims_a_constant_weight_reduces_are_the_weights(node, shape, weight, wanted):
    """A feature count no name tells (an input of unknown rank, [batch, features]): the default
    32 fails the MatMul, Gemm or Conv reading it with a constant weight; the weight says it."""
    w = np.random.default_rng(0).standard_normal(weight).astype(np.float32)
    model = _make_model(
        [node], [vi("x", FLOAT, shape)], [vi("y", FLOAT, None)], [const("w", w)], check=False
    )
    made = synth.synthesize(model)
    assert made.feeds["x"].shape == wanted
    session(model).run(None, made.feeds)


def test_a_leading_dim_a_conv_needs_several_of_is_tried_above_1():
    """madmom's TCN reads [frames, bins] as a picture: its first conv needs 3 frames, and the
    frames dim, leading, is taken as a batch (1) that the retries left alone."""
    model = _make_model(
        [
            helper.make_node("Unsqueeze", ["x", "axes"], ["nchw"]),
            helper.make_node("Conv", ["nchw", "w"], ["y"]),
        ],
        [vi("x", FLOAT, ["frames", "bins"])],
        [vi("y", FLOAT, None)],
        [
            const("axes", np.array([0, 1], np.int64)),
            const("w", np.random.default_rng(0).standard_normal((2, 1, 3, 3)).astype(np.float32)),
        ],
        check=False,
    )
    made, _ = synth.first_runnable(model, lambda feeds: session(model).run(None, feeds))
    assert made.feeds["x"].shape[0] >= 3


def _two_inputs(seq: int = 32):
    """x [batch, seq] and y [batch, seq] added: one batch dim, one sequence dim of `seq`."""
    return make_model(
        [helper.make_node("Add", ["x", "y"], ["z"])],
        [vi("x", FLOAT, ["batch", "seq"]), vi("y", FLOAT, ["batch", "seq"])],
        [vi("z", FLOAT, None)],
    )


@pytest.mark.parametrize(("seq", "other"), [(32, 64), (512, 1024), (1024, 512)])
def test_other_dims_double_a_batch_and_a_length_or_halve_a_long_one(seq, other):
    model = _two_inputs()
    made = synth.first_runnable(model, lambda f: run(model, f), {"x": (1, seq)})[0]
    made = synth.Synthesized(made.feeds, made.description, {"batch": 1, "seq": seq}, made.ints)
    resized, outputs = synth.other_dims(model, made, lambda f: run(model, f))
    assert resized.feeds["x"].shape == resized.feeds["y"].shape == (2, other)
    assert outputs[0].shape == (2, other)


def test_other_dims_fall_back_to_the_batch_alone_then_the_others():
    model = _two_inputs()
    made = synth.first_runnable(model, lambda f: run(model, f))[0]
    tried = []

    def batch_only(feeds):  # a model taking other batches, not other lengths
        tried.append(feeds["x"].shape)
        if feeds["x"].shape[1] != 32:
            raise RuntimeError("length must be 32")
        return run(model, feeds)

    resized, _ = synth.other_dims(model, made, batch_only)
    assert tried == [(2, 64), (2, 32)] and resized.feeds["x"].shape == (2, 32)
    assert synth.other_dims(model, made, lambda f: 1 / 0) is None  # rejected at every dims
    fixed = synth.first_runnable(model, lambda f: run(model, f), {"x": (1, 32)})[0]
    assert synth.other_dims(model, fixed, lambda f: run(model, f), {"x": (1, 32)}) is None


def test_retry_takes_the_input_size_an_lstms_weight_fixes():
    """madmom's beat tracker: an LSTM over [frames, batch, features] whose features (266) only
    its W tells; ORT names the size third ("Input W must have shape {1,20,32}.
    Actual:{1,20,266}"), past the two sizes a retry took from an error."""
    hidden, size = 5, 266
    rng = np.random.default_rng(0)
    model = make_model(
        [helper.make_node("LSTM", ["x", "W", "R"], ["", "y"], hidden_size=hidden)],
        [vi("x", FLOAT, ["t", "b", "d"])],
        [vi("y", FLOAT, [1, "b", hidden])],
        [
            const("W", rng.normal(size=(1, 4 * hidden, size)).astype(np.float32)),
            const("R", rng.normal(size=(1, 4 * hidden, hidden)).astype(np.float32)),
        ],
    )
    made, _ = synth.first_runnable(model, Session(model).run)
    assert made.dims["d"] == size


def test_retry_fits_a_flattening_reshape_by_the_least_size_that_divides():
    """madmom's key CNN flattens [1, 24, bins] to [-1, 2520]: no dim sits where 2520 is asked,
    and 105 bins is the least that makes 24 x bins a multiple of it."""
    model = make_model(
        [helper.make_node("Reshape", ["x", "shape"], ["y"])],
        [vi("x", FLOAT, ["b", 24, "d"])],
        [vi("y", FLOAT, [None, 2520])],
        [const("shape", np.array([-1, 2520], np.int64))],
    )
    made, (y,) = synth.first_runnable(model, Session(model).run)
    assert made.dims == {"b": 1, "d": 105} and y.shape == (1, 2520)
    # the dim where the -1 sits: no size is asked there, the least that divides (15 x 24 x 7)
    model = make_model(
        [helper.make_node("Reshape", ["x", "shape"], ["y"])],
        [vi("x", FLOAT, ["d", 24, 7])],
        [vi("y", FLOAT, [None, 2520])],
        [const("shape", np.array([-1, 2520], np.int64))],
    )
    error = "Input shape:{1,24,7}, requested shape:{-1,2520}"
    assert next(synth.candidates(model, error=error)).dims == {"d": 15}
