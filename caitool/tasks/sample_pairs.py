"""Sample k responses per prompt from a policy and pair them up for labelling (the paper's RL stage draws
its comparison pairs from the SL-CAI model)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Literal

from caitool.inputs import Line, PairItem, PromptItem, prompt_items
from caitool.parsing import clean_response
from caitool.providers.base import GenerateParams, ModelClient, Usage
from caitool.runner import Job
from caitool.seeds import derive_seed
from caitool.tasks.base import Request, StepCache

PairMode = Literal["all", "first"]


async def sample_responses(
    client: ModelClient,
    item: PromptItem,
    k: int,
    params: GenerateParams,
    *,
    seed: int,
    record_id: str,
    usage: Usage,
    cache: StepCache | None = None,
) -> list[str]:
    """k samples in one request with `n` where the server honours it, topped up with more requests where
    it returns fewer (TGI ignores `n`)."""
    cache = cache or StepCache()
    cached = cache.get(record_id, "samples")
    if isinstance(cached, dict) and isinstance(cached.get("texts"), list) and len(cached["texts"]) == k:
        return [str(t) for t in cached["texts"]]  # a checkpoint of another shape is simply sampled again
    texts: list[str] = []
    attempt = 0
    while len(texts) < k:
        p = GenerateParams(
            temperature=params.temperature,
            max_tokens=params.max_tokens,
            top_p=params.top_p,
            n=k - len(texts),
            seed=derive_seed(seed, record_id, "samples", attempt),
        )
        result = await client.chat(list(item.messages), p)
        usage.add(result.usage)
        texts += [clean_response(c.text) for c in result.choices]
        attempt += 1
    texts = texts[:k]
    cache.save(record_id, "samples", {"texts": texts})
    return texts


def make_pairs(
    record_id: str, item: PromptItem, texts: list[str], mode: PairMode
) -> list[tuple[str, PairItem]]:
    index_pairs = list(itertools.combinations(range(len(texts)), 2))
    if mode == "first":
        index_pairs = index_pairs[:1]
    single = len(index_pairs) == 1
    return [
        (record_id if single else f"{record_id}-{i}{j}", PairItem(item.messages, texts[i], texts[j]))
        for i, j in index_pairs
    ]


@dataclass(frozen=True)
class SamplePairsTask:
    """`caitool sample-pairs` as a record task (see `caitool.tasks.base.RecordTask`): one record's prompt,
    k samples, and the pairs drawn from them."""

    client: ModelClient | None  # None: only preview (--dry-run)
    model: str
    base_url: str | None
    k: int
    pairs: PairMode
    params: GenerateParams
    seed: int = 0
    field: str | None = None
    command = "sample-pairs"
    id_key = "source_id"
    prompt_format = "chat"

    def read(self, line: Line) -> list[Job[Any]]:
        return [Job(rid, line.where, item) for rid, item in prompt_items(line, field=self.field)]

    @property
    def answer_tokens(self) -> int:  # caitool.budget's bound: k answers of at most --max-tokens
        return self.params.max_tokens

    @property
    def samples_per_request(self) -> int:
        return self.k

    def settings(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "base_url": self.base_url,
            "k": self.k,
            "pairs": self.pairs,
            "seed": self.seed,
            "field": self.field,
            "params": self.params.fingerprint(),
        }

    def preview(self, job: Job[PromptItem]) -> list[tuple[str, Request]]:
        return [(f"{self.k} samples", list(job.item.messages))]

    async def process(self, job: Job[PromptItem], cache: StepCache) -> list[dict[str, Any]]:
        assert self.client is not None, "a task without a client only previews"
        texts = await sample_responses(
            self.client,
            job.item,
            self.k,
            self.params,
            seed=self.seed,
            record_id=job.id,
            usage=Usage(),
            cache=cache,
        )
        return [
            {
                "id": pid,
                "source_id": job.id,
                "prompt": [m.to_dict() for m in pair.messages],
                "response_a": pair.response_a,
                "response_b": pair.response_b,
                "caitool": {"policy": self.model, "seed": self.seed, "source": job.where},
            }
            for pid, pair in make_pairs(job.id, job.item, texts, self.pairs)
        ]
