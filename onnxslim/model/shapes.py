"""ONNX shape inference kept apart from the process: on some models at some dims (a time axis too
short for the kernels: madmom's onset CNN at 3 frames, given or guessed), onnx 1.23 aborts the
whole process (a std::clamp assertion), and inference is an aid that must not take a run down."""

from __future__ import annotations

import contextlib
import faulthandler
import os
import select
import signal
import threading
import time
import warnings

import onnx

from onnxslim.model.graph import proto_graphs

#: Most seconds shape inference may take in the child before it is killed.
INFER_SECONDS = 120


class InferenceCrash(RuntimeError):
    """onnx shape inference killed its child process (a signal: an abort, a segfault; SIGKILL,
    the system's out-of-memory killer, aside): in process it would take the whole run down."""


def infer_shapes_apart(model: onnx.ModelProto, **options) -> onnx.ModelProto:
    """`onnx.shape_inference.infer_shapes(model, **options)` in a forked child where the system
    forks (in process elsewhere), for the types and shapes it infers: node attributes other than
    subgraphs are left out of the model returned (a tree ensemble's millions of values would cross
    the pipe). Raises InferenceCrash when the child dies of a signal, RuntimeError when it fails
    otherwise or takes over INFER_SECONDS; onnx's own errors stay in the child."""
    if not hasattr(os, "fork"):
        return _without_attribute_values(onnx.shape_inference.infer_shapes(model, **options))
    pid, status, read, write = 0, None, None, None
    try:
        read, write = os.pipe()
        with _interrupt_held(), warnings.catch_warnings():
            # Python 3.12+ warns of forking a process with threads
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
            if pid == 0:
                _infer_in_child(model, options, read, write)
        fd, write = write, None
        os.close(fd)
        pipe, read = os.fdopen(read, "rb", buffering=0), None  # the file closes it now
        chunks, deadline = [], time.monotonic() + INFER_SECONDS
        with pipe:
            while select.select([pipe], [], [], max(0.0, deadline - time.monotonic()))[0]:
                chunk = pipe.read(1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
            else:
                raise RuntimeError(f"onnx shape inference took over {INFER_SECONDS} s")
        status = _reap(pid)
    finally:
        for fd in (read, write):  # interrupted before the file took them
            if fd is not None:
                os.close(fd)
        if pid and status is None:  # interrupted or timed out: the child goes too
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            _reap(pid)
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) != signal.SIGKILL:  # not the OOM killer
        name = signal.Signals(os.WTERMSIG(status)).name
        raise InferenceCrash(f"onnx shape inference died of {name} in a child process")
    if status:
        raise RuntimeError(f"onnx shape inference failed in a child process (status {status})")
    return onnx.ModelProto.FromString(b"".join(chunks))


def _infer_in_child(model: onnx.ModelProto, options: dict, read: int, write: int) -> None:
    """The forked child: send the inferred model down `write`, then exit without any cleanup."""
    code = 1
    try:
        os.close(read)
        faulthandler.disable()  # an abort's message is not ours to show, nor its traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
        inferred = _without_attribute_values(onnx.shape_inference.infer_shapes(model, **options))
        with os.fdopen(write, "wb") as pipe:
            pipe.write(inferred.SerializeToString())
        code = 0
    finally:
        os._exit(code)


def _without_attribute_values(model: onnx.ModelProto) -> onnx.ModelProto:
    """`model` with its nodes' attributes other than subgraphs removed (in place)."""
    for graph in list(proto_graphs(model.graph)):
        for node in graph.node:
            for index in reversed(range(len(node.attribute))):
                attribute = node.attribute[index]
                if not attribute.HasField("g") and not attribute.graphs:
                    del node.attribute[index]
    return model


@contextlib.contextmanager
def _interrupt_held():
    """SIGINT held back while the block runs, its KeyboardInterrupt raised as it ends: a Ctrl-C
    landing in the handlers Python runs around a fork (logging's releases its lock there) would
    leave a lock held and the run hung. A no-op outside the main thread (no signal handler can
    be set there) or where SIGINT is not Python's default handler."""
    if (
        threading.current_thread() is not threading.main_thread()
        or signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    caught = []
    signal.signal(signal.SIGINT, lambda signum, _frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        if caught:  # also when the block failed (the fork): the user asked to stop
            raise KeyboardInterrupt


def _reap(pid: int) -> int:
    """The exit status of child `pid`, waited for; 0 where the system reaps children itself
    (SIGCHLD ignored): its complete output is then the judge."""
    try:
        return os.waitpid(pid, 0)[1]
    except ChildProcessError:
        return 0
