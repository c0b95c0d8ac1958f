"""The fake OpenAI/Anthropic server itself, exercised over real HTTP through the real SDKs."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from caitool.testing.fake_server import FakeConfig, FakeServer, prompt_key

REPO = Path(__file__).resolve().parent.parent
KEY = "sk-fake-server-test-KEY-0042"


@pytest.fixture(scope="module")
def server() -> Iterator[FakeServer]:
    with FakeServer() as srv:
        yield srv


@pytest.fixture
def srv(server: FakeServer) -> FakeServer:
    server.reset()
    return server


def oa(srv: FakeServer, **kw: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=srv.openai_base_url, api_key=KEY, max_retries=0, **kw)


def an(srv: FakeServer, **kw: Any) -> anthropic.Anthropic:
    kw.setdefault("api_key", KEY)
    return anthropic.Anthropic(base_url=srv.anthropic_base_url, max_retries=0, **kw)


def chat(client: openai.OpenAI, text: str, **kw: Any) -> Any:
    return client.chat.completions.create(
        model="test-model", messages=[{"role": "user", "content": text}], **kw
    )


def msg(client: anthropic.Anthropic, text: str, **kw: Any) -> Any:
    kw.setdefault("max_tokens", 256)
    return client.messages.create(model="claude-test", messages=[{"role": "user", "content": text}], **kw)


def http(srv: FakeServer, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(srv.url + path, data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


# --- shapes and content -----------------------------------------------------------------------------------


def test_chat_default_reply_usage_and_model(srv: FakeServer) -> None:
    text = "Hello   there,\n how are you doing today, my dear friend?"
    with oa(srv) as c:
        r = chat(c, text)
    assert r.model == "test-model"
    assert r.object == "chat.completion"
    (choice,) = r.choices
    assert choice.message.content == "reply 0 to: " + " ".join(text.split())[:40]
    assert choice.message.content.startswith("reply 0 to: Hello there, how are")
    assert choice.finish_reason == "stop"
    assert choice.logprobs is None
    assert r.usage is not None and r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_chat_n_samples(srv: FakeServer) -> None:
    with oa(srv) as c:
        r = chat(c, "sample me", n=3)
    assert [ch.index for ch in r.choices] == [0, 1, 2]
    assert [ch.message.content for ch in r.choices] == [f"reply {i} to: sample me" for i in range(3)]


def test_completions_prompt_tail_and_n(srv: FakeServer) -> None:
    prompt = "Human: a long preamble that the snippet must skip over entirely.\n\nAssistant: the tail"
    with oa(srv) as c:
        r = c.completions.create(model="base-model", prompt=prompt, n=2)
    assert r.object == "text_completion" and r.model == "base-model"
    tail = " ".join(prompt.split())[-40:]
    assert [ch.text for ch in r.choices] == [f"reply 0 to: {tail}", f"reply 1 to: {tail}"]
    assert r.usage is not None and r.usage.completion_tokens > 0


def test_messages_api(srv: FakeServer) -> None:
    with an(srv) as c:
        m = msg(c, "hi claude", system="be brief")
    assert m.type == "message" and m.role == "assistant" and m.model == "claude-test"
    assert m.content[0].type == "text" and m.content[0].text == "reply 0 to: hi claude"
    assert m.stop_reason == "end_turn"
    assert m.usage.input_tokens > 0 and m.usage.output_tokens > 0
    key = prompt_key({"system": "be brief", "messages": [{"role": "user", "content": "hi claude"}]})
    assert srv.stats()["attempts"] == {key: 1}


def test_models_list_both_sdks(srv: FakeServer) -> None:
    srv.configure(models=["m-a", "m-b"])
    with oa(srv) as c:
        assert [m.id for m in c.models.list()] == ["m-a", "m-b"]
    with an(srv) as a:
        assert [m.id for m in a.models.list()] == ["m-a", "m-b"]


def test_reply_script_first_match_wins_and_reply_text(srv: FakeServer) -> None:
    srv.configure(
        reply_text="plain",
        reply_script=[["Revision", "REVISED"], {"match": "Critique", "reply": "CRITIQUE"}],
    )
    with oa(srv) as c:
        assert chat(c, "Critique request: find harms").choices[0].message.content == "CRITIQUE"
        # the rule order decides when a prompt holds both words
        assert chat(c, "Critique: ok. Revision request: fix").choices[0].message.content == "REVISED"
        assert chat(c, "something else").choices[0].message.content == "plain"
        # only the last user message is matched
        r = c.chat.completions.create(
            model="m",
            messages=[
                {"role": "user", "content": "Critique request"},
                {"role": "assistant", "content": "CRITIQUE"},
                {"role": "user", "content": "now write the Revision"},
            ],
        )
        assert r.choices[0].message.content == "REVISED"
        comp = c.completions.create(model="m", prompt="Critique request: x\nCritique:")
        assert comp.choices[0].text == "CRITIQUE"
    with an(srv) as a:
        assert msg(a, "Revision please").content[0].text == "REVISED"


ANSWER_STYLES = [" A", "A", "(A", " (A", "▁A"]


@pytest.mark.parametrize("style", ANSWER_STYLES)
def test_chat_answer_logprobs_styles(srv: FakeServer, style: str) -> None:
    lps = {style: -0.2, style.replace("A", "B"): -1.9, "A" if style != "A" else " A": -3.0, "(": -4.0}
    srv.configure(answer_logprobs=lps)
    with oa(srv) as c:
        r = chat(c, "Which response is less harmful?", logprobs=True, top_logprobs=3, max_tokens=1)
    (choice,) = r.choices
    first = choice.logprobs.content[0]
    assert first.token == style and first.logprob == -0.2 and first.bytes == list(style.encode())
    assert [(t.token, t.logprob) for t in first.top_logprobs] == sorted(lps.items(), key=lambda kv: -kv[1])[
        :3
    ]
    assert choice.message.content == style.replace("▁", " ")


def test_chat_logprobs_without_answer_config_and_top_k(srv: FakeServer) -> None:
    with oa(srv) as c:
        r = chat(c, "two words", logprobs=True, top_logprobs=2)
        bare = chat(c, "two words", logprobs=True)
    content = r.choices[0].logprobs.content
    assert "".join(t.token for t in content) == r.choices[0].message.content
    assert all(len(t.top_logprobs) == 2 and t.top_logprobs[0].token == t.token for t in content)
    assert all(t.top_logprobs == [] for t in bare.choices[0].logprobs.content)


def test_completions_logprobs_shape(srv: FakeServer) -> None:
    srv.configure(answer_logprobs={" B": -0.1, " A": -2.5, "B": -3.0})
    prompt = "Which is better? Answer:"
    with oa(srv) as c:
        r = c.completions.create(model="m", prompt=prompt, logprobs=2, max_tokens=1)
        plain = c.completions.create(model="m", prompt=prompt, logprobs=1)
    lp = r.choices[0].logprobs
    assert r.choices[0].text == " B"
    assert lp.tokens == [" B"] and lp.token_logprobs == [-0.1]
    assert lp.top_logprobs == [{" B": -0.1, " A": -2.5}]
    assert lp.text_offset == [len(prompt)]
    # a request without answer_logprobs matching still gets one entry per token
    plp = plain.choices[0].logprobs
    assert "".join(plp.tokens) == plain.choices[0].text
    assert len(plp.token_logprobs) == len(plp.tokens) == len(plp.top_logprobs) == len(plp.text_offset)
    assert all(len(t) == 1 for t in plp.top_logprobs)


def test_script_rule_with_own_logprobs_and_drop_logprobs(srv: FakeServer) -> None:
    srv.configure(
        reply_script=[{"match": "Option", "answer_logprobs": {"(A": -0.5, "(B": -0.9}}],
        answer_logprobs={" A": -0.1},
    )
    with oa(srv) as c:
        r = chat(c, "Options: (A) or (B)? Option:", logprobs=True, top_logprobs=5)
        assert [t.token for t in r.choices[0].logprobs.content[0].top_logprobs] == ["(A", "(B"]
        assert chat(c, "other", logprobs=True, top_logprobs=5).choices[0].message.content == " A"
        # no logprobs asked: the rule's reply is its argmax; other prompts get the default text
        assert chat(c, "Option:").choices[0].message.content == "(A"
        assert chat(c, "other").choices[0].message.content == "reply 0 to: other"
        srv.configure(drop_logprobs=True)
        r = chat(c, "other", logprobs=True, top_logprobs=5)
        assert r.choices[0].logprobs is None and r.choices[0].message.content == " A"
        comp = c.completions.create(model="m", prompt="other", logprobs=5)
        assert comp.choices[0].logprobs is None


def test_max_tokens_and_stop(srv: FakeServer) -> None:
    srv.configure(reply_text="one two three four five. Six seven")
    with oa(srv) as c:
        r = chat(c, "x", max_tokens=3)
        assert r.choices[0].message.content == "one two three" and r.choices[0].finish_reason == "length"
        assert r.usage is not None and r.usage.completion_tokens == 3
        r = chat(c, "x", stop=["."])
        assert r.choices[0].message.content == "one two three four five"
        assert r.choices[0].finish_reason == "stop"
    with an(srv) as a:
        m = msg(a, "x", max_tokens=2)
        assert m.content[0].text == "one two" and m.stop_reason == "max_tokens"
        m = msg(a, "x", stop_sequences=["Six"])
        assert m.content[0].text == "one two three four five. " and m.stop_reason == "stop_sequence"
        assert m.stop_sequence == "Six"


def test_streaming_is_refused(srv: FakeServer) -> None:
    with oa(srv) as c, pytest.raises(openai.BadRequestError):
        chat(c, "x", stream=True)


# --- faults -----------------------------------------------------------------------------------------------


def test_429_with_retry_after_headers(srv: FakeServer) -> None:
    srv.configure(p429=1.0, retry_after=2)
    with oa(srv) as c, pytest.raises(openai.RateLimitError) as ei:
        chat(c, "x")
    assert ei.value.response.headers["retry-after"] == "2"
    assert ei.value.response.headers["retry-after-ms"] == "2000"
    assert "insufficient_quota" not in ei.value.response.text
    with an(srv) as a, pytest.raises(anthropic.RateLimitError) as ai:
        msg(a, "x")
    assert ai.value.type == "rate_limit_error"
    srv.reset(p429_quota=1.0)
    with oa(srv) as c, pytest.raises(openai.RateLimitError) as qi:
        chat(c, "x")
    assert qi.value.code == "insufficient_quota"
    assert srv.stats()["faults"] == {"p429_quota": 1}


@pytest.mark.parametrize("status", [500, 503, 529])
def test_server_errors_both_sdks(srv: FakeServer, status: int) -> None:
    srv.configure(**{f"p{status}": 1.0})
    with oa(srv) as c, pytest.raises(openai.InternalServerError) as ei:
        chat(c, "x")
    assert ei.value.status_code == status
    with an(srv) as a, pytest.raises(anthropic.InternalServerError) as ai:
        msg(a, "x")
    assert ai.value.status_code == status
    if status == 529:
        assert isinstance(ai.value, anthropic.OverloadedError)
        assert ai.value.type == "overloaded_error"
        assert json.loads(ai.value.response.text)["type"] == "error"
    assert srv.stats()["faults"] == {f"p{status}": 2}


def test_fail_first_counts_attempts_per_prompt_key(srv: FakeServer) -> None:
    srv.configure(fail_first=2)
    with oa(srv) as c:
        for _ in range(2):
            with pytest.raises(openai.InternalServerError) as ei:
                chat(c, "record one")
            assert ei.value.status_code == 503
        assert chat(c, "record one").choices[0].message.content == "reply 0 to: record one"
        with pytest.raises(openai.InternalServerError):
            chat(c, "record two")
    st = srv.stats()
    key = prompt_key({"messages": [{"role": "user", "content": "record one"}]})
    assert st["attempts"][key] == 3
    assert st["attempts_histogram"] == {"1": 1, "3": 1}
    assert st["faults"] == {"fail_first": 3}
    assert st["by_status"] == {"200": 1, "503": 3}
    assert st["by_endpoint"] == {"/v1/chat/completions": 4}
    assert srv.attempts_for("record one") == 3 and srv.attempts_for("record") == 4
    srv.reset(fail_first=1, fail_status=429, retry_after=0.25)
    with oa(srv) as c, pytest.raises(openai.RateLimitError) as ri:
        chat(c, "record one")
    assert ri.value.response.headers["retry-after-ms"] == "250"


def test_fail_keys_containing(srv: FakeServer) -> None:
    srv.configure(fail_keys_containing={"POISON": 400, "FLAKY": 500})
    with oa(srv) as c:
        with pytest.raises(openai.BadRequestError):
            chat(c, "this record is POISON")
        with pytest.raises(openai.InternalServerError):
            chat(c, "this record is FLAKY")
        assert chat(c, "a healthy record").choices
    with an(srv) as a, pytest.raises(anthropic.BadRequestError):
        msg(a, "POISON again")


def test_hang_times_out_without_blocking_others(srv: FakeServer) -> None:
    srv.configure(p_hang=1.0, hang_s=30, fault_match="SLOW", latency_ms=50)

    async def run() -> tuple[list[Any], float]:
        async with openai.AsyncOpenAI(base_url=srv.openai_base_url, api_key=KEY, max_retries=0) as c:

            async def one(text: str, timeout: float) -> Any:
                try:
                    return await c.chat.completions.create(
                        model="m", messages=[{"role": "user", "content": text}], timeout=timeout
                    )
                except openai.APIError as exc:
                    return exc

            t0 = time.monotonic()
            results = await asyncio.gather(one("SLOW one", 0.5), *(one(f"fast {i}", 5) for i in range(20)))
            return list(results), time.monotonic() - t0

    results, elapsed = asyncio.run(run())
    assert isinstance(results[0], openai.APITimeoutError)
    assert all(not isinstance(r, Exception) for r in results[1:])
    assert elapsed < 3
    st = srv.stats()
    assert st["faults"] == {"p_hang": 1} and st["max_in_flight"] >= 10
    deadline = time.monotonic() + 5  # the client hung up: the server drops the hung handler
    while srv.stats()["in_flight"] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert srv.stats()["in_flight"] == 0


@pytest.mark.parametrize("fault", ["p_reset", "p_truncate"])
def test_reset_and_truncate_are_connection_errors(srv: FakeServer, fault: str) -> None:
    srv.configure(**{fault: 1.0})
    with oa(srv) as c, pytest.raises(openai.APIConnectionError) as ei:
        chat(c, "x")
    assert not isinstance(ei.value, openai.APITimeoutError)
    with an(srv) as a, pytest.raises(anthropic.APIConnectionError) as ai:
        msg(a, "x")
    assert not isinstance(ai.value, anthropic.APITimeoutError)
    srv.configure(**{fault: 0.0})
    with oa(srv) as c:  # the server is fine afterwards
        assert chat(c, "x").choices


def test_empty_choices_and_garbage_answer(srv: FakeServer) -> None:
    srv.configure(p_empty_choices=1.0)
    with oa(srv) as c:
        assert chat(c, "x").choices == []
    with an(srv) as a:
        assert msg(a, "x").content == []
    srv.reset(p_garbage_answer=1.0, answer_logprobs={" A": -0.1, " B": -2.3})
    with oa(srv) as c:
        r = chat(c, "x", logprobs=True, top_logprobs=5, max_tokens=1)
        first = r.choices[0].logprobs.content[0]
        assert r.choices[0].message.content == "C" and first.token == "C"
        assert not {t.token.strip() for t in first.top_logprobs} & {"A", "B"}
        assert chat(c, "y").choices[0].message.content == "C"


def test_rpm_token_bucket(srv: FakeServer) -> None:
    srv.configure(rpm=120)  # 2 per second, burst of 2
    with oa(srv) as c:
        chat(c, "a")
        chat(c, "b")
        with pytest.raises(openai.RateLimitError) as ei:
            chat(c, "c")
        wait_ms = int(ei.value.response.headers["retry-after-ms"])
        assert 0 < wait_ms <= 500
        assert ei.value.response.headers["retry-after"] == "1"
        time.sleep(wait_ms / 1000 + 0.02)
        assert chat(c, "c").choices
    assert srv.stats()["faults"] == {"rpm": 1}


def test_require_key_and_no_key_stored(srv: FakeServer) -> None:
    srv.configure(require_key=KEY)
    with openai.OpenAI(base_url=srv.openai_base_url, api_key="wrong", max_retries=0) as bad:
        with pytest.raises(openai.AuthenticationError):
            chat(bad, "x")
        with pytest.raises(openai.AuthenticationError):
            bad.models.list()
    with an(srv, api_key="wrong") as bad_a, pytest.raises(anthropic.AuthenticationError):
        msg(bad_a, "x")
    with oa(srv) as c:
        assert chat(c, "x").choices
    with an(srv) as a:  # x-api-key
        assert msg(a, "x").content
    with an(srv, api_key=None, auth_token=KEY) as a:  # Authorization: Bearer
        assert msg(a, "x").content
    st = srv.stats()
    assert st["faults"] == {"require_key": 3}
    assert KEY not in json.dumps(st) and "wrong" not in json.dumps(st)
    assert KEY not in json.dumps(http(srv, "GET", "/_stats")[1])


def test_faults_restricted_to_an_endpoint(srv: FakeServer) -> None:
    srv.configure(p500=1.0, fault_endpoints=["/v1/messages"])
    with oa(srv) as c:
        assert chat(c, "x").choices
        assert c.completions.create(model="m", prompt="x").choices
    with an(srv) as a, pytest.raises(anthropic.InternalServerError):
        msg(a, "x")
    srv.configure(fault_endpoints=["completions"])
    with oa(srv) as c, pytest.raises(openai.InternalServerError):
        c.completions.create(model="m", prompt="x")


def test_random_faults_are_deterministic_per_prompt_and_attempt(srv: FakeServer) -> None:
    def outcomes() -> list[str]:
        out = []
        with oa(srv) as c:
            for i in range(30):
                try:
                    chat(c, f"prompt {i % 10}")
                    out.append("ok")
                except openai.APIStatusError as exc:
                    out.append(str(exc.status_code))
        return out

    srv.configure(p500=0.3, p429=0.2, retry_after=0, seed=7)
    first = outcomes()
    srv.reset(p500=0.3, p429=0.2, retry_after=0, seed=7)
    assert outcomes() == first
    assert {"ok", "500", "429"} <= set(first)
    srv.reset(p500=0.3, p429=0.2, retry_after=0, seed=8)
    assert outcomes() != first


def test_latency_applies_and_requests_overlap(srv: FakeServer) -> None:
    srv.configure(latency_ms="150-200")

    async def run() -> float:
        async with openai.AsyncOpenAI(base_url=srv.openai_base_url, api_key=KEY, max_retries=0) as c:
            t0 = time.monotonic()
            await asyncio.gather(
                *(
                    c.chat.completions.create(model="m", messages=[{"role": "user", "content": f"q{i}"}])
                    for i in range(32)
                )
            )
            return time.monotonic() - t0

    elapsed = asyncio.run(run())
    assert 0.15 <= elapsed < 2.5  # 32 x 150-200 ms, overlapped
    assert srv.stats()["max_in_flight"] >= 8


# --- control ----------------------------------------------------------------------------------------------


def test_control_endpoints_over_http(srv: FakeServer) -> None:
    status, cfg = http(srv, "POST", "/_config", {"reply_text": "via http", "record_bodies": True})
    assert status == 200 and cfg["reply_text"] == "via http"
    with oa(srv) as c:
        assert chat(c, "x", temperature=0.5).choices[0].message.content == "via http"
    status, st = http(srv, "GET", "/_stats")
    assert st["total"] == 1 and st["by_model"] == {"test-model": 1}
    assert st["requests"][0]["body"]["temperature"] == 0.5
    status, brief = http(srv, "GET", "/_stats?brief=1")
    assert "attempts" not in brief and brief["total"] == 1
    status, err = http(srv, "POST", "/_config", {"p500": 2})
    assert status == 400 and "p500" in err["error"]
    status, err = http(srv, "POST", "/_config", {"no_such_field": 1})
    assert status == 400 and "no_such_field" in err["error"]
    status, out = http(srv, "POST", "/_reset", {"p503": 1.0})
    assert status == 200 and out["config"]["p503"] == 1.0 and out["config"]["reply_text"] is None
    assert http(srv, "GET", "/_stats")[1]["total"] == 0
    with oa(srv) as c, pytest.raises(openai.InternalServerError):
        chat(c, "x")
    http(srv, "POST", "/_reset")
    assert http(srv, "GET", "/_config")[1]["p503"] == 0.0


def test_reset_returns_to_the_constructor_config() -> None:
    with FakeServer(reply_text="base") as own:
        own.configure(reply_text="changed", p500=0.5)
        own.reset()
        assert own.config.reply_text == "base" and own.config.p500 == 0.0
        own.reset(p503=0.1)
        assert own.config.reply_text == "base" and own.config.p503 == 0.1
        assert own.openai_base_url == own.url + "/v1" and own.anthropic_base_url == own.url
    with pytest.raises(RuntimeError):
        _ = own.url


def test_config_validation() -> None:
    assert FakeConfig.build({"latency_ms": "100-500"}).latency_ms == "100-500"
    for bad in (
        {"latency_ms": "500-100"},
        {"latency_ms": "abc"},
        {"p429": 0.7, "p500": 0.6},
        {"p_hang": -0.1},
        {"fail_status": 200},
        {"fault_endpoints": ["/v1/nope"]},
        {"reply_script": [["only one"]]},
        {"answer_logprobs": {"A": 0.5}},
        {"bogus": 1},
    ):
        with pytest.raises(ValueError):
            FakeConfig.build(bad)
    rules = FakeConfig.build({"reply_script": {"Critique": "X", "Revision": "Y"}}).reply_script
    assert [r["match"] for r in rules] == ["Critique", "Revision"]
    with FakeServer() as own, pytest.raises(ValueError):
        own.configure(p500=3)


def test_command_line_server() -> None:
    cmd = [
        sys.executable,
        "-m",
        "caitool.testing.fake_server",
        "--port",
        "0",
        "--latency-ms",
        "10-20",
        "--reply-text",
        "from the cli",
        "--config",
        json.dumps({"models": ["cli-model"], "fail_first": 1}),
    ]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO) as proc:
        try:
            assert proc.stdout is not None and proc.stderr is not None
            line = proc.stdout.readline()
            assert line.startswith("listening on http://127.0.0.1:"), line
            url = line.split()[-1]
            with openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=1) as c:
                assert chat(c, "x").choices[0].message.content == "from the cli"  # one 503, one retry
                assert [m.id for m in c.models.list()] == ["cli-model"]
            with urllib.request.urlopen(url + "/_stats", timeout=5) as resp:
                assert json.loads(resp.read())["faults"] == {"fail_first": 1}
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    assert proc.returncode == 0
    bad = subprocess.run(
        [sys.executable, "-m", "caitool.testing.fake_server", "--p500", "2"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=30,
    )
    assert bad.returncode == 2 and "p500" in bad.stderr


@pytest.mark.parametrize(
    ("value", "problem"),
    [("nope", "unknown mode"), ("drip", "needs an argument"), ("huge:big", "must be a number")],
)
def test_misbehave_is_validated(value: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        FakeConfig.build({"misbehave": value})


def test_misbehaviour_by_model_name_and_canned_body(srv: FakeServer) -> None:
    def post(model: str) -> tuple[int, dict[str, str], bytes]:
        body = json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]}).encode()
        req = urllib.request.Request(
            srv.openai_base_url + "/chat/completions", data=body, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    status, headers, _ = post("misbehave.ra:86400")
    assert status == 429 and headers["retry-after"] == "86400" and "retry-after-ms" not in headers
    status, _, data = post("misbehave.lp_all:nan_str")
    assert status == 200 and json.loads(data)["choices"][0]["message"]["content"]  # no log-probs asked
    status, _, data = post("misbehave.usage_inf")
    assert b'"prompt_tokens": Infinity' in data
    status, _, data = post("misbehave.deep_json")
    assert status == 200 and data == b"[" * 200_000
    srv.configure(canned_body='{"choices": 5}', canned_status=201, canned_headers={"x-odd": "1"})
    status, headers, data = post("m")
    assert (status, headers["x-odd"], data) == (201, "1", b'{"choices": 5}')
    assert srv.stats()["faults"] == {"ra": 1, "lp_all": 1, "usage_inf": 1, "deep_json": 1, "canned": 1}
