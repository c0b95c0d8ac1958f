"""A hostile or broken server (issue 11, items 4, 6, 7, 8; R5, R8, R9, R12, R13, R14, R17, R19, R22).

Every case is real HTTP against the local fake server's misbehaviours (`misbehave.MODE` model names), through
the OpenAI provider's two request paths (direct aiohttp and the openai SDK) and the Anthropic SDK:

- an odd answer (non-numeric usage, non-string or list content, null or filtered content, deep JSON,
  non-finite log-probs) is a `ProviderError` (the record's error row) or a clean `Completion`, never another
  exception; list-of-parts content is joined;
- extreme Retry-After values (86400, inf, a date in 2100, retry-after-ms 1e400) fail the request at once
  with a message, instead of pausing every worker; a plain `Retry-After: N` is still honoured;
- `--timeout` is a whole-attempt deadline: a body dripped one byte at a time cannot hold a request;
- a success body over the cap fails its request instead of being buffered;
- base-URL passwords and query keys never reach errors rows, stderr or the manifest;
- a rejected key (401) stops the run at once with "check the API key"; a broken `local/` model file is
  refused before any output file exists;
- each Anthropic vote is one request against the budget and in the counters; a spec used by two clients
  adds up.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from pathlib import Path
from typing import Any

import pytest

from caitool.errors import ProviderError
from caitool.providers._http import parse_retry_after
from caitool.providers.anthropic import AnthropicClient
from caitool.providers.base import Completion, GenerateParams, Message
from caitool.providers.openai import OpenAIClient
from caitool.retry import AuthRejected, RateLimiter, ResilientClient, RetryPolicy, stats_by_spec
from caitool.testing.fake_server import FakeServer
from tests.conftest import cli_env, prompts, read_jsonl, run_cli, write_jsonl

HELLO = [Message("user", "hello there?")]
PARAMS = GenerateParams(max_tokens=16)
LP_PARAMS = GenerateParams(max_tokens=1, logprobs=True, top_logprobs=5, temperature=0.0)
TRANSPORTS = ["direct", "sdk", "anthropic"]


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("CAITOOL_HTTP", "sdk" if request.param == "sdk" else "aiohttp")
    return str(request.param)


def make(fake: FakeServer, transport: str, model: str, *, timeout: float = 5.0, **kw: Any) -> Any:
    if transport == "anthropic":
        return AnthropicClient(
            f"anthropic/{model}", model, base_url=fake.anthropic_base_url, api_key="k", timeout=timeout
        )
    url = kw.get("url", fake.openai_base_url)
    return OpenAIClient(f"openai/{model}", model, base_url=url, api_key=kw.get("key", "k"), timeout=timeout)


def call(client: Any, params: GenerateParams = PARAMS, *, complete: bool = False) -> Completion:
    async def go() -> Completion:
        try:
            if complete:
                return await client.complete("Q? The answer is: (", params)
            return await client.chat(HELLO, params)
        finally:
            await client.aclose()

    return asyncio.run(go())


def failure(client: Any, params: GenerateParams = PARAMS, *, complete: bool = False) -> ProviderError:
    with pytest.raises(ProviderError) as ei:
        call(client, params, complete=complete)
    return ei.value


# ---------------------------------------------------------------------------------------------------------
# Odd answers: an error the retry layer understands, or a clean answer (R5, R19)


@pytest.mark.parametrize(
    ("mode", "retryable"),
    [
        ("content_int", True),
        ("content_null", True),  # not an empty answer: an SFT row must not train on ""
        ("content_filter", False),  # withheld by a filter: the same again on a retry
        ("deep_json", True),
        ("deep_json_err", True),
        ("choices_str", True),
    ],
)
def test_odd_answer_is_a_provider_error(fake: FakeServer, transport: str, mode: str, retryable: bool) -> None:
    if transport == "anthropic" and mode in ("content_filter", "choices_str"):
        pytest.skip("an OpenAI shape")
    err = failure(make(fake, transport, f"misbehave.{mode}"))
    assert err.retryable is retryable, err
    assert fake.stats()["total"] == 1


@pytest.mark.parametrize("mode", ["content_str", "text_int"])
def test_odd_anthropic_content_is_a_provider_error(fake: FakeServer, mode: str) -> None:
    err = failure(make(fake, "anthropic", f"misbehave.{mode}"))
    assert err.retryable and "malformed" in str(err)


def test_list_of_text_parts_is_joined(fake: FakeServer, transport: str) -> None:
    assert call(make(fake, transport, "misbehave.content_list")).text == "part one, part two"


@pytest.mark.parametrize("mode", ["usage_str", "usage_list", "usage_inf", "usage_neg"])
def test_unreadable_usage_keeps_the_answer_and_counts_zero(
    fake: FakeServer, transport: str, mode: str, capsys: pytest.CaptureFixture[str]
) -> None:
    if transport == "anthropic" and mode == "usage_list":
        pytest.skip("the anthropic SDK reads a list usage as no usage")
    completion = call(make(fake, transport, f"misbehave.{mode}"))
    assert completion.text.startswith("reply 0 to: hello there?")
    usage = completion.usage
    assert (usage.input_tokens, usage.output_tokens, usage.calls) == (0, 0, 1)
    assert "unreadable token counts" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["nan", "inf", "nan_str"])
@pytest.mark.parametrize("complete", [False, True], ids=["chat", "completion"])
def test_non_finite_logprob_is_a_provider_error(
    fake: FakeServer, transport: str, value: str, complete: bool
) -> None:
    if transport == "anthropic":
        pytest.skip("no log-probs")
    fake.configure(answer_logprobs={" A": -0.1, " B": -2.0})
    err = failure(make(fake, transport, f"misbehave.lp:{value}"), LP_PARAMS, complete=complete)
    assert err.retryable and "log-prob" in str(err)


@pytest.mark.parametrize("value", ["-inf", "-1e308"])
def test_extreme_negative_logprob_is_kept(fake: FakeServer, transport: str, value: str) -> None:
    if transport == "anthropic":
        pytest.skip("no log-probs")
    fake.configure(answer_logprobs={" A": -0.1, " B": -2.0})
    completion = call(make(fake, transport, f"misbehave.lp:{value}"), LP_PARAMS)
    (first,) = completion.choices[0].logprobs or ()
    assert first.top[0] == (" A", pytest.approx(-0.1)) and first.top[1].logprob == float(value)


# ---------------------------------------------------------------------------------------------------------
# Hangs: drip-fed bodies (R12) and extreme Retry-After (R8)


def test_timeout_is_a_deadline_for_a_dripping_body(fake: FakeServer, transport: str) -> None:
    # ~400 bytes at one byte per 50 ms is 20 s of body; every byte resets a per-read timer.
    t0 = time.monotonic()
    err = failure(make(fake, transport, "misbehave.drip:50", timeout=1.0))
    assert time.monotonic() - t0 < 4, "the attempt ended near its 1 s deadline"
    assert err.retryable and "1 s" in str(err)


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after": "86400"}, 86400.0),
        ({"retry-after": "inf"}, math.inf),
        ({"retry-after-ms": "1e400"}, math.inf),
        ({"retry-after": "Fri, 01 Jan 2100 00:00:00 GMT"}, None),
        ({"retry-after": "nan"}, 0.0),
        ({"retry-after": "-5"}, 0.0),
        ({"retry-after": "soon"}, None),  # not a number, not a date: ignored, not a crash
        ({"retry-after": "Fri, 99 Foo 2100 99:99:99 GMT"}, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str], seconds: float | None) -> None:
    got = parse_retry_after(headers)
    if "2100" in headers.get("retry-after", "") and "Foo" not in headers["retry-after"]:
        assert got is not None and got > 2e9
    else:
        assert got == seconds


def resilient(client: Any, *, retries: int = 3, rpm: float | None = None) -> ResilientClient:
    return ResilientClient(client, RetryPolicy(retries=retries, initial_wait=0.01), RateLimiter(rpm=rpm))


@pytest.mark.parametrize("mode", ["ra:86400", "ra:inf", "ra:date2100", "ra_ms:1e400"])
def test_retry_after_beyond_the_cap_fails_the_request_at_once(
    fake: FakeServer, transport: str, mode: str, capsys: pytest.CaptureFixture[str]
) -> None:
    client = resilient(make(fake, transport, f"misbehave.{mode}"))
    t0 = time.monotonic()
    err = failure(client)
    assert time.monotonic() - t0 < 3
    assert not err.retryable and err.status == 429 and "over the 300 s honoured" in str(err)
    assert fake.stats()["total"] == 1
    assert "more than the 300 s honoured" in capsys.readouterr().err


def test_plain_retry_after_seconds_is_honoured(fake: FakeServer, transport: str) -> None:
    client = resilient(make(fake, transport, "misbehave.ra_once:1"))
    t0 = time.monotonic()
    assert call(client).text
    assert time.monotonic() - t0 >= 0.95
    assert client.stats.attempts == 2 and client.stats.rate_limited == 1


def test_retry_after_cap_is_configurable(
    fake: FakeServer, transport: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAITOOL_MAX_RETRY_AFTER_S", "0.5")
    err = failure(resilient(make(fake, transport, "misbehave.ra:1")))
    assert not err.retryable and "over the 0.5 s honoured" in str(err)


# ---------------------------------------------------------------------------------------------------------
# Size (R13)


def test_success_body_over_the_cap_fails_the_request(
    fake: FakeServer, transport: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAITOOL_MAX_RESPONSE_MB", "1")
    err = failure(make(fake, transport, "misbehave.huge:3"))
    assert not err.retryable and "larger than 1 MiB" in str(err)
    err = failure(make(fake, transport, "misbehave.huge_chunked:3"))  # no Content-Length: counted
    assert not err.retryable and "larger than 1 MiB" in str(err)
    assert call(make(fake, transport, "misbehave.huge:0.5")).text.startswith("xxxx")  # under the cap: fine


# ---------------------------------------------------------------------------------------------------------
# Wrong key (R22), votes and accounting (item 8)


def test_rejected_key_is_fatal_for_the_run(fake: FakeServer, transport: str) -> None:
    fake.configure(require_key="the-right-key")
    with pytest.raises(AuthRejected) as ei:
        call(resilient(make(fake, transport, "m")))
    assert "check the API key" in (ei.value.hint or "") and ei.value.exit_code == 1


def test_each_anthropic_vote_is_one_budgeted_counted_request(fake: FakeServer) -> None:
    # 5 votes at 600 requests/min (one token to start, 10 per second): 4 must wait for the budget.
    client = resilient(make(fake, "anthropic", "m"), rpm=600)
    t0 = time.monotonic()
    completion = call(client, GenerateParams(max_tokens=8, n=5))
    assert time.monotonic() - t0 >= 0.35
    assert len(completion.choices) == 5 and completion.usage.calls == 5
    assert fake.stats()["total"] == 5
    s = client.stats
    assert (s.requests, s.attempts, s.usage.calls) == (5, 5, 5)
    assert s.usage.output_tokens == completion.usage.output_tokens > 0


def test_a_spec_used_by_two_clients_adds_up(fake: FakeServer, transport: str) -> None:
    a, b = (resilient(make(fake, transport, "m")) for _ in range(2))

    async def three_calls() -> None:
        for c in (a, b, b):
            await c.chat(HELLO, PARAMS)
        await a.aclose()
        await b.aclose()

    asyncio.run(three_calls())
    merged = stats_by_spec([a, b])
    (spec,) = merged
    assert merged[spec].attempts == 3 and merged[spec].usage.calls == 3
    assert merged[spec].usage.input_tokens == a.stats.usage.input_tokens * 3


# ---------------------------------------------------------------------------------------------------------
# Through the CLI: exit codes, error rows, reruns, and what the files and stderr hold

ENV = cli_env(CAITOOL_RETRY_BACKOFF_S="0.01")


def critique_revise(fake: FakeServer, src: Path, out: Path, model: str, *extra: str, **kw: Any) -> Any:
    args = ["critique-revise", str(src), "-o", str(out), "--model", model, "--rounds", "1"]
    args += ["--base-url", kw.pop("url", fake.openai_base_url), "--max-tokens", "16", *extra]
    return run_cli(*args, env=kw.pop("env", ENV), **kw)


@pytest.mark.parametrize(
    ("mode", "code"),
    [
        ("content_int", 3),
        ("content_null", 3),
        ("content_filter", 3),
        ("deep_json", 3),
        ("lp:nan", 0),  # critique-revise does not ask for log-probs: the answer is fine
        ("usage_str", 0),
        ("content_list", 0),
    ],
)
def test_odd_answer_never_kills_the_run_and_the_rerun_retries_it(
    fake: FakeServer, tmp_path: Path, mode: str, code: int
) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", prompts(2))
    out = tmp_path / "out.jsonl"
    r = critique_revise(fake, src, out, f"openai/misbehave.{mode}", "--retries", "1")
    assert r.returncode == code, r.stderr
    assert "Traceback" not in r.stderr
    if code == 0:
        rows = read_jsonl(out)
        assert len(rows) == 2 and all(row["final_response"] for row in rows)
        if mode == "content_list":
            assert rows[0]["initial_response"] == "part one, part two"
        return
    assert not out.exists() or out.read_text() == ""  # no empty SFT row for a null answer
    errs = read_jsonl(tmp_path / "out.jsonl.errors.jsonl")
    assert sorted(e["id"] for e in errs) == ["p0", "p1"]
    before = fake.stats()["total"]
    r = critique_revise(fake, src, out, f"openai/misbehave.{mode}", "--retries", "0")
    assert r.returncode == 3 and "Traceback" not in r.stderr, r.stderr
    assert fake.stats()["total"] == before + 2  # the rerun asked again for both records


def test_retry_after_a_day_ends_the_run_with_a_message(fake: FakeServer, tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", prompts(3))
    out = tmp_path / "out.jsonl"
    t0 = time.monotonic()
    r = critique_revise(fake, src, out, "openai/misbehave.ra:86400", timeout=60)
    assert time.monotonic() - t0 < 30
    assert r.returncode == 3, r.stderr
    assert r.stderr.count("more than the 300 s honoured") == 1
    assert len(read_jsonl(tmp_path / "out.jsonl.errors.jsonl")) == 3


@pytest.mark.parametrize("http", ["aiohttp", "sdk"])
def test_dripping_server_cannot_outlast_timeout(fake: FakeServer, tmp_path: Path, http: str) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", prompts(1))
    out = tmp_path / "out.jsonl"
    t0 = time.monotonic()
    r = critique_revise(
        fake, src, out, "openai/misbehave.drip:50", "--timeout", "1", "--retries", "0",
        env=cli_env(CAITOOL_HTTP=http),
    )  # fmt: skip
    assert time.monotonic() - t0 < 15
    assert r.returncode == 3, r.stderr
    (err,) = read_jsonl(tmp_path / "out.jsonl.errors.jsonl")
    assert "--timeout" in err["error"]


def test_huge_body_fails_that_record(fake: FakeServer, tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", prompts(1))
    out = tmp_path / "out.jsonl"
    env = cli_env(CAITOOL_MAX_RESPONSE_MB="1")
    r = critique_revise(fake, src, out, "openai/misbehave.huge:4", "--retries", "3", env=env)
    assert r.returncode == 3, r.stderr
    (err,) = read_jsonl(tmp_path / "out.jsonl.errors.jsonl")
    assert "larger than 1 MiB" in err["error"]
    assert fake.stats()["total"] == 1  # not retried: the same server sends the same body


SECRET = "hunter2PASS"


@pytest.mark.parametrize("http", ["aiohttp", "sdk"])
@pytest.mark.parametrize(
    "url",
    [
        f"http://user:{SECRET}@127.0.0.1:99999/v1",  # a port out of range: "invalid URL <the URL>"
        f"htp://user:{SECRET}@127.0.0.1:9/v1",  # a typo'd scheme
        f"http://127.0.0.1:9/v1?api-key={SECRET}",  # a key in the query string
    ],
    ids=["userinfo", "bad-scheme", "query-key"],
)
def test_base_url_secrets_never_written(fake: FakeServer, tmp_path: Path, http: str, url: str) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", prompts(2))
    out = tmp_path / "out.jsonl"
    env = {k: v for k, v in cli_env(CAITOOL_HTTP=http).items() if not k.endswith("_API_KEY")}
    r = critique_revise(fake, src, out, "openai/m", "--retries", "0", url=url, env=env)
    assert r.returncode in (1, 3), r.stderr
    assert SECRET not in r.stdout + r.stderr
    for path in tmp_path.iterdir():
        assert SECRET not in path.read_text(), path.name
    if r.returncode == 3:
        assert len(read_jsonl(tmp_path / "out.jsonl.errors.jsonl")) == 2


def test_userinfo_url_plus_api_key_is_a_usage_error(fake: FakeServer, tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", prompts(1))
    out = tmp_path / "out.jsonl"
    url = fake.openai_base_url.replace("http://", f"http://user:{SECRET}@")
    r = critique_revise(fake, src, out, "openai/m", "--api-key", "sk-x", url=url)
    assert r.returncode == 2, r.stderr
    assert "user:password" in r.stderr and "Traceback" not in r.stderr and SECRET not in r.stderr
    assert fake.stats()["total"] == 0


def test_wrong_key_stops_the_run_at_once(fake: FakeServer, tmp_path: Path) -> None:
    fake.configure(require_key="the-right-key")
    src = write_jsonl(tmp_path / "in.jsonl", prompts(40))
    out = tmp_path / "out.jsonl"
    r = critique_revise(fake, src, out, "openai/m", "-c", "2")
    assert r.returncode == 1, r.stderr
    assert "check the API key" in r.stderr and "Traceback" not in r.stderr
    assert fake.stats()["total"] <= 2  # at most the requests already in flight, not 40


@pytest.mark.parametrize("kind", ["random-bytes", "directory", "not-gguf-system-file"])
def test_broken_local_model_is_refused_before_any_file(tmp_path: Path, kind: str) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", prompts(1))
    garbage = tmp_path / "garbage.gguf"
    garbage.write_bytes(bytes(range(256)) * 8)
    spec = {"random-bytes": f"local/{garbage}", "directory": f"local/{tmp_path}"}.get(
        kind, "local//etc/passwd"
    )
    out = tmp_path / "sub" / "out.jsonl"
    r = run_cli("critique-revise", str(src), "-o", str(out), "--model", spec, "--rounds", "1", env=ENV)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and ("not a GGUF file" in r.stderr or "not a file" in r.stderr)
    assert not (tmp_path / "sub").exists()


def test_anthropic_votes_count_in_the_manifest(fake: FakeServer, tmp_path: Path) -> None:
    fake.configure(reply_text="(A)")
    src = write_jsonl(
        tmp_path / "in.jsonl",
        [{"id": "q0", "prompt": "question?", "response_a": "ALPHA", "response_b": "BRAVO"}],
    )
    out = tmp_path / "out.jsonl"
    r = run_cli(
        "label-pairs", str(src), "-o", str(out), "--model", "anthropic/m", "--base-url",
        fake.anthropic_base_url, "--votes", "5", "--fewshot", "0", env=ENV,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    manifest = json.loads((tmp_path / "out.jsonl.manifest.json").read_text())
    model = manifest["counts"]["models"]["anthropic/m"]
    assert fake.stats()["total"] == 5
    assert model["attempts"] == model["calls"] == model["requests"] == 5


def test_summary_after_a_resume_says_it_counts_this_run(fake: FakeServer, tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "in.jsonl", prompts(2))
    out = tmp_path / "out.jsonl"
    r = critique_revise(fake, src, out, "openai/m", "--limit", "1")
    assert r.returncode == 0 and "this run:" not in r.stderr, r.stderr
    r = critique_revise(fake, src, out, "openai/m")
    assert r.returncode == 0, r.stderr
    assert "1 already done" in r.stderr and "openai/m: this run: 3 calls" in r.stderr


def test_one_spec_in_two_roles_counts_every_request(fake: FakeServer, tmp_path: Path) -> None:
    # label-pairs samples the pair from --policy, then labels it with --model: the same spec twice.
    fake.configure(answer_logprobs={" A": math.log(0.7), " B": math.log(0.3)})
    src = write_jsonl(tmp_path / "in.jsonl", prompts(2))
    out = tmp_path / "out.jsonl"
    r = run_cli(
        "label-pairs", str(src), "-o", str(out), "--model", "openai/m", "--policy", "openai/m",
        "--base-url", fake.openai_base_url, "--policy-base-url", fake.openai_base_url, "--fewshot", "0",
        env=ENV,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    model = json.loads((tmp_path / "out.jsonl.manifest.json").read_text())["counts"]["models"]["openai/m"]
    assert model["attempts"] == model["calls"] == fake.stats()["total"] > 2
