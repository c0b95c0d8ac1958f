"""The batch tier's two files beside the output: what was sent, and what came back. Both are append-only,
whole lines, fsync'd before the step they guard goes on, so a crash at any point leaves a state a rerun can
finish without paying twice.

`OUT.batches.jsonl`, the write-ahead ledger, one line per transition of a batch:
- `intent`    before anything is uploaded: a local id, the client spec, the endpoint, the request count,
              sha256 of the request bytes, the time, the account (`provider|base_url|sha256(key)[:12]`,
              never the key) and the custom_ids;
- `submitted` right after the batch is created: its batch id (and the OpenAI input file id);
- `ended`     when the provider says it is over: its status and counts;
- `ingested`  after every successful result is in the result ledger;
- `abandoned` an intent that never became a batch (the upload or create failed, or a crash came before the
              create and the provider knows no such batch): nothing to adopt, never looked for again.

`OUT.batch-results.jsonl`, the result ledger: `{"custom_id", "body"}` per successful request (the provider's
response body, as the live path would have parsed it). A request whose custom_id is there is answered from
it, so a crash mid-chain never pays again for the rounds already done.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from caitool.errors import CaitoolError
from caitool.store import dumps, repair_tail


def _append(fd: int, data: bytes, path: Path | None) -> None:
    """Write whole lines and fsync them: the ledger's promise is that a line read back was on disk."""
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except OSError as exc:
        raise CaitoolError(f"cannot write {path}: {exc.strerror or exc}") from None


def _open_append(path: Path) -> int:
    if path.exists():
        repair_tail(path)  # a torn last line from a crash mid-write: it was never acted upon
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    except OSError as exc:
        raise CaitoolError(f"cannot open {path} for writing: {exc.strerror}") from None


@dataclass
class BatchEntry:
    """One batch's history, folded from its ledger lines."""

    intent: dict[str, Any]
    submitted: dict[str, Any] | None = None
    ended: dict[str, Any] | None = None
    ingested: bool = False
    abandoned: bool = False

    @property
    def id(self) -> str:
        return str(self.intent["id"])

    @property
    def batch_id(self) -> str | None:
        return None if self.submitted is None else str(self.submitted["batch_id"])

    @property
    def state(self) -> str:
        if self.abandoned:
            return "abandoned"
        if self.ingested:
            return "ingested"
        if self.ended is not None:
            return "ended"
        return "submitted" if self.submitted is not None else "intent"


def read_ledger(path: Path | None) -> list[BatchEntry]:
    """Every batch of a ledger in intent order ([] when there is none); unreadable lines are skipped."""
    entries: dict[str, BatchEntry] = {}
    if path is None or not path.exists():
        return []
    with path.open("rb") as fh:
        for raw in fh:
            try:
                row = json.loads(raw)
                event, key = row["event"], str(row["id"])
            except (ValueError, KeyError, TypeError):
                continue  # a torn last line: the step it records did not happen as far as we know
            if event == "intent":
                entries[key] = BatchEntry(row)
                continue
            entry = entries.get(key)
            if entry is None:
                continue
            if event == "submitted":
                entry.submitted = row
            elif event == "ended":
                entry.ended = row
            elif event == "ingested":
                entry.ingested = True
            elif event == "abandoned":
                entry.abandoned = True
            if entry.ingested or entry.abandoned:
                # A finished batch's custom_ids are never needed again: a long run's ledger holds millions.
                entry.intent.pop("custom_ids", None)
    return list(entries.values())


@dataclass
class BatchLedger:
    """The write-ahead ledger of one run (in memory only when the output is stdout)."""

    path: Path | None
    entries: list[BatchEntry] = field(default_factory=list)
    _fd: int = -1

    def open(self) -> None:
        self.entries = read_ledger(self.path)
        if self.path is not None:
            self._fd = _open_append(self.path)

    def append(self, event: str, key: str, **fields: Any) -> None:
        row = {"event": event, "id": key, "time": time.time(), **fields}
        if self._fd >= 0:
            _append(self._fd, (dumps(row) + "\n").encode(), self.path)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


@dataclass
class ResultLedger:
    """custom_id -> the provider's response body of every finished request. Bodies stay on disk (an index of
    offsets in memory), so a long run's ledger costs memory per id, not per answer."""

    path: Path | None
    _where: dict[str, tuple[int, int]] = field(default_factory=dict)  # custom_id -> (offset, length)
    _memory: dict[str, Any] = field(default_factory=dict)  # the bodies themselves when there is no file
    _fd: int = -1
    _read_fd: int = -1
    _size: int = 0

    def open(self) -> None:
        if self.path is None:
            return
        self._fd = _open_append(self.path)
        self._read_fd = os.open(self.path, os.O_RDONLY)
        offset = 0
        with self.path.open("rb") as fh:
            for raw in fh:
                try:
                    cid = str(json.loads(raw)["custom_id"])
                except (ValueError, KeyError, TypeError):
                    offset += len(raw)
                    continue
                self._where.setdefault(cid, (offset, len(raw)))
                offset += len(raw)
        self._size = offset

    def __contains__(self, custom_id: str) -> bool:
        return custom_id in self._where or custom_id in self._memory

    def __len__(self) -> int:
        return len(self._where) + len(self._memory)

    def get(self, custom_id: str) -> Any:
        """The stored body, or None."""
        if self.path is None:
            return self._memory.get(custom_id)
        at = self._where.get(custom_id)
        if at is None:
            return None
        return json.loads(os.pread(self._read_fd, at[1], at[0]))["body"]

    def add(self, results: list[tuple[str, Any]]) -> int:
        """Append the results whose custom_id is not stored yet, in one write, fsync'd. Returns how many."""
        fresh = [(cid, body) for cid, body in results if cid not in self]
        if self.path is None:
            self._memory.update(fresh)
            return len(fresh)
        lines = [(cid, (dumps({"custom_id": cid, "body": body}) + "\n").encode()) for cid, body in fresh]
        if not lines:
            return 0
        _append(self._fd, b"".join(line for _, line in lines), self.path)
        for cid, line in lines:
            self._where[cid] = (self._size, len(line))
            self._size += len(line)
        return len(lines)

    def close(self) -> None:
        for fd in (self._fd, self._read_fd):
            if fd >= 0:
                os.close(fd)
        self._fd = self._read_fd = -1
