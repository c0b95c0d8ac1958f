"""Helpers the data commands share: the client and run flag groups, `run_task` (the one way a command
reaches the pipeline and the providers), bad-input policy, prices."""

from __future__ import annotations

import itertools
import json
import math
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import typer

from caitool.errors import InputError, UsageError
from caitool.inputs import Line, check_input, read_lines
from caitool.runner import Job, RunCounts
from caitool.store import RunFiles, dumps, refuse_aliases

if TYPE_CHECKING:
    from caitool.budget import Budget
    from caitool.pricing import Price
    from caitool.providers import ProviderInfo
    from caitool.retry import ResilientClient
    from caitool.shards import Shard
    from caitool.tasks.base import RecordTask

T = TypeVar("T")
R = TypeVar("R")

TIERS = ("standard", "flex", "batch")
FLEX_TIMEOUT_S = 900.0


@dataclass(frozen=True)
class ClientFlags:
    """--model, --base-url, --api-key, --timeout, --retries, --rpm, --tpm, --concurrency, --price, --tier:
    how a generating command reaches its model, read once from the command's parameters."""

    model: str
    base_url: str | None = None
    api_key: str | None = None
    timeout: float = 120.0
    retries: int = 6
    rpm: float | None = None
    tpm: float | None = None
    concurrency: int | None = None
    price: tuple[float, float] | None = None
    tier: str = "standard"  # TIERS; how requests are sent and billed, never what they return
    output: str | None = None  # -o: --tier batch keeps its ledgers beside it
    flex_fallback: int | None = None  # with flex: standard after this many "resource unavailable" answers
    cache: str | None = None  # --cache DIR: answers kept across runs (caitool.response_cache)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> ClientFlags:
        """The flags from `ctx.params`; --model defaults to $CAITOOL_MODEL or local/smollm2, and --price is
        checked here, so a bad value fails before --dry-run too."""
        from caitool.providers import default_model

        for flag in ("timeout", "rpm", "tpm"):
            value = params.get(flag)
            if value is not None and not math.isfinite(value):
                raise UsageError(f"--{flag} {value}: must be a finite number")
        return cls(
            model=params.get("model") or default_model(),
            base_url=join_base_urls(params.get("base_url")),
            api_key=params.get("api_key"),
            # Flex answers can take minutes to start (OpenAI: "use a 15 minute timeout").
            timeout=params.get("timeout") or (FLEX_TIMEOUT_S if params.get("tier") == "flex" else 120.0),
            retries=params.get("retries", 6),
            rpm=params.get("rpm"),
            tpm=params.get("tpm"),
            concurrency=params.get("concurrency"),
            price=parse_price(params.get("price")),
            tier=check_choice("--tier", params.get("tier", "standard"), TIERS),
            output=params.get("output"),
            flex_fallback=params.get("flex_fallback"),
            cache=params.get("cache"),
        )

    @property
    def url_setting(self) -> str | None:
        """--base-url as the resume fingerprint holds it: one URL as given, and any endpoint fleet as "fleet",
        so that a rerun may add, drop or replace endpoints (they serve one model, and the manifest's
        per-endpoint counts name them); a fleet's output and one server's are still not mixed."""
        from caitool.providers.fleet import is_fleet

        return "fleet" if is_fleet(self.base_url) else self.base_url

    def build(self, model: str | None = None, *, base_url: str | None = None) -> ResilientClient:
        """The client for --model, or for another model of the run (a policy, a compared model) on
        `base_url` with the same timeout, retries and rate budget, and no --api-key (that is --model's)."""
        if model is None:
            model, base_url, api_key = self.model, self.base_url, self.api_key
        else:
            api_key = None
        return build_client(
            model,
            base_url=base_url,
            api_key=api_key,
            timeout=self.timeout,
            retries=self.retries,
            rpm=self.rpm,
            tpm=self.tpm,
            concurrency=self.concurrency,
            tier=self.tier,
            ledger_for=self.output,
            flex_fallback=self.flex_fallback,
            cache=self.cache,
        )

    def price_for(self, model: str | None = None) -> Price | None:
        from caitool.pricing import price_for

        return price_for(model or self.model, self.price)


@dataclass(frozen=True)
class RunFlags:
    """The input, the output files and how the run treats them: the same for every data command."""

    input: str = "-"
    output: str | None = None
    errors: str | None = None
    limit: int | None = None
    overwrite: bool = False
    quiet: bool = False
    on_bad_input: str = "fail"
    rejects: str | None = None
    dry_run: bool = False
    max_cost: float | None = None  # USD this run may spend (caitool.budget)
    shard: str | None = None  # "I/N": this run's part of the records (caitool.shards)
    engine: str = "local"  # caitool.engines.ENGINES: where records run; never what they produce
    ray_address: str | None = None
    ray_actors: int | None = None

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> RunFlags:
        names = cls.__dataclass_fields__
        return cls(**{k: v for k, v in params.items() if k in names})


def run_task(
    task: RecordTask,
    run: RunFlags,
    clients: list[ResilientClient],
    *,
    concurrency: int | None,
    price: Price | None,
    extra_manifest: dict[str, Any] | None = None,
) -> NoReturn:
    """Run `task` over the input's records: the only place a command's run reaches the pipeline.

    The task reads each input line into jobs (an InputError for a bad line goes to --on-bad-input's
    policy). With --dry-run, the first record's requests are printed and nothing else happens (a command
    may pass no clients then, so a dry run needs no key). `clients[0]` is the task's own model: its
    default concurrency is the run's unless --concurrency. Exits with the pipeline's exit code."""
    from caitool.engines import ENGINES
    from caitool.inputs import count_lines
    from caitool.pipeline import RunSpec, execute
    from caitool.shards import Shard, shard_jobs
    from caitool.tasks.base import make_process, print_preview

    shard = Shard.parse(run.shard) if run.shard else None
    counts = RunCounts()
    policy = BadInputPolicy(run.on_bad_input, run.rejects, run.output, counts)
    jobs = shard_jobs(lines_to_jobs(run.input, policy, task.read), shard, lambda job: job.id)
    if run.dry_run:
        from caitool.budget import estimate, print_estimate

        job = next(iter(jobs), None)
        if job is not None:
            print_preview(job.id, task.preview(job), task.prompt_format)
            sys.stdout.flush()
            total = count_lines(run.input) if shard is None else None
            est, read = estimate(itertools.chain([job], jobs), task.preview, task, total)
            print_estimate(est, read, price)
        raise typer.Exit(0)
    budget = make_budget(run.max_cost, price, task, clients)
    if budget is not None and run.engine != "local":  # the Ray actors spend outside this process's counters
        raise UsageError(f"--max-cost: not available with --engine {run.engine} yet; use --engine local")
    settings, extra = sharded_settings(
        shard, task.command, run.input, run.output, task.settings(), extra_manifest, task.id_key
    )
    run_spec = RunSpec(
        command=task.command,
        input=run.input,
        output=run.output,
        errors=run.errors,
        settings=settings,
        concurrency=concurrency if concurrency is not None else clients[0].default_concurrency,
        limit=run.limit,
        quiet=run.quiet,
        overwrite=run.overwrite,
        total=count_lines(run.input) if shard is None else None,  # a shard's share is known only at the end
        id_key=task.id_key,
        extra_manifest=extra,
    )
    if check_choice("--engine", run.engine, ENGINES) == "ray":
        from caitool.engines.ray_engine import execute_on_ray

        code = execute_on_ray(run_spec, jobs, task, clients, price=price, counts=counts,
                              address=run.ray_address, actors=run.ray_actors, window=concurrency)  # fmt: skip
        raise typer.Exit(code)
    process = make_process(task)
    if budget is not None:
        jobs, process = budget.gate(jobs), budget.wrap(process)
    raise typer.Exit(execute(run_spec, jobs, process, clients, price=price, counts=counts, budget=budget))


def make_budget(
    max_cost: float | None, price: Price | None, task: RecordTask, clients: list[ResilientClient]
) -> Budget | None:
    """The --max-cost budget of a run, at the tier of its model's requests; refused without a price."""
    if max_cost is None:
        return None
    from caitool.budget import Budget, answer_bound, record_usage

    if price is None:
        raise UsageError("--max-cost needs the model's price: it is not in the table; pass --price IN,OUT")
    answer_tokens, samples = answer_bound(task)
    tier = clients[0].tier if clients else "standard"
    return Budget(
        max_cost, price, tier, lambda job: record_usage(task.preview(job), answer_tokens, samples), clients
    )


def sharded_settings(
    shard: Shard | None,
    command: str,
    input_path: str,
    output: str | None,
    settings: dict[str, Any],
    extra_manifest: dict[str, Any] | None,
    id_key: str = "id",
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(settings, extra manifest) of a run on `shard`. The shard is a setting (a shard's output resumes only
    as that shard); the manifest also keeps the unsharded fingerprint, so `caitool merge` can make an output
    the unsharded command resumes."""
    from caitool.pipeline import RunSpec
    from caitool.shards import SHARD_SETTING

    extra = dict(extra_manifest or {})
    if shard is None:
        return settings, extra
    unsharded = RunSpec(command=command, input=input_path, output=output, settings=settings)
    extra["shard"] = shard.manifest(unsharded.fingerprint(), id_key)
    return {**settings, SHARD_SETTING: str(shard)}, extra


def run_then_read(
    task: Any,
    jobs: Iterable[Job[Any]],
    client: ResilientClient,
    flags: ClientFlags,
    run: RunFlags,
    *,
    suffix: str,
    total: int,
    then: Callable[[str], R],
    extra_manifest: dict[str, Any] | None = None,
) -> tuple[int, R]:
    """Run `task.process` over `jobs` durably into OUTPUT+`suffix` (resumable; a temporary file when the
    result goes to stdout), then `then(path)` over every row written: `run_task` for the commands whose result
    is computed from all of a run's rows (red-team's deduplication, eval-labeler's metrics), whose jobs are
    not one per input line. With --shard, only the shard's jobs run, and `then` reads the shard's rows.
    (exit code, result); an interrupted run exits at once."""
    import tempfile

    from caitool.errors import EXIT_INTERRUPTED

    if run.engine != "local":  # its jobs are not one per input line, and its result needs all the rows here
        raise UsageError(
            f"--engine {run.engine}: only the per-record commands run on Ray; use --engine local"
        )
    from caitool.pipeline import RunSpec, execute
    from caitool.shards import Shard, shard_jobs

    shard = Shard.parse(run.shard) if run.shard else None
    if run.max_cost is not None:  # caitool.budget reserves per input record; these jobs are not
        raise UsageError(f"--max-cost: not available for {task.command} yet")

    def execute_into(path: str) -> tuple[int, R]:
        settings, extra = sharded_settings(
            shard,
            task.command,
            run.input,
            path,
            {"model": flags.model, "base_url": flags.url_setting, **task.settings()},
            extra_manifest,
        )
        run_spec = RunSpec(
            command=task.command,
            input=run.input,
            output=path,
            errors=run.errors,
            settings=settings,
            concurrency=flags.concurrency if flags.concurrency is not None else client.default_concurrency,
            quiet=run.quiet,
            overwrite=run.overwrite,
            total=total if shard is None else None,
            extra_manifest=extra,
        )
        selected = shard_jobs(iter(jobs), shard, lambda job: job.id)
        code = execute(run_spec, selected, lambda store: task.process, [client], price=flags.price_for())
        if code == EXIT_INTERRUPTED:
            raise typer.Exit(code)
        return code, then(path)

    if run.output not in (None, "-"):
        return execute_into(run.output + suffix)
    with tempfile.TemporaryDirectory(prefix=f"caitool-{task.command}-") as tmp:
        return execute_into(str(Path(tmp) / f"rows{suffix or '.jsonl'}"))


def build_client(
    spec: str,
    *,
    base_url: str | None,
    api_key: str | None,
    timeout: float,
    retries: int,
    rpm: float | None,
    tpm: float | None,
    concurrency: int | None = None,
    tier: str = "standard",
    flex_fallback: int | None = None,
    cache: str | None = None,
    ledger_for: str | None = None,
) -> Any:
    """The retrying client for `spec`; a comma-separated `base_url` makes it an endpoint fleet
    (`caitool.providers.fleet`), whose caps split `concurrency` when the URLs do not set them."""
    from caitool.providers import get_client
    from caitool.providers.fleet import build_fleet, is_fleet
    from caitool.retry import RateLimiter, ResilientClient, RetryPolicy

    if is_fleet(base_url):
        assert base_url is not None
        client: Any = build_fleet(spec, base_url, api_key=api_key, timeout=timeout, concurrency=concurrency)
    else:
        client = get_client(spec, base_url=base_url, api_key=api_key, timeout=timeout)
    if tier == "batch":  # requests go out in provider batches, with the ledgers beside `ledger_for` (-o)
        from caitool.tiers import batch_client

        client = batch_client(client, ledger_for)
    elif ledger_for is not None:
        from caitool.tiers import warn_uncollected

        warn_uncollected(spec, ledger_for)
    wrapped = ResilientClient(
        client,
        RetryPolicy(retries=retries),
        RateLimiter(rpm=rpm, tpm=tpm),
        tier=tier,
        flex_fallback=flex_fallback,
        cache=None if cache is None else response_cache(cache, spec, base_url),
        concurrency=concurrency,
    )
    if tier == "flex" and not wrapped.supports_flex:
        raise UsageError(
            f"--tier flex: {spec} has no flex tier (OpenAI's service_tier=flex, on openai/ and other "
            "OpenAI-protocol models); use --tier standard or --tier batch"
        )
    return wrapped


def response_cache(root: str, spec: str, base_url: str | None) -> Any:
    """--cache DIR for `spec`: its entries are keyed by the spec and the URL the requests go to (--base-url,
    else the provider's own, from the environment or its default)."""
    from caitool.providers import get_provider, split_spec
    from caitool.response_cache import ResponseCache

    url = base_url or get_provider(split_spec(spec)[0], spec=spec).base_url() or ""
    return ResponseCache(root, f"{spec}|{url}")


def join_base_urls(value: str | list[str] | tuple[str, ...] | None) -> str | None:
    """--base-url as one string: a repeated flag becomes the comma-separated fleet form (`a,b,c`), which
    `caitool.providers.fleet` reads; None and a single URL stay as they are."""
    if value is None or isinstance(value, str):
        return value
    return ",".join(value) if value else None


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
            elif err.line is not None:
                row["line"] = err.line  # not a record: the raw text, so nothing of the input is lost
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


def provider_table() -> list[ProviderInfo]:
    """Every model provider, built-in or plugin, as `caitool providers list` shows it."""
    from caitool.providers import list_providers

    return list_providers()


def names_a_provider(value: str) -> bool:
    """Whether `value` is a `provider/model` spec whose provider is in the table (a built-in or a plugin)."""
    from caitool.providers import provider_names

    provider, sep, model = value.partition("/")
    return bool(sep and model) and provider in provider_names()


def redact_url(url: str | None) -> str | None:
    """A URL as recorded in the manifest: user-info replaced by ***."""
    from caitool.pipeline import redact_argv

    return None if url is None else redact_argv([url])[0]
