"""What the evaluation commands share: whole input files read with the bad-input policy, and their tables and
warnings on stderr (their JSON result goes to stdout)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def table(title: str, columns: list[tuple[str, str]], rows: list[list[str]], quiet: bool = False) -> None:
    """A Rich table on stderr. `columns`: (header, justify)."""
    if quiet:
        return
    from rich.table import Table
    from rich.text import Text

    from caitool.console import err_console

    # Cells hold model names, ids and phrases: Text, so that they are never read as Rich markup.
    grid = Table(title=Text(title), title_justify="left", show_edge=False, pad_edge=False)
    for header, justify in columns:
        grid.add_column(Text(header), justify=justify)  # type: ignore[arg-type]
    for row in rows:
        grid.add_row(*(Text(cell) for cell in row))
    err_console().print(grid)


def warn(message: str, quiet: bool = False) -> None:
    from caitool.console import warn

    warn(message, quiet=quiet)


def read_rows(path: str, on_bad_input: str, rejects: str | None, parse: Any) -> list[Any]:
    """Every line of `path` through `parse` (Line -> item), with the bad-input policy (fail or skip)."""
    from caitool.cli._common import BadInputPolicy, lines_to_jobs
    from caitool.runner import RunCounts

    policy = BadInputPolicy(on_bad_input, rejects, None, RunCounts())
    return list(lines_to_jobs(path, policy, lambda line: [parse(line)]))


def print_rows(rows: Iterable[dict[str, Any]]) -> None:
    """Rows as JSONL on stdout, each flushed whole; a reader that closes the pipe ends the command quietly."""
    from caitool.errors import ConsumerGone
    from caitool.store import dumps

    try:
        for row in rows:
            print(dumps(row), flush=True)
    except BrokenPipeError:
        raise ConsumerGone("output closed by the reader") from None
