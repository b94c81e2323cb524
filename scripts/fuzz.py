"""Differential fuzzing beyond CI's budget: random valid graphs through onnxslim, compared on ORT.

Usage: python scripts/fuzz.py [--examples 2000] [--rounds 1] [--save DIR]

Runs tests/test_fuzz.py's property (checker passes, ORT loads, outputs allclose) on `--examples`
fresh random models per round (CI runs a fixed, smaller sample). A failure is shrunk by hypothesis
to a small model, printed, and saved as DIR/failing.onnx: turn it into a `test_regression_*` test.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=2000, help="random models per round")
    parser.add_argument(
        "--rounds", type=int, default=1, help="rounds, each with fresh random models"
    )
    parser.add_argument(
        "--save", type=Path, default=Path("fuzz-failures"), help="where a failing model goes"
    )
    args = parser.parse_args(argv)
    args.save.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "ONNXSLIM_FUZZ_EXAMPLES": str(args.examples),
        "ONNXSLIM_FUZZ_RANDOM": "1",
        "ONNXSLIM_FUZZ_SAVE": str(args.save.resolve()),
    }
    for round_ in range(1, args.rounds + 1):
        print(f"round {round_}/{args.rounds}: {args.examples} random models", flush=True)
        code = subprocess.call(
            [
                sys.executable,
                "-m",
                "pytest",
                "-q",
                "-x",
                "-p",
                "no:cacheprovider",
                str(REPO / "tests" / "test_fuzz.py"),
                "-k",
                "random_models_match",
                "--hypothesis-show-statistics",
            ],
            cwd=REPO,
            env=env,
        )
        if code != 0:
            print(f"failure: the shrunk model is {args.save / 'failing.onnx'}", file=sys.stderr)
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
