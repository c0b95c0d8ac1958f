"""The one retry layer, and the client-side rate budget every worker shares.

SDK clients are built with `max_retries=0`; every retry happens here, so the attempt count a user sees is the
number of HTTP requests that were sent (and possibly billed). A retryable `ProviderError` (429, 5xx, timeouts,
resets, truncated bodies) is retried with exponential backoff and full jitter, never sooner than the server's
`Retry-After`; anything else (auth, 400, context length, quota) fails the record at once.

A 429 also pauses *all* workers until its Retry-After has passed and, when `--rpm` is set, lowers the shared
request rate (multiplicative decrease, additive recovery), so a rate limit slows the run down instead of being
hammered by every in-flight request. A server that asks for more than `max_retry_after` (300 s, or
$CAITOOL_MAX_RETRY_AFTER_S; `Retry-After: 86400`, `inf`, a date in 2100) is not waited for: that request
fails at once (its record goes to the errors file) and stderr says why, once.

A 401/403 means the key is wrong for every record: the run stops at the first one (`AuthRejected`, exit 1,
"check the API key") instead of sending every remaining record to be rejected.

Every HTTP request is one attempt: against `--rpm/--tpm` and in the counters. A provider without `n`
(`supports_n = False`: Anthropic) gets one request per sample, each budgeted, retried and counted.

`--tier flex` (a provider with `supports_flex`: OpenAI's protocol) sends every attempt with
`service_tier: "flex"`. OpenAI answers a flex request it has no capacity for with a 429 "Resource
Unavailable": that is not a rate limit (no pause, no rpm decrease), just a retry with backoff; after
`--flex-fallback N` of them the rest of the run's attempts go out at standard (said once on stderr). Usage
is counted per tier, so the cost of a run that fell back is priced right.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import logging
import math
import os
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from caitool.console import warn
from caitool.errors import CaitoolError, ProviderError
from caitool.providers.base import (
    CAPABILITY_DEFAULTS,
    Completion,
    GenerateParams,
    Message,
    ModelClient,
    Usage,
)
from caitool.response_cache import ResponseCache

log = logging.getLogger("caitool")
T = TypeVar("T")
Send = Callable[[GenerateParams], Awaitable[Completion]]  # one attempt of a request, with its params


def _initial_wait() -> float:
    """The first backoff in seconds: 1, or $CAITOOL_RETRY_BACKOFF_S (the fault tests use 0.05; a local server
    that recovers in milliseconds may too). Retry-After from the server is honoured whatever this is."""
    try:
        return max(0.0, float(os.environ.get("CAITOOL_RETRY_BACKOFF_S", "1")))
    except ValueError:
        return 1.0


DEFAULT_MAX_RETRY_AFTER_S = 300.0
# A pause this long or longer is announced on stderr: the run looks hung otherwise.
ANNOUNCE_PAUSE_S = 5.0
RPM_CUT_INTERVAL_S = 1.0  # the request budget is cut at most once per this many seconds of 429s


def _max_retry_after() -> float:
    """The longest Retry-After honoured, in seconds: 300, or $CAITOOL_MAX_RETRY_AFTER_S."""
    try:
        value = float(os.environ.get("CAITOOL_MAX_RETRY_AFTER_S", DEFAULT_MAX_RETRY_AFTER_S))
    except ValueError:
        return DEFAULT_MAX_RETRY_AFTER_S
    return value if math.isfinite(value) and value >= 0 else DEFAULT_MAX_RETRY_AFTER_S


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 6
    initial_wait: float = field(default_factory=_initial_wait)
    max_wait: float = 60.0
    max_retry_after: float = field(default_factory=_max_retry_after)


class AuthRejected(CaitoolError):
    """The server rejected the credentials (401/403): fatal for the run, not one record's error."""


class RateLimiter:
    """Shared request and token budget (token buckets refilled continuously) plus a global 429 pause."""

    def __init__(self, rpm: float | None = None, tpm: float | None = None) -> None:
        self.target_rpm = rpm
        self.rpm = rpm
        self.tpm = tpm
        self._req_tokens = 1.0 if rpm else 0.0
        self._tok_tokens = float(tpm) if tpm else 0.0
        self._last = time.monotonic()
        self._paused_until = 0.0
        self._last_cut = -math.inf  # when on_rate_limited last cut the request budget
        self._lock = asyncio.Lock()

    def _refill(self, now: float) -> None:
        elapsed = now - self._last
        self._last = now
        if self.rpm:
            # Burst capacity of one second's worth of requests keeps the start smooth.
            self._req_tokens = min(max(1.0, self.rpm / 60), self._req_tokens + elapsed * self.rpm / 60)
        if self.tpm:
            self._tok_tokens = min(float(self.tpm), self._tok_tokens + elapsed * self.tpm / 60)

    async def acquire(self, est_tokens: int = 0) -> None:
        if not self.rpm and not self.tpm and time.monotonic() >= self._paused_until:
            return  # no budget and no 429 pause: nothing to wait for (the common case, taken lock-free)
        async with self._lock:
            while True:
                now = time.monotonic()
                if now < self._paused_until:
                    await asyncio.sleep(self._paused_until - now)
                    continue
                self._refill(now)
                wait = 0.0
                if self.rpm and self._req_tokens < 1.0:
                    wait = max(wait, (1.0 - self._req_tokens) * 60 / self.rpm)
                if self.tpm and est_tokens and self._tok_tokens < min(est_tokens, self.tpm):
                    wait = max(wait, (min(est_tokens, self.tpm) - self._tok_tokens) * 60 / self.tpm)
                if wait <= 0:
                    if self.rpm:
                        self._req_tokens -= 1.0
                    if self.tpm:
                        self._tok_tokens -= est_tokens
                    return
                await asyncio.sleep(wait)

    def record_usage(self, est_tokens: int, actual_tokens: int) -> None:
        if self.tpm:
            self._tok_tokens += est_tokens - actual_tokens

    def on_rate_limited(self, retry_after: float | None) -> None:
        pause = retry_after if retry_after is not None else 1.0
        until = time.monotonic() + pause
        if pause >= ANNOUNCE_PAUSE_S and until > self._paused_until + 1.0:
            warn(f"rate limited: pausing all requests for {pause:.0f} s (the server's Retry-After)")
        self._paused_until = max(self._paused_until, until)
        now = time.monotonic()
        # One cut per second at most: a burst of requests in flight comes back as a burst of 429s, and cutting
        # for each of them (0.7^30 after 30) would leave a few requests a minute, recovered at +1 rpm each.
        if self.rpm and now - self._last_cut >= RPM_CUT_INTERVAL_S:
            self._last_cut = now
            self.rpm = max(1.0, self.rpm * 0.7)
            self._req_tokens = min(self._req_tokens, 0.0)

    def seed(self, rpm: float | None, tpm: float | None) -> None:
        """Budgets from the limits a server advertised: adopted where the user set none, and never above
        what the user set (--rpm/--tpm stay hard caps)."""
        if rpm and (self.target_rpm is None or rpm < self.target_rpm):
            self.target_rpm = rpm
            self.rpm = min(self.rpm or rpm, rpm)
        if tpm and (self.tpm is None or tpm < self.tpm):
            self.tpm = tpm
            self._tok_tokens = min(self._tok_tokens, tpm) if self._tok_tokens else 0.0

    def on_success(self) -> None:
        if self.rpm and self.target_rpm and self.rpm < self.target_rpm:
            self.rpm = min(self.target_rpm, self.rpm + 1.0)


class AdaptiveConcurrency:
    """Requests in flight to one provider+model, adapted to what the endpoint takes (AIMD).

    The cap starts at the run's concurrency (its ceiling). Answers and 429s are counted per round trip
    (the smoothed duration of an answered request); a round trip that saw 429s cuts the cap to the share
    of its attempts that were answered (at least by 10 %, never below 1): a run far over an unknown limit
    lands near it in one round trip instead of halving its way down. Each answer raises the cap by
    INCREASE / cap (a request more every few round trips) back up to the ceiling, so the cap probes the
    limit slowly from below. A slot whose request got a 429 stays taken for one round trip, as if answered,
    so a freed slot is not spent on another 429 at once. A run against an unknown rate limit thus settles
    just under it (benchmarks/bench_adaptive.py); `--rpm/--tpm` stay hard caps."""

    INCREASE = 0.25
    DECREASE = 0.9  # the least a round trip with 429s cuts the cap by

    def __init__(self, ceiling: int) -> None:
        self.ceiling = max(1, ceiling)
        self.limit = float(self.ceiling)
        self.lowest = self.limit  # the smallest cap so far (for tests and the summary)
        self.in_flight = 0
        self._waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self.rtt = 0.0  # EWMA of answered requests' durations, seconds
        self._window_start = time.monotonic()
        self._answered = 0
        self._limited = 0

    async def acquire(self) -> None:
        if self.in_flight < self.limit and not self._waiters:
            self.in_flight += 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        try:
            await fut  # `release` counted this request in flight before waking it
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(fut)
            raise

    def release(self) -> None:
        self.in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.in_flight < self.limit:
            fut = self._waiters.popleft()
            if not fut.done():
                self.in_flight += 1
                fut.set_result(None)

    def _round_trip(self, now: float) -> None:
        if now - self._window_start < max(self.rtt, 0.002):
            return
        if self._limited:
            share = self._answered / (self._answered + self._limited)
            self.limit = max(1.0, min(self.limit * self.DECREASE, self.limit * share))
            self.lowest = min(self.lowest, self.limit)
        self._window_start, self._answered, self._limited = now, 0, 0

    def on_answer(self, seconds: float) -> None:
        self.rtt = seconds if self.rtt == 0.0 else 0.9 * self.rtt + 0.1 * seconds
        self._answered += 1
        self._round_trip(time.monotonic())
        if self.limit < self.ceiling:
            self.limit = min(float(self.ceiling), self.limit + self.INCREASE / self.limit)
            self._wake()

    def on_rate_limited(self) -> None:
        """A 429: counted for the round trip; the caller releases its slot one round trip later."""
        self._limited += 1
        self._round_trip(time.monotonic())

    def release_later(self) -> None:
        asyncio.get_running_loop().call_later(max(self.rtt, 0.001), self.release)


@dataclass
class CallStats:
    requests: int = 0
    attempts: int = 0
    retries: int = 0
    rate_limited: int = 0
    failures: int = 0
    flex_unavailable: int = 0  # flex attempts answered 429 "Resource Unavailable"
    cache_hits: int = 0  # requests answered from --cache (not sent, not paid, not in `requests`)
    usage: Usage = field(default_factory=Usage)
    usage_by_tier: dict[str, Usage] = field(default_factory=dict)  # the same usage, split by cost tier

    def add(self, other: CallStats) -> None:
        self.requests += other.requests
        self.attempts += other.attempts
        self.retries += other.retries
        self.rate_limited += other.rate_limited
        self.failures += other.failures
        self.flex_unavailable += other.flex_unavailable
        self.cache_hits += other.cache_hits
        self.usage.add(other.usage)
        for tier, usage in other.usage_by_tier.items():
            self.usage_by_tier.setdefault(tier, Usage()).add(usage)

    def record(self, usage: Usage, tier: str) -> None:
        self.usage.add(usage)
        self.usage_by_tier.setdefault(tier, Usage()).add(usage)


def flex_unavailable(exc: ProviderError) -> bool:
    """OpenAI's answer to a flex request it has no capacity for: 429 "Resource Unavailable" (code
    `resource_unavailable`), a transient capacity answer rather than a rate limit or a quota."""
    if exc.status != 429:
        return False
    text = str(exc).lower()
    return "resource unavailable" in text or "resource_unavailable" in text


def stats_by_spec(clients: Iterable[ResilientClient]) -> dict[str, CallStats]:
    """The counters per model spec, summed over the clients that share one (a judge that is also a compared
    model, `label-pairs --policy` equal to `--model`): a spec used twice adds up instead of overwriting."""
    out: dict[str, CallStats] = {}
    for c in clients:
        out.setdefault(c.spec, CallStats()).add(c.stats)
    return out


def _estimate_tokens(text_len: int, params: GenerateParams) -> int:
    return text_len // 4 + params.max_tokens * max(1, params.n)


class ResilientClient:
    """Wraps a `ModelClient` with the retry policy, the rate budget and the counters.

    It is a `ModelClient` itself: it forwards the provider's declared capabilities (`supports_logprobs`,
    `supports_completions`, `supports_n`, `default_concurrency`, `render_chat`; see `providers.base`), with
    `CAPABILITY_DEFAULTS` for one the provider does not declare, so callers ask the wrapper and never reach
    through it to the provider or read the spec string."""

    def __init__(
        self,
        client: ModelClient,
        policy: RetryPolicy | None = None,
        limiter: RateLimiter | None = None,
        *,
        tier: str = "standard",
        flex_fallback: int | None = None,
        cache: ResponseCache | None = None,
        concurrency: int | None = None,
    ) -> None:
        self.client = client
        self.cache = cache
        self.spec = client.spec
        self.policy = policy or RetryPolicy()
        self.limiter = limiter or RateLimiter()
        self.stats = CallStats()
        self._told_retry_after = False
        declared = {k: getattr(client, k, default) for k, default in CAPABILITY_DEFAULTS.items()}
        self.supports_logprobs: bool = declared["supports_logprobs"]
        self.supports_completions: bool = declared["supports_completions"]
        self.supports_n: bool = declared["supports_n"]
        self.default_concurrency: int = declared["default_concurrency"]
        self.render_chat: Callable[[list[Message]], str] | None = declared["render_chat"]
        self.supports_flex: bool = declared["supports_flex"]
        self.actor_gpus: int = declared["actor_gpus"]
        # Requests in flight, adapted on 429s; the ceiling is the run's concurrency (records in flight).
        self.adaptive = AdaptiveConcurrency(concurrency or self.default_concurrency)
        # The tier attempts are sent at now: --tier, until a flex fallback switches it to standard.
        self.tier = tier
        self.flex_fallback = flex_fallback
        self.fell_back = False
        # An endpoint fleet's per-endpoint counters (requests, errors, latency) for the summary; else None.
        self.endpoint_stats: Callable[[], dict[str, dict[str, object]]] | None = getattr(
            client, "endpoint_stats", None
        )

    def _backoff(self, failed_attempts: int, exc: BaseException | None) -> float:
        """Seconds to wait after `failed_attempts` failures: exponential with full jitter, never less than
        the server's Retry-After."""
        backoff = min(self.policy.max_wait, self.policy.initial_wait * 2 ** (failed_attempts - 1))
        wait = random.uniform(backoff / 2, backoff)
        if isinstance(exc, ProviderError) and exc.retry_after is not None:
            wait = max(wait, exc.retry_after)
        return wait

    def _wait(self, state: RetryCallState) -> float:
        # tenacity counts the retries only (the first attempt is made before it starts; see `_call`).
        exc = state.outcome.exception() if state.outcome else None
        return self._backoff(state.attempt_number + 1, exc)

    async def _attempt(self, est_tokens: int, fn: Send, params: GenerateParams, *, retry: bool) -> Completion:
        await self.limiter.acquire(est_tokens)
        self.stats.attempts += 1
        if retry:
            self.stats.retries += 1
        tier = self.tier  # read per attempt: a fallback applies to the retries of requests in flight too
        if tier == "flex":
            params = dataclasses.replace(params, service_tier="flex")
        adaptive = self.adaptive
        await adaptive.acquire()
        started = time.monotonic()
        try:
            result = await fn(params)
        except ProviderError as exc:
            if exc.rate_limited and not (tier == "flex" and flex_unavailable(exc)):
                adaptive.on_rate_limited()
                adaptive.release_later()
            else:
                adaptive.release()
            if exc.status in (401, 403):
                raise AuthRejected(str(exc), hint=exc.hint) from None
            cap = self.policy.max_retry_after
            if exc.retry_after is not None and exc.retry_after > cap:
                raise self._over_cap(exc, cap) from None
            if tier == "flex" and flex_unavailable(exc):
                self._on_flex_unavailable()
                exc.retryable = True
                raise
            if exc.rate_limited:
                self.stats.rate_limited += 1
                if exc.limits != (None, None):
                    self.limiter.seed(*exc.limits)
                self.limiter.on_rate_limited(exc.retry_after)
            raise
        except BaseException:
            adaptive.release()
            raise
        adaptive.release()
        adaptive.on_answer(time.monotonic() - started)
        self.limiter.on_success()
        used = result.usage.input_tokens + result.usage.output_tokens
        self.limiter.record_usage(est_tokens, used or est_tokens)
        self.stats.record(result.usage, tier)
        return result

    def _on_flex_unavailable(self) -> None:
        self.stats.flex_unavailable += 1
        n = self.flex_fallback
        if n is not None and self.stats.flex_unavailable >= n and not self.fell_back:
            self.fell_back = True
            self.tier = "standard"
            warn(
                f"{self.spec}: {self.stats.flex_unavailable} flex requests answered 429 Resource Unavailable "
                f"(--flex-fallback {n}): the rest of this run's requests go out at the standard tier "
                "(standard price)"
            )

    def _over_cap(self, exc: ProviderError, cap: float) -> ProviderError:
        """A wait longer than the cap is not honoured: the request fails now (not retried) and stderr says so
        once, instead of every worker sleeping for a day without a word."""
        asked = f"{exc.retry_after:.0f} s" if math.isfinite(exc.retry_after or 0) else "forever"
        if exc.rate_limited:
            self.stats.rate_limited += 1
            self.limiter.on_rate_limited(None)  # still a rate limit: slow down, briefly
        if not self._told_retry_after:
            self._told_retry_after = True
            warn(
                f"{self.spec}: the server asks to wait {asked} before retrying, more than the {cap:g} s "
                "honoured (CAITOOL_MAX_RETRY_AFTER_S): such requests fail now and their records go to the "
                "errors file; rerun later to retry them"
            )
        return ProviderError(
            f"{exc} (Retry-After {asked}, over the {cap:g} s honoured)",
            retryable=False,
            status=exc.status,
            hint=exc.hint,
        )

    async def _call(self, est_tokens: int, fn: Send, params: GenerateParams) -> Completion:
        self.stats.requests += 1
        try:
            # The first attempt runs outside tenacity: a tenacity loop leaves ~30 objects in reference
            # cycles per call, and at 1000 requests/s the cycle collector's pauses (100+ ms each) cost more
            # than a tenth of the throughput (benchmarks/RESULTS.md). Retries, the rare path, use tenacity.
            try:
                return await self._attempt(est_tokens, fn, params, retry=False)
            except ProviderError as exc:
                if not exc.retryable or self.policy.retries < 1:
                    raise
                await asyncio.sleep(self._backoff(1, exc))
            retrying = AsyncRetrying(
                stop=stop_after_attempt(self.policy.retries),
                wait=self._wait,
                retry=retry_if_exception(lambda e: isinstance(e, ProviderError) and e.retryable),
                reraise=True,
            )
            async for attempt in retrying:
                with attempt:
                    return await self._attempt(est_tokens, fn, params, retry=True)
        except ProviderError:
            self.stats.failures += 1
            raise
        raise AssertionError("unreachable: tenacity either returns or re-raises")

    async def chat(self, messages: list[Message], params: GenerateParams) -> Completion:
        if self.cache is None:
            return await self._chat(messages, params)
        return await self._cached("chat", messages, params, lambda: self._chat(messages, params))

    async def _cached(
        self,
        kind: str,
        request: list[Message] | str,
        params: GenerateParams,
        send: Callable[[], Awaitable[Completion]],
    ) -> Completion:
        """The answer from --cache when an identical request was answered before (zero usage: not paid);
        else sent, and its answer kept (an error is never kept)."""
        assert self.cache is not None
        key = self.cache.key(kind, request, params)
        hit = self.cache.get(key)
        if hit is not None:
            self.stats.cache_hits += 1
            return hit
        result = await send()
        self.cache.put(key, result)
        return result

    async def _chat(self, messages: list[Message], params: GenerateParams) -> Completion:
        if params.n > 1 and not self.supports_n:
            return await self._fan_out(messages, params)
        est = _estimate_tokens(sum(len(m.content) for m in messages), params)
        return await self._call(est, lambda p: self.client.chat(messages, p), params)

    async def _fan_out(self, messages: list[Message], params: GenerateParams) -> Completion:
        """`n` samples from a provider without `n`: n requests sent together, each one budgeted, retried and
        counted on its own; if one fails for good, the others are cancelled and the call fails."""
        one = dataclasses.replace(params, n=1)
        # The samples go around the cache: the n-sample request is one entry, its n identical parts none.
        tasks = [asyncio.ensure_future(self._chat(messages, one)) for _ in range(params.n)]
        try:
            parts = await asyncio.gather(*tasks)
        except BaseException:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        usage = Usage()
        for p in parts:
            usage.add(p.usage)
        return Completion(choices=[p.choices[0] for p in parts], usage=usage, model=parts[0].model)

    async def complete(self, prompt: str, params: GenerateParams) -> Completion:
        est = _estimate_tokens(len(prompt), params)
        if self.cache is None:
            return await self._call(est, lambda p: self.client.complete(prompt, p), params)
        send = lambda: self._call(est, lambda p: self.client.complete(prompt, p), params)  # noqa: E731
        return await self._cached("completion", prompt, params, send)

    async def aclose(self) -> None:
        await self.client.aclose()
