"""The OpenAI-compatible provider on both of its request paths: direct aiohttp (the default when aiohttp is
installed) and the openai SDK (`CAITOOL_HTTP=sdk`, or no aiohttp). Both must send the same request and turn
every answer and failure into the same `Completion` or `ProviderError`, since the retry layer and the fault
suite rely on that classification. Real HTTP against the local fake server.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest

from caitool.errors import ProviderError
from caitool.providers.base import GenerateParams, Message
from caitool.providers.openai import OpenAIClient, use_sdk_transport
from caitool.testing.fake_server import FakeServer

TRANSPORTS = ["direct", "sdk"]
HELLO = [Message("user", "hello there?")]


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("CAITOOL_HTTP", "sdk" if request.param == "sdk" else "aiohttp")
    assert use_sdk_transport() is (request.param == "sdk")
    return str(request.param)


def client(fake: FakeServer, *, key: str = "k", timeout: float = 5.0, url: str | None = None) -> OpenAIClient:
    return OpenAIClient("openai/m", "m", base_url=url or fake.openai_base_url, api_key=key, timeout=timeout)


async def chat_once(c: OpenAIClient, params: GenerateParams | None = None) -> Any:
    try:
        return await c.chat(HELLO, params or GenerateParams(max_tokens=16))
    finally:
        await c.aclose()


def failure(c: OpenAIClient) -> ProviderError:
    with pytest.raises(ProviderError) as ei:
        asyncio.run(chat_once(c))
    return ei.value


def test_chat_and_completion_with_logprobs(fake: FakeServer, transport: str) -> None:
    fake.configure(answer_logprobs={" A": math.log(0.7), " B": math.log(0.3)})
    params = GenerateParams(max_tokens=1, logprobs=True, top_logprobs=5, temperature=0.0)

    async def both() -> tuple[Any, Any]:
        c = client(fake)
        try:
            return await c.chat(HELLO, params), await c.complete("Q? The answer is: (", params)
        finally:
            await c.aclose()

    chat, text = asyncio.run(both())
    for completion in (chat, text):
        first = completion.choices[0].logprobs[0]
        tops = {t.token: t.logprob for t in first.top}
        assert tops[" A"] == pytest.approx(math.log(0.7)) and tops[" B"] == pytest.approx(math.log(0.3))
        assert completion.usage.calls == 1 and completion.usage.input_tokens > 0
    assert fake.stats()["by_endpoint"] == {"/v1/chat/completions": 1, "/v1/completions": 1}


def test_the_api_key_is_sent_as_a_bearer_token(fake: FakeServer, transport: str) -> None:
    fake.configure(require_key="sk-right")
    assert asyncio.run(chat_once(client(fake, key="sk-right"))).text
    err = failure(client(fake, key="sk-wrong"))
    assert err.status == 401 and not err.retryable and "API key" in (err.hint or "")


@pytest.mark.parametrize(
    ("config", "status", "retryable", "rate_limited"),
    [
        ({"fail_first": 1, "fail_status": 429, "retry_after": 2}, 429, True, True),
        ({"p429_quota": 1.0}, 429, False, False),  # out of credit: retrying only pays for nothing
        ({"fail_first": 1, "fail_status": 500}, 500, True, False),
        ({"fail_first": 1, "fail_status": 529}, 529, True, False),
        ({"fail_first": 1, "fail_status": 400}, 400, False, False),
    ],
    ids=["429", "429-quota", "500", "529", "400"],
)
def test_status_errors_are_classified_the_same(
    fake: FakeServer, transport: str, config: dict[str, Any], status: int, retryable: bool, rate_limited: bool
) -> None:
    fake.configure(**config)
    err = failure(client(fake))
    assert (err.status, err.retryable, err.rate_limited) == (status, retryable, rate_limited)
    assert str(err).startswith(f"openai: HTTP {status}: ")
    if status == 429 and retryable:
        assert err.retry_after == pytest.approx(2.0)
    assert fake.stats()["total"] == 1  # the transport itself never retries


@pytest.mark.parametrize(
    "config",
    [{"p_hang": 1.0, "hang_s": 5}, {"p_reset": 1.0}, {"p_truncate": 1.0}, {"p_empty_choices": 1.0}],
    ids=["hang", "reset", "truncated", "empty-choices"],
)
def test_broken_answers_are_retryable(fake: FakeServer, transport: str, config: dict[str, Any]) -> None:
    fake.configure(**config)
    err = failure(client(fake, timeout=0.5))
    assert err.retryable and err.status is None
    assert fake.stats()["total"] == 1


def test_nothing_listening_is_retryable(fake: FakeServer, transport: str) -> None:
    err = failure(client(fake, url="http://127.0.0.1:9/v1"))
    assert err.retryable and "openai: " in str(err)


def test_direct_client_serves_successive_event_loops(
    fake: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A program may run more than one asyncio.run, closing the client at the end of each: the direct path
    # opens a new pool on the next loop (the SDK's client cannot be used again once closed).
    monkeypatch.setenv("CAITOOL_HTTP", "aiohttp")
    c = client(fake)

    async def once() -> str:
        try:
            return str((await c.chat(HELLO, GenerateParams(max_tokens=4))).text)
        finally:
            await c.aclose()

    assert asyncio.run(once()) and asyncio.run(once())
    assert fake.stats()["total"] == 2
