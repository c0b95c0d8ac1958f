"""Everything shown to a person goes to stderr through here; stdout carries only data.

Progress is drawn only when stderr is a terminal and `--quiet` is off; Rich honours NO_COLOR and FORCE_COLOR.
Messages are plain text, never Rich markup: they carry paths, ids, model names, error text and input data,
and a `[red]` in a file name must print as it is (a `[/x]` would even crash the markup parser). Colour comes
only from the `style` and `label` arguments.
"""

from __future__ import annotations

import functools
import sys
import time
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text


@functools.cache
def err_console() -> Console:
    return Console(stderr=True, highlight=False)


def interactive() -> bool:
    # `2>&-` leaves sys.stderr None: nobody is watching, so no progress (and no crash).
    return sys.stderr is not None and sys.stderr.isatty()


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


def info(message: str, *, quiet: bool = False, style: str = "", label: tuple[str, str] | None = None) -> None:
    """One message on stderr, as plain text. `style` colours all of it; `label` is a (text, style) prefix
    such as ("warning:", "yellow")."""
    if quiet:
        return
    text = Text(message, style=style)
    if label is not None:
        text = Text.assemble((label[0], label[1]), " ", text)
    err_console().print(text, highlight=False, soft_wrap=True)


def warn(message: str, *, quiet: bool = False) -> None:
    info(message, quiet=quiet, label=("warning:", "yellow"))


def error(message: str, hint: str | None = None) -> None:
    """A fatal error: `error: MESSAGE` and, when there is one, `hint: HINT`. Never silenced by --quiet."""
    info(message, label=("error:", "bold red"))
    if hint:
        info(hint, label=("hint:", "dim"))


def stdin_notice(path: str) -> None:
    """A command about to read stdin while it is a terminal would otherwise wait without a word."""
    if path == "-" and sys.stdin is not None and sys.stdin.isatty():
        info("reading JSONL from stdin; Ctrl-D to end (or pass an input file)", style="dim")


SHOWN_FAILURES = 10  # a stdout run shows this many failed records' reasons; an errors file keeps them all


def record_failed(row: dict[str, Any], count: int) -> None:
    """A failed record of a run without an errors file (output on stdout): its reason goes to stderr, or it
    would be lost. Shown for the first SHOWN_FAILURES (`count` is this one's number), then one note."""
    if count <= SHOWN_FAILURES:
        where = f" ({row['where']})" if row.get("where") else ""
        info(f"{row.get('id', '?')}{where}: {row.get('error', '')}", label=("failed:", "red"))
        if row.get("hint"):
            info(str(row["hint"]), label=("hint:", "dim"))
    elif count == SHOWN_FAILURES + 1:
        info(
            f"more than {SHOWN_FAILURES} records failed; only the first {SHOWN_FAILURES} are shown "
            "(give --errors FILE, or -o FILE, to keep every reason)",
            label=("failed:", "red"),
        )
