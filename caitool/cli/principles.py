"""`caitool principles`: list, show, validate and import constitutions.

`list` and `show` print their result on stdout (a table, or JSON with --json); `validate` prints one problem
per line on stdout, linter style, and exits 2 when there are any; `import` writes TOML to stdout or to -o.
The format is described in docs/principles.md.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from caitool.cli import app
from caitool.cli._options import ConstitutionOpt
from caitool.errors import EXIT_USAGE, UsageError

if TYPE_CHECKING:
    from caitool.constitution import ComparisonPrinciple, Constitution, CritiquePrinciple

principles_app = typer.Typer(
    help="List, show, validate and import constitutions (the principles of critique-revise and label-pairs).",
    no_args_is_help=True,
)
app.add_typer(principles_app, name="principles")

JsonOpt = Annotated[bool, typer.Option("--json", help="JSON lines on stdout, one object per principle.")]


def _critique_row(c: Constitution, p: CritiquePrinciple) -> dict[str, Any]:
    return {
        "constitution": c.name,
        "section": "critique",
        "id": p.id,
        "critique": p.critique,
        "revision": p.revision,
    }


def _comparison_row(c: Constitution, p: ComparisonPrinciple) -> dict[str, Any]:
    return {"constitution": c.name, "section": "comparison", "id": p.id, "text": p.text}


def _echo_json(row: dict[str, Any]) -> None:
    typer.echo(json.dumps(row, ensure_ascii=False))


@principles_app.command("list")
def list_principles(constitution: ConstitutionOpt = None, as_json: JsonOpt = False) -> None:
    """List the principles of a constitution (default: the paper's, anthropic-cai-2022)."""
    from caitool.constitution import load_constitution

    c = load_constitution(constitution)
    if as_json:
        for p in c.critiques:
            _echo_json(_critique_row(c, p))
        for q in c.comparisons:
            _echo_json(_comparison_row(c, q))
        return

    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    out = Console(highlight=False, soft_wrap=False)
    out.print(Text(f"{c.name}  ({c.source})", style="bold"))
    if c.description:
        out.print(Text(c.description))
    if c.critiques:
        table = Table(
            title=f"{len(c.critiques)} critique/revision pairs (critique-revise)", title_justify="left"
        )
        table.add_column("id", no_wrap=True)
        table.add_column("critique request", ratio=1)
        table.add_column("revision request", ratio=1)
        for p in c.critiques:
            table.add_row(Text(p.id), Text(p.critique), Text(p.revision))
        out.print(table)
    if c.comparisons:
        table = Table(title=f"{len(c.comparisons)} comparison principles (label-pairs)", title_justify="left")
        table.add_column("id", no_wrap=True)
        table.add_column("text", ratio=1)
        for q in c.comparisons:
            table.add_row(Text(q.id), Text(q.text))
        out.print(table)
    out.print(Text(f"sha256 {c.sha256}"))


@principles_app.command("show")
def show(
    principle_id: Annotated[
        str, typer.Argument(metavar="ID", help="A principle id, e.g. harmful3 or compare7.")
    ],
    constitution: ConstitutionOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Print one principle in full."""
    from caitool.constitution import load_constitution

    c = load_constitution(constitution)
    rows = [_critique_row(c, p) for p in c.critiques if p.id == principle_id]
    rows += [_comparison_row(c, q) for q in c.comparisons if q.id == principle_id]
    if not rows:
        raise UsageError(
            f"no principle {principle_id!r} in constitution {c.name!r} ({c.source})",
            hint="`caitool principles list` shows the ids",
        )
    for i, row in enumerate(rows):
        if as_json:
            _echo_json(row)
            continue
        if i:
            typer.echo("")
        for key in ("id", "section", "critique", "revision", "text"):
            if key in row:
                typer.echo(f"{key}: {row[key]}")


@principles_app.command("validate")
def validate(
    path: Annotated[
        str, typer.Argument(metavar="PATH", help="A .toml or .json constitution, or a builtin name.")
    ],
) -> None:
    """Check a constitution file: prints every problem and exits 2, or prints a summary and exits 0."""
    from caitool.console import info
    from caitool.constitution import builtin_names, import_file, validate_file

    target = path
    if not Path(path).exists() and path in builtin_names():
        from caitool.resources import data_dir

        target = str(data_dir("principles") / f"{path}.toml")
    problems = validate_file(target)
    if problems:
        for problem in problems:
            typer.echo(problem)
        info(f"{len(problems)} problem{'s' if len(problems) != 1 else ''} in {target}")
        raise typer.Exit(EXIT_USAGE)
    c = import_file(target)
    counts = f"{len(c.critiques)} critique pairs, {len(c.comparisons)} comparison principles"
    typer.echo(f"ok: {counts}, sha256 {c.sha256}")


@principles_app.command("import")
def import_(
    paths: Annotated[
        list[str],
        typer.Argument(
            metavar="PATH",
            help="Files to convert: the paper repository's CritiqueRevisionInstructions.json and/or "
            "RLMadisonInstructions.json, a Hugging Face recipe constitution JSON, or a caitool JSON/TOML "
            "file. Several files are merged into one constitution.",
        ),
    ],
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="TOML file to write (default: stdout).")
    ] = None,
    name: Annotated[
        str | None,
        typer.Option("--name", help="Name of the new constitution (default: from the file names)."),
    ] = None,
) -> None:
    """Convert constitutions in other formats to caitool TOML."""
    from caitool.console import info
    from caitool.constitution import import_file, merge_constitutions, to_toml

    c = merge_constitutions([import_file(p) for p in paths], name=name)
    text = to_toml(c)
    if output is None or output == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        Path(output).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {output}: {exc.strerror or exc}") from None
    info(
        f"wrote {output}: {c.name}, {len(c.critiques)} critique pairs, {len(c.comparisons)} comparison "
        f"principles, sha256 {c.sha256}"
    )
