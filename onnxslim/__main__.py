"""`python -m onnxslim` and the `onnxslim` command: the CLI, handling Ctrl-C during start-up too."""

import sys


def _interrupted(err: BaseException | None) -> bool:
    """Whether `err` is Ctrl-C, or an error it caused: a C extension interrupted while it loads
    (onnxruntime's) raises ImportError from the KeyboardInterrupt, a dataclass being defined
    RuntimeError."""
    seen = set()
    while err is not None and id(err) not in seen:  # an error may be its own cause
        if isinstance(err, KeyboardInterrupt):
            return True
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return False


def run() -> None:
    try:
        from onnxslim.cli import main
    except BaseException as err:  # Ctrl-C, or what it interrupted raised from it
        if not _interrupted(err):
            raise
        sys.stderr.write("interrupted: nothing written\n")
        sys.exit(130)
    main()


if __name__ == "__main__":
    run()
