"""`caitool batches list|show|cancel|adopt` on the ledger of a killed `--tier batch` run, through the real
SDKs over real HTTP against the fake server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anthropic

from tests.conftest import SENTINEL_KEY, cli_env, run_cli, write_jsonl
from tests.test_batch_faults import (
    ANSWER,
    N,
    anthropic_args,
    anthropic_kill_after_create,
    batches,
    events,
    every_id_once,
    kill_when,
    label_args,
    pairs,
    run,
    start,
)


def test_list_show_cancel_then_rerun_collects_and_resends(fake, tmp_path: Path) -> None:
    fake.configure(batch_delay_s=60, answer_logprobs=ANSWER)
    src, out = write_jsonl(tmp_path / "in.jsonl", pairs()), tmp_path / "out.jsonl"
    proc = start(label_args(fake, src, out))
    kill_when(proc, lambda: "submitted" in events(out))

    listed = run_cli("batches", "list", str(out), "--json")
    assert listed.returncode == 0, listed.stderr
    (row,) = [json.loads(line) for line in listed.stdout.splitlines()]
    assert (row["state"], row["requests"], row["spec"]) == ("submitted", N, "openai/judge")
    table = run_cli("batches", "list", str(out))
    assert row["batch_id"] in table.stdout and "submitted" in table.stdout

    shown = run_cli("batches", "show", str(out), row["batch_id"], env=cli_env())
    assert shown.returncode == 0, shown.stderr
    detail = json.loads(shown.stdout)
    assert detail["provider"]["status"] == "in_progress" and detail["intent"]["n"] == N

    other = run_cli("batches", "cancel", str(out), env=cli_env(OPENAI_API_KEY="sk-some-other-key"))
    assert other.returncode == 2 and "account" in other.stderr  # another key: refused, nothing cancelled
    cancelled = run_cli("batches", "cancel", str(out), env=cli_env())
    assert cancelled.returncode == 0, cancelled.stderr
    assert cancelled.stdout.strip() == f"{row['batch_id']}: cancelling"
    assert batches(fake)["cancelled"] == N

    fake.configure(batch_delay_s=0)
    r = run(label_args(fake, src, out))
    assert r.returncode == 0, r.stderr
    every_id_once(out)
    seen = batches(fake)
    assert (seen["openai"], seen["requests"]) == (2, 2 * N)  # the cancelled requests, sent once more
    states = [
        json.loads(x)["state"] for x in run_cli("batches", "list", str(out), "--json").stdout.splitlines()
    ]
    assert states == ["ingested", "ingested"]


def test_adopt_resolves_an_ambiguous_lost_anthropic_batch(fake, tmp_path: Path) -> None:
    src, out = anthropic_kill_after_create(fake, tmp_path)
    client = anthropic.Anthropic(base_url=fake.anthropic_base_url, api_key=SENTINEL_KEY, max_retries=0)
    (lost,) = [b.id for b in client.messages.batches.list()]
    hello: Any = {"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    client.messages.batches.create(requests=[{"custom_id": f"other-{i}", "params": hello} for i in range(N)])
    r = run(anthropic_args(fake, src, out))
    assert r.returncode == 3, r.stderr
    intent = json.loads(out.with_name("out.jsonl.batches.jsonl").read_text().splitlines()[0])["id"]
    adopted = run_cli("batches", "adopt", str(out), intent[:8], lost)
    assert adopted.returncode == 0, adopted.stderr
    r = run(anthropic_args(fake, src, out))
    assert r.returncode == 0, r.stderr
    every_id_once(out)
    seen = batches(fake)
    assert (seen["anthropic"], seen["requests"]) == (3, 3 * N)  # lost + decoy + the revisions: none twice


def test_list_without_a_ledger_is_a_usage_error(tmp_path: Path) -> None:
    r = run_cli("batches", "list", str(tmp_path / "nothing.jsonl"))
    assert r.returncode == 2 and "no batch ledger" in r.stderr
