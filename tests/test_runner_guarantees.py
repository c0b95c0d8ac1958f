"""The record window (caitool/runner.py, README "What you can rely on"), through the real CLI:

- at most `--concurrency` records in flight, and the window stays full;
- a bad input line stops dispatching but lets the records already in flight finish and be written, then
  exits 2 naming the file and line;
- exit 141 when the reader closes stdout (`| head -1`), seen in caitool's own status, not head's;
- progress drawn only when stderr is a terminal.
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

from caitool.testing.fake_server import FakeServer
from tests.conftest import REPO, cli_env, prompts, read_jsonl, run_cli, write_jsonl


def cr(fake: FakeServer, *args: str) -> list[str]:
    return [
        "critique-revise",
        *args,
        "--model",
        "openai/m",
        "--base-url",
        fake.openai_base_url,
        "--rounds",
        "1",
    ]


def test_the_window_holds_exactly_concurrency_records(fake: FakeServer, tmp_path: Path) -> None:
    fake.configure(latency_ms=40)
    src = write_jsonl(tmp_path / "in.jsonl", prompts(12))
    r = run_cli(*cr(fake, str(src), "-o", str(tmp_path / "out.jsonl"), "--concurrency", "3"))
    assert r.returncode == 0, r.stderr
    # a record's calls run one after another, so requests in flight = records in flight
    assert fake.stats()["max_in_flight"] == 3


def test_a_bad_line_lets_the_records_in_flight_finish(fake: FakeServer, tmp_path: Path) -> None:
    fake.configure(latency_ms=300)  # the five good records are all in flight when line 6 is read
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(p) + "\n" for p in prompts(5)) + "{not json\n")
    out = tmp_path / "out.jsonl"
    r = run_cli(*cr(fake, str(src), "-o", str(out)))
    assert r.returncode == 2, r.stderr
    assert f"{src}:6" in r.stderr and "Traceback" not in r.stderr
    assert sorted(row["id"] for row in read_jsonl(out)) == [f"p{i}" for i in range(5)]


def test_exit_141_when_the_reader_closes_stdout(fake: FakeServer, tmp_path: Path) -> None:
    fake.configure(latency_ms=20)  # the run outlasts head: later rows meet a closed pipe
    src = write_jsonl(tmp_path / "in.jsonl", prompts(60))
    argv = " ".join([sys.executable, "-m", "caitool", *cr(fake, str(src), "--concurrency", "2")])
    # PIPESTATUS[0] is caitool's status; a plain `| head -1` would report head's.
    proc = subprocess.run(
        ["bash", "-c", f'{argv} | head -1; exit "${{PIPESTATUS[0]}}"'],
        capture_output=True,
        text=True,
        env=cli_env(),
        timeout=120,
        cwd=REPO,
    )
    assert proc.returncode == 141, proc.stderr
    assert len(proc.stdout.splitlines()) == 1 and json.loads(proc.stdout)["id"] == "p0"
    assert "Traceback" not in proc.stderr


def run_with_stderr_on_a_pty(argv: list[str]) -> tuple[int, str]:
    """Run the CLI with stdout to a pipe and stderr to a terminal; (status, what the terminal showed)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "caitool", *argv],
        stdout=subprocess.PIPE,
        stderr=slave,
        env={**cli_env(), "COLUMNS": "120", "TERM": "xterm"},
        cwd=REPO,
    )
    os.close(slave)
    shown = b""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            shown += chunk
        elif proc.poll() is not None:
            break
    os.close(master)
    assert proc.stdout is not None
    proc.stdout.read()
    return proc.wait(timeout=30), shown.decode(errors="replace")


def test_progress_only_on_a_terminal(fake: FakeServer, tmp_path: Path) -> None:
    fake.configure(latency_ms=30)
    src = write_jsonl(tmp_path / "in.jsonl", prompts(4))
    status, shown = run_with_stderr_on_a_pty(cr(fake, str(src), "-o", str(tmp_path / "tty.jsonl")))
    assert status == 0, shown
    assert "4/4" in shown  # the progress bar's done/total
    piped = run_cli(*cr(fake, str(src), "-o", str(tmp_path / "pipe.jsonl")))
    assert piped.returncode == 0, piped.stderr
    assert "4/4" not in piped.stderr and "\r" not in piped.stderr and "\x1b[" not in piped.stderr
