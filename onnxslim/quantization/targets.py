"""Deployment CPU profiles for INT8: which weight range and which integer kernels pay off where."""

from __future__ import annotations

import dataclasses

from onnxslim.cpu import CpuInfo, cpu_info
from onnxslim.errors import OnnxSlimError
from onnxslim.quantization.pairs import PAIR_LIMIT


@dataclasses.dataclass(frozen=True)
class Target:
    """Deployment CPU profile: weight range and which int8 kernels pay off there."""

    name: str
    pair_limit: int | None  # see quantization.pairs; None: no limit on the 8-bit weights
    skip_depthwise: bool
    note: str


TARGETS = {
    "avx2": Target(
        "avx2",
        PAIR_LIMIT,
        True,
        "x86 without VNNI: 8-bit weights, each pair of neighbours along the reduction limited so "
        "that ORT's u8s8 kernels cannot saturate",
    ),
    "vnni": Target("vnni", None, True, "x86 with VNNI: full 8-bit weights"),
    "arm": Target("arm", None, False, "ARM: full 8-bit weights, int8 depthwise kernels"),
}
#: What `target` accepts: "auto" (this CPU) or a profile name.
CHOICES = ("auto", *TARGETS)


def resolve_target(target: str, cpu: CpuInfo | None = None) -> tuple[Target, str]:
    """The profile for ``target`` ("auto" detects this CPU) and a sentence on how it was chosen."""
    if target != "auto":
        if target not in TARGETS:
            raise OnnxSlimError(f"unknown target {target!r}: choose {', '.join(CHOICES)}")
        return TARGETS[target], f"{target} (given)"
    cpu = cpu or cpu_info()
    arch = cpu.arch.lower()
    if arch.startswith(("arm", "aarch")):
        name = "arm"
    else:
        name = "vnni" if cpu.flags.get("vnni") else "avx2"
    features = ", ".join(cpu.features) or "no ISA flags found"
    return TARGETS[name], f"{name} (detected: {cpu.model}; {features})"


def saturates_here(profile: Target, cpu: CpuInfo | None = None) -> bool:
    """Whether this CPU's int8 kernels would saturate `profile`'s weights: full 8-bit weights (no
    pair limit) on x86 without VNNI, whose u8s8 kernels add pairs of products in int16."""
    cpu = cpu or cpu_info()
    arm = cpu.arch.lower().startswith(("arm", "aarch"))
    return profile.pair_limit is None and not arm and not cpu.flags.get("vnni")
