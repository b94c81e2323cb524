"""Errors that the CLI turns into one line on stderr and an exit code."""


class OnnxSlimError(Exception):
    """A user-facing error: bad input, unwritable output, unsupported model. Exit code 2."""

    exit_code = 2


class CheckFailedError(OnnxSlimError):
    """The optimized or quantized model failed a check against the original. Exit code 1."""

    exit_code = 1
