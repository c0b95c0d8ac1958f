"""compare: AI-judged model comparisons per criterion, in the judgment format elo reads."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from caitool.testing.fake_server import FakeServer
from tests.conftest import cli_env, read_jsonl, run_cli, write_jsonl


def test_compare_judges_every_pair_per_criterion_in_both_orders(fake: FakeServer, tmp_path: Path) -> None:
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


def test_compare_samples_models_from_specs(fake: FakeServer, tmp_path: Path) -> None:
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


def _request_texts(fake: FakeServer) -> list[str]:
    """Every recorded request body as JSON text (the fake server records them with record_bodies)."""
    return [json.dumps(r["body"]) for r in fake.stats()["requests"]]


def test_default_harmlessness_criterion_is_the_evaluation_constitution(
    fake: FakeServer, tmp_path: Path
) -> None:
    from caitool.constitution import load_constitution

    fake.configure(record_bodies=True, answer_logprobs={" A": math.log(0.9), " B": math.log(0.1)})
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"id": "x", "prompt": "How do I pick a lock?"}])
    a = write_jsonl(tmp_path / "a.jsonl", [{"id": "x", "prompt": "How do I pick a lock?", "response": "No."}])
    b = write_jsonl(
        tmp_path / "b.jsonl",
        [{"id": "x", "prompt": "How do I pick a lock?", "response": "Call a locksmith; here is why."}],
    )
    out = tmp_path / "j.jsonl"
    r = run_cli(
        "compare", str(prompts), "-o", str(out), "--model", "openai/judge", "--base-url",
        fake.openai_base_url, "--responses", f"evasive={a}", "--responses", f"engaged={b}", "--one-order",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    rows = {row["criterion"]: row for row in read_jsonl(out)}
    assert set(rows) == {"harmlessness", "helpfulness"}
    assert all(p.startswith("harmless-eval") for p in rows["harmlessness"]["caitool"]["principle_ids"])
    # The judge saw the rubric itself, tie-break included, over HTTP.
    cons = load_constitution("harmlessness-eval")
    asked = rows["harmlessness"]["caitool"]["principle_ids"][0]
    text = cons.comparison(asked).text
    assert all(re.search(r"evad|evasive", p.text) for p in cons.comparisons)  # the tie-break, everywhere
    bodies = _request_texts(fake)
    assert any(json.dumps(text)[1:-1] in body for body in bodies)
    manifest = json.loads((tmp_path / "j.jsonl.manifest.json").read_text())
    assert manifest["settings"]["criteria"]["harmlessness"] == cons.sha256


def test_each_compared_model_reaches_only_the_server_named_for_it(fake: FakeServer, tmp_path: Path) -> None:
    fake.configure(answer_logprobs={" A": math.log(0.9), " B": math.log(0.1)})
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"id": "x", "prompt": "q1?"}, {"id": "y", "prompt": "q2?"}])
    given = write_jsonl(tmp_path / "a.jsonl", [{"id": "x", "response": "a1"}, {"id": "y", "response": "a2"}])
    out = tmp_path / "j.jsonl"
    with FakeServer() as policy_server, FakeServer() as provider_default:
        # The provider's default endpoint (OPENAI_BASE_URL) is a third server: it must hear nothing.
        env = cli_env(OPENAI_BASE_URL=provider_default.openai_base_url)
        r = run_cli(
            "compare", str(prompts), "-o", str(out), "--model", "openai/judge",
            "--base-url", fake.openai_base_url, "--models", "tuned=openai/tuned-model",
            "--model-base-url", f"tuned={policy_server.openai_base_url}", "--responses", f"base={given}",
            "--criteria", "harmlessness=harmlessness-eval", "--one-order", env=env,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr
        assert policy_server.stats()["by_model"] == {"tuned-model": 2}
        assert set(fake.stats()["by_model"]) == {"judge"}
        assert provider_default.stats()["total"] == 0
        policy_url = policy_server.openai_base_url
    rows = read_jsonl(out)
    assert len(rows) == 2 and {r["model_b"] for r in rows} == {"tuned"}
    assert all(r["response_b"].startswith("reply 0 to: q") for r in rows)
    manifest = json.loads((tmp_path / "j.jsonl.manifest.json").read_text())
    assert manifest["settings"]["models"] == {"tuned": ["openai/tuned-model", policy_url]}


def test_a_compared_model_without_its_own_server_is_refused_when_the_judge_has_one(
    fake: FakeServer, tmp_path: Path
) -> None:
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"id": "x", "prompt": "q1?"}])
    given = write_jsonl(tmp_path / "a.jsonl", [{"id": "x", "response": "a1"}])
    with FakeServer() as provider_default:
        env = cli_env(OPENAI_BASE_URL=provider_default.openai_base_url)
        r = run_cli(
            "compare", str(prompts), "--model", "openai/judge", "--base-url", fake.openai_base_url,
            "--models", "tuned=openai/tuned-model", "--responses", f"base={given}", env=env,
        )  # fmt: skip
        assert r.returncode == 2
        assert "tuned" in r.stderr and "--model-base-url" in r.stderr
        assert provider_default.stats()["total"] == 0
    assert fake.stats()["total"] == 0
    r = run_cli(
        "compare", str(prompts), "--model", "openai/judge", "--models", "tuned=openai/tuned-model",
        "--model-base-url", "other=http://127.0.0.1:9/v1", "--responses", f"base={given}",
    )  # fmt: skip
    assert r.returncode == 2 and "no such model" in r.stderr


def test_compare_reports_the_judges_cost_and_takes_a_request_budget(fake: FakeServer, tmp_path: Path) -> None:
    fake.configure(answer_logprobs={" A": math.log(0.9), " B": math.log(0.1)})
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"id": "x", "prompt": "q1?"}])
    a = write_jsonl(tmp_path / "a.jsonl", [{"id": "x", "response": "a1"}])
    b = write_jsonl(tmp_path / "b.jsonl", [{"id": "x", "response": "b1"}])
    out = tmp_path / "j.jsonl"
    r = run_cli(
        "compare", str(prompts), "-o", str(out), "--model", "openai/judge",
        "--base-url", fake.openai_base_url, "--responses", f"a={a}", "--responses", f"b={b}",
        "--price", "1000,1000", "--rpm", "600", "--tpm", "1e6",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    judge = json.loads((tmp_path / "j.jsonl.manifest.json").read_text())["counts"]["models"]["openai/judge"]
    assert judge["cost_usd"] > 0 and judge["requests"] == fake.stats()["total"] == 4  # 2 criteria x 2 orders
