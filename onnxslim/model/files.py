"""Atomic writes: temp files renamed into place, Ctrl-C and SIGTERM held while files are swapped."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

from onnxslim.errors import OnnxSlimError


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write text to a temporary file beside `path`, then rename it into place."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as err:
        raise OnnxSlimError(f"{path}: cannot write: {err.strerror or err}") from err
    finally:
        tmp.unlink(missing_ok=True)


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when both paths name the same existing file."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


_DEFERRED = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM until the block ends (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _DEFERRED)
    done = False
    try:
        yield
        done = True
    finally:
        if done:  # the files are in place: a signal that came meanwhile no longer stops anything
            for signum in signal.sigpending() & set(_DEFERRED):
                signal.sigwait({signum})
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """While a save runs, SIGTERM unwinds like Ctrl-C, so the staging folder is removed.

    Main thread only.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(_signum, _frame):
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except (ValueError, OSError):
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
