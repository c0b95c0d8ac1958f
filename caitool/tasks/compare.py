"""Pairwise model comparisons for Elo (the paper's evaluation, Sec. 2 and Fig. 2), judged by an AI
feedback model with label-pairs' machinery.

For one prompt: each model's response (sampled, or taken from `--responses` files), then for every pair of
models and every criterion, the (A)/(B) question under that criterion's constitution, in both orders by
default. Each judgment row is what `caitool elo` reads (`criterion`, `model_a`, `model_b`, `p_a`), plus the
texts and the label's provenance.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from caitool.inputs import PairItem, PromptItem
from caitool.providers.base import GenerateParams, Usage
from caitool.retry import ResilientClient
from caitool.runner import Job
from caitool.tasks.label_pairs import Labeler
from caitool.tasks.sample_pairs import sample_responses


@dataclass(frozen=True)
class CompareItem:
    prompt: PromptItem
    given: tuple[tuple[str, str], ...] = ()  # (model name, response) read from --responses files


class Comparer:
    def __init__(
        self,
        models: dict[str, ResilientClient | None],
        labelers: dict[str, Labeler],
        params: GenerateParams,
        seed: int,
    ) -> None:
        self.models = models  # name -> client (None: responses come from files)
        self.labelers = labelers  # criterion -> labeler
        self.params = params
        self.seed = seed

    async def run(self, job: Job[CompareItem], store: Any) -> list[dict[str, Any]]:
        item = job.item
        responses = dict(item.given)
        for name, client in self.models.items():
            if name in responses or client is None:
                continue
            (text,) = await sample_responses(
                client,
                item.prompt,
                1,
                self.params,
                seed=self.seed,
                record_id=f"{job.id}@{name}",
                usage=Usage(),
                steps=store.steps,
                save_step=store.save_step,
            )
            responses[name] = text
        rows = []
        for (a, ra), (b, rb) in itertools.combinations(sorted(responses.items()), 2):
            pair = PairItem(item.prompt.messages, ra, rb)
            for criterion, labeler in self.labelers.items():
                label = await labeler.label(Job(f"{job.id}:{a}:{b}:{criterion}", job.where, pair))
                meta = label["caitool"]
                rows.append(
                    {
                        "id": f"{job.id}:{a}:{b}:{criterion}",
                        "source_id": job.id,
                        "criterion": criterion,
                        "model_a": a,
                        "model_b": b,
                        "p_a": meta["p_a"],
                        "source": "ai",
                        "prompt": label["prompt"],
                        "response_a": ra,
                        "response_b": rb,
                        "caitool": {
                            k: meta[k]
                            for k in ("label_source", "principle_ids", "questions", "position_disagreement")
                        },
                    }
                )
        return rows
