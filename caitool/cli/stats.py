"""`caitool stats`: per-principle statistics and Goodhart monitors (`caitool.evaluation.stats`)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from caitool.cli import app
from caitool.cli._options import InputArg, OnBadInputOpt, QuietOpt, RejectsOpt
from caitool.cli._report import read_rows, table


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
    from caitool.errors import EXIT_PARTIAL
    from caitool.evaluation.stats import analyse, load_monitors, parse_record

    mon = load_monitors(monitors)
    records = read_rows(data, on_bad_input, rejects, partial(parse_record, field_name=field))
    report = analyse(records, mon)
    if not quiet:
        _tables(report, mon.source)
    print_json(report)
    if fail_on_alert and report["alerts"]:
        raise typer.Exit(EXIT_PARTIAL)


def _tables(report: dict[str, Any], monitors_source: str) -> None:
    from caitool.console import info

    info(
        f"stats: {report['records']} records ({report['traces']} traces, {report['samples']} samples); "
        f"monitors: {monitors_source}"
    )
    if report["principles"]:
        table(
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
    table("monitors", [("monitor", "left"), ("initial", "right"), ("final", "right")], rows)
    if report["boilerplate"]:
        table(
            "boilerplate (repeated across records)",
            [("phrase", "left"), ("records", "right"), ("final", "right"), ("initial", "right")],
            [
                [b["phrase"], str(b["records"]), _pct(b["fraction"]), _pct(b["initial_fraction"])]
                for b in report["boilerplate"]
            ],
        )
    by_round = report["length"]["by_round"]
    if by_round:
        table(
            "length by round (0 = initial)",
            [("round", "right"), ("n", "right"), ("mean chars", "right"), ("mean words", "right")],
            [[str(r["round"]), str(r["n"]), str(r["mean_chars"]), str(r["mean_words"])] for r in by_round],
        )
    for a in report["alerts"]:
        info(f"{a['monitor']}: {a['message']}", label=("alert", "bold yellow"))
    if not report["alerts"]:
        info("no alerts")
