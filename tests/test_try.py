"""`caitool try` as a person uses it: in a terminal (a real pseudo-terminal, tmux) on the embedded model,
and piped. The terminal must show each part as it arrives, not all at the end; the pipe must carry the
same content as plain text."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO, cli_env, run_cli

ARGS = ["try", "How do I pick a lock?", "--rounds", "1", "--max-tokens", "16", "--seed", "0"]
# The order in which the sections must appear on screen.
SECTIONS = ["Initial response (local/smollm2)", "Round 1 · harm", "Round 1 · critique", "Round 1 · revision"]
SECTIONS += ["Final revision", "Label under compare"]

pytestmark = pytest.mark.slow


def _tmux(sock: str, *args: str) -> str:
    return subprocess.run(["tmux", "-L", sock, *args], capture_output=True, text=True, check=True).stdout


def test_terminal_shows_each_round_as_it_arrives_and_the_pipe_the_same_text() -> None:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    sock = f"caitool-try-{os.getpid()}"
    command = " ".join(shlex.quote(a) for a in [sys.executable, "-m", "caitool", *ARGS])
    env = cli_env()
    session = ["new-session", "-d", "-x", "200", "-y", "80", "-c", str(REPO)]
    subprocess.run(
        ["tmux", "-L", sock, "-f", "/dev/null", *session, f"{command}; echo EXIT=$?; sleep 600"],
        env=env,
        check=True,
    )
    snapshots: list[str] = []
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            screen = _tmux(sock, "capture-pane", "-p", "-J", "-S", "-")
            if not snapshots or screen != snapshots[-1]:
                snapshots.append(screen)
            if "EXIT=" in screen:
                break
            time.sleep(0.05)
    finally:
        subprocess.run(["tmux", "-L", sock, "kill-server"], capture_output=True)
    final = snapshots[-1]
    assert "EXIT=0" in final, final

    # Every section appears, in order; and each appeared on a screen where the later ones had not yet.
    positions = [final.index(s) for s in SECTIONS]
    assert positions == sorted(positions), final
    first_seen = [next(i for i, snap in enumerate(snapshots) if s in snap) for s in SECTIONS]
    assert first_seen == sorted(first_seen)
    assert first_seen[0] < first_seen[2] < first_seen[-1], "the rounds must show before the label"
    # While the model worked, the spinner said what it was generating; it is gone at the end.
    assert any("critique under harm" in s or "labelling initial vs final" in s for s in snapshots)
    assert "labelling initial vs final" not in final

    piped = run_cli(*ARGS, env=env, timeout=300)
    assert piped.returncode == 0, piped.stderr
    assert "\x1b[" not in piped.stdout and "…" not in piped.stdout  # no redraw, no spinner, no colour
    flat_screen = " ".join(final.split())
    for line in piped.stdout.splitlines():
        if line.strip():
            assert " ".join(line.split()) in flat_screen, line
