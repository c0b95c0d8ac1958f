"""`caitool providers list`: every model provider (built-in or plugin), whether it is ready here, the variable
its API key is read from and the base URL it would use."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from caitool.cli import app

providers_app = typer.Typer(help="Model providers (built-ins and plugins).", no_args_is_help=True)
app.add_typer(providers_app, name="providers")


@providers_app.command("list")
def list_providers(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per provider.")] = False,
) -> None:
    """Show each model provider: ready here or not, its key variable, its base URL, where it comes from."""
    from caitool.cli._common import provider_table

    rows = provider_table()
    if as_json:
        for p in rows:
            typer.echo(json.dumps(p.to_dict()))
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table()
    for col in ("provider", "ready", "key variable", "base URL", "from", "detail"):
        table.add_column(col, overflow="fold")
    for p in rows:
        cells = (p.name, "yes" if p.ready else "no", p.key_env or "-", p.base_url or "-", p.source, p.detail)
        table.add_row(*(Text(c) for c in cells))  # plain text: a hint like caitool[local] keeps its brackets
    Console(highlight=False, soft_wrap=False).print(table)
