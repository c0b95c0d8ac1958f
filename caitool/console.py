"""Everything shown to a person goes to stderr through here; stdout carries only data.

Progress is drawn only when stderr is a terminal and `--quiet` is off; Rich honours NO_COLOR and FORCE_COLOR.
"""

from __future__ import annotations

import functools
import sys
import time
from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


@functools.cache
def err_console() -> Console:
    return Console(stderr=True, highlight=False)


def interactive() -> bool:
    return sys.stderr.isatty()


class RunProgress:
    """done/total, rate, ETA, tokens and cost, redrawn in place; a no-op when not interactive or quiet."""

    def __init__(self, description: str, total: int | None, *, quiet: bool) -> None:
        self.enabled = not quiet and interactive()
        self.started = time.monotonic()
        self._progress: Progress | None = None
        self._task = None
        if self.enabled:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total}"),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                TextColumn("{task.fields[extra]}"),
                console=err_console(),
                transient=False,
            )
            self._task = self._progress.add_task(description, total=total, rate="", extra="")

    def __enter__(self) -> RunProgress:
        if self._progress:
            self._progress.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._progress:
            self._progress.stop()

    def update(self, completed: int, *, tokens: int, cost: float | None, failed: int) -> None:
        if not self._progress or self._task is None:
            return
        elapsed = max(1e-6, time.monotonic() - self.started)
        extra = f"{tokens:,} tok"
        if cost is not None:
            extra += f" ${cost:.4f}"
        if failed:
            extra += f" [red]{failed} failed[/]"
        self._progress.update(
            self._task, completed=completed, rate=f"{completed / elapsed:.2f}/s", extra=extra
        )


def info(message: str, *, quiet: bool = False) -> None:
    if not quiet:
        err_console().print(message, highlight=False, soft_wrap=True)
