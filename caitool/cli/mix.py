"""`caitool mix`: the paper's hybrid preference data, AI labels mixed with human comparisons."""

from __future__ import annotations

from typing import Annotated

import typer

from caitool.cli import app
from caitool.cli._options import OutputOpt, OverwriteOpt, QuietOpt, SeedOpt


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
    human_margin: Annotated[
        float,
        typer.Option(
            "--human-margin",
            help="The human rows' margin (train-pm --loss margin); their p_chosen stays 1.0. "
            "Default logit(0.95): logit(1.0) would dominate the loss.",
        ),
    ] = 2.9444,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """The paper's hybrid preference data: AI harmlessness labels mixed with human helpfulness comparisons
    at a stated ratio, shuffled with a seed, each row keeping where it came from."""
    from caitool.console import info
    from caitool.tasks.mix import mix_preferences, write_mix

    rows, summary = mix_preferences(ai, human, ratio, seed, human_margin)
    write_mix(
        rows,
        summary,
        output=output,
        ai_path=ai,
        human_path=human,
        ratio=ratio,
        seed=seed,
        overwrite=overwrite,
        human_margin=human_margin,
    )
    info(f"mix: {summary['ai']} AI + {summary['human']} human rows (seed {seed})", quiet=quiet)
