"""Crash safety: SIGKILL and SIGINT mid-run, then the same command again."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, cli_env, prompts, read_jsonl, run_cli, write_jsonl

N = 30


def _start(fake, src: Path, out: Path) -> subprocess.Popen[str]:  # type: ignore[no-untyped-def]
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "caitool",
            "critique-revise",
            str(src),
            "-o",
            str(out),
            "--model",
            "openai/m",
            "--base-url",
            fake.openai_base_url,
            "--rounds",
            "2",
            "-c",
            "4",
        ],
        env=cli_env(),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for_rows(out: Path, n: int, proc: subprocess.Popen[str], limit_s: float = 180) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if out.exists() and out.read_bytes().count(b"\n") >= n:
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    raise AssertionError("the run wrote too few rows in time")


def _check_complete(out: Path) -> None:
    rows = read_jsonl(out)
    ids = [row["id"] for row in rows]
    assert sorted(ids) == sorted(f"p{i}" for i in range(N)), "every id exactly once"
    datasets = pytest.importorskip("datasets")
    ds = datasets.load_dataset("json", data_files=str(out), split="train")
    assert ds.num_rows == N


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["sigkill", "sigint"])
def test_kill_mid_run_then_resume_writes_every_id_once(fake, tmp_path: Path, sig: signal.Signals) -> None:
    fake.configure(latency_ms=60)
    src = write_jsonl(tmp_path / "in.jsonl", prompts(N))
    out = tmp_path / "out.jsonl"
    proc = _start(fake, src, out)
    _wait_for_rows(out, 5, proc)  # signalled mid-run: rows are written (no fixed sleep), records are left
    proc.send_signal(sig)
    # Generous: on a loaded machine with a busy disk, the interrupted run's way out (files fsynced, the
    # manifest written) can take seconds; a run that does not stop at all still fails here.
    _, stderr = proc.communicate(timeout=120)
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
        # The killed run's lock file stays behind, naming it; the OS dropped its lock, so it blocks nothing.
        assert str(proc.pid) in (tmp_path / "out.jsonl.lock").read_text()
        with out.open("a") as fh:  # what a crash in the middle of a write leaves behind
            fh.write('{"id": "p29", "prompt": [{"ro')
    else:
        assert proc.returncode == 130, stderr
        assert "rerun the same command to resume" in stderr
        manifest = json.loads((tmp_path / "out.jsonl.manifest.json").read_text())
        assert manifest["status"] == "interrupted"
    written_before = len([line for line in out.read_text().splitlines() if line.endswith("}")])
    assert 0 < written_before < N
    paid_before = fake.stats()["total"]

    r = run_cli(
        "critique-revise",
        str(src),
        "-o",
        str(out),
        "--model",
        "openai/m",
        "--base-url",
        fake.openai_base_url,
        "--rounds",
        "2",
        "-c",
        "4",
    )
    assert r.returncode == 0, r.stderr
    _check_complete(out)
    # Calls finished before the kill were checkpointed, so at most the in-flight calls are paid twice.
    paid_total = fake.stats()["total"]
    assert paid_total <= N * 5 + 4, (paid_before, paid_total)
    assert not (tmp_path / "out.jsonl.steps.jsonl").exists()  # cleaned up once nothing is left to resume
    assert not (tmp_path / "out.jsonl.lock").exists()
