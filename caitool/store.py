"""Durable output: append-only JSONL, resume by default, an errors file, per-step checkpoints, a manifest.

Files, for `-o OUT.jsonl`:
- `OUT.jsonl`                 the data; each record's rows go out in one `write()` of whole lines;
- `OUT.jsonl.done.jsonl`      one line per record written: its id, a hash of its input and the output's size
                              after its rows (`{"id", "in", "end"}`); a record is done only once this line
                              exists, so a record whose rows were cut short is never taken as done;
- `OUT.jsonl.errors.jsonl`    records that failed after retries, with the reason (rewritten each run);
- `OUT.jsonl.steps.jsonl`     finished model calls of records not yet written, so a rerun does not pay for
                              them again; removed once a run ends with nothing left to resume;
- `OUT.jsonl.manifest.json`   settings, fingerprint, versions, counts;
- `OUT.jsonl.batches.jsonl`   with `--tier batch`: the write-ahead batch ledger (`caitool.tiers.ledger`);
- `OUT.jsonl.batch-results.jsonl` with `--tier batch`: every finished batch request's result, by custom_id,
                              so a rerun does not pay for them again; removed like the steps file;
- `OUT.jsonl.lock`            held (`flock`) by the one run writing OUT, with its pid and command line; the OS
                              drops the lock when that process dies, so a killed run never blocks a rerun.

On open: a second run on an output in use is refused; if any file of the run exists, a different fingerprint
(model, params, constitution, templates, ...) is refused unless `overwrite`; the output is cut back to the
end of its last committed record (a crash mid-write leaves at most that one record's rows, or part of them,
beyond it); the committed ids are skipped, and a record whose input differs from the one committed under the
same id stops the run (another input file, or an edited prompt) instead of being silently skipped.
Writing to stdout (`-`), or to a pipe, FIFO or device (`/dev/null`), has no resume and no side files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import json
import os
import stat
import time
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from caitool.errors import CaitoolError, ConsumerGone, InputError, UsageError

FSYNC_INTERVAL_S = 1.0


def dumps(row: dict[str, Any]) -> str:
    # ensure_ascii keeps control and exotic characters escaped, so one record is always exactly one line.
    return json.dumps(row, ensure_ascii=True, separators=(",", ":"))


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Every row of a JSONL file written by caitool (blank lines skipped); [] when the file does not exist."""
    p = Path(path)
    if not p.exists():
        return []
    with p.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def write_jsonl_atomic(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    """Replace `path` with `rows` in one rename, so a reader sees the old file or the new one, never half."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text("".join(dumps(r) + "\n" for r in rows), encoding="utf-8")
    os.replace(tmp, p)


def _canonical(value: object) -> object:
    """What a record's input *says*, independent of how the code holds it: dataclasses become a dict of the
    fields that differ from their defaults (so adding a field with a default, renaming a class or moving it
    between modules does not change the hash of an existing record), minus `where` (the input file's path and
    line: the same record read from a moved or re-cloned file is the same record)."""
    kind = type(value)
    if value is None or kind in _SCALARS:
        return value
    fields = _DATACLASS_FIELDS.get(kind)
    if fields is None and dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = _DATACLASS_FIELDS[kind] = _fields_with_defaults(kind)
    if fields is not None:
        out: dict[str, object] = {}
        for name, has_default, default in fields:
            v = getattr(value, name)
            if not (has_default and v == default):
                out[name] = _canonical(v)
        return out
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    if isinstance(value, str | int | float | bool):  # subclasses (a str-valued enum)
        return value
    raise TypeError(kind.__name__)


# A record hash runs once per record on the hot path: fields and defaults are read once per dataclass.
_SCALARS = frozenset({str, int, float, bool})
_DATACLASS_FIELDS: dict[type, tuple[tuple[str, bool, object], ...]] = {}


def _fields_with_defaults(kind: type) -> tuple[tuple[str, bool, object], ...]:
    """(name, has a default, the default) of each field but `where`; a default factory's value stands in
    for its default (compared, never handed out)."""
    out = []
    for f in dataclasses.fields(kind):
        if f.name == "where":
            continue
        if f.default is not dataclasses.MISSING:
            out.append((f.name, True, f.default))
        elif f.default_factory is not dataclasses.MISSING:
            out.append((f.name, True, f.default_factory()))
        else:
            out.append((f.name, False, None))
    return tuple(out)


def record_hash(item: object) -> str:
    """A short hash of a record's input (a job's item: dataclasses of str, numbers, tuples and dicts), from
    its content rather than its Python repr, so a code change that keeps the input's meaning keeps the hash
    and a half-finished run still resumes. "" for an item of another kind, whose hash no run could repeat."""
    try:
        text = json.dumps(_canonical(item), sort_keys=True, ensure_ascii=True, separators=(",", ":"))
    except (TypeError, ValueError):
        return ""
    return hashlib.blake2b(text.encode("ascii"), digest_size=8).hexdigest()


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


def _last_newline_end(fd: int, size: int) -> int:
    """The offset just past the last newline in the first `size` bytes of `fd` (0 if none), read backwards
    in 64 KiB blocks so a torn tail of any length is found without reading the whole file."""
    pos = size
    while pos > 0:
        start = max(0, pos - (1 << 16))
        cut = os.pread(fd, pos - start, start).rfind(b"\n")
        if cut >= 0:
            return start + cut + 1
        pos = start
    return 0


def repair_tail(path: Path) -> int:
    """Cut a torn last line left by a crash mid-write (a tail without a trailing newline, of any length).
    Returns the number of bytes removed; opens the file for writing only when there is something to cut."""
    with path.open("rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        keep = _last_newline_end(fh.fileno(), size)
    if keep == size:
        return 0
    try:
        os.truncate(path, keep)
    except OSError as exc:
        raise CaitoolError(f"cannot repair {path}: {exc.strerror or exc}") from None
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

    def index(self, rid: str) -> int:
        """The position of `rid` in insertion order, or -1."""
        key = rid.encode("utf-8", "surrogatepass")
        return self._table[self._find(key, hash(key) & 0xFFFFFFFF)]

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
                with contextlib.suppress(ValueError, TypeError, KeyError):
                    ids.add(str(json.loads(raw)[key]))
    return ids


def _identity(path: str | Path) -> tuple[int, int] | str:
    """What makes two paths the same file: device and inode when it exists (symlinks and hard links
    included), else the resolved path."""
    try:
        st = os.stat(path)
    except OSError:
        return os.path.realpath(path)
    return (st.st_dev, st.st_ino)


def refuse_aliases(paths: dict[str, str | Path | None]) -> None:
    """Refuse two roles (input, -o, --errors, --rejects, side files) naming one file: the output side
    truncates or deletes what it owns, and would destroy the other. `-` (stdin/stdout) and None are skipped.
    """
    seen: dict[tuple[int, int] | str, str] = {}
    for role, path in paths.items():
        if path is None or str(path) == "-":
            continue
        key = _identity(path)
        if key in seen:
            raise UsageError(
                f"{role} {path} is the same file as {seen[key]}; refusing to run",
                hint="give each of the input, -o, --errors and --rejects its own file",
            )
        seen[key] = f"{role} {path}"


def _is_stream(path: Path) -> bool:
    """An existing output that is not a regular file or folder: a pipe, FIFO or device (`/dev/null`)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


@dataclass
class RunFiles:
    output: Path | None  # None = stdout
    errors: Path | None
    steps: Path | None
    manifest: Path | None
    done: Path | None = None
    lock: Path | None = None
    batches: Path | None = None  # --tier batch: the write-ahead batch ledger (caitool.tiers.ledger)
    batch_results: Path | None = None  # --tier batch: every finished batch request's result, by custom_id
    stream: bool = False  # output is stdout, a pipe, a FIFO or a device: no resume, no side files

    @classmethod
    def for_output(cls, output: str | None, errors: str | None = None) -> RunFiles:
        err = Path(errors) if errors else None
        if output in (None, "-"):
            return cls(None, err, None, None, stream=True)
        out = Path(output)
        if _is_stream(out):
            return cls(out, err, None, None, stream=True)

        def side(suffix: str) -> Path:
            return out.with_name(out.name + suffix)

        return cls(
            out,
            err or side(".errors.jsonl"),
            side(".steps.jsonl"),
            side(".manifest.json"),
            side(".done.jsonl"),
            side(".lock"),
            side(".batches.jsonl"),
            side(".batch-results.jsonl"),
        )

    def roles(self) -> dict[str, Path | None]:
        """Every file of the run by role, for `refuse_aliases`."""
        return {
            "-o": self.output,
            "--errors": self.errors,
            "the steps file": self.steps,
            "the manifest": self.manifest,
            "the done file": self.done,
            "the lock file": self.lock,
            "the batch ledger": self.batches,
            "the batch results": self.batch_results,
        }


def _show(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str) if value is not None else "(none)"
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass
class OutputStore:
    files: RunFiles
    fingerprint: str
    manifest: dict[str, Any]
    overwrite: bool = False
    id_key: str = "id"  # the row field that names the input record (only to read outputs without a done file)
    done: IdSet = field(default_factory=IdSet)  # ids already committed when the store was opened
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    repaired_bytes: int = 0
    done_rebuilt: bool = False  # the output was changed outside caitool: done ids re-read from its rows
    _done_in: list[str] = field(default_factory=list)  # input hash of done id k ("" = unknown)
    _fd: int = -1
    _err_fd: int = -1
    _steps_fd: int = -1
    _done_fd: int = -1
    _lock_fd: int = -1
    _offset: int = 0  # the output's size: every write appends, and the lock makes this run the only writer
    _regular: bool = False  # fsync and truncate apply only to regular files
    _last_sync: float = 0.0
    _unfiled_errors: int = 0  # failures with no errors file to go to (stdout runs)

    @property
    def tracks_done(self) -> bool:
        return self.files.done is not None

    def open(self) -> None:
        f = self.files
        try:
            if f.output is None:
                self._fd = 1
            elif f.stream:
                self._fd = self._open(f.output, os.O_APPEND)
            else:
                self._make_parent(f.output)
                self._lock()
                self._check_settings()
                self._fd = self._open(f.output, os.O_TRUNC if self.overwrite else os.O_APPEND)
                self._regular = True
                self._resume()
            if f.errors is not None:
                self._err_fd = self._open(f.errors, os.O_TRUNC)
            if f.steps is not None:
                if f.steps.exists() and not self.overwrite:
                    self._load_steps(f.steps)
                self._steps_fd = self._open(f.steps, os.O_TRUNC if self.overwrite else os.O_APPEND)
            self.manifest.update(fingerprint=self.fingerprint, status="running", started=time.time())
            self.write_manifest()
        except BaseException:
            self._close_fds()
            self._unlock()
            raise

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

    def _lock(self) -> None:
        """Take `OUT.lock` for the whole run, or refuse at once naming the run that holds it."""
        lock = self.files.lock
        assert lock is not None
        while True:
            try:
                fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise CaitoolError(f"cannot open {lock} for writing: {exc.strerror}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    os.close(fd)
                    raise CaitoolError(f"cannot lock {lock}: {exc.strerror}") from None
                who = _read_holder(fd)
                os.close(fd)
                raise UsageError(
                    f"{self.files.output} is being written by another caitool run ({who})",
                    hint="wait for it to finish (or stop it), or choose another -o",
                ) from None
            # A run that finished between our open() and flock() has removed the file we locked: a third
            # run may already hold a fresh one at the same path, so start over on that.
            try:
                same = os.stat(lock).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        holder_info = {
            "pid": os.getpid(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime()),
            "command": " ".join(["caitool", *self.manifest.get("argv", [])]),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(holder_info) + "\n").encode(), 0)
        self._lock_fd = fd

    def _unlock(self) -> None:
        if self._lock_fd >= 0:
            # Removed while still held, so a run waiting on this inode sees it is gone and retries.
            if self.files.lock is not None:
                with contextlib.suppress(OSError):
                    self.files.lock.unlink()
            os.close(self._lock_fd)
            self._lock_fd = -1

    def _check_settings(self) -> None:
        """Refuse to mix settings: if any file of the run is there (output, checkpoints, done, errors,
        manifest), the manifest must be there, readable, and carry this run's fingerprint."""
        f = self.files
        assert f.output is not None and f.manifest is not None
        if self.overwrite:
            return
        present = [p for p in (f.steps, f.done, f.errors, f.manifest) if p is not None and p.exists()]
        if f.output.exists() and (f.output.stat().st_size > 0 or not f.output.is_file()):
            present.insert(0, f.output)
        if not present:
            return
        if not f.manifest.exists():
            raise UsageError(
                f"{present[0]} exists and was not written by caitool (no {f.manifest.name})",
                hint="choose another -o, or pass --overwrite to replace it",
            )
        try:
            old = json.loads(f.manifest.read_text())
            if not isinstance(old, dict):
                raise ValueError
        except (OSError, ValueError):
            raise UsageError(
                f"{f.manifest} is unreadable, so the settings of {f.output} cannot be checked",
                hint="restore the manifest, or pass --overwrite to start over",
            ) from None
        if old.get("fingerprint") == self.fingerprint:
            return
        changes = []
        if old.get("command") != self.manifest.get("command"):
            changes.append(f"command {old.get('command')} → {self.manifest.get('command')}")
        new_settings, old_settings = self.manifest.get("settings", {}), old.get("settings") or {}
        for key in sorted(set(new_settings) | set(old_settings)):
            if old_settings.get(key) != new_settings.get(key):
                changes.append(f"{key} {_show(old_settings.get(key))} → {_show(new_settings.get(key))}")
        raise UsageError(
            f"{f.output} was written with different settings ({'; '.join(changes) or 'fingerprint'}); "
            "refusing to mix them in one file",
            hint="rerun with the original settings to resume, or pass --overwrite to start over",
        )

    def _resume(self) -> None:
        """Cut the output back to its last committed record and collect the committed ids."""
        f = self.files
        assert f.output is not None and f.done is not None
        size = os.fstat(self._fd).st_size
        if self.overwrite:
            self._done_fd = self._open(f.done, os.O_TRUNC)
            return
        if f.done.exists():
            self._done_fd = self._open(f.done, os.O_APPEND)
            committed, last_id = self._read_done(f.done, size)
            if not self._ends_with_row_of(last_id, committed):
                # The output was edited or replaced outside caitool (rows deleted to be redone, say): its
                # done file no longer describes it, so its rows are read again instead.
                os.close(self._done_fd)
                self.done, self._done_in, self.done_rebuilt = IdSet(), [], True
                committed = self._adopt_output(size)
        elif size:
            committed = self._adopt_output(size)  # an output written before done files existed
        else:
            self._done_fd = self._open(f.done, os.O_APPEND)
            committed = 0
        if size > committed:
            try:
                os.ftruncate(self._fd, committed)
            except OSError as exc:
                raise CaitoolError(f"cannot repair {f.output}: {exc.strerror}") from None
            self.repaired_bytes = size - committed
        self._offset = committed

    def _ends_with_row_of(self, record_id: str | None, end: int) -> bool:
        """Whether the output's row that ends at `end` is whole and belongs to `record_id` (O(1 row))."""
        if record_id is None:
            return end == 0
        assert self.files.output is not None
        with self.files.output.open("rb") as fh:
            start = _last_newline_end(fh.fileno(), end - 1)
            raw = os.pread(fh.fileno(), end - start, start)
        if not raw.endswith(b"\n"):
            return False
        try:
            row = json.loads(raw)
        except ValueError:
            return False
        return not isinstance(row, dict) or self.id_key not in row or str(row[self.id_key]) == record_id

    def _read_done(self, path: Path, size: int) -> tuple[int, str | None]:
        """Load the done file; drop its torn last line and any record past the output's end (an output
        that lost its tail, e.g. to a power cut). Returns the end of the last committed record and its id."""
        committed = valid_end = 0
        last_id: str | None = None
        with path.open("rb") as fh:
            pos = 0
            for raw in fh:
                line_end = pos + len(raw)
                try:
                    row = json.loads(raw)
                    rid, end, h = str(row["id"]), int(row["end"]), str(row.get("in", ""))
                except (ValueError, TypeError, KeyError):
                    if not raw.endswith(b"\n"):
                        break  # a torn last line
                    pos = valid_end = line_end
                    continue  # a damaged line: that record is simply done again
                if end > size:
                    break
                if self.done.add(rid):
                    self._done_in.append(h)
                if end >= committed:
                    committed, last_id = end, rid
                pos = valid_end = line_end
        if valid_end < path.stat().st_size:
            os.ftruncate(self._done_fd, valid_end)
        return committed, last_id

    def _adopt_output(self, size: int) -> int:
        """Build the done file from an output that has none (written before done files existed): its
        complete lines count as committed."""
        f = self.files
        assert f.output is not None and f.done is not None
        lines, end = [], 0
        with f.output.open("rb") as fh:
            committed = _last_newline_end(fh.fileno(), size)
            for raw in fh:
                end += len(raw)
                if end > committed:
                    break
                with contextlib.suppress(ValueError, TypeError, KeyError):
                    rid = str(json.loads(raw)[self.id_key])
                    if self.done.add(rid):
                        self._done_in.append("")
                    lines.append(dumps({"id": rid, "end": end}) + "\n")
        self._done_fd = self._open(f.done, os.O_TRUNC)
        _write_all(self._done_fd, "".join(lines).encode(), str(f.done))
        return committed

    def is_done(self, record_id: str, input_hash: str, where: str) -> bool:
        """Whether this record is already committed; refuses one committed from a different input."""
        k = self.done.index(record_id)
        if k < 0:
            return False
        old = self._done_in[k]
        if old and input_hash and old != input_hash:
            raise InputError(
                where,
                f"record {record_id!r} is already in {self.files.output} with a different input (another "
                "input file, or its prompt changed); refusing to mix them (pass --overwrite to start over)",
            )
        return True

    def _load_steps(self, path: Path) -> None:
        with path.open("rb") as fh:
            for raw in fh:
                try:
                    row = json.loads(raw)
                    rid, step, data = str(row["id"]), str(row["step"]), row["data"]
                except (ValueError, KeyError, TypeError):
                    continue  # a torn line from a crash: that step is simply paid again
                if rid not in self.done:
                    self.steps.setdefault(rid, {})[step] = data

    def write_rows(self, rows: Iterable[dict[str, Any]], record_id: str = "", input_hash: str = "") -> None:
        """All of one record's rows in one write(), then its line in the done file: the commit."""
        data = "".join(dumps(r) + "\n" for r in rows).encode()
        try:
            _write_all(self._fd, data, str(self.files.output or "stdout"))
        except CaitoolError:
            if self._regular:  # leave no part of this record behind (ENOSPC, EIO, a file size limit)
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, self._offset)
            raise
        self._offset += len(data)
        if self._done_fd >= 0:
            line = dumps({"id": record_id, "in": input_hash, "end": self._offset}) + "\n"
            _write_all(self._done_fd, line.encode(), str(self.files.done))
        self._maybe_sync()

    def replace_output(self, rows: Iterable[dict[str, Any]], counts: dict[str, Any]) -> None:
        """For a command that makes its whole output at once (mix): under the lock and the settings check,
        the rows go to a temp file that is renamed over the output, then the manifest says complete."""
        f = self.files
        data = "".join(dumps(r) + "\n" for r in rows).encode()
        if f.output is None or f.stream:
            fd = 1 if f.output is None else self._open(f.output, os.O_APPEND)
            try:
                _write_all(fd, data, str(f.output or "stdout"))
            finally:
                if fd > 2:
                    os.close(fd)
            return
        self._make_parent(f.output)
        self._lock()
        try:
            self._check_settings()
            tmp = f.output.with_name(f.output.name + ".tmp")
            fd = self._open(tmp, os.O_TRUNC)
            try:
                _write_all(fd, data, str(tmp))
                self._fsync(fd, tmp)
            finally:
                os.close(fd)
            os.replace(tmp, f.output)
            self.manifest.update(
                fingerprint=self.fingerprint, status="complete", finished=time.time(), counts=counts
            )
            self.write_manifest()
        finally:
            self._unlock()

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
        if self._regular and now - self._last_sync >= FSYNC_INTERVAL_S:
            self._fsync(self._fd, self.files.output)
            if self._done_fd >= 0:
                self._fsync(self._done_fd, self.files.done)
            self._last_sync = now

    @staticmethod
    def _fsync(fd: int, path: Path | None) -> None:
        try:
            os.fsync(fd)
        except OSError as exc:
            if exc.errno in (errno.EINVAL, errno.EROFS):  # not a file that can be synced: nothing to do
                return
            raise CaitoolError(
                f"cannot write {path}: {exc.strerror} (the disk reported an error; rows since the last "
                "sync may be lost)"
            ) from None

    def write_manifest(self) -> None:
        if self.files.manifest is None:
            return
        tmp = self.files.manifest.with_name(self.files.manifest.name + ".tmp")
        try:
            tmp.write_text(json.dumps(self.manifest, indent=2, sort_keys=True) + "\n")
            os.replace(tmp, self.files.manifest)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise CaitoolError(f"cannot write {self.files.manifest}: {exc.strerror or exc}") from None

    def _close_fds(self) -> None:
        for fd in (self._fd, self._err_fd, self._steps_fd, self._done_fd):
            if fd > 2:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._fd = self._err_fd = self._steps_fd = self._done_fd = -1

    def close(self, *, status: str, counts: dict[str, Any], resumable_left: bool) -> None:
        try:
            for fd in (self._fd, self._err_fd, self._steps_fd, self._done_fd):
                if fd > 2:
                    with contextlib.suppress(OSError):
                        os.fsync(fd)
            self._close_fds()
            if not resumable_left:  # nothing left to resume: the answers kept for a resume are not needed
                for kept in (self.files.steps, self.files.batch_results):
                    if kept is not None:
                        kept.unlink(missing_ok=True)
            if self.files.errors is not None and self.files.output is not None and not self.files.stream:
                with contextlib.suppress(OSError):
                    if self.files.errors.stat().st_size == 0:
                        self.files.errors.unlink()
            self.manifest.update(status=status, finished=time.time(), counts=counts)
            self.write_manifest()
        finally:
            self._unlock()


def _read_holder(fd: int, wait_s: float = 1.0) -> str:
    """Name the run holding the lock. The holder writes its pid just after taking the lock, so a run
    refused inside that window waits up to `wait_s` for the line rather than naming no one."""
    deadline = time.monotonic() + wait_s
    while True:
        text = os.pread(fd, 4096, 0).decode("utf-8", "replace")
        try:
            info = json.loads(text)
            return f"pid {info['pid']}, started {info['started']}: {info['command']}"
        except (ValueError, TypeError, KeyError):
            if time.monotonic() >= deadline:
                return "its lock file names no process yet"
            time.sleep(0.02)
