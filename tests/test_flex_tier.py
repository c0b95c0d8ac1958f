"""`--tier flex` (docs/providers.md, caitool/retry.py): OpenAI's `service_tier: "flex"` on every request of
both transports, a 900 s default timeout, its 429 "Resource Unavailable" answers retried with backoff (not
treated as a rate limit), `--flex-fallback N` switching the rest of the run to standard, usage and cost per
tier in the manifest, and a clear refusal on providers without flex. Real CLI, real HTTP, the fake server's
`p_flex_unavailable` and its per-tier request and usage counters."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from caitool.cli._common import ClientFlags
from caitool.testing.fake_server import FakeServer
from tests.conftest import cli_env, prompts, read_jsonl, run_cli, write_jsonl

MODEL = "openai/gpt-4o-mini"  # in the price table: flex is half the standard price


def _run(fake: FakeServer, tmp_path: Path, *extra: str, n: int = 6, **env: str) -> tuple[Any, Path]:
    src = write_jsonl(tmp_path / "in.jsonl", prompts(n))
    out = tmp_path / "out.jsonl"
    proc = run_cli(
        "critique-revise", str(src), "-o", str(out), "-m", MODEL, "--base-url", fake.openai_base_url,
        "--rounds", "1", *extra,
        env=cli_env(CAITOOL_RETRY_BACKOFF_S="0.01", **env),
    )  # fmt: skip
    return proc, out


def _manifest(out: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(Path(str(out) + ".manifest.json").read_text())
    return data


@pytest.mark.parametrize("transport", ["aiohttp", "sdk"])
def test_flex_requests_carry_service_tier_and_are_billed_at_flex_prices(
    fake: FakeServer, tmp_path: Path, transport: str
) -> None:
    proc, out = _run(fake, tmp_path, "--tier", "flex", CAITOOL_HTTP=transport)
    assert proc.returncode == 0, proc.stderr
    assert len(read_jsonl(out)) == 6
    stats = fake.stats()
    assert stats["service_tiers"] == {"flex": 18}  # 6 records x (response, critique, revision)
    m = _manifest(out)["counts"]["models"][MODEL]
    assert set(m["by_tier"]) == {"flex"}
    billed = stats["usage"]["flex"]
    assert (m["input_tokens"], m["output_tokens"]) == (billed["input_tokens"], billed["output_tokens"])
    standard = (billed["input_tokens"] * 0.15 + billed["output_tokens"] * 0.60) / 1e6
    assert m["cost_usd"] == pytest.approx(standard / 2, abs=1e-6)
    assert "flex" in proc.stderr  # the summary names the tier


def test_standard_tier_sends_no_service_tier(fake: FakeServer, tmp_path: Path) -> None:
    proc, out = _run(fake, tmp_path, n=2)
    assert proc.returncode == 0, proc.stderr
    assert fake.stats()["service_tiers"] == {"": 6}
    assert set(_manifest(out)["counts"]["models"][MODEL]["by_tier"]) == {"standard"}


def test_resource_unavailable_answers_are_retried_with_backoff_not_as_rate_limits(
    fake: FakeServer, tmp_path: Path
) -> None:
    fake.configure(p_flex_unavailable=0.4)
    proc, out = _run(fake, tmp_path, "--tier", "flex", "--retries", "12")
    assert proc.returncode == 0, proc.stderr
    assert len(read_jsonl(out)) == 6
    stats = fake.stats()
    unavailable = stats["faults"]["flex_unavailable"]
    assert unavailable > 0
    m = _manifest(out)["counts"]["models"][MODEL]
    assert m["flex_unavailable"] == unavailable
    assert m["retries"] == unavailable and m["attempts"] == 18 + unavailable
    assert m["rate_limited"] == 0  # capacity, not a rate limit: no pause, no rpm decrease
    assert "flex_fallback" not in m
    assert stats["service_tiers"] == {"flex": 18 + unavailable}


def test_flex_fallback_sends_the_rest_at_standard_after_n_unavailable_answers(
    fake: FakeServer, tmp_path: Path
) -> None:
    fake.configure(p_flex_unavailable=1.0)  # flex never has capacity
    proc, out = _run(fake, tmp_path, "--tier", "flex", "--flex-fallback", "3", "-c", "1")
    assert proc.returncode == 0, proc.stderr
    assert len(read_jsonl(out)) == 6
    assert fake.stats()["service_tiers"] == {"flex": 3, "": 18}
    assert proc.stderr.count("go out at the standard tier") == 1
    m = _manifest(out)["counts"]["models"][MODEL]
    assert m["flex_fallback"] == {"after": 3, "fell_back": True}
    assert set(m["by_tier"]) == {"standard"}  # every answered request was sent at standard


def test_without_fallback_a_request_that_never_gets_flex_capacity_fails_its_record(
    fake: FakeServer, tmp_path: Path
) -> None:
    fake.configure(p_flex_unavailable=1.0)
    proc, out = _run(fake, tmp_path, "--tier", "flex", "--retries", "2", n=2)
    assert proc.returncode == 3, proc.stderr
    errors = read_jsonl(Path(str(out) + ".errors.jsonl"))
    assert {e["id"] for e in errors} == {"p0", "p1"}
    assert all("Resource Unavailable" in e["error"] for e in errors)
    assert fake.stats()["service_tiers"] == {"flex": 6}  # 2 records x 3 attempts, never standard


@pytest.mark.parametrize("model", ["anthropic/claude-3-5-haiku", "local/smollm2"])
def test_flex_is_refused_on_a_provider_without_it(fake: FakeServer, tmp_path: Path, model: str) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", prompts(1))
    proc = run_cli(
        "critique-revise", str(src), "-o", str(tmp_path / "o.jsonl"), "-m", model,
        "--base-url", fake.anthropic_base_url, "--tier", "flex",
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "has no flex tier" in proc.stderr
    assert fake.stats()["total"] == 0


def test_flex_default_timeout_is_900_s_unless_timeout_is_given() -> None:
    assert ClientFlags.from_params({"model": MODEL, "tier": "flex"}).timeout == 900.0
    assert ClientFlags.from_params({"model": MODEL, "tier": "flex", "timeout": 30.0}).timeout == 30.0
    assert ClientFlags.from_params({"model": MODEL}).timeout == 120.0
