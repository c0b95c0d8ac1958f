"""The fault suite (issue 5): every fault the local server can inject, for every data command, with the same
invariants checked after each run:

- each input id exactly once, in the output or in the errors file (never both, never neither);
- no duplicate rows, every line one whole JSON object;
- attempts per request (the server's count per prompt key) within 1 + retries;
- the output loads with `datasets.load_dataset("json", ...)`.

Commands are rows of COMMANDS: adding a data command to the suite is one entry there. Faults the
critique-revise suite already covers on the OpenAI endpoint (tests/test_critique_revise.py: 429, 500, 503,
reset, truncated, hang) are exercised here on the Anthropic endpoint, on the OpenAI provider's SDK request
path (CAITOOL_HTTP=sdk; the default path is direct aiohttp), and for label-pairs; SIGKILL and
SIGINT mid-run are in tests/test_crash_resume.py, extended here with interrupts while every request hangs.
Retried runs use a 50 ms first backoff ($CAITOOL_RETRY_BACKOFF_S) so the whole file stays fast.
"""

from __future__ import annotations

import json
import math
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from caitool.constitution import load_constitution
from caitool.tasks.critique_revise import draw_principles
from caitool.testing.fake_server import FakeServer
from tests.conftest import REPO, cli_env, prompts, read_jsonl, run_cli, write_jsonl

RETRIES = 5
# Backoff starts at 50 ms instead of 1 s (caitool.retry reads it): retried runs take a fraction of a second.
ENV = cli_env(CAITOOL_RETRY_BACKOFF_S="0.05")


def pairs(n: int) -> list[dict[str, Any]]:
    return [
        {"id": f"q{i}", "prompt": f"question {i}?", "response_a": f"ALPHA {i}", "response_b": f"BRAVO {i}"}
        for i in range(n)
    ]


@dataclass(frozen=True)
class Cmd:
    """One data command as the fault suite drives it."""

    name: str
    calls: int  # requests per record on a clean run (OpenAI endpoint)
    records: Callable[[int], list[dict[str, Any]]]
    marker: Callable[[int], str]  # text found in every request of record i, and in no other record's
    flags: tuple[str, ...] = ()
    server: dict[str, Any] = field(default_factory=dict)  # fake-server config the command needs
    reask: int = 0  # model-level re-asks of the same request (label-pairs), on top of retries

    def argv(
        self, fake: FakeServer, src: Path, out: Path | str, *extra: str, anthropic: bool = False
    ) -> list[str]:
        model, url = (
            ("anthropic/m", fake.anthropic_base_url) if anthropic else ("openai/m", fake.openai_base_url)
        )
        return [self.name, str(src), "-o", str(out), "--model", model, "--base-url", url, *self.flags, *extra]

    def run(
        self, fake: FakeServer, src: Path, out: Path | str, *extra: str, **kw: Any
    ) -> subprocess.CompletedProcess[str]:
        anthropic = kw.pop("anthropic", False)
        kw.setdefault("env", ENV)
        return run_cli(*self.argv(fake, src, out, *extra, anthropic=anthropic), **kw)

    def ids(self, n: int) -> list[str]:
        return [str(r["id"]) for r in self.records(n)]


CRITIQUE_REVISE = Cmd(
    name="critique-revise",
    calls=3,  # initial response, critique, revision
    records=prompts,
    marker=lambda i: f"number {i}?",
    flags=("--rounds", "1", "--max-tokens", "32"),
)
LABEL_PAIRS = Cmd(
    name="label-pairs",
    calls=1,  # one (A)/(B) question scored from log-probs
    records=pairs,
    marker=lambda i: f"question {i}?",
    flags=("--fewshot", "0"),
    server={"answer_logprobs": {" A": math.log(0.7), " B": math.log(0.3)}},
    reask=2,
)
COMMANDS = [CRITIQUE_REVISE, LABEL_PAIRS]
BY_NAME = {c.name: c for c in COMMANDS}


@pytest.fixture(params=COMMANDS, ids=lambda c: c.name)
def cmd(request: pytest.FixtureRequest, fake: FakeServer) -> Cmd:
    c: Cmd = request.param
    fake.configure(**c.server)
    return c


def setup(fake: FakeServer, cmd: Cmd, tmp_path: Path, n: int) -> tuple[Path, Path, list[str]]:
    fake.configure(**cmd.server)
    src = write_jsonl(tmp_path / "in.jsonl", cmd.records(n))
    return src, tmp_path / "out.jsonl", cmd.ids(n)


def errors_of(out: Path) -> Path:
    return out.with_name(out.name + ".errors.jsonl")


def manifest_of(out: Path) -> dict[str, Any]:
    return json.loads(out.with_name(out.name + ".manifest.json").read_text())  # type: ignore[no-any-return]


def load_dataset_rows(path: Path, cache: Path) -> int:
    datasets = pytest.importorskip("datasets")
    ds = datasets.load_dataset("json", data_files=str(path), split="train", cache_dir=str(cache))
    return int(ds.num_rows)


def check_invariants(
    cmd: Cmd, fake: FakeServer, out: Path, ids: list[str], *, retries: int = RETRIES
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The suite's invariants; returns (output rows, error rows)."""
    data = out.read_bytes() if out.exists() else b""
    assert data == b"" or data.endswith(b"\n"), "the output ends with a whole line"
    rows = [json.loads(line) for line in data.split(b"\n")[:-1]]  # each line one whole JSON object
    out_ids = [str(r["id"]) for r in rows]
    assert len(out_ids) == len(set(out_ids)), "no duplicate rows"
    errs = read_jsonl(errors_of(out)) if errors_of(out).exists() else []
    err_ids = [str(e["id"]) for e in errs]
    assert not set(out_ids) & set(err_ids), "an id is either written or failed, not both"
    assert sorted(out_ids + err_ids) == sorted(ids), "each input id exactly once in output or errors"
    attempts = fake.stats()["attempts"]
    bound = (1 + retries) * (1 + cmd.reask)
    assert max(attempts.values(), default=0) <= bound, "attempts per request within the retry budget"
    if rows:
        assert load_dataset_rows(out, out.parent / "hf-cache") == len(rows)
    return rows, errs


# ---------------------------------------------------------------------------------------------------------
# Rate limits


def test_retry_after_is_honoured(fake: FakeServer, cmd: Cmd, tmp_path: Path) -> None:
    # Every request's first attempt gets a 429 with Retry-After 0.6 s. The client's own first backoff is at
    # most 50 ms here, so a chain that takes >= calls x 0.6 s waited for the server's Retry-After each time.
    retry_after = 0.6
    fake.configure(fail_first=1, fail_status=429, retry_after=retry_after)
    src, out, ids = setup(fake, cmd, tmp_path, 1)
    r = cmd.run(fake, src, out, "--retries", str(RETRIES))
    assert r.returncode == 0, r.stderr
    check_invariants(cmd, fake, out, ids)
    stats = fake.stats()
    assert stats["by_status"]["429"] == cmd.calls
    assert set(stats["attempts"].values()) == {2}  # one 429, then the answer: no extra attempt
    m = manifest_of(out)
    model = m["counts"]["models"]["openai/m"]
    assert model["rate_limited"] == cmd.calls and model["retries"] == cmd.calls
    assert m["counts"]["seconds"] >= cmd.calls * retry_after


def test_sustained_rpm_limit_converges_with_few_429s(fake: FakeServer, cmd: Cmd, tmp_path: Path) -> None:
    # The server allows 600 requests/min; the client budgets 540 and so stays (almost) under it.
    n = 18 // cmd.calls
    fake.configure(rpm=600)
    src, out, ids = setup(fake, cmd, tmp_path, n)
    r = cmd.run(fake, src, out, "--rpm", "540", "-c", "8", "--retries", str(RETRIES))
    assert r.returncode == 0, r.stderr
    check_invariants(cmd, fake, out, ids)
    stats = fake.stats()
    rate_limited = stats["by_status"].get("429", 0)
    assert rate_limited <= 2, stats["by_status"]
    assert stats["by_status"]["200"] == n * cmd.calls


# ---------------------------------------------------------------------------------------------------------
# Server errors and broken responses: seeded, so the same attempts fail on every run

FAULTS: dict[str, dict[str, Any]] = {
    # status faults: every request's first attempt fails with the status, the second goes through
    "500": {"fail_first": 1, "fail_status": 500},
    "503": {"fail_first": 1, "fail_status": 503},
    "529": {"fail_first": 1, "fail_status": 529},
    # broken responses, drawn per attempt (p = rate) from the seed
    "hang": {"p_hang": 0.2, "hang_s": 30},
    "truncated": {"p_truncate": 0.25},
    "reset": {"p_reset": 0.25},
    "empty-choices": {"p_empty_choices": 0.25},
    "garbage-answer": {"p_garbage_answer": 0.15},
}
FAULT_CASES = [
    # critique-revise on the OpenAI endpoint: the fault test_critique_revise.py does not cover there
    ("critique-revise", "openai", "empty-choices"),
    # critique-revise through the Anthropic Messages API (Anthropic's 529 = overloaded)
    *[("critique-revise", "anthropic", f) for f in ("500", "503", "529", "hang", "truncated", "reset")],
    # the OpenAI provider's other request path: the openai SDK (CAITOOL_HTTP=sdk, or no aiohttp installed)
    *[("critique-revise", "openai-sdk", f) for f in ("503", "hang", "truncated", "reset")],
    # label-pairs (log-prob labels over the OpenAI endpoint); 500/503 take the same path as 529
    *[
        ("label-pairs", "openai", f)
        for f in ("529", "hang", "truncated", "reset", "empty-choices", "garbage-answer")
    ],
]


@pytest.mark.parametrize(
    ("command", "provider", "fault"), FAULT_CASES, ids=["-".join(c) for c in FAULT_CASES]
)
def test_fault_is_retried_within_budget(
    fake: FakeServer, tmp_path: Path, command: str, provider: str, fault: str
) -> None:
    cmd = BY_NAME[command]
    n = 12 // cmd.calls
    fake.configure(seed=5, **FAULTS[fault])
    src, out, ids = setup(fake, cmd, tmp_path, n)
    r = cmd.run(
        fake,
        src,
        out,
        "--retries",
        str(RETRIES),
        "--timeout",
        "1",
        "-c",
        "8",
        anthropic=provider == "anthropic",
        env=cli_env(CAITOOL_RETRY_BACKOFF_S="0.05", CAITOOL_HTTP="sdk" if provider == "openai-sdk" else ""),
    )
    assert r.returncode == 0, r.stderr
    rows, errs = check_invariants(cmd, fake, out, ids)
    assert len(rows) == n and not errs
    stats = fake.stats()
    fault_name = next(k for k in FAULTS[fault] if k.startswith(("p", "fail_first")))
    assert stats["faults"].get(fault_name, 0) > 0, "the fault really happened"
    if fault_name == "fail_first":
        assert stats["by_status"][fault] == len(stats["attempts"])  # each request failed once...
        assert set(stats["attempts"].values()) == {2}  # ...and was retried once
    model = manifest_of(out)["counts"]["models"][f"{provider.removesuffix('-sdk')}/m"]
    if fault == "garbage-answer":  # a valid 200 whose answer is neither A nor B: re-asked, not retried
        assert model["retries"] == 0 and model["attempts"] == stats["total"]
        assert any(row["caitool"]["questions"][0]["reasks"] for row in rows)
    else:
        assert model["retries"] > 0 and model["attempts"] == stats["total"]
    assert "Traceback" not in r.stderr


# ---------------------------------------------------------------------------------------------------------
# An outage longer than the retry budget


def test_outage_beyond_retry_budget_goes_to_errors_and_rerun_pays_only_those(
    fake: FakeServer, cmd: Cmd, tmp_path: Path
) -> None:
    # Record 1's requests fail 3 times in a row with 503; the client gives up after 1 + 1 attempts.
    fake.configure(fail_first=3, fail_status=503, fault_match=cmd.marker(1))
    src, out, ids = setup(fake, cmd, tmp_path, 4)
    r = cmd.run(fake, src, out, "--retries", "1")
    assert r.returncode == 3, r.stderr
    assert "1 failed" in r.stderr and "Traceback" not in r.stderr
    _, errs = check_invariants(cmd, fake, out, ids, retries=1)
    (err,) = errs
    assert err["id"] == ids[1] and err["status"] == 503 and err["where"].endswith(":2")
    assert manifest_of(out)["status"] == "partial"
    assert fake.attempts_for(cmd.marker(1)) == 2  # 1 + retries, then given up

    fake.reset(**cmd.server)  # the outage is over
    r = cmd.run(fake, src, out, "--retries", "1")
    assert r.returncode == 0, r.stderr
    rows, errs = check_invariants(cmd, fake, out, ids, retries=1)
    assert len(rows) == 4 and not errs and not errors_of(out).exists()
    assert fake.stats()["total"] == cmd.calls  # only the failed record was paid for again
    assert manifest_of(out)["status"] == "complete"


# ---------------------------------------------------------------------------------------------------------
# Interrupts while requests hang (SIGKILL / SIGINT mid-run: tests/test_crash_resume.py)


def start(cmd: Cmd, fake: FakeServer, src: Path, out: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "caitool", *cmd.argv(fake, src, out, *extra)],
        env=ENV,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_until(what: Callable[[], bool], proc: subprocess.Popen[str], limit_s: float = 60) -> None:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if what():
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    raise AssertionError("timed out waiting for the run")


@pytest.mark.parametrize(
    ("command", "sig"),
    [("critique-revise", signal.SIGINT), ("label-pairs", signal.SIGINT), ("critique-revise", signal.SIGTERM)],
    ids=["critique-revise-sigint", "label-pairs-sigint", "critique-revise-sigterm"],
)
def test_interrupt_while_requests_hang_exits_130_at_once_then_resumes(
    fake: FakeServer, tmp_path: Path, command: str, sig: signal.Signals
) -> None:
    """SIGINT (Ctrl-C) and SIGTERM (a scheduler's stop) end the run at once, resumable; the resume after
    SIGTERM is the same code path as after SIGINT and is not run twice."""
    cmd = BY_NAME[command]
    src, out, ids = setup(fake, cmd, tmp_path, 6)
    hang_s = 120
    fake.configure(p_hang=1.0, hang_s=hang_s)  # every request hangs for two minutes
    proc = start(cmd, fake, src, out, "--timeout", "300", "-c", "6")
    # Signalled once the server holds the requests (not after a fixed sleep), so the run is past its start.
    # The bounds below only tell "at once" from "after the hang": on a loaded machine with a busy disk the
    # way out (four files fsynced, the manifest written, the interpreter's exit) can take seconds.
    wait_until(lambda: fake.stats(brief=True)["in_flight"] >= 6, proc, limit_s=180)
    t0 = time.monotonic()
    proc.send_signal(sig)
    try:
        _, stderr = proc.communicate(timeout=hang_s * 0.75)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise AssertionError("an interrupt waits for the hanging requests") from None
    assert time.monotonic() - t0 < hang_s / 2, "an interrupt does not wait for hanging requests"
    assert proc.returncode == 130, stderr
    assert "rerun the same command to resume" in stderr and "Traceback" not in stderr
    assert manifest_of(out)["status"] == "interrupted"
    if sig != signal.SIGINT:
        return

    fake.reset(**cmd.server)
    r = cmd.run(fake, src, out, "-c", "6")
    assert r.returncode == 0, r.stderr
    rows, _ = check_invariants(cmd, fake, out, ids)
    assert len(rows) == 6


# ---------------------------------------------------------------------------------------------------------
# Unwritable output


def test_output_under_a_file_is_a_clear_error(fake: FakeServer, cmd: Cmd, tmp_path: Path) -> None:
    src, _, _ = setup(fake, cmd, tmp_path, 2)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    r = cmd.run(fake, src, blocker / "out.jsonl")
    assert r.returncode == 1
    assert "error: cannot write" in r.stderr and "not-a-folder is not a folder" in r.stderr
    assert "Traceback" not in r.stderr
    assert fake.stats()["total"] == 0  # nothing paid for before the output was known to be writable


def _limit_file_size(limit: int) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def test_disk_full_mid_run_stops_cleanly_then_resumes(fake: FakeServer, cmd: Cmd, tmp_path: Path) -> None:
    # RLIMIT_FSIZE makes writes past 8 kB fail with EFBIG (Python ignores SIGXFSZ), like a full disk.
    n = 24
    src, out, ids = setup(fake, cmd, tmp_path, n)
    proc = subprocess.run(
        [sys.executable, "-m", "caitool", *cmd.argv(fake, src, out, "-c", "4")],
        env=ENV,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_limit_file_size(8_000),
    )
    assert proc.returncode == 1, proc.stderr
    assert "error: cannot write" in proc.stderr and "File too large" in proc.stderr
    assert "Traceback" not in proc.stderr
    written = out.read_bytes()
    assert 0 < written.count(b"\n") < n
    assert manifest_of(out)["status"] == "failed"

    fake.reset(**cmd.server)
    r = cmd.run(fake, src, out)
    assert r.returncode == 0, r.stderr
    rows, _ = check_invariants(cmd, fake, out, ids)
    assert len(rows) == n


# ---------------------------------------------------------------------------------------------------------
# A chain killed between its steps: the finished calls are not paid again


def test_chain_killed_between_critique_and_revision_does_not_pay_again(
    fake: FakeServer, tmp_path: Path
) -> None:
    cmd = CRITIQUE_REVISE
    src, out, ids = setup(fake, cmd, tmp_path, 1)
    (principle,) = draw_principles(load_constitution(None), 0, ids[0], 1)
    # The critique answer carries a marker; the revision request (which quotes it) hangs.
    fake.configure(
        reply_script=[[principle.critique, "CRITIQUE-MARKER: the response helps with harm."]],
        fault_match="CRITIQUE-MARKER",
        p_hang=1.0,
        hang_s=60,
    )
    steps = tmp_path / "out.jsonl.steps.jsonl"
    proc = start(cmd, fake, src, out, "--timeout", "120")
    wait_until(lambda: steps.exists() and b'"r1.critique"' in steps.read_bytes(), proc)
    wait_until(lambda: fake.stats(brief=True)["in_flight"] == 1, proc)  # the revision is in flight
    proc.kill()
    proc.communicate(timeout=30)
    before = fake.stats()
    assert before["total"] == 3

    fake.configure(p_hang=0.0)
    r = cmd.run(fake, src, out)
    assert r.returncode == 0, r.stderr
    (row,) = check_invariants(cmd, fake, out, ids)[0]
    assert row["rounds"][0]["critique"] == "CRITIQUE-MARKER: the response helps with harm."
    after = fake.stats()
    # Only the revision was sent again; the initial response and the critique came from the checkpoint.
    assert after["total"] == 4
    assert sorted(after["attempts"].values()) == [1, 1, 2]
    assert fake.attempts_for(principle.critique[:80]) == 1
    assert not steps.exists()


def test_label_pairs_killed_between_orders_does_not_pay_again(fake: FakeServer, tmp_path: Path) -> None:
    cmd = LABEL_PAIRS
    src, out, ids = setup(fake, cmd, tmp_path, 1)
    # --both-orders asks twice; the second order (BRAVO shown as (A)) hangs.
    fake.configure(fault_match="(A) [[[BRAVO", p_hang=1.0, hang_s=60)
    steps = tmp_path / "out.jsonl.steps.jsonl"
    proc = start(cmd, fake, src, out, "--both-orders", "--timeout", "120")
    wait_until(lambda: steps.exists() and b'"q0.ab"' in steps.read_bytes(), proc)
    wait_until(lambda: fake.stats(brief=True)["in_flight"] == 1, proc)
    proc.kill()
    proc.communicate(timeout=30)
    assert fake.stats()["total"] == 2

    fake.configure(p_hang=0.0)
    r = cmd.run(fake, src, out, "--both-orders")
    assert r.returncode == 0, r.stderr
    (row,) = check_invariants(cmd, fake, out, ids)[0]
    assert [q["order"] for q in row["caitool"]["questions"]] == ["ab", "ba"]
    after = fake.stats()
    assert after["total"] == 3 and sorted(after["attempts"].values()) == [1, 2]
