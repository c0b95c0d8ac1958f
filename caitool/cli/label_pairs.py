"""`caitool label-pairs`: AI feedback labels for response pairs, the data of the paper's RL stage."""

from __future__ import annotations

from typing import Annotated

import typer

from caitool.cli import app
from caitool.cli._options import ConstitutionOpt, FieldOpt, ModelOpt, SeedOpt, data_command


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
@data_command
def label_pairs(
    ctx: typer.Context,
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
) -> None:
    """Label response pairs with AI feedback: the paper's (A)/(B) question under a sampled principle, soft
    labels from the feedback model's log-probabilities. Writes TRL preference rows with p_chosen."""
    from caitool.cli._common import ClientFlags, RunFlags, check_choice, run_task
    from caitool.constitution import load_constitution
    from caitool.tasks import label_pairs as lp
    from caitool.tasks.ab_question import resolve_label_mode

    flags, run = ClientFlags.from_params(ctx.params), RunFlags.from_params(ctx.params)
    check_choice("--prompt-format", prompt_format, ("auto", "completion", "chat", "chat-prefill"))
    check_choice("--format", output_format, ("trl", "openrlhf"))
    check_choice("--question-format", question_format, tuple(lp.QUESTION_FORMATS))
    cons = load_constitution(constitution)
    templates = lp.load_label_templates(
        template or lp.QUESTION_FORMATS[question_format], fewshot_file or "label_pairs_fewshot", fewshot
    )
    client = flags.build()
    mode, n_votes = resolve_label_mode(client, prompt_format, votes)
    settings = lp.LabelSettings(mode=mode, seed=seed, ensemble=ensemble, both_orders=both_orders, cot=cot,
                                cot_samples=cot_samples, cot_max_tokens=cot_max_tokens, votes=n_votes,
                                clamp=_parse_clamp(clamp, no_clamp, cot), reask=reask)  # fmt: skip
    policy_client = flags.build(policy, base_url=policy_base_url) if policy else None
    labeled = lp.LabelPairsRun(flags.model, flags.url_setting, policy, policy_base_url, max_tokens,
                            None if template else question_format, output_format, field)  # fmt: skip
    task = lp.LabelPairsTask(lp.Labeler(client, cons, templates, settings), labeled, policy_client)

    clients = [client] if policy_client is None else [client, policy_client]
    extra = {"constitution_source": cons.source}
    run_task(task, run, clients, concurrency=flags.concurrency, price=flags.price_for(), extra_manifest=extra)
