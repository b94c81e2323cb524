"""Replay the timed choices of static INT8 with full timings: would stopping early
(`trades._settled`) have decided each choice as the full timing did?

Usage: python scripts/trade_replay.py [MODEL ...]   (zoo models; default: four image models)

Each zoo model is quantized as `benchmarks/int8.py` quantizes it (calibration and selection splits,
target auto), the first timing of every trade and of INT8 against float compute
(`trades.timed_near_edge`) run in full (TRADE_SECONDS, no early stop) with its per-round times
kept. Each timing is then replayed round by round: the first round at which `_settled` would have
stopped it, the time ratio it had there, and whether that ratio falls on the same side of the
choice's edge as the full timing's. A line per choice, then a summary. Pin it to one core
(`taskset -c 1`) on a quiet machine: it times.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.int8 import onnxslim_quantize  # noqa: E402
from models.zoo import splits  # noqa: E402
from onnxslim import bench  # noqa: E402
from onnxslim.quantization import trades  # noqa: E402

DEFAULT_MODELS = ("efficientnet_lite1", "open_nsfw", "yolov8n_320", "ppocr_cls")


def replay(times: list[list[float]], edge: float) -> tuple[int | None, float | None]:
    """The first round at which `_settled` stops a timing of `times` against `edge`, and the time
    ratio the choice would have read there (the higher of the medians' and the fastest runs')."""
    for rounds in range(1, len(times[0]) + 1):
        before, after = (np.asarray(t[:rounds]) for t in times)
        if bench.fewest_runs(rounds, 0.0) and trades._settled([before, after], edge):
            ratio = max(np.median(after) / np.median(before), after.min() / before.min())
            return rounds, float(ratio)
    return None, None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*", default=DEFAULT_MODELS)
    args = parser.parse_args()
    timed_runs = bench._timed_runs
    recorded: list[list[list[float]]] = []
    trades_seen: list[dict] = []

    def keep_times(*args, **kwargs):
        recorded.append(timed_runs(*args, **kwargs))
        return recorded[-1]

    def full_timing(models, sample, edge):
        timing = tuple(trades.side_by_side(models, sample, trades.TRADE_RUNS))  # no early stop
        ratio = trades.time_ratio(*timing)
        trades_seen.append({"times": recorded[-1], "full": ratio, "edge": edge})
        if abs(ratio - edge) < trades.EDGE_STEP:  # timed again near the edge, as in a real run
            return [timing, tuple(trades.side_by_side(models, sample, trades.EDGE_RUNS))]
        return [timing]

    bench._timed_runs, trades.timed_near_edge = keep_times, full_timing
    settled = agreed = 0
    for name in args.models:
        start = len(trades_seen)
        onnxslim_quantize(name, splits(name), None, "auto")
        for seen in trades_seen[start:]:
            edge = seen["edge"]
            rounds, early = replay(seen["times"], edge)
            same = None if early is None else (early < edge) == (seen["full"] < edge)
            settled += rounds is not None
            agreed += bool(same)
            print(
                f"{name}: edge {edge:.3f}, full {seen['full']:.3f} ({len(seen['times'][0])} "
                f"rounds); "
                + (
                    f"settled after {rounds} rounds at {early:.3f}: "
                    f"{'same side' if same else 'OTHER SIDE'}"
                    if rounds
                    else "never settled"
                )
            )
    print(
        f"{len(trades_seen)} timed choices, {settled} settled early, {agreed} on the full "
        "timing's side"
    )
    return 0 if agreed == settled else 1


if __name__ == "__main__":
    sys.exit(main())
