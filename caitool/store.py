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
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from caitool.errors import CaitoolError, UsageError

FSYNC_INTERVAL_S = 1.0


class ConsumerGone(CaitoolError):
    """stdout was closed by the reader (`| head -1`): stop quietly."""

    exit_code = 141


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


def read_ids(path: Path, key: str = "id") -> set[str]:
    ids: set[str] = set()
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
    done: set[str] = field(default_factory=set)
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    repaired_bytes: int = 0
    _fd: int = -1
    _err_fd: int = -1
    _steps_fd: int = -1
    _last_sync: float = 0.0

    def open(self) -> None:
        f = self.files
        if f.output is None:
            self._fd = 1
        else:
            self._check_resume()
            f.output.parent.mkdir(parents=True, exist_ok=True)
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
        tmp.write_text(json.dumps(self.manifest, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, self.files.manifest)

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
