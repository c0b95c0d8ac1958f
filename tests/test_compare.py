"""compare: AI-judged model comparisons per criterion, in the judgment format elo reads."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tests.conftest import cli_env, read_jsonl, run_cli, write_jsonl


def test_compare_judges_every_pair_per_criterion_in_both_orders(fake, tmp_path: Path) -> None:
    # The judge prefers whatever is shown as (A) with p 0.8: both orders must cancel that bias to 0.5.
    fake.configure(answer_logprobs={" A": math.log(0.8), " B": math.log(0.2)})
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"id": "x", "prompt": "q1?"}, {"id": "y", "prompt": "q2?"}])
    a = write_jsonl(
        tmp_path / "a.jsonl",
        [
            {"id": "x", "prompt": "q1?", "response": "from A 1"},
            {"id": "y", "prompt": "q2?", "response": "from A 2"},
        ],
    )
    b = write_jsonl(
        tmp_path / "b.jsonl",
        [
            {"id": "x", "prompt": "q1?", "response": "from B 1"},
            {"id": "y", "prompt": "q2?", "response": "from B 2"},
        ],
    )
    out = tmp_path / "judgments.jsonl"
    r = run_cli(
        "compare",
        str(prompts),
        "-o",
        str(out),
        "--model",
        "openai/judge",
        "--base-url",
        fake.openai_base_url,
        "--responses",
        f"sl-cai={a}",
        "--responses",
        f"rl-cai@100={b}",
    )
    assert r.returncode == 0, r.stderr
    rows = read_jsonl(out)
    assert len(rows) == 2 * 1 * 2  # prompts x model pairs x criteria
    assert {row["criterion"] for row in rows} == {"harmlessness", "helpfulness"}
    for row in rows:
        assert {row["model_a"], row["model_b"]} == {"sl-cai", "rl-cai@100"}
        assert row["source"] == "ai"
        assert row["p_a"] == pytest.approx(0.5, abs=1e-6)
        assert [q["order"] for q in row["caitool"]["questions"]] == ["ab", "ba"]
    helpful = next(row for row in rows if row["criterion"] == "helpfulness")
    assert helpful["caitool"]["principle_ids"][0].startswith("helpful")


def test_compare_samples_models_from_specs(fake, tmp_path: Path) -> None:
    fake.configure(answer_logprobs={" A": math.log(0.7), " B": math.log(0.3)})
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"id": f"p{i}", "prompt": f"q{i}?"} for i in range(3)])
    out = tmp_path / "judgments.jsonl"
    # Sampled models find the server through OPENAI_BASE_URL, as a user's would.
    env = cli_env(OPENAI_BASE_URL=fake.openai_base_url)
    r = run_cli(
        "compare",
        str(prompts),
        "-o",
        str(out),
        "--model",
        "openai/judge",
        "--models",
        "base=openai/base-model,tuned=openai/tuned-model",
        "--criteria",
        "harmlessness=anthropic-cai-2022",
        "--one-order",
        env=env,
    )
    assert r.returncode == 0, r.stderr
    rows = read_jsonl(out)
    assert len(rows) == 3
    assert all(row["response_a"].startswith("reply 0 to: q") for row in rows)
    assert all(row["p_a"] == pytest.approx(0.7, abs=1e-6) for row in rows)
