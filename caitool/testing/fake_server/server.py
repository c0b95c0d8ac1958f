"""The server: its state and handlers (all run on the server's event loop), the routes, and serving.

`State` keeps the counters and the active config, answers the control endpoints (`/_stats`, `/_config`,
`/_reset`) and runs every generation request through the fault machine (auth, canned bodies,
misbehaviours, failing substrings, rpm, fail_first, the seeded p* draw, latency) before `replies.py`
builds its reply. `build_app` is the one route table: a new endpoint group adds its routes there.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import math
import signal
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from . import anthropic_api, endpoints, openai_api
from .batches import Batches
from .config import Active, FakeConfig
from .endpoints import CHAT, COMPLETIONS, GENERATION_ENDPOINTS, MESSAGES, MODELS
from .faults import (
    RETRY_AFTER_DATE_2100,
    draws,
    misbehaviour_of,
    misshape,
    reset_connection,
)
from .replies import build_reply, message_chars
from .request import api_key, prompt_key, prompt_texts

MAX_RECORDED_BODIES = 10_000
PROMPT_TEXT_CHARS = 300
FLEX_UNAVAILABLE = "Resource Unavailable: no flex capacity for this request right now (fake server)."
QUOTA_MESSAGE = "You exceeded your current quota, please check your plan and billing details (fake server)."


def _answer(
    endpoint: str,
    body: dict[str, Any],
    active: Active,
    match_text: str,
    snippet: str,
    fault: str | None,
    misbehaviour: tuple[str, str] | None,
    seq: int,
) -> dict[str, Any]:
    """The answer's JSON, for a live request and a batch request alike: the reply, with the content faults
    (`p_empty_choices`, `p_garbage_answer`) and a misbehaving model's reshaping applied."""
    payload = build_reply(
        endpoint,
        body,
        active,
        match_text,
        snippet,
        empty=fault == "p_empty_choices",
        garbage=fault == "p_garbage_answer",
        seq=seq,
    )
    if misbehaviour is not None:
        misshape(payload, endpoint, *misbehaviour)
    return payload


def _error_body(endpoint: str, status: int, message: str | None, code: str | None) -> bytes:
    if endpoint == MESSAGES:
        return anthropic_api.error_body(status, message, code)
    return openai_api.error_body(status, message, code)


class State:
    """Counters, the active config and every handler; lives on the server's event loop."""

    def __init__(self, cfg: FakeConfig) -> None:
        self.base = cfg  # what reset() goes back to: the constructor's / command line's config
        self.active = Active(cfg)
        self.tasks: set[asyncio.Task[Any]] = set()
        self.in_flight = 0
        self.clear()

    def clear(self) -> None:
        """Zero the counters and drop the requests still in flight (a hang left by an earlier test)."""
        for task in list(self.tasks):
            task.cancel()
        self.total = 0
        self.req_seq = 0
        self.max_in_flight = self.in_flight
        self.by_endpoint: Counter[str] = Counter()
        self.by_status: Counter[int] = Counter()
        self.by_model: Counter[str] = Counter()
        self.attempts: Counter[str] = Counter()
        self.prompts: dict[str, str] = {}
        self.faults: Counter[str] = Counter()
        self.service_tiers: Counter[str] = Counter()  # requests by their service_tier ("" when none)
        # Tokens of the answered generation requests, per service tier: the fake bill.
        self.usage: dict[str, Counter[str]] = {}
        self.prefixes: set[bytes] = set()  # digests of the message prefixes seen (prompt_cache)
        self.bodies: list[dict[str, Any]] = []
        self.bucket = -1.0  # refilled on first use
        self.bucket_t = time.monotonic()
        self.bucket_rpm = 0.0
        self.batches = Batches(self)

    def set_config(self, cfg: FakeConfig) -> None:
        self.active = Active(cfg)

    def batches_api(
        self, pick: Callable[[Batches], Callable[[web.Request], Awaitable[web.Response]]]
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        """A route handler calling `pick(self.batches)`: the store is replaced on every reset, so the
        handler is looked up per request."""

        async def handler(request: web.Request) -> web.Response:
            return await pick(self.batches)(request)

        return handler

    # -- control ----------------------------------------------------------------------------------------

    def snapshot(self, brief: bool = False) -> dict[str, Any]:
        hist = Counter(self.attempts.values())
        out: dict[str, Any] = {
            "total": self.total,
            "by_endpoint": dict(self.by_endpoint),
            "by_status": {str(k): v for k, v in sorted(self.by_status.items())},
            "by_model": dict(self.by_model),
            "faults": dict(self.faults),
            "service_tiers": dict(self.service_tiers),
            "usage": {tier: dict(c) for tier, c in self.usage.items()},
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "distinct_prompts": len(self.attempts),
            "attempts_histogram": {str(k): v for k, v in sorted(hist.items())},
            "batches": self.batches.stats(),
        }
        if not brief:
            out["attempts"] = dict(self.attempts)
            out["prompts"] = dict(self.prompts)
            if self.active.cfg.record_bodies:
                out["requests"] = list(self.bodies)
        return out

    def take_token(self, rpm: float) -> float | None:
        """None when a request may go; else the seconds until the bucket has a token."""
        rate = rpm / 60.0
        cap = max(1.0, rate)
        now = time.monotonic()
        if self.bucket < 0 or self.bucket_rpm != rpm:
            self.bucket, self.bucket_rpm = cap, rpm
        else:
            self.bucket = min(cap, self.bucket + (now - self.bucket_t) * rate)
        self.bucket_t = now
        if self.bucket >= 1.0:
            self.bucket -= 1.0
            return None
        return (1.0 - self.bucket) / rate

    async def handle_stats(self, request: web.Request) -> web.Response:
        brief = request.query.get("brief", "") not in ("", "0", "false")
        return web.json_response(self.snapshot(brief=brief))

    async def _json_body(self, request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        if not raw.strip():
            return {}
        body = json.loads(raw)
        if not isinstance(body, dict):
            raise ValueError("the body must be a JSON object")
        return body

    async def handle_config(self, request: web.Request) -> web.Response:
        if request.method == "POST":
            try:
                self.set_config(FakeConfig.build(await self._json_body(request), self.active.cfg))
            except ValueError as exc:
                return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(self.active.cfg.to_dict())

    async def handle_reset(self, request: web.Request) -> web.Response:
        try:
            cfg = FakeConfig.build(await self._json_body(request), self.base)
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        self.clear()
        self.set_config(cfg)
        return web.json_response({"ok": True, "config": cfg.to_dict()})

    # -- API --------------------------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        self.req_seq += 1
        rid = f"req_fake_{self.req_seq:08d}"
        return {"x-request-id": rid, "request-id": rid}

    def _error(
        self,
        endpoint: str,
        status: int,
        message: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> web.Response:
        self.by_status[status] += 1
        h = self._headers()
        if headers:
            h.update(headers)
        body = _error_body(endpoint, status, message, code)
        return web.Response(status=status, body=body, content_type="application/json", headers=h)

    def _rate_limited(
        self, endpoint: str, wait: float, quota: bool = False, headers: Mapping[str, str] | None = None
    ) -> web.Response:
        headers = {
            "retry-after": str(math.ceil(wait)),
            "retry-after-ms": str(math.ceil(wait * 1000)),
            **(headers or {}),
        }
        if quota:
            return self._error(endpoint, 429, QUOTA_MESSAGE, "insufficient_quota", headers)
        return self._error(endpoint, 429, headers=headers)

    def _auth_failed(self, request: web.Request, active: Active) -> bool:
        required = active.cfg.require_key
        return required is not None and api_key(request) != required

    async def handle_models(self, request: web.Request) -> web.Response:
        self.total += 1
        self.by_endpoint[MODELS] += 1
        if self._auth_failed(request, self.active):
            self.faults["require_key"] += 1
            return self._error(CHAT, 401)
        self.by_status[200] += 1
        return web.Response(body=self.active.models_payload, content_type="application/json")

    async def handle_generate(self, request: web.Request) -> web.StreamResponse:
        task = asyncio.current_task()
        if task is not None:
            self.tasks.add(task)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._generate(request)
        finally:
            self.in_flight -= 1
            if task is not None:
                self.tasks.discard(task)

    async def _generate(self, request: web.Request) -> web.StreamResponse:
        endpoint = request.path
        active = self.active
        cfg = active.cfg
        self.total += 1
        self.by_endpoint[endpoint] += 1
        try:
            body = json.loads(await request.read())
        except ValueError:
            return self._error(endpoint, 400, "the request body is not valid JSON")
        if not isinstance(body, dict):
            return self._error(endpoint, 400, "the request body must be a JSON object")
        key, attempt, model, (match_text, snippet, full_text) = self._count_prompt(endpoint, body)
        if cfg.record_bodies and len(self.bodies) < MAX_RECORDED_BODIES:
            self.bodies.append({"endpoint": endpoint, "key": key, "attempt": attempt, "body": body})

        if self._auth_failed(request, active):
            self.faults["require_key"] += 1
            return self._error(endpoint, 401)
        if body.get("stream"):
            return self._error(endpoint, 400, "stream=true is not supported by the fake server")
        if cfg.canned_body is not None:
            self.faults["canned"] += 1
            self.by_status[cfg.canned_status] += 1
            return web.Response(
                status=cfg.canned_status,
                body=cfg.canned_body.encode("utf-8", "surrogatepass"),
                content_type="application/json",
                headers={**self._headers(), **cfg.canned_headers},
            )
        misbehaviour = misbehaviour_of(model, cfg)
        if misbehaviour is not None:
            self.faults[misbehaviour[0]] += 1
            early = self._misbehave_early(endpoint, misbehaviour, attempt)
            if early is not None:
                return early
        for sub, status in cfg.fail_keys_containing.items():
            if sub in full_text:
                self.faults["fail_keys_containing"] += 1
                if status >= 500:
                    await self._sleep_latency(active, key, attempt)
                return self._error(endpoint, status, f"this prompt always fails with {status} (fake server)")
        tier = body.get("service_tier")
        tier = tier if isinstance(tier, str) else ""
        self.service_tiers[tier] += 1
        flex_draw = draws(cfg.seed, key + "|flex", attempt)[0] if tier == "flex" else 1.0
        if flex_draw < cfg.p_flex_unavailable:
            self.faults["flex_unavailable"] += 1
            return self._error(endpoint, 429, FLEX_UNAVAILABLE, "resource_unavailable")

        fault: str | None = None
        if endpoint in active.fault_endpoints and (cfg.fault_match is None or cfg.fault_match in full_text):
            if cfg.rpm > 0:
                wait = self.take_token(cfg.rpm)
                if wait is not None:
                    self.faults["rpm"] += 1
                    if cfg.advertise_rpm:
                        limits = {
                            "x-ratelimit-limit-requests": f"{cfg.rpm:g}",
                            "x-ratelimit-remaining-requests": "0",
                        }
                        return self._rate_limited(endpoint, wait, headers=limits)
                    return self._rate_limited(endpoint, wait)
            if attempt <= cfg.fail_first:
                self.faults["fail_first"] += 1
                if cfg.fail_status == 429:
                    return self._rate_limited(endpoint, cfg.retry_after)
                if cfg.fail_status >= 500:
                    await self._sleep_latency(active, key, attempt)
                return self._error(endpoint, cfg.fail_status)
            fault = self._draw_fault(active, key, attempt)
        if fault is not None:
            self.faults[fault] += 1
            if fault == "p429":
                return self._rate_limited(endpoint, cfg.retry_after)
            if fault == "p429_quota":
                return self._rate_limited(endpoint, cfg.retry_after, quota=True)
        await self._sleep_latency(active, key, attempt)
        if fault in ("p500", "p503", "p529"):
            return self._error(endpoint, int(fault[1:]))
        if fault == "p_hang":
            await asyncio.sleep(cfg.hang_s)
        if fault == "p_reset":
            reset_connection(request)
            return web.Response(status=200)  # never sent: aiohttp drops it on the closed transport

        payload = _answer(endpoint, body, active, match_text, snippet, fault, misbehaviour, self.req_seq + 1)
        data = json.dumps(payload).encode()
        headers = self._headers()
        if misbehaviour is not None and misbehaviour[0] == "drip":
            return await self._drip(request, data, headers, float(misbehaviour[1]) / 1000)
        if misbehaviour is not None and misbehaviour[0] == "huge_chunked":
            return await self._drip(request, data, headers, 0.0, chunk=2**16, chunked=True)
        if fault == "p_truncate":
            resp = web.StreamResponse(status=200, headers=headers)
            resp.content_type = "application/json"
            resp.content_length = len(data)
            await resp.prepare(request)
            await resp.write(data[: len(data) // 2])
            if request.transport is not None:
                request.transport.close()  # flushes the half body, then closes: the client sees a short read
            return resp
        self.by_status[200] += 1
        if cfg.prompt_cache and endpoint == CHAT:
            self._prompt_cache(body, payload, cfg.prompt_cache_min_tokens)
            data = json.dumps(payload).encode()
        elif cfg.prompt_cache and endpoint == MESSAGES:
            self._anthropic_cache(body, payload, cfg.prompt_cache_min_tokens)
            data = json.dumps(payload).encode()
        self._bill(tier or "default", payload)
        return web.Response(body=data, content_type="application/json", headers=headers)

    def _prompt_cache(self, body: dict[str, Any], payload: dict[str, Any], min_tokens: int) -> None:
        """Report the cached part of a chat prompt (FakeConfig.prompt_cache) and remember its prefixes."""
        messages = body.get("messages")
        usage = payload.get("usage")
        if not isinstance(messages, list) or not isinstance(usage, dict):
            return
        digest, chars, cached_chars = hashlib.sha1(), 0, 0
        for message in messages[:-1]:  # a prefix ends before the last message at the latest
            digest.update(json.dumps(message, sort_keys=True).encode() + b"\x00")
            chars += message_chars(message)
            key = digest.digest()
            if key in self.prefixes:
                cached_chars = chars
            self.prefixes.add(key)
        cached = cached_chars // 4 // 128 * 128
        if cached >= max(min_tokens, 128):
            cached = min(cached, int(usage.get("prompt_tokens") or 0))
            usage["prompt_tokens_details"] = {"cached_tokens": cached}

    def _anthropic_cache(self, body: dict[str, Any], payload: dict[str, Any], min_tokens: int) -> None:
        """Anthropic's explicit prompt caching: the prefix up to the last `cache_control` block is written
        to the cache the first time (cache_creation_input_tokens) and read after (cache_read_input_tokens);
        input_tokens is then the rest, as Anthropic reports it."""
        messages = body.get("messages")
        usage = payload.get("usage")
        if not isinstance(messages, list) or not isinstance(usage, dict):
            return
        system = body.get("system")
        digest, chars, point, point_chars = hashlib.sha1(), 0, b"", 0
        for element in ([system] if system else []) + messages:
            digest.update(json.dumps(element, sort_keys=True).encode() + b"\x00")
            chars += message_chars(element)
            if "cache_control" in json.dumps(element):
                point, point_chars = digest.digest(), chars
        tokens = point_chars // 4
        if not point or tokens < max(min_tokens, 1):
            return
        read = point in self.prefixes
        self.prefixes.add(point)
        usage["input_tokens"] = max(0, int(usage.get("input_tokens") or 0) - tokens)
        usage["cache_read_input_tokens" if read else "cache_creation_input_tokens"] = tokens

    def _bill(self, tier: str, payload: dict[str, Any]) -> None:
        """Add an answered request's usage (OpenAI or Anthropic shape) to the tier's counters."""
        u = payload.get("usage")
        if not isinstance(u, dict):
            return
        c = self.usage.setdefault(tier, Counter())
        c["requests"] += 1
        for name in ("prompt_tokens", "completion_tokens", "input_tokens", "output_tokens"):
            if isinstance(u.get(name), int):
                c[name.replace("prompt", "input").replace("completion", "output")] += u[name]
        details = u.get("prompt_tokens_details")
        if isinstance(details, dict) and details.get("cached_tokens"):
            c["cached_input_tokens"] += int(details["cached_tokens"])
        for name in ("cache_read_input_tokens", "cache_creation_input_tokens"):  # Anthropic's: input too
            if isinstance(u.get(name), int):
                c["input_tokens"] += u[name]
                if name == "cache_read_input_tokens":
                    c["cached_input_tokens"] += u[name]

    def answer_in_batch(self, endpoint: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """One request inside a batch through the same fault machine and reply builder as a live one:
        (status, body). Counted in attempts, prompts and by_model (not in total / by_endpoint, which count
        HTTP requests). A batch has no transport, so rpm and latency do not apply, and the transport faults
        (p_hang, p_reset, p_truncate) and the early misbehaviours become a 500 / 429 for that request."""
        active = self.active
        cfg = active.cfg
        key, attempt, model, (match_text, snippet, full_text) = self._count_prompt(endpoint, body)

        def error(
            status: int, message: str | None = None, code: str | None = None
        ) -> tuple[int, dict[str, Any]]:
            return status, json.loads(_error_body(endpoint, status, message, code))

        if body.get("stream"):
            return error(400, "stream=true is not supported by the fake server")
        misbehaviour = misbehaviour_of(model, cfg)
        if misbehaviour is not None:
            self.faults[misbehaviour[0]] += 1
            name = misbehaviour[0]
            if name in ("ra", "ra_ms") or (name == "ra_once" and attempt == 1):
                return error(429)
            if name in ("deep_json", "deep_json_err"):
                return error(500)
        for sub, status in cfg.fail_keys_containing.items():
            if sub in full_text:
                self.faults["fail_keys_containing"] += 1
                return error(status, f"this prompt always fails with {status} (fake server)")
        fault: str | None = None
        if endpoint in active.fault_endpoints and (cfg.fault_match is None or cfg.fault_match in full_text):
            if attempt <= cfg.fail_first:
                self.faults["fail_first"] += 1
                return error(cfg.fail_status)
            fault = self._draw_fault(active, key, attempt)
        if fault is not None:
            self.faults[fault] += 1
            if fault == "p429":
                return error(429)
            if fault == "p429_quota":
                return error(429, QUOTA_MESSAGE, "insufficient_quota")
            if fault in ("p500", "p503", "p529"):
                return error(int(fault[1:]))
            if fault in ("p_hang", "p_reset", "p_truncate"):
                return error(500)
        self.req_seq += 1
        return 200, _answer(endpoint, body, active, match_text, snippet, fault, misbehaviour, self.req_seq)

    def _count_prompt(
        self, endpoint: str, body: dict[str, Any]
    ) -> tuple[str, int, str, tuple[str, str, str]]:
        """Count one generation request, live or inside a batch, by prompt and by model: (prompt key,
        its attempt number, model, (match text, snippet, full text))."""
        key = prompt_key(body)
        self.attempts[key] += 1
        texts = match_text, _, full_text = prompt_texts(endpoint, body)
        if key not in self.prompts:
            recorded = full_text[-PROMPT_TEXT_CHARS:] if endpoint == COMPLETIONS else match_text[:300]
            self.prompts[key] = recorded
        model = body.get("model")
        model = model if isinstance(model, str) else ""
        self.by_model[model] += 1
        return key, self.attempts[key], model, texts

    @staticmethod
    def _draw_fault(active: Active, key: str, attempt: int) -> str | None:
        """The seeded fault (p429, p500, p_hang, ...) of this attempt at this prompt, or None."""
        u = draws(active.cfg.seed, key, attempt)[0]
        return next((name for edge, name in active.edges if u < edge), None)

    def _misbehave_early(
        self, endpoint: str, misbehaviour: tuple[str, str], attempt: int
    ) -> web.Response | None:
        """The misbehaviours that replace the answer (429s, deep JSON); None for those that bend it."""
        name, arg = misbehaviour
        if name in ("ra", "ra_ms") or (name == "ra_once" and attempt == 1):
            value = RETRY_AFTER_DATE_2100 if arg == "date2100" else arg
            header = "retry-after-ms" if name == "ra_ms" else "retry-after"
            return self._error(endpoint, 429, headers={header: value})
        if name in ("deep_json", "deep_json_err"):
            status = 200 if name == "deep_json" else 500
            self.by_status[status] += 1
            depth = 200_000 if name == "deep_json" else 30_000
            return web.Response(status=status, body=b"[" * depth, content_type="application/json")
        return None

    async def _drip(
        self,
        request: web.Request,
        data: bytes,
        headers: Mapping[str, str],
        every_s: float,
        *,
        chunk: int = 1,
        chunked: bool = False,
    ) -> web.StreamResponse:
        """A 200 whose body comes `chunk` bytes every `every_s` seconds (a broken proxy trickling bytes);
        `chunked`: without Content-Length (chunked transfer encoding)."""
        resp = web.StreamResponse(status=200, headers=headers)
        resp.content_type = "application/json"
        if chunked:
            resp.enable_chunked_encoding()
        else:
            resp.content_length = len(data)
        await resp.prepare(request)
        for i in range(0, len(data), chunk):
            await resp.write(data[i : i + chunk])
            await asyncio.sleep(every_s)
        self.by_status[200] += 1
        return resp

    async def _sleep_latency(self, active: Active, key: str, attempt: int) -> None:
        lo, hi = active.latency
        if hi <= 0:
            return
        delay = lo if hi == lo else lo + (hi - lo) * draws(active.cfg.seed, key, attempt)[1]
        await asyncio.sleep(delay)


def build_app(state: State) -> web.Application:
    """The route table. A new endpoint group (files, batches) adds its routes here as a block of its own."""
    app = web.Application(client_max_size=256 * 1024 * 1024)
    # Generation (OpenAI chat and completions, Anthropic Messages): one handler, one fault machine.
    for path in GENERATION_ENDPOINTS:
        app.router.add_post(path, state.handle_generate)
    app.router.add_get(MODELS, state.handle_models)
    # Batches (OpenAI Files + Batches, Anthropic Message Batches): `batches.py`.
    b = state.batches_api
    app.router.add_post(endpoints.FILES, b(lambda x: x.file_create))
    app.router.add_get(endpoints.FILE, b(lambda x: x.file_get))
    app.router.add_get(endpoints.FILE_CONTENT, b(lambda x: x.file_content))
    app.router.add_post(endpoints.BATCHES, b(lambda x: x.openai_create))
    app.router.add_get(endpoints.BATCHES, b(lambda x: x.openai_list))
    app.router.add_get(endpoints.BATCH, b(lambda x: x.openai_get))
    app.router.add_post(endpoints.BATCH_CANCEL, b(lambda x: x.openai_cancel))
    app.router.add_post(endpoints.MESSAGE_BATCHES, b(lambda x: x.anthropic_create))
    app.router.add_get(endpoints.MESSAGE_BATCHES, b(lambda x: x.anthropic_list))
    app.router.add_get(endpoints.MESSAGE_BATCH, b(lambda x: x.anthropic_get))
    app.router.add_post(endpoints.MESSAGE_BATCH_CANCEL, b(lambda x: x.anthropic_cancel))
    app.router.add_get(endpoints.MESSAGE_BATCH_RESULTS, b(lambda x: x.anthropic_results))
    # Control (tests and benchmarks).
    app.router.add_get("/_stats", state.handle_stats)
    app.router.add_get("/_config", state.handle_config)
    app.router.add_post("/_config", state.handle_config)
    app.router.add_post("/_reset", state.handle_reset)
    return app


async def start_runner(state: State, host: str, port: int) -> tuple[web.AppRunner, int]:
    if host not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError("the fake server binds to loopback only")
    runner = web.AppRunner(
        build_app(state),
        access_log=None,
        handler_cancellation=True,
        shutdown_timeout=0.5,
        keepalive_timeout=75.0,
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=4096, reuse_address=True)
    await site.start()
    return runner, int(runner.addresses[0][1])


async def shutdown(state: State, runner: web.AppRunner) -> None:
    for task in list(state.tasks):
        task.cancel()
    await runner.cleanup()


async def serve(
    config: FakeConfig, host: str = "127.0.0.1", port: int = 0, *, ready: Callable[[str], None] | None = None
) -> None:
    """Serve until SIGINT/SIGTERM (or cancellation); `ready(url)` is called once listening."""
    state = State(config)
    runner, bound = await start_runner(state, host, port)
    shown_host = f"[{host}]" if ":" in host else host
    url = f"http://{shown_host}:{bound}"
    (ready or _print_listening)(url)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await shutdown(state, runner)


def _print_listening(url: str) -> None:
    sys.stdout.write(f"listening on {url}\n")
    sys.stdout.flush()
