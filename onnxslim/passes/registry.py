"""The pass registry: every pass has a stable name (the CLI's `--skip NAME`) and a stage."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import onnx_ir as ir
import onnx_ir.passes.common as common

from onnxslim.errors import OnnxSlimError
from onnxslim.passes import fold, fuse, prune
from onnxslim.passes.rewrite import RewriteRulesPass
from onnxslim.passes.rules.batchnorm import FoldBatchNorm
from onnxslim.passes.rules.reshape_region import RemoveReshapeBeforeElementwise

MIB = 1024 * 1024


@dataclass(frozen=True)
class PassOptions:
    """Settings shared by the passes of one run.

    `size_threshold`: most bytes one folded tensor may add; `budget`: most bytes folding may add
    to the whole model (`budget.growth`, None: 1% of the original, at least 64 KiB), and what that
    stopped. The budget is shared by the rounds of one run: use new options for each run.
    `node_inference`: the folder infers shapes node by node with onnx (off where onnx's inference
    of the model crashed).
    """

    size_threshold: int = MIB
    budget: fold.SizeBudget = field(default_factory=fold.SizeBudget, compare=False)
    node_inference: bool = True


#: Pass families: what a pass does to the graph ONNX Runtime is given. "rewrite" passes change
#: the ops ORT sees and so what ORT fuses at session creation: they are the ones a latency
#: regression can come from; "annotation" passes change only what the file says of the graph.
FAMILIES = ("setup", "fold", "cleanup", "rewrite", "order", "annotation")
STAGES = ("setup", "round", "finish")


@dataclass(frozen=True)
class PassSpec:
    """A registered pass. `stage` is "setup" (once, first), "round" (to a fixed point) or
    "finish" (once, last); `family` one of FAMILIES.

    Every pass must report `modified` truthfully: rounds skip a pass that found nothing since the
    graph last changed, and when the setup passes report no change, shape inference reuses the
    proto the onnx checker was given for the model as loaded.
    """

    name: str
    description: str
    build: Callable[[PassOptions], ir.passes.PassBase]
    stage: str = "round"
    family: str = "rewrite"

    def __post_init__(self):
        if self.stage not in STAGES:
            raise ValueError(f"pass {self.name}: stage {self.stage!r} is not one of {STAGES}")
        if self.family not in FAMILIES:
            raise ValueError(f"pass {self.name}: family {self.family!r} is not one of {FAMILIES}")


REGISTRY: tuple[PassSpec, ...] = (
    PassSpec(
        "freeze-initializer-inputs",
        "initializers also listed as graph inputs become constants",
        lambda _: prune.FreezeInitializerInputs(),
        stage="setup",
        family="setup",
    ),
    PassSpec(
        "fold-constants",
        "evaluate nodes whose inputs are all constant (size-guarded: never grows the file for "
        "work ORT folds at load), constant-condition If",
        lambda o: fold.FoldConstants(o.size_threshold, o.budget, o.node_inference),
        family="fold",
    ),
    PassSpec(
        "remove-no-ops",
        "Identity, Dropout, Cast to same type, Reshape/Expand to same shape, Expand a broadcasting "
        "op does anyway, x*1, x+0, x and True, x or False, an RNN/GRU/LSTM initial state of "
        "computed zeros, ...",
        lambda _: prune.RemoveNoOps(),
        family="cleanup",
    ),
    PassSpec(
        "fuse-batchnorm",
        "BatchNormalization folded into Conv, ConvTranspose or Gemm",
        lambda _: FoldBatchNorm(),
    ),
    PassSpec(
        "fuse-activations",
        "x*Clip(x+3,0,6)/6 -> HardSwish (or x*HardSigmoid before opset 14), "
        "Clip(x+3,0,6)/6 -> HardSigmoid",
        lambda _: RewriteRulesPass(fuse.ACTIVATIONS),
    ),
    PassSpec(
        "fuse-layernorm",
        "ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div (+ *gamma + beta) over the last axis -> "
        "LayerNormalization (opset 17+)",
        lambda _: RewriteRulesPass(fuse.LAYERNORM),
    ),
    PassSpec(
        "residual-sum",
        "residual Add before a LayerNormalization -> Sum (ORT would fuse it into the slower CPU "
        "SkipLayerNormalization)",
        lambda _: RewriteRulesPass(fuse.RESIDUAL_SUM),
    ),
    PassSpec(
        "fuse-gelu",
        "x*0.5*(1+erf(x/sqrt2)) -> Gelu, 0.5x(1+tanh(sqrt(2/pi)(x+0.044715x^3))) -> "
        "Gelu(approximate=tanh) (opset 20+)",
        lambda _: RewriteRulesPass(fuse.GELU),
    ),
    PassSpec(
        "sink-transposes",
        "Transpose moved below elementwise ops (x op constant, op of two equal Transposes) and "
        "reductions, so NHWC<->NCHW pairs meet and cancel",
        lambda _: RewriteRulesPass(fuse.TRANSPOSE),
    ),
    PassSpec(
        "fuse-conv-affine",
        "per-channel constant Mul/Div/Add/Sub after a Conv (or before an unpadded one) "
        "folded into its weights and bias",
        lambda _: RewriteRulesPass(fuse.CONV_AFFINE),
    ),
    PassSpec(
        "fuse-pad-conv",
        "zero Pad folded into the following Conv's pads",
        lambda _: RewriteRulesPass(fuse.PAD_CONV),
    ),
    PassSpec(
        "fuse-matmul-add",
        "MatMul with a 2-D constant weight + Add of a bias becomes Gemm; a Gemm over an input "
        "flattened to 2-D and reshaped back becomes MatMul (+ Add) over the input",
        lambda _: RewriteRulesPass(fuse.MATMUL_ADD),
    ),
    PassSpec(
        "reshape-around-elementwise",
        "a Reshape whose result only elementwise ops read on their way to other Reshapes "
        "removed (the ops read its input; a Reshape back to that shape then goes as a no-op)",
        lambda _: RemoveReshapeBeforeElementwise(),
    ),
    PassSpec(
        "fuse-chains",
        "Transpose/Reshape/Squeeze/Unsqueeze/Slice/Concat chains collapsed, "
        "computed Reshape shapes made constant, x*a*b with scalars a, b made one Mul",
        lambda _: RewriteRulesPass(fuse.CHAINS),
    ),
    PassSpec(
        "eliminate-common-subexpressions",
        "identical nodes on identical inputs computed once",
        lambda _: prune.EliminateCommonSubexpressions(),
        family="cleanup",
    ),
    PassSpec(
        "prune",
        "nodes that reach no output, unused/duplicate initializers, unused functions and opsets",
        lambda _: prune.PruneDeadWeight(),
        family="cleanup",
    ),
    PassSpec(
        "strip-debug-info",
        "doc strings and metadata of nodes and values (exporters' stack traces, module paths)",
        lambda _: prune.StripDebugInfo(),
        stage="finish",
        family="annotation",
    ),
    PassSpec(
        "topological-sort",
        "nodes sorted so every input is produced before use",
        lambda _: common.TopologicalSortPass(),
        stage="finish",
        family="order",
    ),
)


def rewrites(names: Iterable[str]) -> list[str]:
    """The passes of the "rewrite" family among `names`, once each, in registry order."""
    wanted = set(names)
    return [spec.name for spec in REGISTRY if spec.family == "rewrite" and spec.name in wanted]


def get(name: str) -> PassSpec:
    """The pass registered under `name`; an unknown name is a user error."""
    for spec in REGISTRY:
        if spec.name == name:
            return spec
    known = ", ".join(spec.name for spec in REGISTRY)
    raise OnnxSlimError(f"unknown pass {name!r} (known passes: {known})")
