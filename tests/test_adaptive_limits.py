"""Adaptive concurrency (caitool/retry.py `AdaptiveConcurrency`): the requests in flight to one model start
at the run's concurrency, drop after 429s to about what the endpoint answers, and grow back once the 429s
stop. Functional, not timed: the real OpenAI provider over real HTTP against the fake server's rpm limit
(no x-ratelimit headers). The rate it settles at is measured in benchmarks/bench_adaptive.py."""

from __future__ import annotations

import asyncio

from caitool.providers.base import GenerateParams, Message
from caitool.providers.openai import OpenAIClient
from caitool.retry import AdaptiveConcurrency, RateLimiter, ResilientClient, RetryPolicy
from caitool.testing.fake_server import FakeServer


def _client(fake: FakeServer, concurrency: int) -> ResilientClient:
    raw = OpenAIClient(
        "openai/fake-model", "fake-model", base_url=fake.openai_base_url, api_key="k", timeout=30
    )
    return ResilientClient(
        raw, RetryPolicy(retries=40, initial_wait=0.02), RateLimiter(), concurrency=concurrency
    )


async def _ask(client: ResilientClient, n: int, tag: str) -> None:
    params = GenerateParams(max_tokens=4)
    await asyncio.gather(*(client.chat([Message("user", f"{tag} {i}")], params) for i in range(n)))


def test_the_in_flight_cap_drops_after_429s_and_recovers(fake: FakeServer) -> None:
    fake.configure(rpm=3000, latency_ms=20)  # 50 answers/s, about 1 in flight; the run asks for 64

    async def main() -> tuple[float, float, float, int]:
        client = _client(fake, 64)
        try:
            await _ask(client, 120, "limited")
            dropped, lowest = client.adaptive.limit, client.adaptive.lowest
            fake.configure(rpm=0, latency_ms=1)  # the limit is lifted
            await _ask(client, 1500, "free")
            return dropped, lowest, client.adaptive.limit, client.stats.rate_limited
        finally:
            await client.aclose()

    dropped, lowest, recovered, limited = asyncio.run(main())
    assert limited > 0
    assert lowest <= 8 < 64  # cut to about what the endpoint answers
    assert dropped < 64
    assert recovered > 4 * dropped and recovered >= 16  # grows back without 429s (by 1/4 per round trip)
    assert fake.stats()["by_status"].get("200") == 1620  # every request answered once


def test_the_cap_is_never_exceeded_and_waiters_run_in_order() -> None:
    async def main() -> list[int]:
        limit = AdaptiveConcurrency(3)
        seen: list[int] = []

        async def one(i: int) -> None:
            await limit.acquire()
            seen.append(limit.in_flight)
            await asyncio.sleep(0.001)
            limit.release()

        await asyncio.gather(*(one(i) for i in range(30)))
        assert limit.in_flight == 0
        return seen

    assert max(asyncio.run(main())) == 3


def test_a_cancelled_waiter_gives_back_its_slot() -> None:
    async def main() -> int:
        limit = AdaptiveConcurrency(1)
        await limit.acquire()
        waiter = asyncio.ensure_future(limit.acquire())
        await asyncio.sleep(0)
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        limit.release()
        return limit.in_flight

    assert asyncio.run(main()) == 0


def test_an_advertised_limit_seeds_the_request_budget(fake: FakeServer) -> None:
    fake.configure(rpm=3000, latency_ms=5, advertise_rpm=True)  # 429s say x-ratelimit-limit-requests: 3000

    async def main() -> tuple[float | None, float | None]:
        client = _client(fake, 16)
        try:
            await _ask(client, 80, "seeded")
            return client.limiter.target_rpm, client.limiter.rpm
        finally:
            await client.aclose()

    target, rpm = asyncio.run(main())
    assert target == 3000  # adopted: no --rpm was given
    assert rpm is not None and rpm <= 3000
    capped = RateLimiter(rpm=600)
    capped.seed(3000, 90_000)
    assert capped.target_rpm == 600 and capped.tpm == 90_000  # --rpm stays the cap; a tpm is adopted
