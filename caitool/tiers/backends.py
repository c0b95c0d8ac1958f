"""The two batch APIs behind one shape: submit, poll, fetch results, find a lost batch, cancel.

- OpenAI (and any OpenAI-compatible `--base-url` that implements them): Files + Batches. The requests go up
  as a JSONL file; `metadata` carries the ledger intent's id and request hash, so a batch whose creation the
  ledger missed (a crash between create and the ledger write) is found again by `batches.list()`.
- A folder (`CAITOOL_BATCH_DIR`), for servers without a batch API (`vllm run-batch`): a batch is written
  as `DIR/<intent>.jsonl` in OpenAI's batch input format, and has ended once `DIR/<intent>.output.jsonl`
  (OpenAI's output format, which `vllm run-batch -o` writes) is there (`caitool batches import` puts it
  there from a results file).
- Anthropic: Message Batches. No metadata: a lost batch is found by creation time (after its intent) and
  request count; more than one such batch is ambiguous and the caller refuses to guess.

Every SDK failure becomes a `ProviderError` with `retryable` set, as the live adapters do.
"""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from caitool.console import warn
from caitool.errors import ProviderError
from caitool.providers._http import status_error

# Provider limits per batch: (requests, bytes of the request file / body).
OPENAI_LIMITS = (50_000, 200 * 1024 * 1024)
ANTHROPIC_LIMITS = (100_000, 256 * 1024 * 1024)
# How far before its intent's time a lost batch may have been created (clock skew between us and the API).
CLOCK_SLACK_S = 120.0


@dataclass(frozen=True)
class Polled:
    batch_id: str
    ended: bool
    status: str
    counts: dict[str, int]
    files: tuple[str | None, str | None] = (None, None)  # OpenAI output and error file ids
    failure: str | None = None  # OpenAI: why the whole batch failed validation


@dataclass(frozen=True)
class Outcome:
    """One request's result: "ok" (payload = the response body), "error" (status, payload = the error),
    "expired", "cancelled", "missing" (the batch ended without a line for it), or "raised" (payload = the
    `ProviderError` of the batch's upload or creation)."""

    kind: str
    status: int | None = None
    payload: Any = None


@dataclass(frozen=True)
class Candidate:
    batch_id: str
    created_at: float
    requests: int
    status: str


class Backend(Protocol):
    kind: str
    limits: tuple[int, int]

    def encode(self, custom_id: str, endpoint: str, body: bytes) -> bytes:
        """One request as the batch input carries it; `body` is its JSON already (`encode_body`)."""
        ...

    async def submit(
        self, endpoint: str, items: list[tuple[str, bytes]], metadata: dict[str, str]
    ) -> tuple[str, str | None]: ...

    async def poll(self, batch_id: str) -> Polled: ...

    async def results(self, polled: Polled) -> dict[str, Outcome]: ...

    async def find(self, intent: dict[str, Any], known: set[str]) -> list[Candidate]: ...

    async def list(self, limit: int) -> list[Candidate]: ...

    async def cancel(self, batch_id: str) -> str: ...

    async def aclose(self) -> None: ...


def openai_line(custom_id: str, endpoint: str, body: bytes) -> bytes:
    """One line of an OpenAI batch input file (also `vllm run-batch`'s); `body` is the request's JSON."""
    head = {"custom_id": custom_id, "method": "POST", "url": endpoint}
    return json.dumps(head, separators=(",", ":")).encode()[:-1] + b',"body":' + body + b"}"


def _when(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value or 0)


class OpenAIBatches:
    kind = "openai"
    limits = OPENAI_LIMITS

    def __init__(self, sdk: Any, redact: Any) -> None:
        import openai

        self._oa = openai
        self.sdk = sdk
        self._redact = redact

    async def _call(self, what: str, coro: Any) -> Any:
        oa = self._oa
        try:
            return await coro
        except oa.APIStatusError as exc:
            err = status_error("openai", exc.status_code, f"{what}: {exc.message}", exc.response.headers)
            err.args = (self._redact(str(err)),)
            raise err from None
        except (oa.APITimeoutError, oa.APIConnectionError) as exc:
            msg = self._redact(f"openai: {what}: {type(exc).__name__}: {exc}")
            raise ProviderError(msg, retryable=True) from None

    def encode(self, custom_id: str, endpoint: str, body: bytes) -> bytes:
        return openai_line(custom_id, endpoint, body)

    async def submit(
        self, endpoint: str, items: list[tuple[str, bytes]], metadata: dict[str, str]
    ) -> tuple[str, str | None]:
        data = b"\n".join(line for _, line in items) + b"\n"
        upload = self.sdk.files.create(file=("caitool-batch.jsonl", io.BytesIO(data)), purpose="batch")
        f = await self._call("file upload", upload)
        create = self.sdk.batches.create(
            input_file_id=f.id, endpoint=endpoint, completion_window="24h", metadata=metadata
        )
        batch = await self._call("batch create", create)
        return str(batch.id), str(f.id)

    async def poll(self, batch_id: str) -> Polled:
        b = await self._call("batch retrieve", self.sdk.batches.retrieve(batch_id))
        rc = b.request_counts
        counts = {"total": rc.total, "completed": rc.completed, "failed": rc.failed} if rc else {}
        failure = None
        if b.status == "failed" and b.errors is not None and b.errors.data:
            failure = "; ".join(f"{e.code}: {e.message}" for e in b.errors.data[:3])
        return Polled(
            batch_id,
            b.status in ("completed", "failed", "expired", "cancelled"),
            str(b.status),
            counts,
            (b.output_file_id, b.error_file_id),
            failure,
        )

    async def results(self, polled: Polled) -> dict[str, Outcome]:
        out: dict[str, Outcome] = {}
        for file_id in polled.files:
            if file_id is None:
                continue
            content = await self._call("result download", self.sdk.files.content(file_id))
            for raw in content.text.splitlines():
                if not raw.strip():
                    continue
                line = json.loads(raw)
                out[str(line["custom_id"])] = _openai_outcome(line)
        return out

    async def find(self, intent: dict[str, Any], known: set[str]) -> list[Candidate]:
        found = []
        page = await self._call("batch list", self.sdk.batches.list(limit=100))
        async for b in page:  # every page, newest first
            if _when(b.created_at) < float(intent["time"]) - CLOCK_SLACK_S:
                break  # newest first: everything further is older than the intent
            if (b.metadata or {}).get("caitool_intent") == intent["id"] and b.id not in known:
                found.append(_openai_candidate(b))
        return found

    async def list(self, limit: int) -> list[Candidate]:
        page = await self._call("batch list", self.sdk.batches.list(limit=min(100, limit)))
        return [_openai_candidate(b) for b in page.data]

    async def cancel(self, batch_id: str) -> str:
        b = await self._call("batch cancel", self.sdk.batches.cancel(batch_id))
        return str(b.status)

    async def aclose(self) -> None:
        await self.sdk.close()


def _openai_candidate(b: Any) -> Candidate:
    total = b.request_counts.total if b.request_counts else 0
    return Candidate(str(b.id), _when(b.created_at), int(total), str(b.status))


def _openai_outcome(line: dict[str, Any]) -> Outcome:
    response, error = line.get("response"), line.get("error")
    if isinstance(response, dict):
        status = int(response.get("status_code") or 0)
        body = response.get("body")
        return Outcome("ok", 200, body) if status == 200 else Outcome("error", status, body)
    code = (error or {}).get("code") if isinstance(error, dict) else None
    if code == "batch_expired":
        return Outcome("expired")
    if code == "batch_cancelled":
        return Outcome("cancelled")
    return Outcome("error", None, error)


class FolderBatches:
    """Batches as files in a folder, answered by whoever writes their output file (see the module docstring).
    The folder is the account: a rerun with another folder is refused like another API key."""

    kind = "folder"
    limits = OPENAI_LIMITS

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder).resolve()
        self.account = f"folder|{self.folder}|-"

    def encode(self, custom_id: str, endpoint: str, body: bytes) -> bytes:
        return openai_line(custom_id, endpoint, body)

    def paths(self, batch_id: str) -> tuple[Path, Path]:
        """(requests, results) of a batch: `DIR/<intent>.jsonl`, `DIR/<intent>.output.jsonl`."""
        name = batch_id.removeprefix("folder:")
        return self.folder / f"{name}.jsonl", self.folder / f"{name}.output.jsonl"

    async def submit(
        self, endpoint: str, items: list[tuple[str, bytes]], metadata: dict[str, str]
    ) -> tuple[str, str | None]:
        batch_id = "folder:" + metadata["caitool_intent"]
        requests, _ = self.paths(batch_id)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = requests.with_name(requests.name + ".tmp")
            tmp.write_bytes(b"\n".join(line for _, line in items) + b"\n")
            os.replace(tmp, requests)
        except OSError as exc:
            raise ProviderError(f"cannot write {requests}: {exc.strerror or exc}", retryable=False) from None
        _, results = self.paths(batch_id)
        warn(
            f"{len(items)} requests written to {requests}; waiting for {results.name} (vllm run-batch -i "
            f"{requests} -o {results} --model MODEL, or caitool batches import). Ctrl-C and rerun to resume."
        )
        return batch_id, str(requests)

    async def poll(self, batch_id: str) -> Polled:
        requests, results = self.paths(batch_id)
        if results.exists():
            return Polled(batch_id, True, "completed", {}, (str(results), None))
        if not requests.exists():
            raise ProviderError(f"{requests} is gone: its batch cannot be answered", retryable=False)
        return Polled(batch_id, False, "waiting for " + results.name, {})

    async def results(self, polled: Polled) -> dict[str, Outcome]:
        out: dict[str, Outcome] = {}
        _, results = self.paths(polled.batch_id)
        for raw in results.read_text(encoding="utf-8").splitlines():
            if raw.strip():
                line = json.loads(raw)
                out[str(line["custom_id"])] = _openai_outcome(line)
        return out

    async def find(self, intent: dict[str, Any], known: set[str]) -> list[Candidate]:
        batch_id = "folder:" + str(intent["id"])
        requests, _ = self.paths(batch_id)
        if batch_id in known or not requests.exists():
            return []
        return [Candidate(batch_id, requests.stat().st_mtime, int(intent["n"]), "waiting")]

    async def list(self, limit: int) -> list[Candidate]:
        return []

    async def cancel(self, batch_id: str) -> str:
        requests, _ = self.paths(batch_id)
        requests.unlink(missing_ok=True)
        return "cancelled (its requests file removed)"

    async def aclose(self) -> None:
        return None


class AnthropicBatches:
    kind = "anthropic"
    limits = ANTHROPIC_LIMITS

    def __init__(self, sdk: Any, redact: Any) -> None:
        import anthropic

        self._an = anthropic
        self.sdk = sdk
        self._redact = redact

    async def _call(self, what: str, coro: Any) -> Any:
        an = self._an
        try:
            return await coro
        except an.APIStatusError as exc:
            err = status_error("anthropic", exc.status_code, f"{what}: {exc.message}", exc.response.headers)
            err.args = (self._redact(str(err)),)
            raise err from None
        except (an.APITimeoutError, an.APIConnectionError) as exc:
            msg = self._redact(f"anthropic: {what}: {type(exc).__name__}: {exc}")
            raise ProviderError(msg, retryable=True) from None

    def encode(self, custom_id: str, endpoint: str, body: bytes) -> bytes:
        return b'{"custom_id":' + json.dumps(custom_id).encode() + b',"params":' + body + b"}"

    async def submit(
        self, endpoint: str, items: list[tuple[str, bytes]], metadata: dict[str, str]
    ) -> tuple[str, str | None]:
        requests = [json.loads(line) for _, line in items]
        batch = await self._call("batch create", self.sdk.messages.batches.create(requests=requests))
        return str(batch.id), None

    async def poll(self, batch_id: str) -> Polled:
        b = await self._call("batch retrieve", self.sdk.messages.batches.retrieve(batch_id))
        counts = b.request_counts.model_dump() if b.request_counts is not None else {}
        return Polled(batch_id, b.processing_status == "ended", str(b.processing_status), counts)

    async def results(self, polled: Polled) -> dict[str, Outcome]:
        out: dict[str, Outcome] = {}
        stream = await self._call("results", self.sdk.messages.batches.results(polled.batch_id))
        async for r in stream:
            res = r.result
            if res.type == "succeeded":
                out[r.custom_id] = Outcome("ok", 200, res.message.model_dump(mode="json"))
            elif res.type == "errored":
                err = res.error.model_dump(mode="json")
                out[r.custom_id] = Outcome("error", _anthropic_status(err), err)
            elif res.type == "expired":
                out[r.custom_id] = Outcome("expired")
            else:
                out[r.custom_id] = Outcome("cancelled")
        return out

    async def find(self, intent: dict[str, Any], known: set[str]) -> list[Candidate]:
        found = []
        page = await self._call("batch list", self.sdk.messages.batches.list(limit=100))
        async for b in page:  # every page, newest first
            c = _anthropic_candidate(b)
            if c.created_at < float(intent["time"]) - CLOCK_SLACK_S:
                break  # newest first
            if c.requests == int(intent["n"]) and c.batch_id not in known:
                found.append(c)
        return found

    async def list(self, limit: int) -> list[Candidate]:
        page = await self._call("batch list", self.sdk.messages.batches.list(limit=min(100, limit)))
        return [_anthropic_candidate(b) for b in page.data]

    async def cancel(self, batch_id: str) -> str:
        b = await self._call("batch cancel", self.sdk.messages.batches.cancel(batch_id))
        return str(b.processing_status)

    async def aclose(self) -> None:
        await self.sdk.close()


def _anthropic_candidate(b: Any) -> Candidate:
    total = sum(int(v or 0) for v in b.request_counts.model_dump().values()) if b.request_counts else 0
    return Candidate(str(b.id), _when(b.created_at), total, str(b.processing_status))


# An errored Anthropic result names its error type, not an HTTP status: the status the live API would have
# answered, so the retry layer treats it the same way.
_ANTHROPIC_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}


def _anthropic_status(err: Any) -> int | None:
    inner = err.get("error") if isinstance(err, dict) else None
    kind = (inner if isinstance(inner, dict) else err or {}).get("type")
    return _ANTHROPIC_STATUS.get(str(kind), 500)
