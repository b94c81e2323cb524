"""OnnxSlim (PyPI) spellings in onnxslim's terms: `slim()`'s keywords and the command line's flags,
so that scripts written for OnnxSlim run unchanged where onnxslim has a counterpart, and say what to
use instead where it has none."""

from __future__ import annotations

from collections.abc import Iterable

from onnxslim.errors import OnnxSlimError

#: OnnxSlim's `skip_optimizations` names -> onnxslim pass names.
SKIP_OPTIMIZATIONS = {
    "constant_folding": ("fold-constants",),
    "graph_fusion": (
        "fuse-batchnorm",
        "fuse-activations",
        "fuse-conv-affine",
        "fuse-pad-conv",
        "fuse-matmul-add",
        "fuse-chains",
    ),
    "dead_node_elimination": ("prune",),
    "subexpression_elimination": ("eliminate-common-subexpressions",),
}
_CHAINS = ("fuse-chains",)
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
    "no_constant_folding": "use skip='fold-constants'",
    "inspect": "use `onnxslim inspect MODEL` or onnxslim.model.stats.model_info",
    "dump_to_disk": "save the model with onnxslim.save(model, path)",
    "verbose": "use onnxslim.optimizer.optimize_with_report(model).history",
    "inline_subgraphs": "use inline_functions=True (If/Loop bodies are optimized in place)",
}


def skip_passes(optimizations: Iterable[str] = (), patterns: Iterable[str] = ()) -> list[str]:
    """onnxslim pass names for OnnxSlim's `skip_optimizations` and `skip_fusion_patterns`; an
    OnnxSlimError names an unknown one. An onnxslim pass name is taken as it is."""
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


# ---------------------------------------------------------------- command line

#: OnnxSlim flags (either spelling) -> the onnxslim flag taking each of their values.
_VALUED = {"input_shapes": "--input-shapes", "size_threshold": "--size-threshold"}
#: OnnxSlim flags that change nothing here: onnxslim checks its result by default, and logs no
#: more with --verbose (its report lists what every pass changed).
_NO_OPS = {"model_check", "verbose"}
#: OnnxSlim flags with no onnxslim counterpart -> what to do instead (command line).
_CLI_UNSUPPORTED = {
    "no_shape_infer": "onnxslim always runs shape inference; leave it out",
    "no_constant_folding": "OnnxSlim's flag also turns off every fusion; for constant folding "
    "alone use --skip fold-constants",
    "dump_to_disk": "use `onnxslim inspect MODEL --json`",
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
        else:
            values, rest = rest[:1], rest[1:]
        if name in _VALUED:
            out += [f"{_VALUED[name]}={item}" for item in values]
        elif name == "model_check_inputs":
            out += _check_inputs(values)
        elif name == "skip_optimizations":
            out += [f"--skip={p}" for p in skip_passes(optimizations=values)]
        else:  # skip_fusion_patterns
            out += [f"--skip={p}" for p in skip_passes(patterns=values)]
    if inspect:
        return ["inspect", *[a for a in out if not a.startswith("-")][:1]]
    return ["optimize", *out]


def _list_values(name: str, rest: list[str]) -> list[str]:
    """The values after list flag `name`, taken from `rest` up to the first that is not one
    (NAME:VALUE items, or names), so that a path after them stays the positional it is."""
    named = name in ("input_shapes", "model_check_inputs")
    values = []
    while rest and (":" in rest[0] if named else rest[0].isidentifier()):
        values.append(rest.pop(0))
    return values


def _check_inputs(items: list[str]) -> list[str]:
    """OnnxSlim's --model_check_inputs (NAME:DIMS or NAME:FILE.npy) as --shape / --check-inputs."""
    files = [item.rpartition(":")[2] for item in items if item.lower().endswith(".npy")]
    if len(files) > 1:
        raise OnnxSlimError(
            "--model_check_inputs with several .npy files: give --check-inputs one .npz holding "
            "each input's array by name"
        )
    out = [f"--check-inputs={file}" for file in files]
    return out + [f"--shape={item}" for item in items if not item.lower().endswith(".npy")]
