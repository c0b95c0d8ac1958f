"""Batch APIs: OpenAI Files + Batches and Anthropic Message Batches, their store, lifecycle and handlers.

A batch is created `in_progress`; `batch_delay_s` after creation a task answers each of its requests
through `State.answer_in_batch` (the live endpoints' fault machine and reply builder, so log-probs, answer
styles and faults apply), then the batch ends. Per request: a custom_id in `batch_expire`, or a seeded
`p_batch_expire` draw, expires it; `batch_fail` (custom_id -> status) fails it; the others get whatever the
live endpoint would answer (a 200 or an error). Cancelling answers "cancelling" / "canceling" and leaves the
unanswered requests cancelled. OpenAI: a batch with expired requests ends `expired`, others `completed`;
results go to an output file (status 200) and an error file (the rest), one JSONL line per custom_id.
Anthropic: `ended`, results at `results_url` with `result.type` succeeded / errored / canceled / expired.

`batch_hang` (stage -> seconds) stalls an answer for crash tests: "upload" before a file is stored,
"create" after the batch exists, "results" before results are served.

Files and batches belong to the API key that created them (sha256, the key itself is never kept): another
key gets a 404, as on a real account. `reset()` drops them all.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import anthropic_api, openai_api
from .endpoints import CHAT, COMPLETIONS, MESSAGES
from .faults import draws
from .request import api_key

if TYPE_CHECKING:
    from .server import State

EXPIRY_S = 24 * 3600
OPENAI_BATCH_ENDPOINTS = (CHAT, COMPLETIONS)
OPENAI_MAX_REQUESTS = 50_000
ANTHROPIC_MAX_REQUESTS = 100_000
ANTHROPIC_CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
YIELD_EVERY = 200  # requests answered between yields to the event loop

EXPIRED_MESSAGE = "This request could not be executed before the completion window expired."
CANCELLED_MESSAGE = "This request was not executed because the batch was cancelled."


@dataclass
class StoredFile:
    id: str
    owner: str
    purpose: str
    filename: str
    data: bytes
    created_at: int

    def wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.data),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "expires_at": None,
            "status_details": None,
        }


@dataclass
class Batch:
    id: str
    api: str  # "openai" or "anthropic"
    owner: str
    endpoint: str  # the generation endpoint its requests go to
    requests: list[tuple[str, dict[str, Any]]]  # (custom_id, body)
    created_at: float
    metadata: dict[str, str] | None = None
    input_file_id: str | None = None
    status: str = "in_progress"  # OpenAI spelling; Anthropic's is derived
    # custom_id -> ("ok" | "error" | "expired" | "cancelled", status, body)
    results: dict[str, tuple[str, int, dict[str, Any] | None]] = field(default_factory=dict)
    ended_at: float | None = None
    cancel_at: float | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    failure: list[dict[str, Any]] | None = None  # OpenAI validation errors (status "failed")

    def counts(self) -> Counter[str]:
        return Counter(kind for kind, _, _ in self.results.values())


def _owner(request: web.Request) -> str:
    return hashlib.sha256((api_key(request) or "").encode()).hexdigest()


def _iso(t: float | None) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, UTC).isoformat().replace("+00:00", "Z")


def _int_or_none(t: float | None) -> int | None:
    return None if t is None else int(t)


class Batches:
    """The files and batches of one server, and their handlers (run on the server's event loop)."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.files: dict[str, StoredFile] = {}
        self.batches: dict[str, Batch] = {}
        self.seq = 0
        self.seen: Counter[str] = Counter()  # batches created, per API; requests answered; outcomes

    def stats(self) -> dict[str, Any]:
        return {
            "openai": self.seen["openai"],
            "anthropic": self.seen["anthropic"],
            "requests": self.seen["requests"],
            "answered": self.seen["answered"],
            "errored": self.seen["errored"],
            "expired": self.seen["expired"],
            "cancelled": self.seen["cancelled"],
            "files": len(self.files),
            "hangs": {k[5:]: v for k, v in self.seen.items() if k.startswith("hang_")},
        }

    def _next_id(self, prefix: str) -> str:
        self.seq += 1
        return f"{prefix}{self.seq:08d}"

    # -- lifecycle --------------------------------------------------------------------------------------

    def _start(self, batch: Batch) -> None:
        self.batches[batch.id] = batch
        self.seen[batch.api] += 1
        self.seen["requests"] += len(batch.requests)
        task = asyncio.get_running_loop().create_task(self._run(batch))
        self.state.tasks.add(task)
        task.add_done_callback(self.state.tasks.discard)

    async def _run(self, batch: Batch) -> None:
        await asyncio.sleep(max(0.0, batch.created_at + self.state.active.cfg.batch_delay_s - time.time()))
        cfg = self.state.active.cfg
        for i, (custom_id, body) in enumerate(batch.requests):
            if batch.cancel_at is not None:
                break
            if i and i % YIELD_EVERY == 0:
                await asyncio.sleep(0)
            if custom_id in cfg.batch_expire or (
                cfg.p_batch_expire > 0 and draws(cfg.seed, "expire|" + custom_id, 1)[0] < cfg.p_batch_expire
            ):
                batch.results[custom_id] = ("expired", 0, None)
                self.seen["expired"] += 1
                continue
            if custom_id in cfg.batch_fail:
                status = cfg.batch_fail[custom_id]
                err = _error_json(batch.endpoint, status, f"batch_fail: {custom_id} fails with {status}")
                batch.results[custom_id] = ("error", status, err)
                self.seen["errored"] += 1
                continue
            status, payload = self.state.answer_in_batch(batch.endpoint, body)
            self.seen["answered"] += 1
            if status != 200:
                self.seen["errored"] += 1
            batch.results[custom_id] = ("ok" if status == 200 else "error", status, payload)
        self._finish(batch)

    def _finish(self, batch: Batch) -> None:
        """End the batch: unanswered requests are cancelled; OpenAI output and error files are written."""
        if batch.ended_at is not None:
            return
        for custom_id, _ in batch.requests:
            if custom_id not in batch.results:
                batch.results[custom_id] = ("cancelled", 0, None)
                self.seen["cancelled"] += 1
        batch.ended_at = time.time()
        counts = batch.counts()
        if batch.cancel_at is not None:
            batch.status = "cancelled"
        elif counts["expired"]:
            batch.status = "expired"
        else:
            batch.status = "completed"
        if batch.api == "openai":
            out: list[bytes] = []
            err: list[bytes] = []
            for custom_id, _ in batch.requests:
                kind, status, payload = batch.results[custom_id]
                line = self._openai_line(custom_id, kind, status, payload)
                (out if kind == "ok" else err).append(line)
            if out:
                batch.output_file_id = self._store_file(batch.owner, "batch_output", out)
            if err:
                batch.error_file_id = self._store_file(batch.owner, "batch_output", err)

    def _openai_line(self, custom_id: str, kind: str, status: int, payload: dict[str, Any] | None) -> bytes:
        line: dict[str, Any] = {"id": self._next_id("batch_req_fake_"), "custom_id": custom_id}
        if kind in ("ok", "error"):
            rid = self._next_id("req_fake_batch_")
            line["response"] = {"status_code": status, "request_id": rid, "body": payload}
            line["error"] = None
        else:
            code, message = (
                ("batch_expired", EXPIRED_MESSAGE)
                if kind == "expired"
                else ("batch_cancelled", CANCELLED_MESSAGE)
            )
            line["response"] = None
            line["error"] = {"code": code, "message": message}
        return json.dumps(line).encode()

    def _store_file(self, owner: str, purpose: str, lines: list[bytes]) -> str:
        fid = self._next_id("file-fake")
        self.files[fid] = StoredFile(
            fid, owner, purpose, fid + ".jsonl", b"\n".join(lines) + b"\n", int(time.time())
        )
        return fid

    def _cancel(self, batch: Batch) -> None:
        if batch.ended_at is None and batch.cancel_at is None:
            batch.cancel_at = time.time()
            self._finish(batch)  # the answering task stops at its next request

    # -- OpenAI wire shapes -----------------------------------------------------------------------------

    def _openai_batch(self, batch: Batch, status: str | None = None) -> dict[str, Any]:
        counts = batch.counts()
        ended = batch.ended_at
        usage_in = usage_out = 0
        for kind, _, payload in batch.results.values():
            if kind == "ok" and payload and isinstance(payload.get("usage"), dict):
                usage_in += int(payload["usage"].get("prompt_tokens", 0))
                usage_out += int(payload["usage"].get("completion_tokens", 0))
        return {
            "id": batch.id,
            "object": "batch",
            "endpoint": batch.endpoint,
            "model": None,
            "errors": {"object": "list", "data": batch.failure} if batch.failure else None,
            "input_file_id": batch.input_file_id,
            "completion_window": "24h",
            "status": status or batch.status,
            "output_file_id": batch.output_file_id,
            "error_file_id": batch.error_file_id,
            "created_at": int(batch.created_at),
            "in_progress_at": None if batch.failure else int(batch.created_at),
            "expires_at": int(batch.created_at) + EXPIRY_S,
            "finalizing_at": _int_or_none(ended if batch.status == "completed" else None),
            "completed_at": _int_or_none(ended if batch.status == "completed" else None),
            "failed_at": _int_or_none(ended if batch.status == "failed" else None),
            "expired_at": _int_or_none(ended if batch.status == "expired" else None),
            "cancelling_at": _int_or_none(batch.cancel_at),
            "cancelled_at": _int_or_none(ended if batch.status == "cancelled" else None),
            "request_counts": {
                "total": len(batch.requests),
                "completed": counts["ok"],
                "failed": counts["error"] + counts["expired"] + counts["cancelled"],
            },
            "usage": {
                "input_tokens": usage_in,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": usage_out,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": usage_in + usage_out,
            },
            "metadata": batch.metadata,
        }

    # -- Anthropic wire shapes --------------------------------------------------------------------------

    def _anthropic_batch(self, batch: Batch, request: web.Request, canceling: bool = False) -> dict[str, Any]:
        counts = batch.counts()
        ended = batch.ended_at is not None and not canceling
        processing = "canceling" if canceling else ("ended" if ended else "in_progress")
        return {
            "id": batch.id,
            "type": "message_batch",
            "processing_status": processing,
            "request_counts": {
                "processing": 0 if ended else len(batch.requests),
                "succeeded": counts["ok"] if ended else 0,
                "errored": counts["error"] if ended else 0,
                "canceled": counts["cancelled"] if ended else 0,
                "expired": counts["expired"] if ended else 0,
            },
            "created_at": _iso(batch.created_at),
            "expires_at": _iso(batch.created_at + EXPIRY_S),
            "ended_at": _iso(batch.ended_at) if ended else None,
            "cancel_initiated_at": _iso(batch.cancel_at),
            "archived_at": None,
            "results_url": f"{request.url.origin()}/v1/messages/batches/{batch.id}/results"
            if ended
            else None,
        }

    def _anthropic_result(self, custom_id: str, kind: str, payload: dict[str, Any] | None) -> bytes:
        result: dict[str, Any]
        if kind == "ok":
            result = {"type": "succeeded", "message": payload}
        elif kind == "error":
            result = {"type": "errored", "error": payload}
        else:
            result = {"type": "expired" if kind == "expired" else "canceled"}
        return json.dumps({"custom_id": custom_id, "result": result}).encode()

    # -- handlers ---------------------------------------------------------------------------------------

    def _guard(self, request: web.Request, endpoint: str) -> web.Response | None:
        """Count the request; a 401 when `require_key` is set and not given."""
        st = self.state
        st.total += 1
        resource = request.match_info.route.resource
        st.by_endpoint[resource.canonical if resource is not None else request.path] += 1
        required = st.active.cfg.require_key
        if required is not None and api_key(request) != required:
            st.faults["require_key"] += 1
            return self._fail(endpoint, 401)
        return None

    def _fail(self, endpoint: str, status: int, message: str | None = None) -> web.Response:
        self.state.by_status[status] += 1
        body = (anthropic_api if endpoint == MESSAGES else openai_api).error_body(status, message)
        return web.Response(status=status, body=body, content_type="application/json")

    def _ok(self, payload: Any) -> web.Response:
        self.state.by_status[200] += 1
        return web.json_response(payload)

    def _jsonl(self, data: bytes) -> web.Response:
        self.state.by_status[200] += 1
        return web.Response(body=data, content_type="application/jsonl")

    async def _hang(self, stage: str) -> None:
        """`batch_hang[stage]` seconds of nothing (a crash test kills its client meanwhile); counted."""
        seconds = self.state.active.cfg.batch_hang.get(stage, 0.0)
        if seconds > 0:
            self.seen["hang_" + stage] += 1
            await asyncio.sleep(seconds)

    def _owned_batch(self, request: web.Request, api: str) -> Batch | None:
        batch = self.batches.get(request.match_info["id"])
        if batch is None or batch.api != api or batch.owner != _owner(request):
            return None
        return batch

    async def file_create(self, request: web.Request) -> web.Response:
        if (denied := self._guard(request, CHAT)) is not None:
            return denied
        try:
            form = await request.post()
        except ValueError:
            return self._fail(CHAT, 400, "expected a multipart/form-data body with 'file' and 'purpose'")
        upload, purpose = form.get("file"), form.get("purpose")
        if not isinstance(upload, web.FileField) or not isinstance(purpose, str):
            return self._fail(CHAT, 400, "expected a multipart/form-data body with 'file' and 'purpose'")
        if purpose != "batch":
            return self._fail(CHAT, 400, f"the fake server stores only purpose=batch files, got {purpose!r}")
        await self._hang("upload")
        fid = self._next_id("file-fake")
        data = upload.file.read()
        self.files[fid] = StoredFile(fid, _owner(request), purpose, upload.filename, data, int(time.time()))
        return self._ok(self.files[fid].wire())

    def _owned_file(self, request: web.Request) -> StoredFile | None:
        f = self.files.get(request.match_info["id"])
        return f if f is not None and f.owner == _owner(request) else None

    async def file_get(self, request: web.Request) -> web.Response:
        if (denied := self._guard(request, CHAT)) is not None:
            return denied
        f = self._owned_file(request)
        return self._ok(f.wire()) if f is not None else self._fail(CHAT, 404, "No such file (fake server)")

    async def file_content(self, request: web.Request) -> web.Response:
        if (denied := self._guard(request, CHAT)) is not None:
            return denied
        f = self._owned_file(request)
        if f is None:
            return self._fail(CHAT, 404, "No such file (fake server)")
        if f.purpose == "batch_output":
            await self._hang("results")
        return self._jsonl(f.data)

    async def openai_create(self, request: web.Request) -> web.Response:
        if (denied := self._guard(request, CHAT)) is not None:
            return denied
        try:
            body = json.loads(await request.read())
        except ValueError:
            return self._fail(CHAT, 400, "the request body is not valid JSON")
        if not isinstance(body, dict):
            return self._fail(CHAT, 400, "the request body must be a JSON object")
        endpoint, window, fid = body.get("endpoint"), body.get("completion_window"), body.get("input_file_id")
        metadata = body.get("metadata")
        if endpoint not in OPENAI_BATCH_ENDPOINTS:
            return self._fail(CHAT, 400, f"endpoint must be one of {', '.join(OPENAI_BATCH_ENDPOINTS)} here")
        if window != "24h":
            return self._fail(CHAT, 400, "completion_window must be '24h'")
        if metadata is not None and (
            not isinstance(metadata, dict)
            or len(metadata) > 16
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
        ):
            return self._fail(CHAT, 400, "metadata must be at most 16 string -> string pairs")
        f = self.files.get(fid) if isinstance(fid, str) else None
        if f is None or f.owner != _owner(request):
            return self._fail(CHAT, 404, f"No such file: {fid!r} (fake server)")
        requests, failure = _parse_openai_input(f.data, endpoint)
        batch = Batch(
            self._next_id("batch_fake"), "openai", f.owner, endpoint, requests, time.time(), metadata, f.id
        )
        if failure:
            batch.failure, batch.status, batch.ended_at = failure, "failed", batch.created_at
            self.batches[batch.id] = batch
            self.seen["openai"] += 1
        else:
            self._start(batch)
        await self._hang("create")
        return self._ok(self._openai_batch(batch))

    async def openai_get(self, request: web.Request) -> web.Response:
        if (denied := self._guard(request, CHAT)) is not None:
            return denied
        batch = self._owned_batch(request, "openai")
        return self._ok(self._openai_batch(batch)) if batch else self._fail(CHAT, 404, "No such batch")

    async def openai_cancel(self, request: web.Request) -> web.Response:
        if (denied := self._guard(request, CHAT)) is not None:
            return denied
        batch = self._owned_batch(request, "openai")
        if batch is None:
            return self._fail(CHAT, 404, "No such batch")
        if batch.ended_at is not None and batch.cancel_at is None:
            return self._fail(CHAT, 409, f"Cannot cancel a batch with status {batch.status!r}")
        self._cancel(batch)
        return self._ok(self._openai_batch(batch, status="cancelling"))

    async def openai_list(self, request: web.Request) -> web.Response:
        if (denied := self._guard(request, CHAT)) is not None:
            return denied
        owned = [
            b for b in reversed(self.batches.values()) if b.api == "openai" and b.owner == _owner(request)
        ]
        page, has_more = _page(owned, request.query.get("after"), request.query.get("limit"), 20)
        data = [self._openai_batch(b) for b in page]
        first, last = (data[0]["id"], data[-1]["id"]) if data else (None, None)
        return self._ok(
            {"object": "list", "data": data, "first_id": first, "last_id": last, "has_more": has_more}
        )

    async def anthropic_create(self, request: web.Request) -> web.Response:
        if (denied := self._guard(request, MESSAGES)) is not None:
            return denied
        try:
            body = json.loads(await request.read())
        except ValueError:
            return self._fail(MESSAGES, 400, "the request body is not valid JSON")
        reqs = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(reqs, list) or not reqs or len(reqs) > ANTHROPIC_MAX_REQUESTS:
            return self._fail(
                MESSAGES, 400, f"requests must be a list of 1..{ANTHROPIC_MAX_REQUESTS} requests"
            )
        requests: list[tuple[str, dict[str, Any]]] = []
        seen: set[str] = set()
        for i, r in enumerate(reqs):
            cid = r.get("custom_id") if isinstance(r, dict) else None
            params = r.get("params") if isinstance(r, dict) else None
            if not isinstance(cid, str) or not ANTHROPIC_CUSTOM_ID.match(cid) or not isinstance(params, dict):
                return self._fail(
                    MESSAGES, 400, f"requests.{i}: needs custom_id ([a-zA-Z0-9_-]{{1,64}}) and params"
                )
            if cid in seen:
                return self._fail(MESSAGES, 400, f"requests.{i}: duplicate custom_id {cid!r}")
            seen.add(cid)
            requests.append((cid, params))
        batch = Batch(
            self._next_id("msgbatch_fake"), "anthropic", _owner(request), MESSAGES, requests, time.time()
        )
        self._start(batch)
        await self._hang("create")
        return self._ok(self._anthropic_batch(batch, request))

    async def anthropic_get(self, request: web.Request) -> web.Response:
        if (denied := self._guard(request, MESSAGES)) is not None:
            return denied
        batch = self._owned_batch(request, "anthropic")
        if batch is None:
            return self._fail(MESSAGES, 404, "No such message batch")
        return self._ok(self._anthropic_batch(batch, request))

    async def anthropic_cancel(self, request: web.Request) -> web.Response:
        if (denied := self._guard(request, MESSAGES)) is not None:
            return denied
        batch = self._owned_batch(request, "anthropic")
        if batch is None:
            return self._fail(MESSAGES, 404, "No such message batch")
        was_running = batch.ended_at is None
        self._cancel(batch)
        return self._ok(self._anthropic_batch(batch, request, canceling=was_running))

    async def anthropic_results(self, request: web.Request) -> web.Response:
        if (denied := self._guard(request, MESSAGES)) is not None:
            return denied
        batch = self._owned_batch(request, "anthropic")
        if batch is None:
            return self._fail(MESSAGES, 404, "No such message batch")
        if batch.ended_at is None:
            return self._fail(MESSAGES, 400, "the batch has not ended yet; its results are not available")
        await self._hang("results")
        lines = [self._anthropic_result(cid, *batch.results[cid][::2]) for cid, _ in batch.requests]
        return self._jsonl(b"\n".join(lines) + b"\n")

    async def anthropic_list(self, request: web.Request) -> web.Response:
        if (denied := self._guard(request, MESSAGES)) is not None:
            return denied
        owned = [
            b for b in reversed(self.batches.values()) if b.api == "anthropic" and b.owner == _owner(request)
        ]
        page, has_more = _page(owned, request.query.get("after_id"), request.query.get("limit"), 20)
        data = [self._anthropic_batch(b, request) for b in page]
        first, last = (data[0]["id"], data[-1]["id"]) if data else (None, None)
        return self._ok({"data": data, "has_more": has_more, "first_id": first, "last_id": last})


def _error_json(endpoint: str, status: int, message: str) -> dict[str, Any]:
    body = (anthropic_api if endpoint == MESSAGES else openai_api).error_body(status, message)
    parsed: dict[str, Any] = json.loads(body)
    return parsed


def _page(items: list[Batch], after: str | None, limit: str | None, default: int) -> tuple[list[Batch], bool]:
    """Newest first; the items after the one with id `after`, at most `limit` (1..100) of them."""
    n = min(100, max(1, int(limit))) if limit and limit.isdigit() else default
    start = 0
    if after:
        ids = [b.id for b in items]
        start = ids.index(after) + 1 if after in ids else len(items)
    page = items[start : start + n]
    return page, start + n < len(items)


def _parse_openai_input(
    data: bytes, endpoint: str
) -> tuple[list[tuple[str, dict[str, Any]]], list[dict[str, Any]]]:
    """The (custom_id, body) requests of an OpenAI batch input file, and the validation errors (which fail
    the batch, as on the real API: one per bad line, with its 1-based line number)."""
    requests: list[tuple[str, dict[str, Any]]] = []
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()

    def bad(line: int, code: str, message: str) -> None:
        errors.append({"code": code, "line": line, "message": message, "param": None})

    lines = [ln for ln in data.decode("utf-8", "replace").splitlines()]
    for n, text in enumerate(lines, 1):
        if not text.strip():
            continue
        try:
            item = json.loads(text)
        except ValueError:
            bad(n, "invalid_json_line", "This line is not parseable as valid JSON.")
            continue
        if not isinstance(item, dict):
            bad(n, "invalid_request", "Each line must be a JSON object.")
            continue
        cid, body = item.get("custom_id"), item.get("body")
        if not isinstance(cid, str) or not cid:
            bad(n, "missing_custom_id", "The custom_id for this request is missing.")
        elif cid in seen:
            bad(n, "duplicate_custom_id", f"The custom_id {cid!r} is used more than once.")
        elif item.get("method") != "POST":
            bad(n, "invalid_method", "The method must be POST.")
        elif item.get("url") != endpoint:
            bad(
                n,
                "mismatched_endpoint",
                f"The url {item.get('url')!r} does not match the batch's {endpoint}.",
            )
        elif not isinstance(body, dict):
            bad(n, "invalid_request", "The body must be a JSON object.")
        else:
            seen.add(cid)
            requests.append((cid, body))
    if not requests and not errors:
        bad(1, "empty_file", "The input file has no requests.")
    if len(requests) > OPENAI_MAX_REQUESTS:
        bad(
            OPENAI_MAX_REQUESTS + 1, "too_many_requests", f"At most {OPENAI_MAX_REQUESTS} requests per batch."
        )
    return requests, errors
