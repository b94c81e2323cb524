"""OnnxSlim (PyPI) spellings in onnxslim's terms: `slim()`'s keywords and the command line's flags,
so that scripts written for OnnxSlim run unchanged where onnxslim has a counterpart, and say what to
use instead where it has none."""

from __future__ import annotations

import re
from collections.abc import Iterable

from onnxslim.errors import OnnxSlimError, first_line

#: What OnnxSlim's list flags take: dims, pass names, fusion pattern names.
_DIMS = re.compile(r"[^:]+:-?\d+(,-?\d+)*")  # NAME:1,3,224,224
_SNAKE = re.compile(r"[a-z]+(_[a-z]+)+")  # constant_folding
_PATTERN = re.compile(r"(Fusion|Elimination)[A-Za-z]+")  # FusionConvBN

_CHAINS = ("fuse-chains", "reshape-around-elementwise")
#: OnnxSlim's `skip_optimizations` names -> onnxslim pass names.
SKIP_OPTIMIZATIONS = {
    "constant_folding": ("fold-constants",),
    "graph_fusion": (
        "fuse-batchnorm",
        "fuse-activations",
        "fuse-conv-affine",
        "fuse-pad-conv",
        "fuse-matmul-add",
        *_CHAINS,
    ),
    "dead_node_elimination": ("prune",),
    "subexpression_elimination": ("eliminate-common-subexpressions",),
}
#: OnnxSlim's fusion pattern names (0.1.x) -> the onnxslim passes making those rewrites; () where
#: none does (skipping it changes nothing).
FUSION_PATTERNS = {
    "FusionPadConv": ("fuse-pad-conv",),
    "FusionConvBN": ("fuse-batchnorm",),
    "FusionConvTransposeBN": ("fuse-batchnorm",),
    "FusionConvAdd": ("fuse-conv-affine",),
    "FusionConvMul": ("fuse-conv-affine",),
    "FusionConvTransposeAdd": ("fuse-conv-affine",),
    "FusionConvTransposeMul": ("fuse-conv-affine",),
    "FusionGelu": ("fuse-gelu",),
    "FusionGemm": ("fuse-matmul-add",),
    "FusionGemmAdd": ("fuse-matmul-add",),
    "FusionGemmMul": ("fuse-matmul-add",),
    "FusionReduce": (),
    "FusionConcatReshape": _CHAINS,
    "EliminationConcat": _CHAINS,
    "EliminationReshape": _CHAINS,
    "EliminationReshapeAs": _CHAINS,
    "EliminationSlice": _CHAINS,
    "EliminationTranspose": _CHAINS,
    "EliminationTransposeAsReshape": _CHAINS,
    "EliminationTransposeViewTranspose": _CHAINS,
    "EliminationUnsqueeze": _CHAINS,
}
#: OnnxSlim options onnxslim has no counterpart for -> what to do instead (Python API).
UNSUPPORTED = {
    "no_shape_infer": "onnxslim always runs shape inference; leave it out",
    "no_constant_folding": "OnnxSlim's option also turns off every fusion; for constant folding "
    "alone use skip='fold-constants'",
    "inspect": "use `onnxslim inspect MODEL` or onnxslim.model.stats.model_info",
    "dump_to_disk": "save the model with onnxslim.save(model, path)",
    "verbose": "use onnxslim.optimizer.optimize_with_report(model).history",
    "inline_subgraphs": "use inline_functions=True (If/Loop bodies are optimized in place)",
}


def skip_passes(optimizations: Iterable[str] = (), patterns: Iterable[str] = ()) -> list[str]:
    """onnxslim pass names for OnnxSlim's `skip_optimizations` and `skip_fusion_patterns`; an
    OnnxSlimError names an unknown optimization. A pattern name OnnxSlim does not have is taken as
    an onnxslim pass name (the pipeline refuses one that is neither)."""
    passes: list[str] = []
    for name in optimizations:
        if name not in SKIP_OPTIMIZATIONS:
            raise OnnxSlimError(
                f"OnnxSlim's skip_optimizations {name!r} has no onnxslim counterpart "
                f"(known: {', '.join(SKIP_OPTIMIZATIONS)}): give onnxslim pass names to skip"
            )
        passes += SKIP_OPTIMIZATIONS[name]
    for name in patterns:
        passes += FUSION_PATTERNS.get(name, (name,))
    return passes


def slim_options(options: dict) -> dict:
    """`slim()` keywords in OnnxSlim's spelling as `optimize` options; OnnxSlimError otherwise."""
    out = dict(options)
    for name, instead in UNSUPPORTED.items():
        if name in out:
            raise OnnxSlimError(f"slim({name}=...) is OnnxSlim's option: {instead}")
    if "model_check" in out:
        out["check"] = bool(out.pop("model_check"))
    skip = list(_as_list(out.pop("skip", ())))
    skip += skip_passes(
        _as_list(out.pop("skip_optimizations", None)),
        _as_list(out.pop("skip_fusion_patterns", None)),
    )
    if skip:
        out["skip"] = tuple(skip)
    dtype = out.get("dtype")
    if dtype is not None and str(dtype).lower() not in ("fp32", "float32", "fp16", "float16"):
        raise OnnxSlimError(f"slim(dtype={dtype!r}): choose fp32 or fp16; for INT8 use quantize()")
    if "model_check_inputs" in out:
        out.update(_check_inputs(_as_list(out.pop("model_check_inputs"))))
    return out


def _as_list(value) -> list:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _check_inputs(items: list[str]) -> dict:
    """OnnxSlim's model_check_inputs: "name:file.npy" (an array) or "name:1,3,224,224" (dims)."""
    import numpy as np

    arrays, dims = {}, []
    for item in items:
        name, _, value = item.rpartition(":")
        if value.lower().endswith(".npy"):
            try:
                arrays[name] = np.load(value)
            except (OSError, ValueError) as err:
                missing = isinstance(err, FileNotFoundError)
                why = "no such file" if missing else f"unreadable ({first_line(err)})"
                raise OnnxSlimError(f"model_check_inputs {item!r}: {why}") from err
        else:
            dims.append(item)
    return {**({"check_inputs": [arrays]} if arrays else {}), **({"shapes": dims} if dims else {})}


# ---------------------------------------------------------------- command line

#: OnnxSlim flags (either spelling) -> the onnxslim flag taking each of their values.
_VALUED = {"input_shapes": "--input-shapes", "size_threshold": "--size-threshold"}
#: An OnnxSlim flag that changes nothing here: onnxslim checks its result by default.
_NO_OPS = {"model_check"}
#: OnnxSlim flags with no onnxslim counterpart -> what to do instead (command line).
_CLI_UNSUPPORTED = {
    "no_shape_infer": "onnxslim always runs shape inference; leave it out",
    "dump_to_disk": "use `onnxslim inspect MODEL --json`",
    "no_constant_folding": UNSUPPORTED["no_constant_folding"].replace(
        "skip='fold-constants'", "--skip fold-constants"
    ),
}
#: Flags OnnxSlim's argparse gives several values after one flag.
_LISTS = {"input_shapes", "skip_optimizations", "skip_fusion_patterns", "model_check_inputs"}
_FLAGS = {"save_as_external_data", "inspect", *_NO_OPS, *_CLI_UNSUPPORTED}
_KNOWN = {*_VALUED, *_LISTS, *_FLAGS}


def command_args(args: list[str]) -> list[str]:
    """The command and arguments for the `optimize` command's arguments `args`: OnnxSlim's flags
    (`--model_check` or `--model-check`; several values after one flag, as OnnxSlim's argparse
    takes them) in onnxslim's spelling, and `MODEL --inspect` as `inspect MODEL`."""
    out: list[str] = []
    rest = list(args)
    inspect = False
    while rest:
        token = rest.pop(0)
        name, eq, value = token[2:].partition("=")
        name = name.replace("-", "_")
        if not token.startswith("--") or name not in _KNOWN:
            out.append(token)
            continue
        if name in _CLI_UNSUPPORTED:
            raise OnnxSlimError(f"--{name} is OnnxSlim's flag: {_CLI_UNSUPPORTED[name]}")
        if name in _FLAGS:
            inspect = inspect or name == "inspect"
            out += ["--external-data"] if name == "save_as_external_data" else []
            continue
        if eq:
            values = [value]
        elif name in _LISTS:
            values = _list_values(name, rest)
        elif rest:
            values, rest = rest[:1], rest[1:]
        else:
            raise OnnxSlimError(f"--{name.replace('_', '-')} needs a value")
        if name in _VALUED:
            out += [f"{_VALUED[name]}={item}" for item in values]
        elif name == "model_check_inputs":
            out += _check_input_flags(values)
        elif name == "skip_optimizations":
            out += [f"--skip={p}" for p in skip_passes(optimizations=values)]
        else:  # skip_fusion_patterns
            out += [f"--skip={p}" for p in skip_passes(patterns=values)]
    if inspect:  # OnnxSlim's `MODEL --inspect`: nothing else may be asked
        if len(out) != 1 or out[0].startswith("-"):
            raise OnnxSlimError("--inspect takes the model alone: run `onnxslim inspect MODEL`")
        return ["inspect", out[0]]
    return ["optimize", *out]


def _list_values(name: str, rest: list[str]) -> list[str]:
    """The values after list flag `name`, taken from `rest` while they are values of it (NAME:DIMS
    for shapes, or NAME:FILE.npy for check inputs; OnnxSlim's names for skips), so that the paths
    after them stay the positionals they are."""
    values = []
    while rest and _is_value(name, rest[0]):
        values.append(rest.pop(0))
    if not values:
        raise OnnxSlimError(f"--{name.replace('_', '-')} needs a value")
    return values


def _is_value(name: str, token: str) -> bool:
    """Whether `token` reads as a value of list flag `name`."""
    if name == "skip_optimizations":
        return token in SKIP_OPTIMIZATIONS or bool(_SNAKE.fullmatch(token))
    if name == "skip_fusion_patterns":
        return token in FUSION_PATTERNS or bool(_PATTERN.fullmatch(token))
    npy = name == "model_check_inputs" and token.lower().endswith(".npy")
    return bool(_DIMS.fullmatch(token)) or (npy and not token.startswith("-"))


def _check_input_flags(items: list[str]) -> list[str]:
    """OnnxSlim's --model_check_inputs NAME:DIMS as --shape; NAME:FILE.npy (an array for one
    input) has no counterpart on the command line, whose check inputs are files of samples."""
    files = [item for item in items if item.lower().endswith(".npy")]
    if files:
        raise OnnxSlimError(
            f"--model-check-inputs {files[0]}: give --check-inputs an .npz holding each input's "
            "array by name (onnxslim.slim(model_check_inputs=...) takes NAME:FILE.npy)"
        )
    return [f"--shape={item}" for item in items]
