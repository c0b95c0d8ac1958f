"""Durable output: append-only JSONL, resume by default, an errors file, per-step checkpoints, a manifest.

Files, for `-o OUT.jsonl`:
- `OUT.jsonl`                 the data; each record's rows go out in one `write()` of whole lines;
- `OUT.jsonl.errors.jsonl`    records that failed after retries, with the reason (rewritten each run);
- `OUT.jsonl.steps.jsonl`     finished model calls of records not yet written, so a rerun does not pay for
                              them again; removed once a run ends with nothing left to resume;
- `OUT.jsonl.manifest.json`   settings, fingerprint, versions, counts.

On open, a torn last line (a crash mid-write) is cut off, the ids already written are collected and skipped,
and a different fingerprint (model, params, constitution, templates) is refused unless `overwrite`.
Writing to stdout (`-`) has no resume and no steps file.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import time
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from caitool.errors import CaitoolError, ConsumerGone, UsageError

FSYNC_INTERVAL_S = 1.0


def dumps(row: dict[str, Any]) -> str:
    # ensure_ascii keeps control and exotic characters escaped, so one record is always exactly one line.
    return json.dumps(row, ensure_ascii=True, separators=(",", ":"))


def _write_all(fd: int, data: bytes, name: str) -> None:
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BrokenPipeError:
            raise ConsumerGone("output closed by the reader") from None
        except OSError as exc:
            if exc.errno == errno.EPIPE:
                raise ConsumerGone("output closed by the reader") from None
            raise CaitoolError(f"cannot write {name}: {exc.strerror}") from None
        view = view[n:]


def repair_tail(path: Path) -> int:
    """Cut a torn last line left by a crash mid-write. Rows are written as whole lines in one `write()`,
    so a torn row is exactly a tail without a trailing newline. Returns the number of bytes removed."""
    size = path.stat().st_size
    if size == 0:
        return 0
    with path.open("rb+") as fh:
        fh.seek(size - 1)
        if fh.read(1) == b"\n":
            return 0
        keep, pos = 0, size
        while pos > 0:
            start = max(0, pos - (1 << 16))
            fh.seek(start)
            cut = fh.read(pos - start).rfind(b"\n")
            if cut >= 0:
                keep = start + cut + 1
                break
            pos = start
        fh.truncate(keep)
        return size - keep


class IdSet:
    """An exact set of record ids in about 30 bytes per id, kept in four flat arrays.

    A `set[str]` costs about 100 bytes per id (the str object and its slot) and pins allocator arenas with
    long-lived small objects; at 200k ids that alone outgrows the rest of a run's memory
    (benchmarks/bench_memory.py). Here ids are stored UTF-8 encoded, back to back in one bytearray, and an
    open-addressing table (linear probing, load <= 2/3) maps a hash to an id's index. Membership compares the
    bytes, so it is exact: no id is ever mistaken for another.
    """

    __slots__ = ("_blob", "_ends", "_hashes", "_mask", "_table")

    def __init__(self, ids: Iterable[str] = ()) -> None:
        self._blob = bytearray()
        self._ends = array("Q")  # end offset in _blob of id k
        self._hashes = array("I")  # low 32 bits of the hash of id k
        self._table = array("i", [-1]) * 64  # slot -> k, or -1
        self._mask = 63
        for rid in ids:
            self.add(rid)

    def __len__(self) -> int:
        return len(self._ends)

    def __iter__(self) -> Iterator[str]:
        start = 0
        for end in self._ends:
            yield self._blob[start:end].decode("utf-8", "surrogatepass")
            start = end

    def _find(self, key: bytes, h: int) -> int:
        """The slot holding `key`, or the empty slot where it would go."""
        table, hashes, ends, blob, mask = self._table, self._hashes, self._ends, self._blob, self._mask
        i = h & mask
        while True:
            k = table[i]
            if k < 0 or (hashes[k] == h and blob[ends[k - 1] if k else 0 : ends[k]] == key):
                return i
            i = (i + 1) & mask

    def __contains__(self, rid: object) -> bool:
        if not isinstance(rid, str):
            return False
        key = rid.encode("utf-8", "surrogatepass")
        return self._table[self._find(key, hash(key) & 0xFFFFFFFF)] >= 0

    def add(self, rid: str) -> bool:
        """Add an id; False when it was already there."""
        key = rid.encode("utf-8", "surrogatepass")
        h = hash(key) & 0xFFFFFFFF
        i = self._find(key, h)
        if self._table[i] >= 0:
            return False
        k = len(self._ends)
        self._blob += key
        self._ends.append(len(self._blob))
        self._hashes.append(h)
        self._table[i] = k
        if 3 * (k + 1) > 2 * len(self._table):
            self._grow()
        return True

    def _grow(self) -> None:
        size = 2 * len(self._table)
        table, mask = array("i", [-1]) * size, size - 1
        for k, h in enumerate(self._hashes):
            i = h & mask
            while table[i] >= 0:
                i = (i + 1) & mask
            table[i] = k
        self._table, self._mask = table, mask


def read_ids(path: Path, key: str = "id") -> IdSet:
    ids = IdSet()
    with path.open("rb") as fh:
        for raw in fh:
            if raw.strip():
                with contextlib.suppress(ValueError, TypeError):
                    ids.add(str(json.loads(raw)[key]))
    return ids


@dataclass
class RunFiles:
    output: Path | None  # None = stdout
    errors: Path | None
    steps: Path | None
    manifest: Path | None

    @classmethod
    def for_output(cls, output: str | None, errors: str | None = None) -> RunFiles:
        if output in (None, "-"):
            return cls(None, Path(errors) if errors else None, None, None)
        out = Path(output)
        return cls(
            out,
            Path(errors) if errors else out.with_name(out.name + ".errors.jsonl"),
            out.with_name(out.name + ".steps.jsonl"),
            out.with_name(out.name + ".manifest.json"),
        )


@dataclass
class OutputStore:
    files: RunFiles
    fingerprint: str
    manifest: dict[str, Any]
    overwrite: bool = False
    id_key: str = "id"  # the row field that names the input record (several rows may share it)
    done: IdSet = field(default_factory=IdSet)  # ids already in the output when the store was opened
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    repaired_bytes: int = 0
    _fd: int = -1
    _err_fd: int = -1
    _steps_fd: int = -1
    _last_sync: float = 0.0
    _unfiled_errors: int = 0  # failures with no errors file to go to (stdout runs)

    def open(self) -> None:
        f = self.files
        if f.output is None:
            self._fd = 1
        else:
            self._check_resume()
            self._make_parent(f.output)
            self._fd = self._open_append(f.output)
        if f.errors is not None:
            self._err_fd = self._open(f.errors, os.O_TRUNC)
        if f.steps is not None:
            if f.steps.exists() and not self.overwrite:
                self._load_steps(f.steps)
            self._steps_fd = self._open(f.steps, os.O_TRUNC if self.overwrite else os.O_APPEND)
        self.manifest.update(fingerprint=self.fingerprint, status="running", started=time.time())
        self.write_manifest()

    @staticmethod
    def _make_parent(path: Path) -> None:
        parent = path.parent
        if parent.exists() and not parent.is_dir():
            raise CaitoolError(f"cannot write {path}: {parent} is not a folder")
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise CaitoolError(f"cannot write {path}: cannot create {parent}: {reason}") from None

    @staticmethod
    def _open(path: Path, mode: int) -> int:
        try:
            return os.open(path, os.O_WRONLY | os.O_CREAT | mode, 0o644)
        except OSError as exc:
            raise CaitoolError(f"cannot open {path} for writing: {exc.strerror}") from None

    def _open_append(self, path: Path) -> int:
        return self._open(path, os.O_TRUNC if self.overwrite else os.O_APPEND)

    def _check_resume(self) -> None:
        f = self.files
        assert f.output is not None and f.manifest is not None
        if self.overwrite or not f.output.exists() or f.output.stat().st_size == 0:
            return
        if not f.manifest.exists():
            raise UsageError(
                f"{f.output} exists and was not written by caitool (no {f.manifest.name})",
                hint="choose another -o, or pass --overwrite to replace it",
            )
        try:
            old = json.loads(f.manifest.read_text())
        except (OSError, ValueError):
            old = {}
        if old.get("fingerprint") != self.fingerprint:
            changed = [
                k for k, v in self.manifest.get("settings", {}).items() if old.get("settings", {}).get(k) != v
            ]
            raise UsageError(
                f"{f.output} was written with different settings ({', '.join(changed) or 'fingerprint'}); "
                "refusing to mix them in one file",
                hint="rerun with the original settings to resume, or pass --overwrite to start over",
            )
        self.repaired_bytes = repair_tail(f.output)
        self.done = read_ids(f.output, self.id_key)

    def _load_steps(self, path: Path) -> None:
        with path.open("rb") as fh:
            for raw in fh:
                try:
                    row = json.loads(raw)
                    rid, step = str(row["id"]), str(row["step"])
                except (ValueError, KeyError, TypeError):
                    continue  # a torn line from a crash: that step is simply paid again
                if rid not in self.done:
                    self.steps.setdefault(rid, {})[step] = row["data"]

    def write_rows(self, rows: Iterable[dict[str, Any]]) -> None:
        data = "".join(dumps(r) + "\n" for r in rows).encode()
        _write_all(self._fd, data, str(self.files.output or "stdout"))
        self._maybe_sync()

    def write_error(self, row: dict[str, Any]) -> None:
        if self._err_fd >= 0:
            _write_all(self._err_fd, (dumps(row) + "\n").encode(), str(self.files.errors))
        else:  # output on stdout and no --errors: the reason would be lost, so it goes to stderr
            from caitool.console import record_failed

            self._unfiled_errors += 1
            record_failed(row, self._unfiled_errors)

    def save_step(self, record_id: str, step: str, data: Any) -> None:
        if self._steps_fd >= 0:
            line = dumps({"id": record_id, "step": step, "data": data}) + "\n"
            _write_all(self._steps_fd, line.encode(), str(self.files.steps))

    def _maybe_sync(self) -> None:
        now = time.monotonic()
        if self._fd > 2 and now - self._last_sync >= FSYNC_INTERVAL_S:
            os.fsync(self._fd)
            self._last_sync = now

    def write_manifest(self) -> None:
        if self.files.manifest is None:
            return
        tmp = self.files.manifest.with_name(self.files.manifest.name + ".tmp")
        try:
            tmp.write_text(json.dumps(self.manifest, indent=2, sort_keys=True) + "\n")
            os.replace(tmp, self.files.manifest)
        except OSError as exc:
            raise CaitoolError(f"cannot write {self.files.manifest}: {exc.strerror or exc}") from None

    def close(self, *, status: str, counts: dict[str, Any], resumable_left: bool) -> None:
        for fd in (self._fd, self._err_fd, self._steps_fd):
            if fd > 2:
                with contextlib.suppress(OSError):
                    os.fsync(fd)
                os.close(fd)
        self._fd = self._err_fd = self._steps_fd = -1
        if not resumable_left and self.files.steps is not None:
            self.files.steps.unlink(missing_ok=True)
        if self.files.errors is not None and self.files.output is not None:
            with contextlib.suppress(OSError):
                if self.files.errors.stat().st_size == 0:
                    self.files.errors.unlink()
        self.manifest.update(status=status, finished=time.time(), counts=counts)
        self.write_manifest()
