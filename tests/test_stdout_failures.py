"""A run writing to stdout has no errors file, so each failed record's reason goes to stderr (the first few,
then one note): before, `-o -` runs ended with "N failed" and no reason anywhere."""

from __future__ import annotations

import json
from pathlib import Path

from caitool.testing.fake_server import FakeServer
from tests.conftest import prompts, run_cli, write_jsonl


def _critique_revise(fake: FakeServer, src: Path, *args: str):  # type: ignore[no-untyped-def]
    return run_cli(
        "critique-revise", str(src), "-m", "openai/m", "--base-url", fake.openai_base_url,
        "--rounds", "1", "--retries", "0", *args,
    )  # fmt: skip


def test_failed_records_on_stdout_runs_say_why_on_stderr(fake: FakeServer, tmp_path: Path) -> None:
    fake.configure(fail_keys_containing={"number 1?": 400})
    src = write_jsonl(tmp_path / "in.jsonl", prompts(3))
    r = _critique_revise(fake, src)
    assert r.returncode == 3, r.stderr
    assert sorted(json.loads(line)["id"] for line in r.stdout.splitlines()) == ["p0", "p2"]
    failed = [line for line in r.stderr.splitlines() if line.startswith("failed: p1 (")]
    assert len(failed) == 1 and "400" in failed[0], r.stderr
    assert "Traceback" not in r.stderr


def test_many_failures_are_capped(fake: FakeServer, tmp_path: Path) -> None:
    from caitool.console import SHOWN_FAILURES

    fake.configure(fail_keys_containing={"question": 400})
    src = write_jsonl(tmp_path / "in.jsonl", prompts(SHOWN_FAILURES + 5))
    r = _critique_revise(fake, src, "-q")
    assert r.returncode == 3
    lines = [line for line in r.stderr.splitlines() if line.startswith("failed:")]
    assert len(lines) == SHOWN_FAILURES + 1 and "only the first" in lines[-1], r.stderr


def test_with_an_errors_file_reasons_stay_in_the_file(fake: FakeServer, tmp_path: Path) -> None:
    fake.configure(fail_keys_containing={"number 1?": 400})
    src = write_jsonl(tmp_path / "in.jsonl", prompts(2))
    r = _critique_revise(fake, src, "-o", str(tmp_path / "out.jsonl"))
    assert r.returncode == 3
    assert "failed: p1" not in r.stderr
    assert "p1" in (tmp_path / "out.jsonl.errors.jsonl").read_text()
