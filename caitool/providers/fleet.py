"""An endpoint fleet: N OpenAI-compatible servers of one model behind the `ModelClient` interface.

`--base-url http://a:8000/v1,http://b:8000/v1` builds one: users who run `vllm serve` (or SGLang, llama.cpp)
on several hosts point caitool at all of them, and this client spreads the requests.

- **Least outstanding requests**, relative to each endpoint's cap: a request goes to the endpoint with the
  smallest share of its cap in flight (ties: the one that has had fewest requests). A faster server frees
  its slots sooner and so gets more requests: traffic follows capacity without being told latencies.
- **A cap per endpoint** (`URL#cap=64`; default: --concurrency split evenly, else the provider's default):
  a request waits for a slot rather than overloading a server.
- **Affinity**: the requests of one record (a critique-revise chain, a label-pairs record's orders) go to the
  endpoint its first request went to, while that endpoint is healthy, so its prompt prefix stays in that
  server's KV cache. The record is known from `current_record`, which the runner sets per record task.
- **Ejection**: `EJECT_AFTER` failures in a row that say the endpoint, not the request, is at fault
  (connection refused or reset, a timeout, 5xx) eject it for `EJECT_S` seconds (doubling on each ejection in
  a row, up to `EJECT_MAX_S`); its requests in flight are cancelled then and fail as retryable, so they are
  retried elsewhere at once instead of waiting out their --timeout. After the pause the endpoint is tried
  again; one more failure ejects it again. With every endpoint ejected, a request goes to the one that comes
  back soonest (the retry budget, not this client, decides when to give up).

Retries: this client never retries. A failed request raises its `ProviderError` as is, and the one retry layer
(`caitool.retry.ResilientClient`, wrapped around the fleet) backs off and calls again, which picks a healthy
endpoint: a request moved off a dead endpoint spends the same retry budget as any other retry, and each HTTP
request is still counted once.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from caitool.errors import ProviderError, UsageError
from caitool.providers._http import redact, url_secrets
from caitool.providers.base import Completion, GenerateParams, Message, ModelClient, current_record

EJECT_AFTER = 2  # failures in a row that eject an endpoint
EJECT_S = 10.0  # the first ejection's length; doubled for each ejection in a row
EJECT_MAX_S = 120.0
LATENCY_WINDOW = 2048  # latencies kept per endpoint for the summary's percentiles


def split_base_urls(value: str | None) -> list[tuple[str, int | None]]:
    """`--base-url` as (url, cap) pairs: comma-separated URLs, each with an optional `#cap=N`."""
    if not value:
        return []
    out: list[tuple[str, int | None]] = []
    for part in value.split(","):
        part = part.strip()
        if not part:
            continue
        url, _, fragment = part.partition("#")
        cap: int | None = None
        if fragment:
            name, _, number = fragment.partition("=")
            if name != "cap" or not number.isdigit() or int(number) < 1:
                raise UsageError(
                    f"--base-url {redact(part)!r}: expected URL or URL#cap=N (N ≥ 1 requests in flight)"
                )
            cap = int(number)
        out.append((url, cap))
    return out


def is_fleet(base_url: str | None) -> bool:
    return len(split_base_urls(base_url)) > 1


def _shown(url: str) -> str:
    """The endpoint as the summary names it: no user-info, query or key (manifests are shared)."""
    parts = urlsplit(redact(url, url_secrets(url, None)))
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


@dataclass
class Endpoint:
    url: str  # as shown: without secrets
    client: ModelClient
    cap: int
    in_flight: int = 0
    requests: int = 0
    errors: int = 0
    ejections: int = 0
    streak: int = 0  # failures in a row
    ejected_in_a_row: int = 0
    ejected_until: float = 0.0
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))
    latency_sum: float = 0.0
    answered: int = 0
    requests_now: set[asyncio.Task[Any]] = field(default_factory=set)  # the tasks awaiting a request here

    def healthy(self, now: float) -> bool:
        return now >= self.ejected_until

    def report(self) -> dict[str, Any]:
        lat = sorted(self.latencies)

        def pct(q: float) -> float | None:
            return round(lat[min(len(lat) - 1, int(q * len(lat)))] * 1000, 1) if lat else None

        mean = round(self.latency_sum / self.answered * 1000, 1) if self.answered else None
        return {
            "requests": self.requests,
            "errors": self.errors,
            "ejections": self.ejections,
            "cap": self.cap,
            "latency_ms": {"mean": mean, "p50": pct(0.5), "p95": pct(0.95)},
        }


def _endpoint_at_fault(exc: ProviderError) -> bool:
    """A failure that says the server is unwell (down, reset, hung, 5xx), not that the request is bad or
    rate-limited: only these count towards ejection."""
    if exc.rate_limited or not exc.retryable:
        return False
    return exc.status is None or exc.status >= 500


class Ejected(ProviderError):
    """A request cancelled because its endpoint was ejected meanwhile: the retry layer sends it elsewhere."""


class FleetClient:
    """N clients of one model spec, one per endpoint, as one `ModelClient` (see the module docstring)."""

    def __init__(self, spec: str, endpoints: list[Endpoint]) -> None:
        if not endpoints:
            raise UsageError("a fleet needs at least one endpoint")
        self.spec = spec
        self.endpoints = endpoints
        first = endpoints[0].client
        self.supports_logprobs: bool = getattr(first, "supports_logprobs", False)
        self.supports_completions: bool = getattr(first, "supports_completions", False)
        self.supports_n: bool = getattr(first, "supports_n", True)
        self.render_chat: Callable[[list[Message]], str] | None = getattr(first, "render_chat", None)
        # Records in flight when --concurrency is not given: enough to fill every endpoint's cap.
        self.default_concurrency = sum(e.cap for e in endpoints)
        self._pins: OrderedDict[str, Endpoint] = OrderedDict()  # record id -> its endpoint (LRU)
        self._max_pins = max(4096, 4 * self.default_concurrency)
        self._freed: asyncio.Event | None = None
        self._ejecting: set[asyncio.Task[Any]] = set()  # tasks cancelled by an ejection (see `_send`)

    # choosing an endpoint -------------------------------------------------------------------------------

    def _pinned(self, record: str | None, now: float) -> Endpoint | None:
        if record is None:
            return None
        ep = self._pins.get(record)
        if ep is None or not ep.healthy(now):
            return None
        self._pins.move_to_end(record)
        return ep

    def _pin(self, record: str | None, ep: Endpoint) -> None:
        if record is None:
            return
        self._pins[record] = ep
        self._pins.move_to_end(record)
        while len(self._pins) > self._max_pins:
            self._pins.popitem(last=False)

    def _least_outstanding(self, now: float) -> Endpoint | None:
        """The endpoint to send a new record's request to, or None when every candidate is at its cap."""
        healthy = [e for e in self.endpoints if e.healthy(now)]
        # None healthy: try the one that comes back soonest (the retry layer bounds how often).
        candidates = healthy or [min(self.endpoints, key=lambda e: e.ejected_until)]
        best: Endpoint | None = None
        best_key = (math.inf, math.inf)
        for e in candidates:
            if e.in_flight >= e.cap:
                continue
            key = (e.in_flight / e.cap, e.requests / e.cap)
            if key < best_key:
                best, best_key = e, key
        return best

    async def _acquire(self, record: str | None) -> Endpoint:
        while True:
            now = time.monotonic()
            pinned = self._pinned(record, now)
            ep = pinned if pinned is not None else self._least_outstanding(now)
            if ep is not None and ep.in_flight < ep.cap:
                return ep
            # Every slot it may use is taken: wait for one to free (or for an ejection to end).
            if self._freed is None:
                self._freed = asyncio.Event()
            freed = self._freed
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    await freed.wait()

    def _release(self, ep: Endpoint) -> None:
        ep.in_flight -= 1
        if self._freed is not None:
            # Wake every waiter once; the next waiters wait on a fresh event. Waiting is the rare case
            # (more requests than the caps allow), so waking all of them costs nothing in the common one.
            self._freed.set()
            self._freed = None

    # health --------------------------------------------------------------------------------------------

    def _failed(self, ep: Endpoint, exc: ProviderError) -> None:
        ep.errors += 1
        if not _endpoint_at_fault(exc):
            return
        ep.streak += 1
        if ep.streak >= EJECT_AFTER and ep.healthy(time.monotonic()):
            self._eject(ep)

    def _eject(self, ep: Endpoint) -> None:
        ep.ejections += 1
        ep.ejected_in_a_row += 1
        pause = min(EJECT_MAX_S, EJECT_S * 2 ** (ep.ejected_in_a_row - 1))
        ep.ejected_until = time.monotonic() + pause
        ep.streak = EJECT_AFTER - 1  # back from the pause, one more failure ejects it again
        me = asyncio.current_task()  # the request whose failure ejects: it is failing already, not cancelled
        for task in list(ep.requests_now):
            if task is me:
                continue
            self._ejecting.add(task)
            task.cancel()  # `_send` turns this cancellation into `Ejected` (retryable): retried elsewhere now

    def _succeeded(self, ep: Endpoint, seconds: float) -> None:
        ep.streak = 0
        ep.ejected_in_a_row = 0
        ep.answered += 1
        ep.latency_sum += seconds
        ep.latencies.append(seconds)

    # requests ------------------------------------------------------------------------------------------

    async def _send(self, call: Callable[[ModelClient], Awaitable[Completion]]) -> Completion:
        record = current_record.get()
        ep = await self._acquire(record)
        self._pin(record, ep)
        ep.in_flight += 1
        ep.requests += 1
        started = time.monotonic()
        # Ejecting the endpoint cancels the task awaiting here and marks it in `_ejecting`: that one
        # cancellation is taken back (`uncancel`, as asyncio.timeout does) and becomes a retryable error, so
        # the record's task goes on. A request in a task of its own would cost a task per request.
        me = asyncio.current_task()
        assert me is not None
        ep.requests_now.add(me)
        try:
            result = await call(ep.client)
        except asyncio.CancelledError:
            if me not in self._ejecting or me.uncancel() > 0:
                raise  # the record itself was cancelled (Ctrl-C, a fatal error), maybe as well
            ep.errors += 1
            raise Ejected(f"{self.spec}: endpoint {ep.url} was ejected mid-request", retryable=True) from None
        except ProviderError as exc:
            self._failed(ep, exc)
            raise
        else:
            self._succeeded(ep, time.monotonic() - started)
            return result
        finally:
            self._ejecting.discard(me)
            ep.requests_now.discard(me)
            self._release(ep)

    async def chat(self, messages: list[Message], params: GenerateParams) -> Completion:
        return await self._send(lambda c: c.chat(messages, params))

    async def complete(self, prompt: str, params: GenerateParams) -> Completion:
        return await self._send(lambda c: c.complete(prompt, params))

    def endpoint_stats(self) -> dict[str, dict[str, Any]]:
        """Per endpoint: requests, errors, ejections, cap, latency (mean, p50, p95 in ms)."""
        return {e.url: e.report() for e in self.endpoints}

    async def aclose(self) -> None:
        for e in self.endpoints:
            await e.client.aclose()


def build_fleet(
    spec: str, base_url: str, *, api_key: str | None, timeout: float, concurrency: int | None
) -> FleetClient:
    """The fleet for a comma-separated `base_url`: one client of `spec` per endpoint. An endpoint without
    `#cap=` gets --concurrency split evenly, else its provider's default concurrency."""
    from caitool.providers import get_provider, split_spec

    name, model = split_spec(spec)
    provider = get_provider(name, spec=spec)
    if provider.base_url_env is None:
        raise UsageError(f"{spec}: {name}/ takes no --base-url, so it cannot be a fleet of endpoints")
    urls = split_base_urls(base_url)
    shown = [_shown(u) for u, _ in urls]
    if len(set(shown)) < len(shown):
        raise UsageError(f"--base-url names an endpoint twice: {', '.join(shown)}")
    endpoints = []
    for (url, cap), where in zip(urls, shown, strict=True):
        client = provider.create(spec, model, base_url=url, api_key=api_key, timeout=timeout)
        if cap is None:
            if concurrency is not None:
                cap = max(1, math.ceil(concurrency / len(urls)))
            else:
                cap = int(getattr(client, "default_concurrency", 16))
        endpoints.append(Endpoint(where, client, cap))
    return FleetClient(spec, endpoints)
