"""rl --reward's feedback model reads answers with label-pairs' scorer: two-token chat answers over real HTTP
give the same reward a label-pairs row would (no trainer needed to check the reward function itself)."""

from __future__ import annotations

import math

import pytest

from caitool.cli._common import build_client
from caitool.constitution import load_constitution
from caitool.tasks.label_pairs import Labeler, LabelSettings, load_label_templates
from caitool.tasks.rlaif_reward import AIFeedbackReward
from caitool.testing.fake_server import FakeServer


def test_reward_follows_the_answer_through_the_opening(fake: FakeServer) -> None:
    # The judge answers " (" then the letter, preferring the seat (A) with 0.8; the bare letters behind
    # " (" are reversed (0.04 × the other's probability), which the pre-v2 reader took as the answer.
    fake.configure(answer_logprobs={"A": math.log(0.8), "B": math.log(0.2)}, answer_style="space-paren")
    client = build_client(
        "openai/judge", base_url=fake.openai_base_url, api_key=None, timeout=30, retries=0, rpm=None, tpm=None
    )
    labeler = Labeler(
        client, load_constitution(None), load_label_templates(n_fewshot=0), LabelSettings(mode="chat")
    )
    reward = AIFeedbackReward(labeler)
    try:
        scores = reward(["q?", "q?"], ["first answer", "second answer"])
    finally:
        reward.close()
    a = 0.04 * 0.2 + 0.95 * 0.8
    b = 0.04 * 0.8 + 0.95 * 0.2
    assert scores[0] == pytest.approx(a / (a + b), abs=1e-6)
    assert scores[1] == pytest.approx(b / (a + b), abs=1e-6)
    assert fake.stats()["by_endpoint"]["/v1/chat/completions"] == 1
