"""Shards: one run split over N independent jobs (a Slurm array, a Kubernetes indexed Job), then merged.

`--shard I/N` keeps the records whose id hashes to I (a stable split: blake2b of the id, so every machine and
every rerun agrees, whatever the input order). A shard is an ordinary run with its own output, resume, errors
file and manifest; its manifest also records the shard, the record-id field and the fingerprint the same run
has unsharded.

`merge_shards` joins shard outputs into one output that is indistinguishable from an unsharded run's: rows
(each record once: a record found in two shard files is kept from the first), a done file, the errors that no
shard recovered from, and a manifest with the unsharded fingerprint, summed counts and each shard's own
summary. So rerunning the unsharded command on the merged output resumes it: it redoes only the failed
records. Shards of different settings (other than the shard itself) are refused, naming the keys that differ.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from caitool.errors import EXIT_OK, EXIT_PARTIAL, UsageError
from caitool.store import RunFiles, dumps, refuse_aliases

T = TypeVar("T")

SHARD_SETTING = "shard"  # the settings key (so a shard's output cannot be resumed as another shard)
FINISHED = ("complete", "partial")  # statuses of a shard that ran to its end (partial: some records failed)


@dataclass(frozen=True)
class Shard:
    index: int  # 1-based, as users number Slurm array tasks
    count: int

    @classmethod
    def parse(cls, value: str) -> Shard:
        i, sep, n = value.partition("/")
        if sep and i.strip().isdigit() and n.strip().isdigit():
            shard = cls(int(i), int(n))
            if 1 <= shard.index <= shard.count:
                return shard
        raise UsageError(
            f"--shard {value!r}: expected I/N with 1 ≤ I ≤ N",
            hint="e.g. --shard 1/8 ... --shard 8/8 (Slurm: --shard $((SLURM_ARRAY_TASK_ID+1))/N)",
        )

    def holds(self, record_id: str) -> bool:
        digest = hashlib.blake2b(record_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
        return int.from_bytes(digest, "big") % self.count == self.index - 1

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def manifest(self, unsharded_fingerprint: str, id_key: str) -> dict[str, Any]:
        """What a shard's manifest records under "shard", for `merge_shards`."""
        return {
            "index": self.index,
            "count": self.count,
            "fingerprint": unsharded_fingerprint,
            "id_key": id_key,
        }


def shard_jobs(jobs: Iterator[T], shard: Shard | None, record_id: Any) -> Iterator[T]:
    """The jobs of `shard` (all of them when None); `record_id(job)` names a job's record."""
    if shard is None:
        return jobs
    return (job for job in jobs if shard.holds(record_id(job)))


# merge -----------------------------------------------------------------------------------------------------


@dataclass
class ShardOutput:
    path: Path
    files: RunFiles
    manifest: dict[str, Any]

    @property
    def shard(self) -> dict[str, Any]:
        return dict(self.manifest.get("shard") or {})

    @property
    def name(self) -> str:
        return f"{self.path} (shard {self.shard.get('index')}/{self.shard.get('count')})"


@dataclass
class MergeResult:
    output: Path
    records: int = 0
    rows: int = 0
    duplicates: int = 0  # records found in more than one shard file (kept once)
    failed: int = 0
    shards: list[str] = field(default_factory=list)
    missing: list[int] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return EXIT_PARTIAL if self.failed else EXIT_OK


def _load(path: str) -> ShardOutput:
    p = Path(path)
    files = RunFiles.for_output(path)
    if files.stream or files.manifest is None:
        raise UsageError(f"{path}: not a file caitool wrote with -o, so it has no manifest to merge")
    if not p.is_file():
        raise UsageError(f"{path}: no such file")
    try:
        manifest = json.loads(files.manifest.read_text(encoding="utf-8"))
        if not isinstance(manifest, dict):
            raise ValueError
    except FileNotFoundError:
        raise UsageError(
            f"{path}: no manifest ({files.manifest.name}), so its settings are unknown"
        ) from None
    except (OSError, ValueError):
        raise UsageError(f"{files.manifest} is unreadable, so the settings of {path} are unknown") from None
    shard = manifest.get("shard")
    if not isinstance(shard, dict) or not {"index", "count", "fingerprint", "id_key"} <= set(shard):
        raise UsageError(f"{path} is not a shard", hint="merge takes the outputs of runs with --shard I/N")
    return ShardOutput(p, files, manifest)


def _unsharded(settings: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in settings.items() if k != SHARD_SETTING}


def check_shards(shards: list[ShardOutput], *, partial: bool) -> list[int]:
    """Refuse shards that cannot make one run's output; the missing shard indices (allowed with `partial`)."""
    first = shards[0]
    for other in shards[1:]:
        if other.manifest.get("command") != first.manifest.get("command"):
            raise UsageError(
                f"{other.path} is a {other.manifest.get('command')} run, {first.path} a "
                f"{first.manifest.get('command')} run: refusing to merge them"
            )
        a, b = (
            _unsharded(first.manifest.get("settings") or {}),
            _unsharded(other.manifest.get("settings") or {}),
        )
        differ = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        if other.shard["count"] != first.shard["count"]:
            differ.insert(0, f"shard count ({first.shard['count']} vs {other.shard['count']})")
        if differ or other.shard["fingerprint"] != first.shard["fingerprint"]:
            raise UsageError(
                f"shards of different settings: {first.path} and {other.path} differ in "
                f"{', '.join(differ) or 'their fingerprint'}; refusing to merge them",
                hint="rerun the odd shard with the others' settings (its own -o), then merge",
            )
    unfinished = [s for s in shards if s.manifest.get("status") not in FINISHED]
    if unfinished and not partial:
        names = ", ".join(f"{s.name}: {s.manifest.get('status')}" for s in unfinished)
        raise UsageError(
            f"unfinished shards ({names})",
            hint="rerun them to resume, or pass --partial to merge what is done",
        )
    count = int(first.shard["count"])
    missing = sorted(set(range(1, count + 1)) - {int(s.shard["index"]) for s in shards})
    if missing and not partial:
        raise UsageError(
            f"missing shards {', '.join(f'{i}/{count}' for i in missing)} of {count}",
            hint="run them and merge all, or pass --partial to merge what is here",
        )
    return missing


def _done_hashes(files: RunFiles) -> tuple[dict[str, str], int | None]:
    """Record id -> input hash from a shard's done file, and the end of its last committed record."""
    hashes: dict[str, str] = {}
    end: int | None = None
    if files.done is None or not files.done.exists():
        return hashes, end
    with files.done.open("rb") as fh:
        for raw in fh:
            try:
                row = json.loads(raw)
                hashes[str(row["id"])] = str(row.get("in", ""))
                end = max(end or 0, int(row["end"]))
            except (ValueError, TypeError, KeyError):
                continue
    return hashes, end


def _committed_lines(shard: ShardOutput, end: int | None) -> Iterator[bytes]:
    """The shard's whole rows, up to its last committed record when its done file says where that ends."""
    read = 0
    with shard.path.open("rb") as fh:
        for raw in fh:
            read += len(raw)
            if not raw.endswith(b"\n") or (end is not None and read > end):
                return
            if raw.strip():
                yield raw


def _sum_counts(shards: list[ShardOutput]) -> dict[str, Any]:
    """The shards' counts added up (models' requests, tokens and cost too); per-endpoint detail stays in
    each shard's entry of `merged_from`."""
    total: dict[str, Any] = {}

    def add(into: dict[str, Any], part: dict[str, Any]) -> None:
        for k, v in part.items():
            if isinstance(v, dict):
                if k != "endpoints":
                    add(into.setdefault(k, {}), v)
            elif isinstance(v, int | float) and not isinstance(v, bool):
                into[k] = into.get(k, 0) + v

    for s in shards:
        add(total, s.manifest.get("counts") or {})
    return total


def _copy_shard(
    shard: ShardOutput,
    id_key: str,
    out: BinaryIO,
    done: BinaryIO,
    offset: int,
    taken: set[str],
    result: MergeResult,
) -> int:
    """Append the shard's committed rows to `out`, skipping records already `taken` from an earlier shard,
    with a done line after each record; the output's new size."""
    hashes, end = _done_hashes(shard.files)
    mine: set[str] = set()
    current: str | None = None  # the record whose rows are being copied

    def commit() -> None:
        if current is not None:
            line = {"id": current, "in": hashes.get(current, ""), "end": offset}
            done.write((dumps(line) + "\n").encode())

    for raw in _committed_lines(shard, end):
        row = json.loads(raw)
        rid = str(row.get(id_key)) if isinstance(row, dict) else ""
        if rid in taken:
            if rid != current:
                result.duplicates += 1
                commit()
                current = None
            continue
        if rid != current:
            commit()
            current = rid
            if rid not in mine:
                mine.add(rid)
                result.records += 1
        out.write(raw)
        offset += len(raw)
        result.rows += 1
    commit()
    taken |= mine
    return offset


def merge_shards(
    paths: list[str], output: str, *, overwrite: bool = False, partial: bool = False
) -> MergeResult:
    """Join the shard outputs at `paths` into `output` (rows, done file, errors, manifest); see the module
    docstring. Everything is written to temporary files first and renamed into place, manifest last."""
    if not paths:
        raise UsageError("merge needs at least one shard output")
    shards = [_load(p) for p in paths]
    shards.sort(key=lambda s: int(s.shard["index"]))
    missing = check_shards(shards, partial=partial)
    files = RunFiles.for_output(output)
    if files.stream or files.output is None:
        raise UsageError("merge writes a file: give -o OUTPUT.jsonl")
    roles: dict[str, str | Path | None] = {f"shard {s.path}": s.path for s in shards}
    refuse_aliases({**roles, **files.roles()})
    present = [p for p in files.roles().values() if p is not None and p.exists()]
    if present and not overwrite:
        raise UsageError(f"{present[0]} exists", hint="choose another -o, or pass --overwrite to replace it")

    result = MergeResult(files.output, shards=[str(s.path) for s in shards], missing=missing)
    id_key = str(shards[0].shard["id_key"])
    taken: set[str] = set()
    out_tmp = files.output.with_name(files.output.name + ".merge.tmp")
    assert files.done is not None and files.errors is not None and files.manifest is not None
    done_tmp = files.done.with_name(files.done.name + ".merge.tmp")
    files.output.parent.mkdir(parents=True, exist_ok=True)
    with out_tmp.open("wb") as out, done_tmp.open("wb") as done:
        offset = 0
        for s in shards:
            offset = _copy_shard(s, id_key, out, done, offset, taken, result)
        out.flush()
        os.fsync(out.fileno())

    errors: list[dict[str, Any]] = []
    failed: set[str] = set()
    for s in shards:
        if s.files.errors is None or not s.files.errors.exists():
            continue
        with s.files.errors.open("rb") as fh:
            for raw in fh:
                try:
                    row = json.loads(raw)
                except ValueError:
                    continue
                rid = str(row.get("id")) if isinstance(row, dict) else ""
                if rid and rid not in taken and rid not in failed:
                    failed.add(rid)
                    errors.append(row)
    result.failed = len(errors)

    first = shards[0].manifest
    counts = _sum_counts(shards)
    counts.update(done=result.records, failed=result.failed, duplicates=result.duplicates, resumed=0)
    manifest = {k: v for k, v in first.items() if k not in ("shard", "lock")}
    all_finished = all(s.manifest.get("status") in FINISHED for s in shards)
    manifest.update(
        output=str(files.output),
        settings=_unsharded(first.get("settings") or {}),
        fingerprint=first["shard"]["fingerprint"],
        status="complete" if all_finished and not missing and not errors else "partial",
        started=min(float(s.manifest.get("started") or time.time()) for s in shards),
        finished=time.time(),
        counts=counts,
        merged_from=[
            {
                "output": str(s.path),
                "shard": f"{s.shard['index']}/{s.shard['count']}",
                "status": s.manifest.get("status"),
                "counts": s.manifest.get("counts"),
                "argv": s.manifest.get("argv"),
            }
            for s in shards
        ],
    )
    if missing:
        manifest["missing_shards"] = [f"{i}/{first['shard']['count']}" for i in missing]
    os.replace(out_tmp, files.output)
    os.replace(done_tmp, files.done)
    if errors:
        tmp = files.errors.with_name(files.errors.name + ".merge.tmp")
        tmp.write_text("".join(dumps(r) + "\n" for r in errors), encoding="utf-8")
        os.replace(tmp, files.errors)
    else:
        files.errors.unlink(missing_ok=True)
    if files.steps is not None:
        files.steps.unlink(missing_ok=True)  # checkpoints of an earlier run of this output: not ours
    tmp = files.manifest.with_name(files.manifest.name + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, files.manifest)
    return result
