"""What `caitool batches` does with a run's batch ledger: list its batches, show one (with the provider's
current status), cancel the unfinished ones, or adopt a batch by hand when a lost batch was ambiguous.

Listing reads the ledger only. Showing live status and cancelling call the provider, with the key from
--api-key or the environment and the base URL the batches were sent to (from the ledger's account); a key of
another account is refused, as a resumed run would refuse it.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from caitool.errors import UsageError
from caitool.store import RunFiles
from caitool.tiers.backends import Backend, FolderBatches
from caitool.tiers.ledger import BatchEntry, BatchLedger, read_ledger


@dataclass(frozen=True)
class BatchRow:
    """One batch of a ledger, as `caitool batches list` shows it."""

    intent: str
    spec: str
    batch_id: str | None
    requests: int
    state: str  # intent, submitted, ended, ingested, abandoned
    status: str | None  # the provider's, once ended
    created: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "intent": self.intent,
            "spec": self.spec,
            "batch_id": self.batch_id,
            "requests": self.requests,
            "state": self.state,
            "status": self.status,
            "created": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.created)),
        }


def entries(output: str) -> list[BatchEntry]:
    path = RunFiles.for_output(output).batches
    if path is None or not path.exists():
        raise UsageError(f"{output}: no batch ledger ({output}.batches.jsonl): was it run with --tier batch?")
    return read_ledger(path)


def rows(output: str) -> list[BatchRow]:
    return [
        BatchRow(
            e.id,
            str(e.intent.get("spec")),
            e.batch_id,
            int(e.intent.get("n", 0)),
            e.state,
            None if e.ended is None else str(e.ended.get("status")),
            float(e.intent.get("time", 0)),
        )
        for e in entries(output)
    ]


def find(output: str, key: str) -> BatchEntry:
    """The entry whose batch id or intent id is `key` (an intent id's prefix will do)."""
    found = [e for e in entries(output) if key in (e.batch_id, e.id) or e.id.startswith(key)]
    if len(found) != 1:
        raise UsageError(f"{output}: {'no' if not found else 'more than one'} batch matches {key!r}")
    return found[0]


def _backend(entry: BatchEntry, api_key: str | None) -> Backend:
    from caitool.providers import get_client
    from caitool.tiers import batch_backend

    account = str(entry.intent.get("account", ""))
    if account.startswith("folder|"):
        return FolderBatches(account.split("|")[1])
    base_url = account.split("|")[1] if account.count("|") == 2 else None
    provider: Any = get_client(str(entry.intent["spec"]), base_url=base_url, api_key=api_key, timeout=120.0)
    backend = batch_backend(provider)
    if provider.batch_account() != account:
        raise UsageError(
            f"batch {entry.batch_id or entry.id} was sent from account {account}; this key is "
            f"{provider.batch_account()}",
            hint="pass the API key that sent it (--api-key or the provider's environment variable)",
        )
    return backend


def status(entry: BatchEntry, api_key: str | None) -> dict[str, Any]:
    """The provider's current view of a submitted batch."""
    assert entry.batch_id is not None

    async def go() -> dict[str, Any]:
        backend = _backend(entry, api_key)
        try:
            polled = await backend.poll(str(entry.batch_id))
        finally:
            await backend.aclose()
        return {"status": polled.status, "ended": polled.ended, "counts": polled.counts}

    return asyncio.run(go())


def cancel(output: str, api_key: str | None) -> list[tuple[str, str]]:
    """Cancel every batch of the ledger that was submitted and has not ended: (batch id, status) each. A
    rerun then collects what they finished and sends the rest again."""
    todo = [e for e in entries(output) if e.batch_id is not None and e.ended is None and not e.abandoned]

    async def go() -> list[tuple[str, str]]:
        done = []
        for e in todo:
            backend = _backend(e, api_key)
            try:
                done.append((str(e.batch_id), await backend.cancel(str(e.batch_id))))
            finally:
                await backend.aclose()
        return done

    return asyncio.run(go())


def adopt(output: str, intent: str, batch_id: str) -> BatchEntry:
    """Record by hand that `batch_id` is the batch of an intent whose batch id was lost (the way out of an
    ambiguous Anthropic reconcile); the next run collects it."""
    entry = find(output, intent)
    if entry.batch_id is not None or entry.abandoned or entry.ingested:
        raise UsageError(f"batch intent {entry.id} is {entry.state}: there is nothing to adopt")
    ledger = BatchLedger(RunFiles.for_output(output).batches)
    ledger.open()
    try:
        ledger.append("submitted", entry.id, batch_id=batch_id, file_id=None, adopted=True)
    finally:
        ledger.close()
    return find(output, entry.id)


def import_results(output: str, results: str) -> list[tuple[str, int]]:
    """Place the lines of an OpenAI-format results file (`vllm run-batch -o`) beside the folder batches they
    answer, as `DIR/<intent>.output.jsonl`; the run (or a rerun) ingests them through the ledger. Returns
    (batch id, lines) per batch answered."""
    waiting = {
        cid: e
        for e in entries(output)
        if e.batch_id is not None and e.batch_id.startswith("folder:") and e.ended is None and not e.abandoned
        for cid in e.intent.get("custom_ids", [])
    }
    by_batch: dict[str, list[str]] = {}
    unknown = 0
    try:
        text = Path(results).read_text(encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot read {results}: {exc.strerror or exc}") from None
    for n, raw in enumerate(text.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            cid = str(json.loads(raw)["custom_id"])
        except (ValueError, KeyError, TypeError):
            raise UsageError(f"{results}:{n}: not a batch result line (JSON with a custom_id)") from None
        entry = waiting.get(cid)
        if entry is None:
            unknown += 1
            continue
        by_batch.setdefault(str(entry.batch_id), []).append(raw)
    if not by_batch:
        raise UsageError(f"{results}: none of its {unknown} results answers a batch {output} is waiting for")
    for batch_id, lines in by_batch.items():
        account = str(waiting[json.loads(lines[0])["custom_id"]].intent["account"])
        _, target = FolderBatches(account.split("|")[1]).paths(batch_id)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        os.replace(tmp, target)
    return [(batch_id, len(lines)) for batch_id, lines in by_batch.items()]


def export_requests(output: str) -> list[Path]:
    """The request files of the folder batches still waiting for results, in the ledger's order."""
    files = []
    for e in entries(output):
        account = str(e.intent.get("account", ""))
        if account.startswith("folder|") and e.batch_id is not None and e.ended is None and not e.abandoned:
            requests, _ = FolderBatches(account.split("|")[1]).paths(e.batch_id)
            if requests.exists():
                files.append(requests)
    if not files:
        raise UsageError(
            f"{output}: no batch is waiting in a folder",
            hint="export works on runs made with CAITOOL_BATCH_DIR set (docs/providers.md, Cost tiers)",
        )
    return files
