"""The fake server's batch APIs (OpenAI Files + Batches, Anthropic Message Batches), driven by the real SDKs
over real HTTP: lifecycle, bodies equal to the live endpoint's, per-request errors, expiry, cancellation,
listing with metadata, per-key ownership and the server's batch counters."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest

from caitool.testing.fake_server import FakeServer

KEY = "sk-batch-test"
DELAY = 0.3


@pytest.fixture(scope="module")
def server() -> Iterator[FakeServer]:
    with FakeServer() as srv:
        yield srv


@pytest.fixture
def srv(server: FakeServer) -> FakeServer:
    server.reset(batch_delay_s=DELAY)
    return server


def oa(srv: FakeServer, key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=srv.openai_base_url, api_key=key, max_retries=0)


def an(srv: FakeServer, key: str = KEY) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=srv.anthropic_base_url, api_key=key, max_retries=0)


def chat_body(text: str, **kw: Any) -> dict[str, Any]:
    return {"model": "test-model", "messages": [{"role": "user", "content": text}], **kw}


def submit_openai(client: openai.OpenAI, bodies: dict[str, dict[str, Any]], **kw: Any) -> Any:
    lines = [
        json.dumps({"custom_id": cid, "method": "POST", "url": "/v1/chat/completions", "body": body})
        for cid, body in bodies.items()
    ]
    f = client.files.create(file=("in.jsonl", io.BytesIO("\n".join(lines).encode())), purpose="batch")
    return client.batches.create(
        input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h", **kw
    )


def wait_openai(client: openai.OpenAI, batch_id: str) -> Any:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        b = client.batches.retrieve(batch_id)
        if b.status not in ("validating", "in_progress", "finalizing", "cancelling"):
            return b
        time.sleep(0.05)
    raise AssertionError(f"batch {batch_id} did not end")


def wait_anthropic(client: anthropic.Anthropic, batch_id: str) -> Any:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        b = client.messages.batches.retrieve(batch_id)
        if b.processing_status == "ended":
            return b
        time.sleep(0.05)
    raise AssertionError(f"message batch {batch_id} did not end")


def lines_of(client: openai.OpenAI, file_id: str | None) -> dict[str, dict[str, Any]]:
    if file_id is None:
        return {}
    rows = [json.loads(x) for x in client.files.content(file_id).text.splitlines() if x.strip()]
    return {r["custom_id"]: r for r in rows}


def comparable(body: dict[str, Any]) -> dict[str, Any]:
    """A reply body without what differs between any two calls (its id and creation time)."""
    return {k: v for k, v in body.items() if k not in ("id", "created")}


def test_openai_lifecycle_and_bodies_equal_live(srv: FakeServer) -> None:
    srv.configure(answer_logprobs={"A": -0.1, "B": -2.4}, answer_style="paren")
    client = oa(srv)
    bodies = {
        "r1": chat_body("first record"),
        "r2": chat_body("label this pair", logprobs=True, top_logprobs=5, max_tokens=3),
    }
    t0 = time.monotonic()
    batch = submit_openai(client, bodies, metadata={"caitool_run": "run-1", "caitool_shard": "0"})
    assert batch.status == "in_progress"
    assert batch.request_counts is not None and batch.request_counts.total == 2
    assert client.batches.retrieve(batch.id).output_file_id is None
    done = wait_openai(client, batch.id)
    assert time.monotonic() - t0 >= DELAY
    assert done.status == "completed" and done.error_file_id is None
    assert done.request_counts is not None and done.request_counts.completed == 2
    assert done.metadata == {"caitool_run": "run-1", "caitool_shard": "0"}
    out = lines_of(client, done.output_file_id)
    assert set(out) == {"r1", "r2"}
    for cid, body in bodies.items():
        assert out[cid]["response"]["status_code"] == 200 and out[cid]["error"] is None
        live = client.chat.completions.create(**body).model_dump(exclude_none=False)
        batched = openai.types.chat.ChatCompletion.model_validate(out[cid]["response"]["body"])
        assert comparable(batched.model_dump(exclude_none=False)) == comparable(live)
    top = out["r2"]["response"]["body"]["choices"][0]["logprobs"]["content"]
    assert [t["token"] for t in top][:2] == ["(", "A"]  # log-probs and answer styles apply in batches
    stats = srv.stats()["batches"]
    assert (stats["openai"], stats["requests"], stats["answered"]) == (1, 2, 2)


def test_openai_errors_expiry_and_faults_land_in_the_error_file(srv: FakeServer) -> None:
    srv.configure(batch_fail={"bad": 400}, batch_expire=["late"], fail_keys_containing={"poison": 500})
    client = oa(srv)
    bodies = {cid: chat_body(f"record {cid}") for cid in ("ok1", "bad", "late", "ok2")}
    bodies["toxic"] = chat_body("poison pill")
    done = wait_openai(client, submit_openai(client, bodies).id)
    assert done.status == "expired"  # a batch with expired requests ends expired, with partial output
    out, err = lines_of(client, done.output_file_id), lines_of(client, done.error_file_id)
    assert set(out) == {"ok1", "ok2"} and set(err) == {"bad", "late", "toxic"}
    assert err["bad"]["response"]["status_code"] == 400
    assert err["toxic"]["response"]["status_code"] == 500
    assert err["toxic"]["response"]["body"]["error"]["type"] == "server_error"
    assert err["late"]["response"] is None and err["late"]["error"]["code"] == "batch_expired"
    assert done.request_counts is not None
    assert (done.request_counts.completed, done.request_counts.failed) == (2, 3)
    stats = srv.stats()["batches"]
    assert (stats["errored"], stats["expired"], stats["requests"]) == (2, 1, 5)


def test_openai_expiry_rate_is_seeded(srv: FakeServer) -> None:
    srv.configure(p_batch_expire=0.5, seed=7)
    client = oa(srv)
    bodies = {f"id{i}": chat_body(f"text {i}") for i in range(40)}
    first = lines_of(client, wait_openai(client, submit_openai(client, bodies).id).error_file_id)
    second = lines_of(client, wait_openai(client, submit_openai(client, bodies).id).error_file_id)
    assert 5 < len(first) < 35 and set(first) == set(second)


def test_openai_cancel_and_list_with_metadata(srv: FakeServer) -> None:
    srv.configure(batch_delay_s=30)
    client = oa(srv)
    ids = [submit_openai(client, {"a": chat_body("x")}, metadata={"n": str(i)}).id for i in range(3)]
    cancelled = client.batches.cancel(ids[1])
    assert cancelled.status == "cancelling"
    after = client.batches.retrieve(ids[1])
    assert after.status == "cancelled" and after.cancelled_at is not None
    assert lines_of(client, after.error_file_id)["a"]["error"]["code"] == "batch_cancelled"
    page = client.batches.list(limit=2)
    assert [b.id for b in page.data] == [ids[2], ids[1]] and page.has_more
    assert [b.metadata for b in page.data] == [{"n": "2"}, {"n": "1"}]
    assert [b.id for b in client.batches.list(limit=2)] == ids[::-1]  # auto-paging with `after`
    assert [b.id for b in client.batches.list(after=ids[1]).data] == [ids[0]]
    # Another API key (another account) sees none of them.
    other = oa(srv, key="sk-someone-else")
    assert other.batches.list().data == []
    with pytest.raises(openai.NotFoundError):
        other.batches.retrieve(ids[0])
    assert srv.stats()["batches"]["cancelled"] == 1


def test_openai_bad_input_file_fails_the_batch(srv: FakeServer) -> None:
    client = oa(srv)
    text = '{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {}}\n' * 2
    f = client.files.create(file=("in.jsonl", io.BytesIO(text.encode())), purpose="batch")
    b = client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h")
    assert b.status == "failed"
    assert b.errors is not None and b.errors.data is not None
    assert [(e.code, e.line) for e in b.errors.data] == [("duplicate_custom_id", 2)]
    assert client.files.retrieve(f.id).bytes == len(text.encode())


def test_anthropic_lifecycle_results_and_bodies_equal_live(srv: FakeServer) -> None:
    srv.configure(batch_fail={"boom": 529}, batch_expire=["slow"])
    client = an(srv)
    params = {
        cid: {
            "model": "claude-test",
            "max_tokens": 64,
            "messages": [{"role": "user", "content": f"hi {cid}"}],
        }
        for cid in ("ok", "boom", "slow")
    }
    t0 = time.monotonic()
    batch = client.messages.batches.create(
        requests=[{"custom_id": cid, "params": p} for cid, p in params.items()]  # type: ignore[typeddict-item]
    )
    assert batch.processing_status == "in_progress" and batch.request_counts.processing == 3
    done = wait_anthropic(client, batch.id)
    assert time.monotonic() - t0 >= DELAY
    counts = done.request_counts
    assert (counts.succeeded, counts.errored, counts.expired, counts.processing) == (1, 1, 1, 0)
    results = {r.custom_id: r.result for r in client.messages.batches.results(batch.id)}
    assert {cid: r.type for cid, r in results.items()} == {
        "ok": "succeeded",
        "boom": "errored",
        "slow": "expired",
    }
    ok = results["ok"]
    assert ok.type == "succeeded"
    live = client.messages.create(**params["ok"])  # type: ignore[call-overload]
    assert ok.message.model_dump(exclude={"id"}) == live.model_dump(exclude={"id"})
    boom = results["boom"]
    assert boom.type == "errored" and boom.error.error.type == "overloaded_error"
    assert srv.stats()["batches"]["anthropic"] == 1


def test_anthropic_cancel_list_and_results_before_end(srv: FakeServer) -> None:
    srv.configure(batch_delay_s=30)
    client = an(srv)
    req = [
        {
            "custom_id": "only",
            "params": {"model": "m", "max_tokens": 8, "messages": [{"role": "user", "content": "q"}]},
        }
    ]
    ids = [client.messages.batches.create(requests=req).id for _ in range(3)]  # type: ignore[arg-type]
    with pytest.raises(anthropic.AnthropicError):
        list(client.messages.batches.results(ids[0]))  # no results_url before the batch ends
    assert client.messages.batches.cancel(ids[0]).processing_status == "canceling"
    ended = client.messages.batches.retrieve(ids[0])
    assert ended.processing_status == "ended" and ended.request_counts.canceled == 1
    assert [r.result.type for r in client.messages.batches.results(ids[0])] == ["canceled"]
    assert [b.id for b in client.messages.batches.list(limit=2)] == ids[::-1]  # newest first, paged
    assert an(srv, key="sk-other").messages.batches.list().data == []
    with pytest.raises(anthropic.BadRequestError):
        client.messages.batches.create(requests=req * 2)  # type: ignore[arg-type]
