"""Option types of the command line."""

from __future__ import annotations

import click

SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "kib": 1024,
    "mb": 1000**2,
    "mib": 1024**2,
    "gb": 1000**3,
    "gib": 1024**3,
}


class SizeParam(click.ParamType):
    """A byte count such as `1048576`, `512KiB` or `2MB`."""

    name = "size"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        text = str(value).strip().lower().replace(" ", "")
        number = text.rstrip("abcdefghijklmnopqrstuvwxyz")
        unit = text[len(number) :]
        try:
            size = int(float(number) * SIZE_UNITS[unit])
            if size < 0:
                raise ValueError
            return size
        except (KeyError, ValueError):
            self.fail(f"{value!r} is not a size (examples: 1048576, 512KiB, 2MB)", param, ctx)
