"""Resume by default (README "What you can rely on"), for every command that generates with a model:

- an interrupted run, rerun, writes every id once and pays only for what was missing;
- a second crash before a record finishes loses none of the first run's finished calls (the steps file is
  appended to on reopen, never truncated);
- a torn last line of any size (a crash mid-write of a long record, over 64 KiB) is cut off without
  touching the whole lines before it;
- a rerun whose constitution changed is refused (exit 2), even under the same file name.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from caitool.constitution import load_constitution
from caitool.tasks.critique_revise import draw_principles
from caitool.testing.fake_server import FakeServer
from tests.conftest import REPO, cli_env, prompts, read_jsonl, run_cli, write_jsonl

ENV = cli_env(CAITOOL_RETRY_BACKOFF_S="0.05")
AB = {" A": math.log(0.7), " B": math.log(0.3)}


def pairs(n: int) -> list[dict[str, Any]]:
    return [
        {"id": f"q{i}", "prompt": f"question {i}?", "response_a": f"ALPHA {i}", "response_b": f"BRAVO {i}"}
        for i in range(n)
    ]


@dataclass(frozen=True)
class Gen:
    """A generating command: how to run it on `n` records, and which ids its output must hold."""

    name: str
    argv: Callable[[FakeServer, Path, Path, int], list[str]]  # (fake, tmp, out, n) -> argv
    ids: Callable[[Path], list[str]]  # ids written, read from the durable output
    server: dict[str, Any]
    # How the first run stops short: --limit (the default), or this fake-server fault failing some records
    partial_fault: dict[str, Any] | None = None


def _ids(key: str, suffix: str = "") -> Callable[[Path], list[str]]:
    def read(out: Path) -> list[str]:
        path = out.with_name(out.name + suffix)
        return [str(r[key]) for r in read_jsonl(path)] if path.exists() else []

    return read


def _critique_revise(fake: FakeServer, tmp: Path, out: Path, n: int) -> list[str]:
    src = write_jsonl(tmp / "prompts.jsonl", prompts(6))
    url = fake.openai_base_url
    return ["critique-revise", str(src), "-o", str(out), "--model", "openai/m", "--base-url", url,
            "--rounds", "1", "--max-tokens", "16", "--limit", str(n)]  # fmt: skip


def _sample_pairs(fake: FakeServer, tmp: Path, out: Path, n: int) -> list[str]:
    src = write_jsonl(tmp / "prompts.jsonl", prompts(6))
    url = fake.openai_base_url
    return ["sample-pairs", str(src), "-o", str(out), "--model", "openai/m", "--base-url", url, "-k", "3",
            "--max-tokens", "16", "--limit", str(n)]  # fmt: skip


def _label_pairs(fake: FakeServer, tmp: Path, out: Path, n: int) -> list[str]:
    src = write_jsonl(tmp / "pairs.jsonl", pairs(6))
    url = fake.openai_base_url
    return ["label-pairs", str(src), "-o", str(out), "--model", "openai/m", "--base-url", url,
            "--fewshot", "0", "--limit", str(n)]  # fmt: skip


def _compare(fake: FakeServer, tmp: Path, out: Path, n: int) -> list[str]:
    src = write_jsonl(tmp / "prompts.jsonl", [{"id": f"p{i}", "prompt": f"q{i}?"} for i in range(6)])
    sides = {}
    for side in ("a", "b"):
        rows = [{"id": f"p{i}", "prompt": f"q{i}?", "response": f"from {side} {i}"} for i in range(6)]
        sides[side] = write_jsonl(tmp / f"{side}.jsonl", rows)
    url = fake.openai_base_url
    return ["compare", str(src), "-o", str(out), "--model", "openai/judge", "--base-url", url,
            "--responses", f"sl={sides['a']}", "--responses", f"rl={sides['b']}",
            "--limit", str(n)]  # fmt: skip


def _red_team(fake: FakeServer, tmp: Path, out: Path, n: int) -> list[str]:
    seeds = [{"id": f"s{i}", "prompt": f"How would someone do harmful thing number {i}?"} for i in range(4)]
    src = write_jsonl(tmp / "seeds.jsonl", seeds)
    url = fake.openai_base_url
    # -n is the number of generations; rerunning with a larger -n adds to the raw file (docs/cli.md)
    return ["red-team", str(src), "-o", str(out), "--model", "openai/gen", "--base-url", url, "--shots", "1",
            "-n", str(n)]  # fmt: skip


def _eval_labeler(fake: FakeServer, tmp: Path, out: Path, n: int) -> list[str]:
    gold = REPO / "tests" / "data" / "eval" / "gold_paper.jsonl"
    url = fake.openai_base_url
    # --limit is part of eval-labeler's settings (the gold file's hash): the partial run fails an item instead
    return ["eval-labeler", str(gold), "-o", str(out), "--model", "openai/judge", "--base-url", url,
            "--retries", "0"]  # fmt: skip


GENERATORS = [
    Gen("critique-revise", _critique_revise, _ids("id"), {}),
    Gen("sample-pairs", _sample_pairs, _ids("id"), {}),  # three pairs per prompt, resumed by source_id
    Gen("label-pairs", _label_pairs, _ids("id"), {"answer_logprobs": AB}),
    Gen("compare", _compare, _ids("id"), {"answer_logprobs": AB}),
    Gen("red-team", _red_team, _ids("id", ".raw.jsonl"), {}),
    Gen(
        "eval-labeler",
        _eval_labeler,
        _ids("id"),
        {"answer_logprobs": {"A": -0.1, "B": -2.4}},
        partial_fault={"fault_match": "wasp nest", "fail_first": 100, "fail_status": 400},
    ),
]


def paid(fake: FakeServer) -> int:
    """Answered requests: what a provider bills."""
    return int(fake.stats()["by_status"].get("200", 0))


@pytest.mark.parametrize("gen", GENERATORS, ids=lambda g: g.name)
def test_a_partial_run_resumes_to_every_id_once_paying_only_the_rest(
    gen: Gen, fake: FakeServer, tmp_path: Path
) -> None:
    full, part = 6, 2
    fake.configure(**gen.server)
    reference = tmp_path / "reference.jsonl"
    r = run_cli(*gen.argv(fake, tmp_path, reference, full), env=ENV)
    assert r.returncode == 0, r.stderr
    paid_full = paid(fake)
    want = sorted(gen.ids(reference))
    assert len(want) == len(set(want)) > part

    out = tmp_path / "out.jsonl"
    fake.reset(**gen.server, **(gen.partial_fault or {}))
    r = run_cli(*gen.argv(fake, tmp_path, out, full if gen.partial_fault else part), env=ENV)
    assert r.returncode == (3 if gen.partial_fault else 0), r.stderr  # 3: finished with failed records
    paid_first = paid(fake)
    assert 0 < len(set(gen.ids(out))) < len(want)
    fake.reset(**gen.server)
    r = run_cli(*gen.argv(fake, tmp_path, out, full), env=ENV)
    assert r.returncode == 0, r.stderr
    assert sorted(gen.ids(out)) == want  # every id, once
    assert paid_first + paid(fake) == paid_full  # nothing paid twice


def test_resumed_records_are_counted(fake: FakeServer, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    assert run_cli(*_critique_revise(fake, tmp_path, out, 2), env=ENV).returncode == 0
    r = run_cli(*_critique_revise(fake, tmp_path, out, 6), env=ENV)
    assert r.returncode == 0, r.stderr
    counts = json.loads(out.with_name(out.name + ".manifest.json").read_text())["counts"]
    assert counts["resumed"] == 2 and counts["done"] == 4


# ---------------------------------------------------------------------------------------------------------
# Two crashes in a row


def start(argv: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "caitool", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
        cwd=REPO,
    )


def wait_until(what: Callable[[], bool], proc: subprocess.Popen[str], limit_s: float = 60) -> None:
    deadline = time.monotonic() + limit_s
    while not what():
        if proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode} early: {proc.communicate()[1]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("timed out waiting")
        time.sleep(0.05)


def test_two_crashes_in_a_row_lose_no_finished_call(fake: FakeServer, tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", prompts(1))
    out = tmp_path / "out.jsonl"
    steps = tmp_path / "out.jsonl.steps.jsonl"
    (principle,) = draw_principles(load_constitution(None), 0, "p0", 1)
    # The response and the critique succeed; the revision (which quotes the critique) hangs every time.
    fake.configure(
        reply_script=[[principle.critique, "CRITIQUE-MARKER: the response helps with harm."]],
        fault_match="CRITIQUE-MARKER",
        p_hang=1.0,
        hang_s=60,
    )
    argv = ["critique-revise", str(src), "-o", str(out), "--model", "openai/m",
            "--base-url", fake.openai_base_url, "--rounds", "1", "--timeout", "120"]  # fmt: skip
    for crash, paid in ((1, 3), (2, 4)):  # crash 1: response, critique, revision; crash 2: the revision
        proc = start(argv)
        wait_until(lambda: fake.stats(brief=True)["total"] == paid, proc)  # noqa: B023
        wait_until(lambda: fake.stats(brief=True)["in_flight"] == 1, proc)  # the revision is in flight
        proc.kill()
        proc.communicate(timeout=30)
        assert b'"r1.critique"' in steps.read_bytes(), f"checkpoints lost after crash {crash}"

    fake.configure(p_hang=0.0)
    r = run_cli(*argv, env=ENV)
    assert r.returncode == 0, r.stderr
    (row,) = read_jsonl(out)
    assert row["rounds"][0]["critique"] == "CRITIQUE-MARKER: the response helps with harm."
    # The response and the critique were paid once, in the first run; the revision three times.
    assert fake.stats()["total"] == 5
    assert fake.attempts_for(principle.critique[:80]) == 1


# ---------------------------------------------------------------------------------------------------------
# A long torn tail


@pytest.mark.parametrize("done_file", ["kept", "absent"])
def test_a_torn_tail_over_64_kib_is_cut_and_the_whole_lines_kept(
    fake: FakeServer, tmp_path: Path, done_file: str
) -> None:
    out = tmp_path / "out.jsonl"
    assert run_cli(*_critique_revise(fake, tmp_path, out, 2), env=ENV).returncode == 0
    whole = out.read_bytes()
    torn = ('{"id": "p2", "response": "' + "x" * 100_000).encode()  # 100 KB of a record, no newline
    with out.open("ab") as fh:
        fh.write(torn)
    if (
        done_file == "absent"
    ):  # an output from before the commit log (OUT.done.jsonl) existed: read the output
        out.with_name(out.name + ".done.jsonl").unlink(missing_ok=True)
    fake.reset()
    r = run_cli(*_critique_revise(fake, tmp_path, out, 6), env=ENV)
    assert r.returncode == 0, r.stderr
    data = out.read_bytes()
    assert data.startswith(whole)  # the two records written before the crash are untouched
    assert sorted(row["id"] for row in read_jsonl(out)) == [f"p{i}" for i in range(6)]
    assert fake.stats()["total"] == 4 * 3  # only the four missing records were paid for


# ---------------------------------------------------------------------------------------------------------
# A changed constitution


def test_a_changed_constitution_is_refused_on_resume(fake: FakeServer, tmp_path: Path) -> None:
    builtin = REPO / "principles" / "anthropic-cai-2022.toml"
    mine = tmp_path / "mine.toml"
    shutil.copy(builtin, mine)
    src = write_jsonl(tmp_path / "in.jsonl", prompts(3))
    out = tmp_path / "out.jsonl"

    def run(limit: int) -> subprocess.CompletedProcess[str]:
        return run_cli(
            "critique-revise", str(src), "-o", str(out), "--model", "openai/m", "--base-url",
            fake.openai_base_url, "--rounds", "1", "--constitution", str(mine), "--limit", str(limit),
            env=ENV,
        )  # fmt: skip

    assert run(1).returncode == 0
    text = mine.read_text()
    assert "harmful" in text
    mine.write_text(text.replace("harmful", "hurtful"))  # same file name, different principles
    r = run(3)
    assert r.returncode == 2, r.stderr
    assert "different settings" in r.stderr and "Traceback" not in r.stderr
    assert len(read_jsonl(out)) == 1
