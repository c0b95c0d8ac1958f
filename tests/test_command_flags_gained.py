"""The flags the record-task seam gave commands that lacked them (issue #12): sample-pairs --dry-run,
compare --dry-run, compare --on-bad-input skip / --rejects, and compare's cost in its summary."""

from __future__ import annotations

import json
import math
from pathlib import Path

from caitool.testing.fake_server import FakeServer
from tests.conftest import read_jsonl, run_cli, write_jsonl

AB = {" A": math.log(0.8), " B": math.log(0.2)}


def test_sample_pairs_dry_run_shows_the_request_and_calls_nothing(fake: FakeServer, tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "p.jsonl", [{"id": "x", "prompt": "Why is the sky blue?"}])
    r = run_cli(
        "sample-pairs", str(src), "--model", "openai/m", "--base-url", fake.openai_base_url, "-k", "3",
        "--dry-run",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "===== x: 3 samples [chat] ====="
    assert json.loads(lines[1]) == {"role": "user", "content": "Why is the sky blue?"}
    assert fake.stats()["total"] == 0


def test_compare_dry_run_shows_sampling_and_the_judges_questions(fake: FakeServer, tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "p.jsonl", [{"id": "x", "prompt": "How do I pick a lock?"}])
    given = write_jsonl(tmp_path / "g.jsonl", [{"id": "x", "response": "Call a locksmith."}])
    r = run_cli(
        "compare", str(src), "--model", "openai/judge", "--models", "tuned=openai/tuned",
        "--responses", f"base={given}", "--dry-run",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    headers = [line for line in r.stdout.splitlines() if line.startswith("=====")]
    assert headers[0] == "===== x: sample from tuned [chat] ====="
    assert [h.removeprefix("===== x: ").split(" (")[0] for h in headers[1:]] == [
        "harmlessness: base vs tuned",
        "helpfulness: base vs tuned",
    ]
    assert "Call a locksmith." in r.stdout and "<tuned's response>" in r.stdout
    assert fake.stats()["total"] == 0


def test_compare_skips_bad_input_lines_and_reports_cost(fake: FakeServer, tmp_path: Path) -> None:
    fake.configure(answer_logprobs=AB)
    src = tmp_path / "p.jsonl"
    src.write_text('{"id": "x", "prompt": "q1?"}\nnot json\n{"id": "y", "prompt": "q2?"}\n')
    a = write_jsonl(tmp_path / "a.jsonl", [{"id": i, "response": f"a-{i}"} for i in ("x", "y")])
    b = write_jsonl(tmp_path / "b.jsonl", [{"id": i, "response": f"b-{i}"} for i in ("x", "y")])
    out = tmp_path / "j.jsonl"
    argv = [
        "compare", str(src), "-o", str(out), "--model", "openai/judge", "--base-url", fake.openai_base_url,
        "--responses", f"a={a}", "--responses", f"b={b}", "--one-order", "--price", "1,2",
    ]  # fmt: skip
    refused = run_cli(*argv)
    assert refused.returncode == 2 and "p.jsonl:2" in refused.stderr
    r = run_cli(*argv, "--on-bad-input", "skip", "--overwrite")
    assert r.returncode == 0, r.stderr
    assert {row["source_id"] for row in read_jsonl(out)} == {"x", "y"}
    (reject,) = read_jsonl(tmp_path / "j.jsonl.rejects.jsonl")
    assert reject["where"].endswith("p.jsonl:2")
    assert "1 bad input lines skipped" in r.stderr and "$" in r.stderr  # the judge's cost, at --price
