"""`caitool sample-pairs`: the response pairs of the paper's RL stage, sampled from a policy."""

from __future__ import annotations

from typing import Annotated

import typer

from caitool.cli import app
from caitool.cli._options import FieldOpt, ModelOpt, SeedOpt, data_command


@app.command("sample-pairs")
@data_command
def sample_pairs(
    ctx: typer.Context,
    model: ModelOpt = None,
    k: Annotated[int, typer.Option("-k", "--samples", min=2, help="Responses sampled per prompt.")] = 2,
    pairs: Annotated[str, typer.Option("--pairs", help="all (every pair of the k) or first.")] = "all",
    field: FieldOpt = None,
    temperature: Annotated[float, typer.Option("--temperature", min=0)] = 1.0,
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=1)] = 512,
    seed: SeedOpt = 0,
) -> None:
    """Sample K responses per prompt from a policy (one request with n where the server supports it) and
    write response pairs, ready for label-pairs."""
    from caitool.cli._common import ClientFlags, RunFlags, check_choice, run_task
    from caitool.providers.base import GenerateParams
    from caitool.tasks.sample_pairs import SamplePairsTask

    flags, run = ClientFlags.from_params(ctx.params), RunFlags.from_params(ctx.params)
    check_choice("--pairs", pairs, ("all", "first"))
    client = None if run.dry_run else flags.build()
    params = GenerateParams(temperature=temperature, max_tokens=max_tokens)
    task = SamplePairsTask(client, flags.model, flags.url_setting, k, pairs, params, seed, field)  # type: ignore[arg-type]

    clients = [] if client is None else [client]
    run_task(task, run, clients, concurrency=flags.concurrency, price=flags.price_for())
