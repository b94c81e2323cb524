"""Model input data shared by benchmark, verification and INT8 calibration.

A *sample* is one `{input_name: ndarray}` dict, fed to the model in one run. Sources:

- a folder of `.npy` files (single-input models; one sample per file, batch dim added if missing),
- a folder of `.npz` files (keys = input names; one sample per file),
- one `.npz` (or `.npy`) file of stacked samples (first axis = samples),
- a folder of images (`.jpg/.jpeg/.png/.bmp`) with a `Preprocess` spec (needs Pillow),
- `"random:N"`: N random samples (synthesized from the model when the caller gives it),
- from Python: any iterable of dicts, or an object with ORT's CalibrationDataReader `get_next()`.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import ml_dtypes
import numpy as np
import onnx

from onnxslim.errors import OnnxSlimError, first_line
from onnxslim.synth import synthesize_samples

Dim = int | str | None
Sample = dict[str, np.ndarray]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
DEFAULT_DIM = 32

_ORT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(int16)": np.int16,
    "tensor(uint16)": np.uint16,
    "tensor(int32)": np.int32,
    "tensor(uint32)": np.uint32,
    "tensor(int64)": np.int64,
    "tensor(uint64)": np.uint64,
    "tensor(bool)": np.bool_,
    "tensor(string)": np.str_,
    # (ml_dtypes' arrays, as onnx-ir reads these types: fed to ORT as OrtValues)
    "tensor(bfloat16)": ml_dtypes.bfloat16,
    "tensor(float8e4m3fn)": ml_dtypes.float8_e4m3fn,
    "tensor(float8e4m3fnuz)": ml_dtypes.float8_e4m3fnuz,
    "tensor(float8e5m2)": ml_dtypes.float8_e5m2,
    "tensor(float8e5m2fnuz)": ml_dtypes.float8_e5m2fnuz,
}
#: What random string inputs hold (a text classifier reads them as unknown words).
RANDOM_WORDS = ("onnx", "slim", "model", "input")


@dataclass(frozen=True)
class InputSpec:
    """One model input. A dim is an int (static), a str (symbolic) or None (unknown); `ranked`:
    False where the model declares no shape at all (any rank fits; `shape` is then ())."""

    name: str
    dtype: np.dtype
    shape: tuple[Dim, ...]
    ranked: bool = True

    def describe(self) -> str:
        dims = ",".join("?" if d is None else str(d) for d in self.shape)
        element = "string" if self.dtype.kind == "U" else self.dtype.name
        return f"{element}[{dims}]" if self.ranked else f"{element} (any shape)"


def input_specs(model) -> list[InputSpec]:
    """Inputs of an ORT session (anything with `get_inputs()`), a model path, a ModelProto or an
    onnx-ir Model."""
    if hasattr(model, "get_inputs"):
        return [_spec_from_ort(arg) for arg in model.get_inputs()]
    import onnx
    import onnx_ir as ir

    if isinstance(model, ir.Model):
        graph = model.graph
        return [
            _spec_from_ir(value) for value in graph.inputs if value.name not in graph.initializers
        ]
    if isinstance(model, (str, os.PathLike)):
        try:
            model = onnx.load(os.fspath(model), load_external_data=False)
        except Exception as err:  # the protobuf parser raises assorted types
            raise OnnxSlimError(f"{model}: cannot read ONNX model: {first_line(err)}") from err
    if not isinstance(model, onnx.ModelProto):
        raise OnnxSlimError(
            f"expected a session, model path or ModelProto, got {type(model).__name__}"
        )
    weights = {init.name for init in model.graph.initializer}
    return [_spec_from_proto(value) for value in model.graph.input if value.name not in weights]


def _spec_from_ort(arg) -> InputSpec:
    """An optional tensor input is fed a tensor, as a tensor input is."""
    optional = re.fullmatch(r"optional\((tensor\(\w+\))\)", arg.type)
    type_ = optional[1] if optional else arg.type
    if type_ not in _ORT_DTYPES:
        raise OnnxSlimError(f"input {arg.name!r} has type {arg.type}, which onnxslim cannot feed")
    shape = tuple(None if d is None or (isinstance(d, int) and d < 0) else d for d in arg.shape)
    return InputSpec(arg.name, np.dtype(_ORT_DTYPES[type_]), shape)


def _spec_from_ir(value) -> InputSpec:
    import onnx_ir as ir

    type_ = value.type.elem_type if isinstance(value.type, ir.OptionalType) else value.type
    if not isinstance(type_, ir.TensorType) or value.dtype is None:
        raise OnnxSlimError(f"input {value.name!r} is not a tensor, which onnxslim cannot feed")
    try:
        dtype = np.str_ if value.dtype == ir.DataType.STRING else value.dtype.numpy()
    except TypeError as err:
        raise OnnxSlimError(f"input {value.name!r} has an element type numpy cannot hold") from err
    dims = () if value.shape is None else value.shape.dims
    return InputSpec(
        value.name,
        np.dtype(dtype),
        tuple(
            d if isinstance(d, int) and d >= 0 else (getattr(d, "value", None) or None)
            for d in dims
        ),
        ranked=value.shape is not None,
    )


def _spec_from_proto(value) -> InputSpec:
    import onnx

    type_ = (
        value.type.optional_type.elem_type if value.type.HasField("optional_type") else value.type
    )
    tensor = type_.tensor_type
    if not type_.HasField("tensor_type") or tensor.elem_type == 0:
        raise OnnxSlimError(f"input {value.name!r} is not a tensor, which onnxslim cannot feed")
    try:
        dtype = np.dtype(
            np.str_
            if tensor.elem_type == onnx.TensorProto.STRING
            else onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type)
        )
    except (KeyError, TypeError) as err:
        raise OnnxSlimError(f"input {value.name!r} has an element type numpy cannot hold") from err
    dims: list[Dim] = []
    for dim in tensor.shape.dim:
        if dim.HasField("dim_value") and dim.dim_value >= 0:
            dims.append(dim.dim_value)
        else:
            dims.append(dim.dim_param or None)
    return InputSpec(value.name, dtype, tuple(dims), ranked=tensor.HasField("shape"))


def parse_shapes(items: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """Parse `name:1,3,224,224` items (the CLI's `--shape`) into {name: dims}."""
    shapes: dict[str, tuple[int, ...]] = {}
    for item in items:
        name, sep, dims = item.rpartition(":")
        try:
            shape = tuple(int(d) for d in dims.split(","))
        except ValueError:
            shape = ()
        if not sep or not name or not shape or min(shape) < 1:
            raise OnnxSlimError(
                f"bad shape {item!r}: expected name:d1,d2,... with positive integers, "
                "e.g. x:1,3,224,224"
            )
        if name in shapes:
            raise OnnxSlimError(f"shape of input {name!r} given twice")
        shapes[name] = shape
    return shapes


def resolve_shapes(
    specs: Sequence[InputSpec], shapes: Mapping[str, Sequence[int]] | None = None
) -> dict[str, tuple[int, ...]]:
    """A concrete shape per input: `shapes`, then symbolic dims bound by them, else small defaults.

    A dynamic first dim defaults to 1 (batch), other dynamic dims to 32. Inputs that share a
    symbolic dim name (e.g. `batch`, `seq`) get the same value.
    """
    shapes = dict(shapes or {})
    known = {spec.name: spec for spec in specs}
    unknown = sorted(set(shapes) - set(known))
    if unknown:
        raise OnnxSlimError(
            f"shape given for unknown input {unknown[0]!r} (model inputs: {', '.join(known)})"
        )
    bound: dict[str, int] = {}
    for spec in specs:
        if spec.name in shapes:
            shape = tuple(shapes[spec.name])
            _check_shape(spec, shape, "--shape")
            bound.update({d: v for d, v in zip(spec.shape, shape) if isinstance(d, str)})
    resolved = {}
    for spec in specs:
        if spec.name in shapes:
            resolved[spec.name] = tuple(shapes[spec.name])
            continue
        dims = []
        for axis, dim in enumerate(spec.shape):
            default = 1 if axis == 0 else DEFAULT_DIM
            if isinstance(dim, int):
                dims.append(dim)
            else:
                dims.append(bound.setdefault(dim, default) if dim else default)
        resolved[spec.name] = tuple(dims)
    return resolved


def defaulted_inputs(
    specs: Sequence[InputSpec], shapes: Mapping[str, Sequence[int]] | None = None
) -> list[InputSpec]:
    """Inputs with a dynamic dim that `resolve_shapes` fills with a default (1 for a first dim, 32
    otherwise) because neither `shapes` nor a dim name shared with a given input binds it."""
    shapes = shapes or {}
    bound = {d for spec in specs if spec.name in shapes for d in spec.shape if isinstance(d, str)}
    return [
        spec
        for spec in specs
        if spec.name not in shapes
        and any(not isinstance(d, int) and not (d and d in bound) for d in spec.shape)
    ]


def defaulted_dims_warning(
    specs: Sequence[InputSpec],
    shapes: Mapping[str, Sequence[int]] | None,
    what: str,
    sample: Mapping[str, object] | None = None,
) -> str | None:
    """One line saying which dynamic dims onnxslim picked itself for `what` (e.g. "benchmarked"),
    as `sample` (one of the samples made) has them, and suggesting `--shape NAME:DIMS`; None when
    every dynamic dim was given."""
    guessed = defaulted_inputs(specs, shapes)
    if not guessed:
        return None
    resolved = resolve_shapes(specs, shapes)
    arrays = {k: v for k, v in (sample or {}).items() if isinstance(v, np.ndarray)}
    resolved.update({name: list(array.shape) for name, array in arrays.items()})
    picked = "; ".join(
        f"{spec.name} {spec.describe()} at [{','.join(map(str, resolved[spec.name]))}]"
        for spec in guessed
    )
    example = guessed[0]
    return (
        f"dynamic input dims picked by onnxslim ({what} {picked}): pass --shape NAME:DIMS "
        f"(shapes= in Python) with the dims you deploy, e.g. --shape {example.name}:"
        + ",".join(map(str, resolved[example.name]))
    )


def sample_shapes(samples: Sequence[Mapping[str, np.ndarray]]) -> dict[str, dict]:
    """Each input's dtype and its distinct shapes over `samples`, in order of appearance:
    {"x": {"dtype": "float32", "shapes": [[1, 3, 224, 224]]}} (JSON-able)."""
    found: dict[str, dict] = {}
    for sample in samples:
        for name, array in sample.items():
            array = np.asarray(array)
            entry = found.setdefault(name, {"dtype": array.dtype.name, "shapes": []})
            if list(array.shape) not in entry["shapes"]:
                entry["shapes"].append(list(array.shape))
    return found


def random_inputs(
    specs: Sequence[InputSpec], shapes: Mapping[str, Sequence[int]] | None = None, seed: int = 0
) -> Sample:
    """One random sample: floats ~ N(0, 1), ints in 0..9 (valid token ids/indices), bools 50/50,
    strings from RANDOM_WORDS."""
    rng = np.random.default_rng(seed)
    resolved = resolve_shapes(specs, shapes)
    sample = {}
    for spec in specs:
        shape = resolved[spec.name]
        if spec.dtype.kind == "f":
            sample[spec.name] = rng.standard_normal(shape).astype(spec.dtype)
        elif spec.dtype.kind == "b":
            sample[spec.name] = np.asarray(rng.random(shape) < 0.5)
        elif spec.dtype.kind == "U":
            sample[spec.name] = rng.choice(RANDOM_WORDS, size=shape)
        else:
            sample[spec.name] = rng.integers(0, 10, size=shape).astype(spec.dtype)
    return sample


@dataclass(frozen=True)
class Preprocess:
    """How images become a model input. None fields are inferred from the model input."""

    resize: int | tuple[int, int] | None = None  # int: shorter side; (H, W): exact
    crop: tuple[int, int] | None = None  # center crop (H, W)
    scale: float = 1 / 255
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    layout: str | None = None  # "NCHW" or "NHWC"
    order: str = "RGB"  # or "BGR"


def parse_preprocess(text: str | None) -> Preprocess:
    """Parse comma-separated `key=value` items; lists use `;`. Keys (all optional):

    resize=256 (shorter side) or resize=224x224 (H x W); crop=224 or crop=224x224 (center crop);
    scale=1/255 (default) or any number; mean=0.485;0.456;0.406 and std=... (per channel, or one
    value); layout=NCHW|NHWC (default: from the model input); order=RGB (default) or BGR. Without
    resize/crop the image is resized (shorter side) and center-cropped to the model's static H x W.
    Example: "resize=256,crop=224,mean=0.485;0.456;0.406,std=0.229;0.224;0.225".
    """
    values: dict = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        key, sep, value = (part.strip() for part in item.partition("="))
        key = key.lower()
        try:
            if not sep:
                raise ValueError
            if key == "resize":
                size = _parse_size(value)
                values[key] = size if "x" in value.lower() else size[0]
            elif key == "crop":
                values[key] = _parse_size(value)
            elif key == "scale":
                values[key] = float(Fraction(value))
            elif key in ("mean", "std"):
                values[key] = tuple(float(v) for v in value.split(";"))
                if key == "std" and 0 in values[key]:
                    raise ValueError
            elif (
                key == "layout"
                and value.upper() in ("NCHW", "NHWC")
                or key == "order"
                and value.upper() in ("RGB", "BGR")
            ):
                values[key] = value.upper()
            else:
                raise ValueError
        except (ValueError, ZeroDivisionError) as err:
            raise OnnxSlimError(
                f"bad preprocess item {item.strip()!r}: "
                "expected resize=N|HxW, crop=N|HxW, scale=X, "
                "mean=a;b;c, std=a;b;c, layout=NCHW|NHWC or order=RGB|BGR"
            ) from err
    return Preprocess(**values)


def _parse_size(text: str) -> tuple[int, int]:
    parts = [int(p) for p in text.lower().split("x")]
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2 or min(parts) < 1:
        raise ValueError
    return parts[0], parts[1]


RANDOM = "random:"  # an inputs source of N synthesized samples: random:N


def is_random(source) -> bool:
    """Whether `source` asks for synthesized inputs (`random:N`) rather than given ones."""
    return isinstance(source, str) and source.startswith(RANDOM)


def load_samples(
    source,
    specs: Sequence[InputSpec],
    preprocess: Preprocess | str | None = None,
    seed: int = 0,
    shapes: Mapping[str, Sequence[int]] | None = None,
    model: onnx.ModelProto | str | os.PathLike | None = None,
    run: Callable[[Sample], object] | None = None,
    what: str = "inputs",
    default_pixels: bool = False,
) -> list[Sample]:
    """Load and validate samples from any supported source (see the module docstring); `what`
    names the source in errors (the option that gave it: "--calibration", ...).

    Images need a `preprocess` (how pixels become the input is the model's, not ours to guess:
    ranges and drift measured on wrongly scaled pictures look right and are not), unless
    `default_pixels` (the lossless command's --check-inputs, which has no --preprocess; its
    outputs are compared on the same inputs): then `Preprocess()`'s.

    `shapes` and `seed` apply to `random:N`, synthesized from `model` when given (`synth`: integer
    inputs valid for their uses, e.g. token ids inside the embedding table and masks of 0 and 1;
    plain `random_inputs` let a BERT's attention mask of 9 overflow to NaN), at dims `run` (the
    model on ORT) accepts when given (a reflect Pad needs a long enough input, ...); `preprocess`
    applies to images (given with anything else: an error, not ignored).
    """
    check_preprocess(source, preprocess, what)
    if is_random(source):
        count = source[len(RANDOM) :]
        if not count.isdigit() or int(count) < 1:
            raise OnnxSlimError(f"bad {what} {source!r}: expected random:N with N >= 1")
        if model is not None:
            return synthesize_samples(model, int(count), shapes, seed=seed, run=run)
        return [random_inputs(specs, shapes, seed=seed + i) for i in range(int(count))]
    if not isinstance(source, (str, os.PathLike)):
        return as_samples(source, specs)
    samples, labels = _load_path(Path(source), specs, preprocess, what, default_pixels)
    validate_samples(_float_as_taken(samples, specs, what), specs, labels)
    return samples


def _float_as_taken(samples: list[Sample], specs: Sequence[InputSpec], what: str) -> list[Sample]:
    """`samples` (in place) with each float array given for an input of another float type cast
    to it (float32 pictures for a float16 model, as preprocessing makes them), with a warning;
    not where a finite value would overflow (the validation then says what to convert)."""
    wanted = {spec.name: spec.dtype for spec in specs if spec.dtype.kind == "f"}
    cast = set()
    for sample in samples:
        for name, array in list(sample.items()):
            dtype = wanted.get(name)
            if not isinstance(array, np.ndarray) or dtype is None or array.dtype.kind != "f":
                continue
            if array.dtype != dtype:
                with np.errstate(over="ignore"):  # (an overflow is found below)
                    converted = array.astype(dtype)
                if np.array_equal(np.isfinite(converted), np.isfinite(array)):
                    sample[name] = converted
                    cast.add((name, array.dtype.name, dtype.name))
    for name, given, taken in sorted(cast):
        warnings.warn(
            f"onnxslim: {what}: {given} data for input {name!r} cast to {taken}, as the model "
            "takes it",
            UserWarning,
            stacklevel=3,
        )
    return samples


def check_preprocess(
    source, preprocess: Preprocess | str | None, what: str = "inputs", option: str = "preprocess"
) -> None:
    """OnnxSlimError for a `preprocess` (the `option` that gave it) with a `source` (the option
    `what`) that holds no images: none, random:N or arrays; or a malformed one. It would go
    unused, not ignored in silence."""
    if preprocess is None:
        return
    if source is None or is_random(source) or not isinstance(source, (str, os.PathLike)):
        given = (
            "none were given"
            if source is None
            else f"{source} makes random ones"
            if is_random(source)
            else "arrays were given"
        )
        raise OnnxSlimError(
            f"{option} applies to images given as {what}; {given}: leave out {option}"
        )
    if not isinstance(preprocess, Preprocess):
        if not str(preprocess).strip():  # images need one: an empty one would stand for none
            raise OnnxSlimError(f"{option} is empty: give its items, e.g. scale=1/255")
        parse_preprocess(preprocess)


def as_samples(obj, specs: Sequence[InputSpec]) -> list[Sample]:
    """Samples from an iterable of dicts or a CalibrationDataReader-like `get_next()` object."""
    if hasattr(obj, "get_next"):
        items = list(iter(obj.get_next, None))
    elif isinstance(obj, Mapping):
        items = [obj]
    elif isinstance(obj, Iterable):
        items = list(obj)
    else:
        raise OnnxSlimError(f"cannot read input samples from a {type(obj).__name__}")
    for index, item in enumerate(items):
        if not isinstance(item, Mapping):
            raise OnnxSlimError(
                f"sample {index} is a {type(item).__name__}, expected a dict of input name -> array"
            )
    samples = [{name: np.asarray(array) for name, array in item.items()} for item in items]
    validate_samples(_float_as_taken(samples, specs, "samples"), specs)
    return samples


def _load_path(
    path: Path,
    specs: Sequence[InputSpec],
    preprocess: Preprocess | str | None,
    what: str,
    default_pixels: bool,
) -> tuple[list[Sample], list[str]]:
    """Samples from a file or folder, with a label per sample (file name) for error messages
    (`what`: the option that named it; `default_pixels`: see `load_samples`)."""
    if not path.exists():
        raise OnnxSlimError(f"{what} {path}: no such file or folder")
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix in (".npz", ".npy"):
            _no_images(preprocess, f"{what} {path}")
            samples = _unstack(_read_arrays(path, specs, what), specs, f"{what} {path}")
            return samples, [f"{path.name} sample {i}" for i in range(len(samples))]
        if suffix in IMAGE_SUFFIXES:
            images = _load_images([path], specs, preprocess, f"{what} {path}", default_pixels)
            return images, [path.name]
        raise OnnxSlimError(
            f"{what} {path}: expected a .npz/.npy file, an image or a folder of them"
        )
    files = sorted(p for p in path.iterdir() if p.is_file())
    kinds = {
        kind: [p for p in files if p.suffix.lower() in suffixes]
        for kind, suffixes in (("npy", (".npy",)), ("npz", (".npz",)), ("image", IMAGE_SUFFIXES))
    }
    present = [kind for kind, found in kinds.items() if found]
    if not present:
        raise OnnxSlimError(f"{what} {path}: no .npy, .npz or image files in this folder")
    if len(present) > 1:
        raise OnnxSlimError(
            f"{what} {path}: mixes {' and '.join(present)} files; keep one kind per folder"
        )
    files = kinds[present[0]]
    if present[0] == "image":
        images = _load_images(files, specs, preprocess, f"{what} {path}", default_pixels)
        return images, [p.name for p in files]
    _no_images(preprocess, f"{what} {path}")
    names = [p.name for p in files]
    return [_with_batch_dim(_read_arrays(p, specs, what), specs) for p in files], names


def _no_images(preprocess: Preprocess | str | None, where: str) -> None:
    """OnnxSlimError for a `preprocess` given with arrays (`where`: the file or folder)."""
    if preprocess is not None:
        raise OnnxSlimError(f"{where}: holds arrays; preprocess applies to images only")


def _read_arrays(path: Path, specs: Sequence[InputSpec], what: str) -> Sample:
    """The arrays of one .npz (by key) or .npy (single-input models) file (`what`: the option
    that named it, for errors)."""
    try:
        data = np.load(path, allow_pickle=False)
        if isinstance(data, np.lib.npyio.NpzFile):
            with data:
                return {key: data[key] for key in data.files}
    except Exception as err:  # np.load raises assorted types for a bad file
        hint = (
            " (object arrays are pickles, which are not loaded: save strings as a unicode "
            "array, np.asarray(values, dtype=str))"
            if "allow_pickle" in str(err)
            else ""
        )
        raise OnnxSlimError(f"{what} {path}: cannot read: {first_line(err)}{hint}") from err
    if len(specs) != 1:
        raise OnnxSlimError(
            f"{what} {path}: a .npy file feeds single-input models only; this model has inputs "
            f"{', '.join(s.name for s in specs)}: use .npz files keyed by input name"
        )
    return {specs[0].name: data}


def _with_batch_dim(sample: Sample, specs: Sequence[InputSpec]) -> Sample:
    """Add a leading batch dim to arrays that are one rank short."""
    ranks = {spec.name: len(spec.shape) for spec in specs}
    return {
        name: array[np.newaxis] if array.ndim + 1 == ranks.get(name) else array
        for name, array in sample.items()
    }


def _unstack(arrays: Sample, specs: Sequence[InputSpec], where: str) -> list[Sample]:
    """Split stacked arrays along the first axis; each sample keeps a batch dim of 1. A 0-d array
    for a scalar input is the same in every sample. Arrays whose first axes differ only where
    their inputs fix them are one sample (`_one_sample`)."""
    ranks = {spec.name: len(spec.shape) for spec in specs}
    shared = {name for name, a in arrays.items() if a.ndim == 0 and ranks.get(name) == 0}
    counts = {len(a) if a.ndim else 0 for name, a in arrays.items() if name not in shared}
    if len(counts) > 1 and _one_sample(arrays, specs):
        return [dict(arrays)]
    if len(counts) != 1 or 0 in counts:
        raise OnnxSlimError(
            f"{where}: stacked arrays need the same, non-empty first axis (samples; a "
            "scalar input may be a 0-d array, the same in every sample); for one sample per "
            "file, give a folder of .npz files"
        )
    return [
        {
            name: a
            if name in shared
            else np.asarray(a[i])
            if a.ndim == ranks.get(name, a.ndim) + 1
            else a[i : i + 1]
            for name, a in arrays.items()
        }
        for i in range(counts.pop())
    ]


def _one_sample(arrays: Sample, specs: Sequence[InputSpec]) -> bool:
    """Whether arrays of differing first axes can only be one sample: each of its input's rank,
    those whose input fixes the first dim at that size (a recurrent state [2, N, 128] beside
    audio [N, 256]), those whose inputs name it alike of one non-zero length, and either a fixed
    one or every free one named, in two names at least (phonemes [N0] beside notes [unk__601]:
    lengths a stack could not have; unnamed first axes that differ may be a stack gone wrong)."""
    by_name = {spec.name: spec for spec in specs}
    free: dict[Dim, set[int]] = {}  # the first axes' lengths, by the name their inputs give them
    fixed = 0
    for name, array in arrays.items():
        spec = by_name.get(name)
        if spec is None or array.ndim != len(spec.shape):
            return False
        first = spec.shape[0] if spec.shape else None
        if isinstance(first, int):
            if len(array) != first:
                return False
            fixed += 1
        elif array.ndim:  # a scalar input's 0-d array has no first axis
            free.setdefault(first, set()).add(len(array))
    if any(len(lengths) > 1 or 0 in lengths for lengths in free.values()):
        return False
    return fixed > 0 or (None not in free and len(free) > 1)


def _load_images(
    files: Sequence[Path],
    specs: Sequence[InputSpec],
    preprocess: Preprocess | str | None,
    where: str,
    default_pixels: bool,
) -> list[Sample]:
    """The images `files` (`where`: the option and path that named them) as samples of the
    model's one 4-D input, made by `preprocess` (required, unless `default_pixels`: then
    `Preprocess()`'s)."""
    if len(specs) != 1 or len(specs[0].shape) != 4:
        raise OnnxSlimError(
            f"{where}: image inputs need a model with one 4-D input (N,C,H,W or N,H,W,C)"
        )
    spec = specs[0]
    if preprocess is None and default_pixels:
        preprocess = Preprocess()
    if preprocess is None:
        raise OnnxSlimError(
            f"{where}: holds images: say how their pixels become input {spec.name!r} as the "
            "model was trained, with --preprocess (preprocess= in Python), e.g. scale=1/255 "
            "(RGB in [0, 1]), mean=0.485;0.456;0.406,std=0.229;0.224;0.225 (ImageNet's) or "
            "scale=1,order=BGR (0-255 BGR); items left out: scale=1/255, RGB, no mean or std"
        )
    try:
        from PIL import Image
    except ImportError as err:
        raise OnnxSlimError("reading images needs Pillow: pip install onnxslim[images]") from err
    prep = parse_preprocess(preprocess) if not isinstance(preprocess, Preprocess) else preprocess
    layout = prep.layout or (
        "NHWC" if spec.shape[3] in (1, 3) and spec.shape[1] not in (1, 3) else "NCHW"
    )
    h, w, c = (spec.shape[2], spec.shape[3], spec.shape[1]) if layout == "NCHW" else spec.shape[1:4]
    channels = c if c in (1, 3) else 3
    if len(prep.mean) not in (1, channels) or len(prep.std) not in (1, channels):
        raise OnnxSlimError(
            f"preprocess mean/std need 1 or {channels} values for input {spec.name!r}"
        )
    target = prep.crop or (prep.resize if isinstance(prep.resize, tuple) else None)
    if target is None and isinstance(h, int) and isinstance(w, int):
        target = (h, w)
    if target is None and prep.resize is None:  # never the photo's own size
        raise OnnxSlimError(
            f"input {spec.name!r} {spec.describe()} has a dynamic height and width: say which "
            "size to feed the images at with --preprocess, e.g. resize=256,crop=224 (shorter side "
            "256, center crop 224x224), resize=640x640 (exact) or resize=320 (shorter side 320, "
            "aspect ratio kept)"
        )
    samples = []
    for file in files:
        try:
            with Image.open(file) as image:
                image = image.convert("L" if channels == 1 else "RGB")
                image = _resize_and_crop(image, prep.resize, target, Image.Resampling.BILINEAR)
        except OnnxSlimError as err:
            raise OnnxSlimError(f"image {file}: {err}") from err
        except Exception as err:  # Pillow raises assorted types for a bad image
            raise OnnxSlimError(f"image {file}: cannot read: {first_line(err)}") from err
        pixels = np.asarray(image, dtype=np.float32).reshape(image.height, image.width, channels)
        if prep.order == "BGR":
            pixels = pixels[..., ::-1]
        pixels = (pixels * prep.scale - np.float32(prep.mean)) / np.float32(prep.std)
        if layout == "NCHW":
            pixels = pixels.transpose(2, 0, 1)
        samples.append({spec.name: np.ascontiguousarray(pixels[np.newaxis]).astype(spec.dtype)})
    return samples


def _resize_and_crop(image, resize, target, resample):
    """Resize (exact HxW, shorter side, or to cover `target`), then center-crop to `target`."""
    if isinstance(resize, tuple):
        image = image.resize((resize[1], resize[0]), resample)
    elif resize or target:
        factor = (
            resize / min(image.size)
            if resize
            else max(target[0] / image.height, target[1] / image.width)
        )
        size = (max(1, round(image.width * factor)), max(1, round(image.height * factor)))
        image = image.resize(size, resample)
    if target:
        th, tw = target
        if image.height < th or image.width < tw:
            raise OnnxSlimError(
                f"{image.height}x{image.width} after resize is smaller than the crop {th}x{tw}"
            )
        top, left = (image.height - th) // 2, (image.width - tw) // 2
        image = image.crop((left, top, left + tw, top + th))
    return image


def validate_samples(
    samples: Sequence[Mapping[str, np.ndarray]],
    specs: Sequence[InputSpec],
    labels: Sequence[str] | None = None,
) -> None:
    """Check names, dtypes, ranks and static dims of every sample; raise OnnxSlimError on the
    first mismatch.

    `labels` name the samples in messages (e.g. file names); default "sample N".
    """
    if not samples:
        raise OnnxSlimError("no input samples: the data source is empty")
    names = [spec.name for spec in specs]
    for index, sample in enumerate(samples):
        where = labels[index] if labels else f"sample {index}"
        unknown = [name for name in sample if name not in names]
        if unknown:
            raise OnnxSlimError(
                f"{where}: unknown input {unknown[0]!r} (model inputs: {', '.join(names)})"
            )
        for spec in specs:
            if spec.name not in sample:
                raise OnnxSlimError(
                    f"{where}: missing input {spec.name!r} (model inputs: {', '.join(names)})"
                )
            array = sample[spec.name]
            if not isinstance(array, np.ndarray):
                raise OnnxSlimError(
                    f"{where}: input {spec.name!r} is a {type(array).__name__}, "
                    "expected a numpy array"
                )
            if spec.dtype.kind == "U":  # text of any length, as str or object arrays
                if array.dtype.kind not in "UO":
                    raise OnnxSlimError(
                        f"{where}: input {spec.name!r} has dtype {array.dtype}, the model expects "
                        "text (a numpy array of str)"
                    )
            elif array.dtype != spec.dtype:
                raise OnnxSlimError(
                    f"{where}: input {spec.name!r} has dtype {array.dtype}, "
                    f"the model expects {spec.dtype} (convert with .astype(np.{spec.dtype.name}))"
                )
            _check_shape(spec, array.shape, where)


def _check_shape(spec: InputSpec, shape: Sequence[int], where: str) -> None:
    if not spec.ranked:
        return
    if len(shape) != len(spec.shape) or any(
        isinstance(d, int) and d != s for d, s in zip(spec.shape, shape)
    ):
        given = ",".join(str(d) for d in shape)
        raise OnnxSlimError(
            f"{where}: input {spec.name!r} has shape [{given}], the model expects {spec.describe()}"
        )
