"""`caitool sample-pairs`, `caitool label-pairs` and `caitool mix`: the data of the paper's RL stage."""

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


@app.command("sample-pairs")
def sample_pairs(
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
    quiet: QuietOpt = False,
) -> None:
    """Sample K responses per prompt from a policy (one request with n where the server supports it) and
    write response pairs, ready for label-pairs."""
    from caitool.cli._common import (
        BadInputPolicy,
        build_client,
        check_choice,
        default_concurrency,
        lines_to_jobs,
        parse_price,
    )
    from caitool.inputs import Line, count_lines, prompt_items
    from caitool.pipeline import RunSpec, execute
    from caitool.pricing import price_for
    from caitool.providers import default_model
    from caitool.providers.base import GenerateParams, Usage
    from caitool.runner import Job, RunCounts
    from caitool.tasks.sample_pairs import make_pairs, sample_responses

    spec = model or default_model()
    check_choice("--pairs", pairs, ("all", "first"))
    params = GenerateParams(temperature=temperature, max_tokens=max_tokens)
    counts = RunCounts()
    policy = BadInputPolicy(on_bad_input, rejects, output, counts)

    def to_jobs(line: Line) -> list[Job[Any]]:
        return [Job(rid, line.where, item) for rid, item in prompt_items(line, field=field)]

    jobs = lines_to_jobs(input, policy, to_jobs)
    client = build_client(
        spec, base_url=base_url, api_key=api_key, timeout=timeout, retries=retries, rpm=rpm, tpm=tpm
    )
    run = RunSpec(
        command="sample-pairs",
        input=input,
        output=output,
        errors=errors,
        settings={
            "model": spec,
            "base_url": base_url,
            "k": k,
            "pairs": pairs,
            "seed": seed,
            "field": field,
            "params": params.fingerprint(),
        },
        concurrency=default_concurrency(spec, concurrency),
        limit=limit,
        quiet=quiet,
        overwrite=overwrite,
        total=count_lines(input),
        id_key="source_id",
    )

    def make_process(store: Any) -> Any:
        async def process(job: Job[Any]) -> list[dict[str, Any]]:
            usage = Usage()
            texts = await sample_responses(
                client,
                job.item,
                k,
                params,
                seed=seed,
                record_id=job.id,
                usage=usage,
                steps=store.steps,
                save_step=store.save_step,
            )
            return [
                {
                    "id": pid,
                    "source_id": job.id,
                    "prompt": [m.to_dict() for m in pair.messages],
                    "response_a": pair.response_a,
                    "response_b": pair.response_b,
                    "caitool": {"policy": spec, "seed": seed, "source": job.where},
                }
                for pid, pair in make_pairs(job.id, job.item, texts, pairs)  # type: ignore[arg-type]
            ]

        return process

    raise typer.Exit(
        execute(run, jobs, make_process, [client], price=price_for(spec, parse_price(price)), counts=counts)
    )


def _parse_clamp(value: str | None, no_clamp: bool, cot: bool) -> tuple[float, float] | None:
    from caitool.errors import UsageError

    if no_clamp:
        return None
    if value is None:
        return (0.4, 0.6) if cot else None  # the paper clamps CoT labels to 40-60 %
    try:
        lo, hi = (float(x) for x in value.split(","))
    except ValueError:
        raise UsageError(f"--clamp {value!r}: expected LO,HI such as 0.4,0.6") from None
    if not 0 <= lo < hi <= 1:
        raise UsageError(f"--clamp {value!r}: need 0 <= LO < HI <= 1")
    return lo, hi


@app.command("label-pairs")
def label_pairs(
    input: InputArg = "-",
    output: OutputOpt = None,
    model: ModelOpt = None,
    policy: Annotated[
        str | None,
        typer.Option("--policy", help="For prompt-only input: sample the pair from this model first."),
    ] = None,
    policy_base_url: Annotated[str | None, typer.Option("--policy-base-url")] = None,
    constitution: ConstitutionOpt = None,
    ensemble: Annotated[
        int, typer.Option("--ensemble", min=1, help="Principles averaged per comparison.")
    ] = 1,
    both_orders: Annotated[
        bool, typer.Option("--both-orders", help="Score (A,B) and (B,A) and average (position bias).")
    ] = False,
    cot: Annotated[bool, typer.Option("--cot", help="Chain-of-thought labels (clamped to 0.4-0.6).")] = False,
    cot_samples: Annotated[int, typer.Option("--cot-samples", min=1, help="Chains of thought averaged.")] = 1,
    clamp: Annotated[str | None, typer.Option("--clamp", help="LO,HI bounds for the label.")] = None,
    no_clamp: Annotated[bool, typer.Option("--no-clamp", help="No clamping, even with --cot.")] = False,
    votes: Annotated[
        int | None,
        typer.Option(
            "--votes", min=1, help="Estimate from K sampled answers (default 5 where no log-probs)."
        ),
    ] = None,
    reask: Annotated[
        int, typer.Option("--reask", min=0, help="Re-asks when the answer is neither A nor B.")
    ] = 2,
    prompt_format: Annotated[
        str,
        typer.Option(
            "--prompt-format", help="auto, completion (base models), chat, or chat-prefill (local/)."
        ),
    ] = "auto",
    question_format: Annotated[
        str,
        typer.Option(
            "--question-format",
            help="paper (the paper repository's delimited question, default) or caitool (pre-v2 layout).",
        ),
    ] = "paper",
    output_format: Annotated[str, typer.Option("--format", help="trl (default) or openrlhf.")] = "trl",
    fewshot: Annotated[
        int | None, typer.Option("--fewshot", min=0, help="Labelled examples (default all).")
    ] = None,
    fewshot_file: Annotated[str | None, typer.Option("--fewshot-file")] = None,
    template: Annotated[str | None, typer.Option("--template")] = None,
    field: FieldOpt = None,
    max_tokens: Annotated[int, typer.Option("--max-tokens", help="Policy sample length (--policy).")] = 256,
    cot_max_tokens: Annotated[int, typer.Option("--cot-max-tokens", min=8)] = 256,
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
    """Label response pairs with AI feedback: the paper's (A)/(B) question under a sampled principle, soft
    labels from the feedback model's log-probabilities. Writes TRL preference rows with p_chosen."""
    import random

    from caitool.cli._common import (
        BadInputPolicy,
        build_client,
        check_choice,
        default_concurrency,
        lines_to_jobs,
        parse_price,
    )
    from caitool.constitution import load_constitution
    from caitool.errors import InputError, UsageError
    from caitool.inputs import Line, count_lines, pair_item, prompt_items
    from caitool.labels import LABEL_METHOD
    from caitool.pipeline import RunSpec, execute
    from caitool.pricing import price_for
    from caitool.providers import default_model
    from caitool.providers.base import GenerateParams, Usage
    from caitool.runner import Job, RunCounts
    from caitool.tasks.label_pairs import (
        QUESTION_FORMATS,
        Labeler,
        LabelSettings,
        auto_mode,
        default_votes,
        load_label_templates,
    )
    from caitool.tasks.sample_pairs import make_pairs, sample_responses

    spec = model or default_model()
    check_choice("--prompt-format", prompt_format, ("auto", "completion", "chat", "chat-prefill"))
    check_choice("--format", output_format, ("trl", "openrlhf"))
    check_choice("--question-format", question_format, tuple(QUESTION_FORMATS))
    cons = load_constitution(constitution)
    templates = load_label_templates(
        template or QUESTION_FORMATS[question_format], fewshot_file or "label_pairs_fewshot", fewshot
    )
    client = build_client(
        spec, base_url=base_url, api_key=api_key, timeout=timeout, retries=retries, rpm=rpm, tpm=tpm
    )
    mode = prompt_format
    if mode == "auto":
        mode = auto_mode(client)
    if mode == "completion" and not client.supports_completions:
        raise UsageError(f"{spec} has no raw-completion endpoint", hint="use --prompt-format chat")
    if mode == "chat-prefill" and client.render_chat is None:
        raise UsageError("--prompt-format chat-prefill needs a local/ model", hint="use chat or completion")
    n_votes = default_votes(client, votes)
    if n_votes and mode != "chat":
        raise UsageError("--votes needs --prompt-format chat")
    settings = LabelSettings(
        mode=mode,  # type: ignore[arg-type]
        seed=seed,
        ensemble=ensemble,
        both_orders=both_orders,
        cot=cot,
        cot_samples=cot_samples,
        cot_max_tokens=cot_max_tokens,
        clamp=_parse_clamp(clamp, no_clamp, cot),
        votes=n_votes,
        reask=reask,
    )
    policy_client = None
    if policy:
        policy_client = build_client(
            policy,
            base_url=policy_base_url,
            api_key=None,
            timeout=timeout,
            retries=retries,
            rpm=None,
            tpm=None,
        )
    counts = RunCounts()
    bad = BadInputPolicy(on_bad_input, rejects, output, counts)

    def to_jobs(line: Line) -> list[Job[Any]]:
        try:
            rid, item = pair_item(line, field=field)
            return [Job(rid, line.where, item)]
        except InputError:
            if policy_client is None:
                raise
        return [Job(rid, line.where, prompt) for rid, prompt in prompt_items(line, field=field)]

    jobs = lines_to_jobs(input, bad, to_jobs)

    if dry_run:
        job = next(iter(jobs), None)
        if job is None:
            return
        labeler = Labeler(client, cons, templates, settings)
        if not hasattr(job.item, "response_a"):
            raise UsageError("--dry-run shows the question of a pair; this record has only a prompt")
        p = cons.sample_comparisons(random.Random(f"caitool-label:{seed}:{job.id}"), 1)[0]
        request = labeler.render_question(
            job.item, p, "ab", random.Random(f"caitool-label:{seed}:{job.id}:0:ab")
        )
        print(f"===== {job.id}: question (principle {p.id}) [{mode}] =====")
        if isinstance(request, str):
            print(request)
        else:
            import json

            for m in request:
                print(json.dumps(m.to_dict(), ensure_ascii=False))
        return

    run = RunSpec(
        command="label-pairs",
        input=input,
        output=output,
        errors=errors,
        settings={
            "model": spec,
            "base_url": base_url,
            "policy": policy,
            "policy_base_url": policy_base_url,
            "max_tokens": max_tokens if policy else None,
            "cot_max_tokens": cot_max_tokens if cot else None,
            "reask": reask,
            "question_format": None if template else question_format,
            "label_method": LABEL_METHOD,
            "mode": mode,
            "seed": seed,
            "ensemble": ensemble,
            "both_orders": both_orders,
            "cot": cot,
            "cot_samples": cot_samples,
            "clamp": settings.clamp,
            "votes": n_votes,
            "format": output_format,
            "field": field,
            "constitution": cons.name,
            "constitution_sha256": cons.sha256,
            "templates_sha256": templates.sha256,
        },
        concurrency=default_concurrency(spec, concurrency),
        limit=limit,
        quiet=quiet,
        overwrite=overwrite,
        total=count_lines(input),
        extra_manifest={"constitution_source": cons.source},
    )
    price_ = price_for(spec, parse_price(price))
    clients = [client] if policy_client is None else [client, policy_client]

    def make_process(store: Any) -> Any:
        labeler = Labeler(client, cons, templates, settings, steps=store.steps, save_step=store.save_step)

        async def process(job: Job[Any]) -> list[dict[str, Any]]:
            item = job.item
            sampled: dict[str, Any] | None = None
            if not hasattr(item, "response_a"):
                assert policy_client is not None
                texts = await sample_responses(
                    policy_client,
                    item,
                    2,
                    GenerateParams(max_tokens=max_tokens),
                    seed=seed,
                    record_id=job.id,
                    usage=Usage(),
                    steps=store.steps,
                    save_step=store.save_step,
                )
                ((_, item),) = make_pairs(job.id, item, texts, "first")
                sampled = {"policy": policy}
            row = await labeler.label(Job(job.id, job.where, item))
            meta = row["caitool"]
            meta.update(
                model=spec,
                seed=seed,
                constitution=cons.name,
                constitution_sha256=cons.sha256,
                source=job.where,
                **(sampled or {}),
            )
            if output_format == "openrlhf":
                return [to_openrlhf(row)]
            return [row]

        return process

    raise typer.Exit(execute(run, jobs, make_process, clients, price=price_, counts=counts))


def to_openrlhf(row: dict[str, Any]) -> dict[str, Any]:
    """OpenRLHF's reward-model data: the whole conversation per side (its `--apply_chat_template` with
    `--chosen_key chosen --rejected_key rejected`), and the soft label as `margin`, the only per-example
    strength OpenRLHF's train_rm takes (an approximation of the soft label: see docs/records.md)."""
    return {
        "id": row["id"],
        "chosen": row["prompt"] + row["chosen"],
        "rejected": row["prompt"] + row["rejected"],
        "margin": row["margin"],
        "p_chosen": row["p_chosen"],
        "caitool": row["caitool"],
    }


@app.command("mix")
def mix(
    ai: Annotated[str, typer.Option("--ai", help="AI-labelled pairs (label-pairs output).")],
    human: Annotated[
        str, typer.Option("--human", help="Human comparisons: HH-RLHF {chosen, rejected} or TRL.")
    ],
    output: OutputOpt = None,
    ratio: Annotated[
        str | None, typer.Option("--ratio", help="AI:HUMAN rows, e.g. 1:1 (default: all of both).")
    ] = None,
    seed: SeedOpt = 0,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """The paper's hybrid preference data: AI harmlessness labels mixed with human helpfulness comparisons
    at a stated ratio, shuffled with a seed, each row keeping where it came from."""
    from caitool.tasks.mix import mix_preferences, write_mix

    rows, summary = mix_preferences(ai, human, ratio, seed)
    write_mix(
        rows,
        summary,
        output=output,
        ai_path=ai,
        human_path=human,
        ratio=ratio,
        seed=seed,
        overwrite=overwrite,
    )
    from caitool.console import info

    info(f"mix: {summary['ai']} AI + {summary['human']} human rows (seed {seed})", quiet=quiet)
