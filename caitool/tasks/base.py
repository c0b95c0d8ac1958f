"""The record-task seam: what a data command hands the pipeline, so a command is flags plus one call.

A `RecordTask` owns everything about one input record: its settings (what the resume fingerprint covers),
its preview (`--dry-run`: the exact first requests, no model call) and `process(job, cache)`, which returns
the record's rows already in the chosen `--format`, with the task's provenance. The pipeline owns the rest
(files, resume, progress, exit codes); `caitool.cli._common.run_task` joins the two.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from caitool.inputs import Line
from caitool.providers.base import Message
from caitool.runner import Job

Request = list[Message] | str  # a chat request, or a raw completion prompt


class StepCache:
    """The finished model calls of the run's unfinished records, so a rerun does not pay for them again.

    `get(record_id, step)` returns what `save(record_id, step, data)` stored, in this run or an interrupted
    earlier one (the output store persists them); an empty cache (`StepCache()`) keeps nothing."""

    def __init__(
        self,
        steps: dict[str, dict[str, Any]] | None = None,
        save: Callable[[str, str, Any], None] | None = None,
    ) -> None:
        self._steps = steps if steps is not None else {}
        self._save = save

    def get(self, record_id: str, step: str) -> Any:
        return self._steps.get(record_id, {}).get(step)

    def save(self, record_id: str, step: str, data: Any) -> None:
        if self._save is not None:
            self._save(record_id, step, data)


class RecordTask(Protocol):
    """One data command's per-record work (critique-revise, sample-pairs, label-pairs, compare)."""

    command: str  # the command's name: the manifest's and the fingerprint's
    id_key: str  # the output field that names the input record ("id", or "source_id" for 1 → n rows)
    prompt_format: str  # shown in --dry-run's headers

    def read(self, line: Line) -> list[Job[Any]]:
        """The jobs of one input line; an InputError for a line the task cannot use."""
        ...

    def settings(self) -> dict[str, Any]:
        """Everything that changes the output: fingerprinted, and a rerun with other values is refused."""
        ...

    def preview(self, job: Job[Any]) -> list[tuple[str, Request]]:
        """(title, request) for the exact first requests of `job`, with no model call."""
        ...

    async def process(self, job: Job[Any], cache: StepCache) -> list[dict[str, Any]]:
        """The rows of one record, in the chosen --format, with the task's provenance."""
        ...


def make_process(task: RecordTask) -> Callable[[Any], Callable[[Job[Any]], Awaitable[list[dict[str, Any]]]]]:
    """`pipeline.execute`'s `make_process` for `task`: each record's process gets the output store's steps
    as the run's StepCache."""

    def make(store: Any) -> Callable[[Job[Any]], Awaitable[list[dict[str, Any]]]]:
        cache = StepCache(store.steps, store.save_step)

        async def process(job: Job[Any]) -> list[dict[str, Any]]:
            return await task.process(job, cache)

        return process

    return make


def print_preview(record_id: str, steps: list[tuple[str, Request]], prompt_format: str) -> None:
    """The one `--dry-run` printer: a header per request, then the prompt text or one message per line."""
    out = sys.stdout  # the preview is the command's output, like its rows
    for title, request in steps:
        out.write(f"===== {record_id}: {title} [{prompt_format}] =====\n")
        if isinstance(request, str):
            out.write(request + "\n")
        else:
            for m in request:
                out.write(json.dumps(m.to_dict(), ensure_ascii=False) + "\n")
