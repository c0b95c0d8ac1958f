"""`caitool batches`: the provider batches of a `--tier batch` run, from its ledger (OUTPUT.batches.jsonl).

`list` and `show` print on stdout (a table, or JSON with --json); `cancel` stops the unfinished batches (a
rerun collects what they finished and sends the rest again); `adopt` records by hand which batch an intent
became, when a rerun stopped (exit 3) because several provider batches matched it. `export` and `import`
carry the batches of a run made with CAITOOL_BATCH_DIR to `vllm run-batch` and back. What the ledger holds
and guarantees: docs/providers.md, "Cost tiers".
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from caitool.cli import app
from caitool.cli._options import ApiKeyOpt

batches_app = typer.Typer(
    help="List, show, cancel or adopt the provider batches of a --tier batch run (from its ledger).",
    no_args_is_help=True,
)
app.add_typer(batches_app, name="batches")

OutputArg = Annotated[
    str, typer.Argument(help="The run's output (-o) file; its ledger is OUTPUT.batches.jsonl.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="JSON lines on stdout, one object per batch.")]


@batches_app.command("list")
def list_batches(output: OutputArg, as_json: JsonOpt = False) -> None:
    """Every batch of the run: its intent, provider batch id, requests and state (no provider call)."""
    from caitool.tiers.manage import rows

    table = [r.to_dict() for r in rows(output)]
    if as_json:
        for row in table:
            typer.echo(json.dumps(row))
        return
    typer.echo(f"{'intent':<10} {'batch id':<32} {'requests':>8}  {'state':<10} {'status':<10} created")
    for row in table:
        typer.echo(
            f"{row['intent'][:10]:<10} {row['batch_id'] or '-':<32} {row['requests']:>8}  {row['state']:<10} "
            f"{row['status'] or '-':<10} {row['created']}"
        )


@batches_app.command("show")
def show_batch(
    output: OutputArg,
    batch: Annotated[str, typer.Argument(help="A batch id, or an intent id (or its first characters).")],
    api_key: ApiKeyOpt = None,
) -> None:
    """One batch as JSON: its ledger history, and the provider's current status while it is unfinished."""
    from caitool.tiers.manage import find, status

    entry = find(output, batch)
    shown = {
        "intent": {k: v for k, v in entry.intent.items() if k != "custom_ids"},
        "submitted": entry.submitted,
        "ended": entry.ended,
        "state": entry.state,
    }
    if entry.batch_id is not None and entry.state in ("submitted", "ended"):
        shown["provider"] = status(entry, api_key)
    typer.echo(json.dumps(shown, indent=2))


@batches_app.command("cancel")
def cancel_batches(output: OutputArg, api_key: ApiKeyOpt = None) -> None:
    """Cancel the run's unfinished batches (stop the run first). Rerun the command to collect what they
    finished and send the rest again."""
    from caitool.tiers.manage import cancel

    for batch_id, state in cancel(output, api_key):
        typer.echo(f"{batch_id}: {state}")


@batches_app.command("adopt")
def adopt_batch(
    output: OutputArg,
    intent: Annotated[str, typer.Argument(help="The intent id (or its first characters) the rerun named.")],
    batch_id: Annotated[str, typer.Argument(help="The provider batch that intent became.")],
) -> None:
    """Record which batch a lost intent became (a rerun stopped with exit 3); the next run collects it."""
    from caitool.tiers.manage import adopt

    entry = adopt(output, intent, batch_id)
    typer.echo(f"{entry.id}: {entry.batch_id}")


@batches_app.command("export")
def export_batches(output: OutputArg) -> None:
    """The requests still waiting in a CAITOOL_BATCH_DIR folder, as one OpenAI batch input file on stdout
    (for vllm run-batch -i)."""
    import sys

    from caitool.tiers.manage import export_requests

    for path in export_requests(output):
        sys.stdout.buffer.write(path.read_bytes())


@batches_app.command("import")
def import_batches(
    output: OutputArg,
    results: Annotated[str, typer.Argument(help="OpenAI batch output JSONL (vllm run-batch -o).")],
) -> None:
    """Hand a results file to the folder batches it answers; the run (or a rerun) ingests it."""
    from caitool.tiers.manage import import_results

    for batch_id, n in import_results(output, results):
        typer.echo(f"{batch_id}: {n} results")
