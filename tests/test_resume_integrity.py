"""Resume never mixes: settings are checked whenever any file of the run exists, a record committed from
another input is not silently skipped, and a record whose rows were cut short is done again, whole."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import REPO, cli_env, prompts, read_jsonl, run_cli, write_jsonl


def _model(fake) -> list[str]:  # type: ignore[no-untyped-def]
    return ["--model", "openai/m", "--base-url", fake.openai_base_url]


def test_interrupted_before_the_first_row_then_other_settings_refused(fake, tmp_path: Path) -> None:
    fake.configure(latency_ms=300)
    src = write_jsonl(tmp_path / "in.jsonl", prompts(4))
    out = tmp_path / "out.jsonl"
    steps = tmp_path / "out.jsonl.steps.jsonl"
    cmd = [sys.executable, "-m", "caitool", "critique-revise", str(src), "-o", str(out), *_model(fake)]
    proc = subprocess.Popen(
        [*cmd, "--rounds", "2", "-c", "4"], env=cli_env(), cwd=REPO, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 60
    while not (steps.exists() and steps.stat().st_size > 0):  # a model call checkpointed, no row yet
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 130
    assert out.read_bytes() == b""  # the state the old check skipped: an empty output, a steps file
    fake.configure(latency_ms=0)
    paid = fake.stats()["total"]
    r = run_cli(
        "critique-revise", str(src), "-o", str(out), *_model(fake), "--rounds", "2", "--temperature", "0.3"
    )
    assert r.returncode == 2, r.stderr
    assert "different settings" in r.stderr and '"temperature": 1.0' in r.stderr, r.stderr
    assert "→" in r.stderr and '"temperature": 0.3' in r.stderr  # old → new values
    assert fake.stats()["total"] == paid  # refused before any call
    # The original settings resume and reuse the checkpoints.
    r = run_cli("critique-revise", str(src), "-o", str(out), *_model(fake), "--rounds", "2")
    assert r.returncode == 0, r.stderr
    assert sorted(row["id"] for row in read_jsonl(out)) == [f"p{i}" for i in range(4)]
    assert fake.stats()["total"] - paid < 4 * 5  # some calls came from the first run's checkpoints


def test_steps_file_without_output_is_checked_too(fake, tmp_path: Path) -> None:
    """A user who "starts over" by deleting only the output keeps the manifest and checkpoints."""
    src = write_jsonl(tmp_path / "in.jsonl", prompts(2))
    out = tmp_path / "out.jsonl"
    assert (
        run_cli("critique-revise", str(src), "-o", str(out), *_model(fake), "--rounds", "1").returncode == 0
    )
    out.unlink()
    r = run_cli("critique-revise", str(src), "-o", str(out), *_model(fake), "--rounds", "2")
    assert r.returncode == 2 and "rounds 1 → 2" in r.stderr, r.stderr


def test_a_changed_prompt_under_a_done_id_is_refused_not_skipped(fake, tmp_path: Path) -> None:
    first = write_jsonl(tmp_path / "a.jsonl", [{"id": "rt-001", "prompt": "first question"}])
    out = tmp_path / "pairs.jsonl"
    sp = ["sample-pairs", "-o", str(out), *_model(fake), "-k", "2"]
    assert run_cli(*sp, str(first)).returncode == 0
    other = write_jsonl(
        tmp_path / "b.jsonl",
        [{"id": "rt-001", "prompt": "A totally different question"}, {"id": "new-1", "prompt": "New one"}],
    )
    r = run_cli(*sp, str(other))
    assert r.returncode == 2, r.stderr
    assert f"{other}:1: record 'rt-001' is already in {out} with a different input" in r.stderr
    rows = read_jsonl(out)
    assert [row["source_id"] for row in rows] == ["rt-001"]  # nothing of b.jsonl was mixed in
    assert rows[0]["prompt"][0]["content"] == "first question"


def test_stdin_resumes_when_the_same_data_is_piped_again(fake, tmp_path: Path) -> None:
    data = "".join(json.dumps(p) + "\n" for p in prompts(3))
    out = tmp_path / "out.jsonl"
    args = ["critique-revise", "-", "-o", str(out), *_model(fake), "--rounds", "1"]
    assert run_cli(*args, "--limit", "2", input=data).returncode == 0
    fake.reset()
    r = run_cli(*args, input=data)
    assert r.returncode == 0, r.stderr
    assert "2 already done" in r.stderr
    assert sorted(row["id"] for row in read_jsonl(out)) == ["p0", "p1", "p2"]
    assert fake.stats()["total"] == 3  # only p2's three calls


def test_a_multi_row_record_cut_after_its_first_row_is_done_again_whole(fake, tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", prompts(5))
    out = tmp_path / "pairs.jsonl"
    sp = ["sample-pairs", str(src), "-o", str(out), *_model(fake), "-k", "3"]  # 3 pairs per record
    assert run_cli(*sp).returncode == 0
    lines = out.read_bytes().split(b"\n")[:-1]
    assert len(lines) == 15
    last = json.loads(lines[-1])["source_id"]
    # A short write of the last record: its first row complete, its second half-written.
    out.write_bytes(b"\n".join(lines[:13]) + b"\n" + lines[13][: len(lines[13]) // 2])
    fake.reset()
    r = run_cli(*sp)
    assert r.returncode == 0, r.stderr
    assert "4 already done" in r.stderr
    rows = read_jsonl(out)
    by_source: dict[str, int] = {}
    for row in rows:
        by_source[row["source_id"]] = by_source.get(row["source_id"], 0) + 1
    assert by_source == {f"p{i}": 3 for i in range(5)}, by_source
    assert [row["source_id"] for row in rows[-3:]] == [last] * 3
    assert fake.stats()["total"] == 1  # only the torn record was paid again (one request with n=3)


def test_a_torn_tail_longer_than_64_kib_is_cut_back_to_the_last_record(fake, tmp_path: Path) -> None:
    big = "long question " * 12_000  # a 168 KB prompt: its row alone is longer than 64 KiB
    src = write_jsonl(
        tmp_path / "in.jsonl", [{"id": "small", "prompt": "short"}, {"id": "big", "prompt": big}]
    )
    out = tmp_path / "out.jsonl"
    args = ["critique-revise", str(src), "-o", str(out), *_model(fake), "--rounds", "1", "-c", "1"]
    assert run_cli(*args).returncode == 0
    data = out.read_bytes()
    first_end = data.index(b"\n") + 1
    out.write_bytes(data[: len(data) - 1000])  # the big row torn 1000 bytes short of its end
    assert len(data) - 1000 - first_end > 1 << 16
    for done_file in (False, True):  # with the done file, and as an output from before done files
        if not done_file:
            (tmp_path / "out.jsonl.done.jsonl").unlink()
        fake.reset()
        r = run_cli(*args)
        assert r.returncode == 0, r.stderr
        assert [row["id"] for row in read_jsonl(out)] == ["small", "big"]
        assert fake.stats()["total"] == 3  # the big record again, not the small one
        out.write_bytes(out.read_bytes()[:-1000])


def test_rows_deleted_by_hand_are_done_again(fake, tmp_path: Path) -> None:
    """Editing the output outside caitool (here: rows rewritten, one record dropped) makes its done file
    stale; the rerun reads the rows again instead of trusting stale offsets."""
    src = write_jsonl(tmp_path / "in.jsonl", prompts(4))
    out = tmp_path / "out.jsonl"
    args = ["critique-revise", str(src), "-o", str(out), *_model(fake), "--rounds", "1", "-c", "1"]
    assert run_cli(*args).returncode == 0
    write_jsonl(out, [row for row in read_jsonl(out) if row["id"] != "p1"])  # other spacing, p1 gone
    fake.reset()
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr
    assert "changed outside caitool" in r.stderr
    assert sorted(row["id"] for row in read_jsonl(out)) == [f"p{i}" for i in range(4)]
    assert fake.stats()["total"] == 3  # only p1 again
