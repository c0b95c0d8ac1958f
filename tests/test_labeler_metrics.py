"""Labeler metrics against a toy set computed by hand (see the comments), and `eval-labeler` over precomputed
probabilities through the real CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from caitool.errors import InputError
from caitool.evaluation.gold import parse_gold, swap_options
from caitool.evaluation.labeler_metrics import ItemProbability, metrics
from caitool.inputs import Line
from tests.conftest import REPO, read_jsonl, run_cli, write_jsonl

# id, p_correct, p_correct_swapped, correct position, len(correct), len(incorrect)
TOY = [
    ItemProbability("1", 0.9, 0.85, "A", 100, 50),
    ItemProbability("2", 0.8, 0.4, "B", 40, 80),
    ItemProbability("3", 0.3, 0.2, "A", 60, 60),
    ItemProbability("4", 0.6, 0.7, "B", 90, 30),
    ItemProbability("5", 0.5, None, "A", 10, 20),
    ItemProbability("6", 0.95, 0.9, "A", 200, 100),
]


def test_toy_set_matches_hand_computation() -> None:
    m = metrics(TOY, bins=5)
    # Decisions 1, 1, 0, 1, ½ (tie), 1 → 4.5 / 6.
    assert m["accuracy"] == pytest.approx(0.75)
    # Both orders, mean p: .875, .6, .25, .65, (no swap), .925 → 1, 1, 0, 1, 1 → 4 / 5.
    assert m["accuracy_both_orders"] == pytest.approx(0.8)
    assert m["mean_p_correct"] == pytest.approx((0.9 + 0.8 + 0.3 + 0.6 + 0.5 + 0.95) / 6)
    assert m["brier"] == pytest.approx((0.01 + 0.04 + 0.49 + 0.16 + 0.25 + 0.0025) / 6)

    # Calibration, 5 bins of width 0.1 over [0.5, 1]; confidences .9 .8 .7 .6 .5 .95.
    # [.5,.6): conf .5, acc ½ → 0 | [.6,.7): .6 vs 1 → .4 | [.7,.8): .7 vs 0 → .7 | [.8,.9): .8 vs 1 → .2
    # [.9,1]: two items, mean conf .925 vs 1 → .075, weight 2/6.  ECE = (0 + .4 + .7 + .2 + 2·.075) / 6.
    cal = m["calibration"]
    assert [b["count"] for b in cal["bins"]] == [1, 1, 1, 1, 2]
    assert cal["bins"][4]["confidence"] == pytest.approx(0.925) and cal["bins"][4]["accuracy"] == 1.0
    assert cal["bins"][2]["accuracy"] == 0.0
    assert cal["ece"] == pytest.approx(1.45 / 6)

    # Position: only item 2 changes its choice when the options swap (.8 → .4): 1 of 5 items.
    pos = m["position"]
    assert pos["items_both_orders"] == 5 and pos["flip_rate"] == pytest.approx(0.2)
    # P(seat A): gold order .9 .2 .3 .4 .5 .95; swapped order .15 .4 .8 .7 .1 → 5.4 / 11.
    assert pos["first_position_rate"] == pytest.approx(5.4 / 11)

    # Length (item 3 has equal lengths): picks the longer 1, 0, 1, ½, 1 → .7; correct is longer 3/5 → .6.
    ln = m["length"]
    assert ln["items"] == 5
    assert ln["longer_preferred_rate"] == pytest.approx(0.7) and ln["gold_longer_rate"] == pytest.approx(0.6)
    assert ln["length_bias"] == pytest.approx(0.1)
    assert ln["accuracy_when_correct_longer"] == 1.0
    assert ln["accuracy_when_correct_shorter"] == pytest.approx(0.75)


def test_perfectly_calibrated_labeler_has_zero_ece() -> None:
    # 10 items at confidence .8, 8 right: accuracy equals confidence in the only bin.
    items = [ItemProbability(str(i), 0.8 if i < 8 else 0.2) for i in range(10)]
    m = metrics(items)
    assert m["accuracy"] == pytest.approx(0.8) and m["calibration"]["ece"] == pytest.approx(0.0)
    assert m["position"]["flip_rate"] is None and m["length"]["items"] == 0
    overconfident = [ItemProbability(str(i), 0.99 if i < 6 else 0.01) for i in range(10)]
    assert metrics(overconfident)["calibration"]["ece"] == pytest.approx(0.99 - 0.6)


# ---------------------------------------------------------------------------------------------------------
# eval-labeler through the CLI

GOLD = REPO / "tests" / "data" / "eval" / "gold_paper.jsonl"
PAIRS = REPO / "tests" / "data" / "eval" / "gold_pairs.jsonl"
QUESTION = (
    "\n\nHuman: {q}\n\nPlease choose the better response. Options:"
    "\n (A) [[[{a}]]]\n (B) [[[{b}]]]\n\nThe answer is:"
)
P_A = math.exp(-0.1) / (math.exp(-0.1) + math.exp(-2.4))  # what the fake judge's log-probs give option A


def paper_row(it: ItemProbability, **extra: object) -> dict[str, object]:
    """A gold row in the paper's format whose option texts have the toy item's lengths."""
    good, bad = "g" * (it.len_correct or 1), "b" * (it.len_incorrect or 1)
    a, b = (good, bad) if it.correct_position == "A" else (bad, good)
    other = "B" if it.correct_position == "A" else "A"
    return {
        "id": it.id,
        "prompt": QUESTION.format(q=f"question {it.id}", a=a, b=b),
        "corrects": [f" ({it.correct_position})"],
        "incorrects": [f" ({other})"],
        **extra,
    }


def judge(fake, *args: str):  # type: ignore[no-untyped-def]
    return run_cli("eval-labeler", *args, "--model", "openai/judge", "--base-url", fake.openai_base_url)


def test_cli_reproduces_the_hand_computed_toy_metrics(tmp_path: Path) -> None:
    rows = [paper_row(it, p_correct=it.p_correct, p_correct_swapped=it.p_correct_swapped) for it in TOY]
    src = write_jsonl(tmp_path / "gold.jsonl", rows)
    plot = tmp_path / "cal.png"
    r = run_cli("eval-labeler", str(src), "--bins", "5", "--plot", str(plot))
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["source"] == "gold" and rep["scored"] == 6
    assert rep["accuracy"] == pytest.approx(0.75) and rep["calibration"]["ece"] == pytest.approx(1.45 / 6)
    assert rep["position"]["flip_rate"] == pytest.approx(0.2)
    assert rep["length"]["length_bias"] == pytest.approx(0.1)  # lengths read from the options in the prompt
    assert "ECE" in r.stderr and "0.2417" in r.stderr
    assert plot.read_bytes().startswith(b"\x89PNG")
    assert [b["count"] for b in json.loads((tmp_path / "cal.png.json").read_text())["bins"]] == [
        1,
        1,
        1,
        1,
        2,
    ]


def test_position_biased_judge_flips_every_item(fake, tmp_path: Path) -> None:
    fake.configure(answer_logprobs={"A": -0.1, "B": -2.4})  # always (A), whatever the options
    items = tmp_path / "items.jsonl"
    r = judge(fake, str(GOLD), "-o", str(items))
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert fake.stats()["by_endpoint"] == {"/v1/completions": 8}  # 4 items x 2 orders, raw prompts
    assert rep["source"] == "model" and rep["model"] == "openai/judge"
    assert rep["accuracy"] == 0.5  # right exactly where the answer is (A)
    assert rep["position"]["flip_rate"] == 1.0
    assert rep["position"]["first_position_rate"] == pytest.approx(P_A)
    assert rep["calibration"]["ece"] == pytest.approx(P_A - 0.5)

    # The per-item file is resumable and is what --probs reads back.
    scored = read_jsonl(items)
    assert sorted(s["id"] for s in scored) == ["address", "lonely", "percent", "wasps"]
    r2 = run_cli("eval-labeler", str(GOLD), "--probs", str(items))
    again = json.loads(r2.stdout)
    assert again["source"] == "probs" and again["accuracy"] == rep["accuracy"]
    assert again["calibration"] == rep["calibration"] and again["position"] == rep["position"]
    write_jsonl(items, scored[:3])
    r3 = run_cli("eval-labeler", str(GOLD), "--probs", str(items))
    assert json.loads(r3.stdout)["missing"] == 1 and "1 of 4 gold items" in r3.stderr
    r4 = judge(fake, str(GOLD), "-o", str(tmp_path / "items.jsonl"))  # resumes: one item left to score
    assert r4.returncode == 0 and fake.stats()["by_endpoint"] == {"/v1/completions": 10}


def test_content_aware_judge_is_accurate_and_stable(fake) -> None:
    # The fake judge recognises the better answer of each item in whichever seat it sits.
    good = {}
    for row in read_jsonl(GOLD):
        seat = row["corrects"][0].strip()
        start = row["prompt"].index(f"{seat} [[[") + len(seat) + 4
        good[row["id"]] = row["prompt"][start : row["prompt"].index("]]]", start)]
    rules = []
    for text in good.values():
        rules.append({"match": f"(A) [[[{text}", "reply": "A", "answer_logprobs": {"A": -0.05, "B": -3.0}})
        rules.append({"match": f"(B) [[[{text}", "reply": "B", "answer_logprobs": {"B": -0.05, "A": -3.0}})
    fake.configure(reply_script=rules)
    r = judge(fake, str(GOLD))
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["accuracy"] == 1.0 and rep["accuracy_both_orders"] == 1.0
    assert rep["position"]["flip_rate"] == 0.0
    assert rep["position"]["first_position_rate"] == pytest.approx(0.5)
    assert rep["length"]["longer_preferred_rate"] == rep["length"]["gold_longer_rate"]


def test_preference_pairs_go_through_label_pairs(fake) -> None:
    fake.configure(answer_logprobs={"A": -0.1, "B": -2.4})
    r = judge(fake, str(PAIRS), "--one-order")
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert fake.stats()["by_endpoint"] == {"/v1/chat/completions": 3}
    # chosen is response A for two pairs, `correct: b` for the third.
    assert rep["accuracy"] == pytest.approx(2 / 3) and rep["position"]["flip_rate"] is None
    r = judge(fake, str(PAIRS))
    assert json.loads(r.stdout)["position"]["flip_rate"] == 1.0


def test_bad_gold_rows_are_named_with_file_and_line(tmp_path: Path) -> None:
    row = paper_row(TOY[0])
    for bad, message in [
        ({**row, "corrects": [" (J)"]}, "option letters"),
        ({**row, "corrects": [" (A)", " (B)"]}, "one answer"),
        ({**row, "incorrects": row["corrects"]}, "same option"),
        ({"prompt": "q", "response_a": "x", "response_b": "y"}, "correct"),
        ({**row, "p_correct": 1.5}, "p_correct"),
    ]:
        with pytest.raises(InputError, match=message) as err:
            parse_gold(Line("gold.jsonl:2", bad))
        assert str(err.value).startswith("gold.jsonl:2: ")
    src = write_jsonl(tmp_path / "bad.jsonl", [row, {**row, "corrects": [" (J)"]}])
    r = run_cli("eval-labeler", str(src), "--probs", str(src))
    assert r.returncode == 2 and f"{src}:2" in r.stderr and "option letters" in r.stderr, r.stderr


def test_swapping_the_options_of_a_paper_prompt() -> None:
    prompt = (
        "\n\nHuman: hi (A) there\n\nOptions:\n (A) [[[first]]]\n (B) [[[second\nline]]]\n\nThe answer is:"
    )
    found = swap_options(prompt)
    assert found is not None
    a, b, swapped = found
    assert (a, b) == ("first", "second\nline")
    assert (
        swapped
        == "\n\nHuman: hi (A) there\n\nOptions:\n (A) [[[second\nline]]]\n (B) [[[first]]]\n\nThe answer is:"
    )
    assert swap_options("no options here") is None


@pytest.mark.slow
def test_eval_labeler_end_to_end_on_the_embedded_model(tmp_path: Path) -> None:
    pytest.importorskip("llama_cpp")
    # No --model: the embedded default (local/smollm2) scores the raw (A)/(B) questions, both orders.
    r = run_cli("eval-labeler", str(GOLD), "-o", str(tmp_path / "items.jsonl"), timeout=300)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["model"] == "local/smollm2" and rep["scored"] == 4 and rep["missing"] == 0
    assert 0.0 <= rep["accuracy"] <= 1.0 and 0.0 <= rep["calibration"]["ece"] <= 1.0
    assert 0 <= rep["untrusted_items"] <= 4  # a 135M model may put little mass on the options
    assert rep["position"]["items_both_orders"] == 4 and rep["position"]["flip_rate"] is not None
    for row in read_jsonl(tmp_path / "items.jsonl"):
        assert 0.0 < row["p_correct"] < 1.0 and 0.0 < row["p_correct_swapped"] < 1.0
