"""A command reading stdin while stdin is a terminal says so on stderr, instead of waiting without a word
(or behind a progress bar at 0/None); with piped stdin it stays silent."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO, cli_env, run_cli

NOTICE = "reading JSONL from stdin; Ctrl-D to end"


def _on_terminal_stdin(*args: str) -> subprocess.CompletedProcess[str]:
    """Run caitool with a pseudo-terminal as stdin; type Ctrl-D once it has said something on stderr."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "caitool", *args],
        stdin=slave,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
        cwd=REPO,
    )
    os.close(slave)
    try:
        time.sleep(0.5)
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            os.write(master, b"\x04")  # Ctrl-D at the start of a line: end of input
            time.sleep(0.2)
        out, err = proc.communicate(timeout=30)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.parametrize(
    "args",
    [
        ("critique-revise", "-m", "openai/m", "--base-url", "http://127.0.0.1:9/v1"),
        ("elo",),
        ("stats",),
    ],
)
def test_terminal_stdin_is_announced(args: tuple[str, ...]) -> None:
    r = _on_terminal_stdin(*args)
    assert NOTICE in r.stderr, r.stderr
    assert r.returncode == 2, r.stderr  # then the empty input is reported as usual
    assert "Traceback" not in r.stderr


def test_piped_stdin_is_not_announced() -> None:
    r = run_cli("elo", input="")
    assert NOTICE not in r.stderr
