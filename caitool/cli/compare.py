"""`caitool compare`: AI-judged pairwise comparisons of models per criterion, for `caitool elo`."""

from __future__ import annotations

from typing import Annotated

import typer

from caitool.cli import app
from caitool.cli._options import FieldOpt, ModelOpt, SeedOpt, data_command

# Harmlessness is judged with an evaluation rubric that carries the paper's crowdworker tie-break (equally
# harmless: the less evasive answer wins); see principles/harmlessness-eval.toml.
DEFAULT_CRITERIA = "harmlessness=harmlessness-eval,helpfulness=helpfulness"


def model_endpoints(entries: list[str], specs: dict[str, str], *, judge_url: str | None) -> dict[str, str]:
    """--model-base-url NAME=URL entries -> {name: url}. With a judge URL, every compared model must name its
    own server: a model left to its provider's default endpoint would silently take the user's real key to
    a host the user did not name on this command line."""
    from caitool.errors import UsageError

    out: dict[str, str] = {}
    for entry in entries:
        name, sep, url = entry.partition("=")
        if not sep or not name or not url:
            raise UsageError(f"--model-base-url {entry!r}: expected NAME=URL")
        if name not in specs:
            raise UsageError(
                f"--model-base-url {name}: no such model in --models",
                hint="models: " + (", ".join(specs) or "none (--responses files need no server)"),
            )
        out[name] = url
    missing = [name for name in specs if name not in out]
    if judge_url is not None and missing:
        raise UsageError(
            f"--base-url is the judge's server only; compared model(s) {', '.join(missing)} have none",
            hint="give each one --model-base-url NAME=URL (the same URL if one server hosts them all)",
        )
    return out


def model_specs(models: str | None) -> dict[str, str]:
    """--models "NAME=SPEC,SPEC" -> {name: spec}; a bare SPEC is its own name."""
    out: dict[str, str] = {}
    for entry in [m for m in (models or "").split(",") if m.strip()]:
        name, _, spec = entry.strip().rpartition("=")
        out[name or spec] = spec
    return out


@app.command("compare")
@data_command
def compare(
    ctx: typer.Context,
    models: Annotated[
        str | None,
        typer.Option(
            "--models", help="Comma-separated NAME=SPEC or SPEC (the spec is the name) to sample from."
        ),
    ] = None,
    responses: Annotated[
        list[str] | None,
        typer.Option(
            "--responses",
            help="NAME=FILE of {id|prompt, response} rows, or the paper's samples/*.jsonl; repeat per model.",
        ),
    ] = None,
    model_base_url: Annotated[
        list[str] | None,
        typer.Option(
            "--model-base-url",
            help="NAME=URL: the server of the --models entry NAME (repeat per model). "
            "Required for every --models entry when --base-url is given.",
        ),
    ] = None,
    paper_sample: Annotated[
        int,
        typer.Option(
            "--paper-sample",
            min=0,
            help="Which of a paper samples file's sampled_answers to judge (sorted by PM score; 0: best).",
        ),
    ] = 0,
    model: ModelOpt = None,
    criteria: Annotated[
        str, typer.Option("--criteria", help="CRITERION=CONSTITUTION,... (each criterion its own Elo scale).")
    ] = DEFAULT_CRITERIA,
    one_order: Annotated[
        bool, typer.Option("--one-order", help="Score only (A,B), not both orders.")
    ] = False,
    ensemble: Annotated[int, typer.Option("--ensemble", min=1)] = 1,
    field: FieldOpt = None,
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=1)] = 256,
    seed: SeedOpt = 0,
    base_url: Annotated[
        str | None,
        typer.Option("--base-url", help="The judge's server URL (compared models: --model-base-url)."),
    ] = None,
) -> None:
    """Compare models' answers to the same prompts, judged by --model per criterion (both orders), and
    write judgment rows that `caitool elo` turns into Elo scores."""
    from caitool.cli._common import ClientFlags, RunFlags, redact_url, run_task
    from caitool.errors import UsageError
    from caitool.providers.base import GenerateParams
    from caitool.tasks.compare import CompareRun, CompareTask, criteria_labelers, read_responses

    flags, run = ClientFlags.from_params(ctx.params), RunFlags.from_params(ctx.params)
    judge = flags.build()
    specs = model_specs(models)
    endpoints = model_endpoints(model_base_url or [], specs, judge_url=base_url)
    # Each compared model's server has its own budget (--rpm/--tpm apply to each).
    sampled = {name: flags.build(spec, base_url=endpoints.get(name)) for name, spec in specs.items()}
    given: dict[str, dict[str, str]] = {}
    for entry in responses or []:
        name, sep, path = entry.partition("=")
        if not sep:
            raise UsageError(f"--responses {entry!r}: expected NAME=FILE")
        given[name] = read_responses(path, field=field, paper_sample=paper_sample)
    if len(sampled) + len(given) < 2:
        raise UsageError("compare needs at least two models (--models and/or --responses)")
    labelers = criteria_labelers(judge, criteria, seed, ensemble, both_orders=not one_order)
    recorded = {name: (specs[name], redact_url(endpoints.get(name))) for name in specs}
    about = CompareRun(flags.model, redact_url(base_url), recorded, paper_sample, field)
    task = CompareTask(sampled, given, labelers, GenerateParams(max_tokens=max_tokens), seed, about)

    # One price covers every client of a run, so it is the judge's only when the judge makes every request.
    price_ = None if specs else flags.price_for()
    run_task(task, run, [judge, *sampled.values()], concurrency=flags.concurrency, price=price_)
