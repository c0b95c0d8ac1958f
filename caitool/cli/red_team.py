"""`caitool red-team`: new red-team prompts by few-shot prompting a model with seed prompts
(`caitool.tasks.red_team`), deduplicated (`caitool.evaluation.red_team`), with a diversity report."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from caitool.cli import app
from caitool.cli._options import ModelOpt, SeedOpt, data_command
from caitool.cli._report import print_rows, read_rows, table, warn

if TYPE_CHECKING:
    from caitool.evaluation.red_team import DedupSettings


@app.command("red-team")
@data_command(omit=("input", "limit"))  # the input is SEEDS; -n says how many
def red_team(
    ctx: typer.Context,
    seeds: Annotated[
        str, typer.Argument(help="Seed prompts (JSONL: prompt, messages or a transcript), or -.")
    ],
    n: Annotated[int, typer.Option("-n", "--num", min=1, help="Prompts to generate (model calls).")] = 100,
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            "-o",
            help="Deduplicated prompts (JSONL; default stdout). Raw generations: OUTPUT.raw.jsonl.",
        ),
    ] = None,
    model: ModelOpt = None,
    shots: Annotated[int, typer.Option("--shots", min=1, help="Seed prompts shown per request.")] = 5,
    prompt_format: Annotated[
        str,
        typer.Option(
            "--prompt-format", help="chat (instruction), or completion (base models: Human: turns)."
        ),
    ] = "chat",
    template: Annotated[
        str | None,
        typer.Option("--template", help="TOML file of your own templates (see prompts/red_team.toml)."),
    ] = None,
    field: Annotated[
        str | None, typer.Option("--field", help="Seed field (default: messages/prompt/chosen/text).")
    ] = None,
    dedup: Annotated[
        str,
        typer.Option("--dedup", help="ngram (character n-gram Jaccard), or embedding (ngram, then MiniLM)."),
    ] = "ngram",
    threshold: Annotated[
        float, typer.Option("--threshold", help="Near-duplicate: character n-gram Jaccard at or above this.")
    ] = 0.55,
    ngram: Annotated[int, typer.Option("--ngram", min=1, help="Character n-gram size.")] = 5,
    embedding_threshold: Annotated[
        float, typer.Option("--embedding-threshold", help="With --dedup embedding: cosine at or above this.")
    ] = 0.9,
    min_chars: Annotated[
        int, typer.Option("--min-chars", min=1, help="Drop prompts shorter than this.")
    ] = 10,
    keep_refusals: Annotated[
        bool, typer.Option("--keep-refusals", help="Keep generations that are refusals of the task itself.")
    ] = False,
    temperature: Annotated[float, typer.Option("--temperature", min=0)] = 1.0,
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=1, help="Tokens per generated prompt.")] = 96,
    top_p: Annotated[float | None, typer.Option("--top-p")] = None,
    seed: SeedOpt = 0,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the first request; no calls.")] = False,
) -> None:
    """New red-team prompts by few-shot prompting a model with seed prompts, with exact and near-duplicate
    removal and a diversity report (the paper's model-generated red-team prompts).

    With -o OUT: generations go to OUT.raw.jsonl (durable: rerun to resume, or with a larger -n to add
    more), the kept prompts to OUT, the dropped ones with their reason to OUT.dropped.jsonl and the report
    to OUT.report.json. Rerunning with other --threshold/--dedup settings re-filters without model calls.
    """
    from caitool.cli._common import ClientFlags, RunFlags, check_choice, run_then_read
    from caitool.console import info
    from caitool.errors import UsageError
    from caitool.evaluation.red_team import parse_seed
    from caitool.providers.base import GenerateParams
    from caitool.tasks import red_team as rt

    run = RunFlags.from_params({**ctx.params, "input": seeds})
    # The durable run is OUT.raw.jsonl (`run_then_read`): --tier batch keeps its ledgers beside that file.
    raw = None if output in (None, "-") else f"{output}.raw.jsonl"
    flags = ClientFlags.from_params({**ctx.params, "output": raw})
    quiet = run.quiet
    check_choice("--prompt-format", prompt_format, ("chat", "completion"))
    dedup_settings = _dedup_settings(dedup, threshold, ngram, embedding_threshold, min_chars, seed)
    templates = rt.load_red_team_templates(template or "red_team")
    seed_list = read_rows(seeds, run.on_bad_input, run.rejects, lambda line: parse_seed(line, field))
    if not seed_list:
        raise UsageError(f"{seeds}: no seed prompts")
    if len(seed_list) < shots:
        warn(f"only {len(seed_list)} seed prompts: each request shows all of them", quiet)
    params = GenerateParams(temperature=temperature, max_tokens=max_tokens, top_p=top_p)
    fmt: rt.PromptFormat = "chat" if prompt_format == "chat" else "completion"
    client = None if dry_run else flags.build()
    gen = rt.RedTeamGenerator(
        client, seed_list, templates, shots=shots, seed=seed, params=params, prompt_format=fmt
    )
    if client is None:
        print(gen.preview())
        return
    if fmt == "completion" and not client.supports_completions:
        raise UsageError(f"{flags.model} has no raw-completion endpoint", hint="use --prompt-format chat")
    code, result = run_then_read(
        gen, gen.jobs(n), client, flags, run, suffix=".raw.jsonl", total=n,
        extra_manifest={"templates_source": templates.source, "n": n},
        then=lambda raw: rt.finish(raw, n, seed_list, dedup_settings, keep_refusals=keep_refusals,
                                   model=flags.model),
    )  # fmt: skip
    if output in (None, "-"):
        print_rows(result.kept)
    else:
        rt.write_files(output, result)
    _tables(result.report, quiet)
    if not quiet and output not in (None, "-"):
        info(f"{output}: {result.report['kept']} prompts; dropped ones in {output}.dropped.jsonl")
    raise typer.Exit(code)


def _dedup_settings(
    method: str, threshold: float, ngram: int, embedding_threshold: float, min_chars: int, seed: int
) -> DedupSettings:
    from caitool.cli._common import check_choice
    from caitool.errors import UsageError
    from caitool.evaluation.red_team import DedupSettings

    check_choice("--dedup", method, ("ngram", "embedding"))
    if not 0.0 < threshold <= 1.0 or not 0.0 < embedding_threshold <= 1.0:
        raise UsageError("--threshold and --embedding-threshold must be in (0, 1]")
    if method == "embedding":
        from caitool.evaluation.dedup import EmbeddingDeduplicator

        EmbeddingDeduplicator.check_available()  # before any model call
    return DedupSettings(
        threshold=threshold,
        ngram=ngram,
        min_chars=min_chars,
        method="embedding" if method == "embedding" else "ngram",
        embedding_threshold=embedding_threshold,
        seed=seed,
    )


def _tables(report: dict[str, Any], quiet: bool) -> None:
    if quiet:
        return
    rows = [["generated", str(report["generated"])], ["kept", str(report["kept"])]]
    rows += [[f"dropped: {k}", str(v)] for k, v in sorted(report["dropped"].items())]
    table("red-team", [("", "left"), ("prompts", "right")], rows)
    div = report["diversity"]
    g, s = div["generated_kept"], div["seeds"]

    def fmt(v: Any) -> str:
        return "-" if v is None else str(v)

    table(
        "diversity",
        [("measure", "left"), ("generated (kept)", "right"), ("seeds", "right")],
        [
            [k, fmt(g[k]), fmt(s[k])]
            for k in (
                "count",
                "distinct_1",
                "distinct_2",
                "distinct_3",
                "mean_pairwise_jaccard",
                "mean_words",
            )
        ]
        + [
            [
                "top opening",
                f"{g['top_openings'][0]['opening']!r} {g['top_openings'][0]['fraction']:.0%}"
                if g["top_openings"]
                else "-",
                f"{s['top_openings'][0]['opening']!r} {s['top_openings'][0]['fraction']:.0%}"
                if s["top_openings"]
                else "-",
            ]
        ],
    )
