"""How the command line ends: one line on stderr and an exit code per error, never a traceback."""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
import warnings
from collections.abc import Iterator
from pathlib import Path

import click

from onnxslim.errors import OnnxSlimError, first_line


@contextlib.contextmanager
def errors_to_exit_codes() -> Iterator[list[Path]]:
    """User errors: one line on stderr and exit 2 (1 for a failed check); never a traceback.

    The block appends each fully written file to the yielded list: an interruption says what exists.
    """
    written: list[Path] = []
    try:
        yield written
    except OnnxSlimError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        done = (
            f"{', '.join(map(str, written))} was written in full" if written else "nothing written"
        )
        click.echo(f"interrupted: {done}", err=True)
        sys.exit(130)
    except MemoryError:
        click.echo("error: out of memory", err=True)
        sys.exit(2)
    except Exception as err:  # noqa: BLE001 a bug of ours: still one line, the traceback only on request
        if os.environ.get("ONNXSLIM_DEBUG"):
            traceback.print_exc()
        click.echo(
            f"error: internal error ({type(err).__name__}: {first_line(err)}); "
            "set ONNXSLIM_DEBUG=1 for the traceback and please report it",
            err=True,
        )
        sys.exit(3)


@contextlib.contextmanager
def warnings_to_stderr() -> Iterator[None]:
    """Python warnings in the block become one `warning: ...` line each on stderr (with --quiet
    too; the API's `onnxslim: ` prefix dropped), never a source line."""

    def show(message, *_args, **_kwargs) -> None:
        click.echo(f"warning: {str(message).removeprefix('onnxslim: ')}", err=True)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield
