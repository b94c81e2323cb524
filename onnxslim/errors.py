"""Errors that the CLI turns into one line on stderr and an exit code."""


class OnnxSlimError(Exception):
    """A user-facing error: bad input, unwritable output, unsupported model. Exit code 2."""

    exit_code = 2


class CheckFailedError(OnnxSlimError):
    """The optimized or quantized model failed a check against the original. Exit code 1."""

    exit_code = 1


def first_line(err: BaseException, limit: int = 300) -> str:
    """The first line of an exception's message, for one-line error reports."""
    text = str(err).strip() or type(err).__name__
    return text.splitlines()[0][:limit]
