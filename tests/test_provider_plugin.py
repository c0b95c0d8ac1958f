"""A third-party model provider is a pip-installable package with a `caitool.providers` entry point
(tests/fake_provider_plugin): `caitool providers list` shows it beside the built-ins, and `label-pairs --model
fake/x` and `rl --reward fake/x` run through it, over real HTTP to the fake server."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

from caitool.testing.fake_server import FakeServer
from tests.conftest import cli_env, read_jsonl, run_cli, write_jsonl
from tests.plugin_install import install_plugin


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    return install_plugin("fake_provider_plugin", tmp_path_factory.mktemp("provider-plugin"))


def listed(**env: str) -> dict[str, dict[str, object]]:
    r = run_cli("providers", "list", "--json", env=cli_env(**env))
    assert r.returncode == 0, r.stderr
    return {row["name"]: row for row in map(json.loads, r.stdout.splitlines())}


def test_providers_list_shows_the_builtins_and_the_plugin(plugin_path: str, fake: FakeServer) -> None:
    rows = listed(PYTHONPATH=plugin_path, FAKE_PROVIDER_BASE_URL=fake.openai_base_url)
    assert rows["fake"] == {
        "name": "fake",
        "source": "caitool-fake-provider",
        "ready": True,
        "key_env": "FAKE_PROVIDER_API_KEY",
        "base_url": fake.openai_base_url,
        "detail": "base URL set",
        "description": "test double: an OpenAI-compatible server at FAKE_PROVIDER_BASE_URL",
    }
    assert rows["openai"]["key_env"] == "OPENAI_API_KEY" and rows["openai"]["source"] == "caitool"
    assert rows["vllm"]["base_url"] == "http://localhost:8000/v1" and rows["vllm"]["ready"]
    assert rows["local"]["key_env"] is None
    # Not configured: listed, not ready, and it says what to set.
    bare = listed(PYTHONPATH=plugin_path)["fake"]
    assert bare["ready"] is False and bare["detail"] == "set FAKE_PROVIDER_BASE_URL"
    assert "fake" not in listed()
    table = run_cli("providers", "list", env=cli_env(PYTHONPATH=plugin_path, COLUMNS="200"))
    assert table.returncode == 0, table.stderr
    line = next(x for x in table.stdout.splitlines() if " fake " in x)
    assert "FAKE_PROVIDER_API_KEY" in line and "caitool-fake-provider" in line


def test_a_base_url_secret_is_not_listed(fake: FakeServer) -> None:
    rows = listed(VLLM_BASE_URL="http://user:hunter22@127.0.0.1:9/v1?api-key=sk-secret")
    assert "hunter22" not in str(rows["vllm"]) and "sk-secret" not in str(rows["vllm"])


def test_label_pairs_runs_through_the_plugin(plugin_path: str, fake: FakeServer, tmp_path: Path) -> None:
    fake.configure(answer_logprobs={" A": math.log(0.7), " B": math.log(0.3)})
    pairs = [
        {"id": f"q{i}", "prompt": f"q {i}?", "response_a": "ALPHA", "response_b": "BRAVO"} for i in range(3)
    ]
    src = write_jsonl(tmp_path / "in.jsonl", pairs)
    out = tmp_path / "out.jsonl"
    args = ("label-pairs", str(src), "-o", str(out), "--model", "fake/x", "--fewshot", "0")
    unknown = run_cli(*args)
    assert unknown.returncode == 2 and "unknown provider 'fake'" in unknown.stderr
    env = cli_env(PYTHONPATH=plugin_path, FAKE_PROVIDER_BASE_URL=fake.openai_base_url)
    r = run_cli(*args, env=env)
    assert r.returncode == 0, r.stderr
    rows = read_jsonl(out)
    assert [row["caitool"]["p_a"] for row in rows] == [pytest.approx(0.7, abs=1e-6)] * 3
    # The plugin's client declares no raw completions: the questions went to the chat endpoint.
    assert fake.stats()["by_endpoint"] == {"/v1/chat/completions": 3}
    manifest = json.loads((tmp_path / "out.jsonl.manifest.json").read_text())
    assert manifest["counts"]["models"]["fake/x"]["requests"] == 3


needs_train = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("torch", "trl", "datasets")),
    reason="needs the train extra (torch, trl, datasets)",
)


@needs_train
def test_rl_reward_runs_through_the_plugin(plugin_path: str, fake: FakeServer, tmp_path: Path) -> None:
    """Direct RLAIF with a plugin's feedback model: the reward check asks the provider table, not a list of
    built-in names (`rl --reward plugin/model` used to be refused)."""
    from caitool.testing.tiny_model import build_tiny_model
    from tests.trainer_fixtures import prompt_rows

    fake.configure(answer_logprobs={" A": math.log(0.7), " B": math.log(0.3)})
    model = build_tiny_model(tmp_path / "model")
    prompts = write_jsonl(tmp_path / "prompts.jsonl", prompt_rows())
    config = tmp_path / "rl.json"
    config.write_text(json.dumps({"max_completion_length": 8}))
    out = tmp_path / "rl"
    env = cli_env(PYTHONPATH=plugin_path, FAKE_PROVIDER_BASE_URL=fake.openai_base_url)
    r = run_cli(
        *("rl", str(prompts), "--policy", str(model), "--reward", "fake/x", "-o", str(out)),
        *("--algo", "grpo", "--config", str(config), "--max-steps", "1", "--batch-size", "2", "--quiet"),
        env=env,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    manifest = json.loads((out / "caitool-manifest.json").read_text())
    assert manifest["reward_model"] == "fake/x"
    assert fake.stats()["by_endpoint"]["/v1/chat/completions"] >= 2
