"""Options shared by the data commands, declared once so their names, defaults and help stay the same."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Annotated, Any

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
BaseUrlsOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--base-url",
        help="Server URL for OpenAI/Anthropic-compatible APIs. Repeat it, or separate URLs with commas, "
        "for an endpoint fleet (URL#cap=N caps one endpoint; docs/scale.md).",
    ),
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
DataTimeoutOpt = Annotated[
    float | None,
    typer.Option(
        "--timeout",
        min=1,
        help="Deadline in seconds for each attempt, body included (default 120; 900 with --tier flex).",
        show_default=False,
    ),
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
EngineOpt = Annotated[
    str,
    typer.Option(
        "--engine",
        help="local (this process) or ray (records run in Ray actors, each with its own in-process "
        "model; pip install caitool\\[ray]; docs/scale.md).",
    ),
]
RayAddressOpt = Annotated[
    str | None,
    typer.Option(
        "--ray-address",
        help="With --engine ray: the cluster to join (default $RAY_ADDRESS, else a local one).",
    ),
]
RayActorsOpt = Annotated[
    int | None,
    typer.Option(
        "--ray-actors",
        min=1,
        help="With --engine ray: actors, each with its own model (default: one per CPU; for vllm-engine/, "
        "one per GPU).",
    ),
]
ShardOpt = Annotated[
    str | None,
    typer.Option(
        "--shard",
        help="I/N: only the records whose id hashes to shard I of N (job arrays; join with caitool merge).",
    ),
]
TierOpt = Annotated[
    str,
    typer.Option(
        "--tier",
        help="standard (live requests), flex (OpenAI service_tier=flex: half price, slower) or batch "
        "(provider batch APIs: half price, results within hours). A run resumes on any tier.",
    ),
]
FlexFallbackOpt = Annotated[
    int | None,
    typer.Option(
        "--flex-fallback",
        min=1,
        help="With --tier flex: after N 'resource unavailable' answers, send the rest at standard (default: "
        "never; flex answers are retried with backoff).",
    ),
]
CacheOpt = Annotated[
    str | None,
    typer.Option(
        "--cache",
        help="Folder of answers kept across runs: an identical request (model, URL, prompt, parameters, "
        "seed) is answered from it, unpaid. Off by default.",
    ),
]
MaxCostOpt = Annotated[
    float | None,
    typer.Option(
        "--max-cost",
        min=0,
        help="USD this run may spend: no record starts whose upper-bound cost would cross it (exit 4; "
        "rerun to resume).",
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


def data_command(func: Callable[..., None] | None = None, *, omit: tuple[str, ...] = ()) -> Any:
    """Give a data command the shared client and run flags, declared here once: INPUT and -o first, then
    the command's own parameters (from `ctx`, its first, to `--seed`), then --base-url ... --quiet in one
    order. The command reads them as `ClientFlags.from_params(ctx.params)` / `RunFlags.from_params(...)`.
    `omit` names shared flags the command has no use for (red-team's INPUT is its own SEEDS argument).
    Use as `@data_command` or `@data_command(omit=(...))`."""
    decorate = with_shared_flags(_SHARED, first=_FIRST, omit=omit)
    return decorate if func is None else decorate(func)


def with_shared_flags(
    table: dict[str, tuple[Any, Any]], *, first: tuple[str, ...] = (), omit: tuple[str, ...] = ()
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """A decorator that adds the flags of `table` (name -> (annotation, default), in --help order) to a
    typer command: the names in `first` before the command's own parameters, the rest after them. The
    command declares `ctx: typer.Context` first and reads the added values from `ctx.params`; a parameter
    it declares itself (compare's --base-url, with its own help) is kept as declared."""
    unknown = set(omit) - set(table)
    assert not unknown, f"omit names no shared flag: {sorted(unknown)}"

    def decorate(func: Callable[..., None]) -> Callable[..., None]:
        own = inspect.signature(func, eval_str=True).parameters
        added = {
            name: inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=kind, default=default)
            for name, (kind, default) in table.items()
            if name not in own and name not in omit
        }
        before = [p for name, p in added.items() if name in first]
        after = [p for name, p in added.items() if name not in first]
        params = [own["ctx"], *before, *(p for name, p in own.items() if name != "ctx"), *after]

        @functools.wraps(func)
        def command(ctx: typer.Context, **values: Any) -> None:
            func(ctx, **{name: value for name, value in values.items() if name in own})

        command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [p.replace(kind=inspect.Parameter.POSITIONAL_OR_KEYWORD) for p in params]
        )
        return command

    return decorate


_FIRST = ("input", "output")
# name -> (annotation, default), in the order --help shows them.
_SHARED: dict[str, tuple[Any, Any]] = {
    "input": (InputArg, "-"),
    "output": (OutputOpt, None),
    "base_url": (BaseUrlsOpt, None),
    "api_key": (ApiKeyOpt, None),
    "concurrency": (ConcurrencyOpt, None),
    "rpm": (RpmOpt, None),
    "tpm": (TpmOpt, None),
    "timeout": (DataTimeoutOpt, None),
    "retries": (RetriesOpt, 6),
    "limit": (LimitOpt, None),
    "errors": (ErrorsOpt, None),
    "on_bad_input": (OnBadInputOpt, "fail"),
    "rejects": (RejectsOpt, None),
    "price": (PriceOpt, None),
    "tier": (TierOpt, "standard"),
    "flex_fallback": (FlexFallbackOpt, None),
    "overwrite": (OverwriteOpt, False),
    "dry_run": (DryRunOpt, False),
    "max_cost": (MaxCostOpt, None),
    "cache": (CacheOpt, None),
    "shard": (ShardOpt, None),
    "engine": (EngineOpt, "local"),
    "ray_address": (RayAddressOpt, None),
    "ray_actors": (RayActorsOpt, None),
    "quiet": (QuietOpt, False),
}
