"""Progress of long work on stderr: a bar on a terminal, a line every HEARTBEAT_S elsewhere."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

#: Seconds between progress lines when stderr is not a terminal (a CI log, a file): short work
#: prints nothing.
HEARTBEAT_S = 15.0


class Steps:
    """A running progress bar: `advance()` one step, `describe(text, total=None)` the phase."""

    def __init__(self, bar: Progress | None, task):
        self.bar, self.task = bar, task

    def advance(self, steps: int = 1) -> None:
        if self.bar is not None:
            self.bar.advance(self.task, steps)

    def describe(self, text: str, total: int | None = None) -> None:
        if self.bar is not None:
            self.bar.update(self.task, description=text, **({"total": total} if total else {}))


class LogLines(Steps):
    """Progress as a line on `console` at the first step after every HEARTBEAT_S seconds, and a
    last line when it ends if any was printed: for logs, where a bar would print nothing useful."""

    def __init__(self, console: Console, label: str, total: int | None):
        super().__init__(None, None)
        self.console, self.label, self.total, self.done = console, label, total, 0
        self.started = self.last = time.perf_counter()
        self.printed = False

    def advance(self, steps: int = 1) -> None:
        self.done += steps
        now = time.perf_counter()
        if now - self.last >= HEARTBEAT_S:
            self.last = now
            self._line(f"{self.done}/{self.total}" if self.total else f"{self.done} so far")

    def describe(self, text: str, total: int | None = None) -> None:
        self.label, self.total = text, total or self.total

    def finish(self) -> None:
        if self.printed:
            self._line("done")

    def _line(self, status: str) -> None:
        elapsed = time.perf_counter() - self.started
        self.console.print(
            f"{self.label}: {status} ({elapsed:.0f} s)", highlight=False, soft_wrap=True
        )
        self.printed = True


#: The bars on the terminal now: work inside other work adds a bar to them (two live displays
#: would redraw over each other).
_live: Progress | None = None
#: The progress of the work running now, innermost last (see `current`).
_running: list[Steps] = []


def current() -> Steps:
    """The innermost `progress_bar` running (a disabled one included), or one showing nothing: for
    steps deep inside a stage (the runs of a timing) that its caller labelled. Steps of unknown
    count: call it inside a stage of no total (one with a total would pass it)."""
    return _running[-1] if _running else Steps(None, None)


@contextlib.contextmanager
def progress_bar(label: str, total: int | None, enabled: bool = True) -> Iterator[Steps]:
    """A transient bar labelled `label`, `total` steps, on a terminal (below the bars of the work
    it is part of); progress lines elsewhere (see LogLines); nothing if disabled. It is `current`
    while it runs."""
    with _shown(label, total, enabled) as steps:
        _running.append(steps)
        try:
            yield steps
        finally:
            _running.pop()


@contextlib.contextmanager
def _shown(label: str, total: int | None, enabled: bool) -> Iterator[Steps]:
    """`progress_bar`'s display."""
    global _live
    console = Console(stderr=True)
    if not enabled:
        yield Steps(None, None)
        return
    if not console.is_terminal:
        steps = LogLines(console, label, total)
        yield steps
        steps.finish()
        return
    if _live is not None:
        outer, task = _live, _live.add_task(label, total=total)
        try:
            yield Steps(outer, task)
        finally:
            outer.remove_task(task)
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        _live = bar
        try:
            yield Steps(bar, bar.add_task(label, total=total))
        finally:
            _live = None
