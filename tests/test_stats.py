"""`caitool stats`: Goodhart monitors on a hand-made trace file with planted boilerplate, unchanged revisions,
revision-prefix junk and an empty revision (tests/data/eval/stats_traces.jsonl), and on policy samples."""

from __future__ import annotations

import json
from pathlib import Path

from caitool.evaluation.stats import Record, analyse, boilerplate, load_monitors
from tests.conftest import REPO, read_jsonl, run_cli, write_jsonl

DATA = REPO / "tests" / "data" / "eval"
TRACES = DATA / "stats_traces.jsonl"
SAMPLES = DATA / "stats_samples.jsonl"
PLANTED = "you are valid, valued, and cared for"


def test_flags_planted_boilerplate_and_unchanged_revisions() -> None:
    r = run_cli("stats", str(TRACES))
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["records"] == rep["traces"] == 8

    # Boilerplate: planted in 5 of the 8 final responses, none of the initial ones; the whole sentence found.
    top = rep["boilerplate"][0]
    assert PLANTED in top["phrase"].lower() and top["phrase"].lower().startswith("remember")
    assert top["records"] == 5 and top["fraction"] == 0.625 and top["initial_fraction"] == 0.0
    assert len(rep["boilerplate"]) == 1  # nothing else is shared by 3 records
    assert any(a["monitor"] == "boilerplate" for a in rep["alerts"])

    # Unchanged: `plate` (extra space only, no flag) and `insult` twice (flagged; one differs in case only).
    rev = rep["revisions"]
    assert rev["rounds"] == 11 and rev["unchanged"]["count"] == 3 and rev["empty"]["count"] == 1
    assert rev["records_final_equals_initial"]["count"] == 1
    assert rep["principles"]["harmful1"]["unchanged"] == 2
    assert rep["principles"]["harmful2"]["unchanged"] == 1 and rep["principles"]["harmful2"]["empty"] == 1
    assert rep["principles"]["harmful1"]["became_refusal"] == 1  # `lock`: "I can't help with ..."

    # Revision-prefix junk still in a stored revision, and one echo critique-revise stripped already.
    assert rep["prefix_junk"]["count"] == 1 and rep["prefix_junk"]["examples"][0]["id"] == "poison"
    assert rep["prefix_junk"]["echo_stripped"] == 1
    assert rep["principles"]["harmful3"]["prefix_junk"] == 1

    # Length drift: every round is recorded, revisions are longer than the initial answers here.
    by_round = rep["length"]["by_round"]
    assert [b["n"] for b in by_round] == [8, 8, 3]
    assert rep["length"]["final_over_initial"] > 1.0
    assert rep["refusal"]["initial"]["rate"] == 0.0 and rep["refusal"]["final"]["count"] == 1

    # The readable side: tables and alerts on stderr.
    assert "per principle" in r.stderr and "Remember, you are valid" in r.stderr
    assert "alert boilerplate" in r.stderr and "alert prefix_junk" in r.stderr


def test_boilerplate_needs_enough_records() -> None:
    mon = load_monitors()
    texts = [f"Answer {i} is about topic {i}. {PLANTED.capitalize()}." for i in range(2)]
    texts += [f"An unrelated reply number {i} on a different matter entirely." for i in range(6)]
    assert boilerplate(texts, [], mon) == []  # only 2 records share it: below min_records (3)
    texts[2] = f"Something else. {PLANTED}!"
    (found,) = boilerplate(texts, [], mon)
    assert found["records"] == 3 and PLANTED.replace(",", "") in found["phrase"].lower().replace(",", "")


def test_policy_samples_refusal_and_evasive_rates() -> None:
    r = run_cli("stats", str(SAMPLES))
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["samples"] == 4 and rep["traces"] == 0 and rep["principles"] == {}
    assert rep["refusal"]["final"] == {"count": 1, "n": 4, "rate": 0.25}  # s1
    assert rep["evasive"]["final"]["count"] == 1  # s2, an assistant message
    assert "initial" not in rep["refusal"]


def test_custom_monitors_file_replaces_a_table(tmp_path: Path) -> None:
    rows = [Record(str(i), "sample", "I must decline, sorry.") for i in range(3)]  # < 6 words: no boilerplate
    rows.append(Record("ok", "sample", "Sure, the answer is 42."))
    rep = analyse(rows, load_monitors())
    assert rep["refusal"]["final"]["count"] == 3
    mine = tmp_path / "mine.toml"
    mine.write_text('[refusal]\nphrases = ["the answer is"]\n[alerts]\nrefusal_rate = 0.1\n')
    rep = analyse(rows, load_monitors(str(mine)))
    assert rep["refusal"]["final"]["count"] == 1
    assert [a["monitor"] for a in rep["alerts"]] == ["refusal"]


def test_fail_on_alert_and_custom_thresholds(tmp_path: Path) -> None:
    r = run_cli("stats", str(TRACES), "--fail-on-alert", "-q")
    assert r.returncode == 3 and r.stderr == ""
    quiet = tmp_path / "quiet.toml"
    quiet.write_text(
        "[boilerplate]\nngram = 6\nmin_records = 6\n[alerts]\npreachy_rate = 1.0\nprefix_junk_rate = 1.0\n"
    )
    r = run_cli("stats", str(TRACES), "--monitors", str(quiet), "--fail-on-alert")
    assert r.returncode == 0, r.stdout
    assert json.loads(r.stdout)["boilerplate"] == []


def test_bad_trace_row_exit_2(tmp_path: Path) -> None:
    rows = read_jsonl(TRACES)[:2]
    rows[1]["rounds"][0].pop("revision")
    src = write_jsonl(tmp_path / "bad.jsonl", rows)
    r = run_cli("stats", str(src))
    assert r.returncode == 2 and f"{src}:2" in r.stderr and "revision" in r.stderr
    bad_monitors = tmp_path / "m.toml"
    bad_monitors.write_text("[revision_prefix]\npatterns = ['(unclosed']\n")
    r = run_cli("stats", str(TRACES), "--monitors", str(bad_monitors))
    assert r.returncode == 2 and "regular expression" in r.stderr
