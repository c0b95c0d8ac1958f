"""Sample k responses per prompt from a policy and pair them up for labelling (the paper's RL stage draws
its comparison pairs from the SL-CAI model)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any, Literal

from caitool.inputs import PairItem, PromptItem
from caitool.parsing import clean_response
from caitool.providers.base import GenerateParams, Usage
from caitool.retry import ResilientClient
from caitool.seeds import derive_seed

PairMode = Literal["all", "first"]


async def sample_responses(
    client: ResilientClient,
    item: PromptItem,
    k: int,
    params: GenerateParams,
    *,
    seed: int,
    record_id: str,
    usage: Usage,
    steps: dict[str, dict[str, Any]] | None = None,
    save_step: Callable[[str, str, Any], None] | None = None,
) -> list[str]:
    """k samples in one request with `n` where the server honours it, topped up with more requests where
    it returns fewer (TGI ignores `n`)."""
    cached = (steps or {}).get(record_id, {}).get("samples")
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
    if save_step is not None:
        save_step(record_id, "samples", {"texts": texts})
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
