"""What CPU this is: model name, architecture and the ISA features that matter to ORT's kernels;
and how much memory is available."""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path

FEATURE_LABELS = {"avx2": "AVX2", "avx512": "AVX-512", "vnni": "VNNI", "neon": "NEON"}


@dataclass(frozen=True)
class CpuInfo:
    """`flags` maps avx2, avx512, vnni (AVX512-VNNI or AVX-VNNI) and neon to True/False."""

    model: str
    arch: str
    flags: dict[str, bool] = field(default_factory=dict)

    @property
    def features(self) -> list[str]:
        """Display names of the features present, e.g. ['AVX2', 'VNNI']."""
        return [label for key, label in FEATURE_LABELS.items() if self.flags.get(key)]

    def to_dict(self) -> dict:
        return {"model": self.model, "arch": self.arch, "flags": dict(self.flags)}


def cpu_info(cpuinfo: str | Path = "/proc/cpuinfo") -> CpuInfo:
    """Read /proc/cpuinfo (Linux); elsewhere fall back to `platform` and report no ISA flags."""
    arch = platform.machine() or "unknown"
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return CpuInfo(
            model=platform.processor() or arch, arch=arch, flags=parse_flags(set(), arch)
        )
    return parse_cpuinfo(text, arch)


def allowed_cores(cpuinfo: str | Path = "/proc/cpuinfo") -> int:
    """The threads for work on every core where this process may run on fewer CPUs than the
    machine has (taskset, a container's cpuset): one per physical core among them (by
    /proc/cpuinfo; where it does not say, one per CPU); else 0, ORT's default, a thread per
    physical core of the machine, which ignores the restriction (a calibration pass pinned to one
    core took 2.1x the time on two threads)."""
    try:
        allowed = os.sched_getaffinity(0)
    except (AttributeError, OSError):  # not on Linux
        return 0
    if len(allowed) >= (os.cpu_count() or len(allowed)):
        return 0
    return _cores_among(frozenset(allowed), str(cpuinfo))


@functools.lru_cache(maxsize=8)
def _cores_among(allowed: frozenset[int], cpuinfo: str) -> int:
    """`allowed_cores` of a restriction, read once per process (a session each time, else)."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return len(allowed)
    return physical_cores(text, allowed) or len(allowed)


def physical_cores(text: str, processors: set[int]) -> int:
    """How many distinct physical cores (socket and core id) /proc/cpuinfo `text` gives the
    `processors`; 0 where it does not say."""
    cores = set()
    for block in text.split("\n\n"):
        fields = dict(
            (key.strip(), value.strip())
            for key, _, value in (line.partition(":") for line in block.splitlines())
        )
        if fields.get("processor", "").isdigit() and int(fields["processor"]) in processors:
            if "core id" not in fields:
                return 0
            cores.add((fields.get("physical id"), fields["core id"]))
    return len(cores)


def parse_cpuinfo(text: str, arch: str) -> CpuInfo:
    """Parse the first processor block of /proc/cpuinfo text."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip().lower() not in fields:
            fields[key.strip().lower()] = value.strip()
    model = (
        fields.get("model name")
        or fields.get("hardware")
        or fields.get("cpu model")
        or platform.processor()
        or arch
    )
    words = set((fields.get("flags") or fields.get("features") or "").lower().split())
    return CpuInfo(model=model, arch=arch, flags=parse_flags(words, arch))


def parse_flags(words: set[str], arch: str) -> dict[str, bool]:
    """Reduce kernel flag names to the features we report."""
    return {
        "avx2": "avx2" in words,
        "avx512": "avx512f" in words,
        "vnni": bool({"avx512_vnni", "avx_vnni", "avx512vnni", "avxvnni"} & words),
        "neon": bool({"neon", "asimd"} & words) or arch.lower() in ("aarch64", "arm64"),
    }


def available_memory(meminfo: str | Path = "/proc/meminfo") -> int | None:
    """Bytes of memory available to a new process (Linux's MemAvailable); None where unknown."""
    try:
        text = Path(meminfo).read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key == "MemAvailable" and value.split()[1:] == ["kB"]:
            return int(value.split()[0]) * 1024
    return None
