"""`caitool plot elo` and `caitool plot calibration`: figures from evaluation reports
(`caitool.evaluation.plot`; matplotlib, the `plot` extra, is imported only when a figure is drawn)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from caitool.cli import app
from caitool.cli._options import QuietOpt
from caitool.cli._report import warn

plot_app = typer.Typer(
    help="Figures from evaluation results (matplotlib, the `plot` extra): Elo vs Elo, calibration.",
    no_args_is_help=True,
)
app.add_typer(plot_app, name="plot")


def read_json_document(path: str, what: str) -> dict[str, Any]:
    import json
    import sys
    from pathlib import Path

    from caitool.console import stdin_notice
    from caitool.errors import InputError

    name = "<stdin>" if path == "-" else path
    stdin_notice(path)
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{name}:0", "no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{name}:0", f"cannot read: {exc}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{name}:{exc.lineno}", f"not a JSON document ({what}): {exc.msg}") from None
    if not isinstance(doc, dict):
        raise InputError(f"{name}:1", f"expected a JSON object ({what})")
    return doc


OutImageOpt = Annotated[
    str, typer.Option("--output", "-o", help="Image file: .png, .svg or .pdf (its data goes to OUTPUT.json).")
]


@plot_app.command("elo")
def plot_elo(
    report: Annotated[str, typer.Argument(help="JSON report of `caitool elo`, or - for stdin.")] = "-",
    output: OutImageOpt = "elo.png",
    x: Annotated[str, typer.Option("--x", help="Criterion on the x axis.")] = "helpfulness",
    y: Annotated[str, typer.Option("--y", help="Criterion on the y axis.")] = "harmlessness",
    title: Annotated[str | None, typer.Option("--title", help="Figure title.")] = None,
    annotate: Annotated[bool, typer.Option("--annotate", help="Label each point with its step.")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Harmlessness Elo against helpfulness Elo (the paper's Fig. 2): one line per model family, a point per
    checkpoint in training order (models named FAMILY@STEP), bootstrap intervals as error bars.

    caitool elo judgments.jsonl | caitool plot elo - -o fig2.png
    """
    from caitool.console import info
    from caitool.evaluation.plot import draw_elo, elo_points, image_format, save

    image_format(output)
    data = elo_points(read_json_document(report, "a `caitool elo` report"), x=x, y=y)
    for criterion, models in data.missing.items():
        warn(f"not scored on {criterion}, left out: {', '.join(models)}", quiet)
    if not data.families:
        warn(f"no model is scored on both {x} and {y}: the figure is empty", quiet)
    side = save(draw_elo(data, title=title, annotate=annotate), output, data.to_dict())
    points = sum(len(p) for p in data.families.values())
    info(f"{output}: {len(data.families)} families, {points} points (data: {side})", quiet=quiet)


@plot_app.command("calibration")
def plot_calibration(
    report: Annotated[
        str, typer.Argument(help="JSON report of `caitool eval-labeler`, or - for stdin.")
    ] = "-",
    output: OutImageOpt = "calibration.png",
    title: Annotated[str | None, typer.Option("--title", help="Figure title.")] = None,
    quiet: QuietOpt = False,
) -> None:
    """Reliability diagram of a feedback model (the paper's Fig. 9) from an `eval-labeler` report."""
    from caitool.console import info
    from caitool.evaluation.plot import calibration_points, draw_calibration, image_format, save

    image_format(output)
    doc = read_json_document(report, "a `caitool eval-labeler` report")
    side = save(draw_calibration(doc, title=title), output, {"bins": calibration_points(doc)})
    info(f"{output}: calibration curve (data: {side})", quiet=quiet)
