"""`--max-cost USD` (caitool/budget.py): a run stops dispatching records before this run's spent USD plus
the upper bound of every record in flight and of the next one would cross the budget; in-flight records
finish, the summary and manifest say why, the exit code is 4; a rerun with a larger budget resumes to
completion with every id exactly once and no request paid twice. Real CLI over real HTTP; the spending is
checked against the fake server's own usage accounting."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

from caitool.errors import EXIT_BUDGET
from caitool.pricing import price_for
from caitool.testing.fake_server import FakeServer
from tests.conftest import prompts, read_jsonl, run_cli, write_jsonl

MODEL = "openai/gpt-4o-mini"
N = 20


def _server_usd(fake: FakeServer) -> float:
    price = price_for(MODEL)
    assert price is not None
    billed = fake.stats()["usage"]["default"]
    return float(billed["input_tokens"] * price.input + billed["output_tokens"] * price.output) / 1e6


def test_a_run_stops_before_the_budget_and_a_rerun_with_more_completes(
    fake: FakeServer, tmp_path: Path
) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", prompts(N))
    out = tmp_path / "out.jsonl"
    args = ["critique-revise", str(src), "-m", MODEL, "--rounds", "1", "--max-tokens", "40"]
    dry = run_cli(*args, "--dry-run")
    total_bound = float(re.findall(r"\$([\d.]+)", dry.stderr.split("\n  total")[1])[0])
    per_record = total_bound / N
    budget = 4.5 * per_record

    first = run_cli(
        *args, "-o", str(out), "-c", "3", "--base-url", fake.openai_base_url, "--max-cost", f"{budget:.8f}"
    )
    assert first.returncode == EXIT_BUDGET, first.stderr
    assert "stopped at --max-cost" in first.stderr
    done = read_jsonl(out)
    assert 0 < len(done) < N
    spent_first = _server_usd(fake)
    assert spent_first <= budget  # never crossed, by the server's own count
    manifest: dict[str, Any] = json.loads(Path(str(out) + ".manifest.json").read_text())
    assert manifest["status"] == "stopped at --max-cost"
    b = manifest["counts"]["budget"]
    assert b["stopped"] is True and b["spent_usd"] <= budget
    assert abs(b["spent_usd"] - spent_first) < 1e-6
    assert fake.stats()["usage"]["default"]["requests"] == 3 * len(done)  # in-flight records finished whole

    second = run_cli(*args, "-o", str(out), "-c", "3", "--base-url", fake.openai_base_url, "--max-cost", "10")
    assert second.returncode == 0, second.stderr
    ids = Counter(r["id"] for r in read_jsonl(out))
    assert set(ids) == {f"p{i}" for i in range(N)} and set(ids.values()) == {1}
    # every request once over both runs: nothing of the first run was paid again
    assert fake.stats()["usage"]["default"]["requests"] == 3 * N


def test_max_cost_without_a_price_is_refused(fake: FakeServer, tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", prompts(2))
    r = run_cli(
        "critique-revise", str(src), "-o", str(tmp_path / "o.jsonl"), "-m", "openai/unpriced-model",
        "--base-url", fake.openai_base_url, "--max-cost", "1",
    )  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert "--max-cost needs the model's price" in r.stderr
    assert fake.stats()["total"] == 0


def test_a_budget_too_small_for_one_record_sends_nothing(fake: FakeServer, tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", prompts(2))
    out = tmp_path / "o.jsonl"
    r = run_cli(
        "critique-revise", str(src), "-o", str(out), "-m", MODEL, "--base-url", fake.openai_base_url,
        "--max-cost", "0.0000001",
    )  # fmt: skip
    assert r.returncode == EXIT_BUDGET, r.stderr
    assert fake.stats()["total"] == 0
    assert not out.exists() or read_jsonl(out) == []


def test_a_command_that_cannot_keep_a_budget_refuses_max_cost(fake: FakeServer, tmp_path: Path) -> None:
    r = run_cli(
        "red-team", "examples/red_team_prompts.jsonl", "-o", str(tmp_path / "rt.jsonl"), "-m", MODEL,
        "--base-url", fake.openai_base_url,
        "--max-cost", "1",
    )  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert "--max-cost: not available for red-team" in r.stderr
    assert fake.stats()["total"] == 0
