"""The retry layer's waits (docs/providers.md, caitool/retry.py): backoff exponential from the first wait up
to 60 s, with jitter, never sooner than the server's Retry-After, which may come as `retry-after-ms`, as plain
seconds (`Retry-After: 2`, what Anthropic and most servers send) or as an HTTP date.

The fake server always sends `retry-after-ms` too, so the plain header is checked over real HTTP against a
tiny aiohttp app in this file that sends only `Retry-After`."""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from typing import Any

import pytest
from aiohttp import web

from caitool.errors import ProviderError
from caitool.providers import get_client
from caitool.providers._http import parse_retry_after
from caitool.providers.base import GenerateParams, Message
from caitool.retry import RateLimiter, ResilientClient, RetryPolicy
from caitool.testing.fake_server import FakeServer


def resilient(base_url: str = "http://127.0.0.1:9/v1", **policy: Any) -> ResilientClient:
    # A real OpenAI-compatible client; the backoff tests never send a request with it.
    client = get_client("openai/m", base_url=base_url, api_key="k", timeout=10)
    return ResilientClient(client, RetryPolicy(**policy), RateLimiter())


def test_backoff_doubles_up_to_the_cap_with_jitter_between_half_and_full() -> None:
    rc = resilient(initial_wait=1.0, max_wait=60.0)
    random.seed(1234)
    for failed, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (5, 16.0), (6, 32.0), (7, 60.0), (12, 60.0)]:
        waits = [rc._backoff(failed, None) for _ in range(200)]
        assert all(ceiling / 2 <= w <= ceiling for w in waits), (failed, min(waits), max(waits))
        # jitter spreads the waits over the whole [ceiling/2, ceiling] range, so clients that failed together
        # do not come back together
        assert min(waits) < 0.55 * ceiling and max(waits) > 0.95 * ceiling
        assert len(set(waits)) == len(waits)


def test_backoff_is_never_sooner_than_retry_after() -> None:
    rc = resilient(initial_wait=0.05)
    exc = ProviderError("429", retryable=True, status=429, retry_after=7.5, rate_limited=True)
    assert all(rc._backoff(1, exc) == 7.5 for _ in range(20))
    # a Retry-After shorter than the backoff does not shorten it
    short = ProviderError("503", retryable=True, status=503, retry_after=0.001)
    assert all(0.5 <= resilient(initial_wait=1.0)._backoff(1, short) <= 1.0 for _ in range(20))


def test_retry_after_header_shapes() -> None:
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    assert parse_retry_after({"retry-after": "1.5"}) == 1.5
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25  # the finer one wins
    date = email.utils.formatdate(time.time() + 30, usegmt=True)
    wait = parse_retry_after({"retry-after": date})
    assert wait is not None and 28.0 <= wait <= 31.0
    past = email.utils.formatdate(time.time() - 30, usegmt=True)
    assert parse_retry_after({"retry-after": past}) == 0.0
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None


def chat_body(text: str) -> dict[str, Any]:
    return {
        "id": "c1",
        "object": "chat.completion",
        "created": 0,
        "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }


def test_plain_retry_after_seconds_is_honoured_over_http() -> None:
    """A server that answers 429 with only `Retry-After: 2` (no retry-after-ms), then 200."""
    arrivals: list[float] = []

    async def handler(request: web.Request) -> web.Response:
        arrivals.append(time.monotonic())
        if len(arrivals) == 1:
            return web.json_response(
                {"error": {"message": "slow down"}}, status=429, headers={"Retry-After": "2"}
            )
        return web.json_response(chat_body("fine"))

    async def main() -> str:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        # First backoff 10 ms, and a 429 without a readable Retry-After pauses 1 s: only the header makes 2 s.
        rc = resilient(f"http://127.0.0.1:{port}/v1", initial_wait=0.01, retries=3)
        try:
            out = await rc.chat([Message("user", "hi")], GenerateParams(max_tokens=4))
        finally:
            await rc.aclose()
            await runner.cleanup()
        assert rc.stats.rate_limited == 1 and rc.stats.attempts == 2
        return out.choices[0].text

    assert asyncio.run(main()) == "fine"
    assert len(arrivals) == 2
    assert arrivals[1] - arrivals[0] >= 1.95


@pytest.mark.parametrize("status", [400, 404, 422])
def test_a_non_retryable_error_is_sent_once(fake: FakeServer, status: int) -> None:
    """docs/providers.md: 400, 404, 422 fail at once. Each retry is a request that may be billed."""
    fake.configure(fail_first=5, fail_status=status)

    async def main() -> ProviderError:
        rc = resilient(fake.openai_base_url, initial_wait=0.01, retries=3)
        try:
            await rc.chat([Message("user", "hi")], GenerateParams(max_tokens=4))
        except ProviderError as exc:
            return exc
        finally:
            await rc.aclose()
        raise AssertionError("the error was not raised")

    exc = asyncio.run(main())
    assert exc.status == status and not exc.retryable
    assert fake.stats()["total"] == 1
