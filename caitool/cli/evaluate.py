"""Evaluation commands: `elo`, `plot elo`, `plot calibration`, `stats`, `red-team`, `eval-labeler`.

Each prints a readable table on stderr and its JSON result on stdout (or writes files); the formats are in
docs/evaluation.md. Libraries (matplotlib, the model SDKs) are imported inside the command bodies.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import typer

from caitool.cli import app
from caitool.cli._options import (
    ApiKeyOpt,
    BaseUrlOpt,
    ConcurrencyOpt,
    ErrorsOpt,
    InputArg,
    ModelOpt,
    OnBadInputOpt,
    OverwriteOpt,
    PriceOpt,
    QuietOpt,
    RejectsOpt,
    RetriesOpt,
    RpmOpt,
    SeedOpt,
    TimeoutOpt,
    TpmOpt,
)

plot_app = typer.Typer(
    help="Figures from evaluation results (matplotlib, the `plot` extra): Elo vs Elo, calibration.",
    no_args_is_help=True,
)
app.add_typer(plot_app, name="plot")


def _table(title: str, columns: list[tuple[str, str]], rows: list[list[str]], quiet: bool = False) -> None:
    """A Rich table on stderr. `columns`: (header, justify)."""
    if quiet:
        return
    from rich.table import Table
    from rich.text import Text

    from caitool.console import err_console

    # Cells hold model names, ids and phrases: Text, so that they are never read as Rich markup.
    table = Table(title=Text(title), title_justify="left", show_edge=False, pad_edge=False)
    for header, justify in columns:
        table.add_column(Text(header), justify=justify)  # type: ignore[arg-type]
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))
    err_console().print(table)


def _warn(message: str, quiet: bool = False) -> None:
    from caitool.console import warn

    warn(message, quiet=quiet)


def _read_rows(path: str, on_bad_input: str, rejects: str | None, parse: Any) -> list[Any]:
    """Every line of `path` through `parse` (Line -> item), with the bad-input policy (fail or skip)."""
    from caitool.cli._common import BadInputPolicy, lines_to_jobs
    from caitool.runner import RunCounts

    policy = BadInputPolicy(on_bad_input, rejects, None, RunCounts())
    return list(lines_to_jobs(path, policy, lambda line: [parse(line)]))


# ---------------------------------------------------------------------------------------------------------
# elo


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
    rows = _read_rows(judgments, on_bad_input, rejects, parse_judgment)
    if source:
        rows = [j for j in rows if j.source in source]
    if criterion:
        rows = [j for j in rows if j.criterion in criterion]
    if not rows:
        raise UsageError("no judgments left to score", hint="check --criterion / --source")
    results = fit_all(rows, settings)
    for name, r in results.items():
        if len(r.components) > 1:
            _warn(
                f"{name}: the models fall into {len(r.components)} groups never compared with each other; "
                "Elo across groups rests on the prior only",
                quiet,
            )
        if not r.converged:
            _warn(f"{name}: the fit did not converge in {r.iterations} steps", quiet)
        pct = f"{round(100 * ci)}%"
        _table(
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
    print_json(report(results, settings))


# ---------------------------------------------------------------------------------------------------------
# plot


def _read_json_document(path: str, what: str) -> dict[str, Any]:
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
    data = elo_points(_read_json_document(report, "a `caitool elo` report"), x=x, y=y)
    for criterion, models in data.missing.items():
        _warn(f"not scored on {criterion}, left out: {', '.join(models)}", quiet)
    if not data.families:
        _warn(f"no model is scored on both {x} and {y}: the figure is empty", quiet)
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
    doc = _read_json_document(report, "a `caitool eval-labeler` report")
    side = save(draw_calibration(doc, title=title), output, {"bins": calibration_points(doc)})
    info(f"{output}: calibration curve (data: {side})", quiet=quiet)


# ---------------------------------------------------------------------------------------------------------
# stats


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{100 * rate:.0f}%"


@app.command("stats")
def stats(
    data: InputArg = "-",
    field: Annotated[
        str | None,
        typer.Option("--field", help="Field with the response of a policy sample (text or messages)."),
    ] = None,
    monitors: Annotated[
        str | None,
        typer.Option(
            "--monitors", help="TOML file of phrase lists and thresholds (see prompts/monitors.toml)."
        ),
    ] = None,
    fail_on_alert: Annotated[
        bool, typer.Option("--fail-on-alert", help="Exit 3 when any monitor raises an alert.")
    ] = False,
    on_bad_input: OnBadInputOpt = "fail",
    rejects: RejectsOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Per-principle statistics and Goodhart monitors over critique-revise traces or policy samples.

    Refusal / evasive / preachy rates, boilerplate phrases repeated across records, unchanged revisions,
    revision-prefix junk, length drift across rounds. Tables on stderr, JSON on stdout.
    """
    from functools import partial

    from caitool.cli._common import print_json
    from caitool.console import info
    from caitool.errors import EXIT_PARTIAL
    from caitool.evaluation.stats import analyse, load_monitors, parse_record

    mon = load_monitors(monitors)
    records = _read_rows(data, on_bad_input, rejects, partial(parse_record, field_name=field))
    report = analyse(records, mon)
    if not quiet:
        info(
            f"stats: {report['records']} records ({report['traces']} traces, {report['samples']} samples); "
            f"monitors: {mon.source}"
        )
        if report["principles"]:
            _table(
                "per principle",
                [
                    (h, "left" if h == "principle" else "right")
                    for h in (
                        "principle",
                        "rounds",
                        "changed",
                        "unchanged",
                        "empty",
                        "Δ chars",
                        "junk",
                        "→ refusal",
                    )
                ],
                [
                    [
                        pid,
                        str(s["rounds"]),
                        _pct(s["changed_rate"]),
                        _pct(s["unchanged_rate"]),
                        str(s["empty"]),
                        f"{s['mean_length_change_chars']:+.0f}",
                        str(s["prefix_junk"]),
                        str(s["became_refusal"]),
                    ]
                    for pid, s in report["principles"].items()
                ],
            )
        rows = []
        for name in ("refusal", "evasive", "preachy"):
            r = report[name]
            rows.append([name, _pct(r.get("initial", {}).get("rate")), _pct(r["final"]["rate"])])
        rev = report["revisions"]
        if rev["rounds"]:
            rows.append(["unchanged revisions", "", _pct(rev["unchanged"]["rate"])])
            rows.append(["empty revisions", "", _pct(rev["empty"]["rate"])])
            rows.append(["final = initial", "", _pct(rev["records_final_equals_initial"]["rate"])])
            rows.append(["revision-prefix junk", "", _pct(report["prefix_junk"]["rate"])])
            rows.append(["echo stripped by critique-revise", "", str(report["prefix_junk"]["echo_stripped"])])
        _table("monitors", [("monitor", "left"), ("initial", "right"), ("final", "right")], rows)
        if report["boilerplate"]:
            _table(
                "boilerplate (repeated across records)",
                [("phrase", "left"), ("records", "right"), ("final", "right"), ("initial", "right")],
                [
                    [b["phrase"], str(b["records"]), _pct(b["fraction"]), _pct(b["initial_fraction"])]
                    for b in report["boilerplate"]
                ],
            )
        by_round = report["length"]["by_round"]
        if by_round:
            _table(
                "length by round (0 = initial)",
                [("round", "right"), ("n", "right"), ("mean chars", "right"), ("mean words", "right")],
                [
                    [str(r["round"]), str(r["n"]), str(r["mean_chars"]), str(r["mean_words"])]
                    for r in by_round
                ],
            )
        for a in report["alerts"]:
            info(f"{a['monitor']}: {a['message']}", label=("alert", "bold yellow"))
        if not report["alerts"]:
            info("no alerts")
    print_json(report)
    if fail_on_alert and report["alerts"]:
        raise typer.Exit(EXIT_PARTIAL)


# ---------------------------------------------------------------------------------------------------------
# red-team


@app.command("red-team")
def red_team(
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
    base_url: BaseUrlOpt = None,
    api_key: ApiKeyOpt = None,
    concurrency: ConcurrencyOpt = None,
    rpm: RpmOpt = None,
    tpm: TpmOpt = None,
    timeout: TimeoutOpt = 120.0,
    retries: RetriesOpt = 6,
    errors: ErrorsOpt = None,
    on_bad_input: OnBadInputOpt = "fail",
    rejects: RejectsOpt = None,
    price: PriceOpt = None,
    overwrite: OverwriteOpt = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the first request; no calls.")] = False,
    quiet: QuietOpt = False,
) -> None:
    """New red-team prompts by few-shot prompting a model with seed prompts, with exact and near-duplicate
    removal and a diversity report (the paper's model-generated red-team prompts).

    With -o OUT: generations go to OUT.raw.jsonl (durable: rerun to resume, or with a larger -n to add
    more), the kept prompts to OUT, the dropped ones with their reason to OUT.dropped.jsonl and the report
    to OUT.report.json. Rerunning with other --threshold/--dedup settings re-filters without model calls.
    """
    import json
    import tempfile
    from pathlib import Path

    from caitool.cli._common import build_client, check_choice, default_concurrency, parse_price
    from caitool.console import info
    from caitool.errors import EXIT_INTERRUPTED, ConsumerGone, UsageError
    from caitool.evaluation.red_team import (
        DedupSettings,
        RedTeamGenerator,
        deduplicate,
        draw_shots,
        load_red_team_templates,
        parse_seed,
        render_request,
        request_id,
    )
    from caitool.evaluation.stats import load_monitors
    from caitool.pipeline import RunSpec, execute
    from caitool.pricing import price_for
    from caitool.prompts import content_hash
    from caitool.providers import default_model
    from caitool.providers.base import GenerateParams
    from caitool.runner import Job
    from caitool.store import dumps, read_jsonl, write_jsonl_atomic

    spec = model or default_model()
    fmt: Literal["chat", "completion"] = "chat" if prompt_format == "chat" else "completion"
    check_choice("--prompt-format", prompt_format, ("chat", "completion"))
    check_choice("--dedup", dedup, ("ngram", "embedding"))
    if not 0.0 < threshold <= 1.0 or not 0.0 < embedding_threshold <= 1.0:
        raise UsageError("--threshold and --embedding-threshold must be in (0, 1]")
    if dedup == "embedding":
        from caitool.evaluation.dedup import EmbeddingDeduplicator

        EmbeddingDeduplicator.check_available()  # before any model call
    templates = load_red_team_templates(template or "red_team")
    seed_list = _read_rows(seeds, on_bad_input, rejects, lambda line: parse_seed(line, field))
    if not seed_list:
        raise UsageError(f"{seeds}: no seed prompts")
    if len(seed_list) < shots:
        _warn(f"only {len(seed_list)} seed prompts: each request shows all of them", quiet)
    params = GenerateParams(temperature=temperature, max_tokens=max_tokens, top_p=top_p)
    dedup_settings = DedupSettings(
        threshold=threshold,
        ngram=ngram,
        min_chars=min_chars,
        method="embedding" if dedup == "embedding" else "ngram",
        embedding_threshold=embedding_threshold,
        seed=seed,
    )

    if dry_run:
        rid = request_id(0)
        shots_used = draw_shots(seed_list, shots, seed, rid)
        request = render_request(templates, shots_used, fmt)
        print(f"===== {rid} [{prompt_format}]: seeds {', '.join(s.id for s in shots_used)} =====")
        if isinstance(request, str):
            print(request)
        else:
            for m in request:
                print(json.dumps(m.to_dict(), ensure_ascii=False))
        return

    client = build_client(
        spec, base_url=base_url, api_key=api_key, timeout=timeout, retries=retries, rpm=rpm, tpm=tpm
    )
    if prompt_format == "completion" and not client.supports_completions:
        raise UsageError(f"{spec} has no raw-completion endpoint", hint="use --prompt-format chat")
    tmpdir = None
    if output in (None, "-"):
        tmpdir = tempfile.TemporaryDirectory(prefix="caitool-red-team-")
        raw_path = str(Path(tmpdir.name) / "raw.jsonl")
    else:
        raw_path = output + ".raw.jsonl"
    run = RunSpec(
        command="red-team",
        input=seeds,
        output=raw_path,
        errors=errors,
        settings={
            "model": spec,
            "base_url": base_url,
            "seed": seed,
            "shots": shots,
            "prompt_format": prompt_format,
            "params": params.fingerprint(),
            "templates_sha256": templates.sha256,
            "seeds_sha256": content_hash([[s.id, s.text] for s in seed_list]),
        },
        concurrency=default_concurrency(spec, concurrency),
        quiet=quiet,
        overwrite=overwrite,
        total=n,
        extra_manifest={"templates_source": templates.source, "n": n},
    )
    price_ = price_for(spec, parse_price(price))
    jobs = (Job(request_id(i), f"request {i}", i) for i in range(n))

    def make_process(store: Any) -> Any:
        gen = RedTeamGenerator(
            client,
            seed_list,
            templates,
            shots=shots,
            seed=seed,
            params=params,
            prompt_format=fmt,
        )

        async def process(job: Job[int]) -> list[dict[str, Any]]:
            row = await gen.run(job)
            row["caitool"] = {"model": spec, "seed": seed}
            return [row]

        return process

    try:
        code = execute(run, jobs, make_process, [client], price=price_)
        if code == EXIT_INTERRUPTED:
            raise typer.Exit(code)
        wanted = {request_id(i) for i in range(n)}
        rows = [r for r in read_jsonl(raw_path) if r.get("id") in wanted]
        refusals = () if keep_refusals else load_monitors().refusal
        kept, dropped, report = deduplicate(rows, seed_list, dedup_settings, refusals)
    finally:
        if tmpdir is not None:
            tmpdir.cleanup()
    report["model"] = spec
    out_rows = [
        {
            "id": r["id"],
            "prompt": r["prompt"],
            "seed_ids": r.get("seed_ids", []),
            "caitool": r.get("caitool", {}),
        }
        for r in kept
    ]
    if output in (None, "-"):
        try:
            for r in out_rows:
                print(dumps(r), flush=True)
        except BrokenPipeError:
            raise ConsumerGone("output closed by the reader") from None
    else:
        write_jsonl_atomic(output, out_rows)
        write_jsonl_atomic(output + ".dropped.jsonl", dropped)
        Path(output + ".report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    _red_team_tables(report, quiet)
    if not quiet and output not in (None, "-"):
        info(f"{output}: {report['kept']} prompts; dropped ones in {output}.dropped.jsonl")
    raise typer.Exit(code)


def _red_team_tables(report: dict[str, Any], quiet: bool) -> None:
    if quiet:
        return
    rows = [["generated", str(report["generated"])], ["kept", str(report["kept"])]]
    rows += [[f"dropped: {k}", str(v)] for k, v in sorted(report["dropped"].items())]
    _table("red-team", [("", "left"), ("prompts", "right")], rows)
    div = report["diversity"]
    g, s = div["generated_kept"], div["seeds"]

    def fmt(v: Any) -> str:
        return "-" if v is None else str(v)

    _table(
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


# ---------------------------------------------------------------------------------------------------------
# eval-labeler


@app.command("eval-labeler")
def eval_labeler(
    gold: Annotated[
        str, typer.Argument(help="Gold set (JSONL): the paper's eval format or preference pairs.")
    ],
    probs: Annotated[
        str | None,
        typer.Option(
            "--probs", help="Precomputed probabilities (JSONL: id, p_correct[, p_correct_swapped]); no model."
        ),
    ] = None,
    model: ModelOpt = None,
    output: Annotated[
        str | None,
        typer.Option(
            "--output", "-o", help="Per-item probabilities (JSONL, resumable; readable by --probs)."
        ),
    ] = None,
    one_order: Annotated[
        bool,
        typer.Option("--one-order", help="Ask each item once, without swapping the options (no flip rate)."),
    ] = False,
    prompt_format: Annotated[
        str,
        typer.Option(
            "--prompt-format",
            help="auto, completion or chat (paper-format items); pairs use label-pairs' auto choice.",
        ),
    ] = "auto",
    votes: Annotated[
        int | None,
        typer.Option("--votes", min=1, help="P(A) from K sampled answers (default 5 where no log-probs)."),
    ] = None,
    constitution: Annotated[
        str | None, typer.Option("--constitution", help="Comparison principles for preference pairs.")
    ] = None,
    cot: Annotated[
        bool, typer.Option("--cot", help="Chain of thought first (the paper's CoT format), then the answer.")
    ] = False,
    cot_samples: Annotated[
        int, typer.Option("--cot-samples", min=1, help="Chains of thought averaged per question (paper: 5).")
    ] = 1,
    bins: Annotated[int, typer.Option("--bins", min=1, help="Calibration bins over [0.5, 1].")] = 10,
    plot: Annotated[
        str | None, typer.Option("--plot", help="Also draw the calibration curve (.png/.svg/.pdf).")
    ] = None,
    seed: SeedOpt = 0,
    base_url: BaseUrlOpt = None,
    api_key: ApiKeyOpt = None,
    concurrency: ConcurrencyOpt = None,
    rpm: RpmOpt = None,
    tpm: TpmOpt = None,
    timeout: TimeoutOpt = 120.0,
    retries: RetriesOpt = 6,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Only the first N gold items.")] = None,
    errors: ErrorsOpt = None,
    on_bad_input: OnBadInputOpt = "fail",
    rejects: RejectsOpt = None,
    price: PriceOpt = None,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Accuracy, calibration (ECE), position-flip rate and length bias of a feedback model on a gold set.

    GOLD rows: the paper's {"prompt": "...The answer is:", "corrects": [" (B)"], "incorrects": [" (A)"]}
    (two options, or up to nine as in HarmfulnessClassification.jsonl: accuracy of the argmax and its
    calibration), or preference pairs (prompt/chosen/rejected). Probabilities come from --model (scored with
    label-pairs' answer reader, both orders), from --probs, or from `p_correct` fields in GOLD. Table on
    stderr, JSON on stdout.
    """
    from caitool.cli._common import print_json
    from caitool.errors import UsageError
    from caitool.evaluation.gold import parse_gold, parse_probability, row_to_probability
    from caitool.evaluation.labeler_metrics import ItemProbability, metrics

    items = _read_rows(gold, on_bad_input, rejects, parse_gold)
    if limit is not None:
        items = items[:limit]
    if not items:
        raise UsageError(f"{gold}: no gold items")
    ids = [it.id for it in items]
    if len(set(ids)) != len(ids):
        raise UsageError(f"{gold}: duplicate item ids", hint="give each row a unique 'id'")
    code = 0
    spec: str | None = None
    scored: dict[str, ItemProbability] = {}
    if probs is not None:
        if model is not None:
            raise UsageError("--probs and --model both give the probabilities; choose one")
        source = "probs"
        for prob in _read_rows(probs, "fail", None, parse_probability):
            scored[prob.id] = prob
    elif model is None and all(it.p_correct is not None for it in items):
        source = "gold"
    else:
        source = "model"
        from caitool.providers import default_model

        spec = model or default_model()
        code, rows = _score_gold(
            items,
            spec=spec,
            gold=gold,
            output=output,
            one_order=one_order,
            prompt_format=prompt_format,
            votes=votes,
            constitution=constitution,
            cot=cot,
            cot_samples=cot_samples,
            seed=seed,
            base_url=base_url,
            api_key=api_key,
            concurrency=concurrency,
            rpm=rpm,
            tpm=tpm,
            timeout=timeout,
            retries=retries,
            errors=errors,
            price=price,
            overwrite=overwrite,
            quiet=quiet,
        )
        many = [it for it in items if it.n_options > 2]
        if many:
            _many_option_report(items, rows, gold=gold, spec=spec, bins=bins, quiet=quiet, code=code)
        for rid, row in rows.items():
            scored[rid] = row_to_probability(row, f"{output or 'scores'}:{rid}")

    table: list[ItemProbability] = []
    missing = 0
    for it in items:
        if source == "gold":
            assert it.p_correct is not None
            table.append(it.with_probabilities(it.p_correct, it.p_correct_swapped))
        elif it.id in scored:
            s = scored[it.id]
            table.append(it.with_probabilities(s.p_correct, s.p_correct_swapped))
        else:
            missing += 1
    if missing:
        _warn(
            f"{missing} of {len(items)} gold items have no probability (not scored or not in --probs)", quiet
        )
    if not table:
        raise UsageError("no gold item has a probability to evaluate")
    report: dict[str, Any] = {
        "gold": gold,
        "source": source,
        "model": spec,
        "scored": len(table),
        "missing": missing,
        **metrics(table, bins),
    }
    if source == "model":  # items with an answer below the option-mass threshold (see docs/records.md)
        report["untrusted_items"] = sum(1 for r in rows.values() if r.get("untrusted_answers"))
    _labeler_tables(report, quiet)
    if plot is not None:
        from caitool.console import info
        from caitool.evaluation.plot import calibration_points, draw_calibration, save

        side = save(draw_calibration(report), plot, {"bins": calibration_points(report)})
        info(f"{plot}: calibration curve (data: {side})", quiet=quiet)
    print_json(report)
    raise typer.Exit(code)


def _score_gold(
    items: list[Any], *, spec: str, gold: str, output: str | None, **o: Any
) -> tuple[int, dict[str, Any]]:
    """Score every gold item with the model through the durable runner; (exit code, rows by id)."""
    import tempfile
    from pathlib import Path

    from caitool.cli._common import build_client, check_choice, default_concurrency, parse_price
    from caitool.constitution import load_constitution
    from caitool.errors import EXIT_INTERRUPTED, UsageError
    from caitool.evaluation.gold import QuestionScorer, ScoreSettings, score_pair
    from caitool.labels import LABEL_METHOD
    from caitool.pipeline import RunSpec, execute
    from caitool.pricing import price_for
    from caitool.prompts import content_hash
    from caitool.runner import Job
    from caitool.store import read_jsonl
    from caitool.tasks.label_pairs import (
        Labeler,
        LabelSettings,
        auto_mode,
        default_votes,
        load_label_templates,
    )

    check_choice("--prompt-format", o["prompt_format"], ("auto", "completion", "chat"))
    client = build_client(
        spec,
        base_url=o["base_url"],
        api_key=o["api_key"],
        timeout=o["timeout"],
        retries=o["retries"],
        rpm=o["rpm"],
        tpm=o["tpm"],
    )
    fmt = o["prompt_format"]
    if fmt == "auto":
        fmt = "completion" if client.supports_completions else "chat"
    if fmt == "completion" and not client.supports_completions:
        raise UsageError(f"{spec} has no raw-completion endpoint", hint="use --prompt-format chat")
    n_votes = default_votes(client, o["votes"])
    if n_votes and fmt != "chat":
        raise UsageError("--votes needs --prompt-format chat")
    both = not o["one_order"]
    scorer = QuestionScorer(
        client,
        ScoreSettings(
            prompt_format=fmt,
            seed=o["seed"],
            both_orders=both,
            votes=n_votes,
            cot=o["cot"],
            cot_samples=o["cot_samples"],
        ),
    )
    labeler_settings: dict[str, Any] = {}
    labeler: Any = None
    if any(it.pair is not None for it in items):
        cons = load_constitution(o["constitution"])
        templates = load_label_templates()
        mode = "chat" if n_votes else auto_mode(client)
        settings = LabelSettings(
            mode=mode,
            seed=o["seed"],
            both_orders=both,
            votes=n_votes,
            cot=o["cot"],
            cot_samples=o["cot_samples"],
        )
        labeler = Labeler(client, cons, templates, settings)
        labeler_settings = {
            "mode": mode,
            "constitution_sha256": cons.sha256,
            "templates_sha256": templates.sha256,
        }
    tmpdir = None
    if output in (None, "-"):
        tmpdir = tempfile.TemporaryDirectory(prefix="caitool-eval-labeler-")
        path = str(Path(tmpdir.name) / "scores.jsonl")
    else:
        path = output
    run = RunSpec(
        command="eval-labeler",
        input=gold,
        output=path,
        errors=o["errors"],
        settings={
            "model": spec,
            "base_url": o["base_url"],
            "seed": o["seed"],
            "both_orders": both,
            "prompt_format": fmt,
            "votes": n_votes,
            "cot": o["cot"],
            "cot_samples": o["cot_samples"] if o["cot"] else None,
            "label_method": LABEL_METHOD,
            "gold_sha256": content_hash(
                [[it.id, it.prompt, repr(it.pair), it.correct_position] for it in items]
            ),
            **labeler_settings,
        },
        concurrency=default_concurrency(spec, o["concurrency"]),
        quiet=o["quiet"],
        overwrite=o["overwrite"],
        total=len(items),
    )

    def make_process(store: Any) -> Any:
        async def process(job: Job[Any]) -> list[dict[str, Any]]:
            item = job.item
            row = await (scorer.score(item) if item.pair is None else score_pair(labeler, item))
            row["caitool"] = {"model": spec, "source": item.where}
            return [row]

        return process

    try:
        jobs = (Job(it.id, it.where, it) for it in items)
        code = execute(run, jobs, make_process, [client], price=price_for(spec, parse_price(o["price"])))
        if code == EXIT_INTERRUPTED:
            raise typer.Exit(code)
        rows = {str(r["id"]): r for r in read_jsonl(path)}
    finally:
        if tmpdir is not None:
            tmpdir.cleanup()
    return code, rows


def _many_option_report(
    items: list[Any], rows: dict[str, Any], *, gold: str, spec: str, bins: int, quiet: bool, code: int
) -> None:
    """eval-labeler on many-option items (the paper's nine-way HarmfulnessClassification): P over every
    option from the log-probs, accuracy of the argmax and its calibration. Prints and exits."""
    from caitool.cli._common import print_json
    from caitool.errors import UsageError
    from caitool.evaluation.labeler_metrics import ItemDistribution, multiclass_metrics

    if any(it.n_options <= 2 for it in items):
        raise UsageError(f"{gold}: mixes two-option and many-option items", hint="evaluate them separately")
    table = [
        ItemDistribution(it.id, rows[it.id]["probs"], it.correct_position)
        for it in items
        if isinstance(rows.get(it.id, {}).get("probs"), dict)
    ]
    if not table:
        raise UsageError("no gold item has a probability to evaluate")
    report: dict[str, Any] = {
        "gold": gold,
        "source": "model",
        "model": spec,
        "scored": len(table),
        "missing": len(items) - len(table),
    }
    report.update(multiclass_metrics(table, bins))
    report["untrusted_items"] = sum(1 for r in rows.values() if r.get("untrusted_answers"))
    if not quiet:
        _table(
            f"labeler: {spec} on {gold} ({len(table)} items, {report['options']} options)",
            [("metric", "left"), ("value", "right")],
            [
                ["accuracy (argmax)", f"{100 * report['accuracy']:.1f}%"],
                ["mean P(correct)", f"{report['mean_p_correct']:.4f}"],
                ["ECE", f"{report['calibration']['ece']:.4f}"],
                ["Brier score", f"{report['brier']:.4f}"],
            ],
        )
    print_json(report)
    raise typer.Exit(code)


def _labeler_tables(report: dict[str, Any], quiet: bool) -> None:
    if quiet:
        return

    def f(v: Any, pct: bool = False) -> str:
        if v is None:
            return "-"
        return f"{100 * v:.1f}%" if pct else f"{v:.4f}"

    pos, ln, cal = report["position"], report["length"], report["calibration"]
    who = report["model"] or report["source"]
    _table(
        f"labeler: {who} on {report['gold']} ({report['scored']} items)",
        [("metric", "left"), ("value", "right")],
        [
            ["accuracy", f(report["accuracy"], True)],
            ["accuracy, both orders averaged", f(report["accuracy_both_orders"], True)],
            ["mean P(correct)", f(report["mean_p_correct"])],
            ["ECE", f(cal["ece"])],
            ["Brier score", f(report["brier"])],
            ["position flip rate", f(pos["flip_rate"], True)],
            ["P(first option)", f(pos["first_position_rate"])],
            ["prefers the longer option", f(ln["longer_preferred_rate"], True)],
            ["gold prefers the longer option", f(ln["gold_longer_rate"], True)],
            ["length bias", f(ln["length_bias"])],
        ],
    )
    _table(
        "calibration",
        [("confidence bin", "left"), ("n", "right"), ("mean confidence", "right"), ("accuracy", "right")],
        [
            [f"[{b['lo']:.2f}, {b['hi']:.2f})", str(b["count"]), f(b["confidence"]), f(b["accuracy"])]
            for b in cal["bins"]
            if b["count"]
        ],
    )
