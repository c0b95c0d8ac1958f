"""The `caitool` command. A command is flags plus one library call: each module here (one per command or
command group, all listed in `commands.py`) declares its flags, builds its task from `caitool/tasks/` and
hands it to `_common.run_task` (or calls a library function); the client and run flags every data command
shares are declared once in `_options.py`. Heavy libraries (SDKs, torch, trl) are imported inside the command
body, never here, so that `caitool --help` stays fast.

`main()` maps `CaitoolError` to a one-line message on stderr and its exit code. Set CAITOOL_DEBUG=1 for the
traceback.
"""

from __future__ import annotations

import os
import sys

import typer

from caitool import __version__
from caitool.errors import EXIT_INTERRUPTED, CaitoolError, ConsumerGone

app = typer.Typer(
    name="caitool",
    help="Constitutional AI (Bai et al. 2022) from the shell: critique-revise, AI labels, training.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"caitool {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version."
    ),
) -> None:
    """Constitutional AI from the shell. JSONL in, JSONL out; progress and logs on stderr."""


def _register() -> None:
    # Imported for their side effect of adding commands to `app`; each module is light at import time.
    from caitool.cli import commands  # noqa: F401


def report_error(exc: CaitoolError) -> None:
    from caitool.console import error

    error(str(exc), exc.hint)


def _occupy_closed_std_fds() -> None:
    """Put /dev/null on a closed fd 0, 1 or 2 (`2>&-`), so the next file opened (the output, say) cannot
    take that number and receive every stray write meant for a standard stream. A closed stdout is opened
    read-only, so writing data there fails loudly instead of vanishing."""
    for fd, mode in ((0, os.O_RDONLY), (1, os.O_RDONLY), (2, os.O_WRONLY)):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, mode)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)


def main() -> None:
    _occupy_closed_std_fds()
    _register()
    try:
        # Standalone mode: click reports its own usage errors (exit 2) and honours typer.Exit codes.
        app()
    except ConsumerGone:  # `| head -1` closed stdout: what the reader wanted was written; end quietly
        sys.exit(ConsumerGone.exit_code)
    except CaitoolError as exc:
        if os.environ.get("CAITOOL_DEBUG"):
            raise
        report_error(exc)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)
