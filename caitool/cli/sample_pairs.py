"""`caitool sample-pairs`: the response pairs of the paper's RL stage, sampled from a policy."""

from __future__ import annotations

from typing import Annotated

import typer

from caitool.cli import app
from caitool.cli._options import (
    ApiKeyOpt,
    BaseUrlOpt,
    ConcurrencyOpt,
    DryRunOpt,
    ErrorsOpt,
    FieldOpt,
    InputArg,
    LimitOpt,
    ModelOpt,
    OnBadInputOpt,
    OutputOpt,
    OverwriteOpt,
    PriceOpt,
    QuietOpt,
    RejectsOpt,
    RetriesOpt,
    RpmOpt,
    SeedOpt,
    ShardOpt,
    TimeoutOpt,
    TpmOpt,
)


@app.command("sample-pairs")
def sample_pairs(
    ctx: typer.Context,
    input: InputArg = "-",
    output: OutputOpt = None,
    model: ModelOpt = None,
    k: Annotated[int, typer.Option("-k", "--samples", min=2, help="Responses sampled per prompt.")] = 2,
    pairs: Annotated[str, typer.Option("--pairs", help="all (every pair of the k) or first.")] = "all",
    field: FieldOpt = None,
    temperature: Annotated[float, typer.Option("--temperature", min=0)] = 1.0,
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=1)] = 512,
    seed: SeedOpt = 0,
    base_url: BaseUrlOpt = None,
    api_key: ApiKeyOpt = None,
    concurrency: ConcurrencyOpt = None,
    rpm: RpmOpt = None,
    tpm: TpmOpt = None,
    timeout: TimeoutOpt = 120.0,
    retries: RetriesOpt = 6,
    limit: LimitOpt = None,
    errors: ErrorsOpt = None,
    on_bad_input: OnBadInputOpt = "fail",
    rejects: RejectsOpt = None,
    price: PriceOpt = None,
    overwrite: OverwriteOpt = False,
    dry_run: DryRunOpt = False,
    shard: ShardOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Sample K responses per prompt from a policy (one request with n where the server supports it) and
    write response pairs, ready for label-pairs."""
    from caitool.cli._common import ClientFlags, RunFlags, check_choice, run_task
    from caitool.providers.base import GenerateParams
    from caitool.tasks.sample_pairs import SamplePairsTask

    flags, run = ClientFlags.from_params(ctx.params), RunFlags.from_params(ctx.params)
    check_choice("--pairs", pairs, ("all", "first"))
    client = None if dry_run else flags.build()
    params = GenerateParams(temperature=temperature, max_tokens=max_tokens)
    task = SamplePairsTask(client, flags.model, base_url, k, pairs, params, seed, field)  # type: ignore[arg-type]

    clients = [] if client is None else [client]
    run_task(task, run, clients, concurrency=concurrency, price=flags.price_for())
