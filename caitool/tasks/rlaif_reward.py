"""Direct RLAIF: a feedback model scores policy samples online, through label-pairs' machinery.

`caitool rl --reward provider/model` passes an `AIFeedbackReward` to GRPO/RLOO/online-DPO as a reward
function. The trainer hands it a batch of completions in which each prompt appears once per generation;
the completions of one prompt are compared pairwise with the paper's (A)/(B) question under a sampled
comparison principle (both orders by default, against position bias), and each completion's reward is its
mean probability of being preferred: in [0, 1], 0.5 when a prompt has a single completion. This is the
paper's preference labelling used as a reward without training a preference model first (as in Lee et al.
2023's direct RLAIF), at G·(G−1)/2 comparisons per prompt for G generations.

The labeler's client runs on one event loop in a background thread for the whole training run, because
SDK clients are bound to the loop they first ran on, and TRL calls reward functions synchronously.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import threading
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from caitool.inputs import PairItem
from caitool.providers.base import Message
from caitool.runner import Job
from caitool.tasks.label_pairs import Labeler

if TYPE_CHECKING:
    from caitool.retry import ResilientClient

T = TypeVar("T")


def _messages(prompt: Any) -> tuple[Message, ...]:
    if isinstance(prompt, str):
        return (Message("user", prompt),)
    return tuple(Message(m["role"], m["content"]) for m in prompt)


def _text(completion: Any) -> str:
    if isinstance(completion, str):
        return completion
    return "".join(m.get("content", "") for m in completion if m.get("role") == "assistant")


class AIFeedbackReward:
    """A TRL reward function (`reward_funcs=[AIFeedbackReward(...)]`) backed by an AI labeler."""

    __name__ = "ai_feedback"  # TRL logs each reward function under its __name__

    def __init__(self, labeler: Labeler, *, concurrency: int = 8) -> None:
        self.labeler = labeler
        self.concurrency = concurrency
        self.calls = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="caitool-rlaif", daemon=True)
        self._thread.start()

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def __call__(self, prompts: list[Any], completions: list[Any], **_: Any) -> list[float]:
        return self._run(self._score([_messages(p) for p in prompts], [_text(c) for c in completions]))

    async def _score(self, prompts: list[tuple[Message, ...]], texts: list[str]) -> list[float]:
        groups: dict[str, list[int]] = {}
        for i, p in enumerate(prompts):
            key = json.dumps([m.to_dict() for m in p], sort_keys=True)
            groups.setdefault(key, []).append(i)
        wins = [0.0] * len(texts)
        games = [0] * len(texts)
        semaphore = asyncio.Semaphore(self.concurrency)

        async def compare(i: int, j: int) -> None:
            pair = PairItem(prompts[i], texts[i], texts[j])
            rid = hashlib.sha256(json.dumps([texts[i], texts[j], self.calls]).encode()).hexdigest()[:16]
            async with semaphore:
                row = await self.labeler.label(Job(rid, "rl", pair))
            p_a = float(row["caitool"]["p_a"])
            wins[i] += p_a
            wins[j] += 1.0 - p_a
            games[i] += 1
            games[j] += 1

        await asyncio.gather(
            *(compare(i, j) for idx in groups.values() for i, j in itertools.combinations(idx, 2))
        )
        self.calls += 1
        return [w / g if g else 0.5 for w, g in zip(wins, games, strict=True)]

    def close(self) -> None:
        async def shutdown() -> None:
            await self.labeler.client.aclose()

        self._run(shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)


def ai_feedback_reward(
    client: ResilientClient, constitution: str | None, *, both_orders: bool, seed: int
) -> AIFeedbackReward:
    """The reward `rl --reward provider/model` trains against: label-pairs' labeler over `client`, asking the
    way the client's declared capabilities allow (chat-prefill where it renders its own chat template, votes
    where it has no log-probs)."""
    from caitool.constitution import load_constitution
    from caitool.tasks.ab_question import resolve_label_mode
    from caitool.tasks.label_pairs import LabelSettings, load_label_templates

    mode, votes = resolve_label_mode(client, "auto", None)
    settings = LabelSettings(mode=mode, seed=seed, both_orders=both_orders, votes=votes)
    labeler = Labeler(client, load_constitution(constitution), load_label_templates(), settings)
    return AIFeedbackReward(labeler)
