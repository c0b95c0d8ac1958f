"""`caitool critique-revise`: the paper's supervised stage, as a JSONL → JSONL command."""

from __future__ import annotations

from typing import Annotated

import typer

from caitool.cli import app
from caitool.cli._options import ConstitutionOpt, FieldOpt, ModelOpt, SeedOpt, data_command


@app.command("critique-revise")
@data_command
def critique_revise(
    ctx: typer.Context,
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
) -> None:
    """Critique and revise model responses under sampled principles: an SL-CAI dataset with a full trace.

    Each record: sample a response (or take it from the input), then ROUNDS rounds of critique → revision,
    each under a principle drawn at random (with replacement, seeded) from the constitution.
    """

    from caitool.cli._common import ClientFlags, RunFlags, check_choice, run_task
    from caitool.providers.base import GenerateParams
    from caitool.tasks.critique_revise import CritiqueReviseRun, CritiqueReviseSettings, CritiqueReviseTask

    flags, run = ClientFlags.from_params(ctx.params), RunFlags.from_params(ctx.params)
    check_choice("--format", output_format, ("trace", "sft"))
    check_choice("--prompt-format", prompt_format, ("chat", "completion"))
    settings = CritiqueReviseSettings(
        rounds=rounds,
        seed=seed,
        critique=not no_critique,
        prompt_format=prompt_format,  # type: ignore[arg-type]
        params=GenerateParams(temperature=temperature, max_tokens=max_tokens, top_p=top_p),
        output_format=output_format,  # type: ignore[arg-type]
        keep_rounds=keep_rounds,
    )
    client = None if run.dry_run else flags.build()
    about = CritiqueReviseRun(
        flags.model, flags.url_setting, per_turn, field, response_field, keep_response, flags.price_for()
    )
    task = CritiqueReviseTask.load(
        client, settings, about, constitution=constitution, template=template, fewshot_file=fewshot_file,
        fewshot=fewshot,
    )  # fmt: skip

    clients = [] if client is None else [client]
    price_ = flags.price_for()
    run_task(
        task, run, clients, concurrency=flags.concurrency, price=price_, extra_manifest=task.extra_manifest
    )
