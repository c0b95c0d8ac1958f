"""`caitool compare`: AI-judged pairwise comparisons of models per criterion, for `caitool elo`."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from caitool.cli import app
from caitool.cli._options import (
    ApiKeyOpt,
    ConcurrencyOpt,
    ErrorsOpt,
    FieldOpt,
    InputArg,
    LimitOpt,
    ModelOpt,
    OutputOpt,
    OverwriteOpt,
    PriceOpt,
    QuietOpt,
    RetriesOpt,
    RpmOpt,
    SeedOpt,
    TimeoutOpt,
    TpmOpt,
)

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


def redact_url(url: str | None) -> str | None:
    """A URL as recorded in the manifest: user-info replaced by ***."""
    from caitool.pipeline import redact_argv

    return None if url is None else redact_argv([url])[0]


def read_responses(path: str, *, field: str | None, paper_sample: int) -> dict[str, str]:
    """A --responses file -> {record id: response}. Rows are {id|prompt, response}, or the paper
    repository's samples/*.jsonl rows (prompt from rl_prompt, the chosen sampled answer, stop marker cut)."""
    from caitool.errors import InputError
    from caitool.evaluation import paper_samples
    from caitool.inputs import DEFAULT_FIELDS, prompt_items, read_lines

    table: dict[str, str] = {}
    for line in read_lines(path):
        if isinstance(line, InputError):
            raise line
        data = line.data
        if paper_samples.is_sl_trace(data):
            raise InputError(
                line.where,
                "an SL-CAI trace of the paper (cst), not a model's samples: compare its *_RLMADISON, "
                "*_HRLHF or *_HHRLHF files (`caitool import-paper-samples` reads SL-CAI traces)",
            )
        if field is None and paper_samples.is_policy_samples(data):
            rid, _ = paper_samples.prompt(line)
            table[rid] = paper_samples.sampled_response(line, paper_sample)
            continue
        if field is None and "id" in data and not any(name in data for name in DEFAULT_FIELDS):
            rid = str(data["id"])  # an id is enough to match the prompt
        else:
            ((rid, _),) = prompt_items(line, field=field)
        text = data.get("response")
        if not isinstance(text, str):
            raise InputError(line.where, "missing string field 'response'")
        table[rid] = text
    return table


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
    api_key: ApiKeyOpt = None,
    concurrency: ConcurrencyOpt = None,
    timeout: TimeoutOpt = 120.0,
    retries: RetriesOpt = 6,
    rpm: RpmOpt = None,
    tpm: TpmOpt = None,
    price: PriceOpt = None,
    limit: LimitOpt = None,
    errors: ErrorsOpt = None,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Compare models' answers to the same prompts, judged by --model per criterion (both orders), and
    write judgment rows that `caitool elo` turns into Elo scores."""
    from caitool.cli._common import (
        BadInputPolicy,
        build_client,
        default_concurrency,
        lines_to_jobs,
        parse_price,
    )
    from caitool.constitution import load_constitution
    from caitool.errors import UsageError
    from caitool.evaluation import paper_samples
    from caitool.inputs import Line, count_lines, prompt_items
    from caitool.pipeline import RunSpec, execute
    from caitool.pricing import price_for
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
        judge_spec, base_url=base_url, api_key=api_key, timeout=timeout, retries=retries, rpm=rpm, tpm=tpm
    )
    specs: dict[str, str] = {}
    for entry in [m for m in (models or "").split(",") if m.strip()]:
        name, _, spec = entry.strip().rpartition("=")
        specs[name or spec] = spec
    endpoints = model_endpoints(model_base_url or [], specs, judge_url=base_url)
    sampled: dict[str, Any] = {
        name: build_client(
            spec,
            base_url=endpoints.get(name),
            api_key=None,
            timeout=timeout,
            retries=retries,
            rpm=rpm,  # each server has its own budget
            tpm=tpm,
        )
        for name, spec in specs.items()
    }
    given: dict[str, dict[str, str]] = {}
    for entry in responses or []:
        name, sep, path = entry.partition("=")
        if not sep:
            raise UsageError(f"--responses {entry!r}: expected NAME=FILE")
        given[name] = read_responses(path, field=field, paper_sample=paper_sample)
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
        if field is None and paper_samples.is_paper_row(line.data):
            found = [paper_samples.prompt(line)]
        else:
            found = prompt_items(line, field=field)
        for rid, item in found:
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
            "base_url": redact_url(base_url),
            "models": {name: [specs[name], redact_url(endpoints.get(name))] for name in sorted(specs)},
            "paper_sample": paper_sample,
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

    # One price covers every client of a run, so it is the judge's only when the judge makes every request.
    judge_price = None if specs else price_for(judge_spec, parse_price(price))
    clients = [judge, *sampled.values()]
    raise typer.Exit(execute(run, jobs, make_process, clients, price=judge_price, counts=counts))
