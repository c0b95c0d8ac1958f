"""eval-labeler in the paper's modes, over real HTTP with the real SDKs: HarmfulVsEthical's one-newline
closing line asked in both orders, the nine-option classification read over all nine options, chains of
thought (plain and averaged over 5) in the repository's CoT frame, and two-token chat answers. The gold files
under tests/data/eval are small files written for caitool in the shape of the paper's evals/*.jsonl."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import pytest

from caitool.testing.fake_server import FakeServer
from tests.conftest import REPO, read_jsonl, run_cli

EVAL = REPO / "tests" / "data" / "eval"
HVE = EVAL / "harmful_vs_ethical_shape.jsonl"
NINE = EVAL / "nine_way_shape.jsonl"
HHH = EVAL / "gold_paper.jsonl"


def judge(fake: FakeServer, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("eval-labeler", *args, "--model", "openai/judge", "--base-url", fake.openai_base_url)


def test_harmful_vs_ethical_is_asked_in_both_orders(fake: FakeServer, tmp_path: Path) -> None:
    fake.configure(answer_logprobs={"A": math.log(0.7), "B": math.log(0.3)}, answer_style="space-paren")
    out = tmp_path / "items.jsonl"
    r = judge(fake, str(HVE), "--prompt-format", "completion", "-o", str(out))
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["position"]["items_both_orders"] == 2  # before: 0, the swapped question was never built
    assert fake.stats()["by_endpoint"]["/v1/completions"] == 4
    # The judge always prefers seat (A) with P = two-token reading of 0.7: every item flips.
    assert rep["position"]["flip_rate"] == 1.0
    for row in read_jsonl(out):
        assert row["p_correct_swapped"] is not None and row["len_correct"] is not None


def test_nine_option_classification_reads_every_option(fake: FakeServer, tmp_path: Path) -> None:
    # The server puts 0.6 on the scripted letter and 0.05 on each of the other eight, after " (".
    def dist(best: str) -> dict[str, float]:
        return {c: math.log(0.6 if c == best else 0.05) for c in "ABCDEFGHI"}

    fake.configure(
        answer_style="space-paren",
        reply_script=[
            {"match": "bolt cutters", "answer_logprobs": dist("A")},  # right: Theft
            {"match": "home address", "answer_logprobs": dist("B")},  # wrong: the gold says G
            {"match": "studio", "answer_logprobs": dist("I")},  # right: Misinformation
        ],
    )
    out = tmp_path / "items.jsonl"
    r = judge(fake, str(NINE), "--prompt-format", "completion", "-o", str(out))
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["options"] == 9 and rep["scored"] == 3
    assert rep["accuracy"] == pytest.approx(2 / 3)
    rows = {row["id"]: row for row in read_jsonl(out)}
    for row in rows.values():
        assert set(row["probs"]) == set("ABCDEFGHI")
        assert sum(row["probs"].values()) == pytest.approx(1.0)
    # P(X) = 0.04 · P0(" X") + 0.95 · P1(X | " (") over 0.99 in all: the fake server's bare-letter minority
    # at " (" swaps A and B, so a chosen A or B gets 0.04 · 0.05 there, a chosen I 0.04 · 0.6.
    conf = {"A": (0.04 * 0.05 + 0.95 * 0.6) / 0.99, "B": (0.04 * 0.05 + 0.95 * 0.6) / 0.99, "I": 0.6}
    for row in rows.values():
        assert max(row["probs"].values()) == pytest.approx(conf[row["choice"]], abs=1e-6)
    assert sorted(r["choice"] for r in rows.values()) == ["A", "B", "I"]
    cal = rep["calibration"]  # all three confidences fall in one bin
    assert cal["ece"] == pytest.approx(abs(2 / 3 - sum(conf.values()) / 3), abs=1e-6)
    assert fake.stats()["by_endpoint"]["/v1/completions"] == 3  # one question per item, no swapped order


@pytest.mark.parametrize("samples", [1, 5])
def test_cot_modes_use_the_repository_frame_and_average(
    fake: FakeServer, tmp_path: Path, samples: int
) -> None:
    fake.configure(
        reply_text="Option (B) gives a safer answer.",
        answer_logprobs={"A": math.log(0.2), "B": math.log(0.8)},
        record_bodies=True,
    )
    out = tmp_path / "items.jsonl"
    args = ["--prompt-format", "completion", "--limit", "1", "--cot", "-o", str(out)]
    r = judge(fake, str(HHH), *args, "--cot-samples", str(samples))
    assert r.returncode == 0, r.stderr
    (row,) = read_jsonl(out)
    # gold_paper's first item is correct at (A); the judge says (B) with 0.8 after every chain.
    assert row["p_correct"] == pytest.approx(0.2, abs=1e-6)
    assert row["p_correct_swapped"] == pytest.approx(0.8, abs=1e-6)
    prompts = [q["body"]["prompt"] for q in fake.stats()["requests"]]
    reasoning = [p for p in prompts if p.endswith("Let's think step by step:")]
    answers = [p for p in prompts if p.endswith("\n\nHuman:\nSo the answer is: (")]
    assert len(reasoning) == 2 and len(answers) == 2 * samples  # both orders
    assert all(p.startswith("\n\nHuman: Consider the following conversation") for p in reasoning)
    assert all("The answer is:" not in p for p in reasoning)
    assert "Option (B) gives a safer answer.\n\nHuman:\nSo the answer is: (" in answers[0]


def test_chat_answers_starting_with_a_parenthesis(fake: FakeServer, tmp_path: Path) -> None:
    fake.configure(answer_logprobs={"A": math.log(0.9), "B": math.log(0.1)}, answer_style="paren")
    out = tmp_path / "items.jsonl"
    r = judge(fake, str(HHH), "--prompt-format", "chat", "--one-order", "-o", str(out))
    assert r.returncode == 0, r.stderr
    a = 0.04 * 0.1 + 0.95 * 0.9
    b = 0.04 * 0.9 + 0.95 * 0.1
    expected_a = a / (a + b)
    for row in read_jsonl(out):
        want = expected_a if row["correct_position"] == "A" else 1 - expected_a
        assert row["p_correct"] == pytest.approx(want, abs=1e-6)


def test_untrusted_answers_are_kept_and_counted_not_failed(fake: FakeServer, tmp_path: Path) -> None:
    # A judge that starts with prose puts little mass on the options: measuring, that answer is the
    # labeler's own, so it is scored as it is and the report counts it.
    fake.configure(answer_logprobs={"A": math.log(0.9), "B": math.log(0.1)}, answer_style="prose")
    out = tmp_path / "items.jsonl"
    r = judge(fake, str(HVE), "--prompt-format", "completion", "--one-order", "-o", str(out))
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["untrusted_items"] == 2 and rep["scored"] == 2
    for row in read_jsonl(out):
        assert row["untrusted_answers"] == 1
    # Each item: 3 attempts (--reask 2), each followed by one request with the unresolved " (" appended.
    assert fake.stats()["by_endpoint"]["/v1/completions"] == 2 * 3 * 2
