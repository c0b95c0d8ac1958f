"""One writer per output: a second run on an output in use is refused at once, naming the run that holds it;
a lock left by a killed run never blocks the rerun."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, cli_env, prompts, write_jsonl

N = 40
CMD = [sys.executable, "-m", "caitool", "critique-revise", "--model", "openai/m"]


def _start(fake, src: Path, out: Path) -> subprocess.Popen[str]:  # type: ignore[no-untyped-def]
    return subprocess.Popen(
        [*CMD, str(src), "-o", str(out), "--base-url", fake.openai_base_url, "--rounds", "1", "-c", "4"],
        env=cli_env(),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_runs_on_one_output_one_refused_every_id_once(fake, tmp_path: Path) -> None:
    fake.configure(latency_ms=80)  # 40 records x 3 calls x 80 ms at C = 4: about 2.4 s, so the runs overlap
    src = write_jsonl(tmp_path / "in.jsonl", prompts(N))
    out = tmp_path / "out.jsonl"
    procs = [_start(fake, src, out), _start(fake, src, out)]  # started together, both under load
    results = [(p.pid, *p.communicate(timeout=120), p.returncode) for p in procs]
    codes = sorted(r[3] for r in results)
    assert codes == [0, 2], results
    (winner,) = [r for r in results if r[3] == 0]
    (loser,) = [r for r in results if r[3] == 2]
    assert "is being written by another caitool run" in loser[2], loser[2]
    assert f"pid {winner[0]}" in loser[2] and "critique-revise" in loser[2]
    assert "Traceback" not in loser[2]
    lines = out.read_text().splitlines()
    ids = [json.loads(line)["id"] for line in lines]  # every line is whole, valid JSON
    assert sorted(ids) == sorted(f"p{i}" for i in range(N))  # every id exactly once
    manifest = json.loads((tmp_path / "out.jsonl.manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["counts"]["done"] == N
    assert not (tmp_path / "out.jsonl.lock").exists()  # released and removed by the run that held it
