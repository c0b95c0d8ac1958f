"""`caitool critique-revise`: the paper's supervised stage, as a JSONL → JSONL command."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from caitool.cli import app
from caitool.cli._options import (
    ApiKeyOpt,
    BaseUrlOpt,
    ConcurrencyOpt,
    ConstitutionOpt,
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
    TimeoutOpt,
    TpmOpt,
)


@app.command("critique-revise")
def critique_revise(
    input: InputArg = "-",
    output: OutputOpt = None,
    model: ModelOpt = None,
    rounds: Annotated[int, typer.Option("--rounds", min=1, help="Critique → revision rounds.")] = 4,
    constitution: ConstitutionOpt = None,
    no_critique: Annotated[
        bool, typer.Option("--no-critique", help="Revise directly, without critiques.")
    ] = False,
    per_turn: Annotated[bool, typer.Option("--per-turn", help="One example per human turn.")] = False,
    field: FieldOpt = None,
    response_field: Annotated[
        str | None, typer.Option("--response-field", help="Take the initial response from this input field.")
    ] = None,
    keep_response: Annotated[
        bool, typer.Option("--keep-response", help="Use a trailing assistant turn as the initial response.")
    ] = False,
    output_format: Annotated[
        str, typer.Option("--format", help="trace (every round) or sft (messages).")
    ] = "trace",
    keep_rounds: Annotated[
        bool, typer.Option("--keep-rounds", help="With --format sft: one example per round (SL-CAI-n).")
    ] = False,
    prompt_format: Annotated[
        str,
        typer.Option("--prompt-format", help="chat, or completion (base models: the paper's transcript)."),
    ] = "chat",
    fewshot: Annotated[
        int | None, typer.Option("--fewshot", min=0, help="Few-shot examples to use (default all).")
    ] = None,
    fewshot_file: Annotated[
        str | None, typer.Option("--fewshot-file", help="TOML file of your own few-shot examples.")
    ] = None,
    template: Annotated[
        str | None, typer.Option("--template", help="TOML file of your own templates.")
    ] = None,
    temperature: Annotated[float, typer.Option("--temperature", min=0, help="Sampling temperature.")] = 1.0,
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=1, help="Tokens per model answer.")] = 512,
    top_p: Annotated[
        float | None, typer.Option("--top-p", help="Nucleus sampling (default: the server's).")
    ] = None,
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
    quiet: QuietOpt = False,
) -> None:
    """Critique and revise model responses under sampled principles: an SL-CAI dataset with a full trace.

    Each record: sample a response (or take it from the input), then ROUNDS rounds of critique → revision,
    each under a principle drawn at random (with replacement, seeded) from the constitution.
    """
    from functools import partial

    from caitool.cli._common import (
        BadInputPolicy,
        build_client,
        check_choice,
        default_concurrency,
        lines_to_jobs,
        parse_price,
    )
    from caitool.constitution import load_constitution
    from caitool.errors import UsageError
    from caitool.inputs import Line, count_lines, prompt_items
    from caitool.pipeline import RunSpec, execute
    from caitool.pricing import price_for
    from caitool.providers import default_model
    from caitool.providers.base import GenerateParams
    from caitool.runner import Job, RunCounts
    from caitool.tasks.critique_revise import CritiqueReviser, CritiqueReviseSettings, load_templates

    spec = model or default_model()
    check_choice("--format", output_format, ("trace", "sft"))
    check_choice("--prompt-format", prompt_format, ("chat", "completion"))
    if keep_rounds and output_format != "sft":
        raise UsageError("--keep-rounds needs --format sft")
    if response_field and keep_response:
        raise UsageError("--response-field and --keep-response both name the initial response; choose one")
    cons = load_constitution(constitution)
    templates = load_templates(
        template or "critique_revise", fewshot_file or "critique_revise_fewshot", fewshot
    )
    settings = CritiqueReviseSettings(
        rounds=rounds,
        seed=seed,
        critique=not no_critique,
        prompt_format=prompt_format,  # type: ignore[arg-type]
        params=GenerateParams(temperature=temperature, max_tokens=max_tokens, top_p=top_p),
        output_format=output_format,  # type: ignore[arg-type]
        keep_rounds=keep_rounds,
    )
    counts = RunCounts()
    policy = BadInputPolicy(on_bad_input, rejects, output, counts)
    convert = partial(
        prompt_items,
        field=field,
        response_field=response_field,
        keep_response=keep_response,
        per_turn=per_turn,
    )

    def to_jobs(line: Line) -> list[Job[Any]]:
        return [Job(rid, line.where, item) for rid, item in convert(line)]

    jobs = lines_to_jobs(input, policy, to_jobs)

    price_given = parse_price(price)  # before --dry-run, so a bad value fails there too
    if dry_run:
        _dry_run(jobs, cons, templates, settings)
        return

    client = build_client(
        spec, base_url=base_url, api_key=api_key, timeout=timeout, retries=retries, rpm=rpm, tpm=tpm
    )
    if prompt_format == "completion" and not client.supports_completions:
        raise UsageError(f"{spec} has no raw-completion endpoint", hint="use --prompt-format chat")
    run = RunSpec(
        command="critique-revise",
        input=input,
        output=output,
        errors=errors,
        settings={
            "model": spec,
            "base_url": base_url,
            "rounds": rounds,
            "seed": seed,
            "critique": not no_critique,
            "per_turn": per_turn,
            "field": field,
            "response_field": response_field,
            "keep_response": keep_response,
            "format": output_format,
            "keep_rounds": keep_rounds,
            "prompt_format": prompt_format,
            "params": settings.params.fingerprint(),
            "constitution": cons.name,
            "constitution_sha256": cons.sha256,
            "templates_sha256": templates.sha256,
        },
        concurrency=default_concurrency(spec, concurrency),
        limit=limit,
        quiet=quiet,
        overwrite=overwrite,
        total=count_lines(input),
        extra_manifest={"constitution_source": cons.source, "templates_source": templates.source},
    )
    price_ = price_for(spec, price_given)

    def make_process(store: Any) -> Any:
        reviser = CritiqueReviser(
            client, cons, templates, settings, steps=store.steps, save_step=store.save_step
        )

        async def process(job: Job[Any]) -> list[dict[str, Any]]:
            trace = await reviser.run(job)
            trace["caitool"] = {
                "model": spec,
                "constitution": cons.name,
                "constitution_sha256": cons.sha256,
                "seed": seed,
                "source": job.where,
                "cost_usd": round(price_.cost(_usage(trace)), 8) if price_ else None,
            }
            return reviser.rows(trace)

        return process

    raise typer.Exit(execute(run, jobs, make_process, [client], price=price_, counts=counts))


def _usage(trace: dict[str, Any]) -> Any:
    from caitool.providers.base import Usage

    u = trace["usage"]
    return Usage(u["input_tokens"], u["output_tokens"], u["calls"])


def _dry_run(jobs: Any, cons: Any, templates: Any, settings: Any) -> None:
    """The exact requests of the first record, every round, with placeholders for model answers."""
    import json

    from caitool.tasks.critique_revise import CritiqueReviser, draw_principles

    job = next(iter(jobs), None)
    if job is None:
        return
    reviser = CritiqueReviser(None, cons, templates, settings)  # type: ignore[arg-type]
    response = job.item.response or "<initial response>"
    steps: list[tuple[str, Any]] = []
    if job.item.response is None:
        steps.append(("initial response", reviser.initial_request(job.item)))
    for k, p in enumerate(draw_principles(cons, settings.seed, job.id, settings.rounds), start=1):
        if settings.critique:
            steps.append(
                (f"round {k} critique (principle {p.id})", reviser.critique_request(job.item, response, p))
            )
        critique = f"<critique {k}>" if settings.critique else None
        request = reviser.revision_request(job.item, response, p, critique)
        steps.append((f"round {k} revision (principle {p.id})", request))
        response = f"<revision {k}>"  # the next round critiques this round's revision
    for title, request in steps:
        print(f"===== {job.id}: {title} [{settings.prompt_format}] =====")
        if isinstance(request, str):
            print(request)
        else:
            for m in request:
                print(json.dumps(m.to_dict(), ensure_ascii=False))
