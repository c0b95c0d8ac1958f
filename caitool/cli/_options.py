"""Options shared by the data commands, declared once so their names, defaults and help stay the same."""

from __future__ import annotations

from typing import Annotated

import typer

InputArg = Annotated[str, typer.Argument(help="Input JSONL file, or - for stdin.", show_default=True)]
OutputOpt = Annotated[
    str | None, typer.Option("--output", "-o", help="Output JSONL file (default: stdout). Reruns resume it.")
]
ModelOpt = Annotated[
    str | None,
    typer.Option(
        "--model",
        "-m",
        help="provider/model, e.g. local/smollm2 (default; or $CAITOOL_MODEL), "
        "openai/gpt-4o-mini, anthropic/claude-sonnet-4-5, vllm/NAME, ollama/NAME.",
    ),
]
BaseUrlOpt = Annotated[
    str | None, typer.Option("--base-url", help="Server URL for OpenAI/Anthropic-compatible APIs.")
]
ApiKeyOpt = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        envvar="CAITOOL_API_KEY",
        show_envvar=False,
        help="API key (prefer OPENAI_API_KEY / ANTHROPIC_API_KEY in the environment).",
    ),
]
ConcurrencyOpt = Annotated[
    int | None,
    typer.Option("--concurrency", "-c", min=1, help="Records in flight (default 16; 1 for local/)."),
]
RpmOpt = Annotated[float | None, typer.Option("--rpm", min=1, help="Client-side requests-per-minute budget.")]
TpmOpt = Annotated[float | None, typer.Option("--tpm", min=1, help="Client-side tokens-per-minute budget.")]
TimeoutOpt = Annotated[
    float, typer.Option("--timeout", min=1, help="Deadline in seconds for each attempt, body included.")
]
RetriesOpt = Annotated[
    int, typer.Option("--retries", min=0, help="Retries per request (attempts = 1 + retries).")
]
SeedOpt = Annotated[
    int, typer.Option("--seed", help="Seed of every random draw the command makes; same seed, same draws.")
]
LimitOpt = Annotated[int | None, typer.Option("--limit", min=1, help="Process only the first N records.")]
ConstitutionOpt = Annotated[
    str | None,
    typer.Option("--constitution", help="Constitution name or TOML/JSON path (default anthropic-cai-2022)."),
]
OverwriteOpt = Annotated[
    bool, typer.Option("--overwrite", help="Start over instead of resuming the output file.")
]
ErrorsOpt = Annotated[
    str | None,
    typer.Option(
        "--errors", help="Errors JSONL (default: OUTPUT.errors.jsonl; for stdout, reasons go to stderr)."
    ),
]
QuietOpt = Annotated[
    bool, typer.Option("--quiet", "-q", help="No progress or summary on stderr (errors are still shown).")
]
ShardOpt = Annotated[
    str | None,
    typer.Option(
        "--shard",
        help="I/N: only the records whose id hashes to shard I of N (job arrays; join with caitool merge).",
    ),
]
DryRunOpt = Annotated[
    bool, typer.Option("--dry-run", help="Print the rendered prompts of the first record; no calls.")
]
FieldOpt = Annotated[
    str | None, typer.Option("--field", help="Input field with the prompt (string, transcript or messages).")
]
OnBadInputOpt = Annotated[
    str,
    typer.Option(
        "--on-bad-input", help="fail (exit 2 at the first bad line) or skip (write it to --rejects)."
    ),
]
RejectsOpt = Annotated[
    str | None, typer.Option("--rejects", help="Where skipped bad lines go (default: OUTPUT.rejects.jsonl).")
]
PriceOpt = Annotated[
    str | None,
    typer.Option(
        "--price", help="USD per million input,output tokens, e.g. 0.15,0.60 (overrides the table)."
    ),
]
