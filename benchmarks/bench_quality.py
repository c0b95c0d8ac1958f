"""How good are the labels? `caitool eval-labeler` and `caitool label-pairs` on the paper's eval files.

Runs the real CLI (a subprocess per run, the embedded `local/smollm2` by default) on the paper repository's
`evals/438HHHEvaluations.jsonl`, `evals/HarmfulVsEthical.jsonl` and `evals/HarmfulnessClassification.jsonl`
(anthropics/ConstitutionalHarmlessnessPaper; the repository has no LICENSE, so the files are not shipped:
pass their paths), then label-pairs with and without `--both-orders` and with `--ensemble N` on preference
pairs in hh-rlhf shape (`--pairs FILE`, or built from the HHH file when not given).

Per row: accuracy, ECE, flip rate, first-seat rate (how often the option in seat (A) is chosen), length
bias, wall time, items, and the command that reproduces it. Raw reports and rows go to `--json` (rewritten
after every run, so an interrupted benchmark keeps what it measured); the table is printed as Markdown.

Rows that come from one run:
- "one order" is the first-order half of the both-orders run. eval-labeler and label-pairs seed each
  question from the item id and its order, so `--one-order` (or label-pairs without `--both-orders`) asks
  exactly these questions and gets the same probabilities; its wall time is about half the run's.
- label-pairs' flip rate: how often the label changes when the pair is given in the other order. A run
  with `--both-orders` asks both orders, so it gives the one-order label's flip rate; the both-orders
  label averages the two and cannot flip (0 by construction).

Metrics are caitool's own (`caitool.evaluation.labeler_metrics.metrics`), as in docs/evaluation.md.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import REPO, loadavg, machine

from caitool.evaluation.gold import row_to_probability, split_options, unwrap
from caitool.evaluation.labeler_metrics import ItemProbability, metrics
from caitool.inputs import Line, pair_item

CAITOOL = [sys.executable, "-m", "caitool"]


# ---------------------------------------------------------------------------------------------------------
# running the CLI


def run_cli(args: Sequence[str], log: Path) -> tuple[int, float, dict[str, Any] | None]:
    """One caitool command: (exit code, wall seconds, the JSON it printed on stdout if any)."""
    t0 = time.monotonic()
    with open(log, "wb") as err:
        proc = subprocess.run([*CAITOOL, *args], stdout=subprocess.PIPE, stderr=err, cwd=REPO, check=False)
    wall = time.monotonic() - t0
    try:
        report = json.loads(proc.stdout) if proc.stdout.strip() else None
    except json.JSONDecodeError:
        report = None
    return proc.returncode, wall, report


def shown(args: Sequence[str], paths: dict[str, str]) -> str:
    """The command as a reader reruns it: caitool ..., with the eval files under EVALS/."""
    out = []
    for a in args:
        for path, name in paths.items():
            if a == path:
                a = name
        out.append(a)
    return "caitool " + shlex.join(out)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]


# ---------------------------------------------------------------------------------------------------------
# rows


def _r(x: float | None, nd: int = 3) -> float | None:
    return None if x is None else round(x, nd)


def _side(p: float) -> float:
    return 1.0 if p > 0.5 else 0.5 if p == 0.5 else 0.0


def seat_a_choices(items: Sequence[ItemProbability], both: bool) -> list[float]:
    """Per question asked: 1 when the option in seat (A) was chosen (½ for an exact tie)."""
    out = []
    for it in items:
        out.append(_side(it.p_correct) if it.correct_position == "A" else 1.0 - _side(it.p_correct))
        if both and it.p_correct_swapped is not None:
            ps = it.p_correct_swapped  # the correct option now sits in the other seat
            out.append(_side(ps) if it.correct_position == "B" else 1.0 - _side(ps))
    return out


def two_option_rows(items: list[ItemProbability], base: dict[str, Any]) -> list[dict[str, Any]]:
    """The one-order row (first order only) and, where both orders were asked, the both-orders row."""
    first = [
        ItemProbability(it.id, it.p_correct, None, it.correct_position, it.len_correct, it.len_incorrect)
        for it in items
    ]
    full = metrics(items)
    rows = []
    one = metrics(first)
    seats = seat_a_choices(items, both=False)
    rows.append(
        {
            **base,
            "mode": base["mode"] + ", one order",
            "items": len(items),
            "accuracy": _r(one["accuracy"]),
            "ece": _r(one["calibration"]["ece"]),
            "flip_rate": _r(full["position"]["flip_rate"]),  # this label's change when the seats swap
            "first_seat_rate": _r(sum(seats) / len(seats)) if seats else None,
            "mean_p_first_seat": _r(one["position"]["first_position_rate"]),
            "gold_first_seat_rate": _r(sum(it.correct_position == "A" for it in items) / len(items)),
            "length_bias": _r(one["length"]["length_bias"]),
            "gold_longer_rate": _r(one["length"]["gold_longer_rate"]),
        }
    )
    both = [it for it in items if it.p_correct_swapped is not None]
    if both:
        mean = [
            ItemProbability(
                it.id,
                (it.p_correct + it.p_correct_swapped) / 2,
                None,
                it.correct_position,
                it.len_correct,
                it.len_incorrect,
            )
            for it in both
            if it.p_correct_swapped is not None
        ]
        avg = metrics(mean)
        seats = seat_a_choices(both, both=True)
        rows.append(
            {
                **base,
                "mode": base["mode"] + ", both orders",
                "items": len(both),
                "accuracy": _r(avg["accuracy"]),
                "ece": _r(avg["calibration"]["ece"]),
                "flip_rate": 0.0,  # the averaged label is the same whichever order comes first
                "first_seat_rate": _r(sum(seats) / len(seats)),  # per question asked, both orders
                "mean_p_first_seat": _r(full["position"]["first_position_rate"]),
                "gold_first_seat_rate": 0.5,
                "length_bias": _r(avg["length"]["length_bias"]),
                "gold_longer_rate": _r(avg["length"]["gold_longer_rate"]),
            }
        )
    return rows


def nine_way_row(
    rows: list[dict[str, Any]], report: dict[str, Any] | None, base: dict[str, Any]
) -> dict[str, Any]:
    chosen_a = [1.0 if r.get("choice") == "A" else 0.0 for r in rows]
    return {
        **base,
        "items": len(rows),
        "accuracy": _r(report.get("accuracy")) if report else None,
        "ece": _r((report.get("calibration") or {}).get("ece")) if report else None,
        "flip_rate": None,  # one order: the nine options are not permuted
        "first_seat_rate": _r(sum(chosen_a) / len(chosen_a)) if chosen_a else None,
        "mean_p_first_seat": _r(sum(r["probs"]["A"] for r in rows) / len(rows)) if rows else None,
        "gold_first_seat_rate": _r(sum(r["correct_position"] == "A" for r in rows) / len(rows))
        if rows
        else None,
        "length_bias": None,
        "chance_accuracy": round(1 / 9, 3),
    }


# ---------------------------------------------------------------------------------------------------------
# preference pairs


def hhh_to_hh_rlhf(hhh: Path, out: Path) -> int:
    """The 438 HHH items as hh-rlhf rows: {chosen, rejected} transcripts, chosen = the correct option."""
    n = 0
    with open(hhh) as fh, open(out, "w") as w:
        for line in fh:
            if not line.strip():
                continue
            d = json.loads(line)
            parts = split_options(d["prompt"])
            assert parts is not None, d["prompt"][:200]
            head, options, _ = parts
            convo = head[head.index("Human:") :].rsplit("\n\n", 1)[0].strip()  # drop the "Please choose" line
            texts = {m.strip().strip("()"): unwrap(t) for m, t in options}
            good = d["corrects"][0].strip().strip("()")
            bad = d["incorrects"][0].strip().strip("()")
            prefix = "\n\n" + convo + "\n\nAssistant: "
            w.write(json.dumps({"chosen": prefix + texts[good], "rejected": prefix + texts[bad]}) + "\n")
            n += 1
    return n


def shuffled_pairs(src: Path, out: Path, seed: int, limit: int | None) -> dict[str, str]:
    """hh-rlhf rows as label-pairs input with the chosen reply in a seeded random seat (hh-rlhf puts it
    first, which would make a seat-(A) bias look like agreement). Returns id -> gold ("a" or "b")."""
    rng = random.Random(f"bench-quality:{seed}")
    gold: dict[str, str] = {}
    with open(src) as fh, open(out, "w") as w:
        for i, line in enumerate(fh, 1):
            if limit is not None and len(gold) >= limit:
                break
            if not line.strip():
                continue
            _, item = pair_item(Line(f"{src}:{i}", json.loads(line)))
            rid = f"pair-{i}"
            a_first = rng.random() < 0.5
            a, b = (item.response_a, item.response_b) if a_first else (item.response_b, item.response_a)
            gold[rid] = "a" if a_first else "b"
            row = {
                "id": rid,
                "messages": [m.to_dict() for m in item.messages],
                "response_a": a,
                "response_b": b,
            }
            w.write(json.dumps(row) + "\n")
    return gold


def pair_items(rows: list[dict[str, Any]], gold: dict[str, str]) -> list[ItemProbability]:
    """label-pairs rows as eval items: P(correct) over the (A, B) questions and over the (B, A) ones."""
    out = []
    for row in rows:
        g = gold[row["id"]]
        by: dict[str, list[float]] = {"ab": [], "ba": []}
        for q in row["caitool"]["questions"]:
            by[q["order"]].append(q["p_a"])  # P(response_a better), whatever the seat order

        def correct(ps: list[float], g: str = g) -> float:
            p_a = sum(ps) / len(ps)
            return p_a if g == "a" else 1.0 - p_a

        la, lb = len(row["chosen"][0]["content"]), len(row["rejected"][0]["content"])
        a_is_chosen = row["caitool"]["chosen_is"] == "a"
        len_a, len_b = (la, lb) if a_is_chosen else (lb, la)
        lc, li = (len_a, len_b) if g == "a" else (len_b, len_a)
        out.append(
            ItemProbability(
                row["id"],
                correct(by["ab"]),
                correct(by["ba"]) if by["ba"] else None,
                "A" if g == "a" else "B",
                lc,
                li,
            )
        )
    return out


# ---------------------------------------------------------------------------------------------------------
# the table


COLUMNS = [
    ("file", "file"),
    ("mode", "mode"),
    ("items", "items"),
    ("accuracy", "accuracy"),
    ("ece", "ECE"),
    ("flip_rate", "flip rate"),
    ("first_seat_rate", "first seat chosen"),
    ("length_bias", "length bias"),
    ("wall_s", "wall s"),
]


def table(rows: list[dict[str, Any]]) -> str:
    def cell(v: Any) -> str:
        if v is None:
            return "–"
        if isinstance(v, float):
            return f"{v:.3f}" if abs(v) < 10 else f"{v:.0f}"
        return str(v)

    out = ["| " + " | ".join(h for _, h in COLUMNS) + " | command |", "|" + " --- |" * (len(COLUMNS) + 1)]
    for r in rows:
        out.append("| " + " | ".join(cell(r.get(k)) for k, _ in COLUMNS) + f" | `{r['command']}` |")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hhh", type=Path, help="evals/438HHHEvaluations.jsonl")
    ap.add_argument("--hve", type=Path, help="evals/HarmfulVsEthical.jsonl")
    ap.add_argument("--nine", type=Path, help="evals/HarmfulnessClassification.jsonl")
    ap.add_argument("--pairs", type=Path, help="hh-rlhf-format pairs (default: built from --hhh)")
    ap.add_argument("--model", default="local/smollm2")
    ap.add_argument("--limit", type=int, help="first N items of each eval file (default: all)")
    ap.add_argument("--cot-limit", type=int, help="first N HHH items for --cot (default: all)")
    ap.add_argument(
        "--cot5-limit", type=int, help="first N HHH items for --cot --cot-samples 5 (default: all)"
    )
    ap.add_argument("--pairs-limit", type=int, help="first N pairs for label-pairs (default: all)")
    ap.add_argument("--ensemble", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--only",
        default="hhh,hve,nine,cot,cot5,pairs,pairs-ensemble",
        help="comma-separated runs: hhh,hve,nine,cot,cot5,pairs,pairs-ensemble",
    )
    ap.add_argument("--workdir", type=Path, help="where per-item outputs go (default: a temporary folder)")
    ap.add_argument(
        "--resume",
        action="store_true",
        help="continue the outputs already in --workdir instead of starting over (a run of hours on a small "
        "CPU, stopped and restarted); wall times then cover only the last part and are reported as null",
    )
    ap.add_argument(
        "--json",
        type=Path,
        default=REPO / "benchmarks" / "results" / f"quality-{time.strftime('%Y-%m-%d')}.json",
    )
    a = ap.parse_args(argv)
    only = set(a.only.split(","))
    work = a.workdir or Path(tempfile.mkdtemp(prefix="caitool-bench-quality-"))
    work.mkdir(parents=True, exist_ok=True)
    paths = {str(p): f"EVALS/{p.name}" for p in (a.hhh, a.hve, a.nine) if p is not None}
    doc: dict[str, Any] = {"machine": machine(), "model": a.model, "runs": [], "rows": []}

    def save() -> None:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        tmp = a.json.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=1) + "\n")
        os.replace(tmp, a.json)

    restart = [] if a.resume else ["--overwrite"]

    def limit_args(n: int | None) -> list[str]:
        return ["--limit", str(n)] if n else []

    def eval_run(name: str, gold: Path, extra: list[str], limit: int | None, mode: str) -> None:
        out = work / f"{name}.jsonl"
        args = ["eval-labeler", str(gold), "-m", a.model, "--seed", str(a.seed), *extra, *limit_args(limit)]
        load = loadavg()
        print(f"[{name}] {shown(args, paths)}  (load {load})", file=sys.stderr, flush=True)
        rc, wall, report = run_cli([*args, "-o", str(out), *restart, "-q"], work / f"{name}.log")
        wall_s = None if a.resume else round(wall, 1)
        rows = read_jsonl(out) if out.exists() else []
        run = {
            "name": name,
            "command": shown(args, paths),
            "rc": rc,
            "wall_s": wall_s,
            "load_before": load,
            "report": report,
            "scored": len(rows),
        }
        doc["runs"].append(run)
        calls = sum(r.get("usage", {}).get("calls", 0) for r in rows)
        base = {
            "file": gold.name,
            "mode": mode,
            "run": name,
            "wall_s": wall_s,
            "calls": calls,
            "command": shown(args, paths),
            "rc": rc,
            "untrusted_items": sum(1 for r in rows if r.get("untrusted_answers")),
        }
        if name == "nine":
            doc["rows"].append(nine_way_row(rows, report, base))
        else:
            items = [row_to_probability(r, f"{out}:{i}") for i, r in enumerate(rows, 1)]
            if items:
                new = two_option_rows(items, base)
                if "--one-order" not in extra and len(new) == 2:
                    new[0]["command"] = shown([*args, "--one-order"], paths)
                    new[0]["wall_s"] = None  # asked inside the both-orders run
                doc["rows"].extend(new)
        save()
        print(f"[{name}] rc {rc}, {len(rows)} items, {wall:.0f} s", file=sys.stderr, flush=True)

    def pairs_run(name: str, pairs_in: Path, gold: dict[str, str], extra: list[str], mode: str) -> None:
        out = work / f"{name}.jsonl"
        args = ["label-pairs", "PAIRS.jsonl", "-m", a.model, "--seed", str(a.seed), "--both-orders", *extra]
        load = loadavg()
        print(f"[{name}] {shown(args, paths)}  (load {load})", file=sys.stderr, flush=True)
        real = [str(pairs_in) if x == "PAIRS.jsonl" else x for x in args]
        rc, wall, _ = run_cli([*real, "-o", str(out), *restart, "-q"], work / f"{name}.log")
        wall_s = None if a.resume else round(wall, 1)
        rows = read_jsonl(out) if out.exists() else []
        doc["runs"].append(
            {
                "name": name,
                "command": shown(args, paths),
                "rc": rc,
                "wall_s": wall_s,
                "load_before": load,
                "scored": len(rows),
                "pairs": str(a.pairs or "built from HHH"),
            }
        )
        items = pair_items(rows, gold)
        calls = sum(r["caitool"]["usage"].get("calls", 0) for r in rows)
        base = {
            "file": "pairs",
            "mode": mode,
            "run": name,
            "wall_s": wall_s,
            "calls": calls,
            "command": shown(args, paths),
            "rc": rc,
            "untrusted_items": None,
        }
        if items:
            new = two_option_rows(items, base)
            new[0]["command"] = shown([x for x in args if x != "--both-orders"], paths)
            new[0]["wall_s"] = None
            doc["rows"].extend(new)
        save()
        print(f"[{name}] rc {rc}, {len(rows)} pairs, {wall:.0f} s", file=sys.stderr, flush=True)

    if a.hhh and "hhh" in only:
        eval_run("hhh", a.hhh, [], a.limit, "plain")
    if a.hve and "hve" in only:
        eval_run("hve", a.hve, [], a.limit, "plain")
    if a.nine and "nine" in only:
        eval_run("nine", a.nine, [], a.limit, "plain, nine options")
    if a.hhh and "cot" in only:
        eval_run("cot", a.hhh, ["--cot", "--one-order"], a.cot_limit, "CoT")
    if a.hhh and "cot5" in only:
        eval_run("cot5", a.hhh, ["--cot", "--cot-samples", "5", "--one-order"], a.cot5_limit, "CoT×5")
    if only & {"pairs", "pairs-ensemble"} and (a.pairs or a.hhh):
        src = a.pairs
        if src is None:
            src = work / "hhh-as-hh-rlhf.jsonl"
            hhh_to_hh_rlhf(a.hhh, src)
        pairs_in = work / "pairs-shuffled.jsonl"
        gold = shuffled_pairs(src, pairs_in, a.seed, a.pairs_limit)
        doc["pairs"] = {
            "source": str(a.pairs) if a.pairs else "the HHH items as hh-rlhf pairs",
            "items": len(gold),
            "chosen_in_seat_a": sum(g == "a" for g in gold.values()),
        }
        if "pairs" in only:
            pairs_run("pairs", pairs_in, gold, [], "label-pairs")
        if "pairs-ensemble" in only:
            pairs_run(
                "pairs-ensemble",
                pairs_in,
                gold,
                ["--ensemble", str(a.ensemble)],
                f"label-pairs --ensemble {a.ensemble}",
            )
    print(table(doc["rows"]))
    print(f"\nraw: {a.json}; per-item outputs: {work}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
