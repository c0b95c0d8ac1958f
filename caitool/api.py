"""caitool from Python: one function per data command, taking records and returning rows.

    import caitool.api as cai

    rows = cai.critique_revise([{"id": "1", "prompt": "How do I pick a lock?"}], model="openai/gpt-4o-mini")
    pairs = cai.sample_pairs(prompts, model="vllm/my-sft", k=4, output="pairs.jsonl")
    labels = await cai.alabel_pairs(pairs, model="anthropic/claude-sonnet-4-5")

Each function runs the same task as its command (`caitool.tasks`), with the same options under the same
names (`--max-tokens` is `max_tokens=`), and returns the rows the command writes. Records are dicts in the
command's input layout; their place in the list (`<records>:N`) stands where a command names a file line.

Without `output`, rows come back in memory and a record that fails raises its error. With `output`, the run
goes through the command's pipeline: rows are appended to the file as they finish, a rerun resumes it
(records already written are not paid for again; other settings are refused unless `overwrite=True`),
failures go to OUTPUT.errors.jsonl, and the function returns every row of the file. The `a…` variants are
coroutines for code that already runs an event loop (a notebook, a server).

Client options, as on the command line: model (default $CAITOOL_MODEL or local/smollm2), base_url, api_key,
timeout, retries, rpm, tpm, price ("INPUT,OUTPUT" USD per million tokens) and concurrency.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, ParamSpec, TypeVar

from caitool.cli._common import ClientFlags, redact_url
from caitool.errors import EXIT_INTERRUPTED
from caitool.inputs import Line
from caitool.pipeline import RunSpec, execute
from caitool.pricing import Price
from caitool.providers.base import GenerateParams
from caitool.retry import ResilientClient
from caitool.runner import Job
from caitool.store import read_jsonl
from caitool.tasks.ab_question import resolve_label_mode
from caitool.tasks.base import RecordTask, StepCache, make_process
from caitool.tasks.compare import CompareRun, CompareTask, criteria_labelers
from caitool.tasks.critique_revise import CritiqueReviseRun, CritiqueReviseSettings, CritiqueReviseTask
from caitool.tasks.label_pairs import (
    QUESTION_FORMATS,
    Labeler,
    LabelPairsRun,
    LabelPairsTask,
    LabelSettings,
    load_label_templates,
)
from caitool.tasks.sample_pairs import SamplePairsTask

Records = Iterable[Mapping[str, Any]]
P = ParamSpec("P")
R = TypeVar("R")

__all__ = [
    "acompare",
    "acritique_revise",
    "alabel_pairs",
    "asample_pairs",
    "compare",
    "critique_revise",
    "label_pairs",
    "sample_pairs",
]


async def _run(
    task: RecordTask,
    records: Records,
    clients: list[ResilientClient],
    *,
    output: str | None,
    overwrite: bool,
    quiet: bool,
    concurrency: int | None,
    price: Price | None,
) -> list[dict[str, Any]]:
    jobs = [job for n, rec in enumerate(records, 1) for job in task.read(Line(f"<records>:{n}", dict(rec)))]
    in_flight = concurrency or clients[0].default_concurrency
    if output is None:
        return await _in_memory(task, jobs, clients, in_flight)
    run = RunSpec(
        command=task.command,
        input="-",
        output=output,
        settings=task.settings(),
        concurrency=in_flight,
        quiet=quiet,
        overwrite=overwrite,
        total=len(jobs),
        id_key=task.id_key,
    )
    # The pipeline runs its own event loop (signals, progress, closing the clients): a thread keeps the
    # caller's loop free.
    code = await asyncio.to_thread(execute, run, iter(jobs), make_process(task), clients, price=price)
    if code == EXIT_INTERRUPTED:
        raise KeyboardInterrupt
    return read_jsonl(output)


async def _in_memory(
    task: RecordTask, jobs: list[Job[Any]], clients: list[ResilientClient], in_flight: int
) -> list[dict[str, Any]]:
    gate = asyncio.Semaphore(in_flight)
    cache = StepCache()

    async def one(job: Job[Any]) -> list[dict[str, Any]]:
        async with gate:
            return await task.process(job, cache)

    try:
        done = await asyncio.gather(*(one(job) for job in jobs))
    finally:
        for client in clients:
            await client.aclose()
    return [row for rows in done for row in rows]


def _sync(coroutine: Callable[P, Awaitable[R]]) -> Callable[P, R]:
    """The blocking twin of an `a…` function (same options, same docstring)."""

    @functools.wraps(coroutine)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        return asyncio.run(coroutine(*args, **kwargs))  # type: ignore[arg-type]

    return run


async def acritique_revise(
    records: Records,
    *,
    output: str | None = None,
    overwrite: bool = False,
    quiet: bool = True,
    rounds: int = 4,
    constitution: str | None = None,
    critique: bool = True,
    per_turn: bool = False,
    field: str | None = None,
    response_field: str | None = None,
    keep_response: bool = False,
    output_format: str = "trace",
    keep_rounds: bool = False,
    prompt_format: str = "chat",
    fewshot: int | None = None,
    fewshot_file: str | None = None,
    template: str | None = None,
    temperature: float = 1.0,
    max_tokens: int = 512,
    top_p: float | None = None,
    seed: int = 0,
    **client: Any,
) -> list[dict[str, Any]]:
    """`caitool critique-revise`: a trace row per record (or SFT rows with output_format="sft")."""
    flags = ClientFlags.from_params(client)
    settings = CritiqueReviseSettings(
        rounds=rounds,
        seed=seed,
        critique=critique,
        prompt_format=prompt_format,  # type: ignore[arg-type]
        params=GenerateParams(temperature=temperature, max_tokens=max_tokens, top_p=top_p),
        output_format=output_format,  # type: ignore[arg-type]
        keep_rounds=keep_rounds,
    )
    about = CritiqueReviseRun(
        flags.model, flags.url_setting, per_turn, field, response_field, keep_response, flags.price_for()
    )
    model = flags.build()
    task = CritiqueReviseTask.load(
        model, settings, about, constitution=constitution, template=template, fewshot_file=fewshot_file,
        fewshot=fewshot,
    )  # fmt: skip
    return await _run(
        task, records, [model], output=output, overwrite=overwrite, quiet=quiet,
        concurrency=flags.concurrency, price=flags.price_for(),
    )  # fmt: skip


async def asample_pairs(
    records: Records,
    *,
    output: str | None = None,
    overwrite: bool = False,
    quiet: bool = True,
    k: int = 2,
    pairs: str = "all",
    field: str | None = None,
    temperature: float = 1.0,
    max_tokens: int = 512,
    seed: int = 0,
    **client: Any,
) -> list[dict[str, Any]]:
    """`caitool sample-pairs`: k responses per prompt, paired up (pairs="all" or "first")."""
    flags = ClientFlags.from_params(client)
    model = flags.build()
    params = GenerateParams(temperature=temperature, max_tokens=max_tokens)
    task = SamplePairsTask(model, flags.model, flags.url_setting, k, pairs, params, seed, field)  # type: ignore[arg-type]
    return await _run(
        task, records, [model], output=output, overwrite=overwrite, quiet=quiet,
        concurrency=flags.concurrency, price=flags.price_for(),
    )  # fmt: skip


async def alabel_pairs(
    records: Records,
    *,
    output: str | None = None,
    overwrite: bool = False,
    quiet: bool = True,
    policy: str | None = None,
    policy_base_url: str | None = None,
    constitution: str | None = None,
    ensemble: int = 1,
    both_orders: bool = False,
    cot: bool = False,
    cot_samples: int = 1,
    clamp: tuple[float, float] | None = None,
    no_clamp: bool = False,
    votes: int | None = None,
    reask: int = 2,
    prompt_format: str = "auto",
    question_format: str = "paper",
    output_format: str = "trl",
    fewshot: int | None = None,
    fewshot_file: str | None = None,
    template: str | None = None,
    field: str | None = None,
    max_tokens: int = 256,
    cot_max_tokens: int = 256,
    seed: int = 0,
    **client: Any,
) -> list[dict[str, Any]]:
    """`caitool label-pairs`: a preference row per pair (TRL's layout, or output_format="openrlhf").
    `clamp` is (LO, HI); as with the command, cot=True clamps to the paper's (0.4, 0.6) unless no_clamp."""
    from caitool.constitution import load_constitution

    flags = ClientFlags.from_params(client)
    cons = load_constitution(constitution)
    templates = load_label_templates(
        template or QUESTION_FORMATS[question_format], fewshot_file or "label_pairs_fewshot", fewshot
    )
    model = flags.build()
    mode, n_votes = resolve_label_mode(model, prompt_format, votes)
    settings = LabelSettings(mode=mode, seed=seed, ensemble=ensemble, both_orders=both_orders, cot=cot,
                             cot_samples=cot_samples, cot_max_tokens=cot_max_tokens, votes=n_votes,
                             clamp=None if no_clamp else clamp or ((0.4, 0.6) if cot else None),
                             reask=reask)  # fmt: skip
    policy_client = flags.build(policy, base_url=policy_base_url) if policy else None
    about = LabelPairsRun(flags.model, flags.url_setting, policy, policy_base_url, max_tokens,
                          None if template else question_format, output_format, field)  # fmt: skip
    task = LabelPairsTask(Labeler(model, cons, templates, settings), about, policy_client)
    clients = [model] if policy_client is None else [model, policy_client]
    return await _run(
        task, records, clients, output=output, overwrite=overwrite, quiet=quiet,
        concurrency=flags.concurrency, price=flags.price_for(),
    )  # fmt: skip


async def acompare(
    records: Records,
    *,
    output: str | None = None,
    overwrite: bool = False,
    quiet: bool = True,
    models: Mapping[str, str] | None = None,
    model_base_urls: Mapping[str, str] | None = None,
    responses: Mapping[str, Mapping[str, str]] | None = None,
    criteria: str = "harmlessness=harmlessness-eval,helpfulness=helpfulness",
    both_orders: bool = True,
    ensemble: int = 1,
    field: str | None = None,
    max_tokens: int = 256,
    seed: int = 0,
    **client: Any,
) -> list[dict[str, Any]]:
    """`caitool compare`: judgment rows for `caitool elo`. `models` maps a name to a provider/model to sample
    (on `model_base_urls[name]`, else its provider's default server); `responses` maps a name to
    {record id: response} already in hand. The client options are the judge's."""
    from caitool.errors import UsageError

    flags = ClientFlags.from_params(client)
    specs, urls = dict(models or {}), dict(model_base_urls or {})
    given = {name: dict(table) for name, table in (responses or {}).items()}
    if len(specs) + len(given) < 2:
        raise UsageError("compare needs at least two models (models and/or responses)")
    judge = flags.build()
    sampled = {name: flags.build(spec, base_url=urls.get(name)) for name, spec in specs.items()}
    labelers = criteria_labelers(judge, criteria, seed, ensemble, both_orders=both_orders)
    recorded = {name: (spec, redact_url(urls.get(name))) for name, spec in specs.items()}
    about = CompareRun(flags.model, redact_url(flags.base_url), recorded, 0, field)
    task = CompareTask(sampled, given, labelers, GenerateParams(max_tokens=max_tokens), seed, about)
    return await _run(
        task, records, [judge, *sampled.values()], output=output, overwrite=overwrite, quiet=quiet,
        concurrency=flags.concurrency, price=None if specs else flags.price_for(),
    )  # fmt: skip


critique_revise = _sync(acritique_revise)
sample_pairs = _sync(asample_pairs)
label_pairs = _sync(alabel_pairs)
compare = _sync(acompare)
