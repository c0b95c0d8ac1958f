"""`caitool elo`: Elo scores with bootstrap intervals from pairwise judgments (`caitool.evaluation.elo`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from caitool.cli import app
from caitool.cli._options import InputArg, OnBadInputOpt, QuietOpt, RejectsOpt, SeedOpt
from caitool.cli._report import read_rows, table, warn

if TYPE_CHECKING:
    from caitool.evaluation.elo import CriterionResult


@app.command("elo")
def elo(
    judgments: InputArg = "-",
    bootstrap: Annotated[
        int, typer.Option("--bootstrap", "-b", min=0, help="Bootstrap resamples for the intervals (0: none).")
    ] = 1000,
    ci: Annotated[float, typer.Option("--ci", help="Confidence level of the intervals.")] = 0.95,
    anchor: Annotated[
        str | None,
        typer.Option("--anchor", help="Model whose Elo is 0 on every criterion (default: the mean is 0)."),
    ] = None,
    prior: Annotated[
        float,
        typer.Option(
            "--prior", min=0, help="Pseudo-comparisons per model against a reference (0: pure MLE)."
        ),
    ] = 1.0,
    criterion: Annotated[
        list[str] | None, typer.Option("--criterion", help="Only these criteria (repeatable).")
    ] = None,
    source: Annotated[
        list[str] | None, typer.Option("--source", help="Only rows with this `source` (repeatable).")
    ] = None,
    seed: SeedOpt = 0,
    on_bad_input: OnBadInputOpt = "fail",
    rejects: RejectsOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Elo scores (Bradley–Terry) with bootstrap intervals from pairwise judgments, one scale per criterion.

    JUDGMENTS: JSONL rows {"criterion", "model_a", "model_b", "p_a"} (soft or hard, p_a = P(A is better))
    or {"criterion", "model_a", "model_b", "winner": "a"|"b"|"tie"}; human and AI judgments alike.
    Table on stderr, JSON on stdout (the input of `caitool plot elo`).
    """
    from caitool.cli._common import print_json
    from caitool.errors import UsageError
    from caitool.evaluation.elo import EloSettings, fit_all, report
    from caitool.evaluation.judgments import parse_judgment

    settings = EloSettings(bootstrap=bootstrap, ci=ci, seed=seed, prior=prior, anchor=anchor)
    settings.check()
    rows = read_rows(judgments, on_bad_input, rejects, parse_judgment)
    if source:
        rows = [j for j in rows if j.source in source]
    if criterion:
        rows = [j for j in rows if j.criterion in criterion]
    if not rows:
        raise UsageError("no judgments left to score", hint="check --criterion / --source")
    results = fit_all(rows, settings)
    for name, r in results.items():
        _show(name, r, ci, quiet)
    print_json(report(results, settings))


def _show(name: str, r: CriterionResult, ci: float, quiet: bool) -> None:
    """One criterion's warnings and table on stderr."""
    if len(r.components) > 1:
        warn(
            f"{name}: the models fall into {len(r.components)} groups never compared with each other; "
            "Elo across groups rests on the prior only",
            quiet,
        )
    if not r.converged:
        warn(f"{name}: the fit did not converge in {r.iterations} steps", quiet)
    pct = f"{round(100 * ci)}%"
    table(
        f"{name}: {r.comparisons} comparisons, Elo (anchor: {r.anchor}), {pct} bootstrap interval",
        [
            ("model", "left"),
            ("Elo", "right"),
            (f"{pct} interval", "right"),
            ("n", "right"),
            ("win rate", "right"),
        ],
        [
            [
                m.model,
                f"{m.elo:+.0f}",
                f"[{m.ci_low:+.0f}, {m.ci_high:+.0f}]",
                str(m.comparisons),
                f"{m.wins / m.comparisons:.2f}" if m.comparisons else "-",
            ]
            for m in r.models
        ],
        quiet,
    )
