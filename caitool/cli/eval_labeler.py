"""`caitool eval-labeler`: accuracy, calibration, position-flip rate and length bias of a feedback model on a
gold set. The model's probabilities come from `caitool.tasks.score_gold`; the metrics from
`caitool.evaluation.labeler_metrics`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from caitool.cli import app
from caitool.cli._options import ModelOpt, SeedOpt, data_command
from caitool.cli._report import read_rows, table, warn

if TYPE_CHECKING:
    from caitool.cli._common import ClientFlags, RunFlags
    from caitool.evaluation.gold import GoldItem
    from caitool.evaluation.labeler_metrics import ItemProbability
    from caitool.tasks.score_gold import GoldOptions


@app.command("eval-labeler")
@data_command(omit=("input", "dry_run"))  # the input is GOLD
def eval_labeler(
    ctx: typer.Context,
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
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Only the first N gold items.")] = None,
) -> None:
    """Accuracy, calibration (ECE), position-flip rate and length bias of a feedback model on a gold set.

    GOLD rows: the paper's {"prompt": "...The answer is:", "corrects": [" (B)"], "incorrects": [" (A)"]}
    (two options, or up to nine as in HarmfulnessClassification.jsonl: accuracy of the argmax and its
    calibration), or preference pairs (prompt/chosen/rejected). Probabilities come from --model (scored with
    label-pairs' answer reader, both orders), from --probs, or from `p_correct` fields in GOLD. Table on
    stderr, JSON on stdout.
    """
    from caitool.cli._common import ClientFlags, RunFlags, print_json
    from caitool.errors import UsageError
    from caitool.tasks.score_gold import GoldOptions

    run = RunFlags.from_params({**ctx.params, "input": gold})
    quiet = run.quiet
    items = _gold_items(gold, run, limit)
    if probs is not None and model is not None:
        raise UsageError("--probs and --model both give the probabilities; choose one")
    code, spec, rows = 0, None, dict[str, Any]()
    if probs is None and (model is not None or any(it.p_correct is None for it in items)):
        flags = ClientFlags.from_params(ctx.params)  # --model defaults to $CAITOOL_MODEL or local/smollm2
        spec = flags.model
        options = GoldOptions(prompt_format, one_order, votes, constitution, cot, cot_samples, seed)
        code, rows = _score_gold(items, options, flags, ctx.params, gold)
        items = _in_shard(items, run.shard, gold)
        if any(it.n_options > 2 for it in items):
            _many_option_report(items, rows, gold=gold, spec=spec, bins=bins, quiet=quiet, code=code)
    source = "probs" if probs is not None else "model" if spec else "gold"
    if source != "model":
        items = _in_shard(items, run.shard, gold)
    report = _report(
        items, _probabilities(items, source, probs, rows, output), gold, source, spec, bins, quiet
    )
    if source == "model":  # items with an answer below the option-mass threshold (see docs/records.md)
        report["untrusted_items"] = sum(1 for r in rows.values() if r.get("untrusted_answers"))
    _tables(report, quiet)
    if plot is not None:
        from caitool.console import info
        from caitool.evaluation.plot import calibration_points, draw_calibration, save

        side = save(draw_calibration(report), plot, {"bins": calibration_points(report)})
        info(f"{plot}: calibration curve (data: {side})", quiet=quiet)
    print_json(report)
    raise typer.Exit(code)


def _gold_items(gold: str, run: RunFlags, limit: int | None) -> list[GoldItem]:
    from caitool.errors import UsageError
    from caitool.evaluation.gold import parse_gold

    items: list[GoldItem] = read_rows(gold, run.on_bad_input, run.rejects, parse_gold)[:limit]
    if not items:
        raise UsageError(f"{gold}: no gold items")
    ids = [it.id for it in items]
    if len(set(ids)) != len(ids):
        raise UsageError(f"{gold}: duplicate item ids", hint="give each row a unique 'id'")
    return items


def _in_shard(items: list[GoldItem], shard: str | None, gold: str) -> list[GoldItem]:
    """--shard's share of the items: the report covers only those (`caitool merge` the shards' -o files and
    rerun without --shard for the whole set). The model run itself gets every item and keeps the shard's
    jobs, so that each shard's settings (the gold file's hash among them) match the unsharded run's."""
    from caitool.errors import UsageError
    from caitool.shards import Shard

    if shard is None:
        return items
    part = Shard.parse(shard)
    kept = [it for it in items if part.holds(it.id)]
    if not kept:
        raise UsageError(f"{gold}: no gold item falls in shard {part}")
    return kept


def _probabilities(
    items: list[GoldItem], source: str, probs: str | None, rows: dict[str, Any], output: str | None
) -> dict[str, ItemProbability]:
    """Each item's probability, by id: from --probs, from the model's rows, or from the gold rows."""
    from caitool.evaluation.gold import parse_probability, row_to_probability

    if probs is not None:
        return {p.id: p for p in read_rows(probs, "fail", None, parse_probability)}
    if source == "model":
        return {rid: row_to_probability(row, f"{output or 'scores'}:{rid}") for rid, row in rows.items()}
    return {
        it.id: it.with_probabilities(it.p_correct, it.p_correct_swapped)
        for it in items
        if it.p_correct is not None
    }


def _report(
    items: list[GoldItem],
    scored: dict[str, ItemProbability],
    gold: str,
    source: str,
    spec: str | None,
    bins: int,
    quiet: bool,
) -> dict[str, Any]:
    from caitool.errors import UsageError
    from caitool.evaluation.labeler_metrics import metrics

    table_ = [
        it.with_probabilities(scored[it.id].p_correct, scored[it.id].p_correct_swapped)
        for it in items
        if it.id in scored
    ]
    missing = len(items) - len(table_)
    if missing:
        warn(
            f"{missing} of {len(items)} gold items have no probability (not scored or not in --probs)", quiet
        )
    if not table_:
        raise UsageError("no gold item has a probability to evaluate")
    return {
        "gold": gold,
        "source": source,
        "model": spec,
        "scored": len(table_),
        "missing": missing,
        **metrics(table_, bins),
    }


def _score_gold(
    items: list[GoldItem], options: GoldOptions, flags: ClientFlags, params: dict[str, Any], gold: str
) -> tuple[int, dict[str, Any]]:
    """Score every gold item with the model through the durable runner; (exit code, rows by id)."""
    from caitool.cli._common import RunFlags, check_choice, run_then_read
    from caitool.store import read_jsonl
    from caitool.tasks.score_gold import GoldScoring

    check_choice("--prompt-format", options.prompt_format, ("auto", "completion", "chat"))
    run = RunFlags.from_params({**params, "input": gold})
    client = flags.build()
    task = GoldScoring(client, items, options)
    return run_then_read(
        task, task.jobs(), client, flags, run, suffix="", total=len(items),
        then=lambda path: {str(r["id"]): r for r in read_jsonl(path)},
    )  # fmt: skip


def _many_option_report(
    items: list[GoldItem], rows: dict[str, Any], *, gold: str, spec: str, bins: int, quiet: bool, code: int
) -> None:
    """eval-labeler on many-option items (the paper's nine-way HarmfulnessClassification): P over every
    option from the log-probs, accuracy of the argmax and its calibration. Prints and exits."""
    from caitool.cli._common import print_json
    from caitool.errors import UsageError
    from caitool.evaluation.labeler_metrics import ItemDistribution, multiclass_metrics

    if any(it.n_options <= 2 for it in items):
        raise UsageError(f"{gold}: mixes two-option and many-option items", hint="evaluate them separately")
    dists = [
        ItemDistribution(it.id, rows[it.id]["probs"], it.correct_position)
        for it in items
        if isinstance(rows.get(it.id, {}).get("probs"), dict)
    ]
    if not dists:
        raise UsageError("no gold item has a probability to evaluate")
    report: dict[str, Any] = {
        "gold": gold,
        "source": "model",
        "model": spec,
        "scored": len(dists),
        "missing": len(items) - len(dists),
    }
    report.update(multiclass_metrics(dists, bins))
    report["untrusted_items"] = sum(1 for r in rows.values() if r.get("untrusted_answers"))
    if not quiet:
        table(
            f"labeler: {spec} on {gold} ({len(dists)} items, {report['options']} options)",
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


def _tables(report: dict[str, Any], quiet: bool) -> None:
    if quiet:
        return

    def f(v: Any, pct: bool = False) -> str:
        if v is None:
            return "-"
        return f"{100 * v:.1f}%" if pct else f"{v:.4f}"

    pos, ln, cal = report["position"], report["length"], report["calibration"]
    who = report["model"] or report["source"]
    table(
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
    table(
        "calibration",
        [("confidence bin", "left"), ("n", "right"), ("mean confidence", "right"), ("accuracy", "right")],
        [
            [f"[{b['lo']:.2f}, {b['hi']:.2f})", str(b["count"]), f(b["confidence"]), f(b["accuracy"])]
            for b in cal["bins"]
            if b["count"]
        ],
    )
