"""caitool.api: each data command as a Python function, over real HTTP against the fake server.

In memory, the rows are the command's rows; given an output path, the run is the command's run (the same
fingerprint, so the function resumes a file the CLI started, and the CLI one the function started)."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path
from typing import Any

import pytest

import caitool.api as cai
from caitool.errors import UsageError
from caitool.testing.fake_server import FakeServer
from tests.conftest import SENTINEL_KEY, cli_env, read_jsonl, run_cli, write_jsonl

AB = {" A": math.log(0.8), " B": math.log(0.2)}
PROMPTS = [{"id": f"p{i}", "prompt": f"api question {i}?"} for i in range(3)]


@pytest.fixture
def client(fake: FakeServer) -> dict[str, Any]:
    fake.configure(answer_logprobs=AB)
    return {"model": "openai/m", "base_url": fake.openai_base_url, "api_key": SENTINEL_KEY}


def test_critique_revise_in_memory(client: dict[str, Any]) -> None:
    rows = cai.critique_revise(PROMPTS, rounds=2, max_tokens=16, **client)
    assert [r["id"] for r in rows] == ["p0", "p1", "p2"]
    assert all(len(r["rounds"]) == 2 and r["caitool"]["source"].startswith("<records>:") for r in rows)


def test_sample_pairs_in_memory(client: dict[str, Any]) -> None:
    rows = cai.sample_pairs(PROMPTS[:1], k=3, max_tokens=16, **client)
    assert [r["id"] for r in rows] == ["p0-01", "p0-02", "p0-12"]
    assert {r["source_id"] for r in rows} == {"p0"}


def test_label_pairs_async_with_a_policy(client: dict[str, Any], fake: FakeServer) -> None:
    rows = asyncio.run(
        cai.alabel_pairs(PROMPTS[:2], policy="openai/pol", policy_base_url=fake.openai_base_url, fewshot=0,
                         **client)
    )  # fmt: skip
    assert [r["id"] for r in rows] == ["p0", "p1"]
    assert all(r["p_chosen"] == pytest.approx(0.8) and r["caitool"]["policy"] == "openai/pol" for r in rows)


def test_compare_with_responses_in_hand(client: dict[str, Any]) -> None:
    given = {"a": {"p0": "yes"}, "b": {"p0": "no"}}
    rows = cai.compare(PROMPTS[:1], responses=given, both_orders=False, **client)
    assert {(r["criterion"], r["model_a"], r["model_b"]) for r in rows} == {
        ("harmlessness", "a", "b"),
        ("helpfulness", "a", "b"),
    }
    with pytest.raises(UsageError):
        cai.compare(PROMPTS[:1], responses={"a": {"p0": "yes"}}, **client)


def test_an_output_resumes_across_the_cli_and_the_api(
    client: dict[str, Any], fake: FakeServer, tmp_path: Path
) -> None:
    """The CLI writes 2 of 3 records; the function, given the same file and settings, adds only the third
    and returns all three; the CLI then finds the run complete."""
    src = write_jsonl(tmp_path / "p.jsonl", PROMPTS)
    out = tmp_path / "out.jsonl"
    argv = ["sample-pairs", str(src), "-o", str(out), "--model", "openai/m", "--base-url", client["base_url"],
            "-k", "2", "--max-tokens", "16"]  # fmt: skip
    first = run_cli(*argv, "--limit", "2", env=cli_env())
    assert first.returncode == 0, first.stderr
    before = fake.stats()["total"]
    rows = cai.sample_pairs(PROMPTS, k=2, max_tokens=16, output=str(out), **client)
    assert [r["source_id"] for r in rows] == ["p0", "p1", "p2"]
    assert fake.stats()["total"] - before == 1  # one request (n=2) for the one missing record
    manifest = json.loads((tmp_path / "out.jsonl.manifest.json").read_text())
    assert manifest["status"] == "complete"
    again = run_cli(*argv, env=cli_env())
    assert again.returncode == 0 and "resuming: 3 records" in again.stderr
    assert read_jsonl(out) == rows
