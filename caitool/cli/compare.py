"""`caitool compare`: AI-judged pairwise comparisons of models per criterion, for `caitool elo`."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from caitool.cli import app
from caitool.cli._options import (
    ApiKeyOpt,
    BaseUrlOpt,
    ConcurrencyOpt,
    ErrorsOpt,
    FieldOpt,
    InputArg,
    LimitOpt,
    ModelOpt,
    OutputOpt,
    OverwriteOpt,
    QuietOpt,
    RetriesOpt,
    SeedOpt,
    TimeoutOpt,
)

# Harmlessness is judged with an evaluation rubric that carries the paper's crowdworker tie-break (equally
# harmless: the less evasive answer wins); see principles/harmlessness-eval.toml.
DEFAULT_CRITERIA = "harmlessness=harmlessness-eval,helpfulness=helpfulness"


@app.command("compare")
def compare(
    input: InputArg = "-",
    output: OutputOpt = None,
    models: Annotated[
        str | None,
        typer.Option(
            "--models", help="Comma-separated NAME=SPEC or SPEC (the spec is the name) to sample from."
        ),
    ] = None,
    responses: Annotated[
        list[str] | None,
        typer.Option("--responses", help="NAME=FILE of {id|prompt, response} rows; repeat per model."),
    ] = None,
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
    base_url: BaseUrlOpt = None,
    api_key: ApiKeyOpt = None,
    concurrency: ConcurrencyOpt = None,
    timeout: TimeoutOpt = 120.0,
    retries: RetriesOpt = 6,
    limit: LimitOpt = None,
    errors: ErrorsOpt = None,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Compare models' answers to the same prompts, judged by --model per criterion (both orders), and
    write judgment rows that `caitool elo` turns into Elo scores."""
    from caitool.cli._common import BadInputPolicy, build_client, default_concurrency, lines_to_jobs
    from caitool.constitution import load_constitution
    from caitool.errors import InputError, UsageError
    from caitool.inputs import Line, count_lines, prompt_items, read_lines
    from caitool.pipeline import RunSpec, execute
    from caitool.providers import default_model
    from caitool.providers.base import GenerateParams
    from caitool.runner import Job, RunCounts
    from caitool.tasks.compare import CompareItem, Comparer
    from caitool.tasks.label_pairs import (
        Labeler,
        LabelSettings,
        auto_mode,
        default_votes,
        load_label_templates,
    )

    judge_spec = model or default_model()
    judge = build_client(
        judge_spec, base_url=base_url, api_key=api_key, timeout=timeout, retries=retries, rpm=None, tpm=None
    )
    sampled: dict[str, Any] = {}
    for entry in [m for m in (models or "").split(",") if m.strip()]:
        name, _, spec = entry.strip().rpartition("=")
        sampled[name or spec] = build_client(
            spec, base_url=None, api_key=None, timeout=timeout, retries=retries, rpm=None, tpm=None
        )
    given: dict[str, dict[str, str]] = {}
    for entry in responses or []:
        name, sep, path = entry.partition("=")
        if not sep:
            raise UsageError(f"--responses {entry!r}: expected NAME=FILE")
        table: dict[str, str] = {}
        for line in read_lines(path):
            if isinstance(line, InputError):
                raise line
            ((rid, _),) = prompt_items(line, field=field)
            text = line.data.get("response")
            if not isinstance(text, str):
                raise InputError(line.where, "missing string field 'response'")
            table[rid] = text
        given[name] = table
    if len(sampled) + len(given) < 2:
        raise UsageError("compare needs at least two models (--models and/or --responses)")
    mode = auto_mode(judge)
    n_votes = default_votes(judge)
    templates = load_label_templates()
    labelers: dict[str, Labeler] = {}
    crit_settings: dict[str, str] = {}
    for entry in criteria.split(","):
        crit, sep, cons_name = entry.partition("=")
        if not sep:
            raise UsageError(f"--criteria {entry!r}: expected CRITERION=CONSTITUTION")
        cons = load_constitution(cons_name)
        labelers[crit] = Labeler(
            judge,
            cons,
            templates,
            LabelSettings(
                mode=mode,
                seed=seed,
                ensemble=ensemble,
                both_orders=not one_order,
                votes=n_votes,
            ),
        )
        crit_settings[crit] = cons.sha256
    counts = RunCounts()
    policy = BadInputPolicy("fail", None, output, counts)

    def to_jobs(line: Line) -> list[Job[Any]]:
        out = []
        for rid, item in prompt_items(line, field=field):
            pairs = tuple((name, table[rid]) for name, table in given.items() if rid in table)
            out.append(Job(rid, line.where, CompareItem(item, pairs)))
        return out

    jobs = lines_to_jobs(input, policy, to_jobs)
    comparer = Comparer(
        dict.fromkeys(given, None) | sampled, labelers, GenerateParams(max_tokens=max_tokens), seed
    )
    run = RunSpec(
        command="compare",
        input=input,
        output=output,
        errors=errors,
        settings={
            "judge": judge_spec,
            "models": sorted(sampled),
            "responses": sorted(given),
            "criteria": crit_settings,
            "both_orders": not one_order,
            "ensemble": ensemble,
            "seed": seed,
            "max_tokens": max_tokens,
        },
        concurrency=default_concurrency(judge_spec, concurrency),
        limit=limit,
        quiet=quiet,
        overwrite=overwrite,
        total=count_lines(input),
        id_key="source_id",
    )

    def make_process(store: Any) -> Any:
        async def process(job: Job[Any]) -> list[dict[str, Any]]:
            return await comparer.run(job, store)

        return process

    raise typer.Exit(execute(run, jobs, make_process, [judge, *sampled.values()], counts=counts))
