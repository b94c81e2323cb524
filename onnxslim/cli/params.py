"""Option types of the command line."""

from __future__ import annotations

import re

import click

#: Byte multiples: K/M/G/T alone are binary (like `ls -h`), KB/MB/GB/TB decimal, KiB/... binary.
SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kb": 1000,
    "kib": 1024,
    "m": 1024**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "g": 1024**3,
    "gb": 1000**3,
    "gib": 1024**3,
    "t": 1024**4,
    "tb": 1000**4,
    "tib": 1024**4,
}
_SIZE = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)(?:e(\d+))?([a-z]*)$")


def parse_size(value: str | int) -> int:
    """Bytes from `1048576`, `512K`, `512KiB`, `1.5GB`, `1G`, `1e6`; ValueError otherwise."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(value)
        return value
    text = str(value).strip().lower().replace(" ", "").replace("_", "")
    match = _SIZE.match(text)
    if not match or match.group(3) not in SIZE_UNITS:
        raise ValueError(value)
    number, exponent, unit = match.groups()
    return int(float(number) * 10 ** int(exponent or 0) * SIZE_UNITS[unit])


class SizeParam(click.ParamType):
    """A byte count such as `1048576`, `512K`, `512KiB`, `2MB` or `1.5G`."""

    name = "size"

    def convert(self, value, param, ctx):
        try:
            return parse_size(value)
        except ValueError:
            self.fail(
                f"{value!r} is not a size (examples: 1048576, 512K, 512KiB, 2MB, 1.5G; "
                "K/M/G and KiB/MiB/GiB are powers of 1024, KB/MB/GB of 1000)",
                param,
                ctx,
            )
