"""The benchmark verdict in words, for every report (terminal, JSON, HTML) and the CLI warning:
smaller, faster at load, faster per run, measured, with the ratio and the noise rule."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from onnxslim.render.format import human_bytes

if TYPE_CHECKING:
    from onnxslim.bench import Change, Verdict

#: How a time verdict reads.
TIME_WORDS = {"faster": "faster", "slower": "SLOWER", "same": "same within noise"}


def verdict_line(verdict: Verdict) -> str:
    """'d.onnx vs demo.onnx: smaller: 0.32x file size (...); load: faster, 0.45x (...); per run:
    same within noise, 1.00x (...)'."""
    return (
        f"{verdict.model} vs {verdict.reference}: {size_phrase(verdict.size)}; "
        f"load: {time_phrase(verdict.load, '.1f', 'interleaved session creations')}; "
        f"per run: {time_phrase(verdict.per_run, '.3f', f'{verdict.runs} interleaved runs')}"
    )


def verdict_lines(verdicts: Sequence[Verdict]) -> list[str]:
    """Every report's verdict section: one 'verdict: ...' line per model, then the noise rule."""
    if not verdicts:
        return []
    return [f"verdict: {verdict_line(v)}" for v in verdicts] + [noise_rule(verdicts[0])]


def size_phrase(size: Change) -> str:
    word = "same size" if size.verdict == "same" else size.verdict
    return (
        f"{word}: {size.ratio:.2f}x file size "
        f"({human_bytes(int(size.model))} vs {human_bytes(int(size.reference))})"
    )


def time_phrase(change: Change, spec: str, how: str) -> str:
    """'faster, 0.45x (1.0 vs 2.2 ms median; min 0.47x; 50 interleaved runs)', and a caution when
    the two ratios disagree (other load on the machine)."""
    phrase = (
        f"{TIME_WORDS[change.verdict]}, {change.ratio:.2f}x "
        f"({change.model:{spec}} vs {change.reference:{spec}} ms median; "
        f"min {change.min_ratio:.2f}x; {how})"
    )
    if change.disturbed:
        phrase += " [DISTURBED: median and min disagree, other load on this machine? time again]"
    return phrase


def noise_rule(verdict: Verdict) -> str:
    """The rule the verdicts follow, one line."""
    return (
        "verdict rule: ratios are model / reference; faster or SLOWER only when the median and "
        f"the min time ratio are both beyond {verdict.per_run.noise:.0%} per run, medians at "
        f"least {verdict.per_run.floor_ms * 1000:g} us apart ({verdict.load.noise:.0%} and "
        f"{verdict.load.floor_ms:g} ms at load) in the same "
        "direction, else same within noise"
    )


def slower_warning(
    verdict: Verdict, suspects: Sequence[str] | None, family: str = "rewrite"
) -> str:
    """The CLI warning when the result is measurably slower: what, by how much, and which passes to
    skip. `suspects`: the passes of `family` this run applied (None: not known here)."""
    what = " and ".join(
        f"{part} {getattr(verdict, part.replace(' ', '_')).ratio:.2f}x" for part in verdict.slower
    )
    line = f"{verdict.model} is measurably SLOWER than {verdict.reference} ({what})"
    if any(getattr(verdict, part.replace(" ", "_")).disturbed for part in verdict.slower):
        line += " by a disturbed timing (median and min disagree): time again on a quiet machine"
    if not suspects:
        return line
    why = (
        "they change what ONNX Runtime fuses at session creation"
        if family == "rewrite"
        else "no rewrite pass changed the graph"
    )
    return (
        f"{line}; {family} passes this run applied ({why}): {', '.join(suspects)}; rerun with "
        f"--skip NAME, one at a time or all as --skip {','.join(suspects)}, and keep the faster "
        "result"
    )
