"""`--dry-run`'s bill (caitool/budget.py): requests, input and output tokens and USD per step and per tier,
estimated from every record's rendered prompts with each answer at --max-tokens, on stderr beside the
prompt preview on stdout. Checked against what a real run of the same command costs on the fake server
(real HTTP, its usage accounting): the same requests, and never more tokens or dollars than estimated."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from caitool.budget import Estimate, estimate, request_usage
from caitool.pricing import price_for
from caitool.providers.base import Message
from caitool.runner import Job
from caitool.testing.fake_server import FakeServer
from tests.conftest import prompts, read_jsonl, run_cli, write_jsonl

MODEL = "openai/gpt-4o-mini"


def _bill(stderr: str) -> dict[str, list[str]]:
    """The bill's rows: step name -> its numbers (requests, input, output, USD per tier)."""
    rows: dict[str, list[str]] = {}
    for line in stderr.splitlines():
        m = re.match(r"^  (\S.*?)\s{2,}([\d,]+)\s+([\d,]+)\s+([\d,]+)((?:\s+\$[\d,.]+)*)$", line)
        if m:
            rows[m.group(1)] = [*m.group(2, 3, 4), *m.group(5).split()]
    return rows


def _int(s: str) -> int:
    return int(s.replace(",", ""))


def test_dry_run_prints_the_bill_per_step_and_tier_and_keeps_the_preview(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", prompts(5))
    r = run_cli("critique-revise", str(src), "-m", MODEL, "--rounds", "2", "--max-tokens", "100", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("===== p0: initial response")  # the preview is still the output
    assert "estimated bill (all 5 records" in r.stderr
    assert "USD standard" in r.stderr and "USD flex" in r.stderr and "USD batch" in r.stderr
    rows = _bill(r.stderr)
    steps = [
        "initial response",
        "round 1 critique",
        "round 1 revision",
        "round 2 critique",
        "round 2 revision",
    ]
    assert list(rows) == [*steps, "total"]
    assert all(_int(rows[s][0]) == 5 and _int(rows[s][2]) == 500 for s in steps)  # 5 requests, <= 100 each
    total = rows["total"]
    assert _int(total[0]) == 25
    standard, flex, batch = (float(x.strip("$").replace(",", "")) for x in total[3:])
    price = price_for(MODEL)
    assert price is not None
    expect = (_int(total[1]) * price.input + _int(total[2]) * price.output) / 1e6
    assert standard == pytest.approx(expect, abs=1e-4)
    assert flex == pytest.approx(standard / 2, abs=1e-4) and batch == pytest.approx(standard / 2, abs=1e-4)


def test_the_estimate_bounds_what_a_real_run_pays(fake: FakeServer, tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", prompts(8))
    args = ["critique-revise", str(src), "-m", MODEL, "--rounds", "2", "--max-tokens", "60"]
    dry = run_cli(*args, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    total = _bill(dry.stderr)["total"]
    out = tmp_path / "out.jsonl"
    real = run_cli(*args, "-o", str(out), "--base-url", fake.openai_base_url)
    assert real.returncode == 0, real.stderr
    assert len(read_jsonl(out)) == 8
    billed = fake.stats()["usage"]["default"]
    assert billed["requests"] == _int(total[0]) == 40  # the estimate counts exactly the requests sent
    assert billed["output_tokens"] <= _int(total[2])
    assert billed["input_tokens"] <= _int(total[1])
    manifest: dict[str, Any] = json.loads(Path(str(out) + ".manifest.json").read_text())
    spent = manifest["counts"]["models"][MODEL]["cost_usd"]
    assert 0 < spent <= float(total[3].strip("$").replace(",", ""))


def test_answers_fed_back_are_counted_at_the_answer_bound() -> None:
    request = [Message("user", "x" * 400), Message("assistant", "<revision 1>"), Message("user", "y" * 40)]
    u = request_usage(request, answer_tokens=50, samples=3)
    assert (u.input_tokens, u.output_tokens, u.calls) == (110 + 50, 150, 1)


def test_a_big_input_is_estimated_from_a_sample_and_scaled(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("caitool.budget.ESTIMATE_SAMPLE", 10)
    jobs = iter([Job(f"r{i}", f"in:{i}", "q" * 40) for i in range(100)])
    est, read = estimate(jobs, lambda job: [("ask", job.item)], object(), total=1000)
    assert read == 10
    assert isinstance(est, Estimate) and est.records == 1000
    u = est.steps["ask"]
    assert (u.calls, u.input_tokens, u.output_tokens) == (1000, 10_000, 512_000)


def test_prompt_cache_reads_are_counted_priced_and_reported(fake: FakeServer, tmp_path: Path) -> None:
    # The fake server reports OpenAI's automatic prompt caching: the few-shot prefix every critique and
    # revision request repeats is read from the cache from the second record on. (The default few-shot is
    # about 900 tokens, under OpenAI's 1,024-token minimum: the test lowers the fake's minimum.)
    fake.configure(prompt_cache=True, prompt_cache_min_tokens=256)
    src = write_jsonl(tmp_path / "in.jsonl", prompts(6))
    out = tmp_path / "out.jsonl"
    r = run_cli(
        "critique-revise", str(src), "-o", str(out), "-m", MODEL, "--base-url", fake.openai_base_url,
        "--rounds", "1", "-c", "1",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    billed = fake.stats()["usage"]["default"]
    assert billed["cached_input_tokens"] > 0
    m: dict[str, Any] = json.loads(Path(str(out) + ".manifest.json").read_text())["counts"]["models"][MODEL]
    assert m["cached_input_tokens"] == billed["cached_input_tokens"]
    assert m["input_tokens"] == billed["input_tokens"]
    price = price_for(MODEL)
    assert price is not None and price.cached_input is not None
    fresh = billed["input_tokens"] - billed["cached_input_tokens"]
    expect = (fresh * price.input + billed["cached_input_tokens"] * price.cached_input) / 1e6
    expect += billed["output_tokens"] * price.output / 1e6
    assert m["cost_usd"] == pytest.approx(expect, abs=2e-6)
    assert "of input from the prompt cache" in r.stderr


def test_anthropic_requests_mark_the_few_shot_prefix_for_the_prompt_cache(
    fake: FakeServer, tmp_path: Path
) -> None:
    model = "anthropic/claude-3-5-haiku"
    fake.configure(prompt_cache=True, prompt_cache_min_tokens=256, record_bodies=True)
    src = write_jsonl(tmp_path / "in.jsonl", prompts(4))
    out = tmp_path / "out.jsonl"
    r = run_cli(
        "critique-revise", str(src), "-o", str(out), "-m", model, "--base-url", fake.anthropic_base_url,
        "--rounds", "1", "-c", "1",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    stats = fake.stats()
    marked = [
        q for q in stats["requests"] if "cache_control" in json.dumps(q["body"]["messages"][-2:-1] or "")
    ]
    assert marked == []  # the mark ends the few-shot examples, never the record's own turns
    critiques = [q for q in stats["requests"] if len(q["body"]["messages"]) > 1]
    assert critiques and all("cache_control" in json.dumps(q["body"]["messages"]) for q in critiques)
    billed = stats["usage"]["default"]
    assert billed["cached_input_tokens"] > 0
    m: dict[str, Any] = json.loads(Path(str(out) + ".manifest.json").read_text())["counts"]["models"][model]
    assert (m["input_tokens"], m["cached_input_tokens"]) == (
        billed["input_tokens"],
        billed["cached_input_tokens"],
    )
