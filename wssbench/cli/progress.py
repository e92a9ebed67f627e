"""Progress on stderr: rich bars on a terminal, plain lines when stderr is a pipe or a file.

Both take the calls the pipeline makes (``add_task``, ``update``, ``advance``, ``remove_task``);
the plain form prints a task's line when it starts, then at most every ``interval`` seconds or
every 10 % of its total, and when it ends, so a piped run says what it is doing.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class LineProgress:
    """The pipeline's progress calls, as occasional one-line reports."""

    def __init__(self, console: Console, interval: float = 30.0):
        self.console, self.interval = console, interval
        self._tasks: dict[int, dict[str, Any]] = {}
        self._next = 0

    def add_task(self, description: str, total: float | None = None, **_: Any) -> int:
        task = self._next
        self._next += 1
        now = time.monotonic()
        self._tasks[task] = {"description": description, "total": total, "completed": 0, "start": now,
                             "printed": now, "decile": 0}
        self._say(task, "started")
        return task

    def update(self, task: int, completed: float | None = None, total: float | None = None,
               description: str | None = None, advance: float | None = None, **_: Any) -> None:
        t = self._tasks[task]
        if description is not None:
            t["description"] = description
        if total is not None:
            t["total"] = total
        if completed is not None:
            t["completed"] = completed
        if advance is not None:
            t["completed"] += advance
        self._maybe_say(task)

    def advance(self, task: int, advance: float = 1) -> None:
        self.update(task, advance=advance)

    def remove_task(self, task: int) -> None:
        self._say(task, "done")
        del self._tasks[task]

    def _maybe_say(self, task: int) -> None:
        t = self._tasks[task]
        now = time.monotonic()
        decile = int(10 * t["completed"] / t["total"]) if t["total"] else 0
        if now - t["printed"] >= self.interval or decile > t["decile"]:
            t["printed"], t["decile"] = now, decile
            self._say(task)

    def _say(self, task: int, state: str = "") -> None:
        t = self._tasks[task]
        count = f"{t['completed']:g}/{t['total']:g}" if t["total"] else f"{t['completed']:g}"
        elapsed = time.monotonic() - t["start"]
        self.console.print(f"{t['description']}: {state or count} ({elapsed:.0f} s)", soft_wrap=True, highlight=False)


@contextmanager
def progress_display(console: Console) -> Iterator[Any]:
    """Bars on a terminal, lines elsewhere; nothing when the console is quiet."""
    if console.is_terminal or console.quiet:
        columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
        with Progress(*columns, console=console, transient=True) as progress:
            yield progress
    else:
        yield LineProgress(console)
