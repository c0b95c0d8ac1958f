"""`--tier batch` never pays twice: the CLI is killed (SIGKILL) at each step of a batch's life, then run
again, through the real SDKs over real HTTP against the fake server. Each test checks every id exactly once in
the output or the errors file, and the batches and requests the server saw: re-paid requests are at most the
requests of batches that were never created."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anthropic

from tests.conftest import REPO, SENTINEL_KEY, cli_env, read_jsonl, write_jsonl

N = 12
FAST = {
    "CAITOOL_BATCH_POLL_S": "0.05",
    "CAITOOL_BATCH_QUIET_S": "0.05",
    "CAITOOL_RETRY_BACKOFF_S": "0.05",
}


def pairs(n: int = N) -> list[dict[str, Any]]:
    return [
        {"id": f"q{i}", "prompt": f"question {i}?", "response_a": f"ALPHA {i}", "response_b": f"BRAVO {i}"}
        for i in range(n)
    ]


def label_args(fake: Any, src: Path, out: Path) -> list[str]:
    """label-pairs without few-shot: one log-prob request per record, so a batch is N requests."""
    return [
        "label-pairs", str(src), "-o", str(out), "--model", "openai/judge", "--base-url",
        fake.openai_base_url, "--fewshot", "0", "--tier", "batch",
    ]  # fmt: skip


def anthropic_args(fake: Any, src: Path, out: Path) -> list[str]:
    """critique-revise on Anthropic without critiques: a response, then one revision (two batches)."""
    return [
        "critique-revise", str(src), "-o", str(out), "--model", "anthropic/claude-test", "--base-url",
        fake.anthropic_base_url, "--rounds", "1", "--no-critique", "--tier", "batch",
    ]  # fmt: skip


def start(args: list[str], **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "caitool", *args],
        env=cli_env(**FAST, **env),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run(args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    proc = start(args, **env)
    stdout, stderr = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def events(out: Path) -> list[str]:
    ledger = out.with_name(out.name + ".batches.jsonl")
    if not ledger.exists():
        return []
    return [json.loads(line)["event"] for line in ledger.read_text().splitlines() if line.endswith("}")]


def kill_when(proc: subprocess.Popen[str], ready: Callable[[], bool], limit_s: float = 60) -> None:
    deadline = time.monotonic() + limit_s
    while not ready():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the run never reached the point to kill it at"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def every_id_once(out: Path, n: int = N, prefix: str = "q", failed: int = 0) -> None:
    ids = [row["id"] for row in read_jsonl(out)]
    errors = out.with_name(out.name + ".errors.jsonl")
    bad = [row["id"] for row in read_jsonl(errors)] if errors.exists() else []
    assert len(ids) == len(set(ids)), "an id written twice"
    assert sorted(ids + bad) == sorted(f"{prefix}{i}" for i in range(n)), "every id exactly once"
    assert len(bad) == failed


ANSWER = {" A": -0.2, " B": -1.9}  # the judge's log-probs for (A)/(B): a label in one request


def batches(fake: Any) -> dict[str, Any]:
    stats: dict[str, Any] = fake.stats()["batches"]
    return stats


def test_killed_between_intent_and_upload_sends_the_batch_once(fake, tmp_path: Path) -> None:
    fake.configure(batch_hang={"upload": 60}, answer_logprobs=ANSWER)
    src, out = write_jsonl(tmp_path / "in.jsonl", pairs()), tmp_path / "out.jsonl"
    proc = start(label_args(fake, src, out))
    kill_when(proc, lambda: "intent" in events(out) and batches(fake)["hangs"].get("upload") == 1)
    assert batches(fake)["openai"] == 0 and events(out) == ["intent"]
    fake.configure(batch_hang={})
    r = run(label_args(fake, src, out))
    assert r.returncode == 0, r.stderr
    every_id_once(out)
    seen = batches(fake)
    assert (seen["openai"], seen["requests"]) == (1, N)  # nothing was created before the kill: no re-pay
    assert events(out) == ["intent", "abandoned", "intent", "submitted", "ended", "ingested"]


def test_killed_between_create_and_ledger_write_adopts_the_batch(fake, tmp_path: Path) -> None:
    fake.configure(batch_hang={"create": 60}, batch_delay_s=0.2, answer_logprobs=ANSWER)
    src, out = write_jsonl(tmp_path / "in.jsonl", pairs()), tmp_path / "out.jsonl"
    proc = start(label_args(fake, src, out))
    kill_when(proc, lambda: batches(fake)["openai"] == 1)
    assert events(out) == ["intent"]  # the batch exists, the ledger does not know its id
    fake.configure(batch_hang={})
    r = run(label_args(fake, src, out))
    assert r.returncode == 0, r.stderr
    every_id_once(out)
    seen = batches(fake)
    assert (seen["openai"], seen["requests"]) == (1, N)  # found by its metadata, not sent again
    ledger = [json.loads(x) for x in out.with_name("out.jsonl.batches.jsonl").read_text().splitlines()]
    assert [e["event"] for e in ledger] == ["intent", "submitted", "ended", "ingested"]
    assert ledger[1]["adopted"] is True


def test_killed_while_polling_collects_the_same_batch(fake, tmp_path: Path) -> None:
    fake.configure(batch_delay_s=1.5, answer_logprobs=ANSWER)
    src, out = write_jsonl(tmp_path / "in.jsonl", pairs()), tmp_path / "out.jsonl"
    proc = start(label_args(fake, src, out))
    kill_when(proc, lambda: "submitted" in events(out))
    assert events(out) == ["intent", "submitted"]  # killed while the batch was still running
    r = run(label_args(fake, src, out))
    assert r.returncode == 0, r.stderr
    every_id_once(out)
    seen = batches(fake)
    assert (seen["openai"], seen["requests"]) == (1, N)
    assert events(out) == ["intent", "submitted", "ended", "ingested"]


def test_killed_mid_ingest_ingests_once(fake, tmp_path: Path) -> None:
    fake.configure(batch_hang={"results": 60}, answer_logprobs=ANSWER)
    src, out = write_jsonl(tmp_path / "in.jsonl", pairs()), tmp_path / "out.jsonl"
    proc = start(label_args(fake, src, out))
    kill_when(proc, lambda: batches(fake)["hangs"].get("results") == 1)
    assert events(out) == ["intent", "submitted", "ended"]
    results = out.with_name("out.jsonl.batch-results.jsonl")
    with results.open("a") as fh:  # what a crash in the middle of the results write leaves behind
        fh.write('{"custom_id": "q3-torn')
    fake.configure(batch_hang={})
    r = run(label_args(fake, src, out))
    assert r.returncode == 0, r.stderr
    every_id_once(out)
    seen = batches(fake)
    assert (seen["openai"], seen["requests"]) == (1, N)
    assert not results.exists()  # the run is complete: nothing left to resume, the kept answers go


def test_killed_mid_chain_the_finished_step_is_answered_from_the_result_ledger(fake, tmp_path: Path) -> None:
    """critique-revise: the response batch is ingested, the revision batch runs, the run is killed and its
    steps file lost: the rerun answers the responses from the result ledger and collects the revisions."""
    fake.configure(batch_delay_s=1.5)
    src, out = write_jsonl(tmp_path / "in.jsonl", pairs()), tmp_path / "out.jsonl"
    args = [
        "critique-revise", str(src), "-o", str(out), "--model", "openai/m", "--base-url",
        fake.openai_base_url, "--rounds", "1", "--no-critique", "--tier", "batch",
    ]  # fmt: skip
    proc = start(args)
    kill_when(proc, lambda: events(out).count("submitted") == 2)
    assert events(out) == ["intent", "submitted", "ended", "ingested", "intent", "submitted"]
    out.with_name("out.jsonl.steps.jsonl").unlink(missing_ok=True)  # only the result ledger remembers
    r = run(args)
    assert r.returncode == 0, r.stderr
    every_id_once(out)
    seen = batches(fake)
    assert (seen["openai"], seen["requests"]) == (2, 2 * N)  # no step paid twice


def test_only_expired_and_retryable_requests_are_sent_again(fake, tmp_path: Path) -> None:
    fake.configure(batch_delay_s=2.0, answer_logprobs=ANSWER)
    src, out = write_jsonl(tmp_path / "in.jsonl", pairs()), tmp_path / "out.jsonl"
    proc = start(label_args(fake, src, out))
    ledger = out.with_name("out.jsonl.batches.jsonl")
    deadline = time.monotonic() + 60
    while "submitted" not in events(out):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    cids = json.loads(ledger.read_text().splitlines()[0])["custom_ids"]
    # Decided while the batch waits: two requests expire, one fails with a 500, one with a 400 (permanent).
    fake.configure(batch_expire=cids[:2], batch_fail={cids[2]: 500, cids[3]: 400})
    while events(out).count("ingested") < 1:
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    fake.configure(batch_expire=[], batch_fail={})  # the resubmitted ones succeed
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 3, stderr  # one record failed for good
    every_id_once(out, failed=1)
    (err,) = read_jsonl(out.with_name("out.jsonl.errors.jsonl"))
    assert err["id"] == "q3" and err["status"] == 400
    seen = batches(fake)
    assert seen["openai"] == 2 and seen["requests"] == N + 3  # only the 2 expired and the 500 again
    second = [json.loads(x) for x in ledger.read_text().splitlines()][4]
    assert second["event"] == "intent" and sorted(second["custom_ids"]) == sorted(cids[:3])


def test_unfinished_batches_of_another_account_are_refused(fake, tmp_path: Path) -> None:
    fake.configure(batch_delay_s=30, answer_logprobs=ANSWER)
    src, out = write_jsonl(tmp_path / "in.jsonl", pairs()), tmp_path / "out.jsonl"
    proc = start(label_args(fake, src, out))
    kill_when(proc, lambda: "submitted" in events(out))
    r = run(label_args(fake, src, out), OPENAI_API_KEY="sk-another-account-key")
    assert r.returncode == 2, r.stderr
    assert "another account" in r.stderr and "sk-another" not in r.stderr and SENTINEL_KEY not in r.stderr
    assert batches(fake)["openai"] == 1  # nothing sent under the other key


def anthropic_kill_after_create(fake: Any, tmp_path: Path) -> tuple[Path, Path]:
    fake.configure(batch_hang={"create": 60}, batch_delay_s=0.2)
    src, out = write_jsonl(tmp_path / "in.jsonl", pairs()), tmp_path / "out.jsonl"
    proc = start(anthropic_args(fake, src, out))
    kill_when(proc, lambda: batches(fake)["anthropic"] == 1)
    assert events(out) == ["intent"]
    fake.configure(batch_hang={})
    return src, out


def test_anthropic_lost_batch_is_adopted_by_time_and_count(fake, tmp_path: Path) -> None:
    src, out = anthropic_kill_after_create(fake, tmp_path)
    r = run(anthropic_args(fake, src, out))
    assert r.returncode == 0, r.stderr
    every_id_once(out)
    seen = batches(fake)
    assert (seen["anthropic"], seen["requests"]) == (2, 2 * N)  # the response batch adopted, then revisions


def test_anthropic_ambiguous_lost_batch_stops_with_exit_3(fake, tmp_path: Path) -> None:
    src, out = anthropic_kill_after_create(fake, tmp_path)
    decoy = anthropic.Anthropic(base_url=fake.anthropic_base_url, api_key=SENTINEL_KEY, max_retries=0)
    hello: Any = {"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    requests: Any = [{"custom_id": f"other-{i}", "params": hello} for i in range(N)]
    other = decoy.messages.batches.create(requests=requests)
    r = run(anthropic_args(fake, src, out))
    assert r.returncode == 3, r.stderr
    assert other.id in r.stderr and "2 batches match" in r.stderr
    assert batches(fake)["anthropic"] == 2  # the lost one and the decoy: nothing new was sent


def test_a_rerun_on_another_tier_says_what_it_leaves_uncollected(fake, tmp_path: Path) -> None:
    fake.configure(batch_delay_s=30, answer_logprobs=ANSWER)
    src, out = write_jsonl(tmp_path / "in.jsonl", pairs()), tmp_path / "out.jsonl"
    proc = start(label_args(fake, src, out))
    kill_when(proc, lambda: "submitted" in events(out))
    standard = [a for a in label_args(fake, src, out) if a not in ("--tier", "batch")]
    r = run(standard)
    assert r.returncode == 0, r.stderr
    assert f"1 batches of openai/judge ({N} requests) were sent and not collected" in r.stderr
    every_id_once(out)
    assert fake.stats()["by_endpoint"]["/v1/chat/completions"] == N  # sent again, live, as it warned
