"""The bill before it comes: `--dry-run`'s estimate of requests, tokens and USD, and `--max-cost USD`.

Both read a record's requests from its task's preview (`RecordTask.preview`: the exact requests, with a
placeholder such as `<critique 2>` where an earlier answer goes), so the estimate is built from the prompts
the run would render, not from a guess per command. Per request:

- input tokens: the rendered prompt's characters / 4 (the estimate the rate budget uses), plus the answer
  bound for each placeholder (an earlier answer is at most that long);
- output tokens: at most the answer bound (the task's `answer_tokens`: its `--max-tokens`) per sample.

Both are upper bounds on output and on the answers fed back, so the USD figure is what the run costs at
most, if the provider's tokenizer counts about 4 characters per token. A command whose preview shows only
a record's first requests (label-pairs: the first question) is estimated from those; the printed table
names the steps it covers.

`--max-cost` keeps the run's spending under the budget: before a record is dispatched, the USD already
spent by this run's requests (from the providers' usage, at the tier they were sent at) plus the upper
bound of every record in flight plus this record's upper bound must fit, else no further record is
dispatched. Records in flight finish (their bound was reserved when they started), the summary says why
the run stopped, and the exit code is `EXIT_BUDGET` (4): a rerun resumes, spending up to its own
`--max-cost` (the budget is per run, not per output file).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from caitool.pricing import TIERS, Price, tier_cost, total_cost
from caitool.providers.base import Usage
from caitool.runner import Job

# How the tasks' previews mark an answer the record has not got yet (critique_revise, compare).
PLACEHOLDER = re.compile(r"<(?:initial response|critique \d+|revision \d+|[^<>\n]{1,80}'s response)>")
# Per-record numbers in step titles ("round 2 critique (principle 7)") are dropped to group steps.
_TITLE_DETAIL = re.compile(r"\s*\((?:principle|samples?)[^)]*\)")
CHARS_PER_TOKEN = 4
# A dry run reads every record up to this many and extrapolates beyond (the input's record count).
ESTIMATE_SAMPLE = 2000
DEFAULT_ANSWER_TOKENS = 512  # GenerateParams' default max_tokens, for a task that states no bound

Request = Any  # list[Message] | str, as in caitool.tasks.base


def answer_bound(task: Any) -> tuple[int, int]:
    """(tokens per answer, answers per request) the task states (`answer_tokens`, `samples_per_request`),
    else --max-tokens' default and one."""
    return (
        int(getattr(task, "answer_tokens", DEFAULT_ANSWER_TOKENS)),
        int(getattr(task, "samples_per_request", 1)),
    )


def _text(request: Request) -> str:
    if isinstance(request, str):
        return request
    return "".join(m.content for m in request)


def request_usage(request: Request, answer_tokens: int, samples: int) -> Usage:
    """Upper-bound usage of one request (see the module docstring)."""
    text = _text(request)
    placeholders = PLACEHOLDER.findall(text)
    chars = len(text) - sum(len(p) for p in placeholders)
    return Usage(
        input_tokens=chars // CHARS_PER_TOKEN + len(placeholders) * answer_tokens,
        output_tokens=answer_tokens * samples,
        calls=1,
    )


def record_usage(steps: Iterable[tuple[str, Request]], answer_tokens: int, samples: int) -> Usage:
    total = Usage()
    for _, request in steps:
        total.add(request_usage(request, answer_tokens, samples))
    return total


def step_name(title: str) -> str:
    return _TITLE_DETAIL.sub("", title).strip()


@dataclass
class Estimate:
    """The upper-bound bill of a set of records, per step."""

    records: int = 0
    steps: dict[str, Usage] = field(default_factory=dict)

    def add(self, steps: list[tuple[str, Request]], answer_tokens: int, samples: int) -> None:
        self.records += 1
        for title, request in steps:
            self.steps.setdefault(step_name(title), Usage()).add(
                request_usage(request, answer_tokens, samples)
            )

    def scaled(self, factor: float) -> Estimate:
        out = Estimate(round(self.records * factor))
        for name, u in self.steps.items():
            out.steps[name] = Usage(
                round(u.input_tokens * factor), round(u.output_tokens * factor), round(u.calls * factor)
            )
        return out

    def total(self) -> Usage:
        total = Usage()
        for u in self.steps.values():
            total.add(u)
        return total


def estimate(
    jobs: Iterator[Job[Any]],
    preview: Callable[[Job[Any]], list[tuple[str, Request]]],
    task: Any,
    total: int | None,
) -> tuple[Estimate, int]:
    """(the estimate, records read): every record up to ESTIMATE_SAMPLE, then scaled to `total` records
    (the input's line count) when the input has more."""
    answer_tokens, samples = answer_bound(task)
    est = Estimate()
    for job in jobs:
        if est.records >= ESTIMATE_SAMPLE:
            break
        est.add(preview(job), answer_tokens, samples)
    read = est.records
    if total is not None and read and total > read:
        est = est.scaled(total / read)
    return est, read


def print_estimate(est: Estimate, read: int, price: Price | None) -> None:
    """The bill on stderr (stdout keeps the prompt preview): per step, USD per tier the price table has."""
    out = sys.stderr
    scope = f"all {read} records" if est.records == read else f"{read} records read, scaled to {est.records}"
    tiers = [t for t in TIERS if price is not None and price.has_tier(t)]
    out.write(f"estimated bill ({scope}; upper bounds: every answer at --max-tokens)\n")
    head = f"  {'step':<26} {'requests':>9} {'input tok':>12} {'output tok':>12}"
    out.write(head + "".join(f" {'USD ' + t:>12}" for t in tiers) + "\n")
    rows = [*est.steps.items(), ("total", est.total())]
    for name, u in rows:
        line = f"  {name:<26} {u.calls:>9,} {u.input_tokens:>12,} {u.output_tokens:>12,}"
        for t in tiers:
            cost = tier_cost(price, t, u)
            line += f" {'$' + format(cost or 0.0, ',.4f'):>12}"
        out.write(line + "\n")
    if price is None:
        out.write("  USD: no price for this model in the table (pass --price INPUT,OUTPUT)\n")


class Budget:
    """`--max-cost`: stops dispatching records before this run's spent + reserved USD would cross `limit`."""

    def __init__(
        self,
        limit: float,
        price: Price,
        tier: str,
        bound: Callable[[Job[Any]], Usage],
        clients: list[Any],
    ) -> None:
        self.limit = limit
        self.price = price
        self.tier = tier if price.has_tier(tier) else "standard"
        self.bound = bound
        self.clients = clients
        self.reserved: dict[str, float] = {}  # record id in flight -> its upper-bound USD
        self.stopped = False
        self._done: Any = ()  # the output's finished ids (set by `wrap` once the store is open)

    def spent(self) -> float:
        costs = [total_cost(self.price, c.stats.usage_by_tier) for c in self.clients]
        return sum(c for c in costs if c is not None)

    def gate(self, jobs: Iterator[Job[Any]]) -> Iterator[Job[Any]]:
        """`jobs`, ending before the first one whose bound does not fit under the budget."""
        for job in jobs:
            if job.id in self._done:  # already in the output: the runner skips it, it costs nothing
                yield job
                continue
            need = self.price.cost(self.bound(job), self.tier)
            if self.spent() + sum(self.reserved.values()) + need > self.limit:
                self.stopped = True
                return
            self.reserved[job.id] = need  # dispatched now; released when its process ends
            yield job

    def wrap(
        self, make: Callable[[Any], Callable[[Job[Any]], Awaitable[list[dict[str, Any]]]]]
    ) -> Callable[[Any], Callable[[Job[Any]], Awaitable[list[dict[str, Any]]]]]:
        """`make_process` whose records release their reservation when they end (their real cost is then
        in the spent USD)."""

        def make_wrapped(store: Any) -> Callable[[Job[Any]], Awaitable[list[dict[str, Any]]]]:
            process = make(store)
            self._done = store.done

            async def run(job: Job[Any]) -> list[dict[str, Any]]:
                try:
                    return await process(job)
                finally:
                    self.reserved.pop(job.id, None)

            return run

        return make_wrapped

    def summary(self) -> dict[str, Any]:
        return {"max_cost_usd": self.limit, "spent_usd": round(self.spent(), 6), "stopped": self.stopped}
