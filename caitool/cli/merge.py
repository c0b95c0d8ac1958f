"""`caitool merge`: join the outputs of `--shard I/N` runs into one output, as if it had run unsharded."""

from __future__ import annotations

from typing import Annotated

import typer

from caitool.cli import app
from caitool.cli._options import QuietOpt


@app.command("merge")
def merge(
    shards: Annotated[list[str], typer.Argument(help="The shards' output files (manifests beside them).")],
    output: Annotated[str, typer.Option("--output", "-o", help="The merged output file.")],
    partial: Annotated[
        bool,
        typer.Option("--partial", help="Merge even if shards are missing or unfinished."),
    ] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace OUTPUT if it exists.")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Join shard outputs, errors and manifests into OUTPUT: each record once, shards of different settings
    refused. Rerunning the unsharded command on OUTPUT resumes it (it redoes only the failed records).

    Exit 0 when every record is there, 3 when some failed in their shard (see OUTPUT.errors.jsonl)."""
    from caitool.console import info
    from caitool.shards import merge_shards

    result = merge_shards(shards, output, overwrite=overwrite, partial=partial)
    parts = [f"merge: {result.records} records ({result.rows} rows) from {len(result.shards)} shards"]
    if result.duplicates:
        parts.append(f"{result.duplicates} records found twice, kept once")
    if result.failed:
        parts.append(f"{result.failed} failed (see {output}.errors.jsonl)")
    if result.missing:
        parts.append(f"missing shards: {', '.join(str(i) for i in result.missing)}")
    info("; ".join(parts), quiet=quiet)
    raise typer.Exit(result.exit_code)
