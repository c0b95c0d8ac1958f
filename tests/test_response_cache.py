"""`--cache DIR` (caitool/response_cache.py): an identical request (model, base URL, body with seed and
sampling parameters) is answered from the folder on a later run, unpaid; a changed later-stage setting pays
only for the requests that changed; errors are never kept; the API key is never written; a torn entry is
a miss. Real CLI over real HTTP: the fake server's counters show what was sent again."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from caitool.providers.base import Choice, Completion, GenerateParams, Message, TokenLogprob, TopLogprob
from caitool.response_cache import ResponseCache
from caitool.testing.fake_server import FakeServer
from tests.conftest import SENTINEL_KEY, prompts, read_jsonl, run_cli, write_jsonl

MODEL = "openai/gpt-4o-mini"


def _run(fake: FakeServer, tmp_path: Path, out: str, cache: Path, *extra: str) -> Any:
    src = tmp_path / "in.jsonl"
    if not src.exists():
        write_jsonl(src, prompts(5))
    return run_cli(
        "critique-revise", str(src), "-o", str(tmp_path / out), "-m", MODEL,
        "--base-url", fake.openai_base_url, "--cache", str(cache), *extra,
    )  # fmt: skip


def _texts(path: Path) -> list[dict[str, Any]]:
    """The rows without their usage and cost (a cached answer's usage is zero: nothing was paid)."""

    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in ("usage", "cost_usd")}
        return [strip(v) for v in value] if isinstance(value, list) else value

    return [strip(row) for row in read_jsonl(path)]


def _models(tmp_path: Path, out: str) -> dict[str, Any]:
    manifest = json.loads((tmp_path / f"{out}.manifest.json").read_text())
    models: dict[str, Any] = manifest["counts"]["models"][MODEL]
    return models


def test_a_second_run_sends_no_request_already_answered(fake: FakeServer, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = _run(fake, tmp_path, "a.jsonl", cache, "--rounds", "1")
    assert first.returncode == 0, first.stderr
    sent = fake.stats()["total"]
    assert sent == 15
    second = _run(fake, tmp_path, "b.jsonl", cache, "--rounds", "1")
    assert second.returncode == 0, second.stderr
    assert fake.stats()["total"] == sent  # nothing sent again
    assert _texts(tmp_path / "b.jsonl") == _texts(tmp_path / "a.jsonl")  # the same answers, unpaid
    m = _models(tmp_path, "b.jsonl")
    assert m["cache_hits"] == 15 and m["requests"] == 0 and m["cost_usd"] == 0
    assert "15 answers from --cache ($0)" in second.stderr
    assert max(fake.stats()["attempts"].values()) == 1  # the server never saw one prompt twice
    for path in cache.rglob("*.json"):
        assert SENTINEL_KEY not in path.read_text()  # the key never reaches the cache


def test_a_changed_later_setting_pays_only_for_the_new_requests(fake: FakeServer, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    assert _run(fake, tmp_path, "a.jsonl", cache, "--rounds", "1").returncode == 0
    assert fake.stats()["total"] == 15
    more = _run(fake, tmp_path, "b.jsonl", cache, "--rounds", "2")
    assert more.returncode == 0, more.stderr
    assert fake.stats()["total"] == 25  # only round 2's critique and revision of each record
    assert max(fake.stats()["attempts"].values()) == 1
    assert _models(tmp_path, "b.jsonl")["cache_hits"] == 15


def test_a_changed_sampling_parameter_misses(fake: FakeServer, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    assert _run(fake, tmp_path, "a.jsonl", cache, "--rounds", "1").returncode == 0
    assert _run(fake, tmp_path, "b.jsonl", cache, "--rounds", "1", "--temperature", "0.5").returncode == 0
    assert fake.stats()["total"] == 30


def test_errors_are_never_cached(fake: FakeServer, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    fake.configure(fail_keys_containing={"number 3": 400})
    first = _run(fake, tmp_path, "a.jsonl", cache, "--rounds", "1")
    assert first.returncode == 3, first.stderr
    fake.configure(fail_keys_containing={})
    before = fake.stats()["total"]
    second = _run(fake, tmp_path, "b.jsonl", cache, "--rounds", "1")
    assert second.returncode == 0, second.stderr
    assert fake.stats()["total"] == before + 3  # the failed record is asked again, whole
    assert len(read_jsonl(tmp_path / "b.jsonl")) == 5


def test_a_torn_entry_is_a_miss_and_is_written_again(tmp_path: Path) -> None:
    cache = ResponseCache(tmp_path, "openai/m|http://x")
    params = GenerateParams(max_tokens=5, seed=1, logprobs=True, top_logprobs=2)
    key = cache.key("chat", [Message("user", "hi")], params)
    lp = (TokenLogprob("A", -0.1, (TopLogprob("A", -0.1), TopLogprob("B", -2.5))),)
    answer = Completion([Choice("A", "stop", lp)], model="m")
    cache.put(key, answer)
    assert cache.get(key) == answer  # log-probs round-trip
    path = next(tmp_path.rglob(f"{key}.json"))
    path.write_text(path.read_text()[:20])
    assert cache.get(key) is None
    cache.put(key, answer)
    assert cache.get(key) == answer
    other = ResponseCache(tmp_path, "openai/m|http://y")  # another endpoint: another key
    assert other.key("chat", [Message("user", "hi")], params) != key
    assert cache.key("chat", [Message("user", "hi")], GenerateParams(max_tokens=5, seed=2)) != key
