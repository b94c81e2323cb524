"""Progress bars for long work, on stderr and only on a terminal."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


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


@contextlib.contextmanager
def progress(label: str, total: int | None, enabled: bool = True) -> Iterator[Steps]:
    """A transient bar labelled `label`, `total` steps; nothing if disabled or not on a terminal."""
    console = Console(stderr=True)
    if not (enabled and console.is_terminal):
        yield Steps(None, None)
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=True) as bar:
        yield Steps(bar, bar.add_task(label, total=total))
