"""Helpers the data commands share: building the model client, bad-input policy, prices."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from caitool.errors import InputError, UsageError
from caitool.inputs import Line, check_input, read_lines
from caitool.runner import RunCounts
from caitool.store import RunFiles, dumps, refuse_aliases

T = TypeVar("T")


def build_client(
    spec: str,
    *,
    base_url: str | None,
    api_key: str | None,
    timeout: float,
    retries: int,
    rpm: float | None,
    tpm: float | None,
) -> Any:
    from caitool.providers import get_client
    from caitool.retry import RateLimiter, ResilientClient, RetryPolicy

    client = get_client(spec, base_url=base_url, api_key=api_key, timeout=timeout)
    return ResilientClient(client, RetryPolicy(retries=retries), RateLimiter(rpm=rpm, tpm=tpm))


def default_concurrency(spec: str, given: int | None) -> int:
    if given is not None:
        return given
    # The embedded model runs one request at a time on all cores; more in flight only queues.
    return 1 if spec.startswith("local/") else 16


def parse_price(value: str | None) -> tuple[float, float] | None:
    if value is None:
        return None
    try:
        a, b = (float(x) for x in value.split(","))
    except ValueError:
        raise UsageError(f"--price {value!r}: expected INPUT,OUTPUT in USD per million tokens") from None
    return a, b


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise UsageError(f"{name} {value!r}: choose one of {', '.join(choices)}")
    return value


class BadInputPolicy:
    """`fail`: the first bad line raises (exit 2). `skip`: bad lines go to a rejects file with the reason."""

    def __init__(self, mode: str, rejects: str | None, output: str | None, counts: RunCounts) -> None:
        self.mode = check_choice("--on-bad-input", mode, ("fail", "skip"))
        self.counts = counts
        self.output = output
        self.path: Path | None = None
        if self.mode == "skip":
            if rejects:
                self.path = Path(rejects)
            elif output and output != "-":
                self.path = Path(output + ".rejects.jsonl")

    def start(self, input_path: str) -> None:
        """Empty the rejects file for this run, unless it is the input or a file of the output."""
        if self.path is not None:
            refuse_aliases(
                {"the input": input_path, "--rejects": self.path, **RunFiles.for_output(self.output).roles()}
            )
            self.path.write_text("")

    def handle(self, err: InputError, data: dict[str, Any] | None = None) -> None:
        if self.mode == "fail":
            raise err
        self.counts.rejected += 1
        if self.path is not None:
            row: dict[str, Any] = {"where": err.where, "error": err.reason}
            if data is not None:
                row["record"] = data
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(dumps(row) + "\n")


def lines_to_jobs(path: str, policy: BadInputPolicy, convert: Callable[[Line], list[T]]) -> Iterator[T]:
    """Input lines → jobs; the bad-input policy handles unreadable lines and lines `convert` rejects.
    A missing input and a rejects file that would overwrite the input or output are refused here, at once,
    before any file is created."""
    check_input(path)
    policy.start(path)
    return _lines_to_jobs(path, policy, convert)


def _lines_to_jobs(path: str, policy: BadInputPolicy, convert: Callable[[Line], list[T]]) -> Iterator[T]:
    for line in read_lines(path):
        if isinstance(line, InputError):
            policy.handle(line)
            continue
        try:
            items = convert(line)
        except InputError as err:
            policy.handle(err, line.data)
            continue
        yield from items


def print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, ensure_ascii=False))
