"""A sliding window of record jobs over a lazy input, writing each record as soon as it is done.

Knows nothing of Constitutional AI: a command hands it an iterator of jobs and an async `process(job)` that
returns the output rows of one record (all of its model calls happen inside, sequentially, so the window is
depth-first: a record's rounds finish before many new records start). At most `concurrency` records are in
flight; a finished one is replaced at once (no batch barrier). Memory holds the in-flight records and the ids
seen (an `IdSet`, about 30 bytes each), never the input.

A record whose calls fail after retries (`ProviderError`), or that its task gives up on (`RecordFailed`, such
as an answer that cannot be parsed), goes to the errors file and the run goes on. Anything else stops the
run: in-flight records are cancelled, the files are closed, and the error propagates. An `InputError` from the
input iterator stops dispatching, lets in-flight records finish, then propagates; so does a record already
committed to the output from a different input (same id, other content), found when the input reaches it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

# RecordFailed is re-exported for the tasks that still import it from here; it lives in caitool.errors.
from caitool.errors import CaitoolError, InputError, ProviderError
from caitool.errors import RecordFailed as RecordFailed
from caitool.providers.base import current_record
from caitool.store import IdSet, OutputStore, record_hash

T = TypeVar("T")


@dataclass(frozen=True)
class Job(Generic[T]):
    id: str
    where: str
    item: T


@dataclass
class RunCounts:
    total: int | None = None
    done: int = 0
    resumed: int = 0
    failed: int = 0
    duplicates: int = 0
    rejected: int = 0
    started: float = field(default_factory=time.monotonic)

    def to_dict(self) -> dict[str, Any]:
        return {
            "done": self.done,
            "resumed": self.resumed,
            "failed": self.failed,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
            "seconds": round(time.monotonic() - self.started, 3),
        }


async def run_jobs(
    jobs: Iterator[Job[T]],
    process: Callable[[Job[T]], Awaitable[list[dict[str, Any]]]],
    store: OutputStore,
    *,
    concurrency: int,
    limit: int | None = None,
    counts: RunCounts | None = None,
    on_progress: Callable[[RunCounts], None] | None = None,
) -> RunCounts:
    counts = counts or RunCounts()
    seen = IdSet()  # ids dispatched by this run; store.done: ids already in the output
    in_flight: dict[asyncio.Task[list[dict[str, Any]]], tuple[Job[T], str]] = {}  # job, its input hash
    hashed = store.tracks_done
    input_error: InputError | None = None
    dispatched = 0
    exhausted = False

    def next_job() -> tuple[Job[T], str] | None:
        nonlocal exhausted, input_error, dispatched
        while not exhausted:
            if limit is not None and dispatched >= limit:
                exhausted = True
                return None
            try:
                job = next(jobs)
            except StopIteration:
                exhausted = True
                return None
            except InputError as exc:
                input_error = exc
                exhausted = True
                return None
            dispatched += 1
            h = record_hash(job.item) if hashed else ""
            try:
                done = store.is_done(job.id, h, job.where)
            except InputError as exc:
                input_error = exc
                exhausted = True
                return None
            if done:
                counts.resumed += 1
                continue
            if not seen.add(job.id):
                counts.duplicates += 1
                continue
            return job, h
        return None

    # Finished tasks queue themselves up: O(1) per record, where `asyncio.wait(in_flight)` would add and
    # remove a callback on every in-flight task each time one finishes (O(C), ~0.2 ms per record at C = 256).
    finished: asyncio.Queue[asyncio.Task[list[dict[str, Any]]]] = asyncio.Queue()

    def fill() -> None:
        while len(in_flight) < concurrency:
            nxt = next_job()
            if nxt is None:
                return
            task = asyncio.ensure_future(_as_record(process, nxt[0]))
            task.add_done_callback(finished.put_nowait)
            in_flight[task] = nxt

    try:
        fill()
        while in_flight:
            batch = [await finished.get()]
            while not finished.empty():
                batch.append(finished.get_nowait())
            for task in batch:
                job, h = in_flight.pop(task)
                exc = task.exception()
                if exc is None:
                    store.write_rows(task.result(), job.id, h)
                    counts.done += 1
                elif isinstance(exc, ProviderError | RecordFailed):
                    row: dict[str, Any] = {"id": job.id, "where": job.where, "error": str(exc)}
                    if isinstance(exc, ProviderError):
                        row["status"] = exc.status
                    if isinstance(exc, RecordFailed):
                        row.update(exc.detail)
                    store.write_error(row)
                    counts.failed += 1
                else:
                    raise exc
            if on_progress:
                on_progress(counts)
            fill()
    finally:
        for task in in_flight:
            task.cancel()
        if in_flight:
            await asyncio.gather(*in_flight, return_exceptions=True)
    if input_error is not None:
        raise input_error
    return counts


async def _as_record(
    process: Callable[[Job[T]], Awaitable[list[dict[str, Any]]]], job: Job[T]
) -> list[dict[str, Any]]:
    """`process(job)` with `current_record` set to the job's id for its task (and the tasks it starts), so
    that a provider can tell which record a request belongs to (an endpoint fleet's affinity)."""
    current_record.set(job.id)
    return await process(job)


def is_fatal(exc: BaseException) -> bool:
    return isinstance(exc, CaitoolError) and not isinstance(exc, ProviderError)
