"""The exceptions and warnings onnxslim raises for users.

The CLI turns them into one line on stderr and an exit code.
"""

from __future__ import annotations


class OnnxSlimError(Exception):
    """A user-facing error: bad input, unwritable output, unsupported model. Exit code 2."""

    exit_code = 2


class CheckFailedError(OnnxSlimError):
    """The optimized or quantized model failed a check against the original. Exit code 1."""

    exit_code = 1


class ReportWarning(UserWarning):
    """A warning of a result's report (`quantize`'s: drifting, slower, nothing in INT8), raised
    for callers who do not read the report; the CLI prints the report's instead."""


def first_line(err: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message, cut in the middle (the cause often comes last)."""
    text = str(err).strip() or type(err).__name__
    return shorten(text.splitlines()[0], limit)


def shorten(text: str, limit: int) -> str:
    """`text` at most `limit` characters long, cut in the middle."""
    if len(text) <= limit:
        return text
    head = (limit - 5) * 2 // 5
    return f"{text[:head]} ... {text[len(text) - (limit - 5 - head) :]}"
