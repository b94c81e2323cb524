"""`python -m onnxslim` and the `onnxslim` command: the CLI, handling Ctrl-C during start-up too."""

import sys


def run() -> None:
    try:
        from onnxslim.cli import main
    except KeyboardInterrupt:
        sys.stderr.write("interrupted: nothing written\n")
        sys.exit(130)
    main()


if __name__ == "__main__":
    run()
