"""`--tier batch` end to end through the real SDKs over real HTTP against the fake server: multi-round chains
move without a barrier between rounds, labels come out as on the standard tier, Anthropic's Message Batches,
and the models without a batch API are refused. (Crashes and faults: tests/test_batch_faults.py.)"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import cli_env, prompts, read_jsonl, run_cli, write_jsonl

FAST = {"CAITOOL_BATCH_POLL_S": "0.02", "CAITOOL_BATCH_QUIET_S": "0.02", "CAITOOL_RETRY_BACKOFF_S": "0.05"}


def batch_env(**extra: str) -> dict[str, str]:
    return cli_env(**FAST, **extra)


def ledger(out: Path) -> list[dict[str, Any]]:
    path = out.with_name(out.name + ".batches.jsonl")
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_four_rounds_on_1000_records_take_one_batch_latency_per_step(fake, tmp_path: Path) -> None:
    """1,000 records, critique → revision × 4: 1 + 2·4 dependent steps, so 9 batch latencies at best. A
    barrier between rounds (or a batch per record) would show as more batches and more time. No few-shot
    examples: the client's CPU per request is not what is measured here (2 cores run server and client)."""
    # 8 s: client and server share 2 cores and spend 0.3-0.5 s of them per step (upload, the server's
    # answering, ingest, the records' own work), which must stay inside the bound's 10 % even on a slow or
    # busy CI machine (at 5 s a loaded run came within 3 % of it). CAITOOL_TEST_BATCH_DELAY_S to try another.
    delay, rounds, n = float(os.environ.get("CAITOOL_TEST_BATCH_DELAY_S", "8")), 4, 1000
    fake.configure(batch_delay_s=delay)
    src, out = write_jsonl(tmp_path / "in.jsonl", prompts(n)), tmp_path / "out.jsonl"
    r = run_cli(
        "critique-revise", str(src), "-o", str(out), "--model", "openai/m", "--base-url",
        fake.openai_base_url, "--rounds", str(rounds), "--fewshot", "0", "--tier", "batch",
        env=batch_env(), timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert sorted(row["id"] for row in read_jsonl(out)) == sorted(f"p{i}" for i in range(n))
    steps = 1 + 2 * rounds
    seen = fake.stats()["batches"]
    assert (seen["openai"], seen["requests"]) == (steps, steps * n)  # one batch per step, all records in it
    manifest = json.loads(out.with_name("out.jsonl.manifest.json").read_text())
    seconds = manifest["counts"]["seconds"]  # the run's own time (interpreter start-up excluded)
    assert seconds <= 1.1 * steps * delay, f"{seconds:.1f} s for {steps} steps of {delay} s"


def pairs(n: int) -> list[dict[str, Any]]:
    return [
        {"id": f"q{i}", "prompt": f"question {i}?", "response_a": f"ALPHA {i}", "response_b": f"BRAVO {i}"}
        for i in range(n)
    ]


@pytest.mark.parametrize("prompt_format", ["chat", "completion"])
def test_label_pairs_batch_gives_the_standard_tier_labels(fake, tmp_path: Path, prompt_format: str) -> None:
    fake.configure(
        reply_script=[
            {"match": "(A) [[[ALPHA 1", "reply": "A", "answer_logprobs": {" A": -0.1, " B": -2.4}},
            {"match": "(A) [[[BRAVO 1", "reply": "B", "answer_logprobs": {" A": -1.7, " B": -0.3}},
        ],
        answer_logprobs={" A": -0.9, " B": -0.6},
    )
    src = write_jsonl(tmp_path / "in.jsonl", pairs(6))
    rows = {}
    for tier in ("standard", "batch"):
        out = tmp_path / f"{tier}.jsonl"
        r = run_cli(
            "label-pairs", str(src), "-o", str(out), "--model", "openai/judge", "--base-url",
            fake.openai_base_url, "--both-orders", "--prompt-format", prompt_format, "--tier", tier,
            env=batch_env(),
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        rows[tier] = {row["id"]: row for row in read_jsonl(out)}
    assert fake.stats()["batches"]["openai"] >= 1
    assert set(rows["batch"]) == set(rows["standard"]) == {f"q{i}" for i in range(6)}
    for rid, row in rows["standard"].items():
        assert rows["batch"][rid]["p_chosen"] == pytest.approx(row["p_chosen"], abs=1e-12)
        assert rows["batch"][rid]["chosen"] == row["chosen"]
        assert rows["batch"][rid]["caitool"]["label_source"] == "logprobs"
    assert len({round(row["p_chosen"], 6) for row in rows["batch"].values()}) > 1  # not one constant


def test_anthropic_batches_keep_duplicate_requests_apart(fake, tmp_path: Path) -> None:
    """sample-pairs asks the same prompt twice (Anthropic has no `n`): two requests with one body in one
    record get two custom_ids, both answered, and a rerun sends nothing."""
    src, out = write_jsonl(tmp_path / "in.jsonl", prompts(5)), tmp_path / "out.jsonl"
    args = (
        "sample-pairs", str(src), "-o", str(out), "--model", "anthropic/claude-test", "--base-url",
        fake.anthropic_base_url, "-k", "2", "--tier", "batch",
    )  # fmt: skip
    r = run_cli(*args, env=batch_env())
    assert r.returncode == 0, r.stderr
    assert sorted(row["id"] for row in read_jsonl(out)) == [f"p{i}" for i in range(5)]
    seen = fake.stats()["batches"]
    assert (seen["anthropic"], seen["requests"], seen["answered"]) == (1, 10, 10)
    (intent, *_) = ledger(out)
    assert len(set(intent["custom_ids"])) == 10
    assert sorted(cid.rsplit("-", 1)[1] for cid in intent["custom_ids"]) == ["0"] * 5 + ["1"] * 5
    r = run_cli(*args, env=batch_env())
    assert r.returncode == 0 and fake.stats()["batches"]["anthropic"] == 1, r.stderr


def test_a_model_without_a_batch_api_is_refused(fake, tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", prompts(1))
    fleet = f"{fake.openai_base_url},http://127.0.0.1:9/v1"
    r = run_cli(
        "critique-revise", str(src), "-o", str(tmp_path / "out.jsonl"), "--model", "openai/m",
        "--base-url", fleet, "--tier", "batch",
    )  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert "--tier batch" in r.stderr and "no batch API" in r.stderr
    assert fake.stats()["total"] == 0
