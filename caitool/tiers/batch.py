"""`--tier batch`: a `ModelClient` whose requests go out through a provider's batch API.

`chat()` / `complete()` build the live request's body, give it a stable `custom_id` and await its result; a
scheduler gathers the ready requests of every record in flight into batches. A batch is sent when it is
full (count or bytes, within the provider's limits), when no new request has arrived for `quiet_s` (every
record in flight is waiting: no more requests can arrive until some result lands), or when its oldest request
has waited `send_delay_s`; at most `max_in_flight` batches are out at once. Each batch is polled on its own,
and its requests' futures resolve as soon as its results land, so a record's next round goes into the next
batch without waiting for other records (the only barrier is the record's own dependency chain).

custom_id = `{record id, made safe}-{sha256(record id)[:8]}-{sha256(body)[:16]}-{k}`: the record (the
runner's `current_record`), the request body (a changed request never matches an old result) and k, the
occurrence of the same body within the record (deliberate duplicates stay distinct; a retry of a failed
request keeps its id). Stable across runs, unique within a batch, and within Anthropic's [a-zA-Z0-9_-]{1,64}.

Never paying twice rests on the two ledgers (`caitool.tiers.ledger`): an intent is fsync'd before upload,
the batch id right after creation, every successful result before the batch counts as ingested. A request
whose custom_id is in the result ledger is answered from it. On the first request of a run, the ledger is
reconciled: a batch submitted and not ingested is polled and ingested, not resubmitted; an intent without a
batch id is looked up (OpenAI: by its metadata; Anthropic: by creation time and request count, adopting a
unique match and stopping with exit 3 on several); unfinished batches of another account are refused.

Errors: `caitool.retry` stays the one retry layer. A request's batch outcome becomes what the live call would
have raised: expired or cancelled requests, requests missing from the results, 408/409/429/5xx answers and
unparsable bodies are `ProviderError(retryable=True)`, so the retry layer sends them again, in a later batch,
alone (only they are paid again); 400/404/413/422 and other 4xx are permanent (`retryable=False`: the record
goes to the errors file), 401/403 stop the run as on the live path. A batch that cannot be uploaded or
created fails its requests with that error (retryable when the HTTP error is); polling and downloading
results are free, so their transient failures are waited out here, not counted as attempts.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from caitool.console import warn
from caitool.errors import EXIT_PARTIAL, CaitoolError, ProviderError, UsageError
from caitool.providers.base import Completion, GenerateParams, Message, Usage, current_record
from caitool.tiers.backends import Backend, Candidate, Outcome, Polled
from caitool.tiers.ledger import BatchEntry, BatchLedger, ResultLedger


class AmbiguousBatches(CaitoolError):
    """Several provider batches could be the one a crashed run created: refuse to guess (exit 3)."""

    exit_code = EXIT_PARTIAL


def _env_number(name: str, default: float) -> float:
    try:
        value = float(os.environ.get(name, default))
    except ValueError:
        return default
    return value if value > 0 else default


@dataclass(frozen=True)
class BatchSettings:
    """How requests are gathered into batches; each settable from the environment (tests use small ones)."""

    max_requests: int = 50_000  # per batch (lowered to the provider's limit)
    max_bytes: int = 200 * 1024 * 1024  # per batch (lowered to the provider's limit)
    quiet_s: float = 0.1  # send once no request has arrived for this long
    send_delay_s: float = 60.0  # ... or once the oldest ready request has waited this long
    max_in_flight: int = 64  # batches out at once
    poll_s: float = 15.0  # between two status checks of a batch

    @classmethod
    def from_env(cls, limits: tuple[int, int]) -> BatchSettings:
        d = cls()
        return cls(
            max_requests=min(limits[0], int(_env_number("CAITOOL_BATCH_MAX_REQUESTS", d.max_requests))),
            max_bytes=min(limits[1], int(_env_number("CAITOOL_BATCH_MAX_BYTES", limits[1]))),
            quiet_s=_env_number("CAITOOL_BATCH_QUIET_S", d.quiet_s),
            send_delay_s=_env_number("CAITOOL_BATCH_SEND_DELAY_S", d.send_delay_s),
            max_in_flight=int(_env_number("CAITOOL_BATCH_MAX_IN_FLIGHT", d.max_in_flight)),
            poll_s=_env_number("CAITOOL_BATCH_POLL_S", d.poll_s),
        )


MAX_RECORDS_IN_FLIGHT = 50_000
_UNSAFE = re.compile(r"[^a-zA-Z0-9_]")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def encode_body(body: dict[str, Any]) -> bytes:
    """A request body's JSON (built in one fixed key order): what goes into the batch, and what its hash is
    taken of."""
    return json.dumps(body, ensure_ascii=True, separators=(",", ":")).encode()


def custom_id(record_id: str, body_sha: str, k: int) -> str:
    safe = _UNSAFE.sub("_", record_id)[:16] or "_"
    return f"{safe}-{_sha(record_id.encode())[:8]}-{body_sha}-{k}"


@dataclass
class _Ready:
    custom_id: str
    line: bytes
    future: asyncio.Future[Outcome]


@dataclass
class _Queue:
    items: list[_Ready] = field(default_factory=list)
    size: int = 0
    since: float = 0.0  # when its oldest item arrived


def outcome_error(spec: str, outcome: Outcome) -> ProviderError:
    """The error a failed batch request stands for (see the module docstring for the mapping)."""
    if outcome.kind == "raised":
        assert isinstance(outcome.payload, ProviderError)
        return outcome.payload
    if outcome.kind in ("expired", "cancelled", "missing"):
        return ProviderError(f"{spec}: batch request {outcome.kind}; sent again", retryable=True)
    status = outcome.status
    detail = json.dumps(outcome.payload, ensure_ascii=False)[:300] if outcome.payload is not None else ""
    text = f"{spec}: batch request failed with HTTP {status}: {detail}"
    if status is None:
        return ProviderError(text, retryable=True)
    retryable = status in (408, 409, 429) or status >= 500
    return ProviderError(text, retryable=retryable, status=status)


class BatchClient:
    """The batch tier of one model: a `ModelClient` (see the module docstring)."""

    supports_flex = False

    def __init__(
        self,
        provider: Any,
        backend: Backend,
        *,
        ledger: Path | None,
        results: Path | None,
        settings: BatchSettings,
    ) -> None:
        self.provider = provider
        self.backend = backend
        self.spec: str = provider.spec
        self.supports_logprobs: bool = getattr(provider, "supports_logprobs", False)
        self.supports_completions: bool = getattr(provider, "supports_completions", False)
        self.supports_n: bool = getattr(provider, "supports_n", True)
        self.render_chat: Callable[[list[Message]], str] | None = getattr(provider, "render_chat", None)
        # Records in flight: as many as the batches in flight hold (at most 50,000), so that one round's
        # requests of all of them go out together.
        self.default_concurrency = min(MAX_RECORDS_IN_FLIGHT, settings.max_requests * settings.max_in_flight)
        self.settings = settings
        # Whose batches these are: the provider account, or the folder of a folder backend.
        self.account: str = getattr(backend, "account", None) or provider.batch_account()
        self.ledger = BatchLedger(ledger)
        self.results = ResultLedger(results)
        self._started: asyncio.Task[None] | None = None
        self._queues: dict[str, _Queue] = {}
        self._wake = asyncio.Event()
        self._last_arrival = 0.0
        self._slots = asyncio.Semaphore(settings.max_in_flight)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._flusher: asyncio.Task[None] | None = None
        self._adopted: dict[str, asyncio.Future[Outcome]] = {}
        self._in_flight: set[str] = set()
        self._used: OrderedDict[str, dict[str, int]] = OrderedDict()  # record -> body sha -> answered
        self.batches_sent = 0
        self.replayed = 0

    # -- the ModelClient contract ---------------------------------------------------------------------------

    async def chat(self, messages: list[Message], params: GenerateParams) -> Completion:
        return await self._request(messages, params, chat=True)

    async def complete(self, prompt: str, params: GenerateParams) -> Completion:
        return await self._request(prompt, params, chat=False)

    async def aclose(self) -> None:
        tasks = [t for t in (self._flusher, self._started, *self._tasks) if t is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.ledger.close()
        self.results.close()
        await self.backend.aclose()
        await self.provider.aclose()

    # -- one request ----------------------------------------------------------------------------------------

    async def _request(
        self, request: list[Message] | str, params: GenerateParams, *, chat: bool
    ) -> Completion:
        if params.service_tier is not None:
            params = replace(params, service_tier=None)  # batches have their own price; no flex inside
        endpoint, body = self.provider.batch_request(request, params)
        await self._start()
        rid = current_record.get() or "-"
        encoded = encode_body(body)
        sha = _sha(encoded)[:16]
        cid = self._allocate(rid, sha)
        self._in_flight.add(cid)
        try:
            stored = self.results.get(cid)
            if stored is not None:
                answered = self.provider.parse_batch_result(stored, chat=chat)
                answered.usage = Usage()  # paid by the run that sent it: not this run's cost
                self.replayed += 1
            else:
                future = self._adopted.pop(cid, None) or self._enqueue(endpoint, cid, encoded)
                outcome = await future
                if outcome.kind != "ok":
                    raise outcome_error(self.spec, outcome)
                answered = self.provider.parse_batch_result(outcome.payload, chat=chat)
        finally:
            self._in_flight.discard(cid)
        used = self._used.setdefault(
            rid, {}
        )  # (evicted meanwhile only if 4x the records in flight ran since)
        used[sha] = used.get(sha, 0) + 1
        return answered

    def _allocate(self, rid: str, sha: str) -> str:
        """The custom_id of this record's next request with this body: k counts its answered occurrences,
        skipping one still in flight (two identical requests of one record at once)."""
        used = self._used.get(rid)
        if used is None:
            used = self._used[rid] = {}
            while len(self._used) > 4 * self.default_concurrency:  # records long finished
                self._used.popitem(last=False)
        else:
            self._used.move_to_end(rid)
        k = used.get(sha, 0)
        while custom_id(rid, sha, k) in self._in_flight:
            k += 1
        return custom_id(rid, sha, k)

    def _enqueue(self, endpoint: str, cid: str, body: bytes) -> asyncio.Future[Outcome]:
        line = self.backend.encode(cid, endpoint, body)
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        if len(line) + 1 > self.settings.max_bytes:
            too_big = {"message": f"a request of {len(line)} bytes is over the batch limit"}
            future.set_result(Outcome("error", 413, too_big))
            return future
        queue = self._queues.setdefault(endpoint, _Queue())
        now = time.monotonic()
        if not queue.items:
            queue.since = now
        queue.items.append(_Ready(cid, line, future))
        queue.size += len(line) + 1
        self._last_arrival = now
        self._wake.set()
        if self._flusher is None:
            self._flusher = asyncio.ensure_future(self._flush_loop())
        return future

    # -- the scheduler --------------------------------------------------------------------------------------

    def _due(self, now: float) -> tuple[str | None, float]:
        """The endpoint whose queue should go now (None: none yet), and how long until one may be due."""
        s = self.settings
        wait = s.quiet_s - (now - self._last_arrival)
        for endpoint, q in self._queues.items():
            if not q.items:
                continue
            if len(q.items) >= s.max_requests or q.size >= s.max_bytes:
                return endpoint, 0.0
            if now - q.since >= s.send_delay_s or wait <= 0:
                return endpoint, 0.0
            wait = min(wait, s.send_delay_s - (now - q.since))
        return None, wait

    async def _flush_loop(self) -> None:
        try:
            await self._flush_forever()
        except Exception as exc:  # a bug: fail every waiting request rather than leave it waiting forever
            for q in self._queues.values():
                _fail_hard({item.custom_id: item.future for item in q.items}, exc)
            raise

    async def _flush_forever(self) -> None:
        while True:
            if not any(q.items for q in self._queues.values()):
                self._wake.clear()
                await self._wake.wait()
            endpoint, wait = self._due(time.monotonic())
            if endpoint is None:
                await asyncio.sleep(max(wait, 0.001))
                continue
            await self._slots.acquire()
            items = self._take(endpoint)
            task = asyncio.ensure_future(self._send(endpoint, items))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _take(self, endpoint: str) -> list[_Ready]:
        q = self._queues[endpoint]
        n, size = 0, 0
        for item in q.items:
            if n >= self.settings.max_requests or size + len(item.line) + 1 > self.settings.max_bytes:
                break
            n += 1
            size += len(item.line) + 1
        taken, q.items = q.items[:n], q.items[n:]
        q.size -= size
        q.since = time.monotonic()
        return taken

    async def _send(self, endpoint: str, items: list[_Ready]) -> None:
        waiters = {item.custom_id: item.future for item in items}
        try:
            key = uuid.uuid4().hex
            sha = _sha(b"\n".join(item.line for item in items))
            intent = {
                "spec": self.spec,
                "endpoint": endpoint,
                "n": len(items),
                "sha": sha,
                "account": self.account,
                "custom_ids": list(waiters),
            }
            self.ledger.append("intent", key, **intent)
            try:
                metadata = {"caitool_intent": key, "caitool_sha": sha[:16]}
                batch_id, file_id = await self.backend.submit(
                    endpoint, [(item.custom_id, item.line) for item in items], metadata
                )
            except ProviderError as exc:
                self.ledger.append("abandoned", key, reason=str(exc)[:300])
                _fail(waiters, exc)
                return
            self.batches_sent += 1
            self.ledger.append("submitted", key, batch_id=batch_id, file_id=file_id)
            await self._follow(key, batch_id, waiters)
        except ProviderError as exc:
            _fail(waiters, exc)
        except Exception as exc:  # a bug or a full disk: the run stops, no request waits forever
            _fail_hard(waiters, exc)
        finally:
            self._slots.release()

    async def _follow(self, key: str, batch_id: str, waiters: dict[str, asyncio.Future[Outcome]]) -> None:
        """Poll a batch until it ends, ingest its results, resolve its requests."""
        polled = await self._until(lambda: self._poll_ended(batch_id))
        self.ledger.append("ended", key, batch_id=batch_id, status=polled.status, counts=polled.counts)
        if polled.failure is not None:
            # The whole batch failed validation. Over an enqueued-token limit it is worth sending again later
            # (as a 429); anything else (a malformed file) would fail the same way.
            status = 429 if "limit" in polled.failure.lower() else 400
            outcomes = {cid: Outcome("error", status, {"message": polled.failure}) for cid in waiters}
        else:
            outcomes = await self._until(lambda: self.backend.results(polled))
        self.results.add([(cid, o.payload) for cid, o in outcomes.items() if o.kind == "ok"])
        self.ledger.append("ingested", key, batch_id=batch_id)
        for cid, future in waiters.items():
            if not future.done():
                future.set_result(outcomes.get(cid, Outcome("missing")))

    async def _poll_ended(self, batch_id: str) -> Polled:
        while True:
            polled = await self.backend.poll(batch_id)
            if polled.ended:
                return polled
            await asyncio.sleep(self.settings.poll_s)

    async def _until(self, step: Callable[[], Any]) -> Any:
        """`step()` until it succeeds: polling and downloads cost nothing, so a transient failure is waited
        out (said once) rather than failing requests already paid for. A permanent one propagates."""
        told = False
        while True:
            try:
                return await step()
            except ProviderError as exc:
                if not exc.retryable:
                    raise
                if not told:
                    told = True
                    warn(f"{self.spec}: {exc}; trying again every {self.settings.poll_s:g} s")
                await asyncio.sleep(self.settings.poll_s)

    # -- resume ---------------------------------------------------------------------------------------------

    async def _start(self) -> None:
        if self._started is None:
            self._started = asyncio.ensure_future(self._reconcile())
        await asyncio.shield(self._started)

    async def _reconcile(self) -> None:
        try:
            await self._reconcile_ledger()
        except ProviderError as exc:
            # Not one request's failure: without the provider's answer nothing can be sent safely.
            raise CaitoolError(
                f"{self.spec}: cannot reconcile {self.ledger.path} with the provider: {exc}",
                hint="rerun when the provider answers again; nothing was sent",
            ) from None

    async def _reconcile_ledger(self) -> None:
        self.ledger.open()
        self.results.open()
        mine = [e for e in self.ledger.entries if e.intent.get("spec") == self.spec]
        open_entries = [e for e in mine if not e.ingested and not e.abandoned]
        foreign = sorted({str(e.intent.get("account")) for e in open_entries} - {self.account})
        if foreign:
            raise UsageError(
                f"{self.ledger.path}: {len(open_entries)} unfinished batches were sent from another account "
                f"({', '.join(foreign)}); this run uses {self.account}",
                hint="rerun with the API key and --base-url that sent them, so they are collected and not "
                "paid again; or cancel them with that key (caitool batches cancel), or delete "
                f"{self.ledger.path} to forget them (what they answer is then paid again)",
            )
        known = {e.batch_id for e in self.ledger.entries if e.batch_id is not None}
        for entry in open_entries:
            batch_id = entry.batch_id
            if batch_id is None:
                found = await self.backend.find(entry.intent, known)
                if len(found) > 1:
                    raise AmbiguousBatches(
                        f"{self.ledger.path}: batch {entry.id} ({entry.intent['n']} requests) may have been "
                        f"created before the crash, and {len(found)} batches match it: "
                        + "; ".join(_show(c) for c in found),
                        hint="the provider keeps no metadata to tell them apart; cancel the ones that are "
                        "not this run's, or record the right one with caitool batches adopt",
                    )
                if not found:
                    self.ledger.append("abandoned", entry.id, reason="no batch was created")
                    continue
                batch_id = found[0].batch_id
                known.add(batch_id)
                self.ledger.append("submitted", entry.id, batch_id=batch_id, file_id=None, adopted=True)
            self._adopt(entry, batch_id)

    def _adopt(self, entry: BatchEntry, batch_id: str) -> None:
        loop = asyncio.get_running_loop()
        waiters: dict[str, asyncio.Future[Outcome]] = {}
        for cid in entry.intent.get("custom_ids", []):
            if cid not in self.results:
                waiters[cid] = self._adopted[cid] = loop.create_future()

        async def follow() -> None:
            try:
                await self._follow(entry.id, batch_id, waiters)
            except ProviderError as exc:
                _fail(waiters, exc)
            except Exception as exc:
                _fail_hard(waiters, exc)

        task = asyncio.ensure_future(follow())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _fail(waiters: dict[str, asyncio.Future[Outcome]], exc: ProviderError) -> None:
    """Every waiting request fails with the batch's own error (an upload or create that failed)."""
    for future in waiters.values():
        if not future.done():
            future.set_result(Outcome("raised", exc.status, exc))


def _fail_hard(waiters: dict[str, asyncio.Future[Outcome]], exc: Exception) -> None:
    """Every waiting request raises `exc` itself: not a request's failure, so the run stops with it."""
    for future in waiters.values():
        if not future.done():
            future.set_exception(exc)


def _show(c: Candidate) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(c.created_at))
    return f"{c.batch_id} (created {when} UTC, {c.requests} requests, {c.status})"
