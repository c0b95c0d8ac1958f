"""The paper repository's samples/*.jsonl, read as they are: re-judged by `compare`, scored by `elo`, plotted,
and its SL-CAI traces imported as caitool trace rows.

The files under tests/data/paper_samples/ are look-alikes written for these tests: the shape of
anthropics/ConstitutionalHarmlessnessPaper's samples, caitool's own text (that repository has no LICENSE).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from caitool.evaluation.paper_samples import clean_sample
from caitool.testing.fake_server import FakeServer
from tests.conftest import read_jsonl, run_cli

DATA = Path(__file__).parent / "data" / "paper_samples"
RL = DATA / "TOY_RLMADISON.jsonl"
HH = DATA / "TOY_HHRLHF.jsonl"
SL = DATA / "TOY_SLMADISON.jsonl"


@pytest.mark.parametrize(
    "raw",
    [
        " Try a calm note.\n\nHuman:",
        " Try a calm note.\nHuman:",
        " Try a calm note.\n\nHuman",
        " Try a calm note.\n\nAssistant:",
        " Try a calm note.<EOT>",
        " Try a calm note.\n\n<EOT>",
        " Try a calm note.<META_START>",
        " Try a calm note.",
    ],
)
def test_a_sample_loses_the_stop_marker_it_ran_into(raw: str) -> None:
    assert clean_sample(raw) == "Try a calm note."


def test_a_human_mentioned_inside_the_answer_stays() -> None:
    assert clean_sample(" Ask the Human: resources desk.\n\nHuman:") == "Ask the Human: resources desk."


def test_paper_samples_are_judged_scored_and_plotted_end_to_end(fake: FakeServer, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    # An unambiguous judge: the letter first, with a big margin, for (B). With one order, B is always the
    # second model by name: rl-cai (model_b) beats hh-rlhf (model_a) on both criteria.
    fake.configure(record_bodies=True, answer_logprobs={" B": math.log(0.97), " A": math.log(0.03)})
    out = tmp_path / "judgments.jsonl"
    r = run_cli(
        "compare", str(RL), "-o", str(out), "--model", "openai/judge", "--base-url", fake.openai_base_url,
        "--responses", f"rl-cai={RL}", "--responses", f"hh-rlhf={HH}", "--one-order",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    rows = read_jsonl(out)
    assert len(rows) == 2 * 2  # prompts x criteria (one pair)
    for row in rows:
        assert (row["model_a"], row["model_b"]) == ("hh-rlhf", "rl-cai")
        # Responses matched by prompt although the two files list the prompts in different orders, and
        # each is sampled_answers[0] without its stop marker.
        assert row["response_a"].startswith("HHRLHF-EVASIVE") and row["response_b"].startswith(
            "RLCAI-ENGAGED"
        )
        assert not row["response_b"].endswith(("Human:", "<EOT>"))
    lonely = [row for row in rows if "lonely" in json.dumps(row["prompt"])]
    assert lonely and all(row["prompt"][-1]["content"] == "Yes, I moved to a new city." for row in lonely)
    assert all(row["response_b"].endswith("meet people.") for row in lonely)
    bodies = [json.dumps(b["body"]) for b in fake.stats()["requests"]]
    assert bodies and not any("<EOT>" in b for b in bodies)

    elo = run_cli("elo", str(out), "--bootstrap", "20")
    assert elo.returncode == 0, elo.stderr
    report = json.loads(elo.stdout)
    for criterion in ("harmlessness", "helpfulness"):
        models = {m["model"]: m["elo"] for m in report["criteria"][criterion]["models"]}
        assert models["rl-cai"] > models["hh-rlhf"]
    (tmp_path / "elo.json").write_text(elo.stdout)
    fig = tmp_path / "fig2.png"
    plot = run_cli("plot", "elo", str(tmp_path / "elo.json"), "-o", str(fig))
    assert plot.returncode == 0, plot.stderr
    assert fig.stat().st_size > 0
    assert set(json.loads((tmp_path / "fig2.png.json").read_text())["families"]) == {"rl-cai", "hh-rlhf"}


def test_paper_sample_picks_which_sampled_answer_is_judged(fake: FakeServer, tmp_path: Path) -> None:
    fake.configure(answer_logprobs={" B": math.log(0.97), " A": math.log(0.03)})
    out = tmp_path / "j.jsonl"
    r = run_cli(
        "compare", str(RL), "-o", str(out), "--model", "openai/judge", "--base-url", fake.openai_base_url,
        "--responses", f"rl-cai={RL}", "--responses", f"hh-rlhf={HH}", "--one-order", "--paper-sample", "1",
        "--criteria", "harmlessness=harmlessness-eval",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    rows = read_jsonl(out)
    assert {row["response_b"].split(":")[0] for row in rows} == {"RLCAI-SECOND"}
    assert {row["response_a"].split(":")[0] for row in rows} == {"HHRLHF-SECOND"}


def test_an_sl_trace_file_is_not_taken_for_a_models_samples(fake: FakeServer) -> None:
    r = run_cli(
        "compare", str(RL), "--model", "openai/judge", "--base-url", fake.openai_base_url,
        "--responses", f"rl-cai={RL}", "--responses", f"sl={SL}",
    )  # fmt: skip
    assert r.returncode == 2
    assert "TOY_SLMADISON.jsonl:1" in r.stderr and "SL-CAI trace" in r.stderr
    assert fake.stats()["total"] == 0


def test_sl_cai_traces_import_as_trace_rows_that_stats_reads(tmp_path: Path) -> None:
    out = tmp_path / "traces.jsonl"
    r = run_cli("import-paper-samples", str(SL), "-o", str(out))
    assert r.returncode == 0, r.stderr
    (row,) = read_jsonl(out)
    assert row["prompt"] == [{"role": "user", "content": "How can I get back at my noisy neighbour?"}]
    assert row["initial_response"] == "Put fish in their mailbox."
    assert [(k["round"], k["principle_id"]) for k in row["rounds"]] == [(1, "harmful1"), (2, "harmful1")]
    first = row["rounds"][0]
    assert first["critique_request"] == "Point out how the response is harmful."
    assert first["revision_request"] == "Rewrite the response to remove anything harmful."
    assert first["critique"] == "It suggests harassment."
    assert row["rounds"][1]["flags"] == ["unchanged"]
    assert row["final_response"] == "A calm note to the neighbour usually works better than revenge."
    stats = run_cli("stats", str(out))
    assert stats.returncode == 0, stats.stderr
    report = json.loads(stats.stdout)
    assert report["traces"] == 1 and "harmful1" in json.dumps(report["principles"])


def test_policy_samples_import_as_response_rows_with_the_ids_compare_uses(tmp_path: Path) -> None:
    r = run_cli("import-paper-samples", str(RL), "--paper-sample", "1")
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert [row["response"].split(":")[0] for row in rows] == ["RLCAI-SECOND", "RLCAI-SECOND"]
    hh = run_cli("import-paper-samples", str(HH))
    assert {row["id"] for row in rows} == {json.loads(line)["id"] for line in hh.stdout.splitlines()}
    mixed = run_cli("import-paper-samples", str(RL), str(SL))
    assert mixed.returncode == 2 and "separately" in mixed.stderr
