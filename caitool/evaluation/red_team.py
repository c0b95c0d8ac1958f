"""Red-team prompt generation by few-shot prompting (Bai et al. 2022 Sec. 3.1: 140,335 of the 182,831 red-team
prompts were written by a model shown human-written ones).

Reads seed prompts (a JSONL file: `prompt` text, `messages`, or an HH-RLHF transcript in `chosen`/`text`; the
first human turn is the seed). Request k (id `rt-00000k`) shows `shots` seeds drawn without replacement
(seeded by the run seed and the request id, so reruns draw the same) and asks for one new prompt, with the
templates of `prompts/red_team.toml` (chat models) or as a list of `Human:` turns to continue (base models,
`--prompt-format completion`). The answer is cleaned (first line, no numbering, quotes or "Human:" prefix).

Generation runs through the durable runner (resume, errors file, manifest); deduplication (`deduplicate`) is
a pass over all generations afterwards, so it is deterministic and can be redone with other thresholds
without new model calls.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from caitool.errors import ConfigError, InputError
from caitool.evaluation.dedup import Duplicate, EmbeddingDeduplicator, NearDuplicateIndex, diversity
from caitool.inputs import Line, parse_conversation, pick_field, record_id
from caitool.prompts import check_template, load_toml, render
from caitool.providers.base import GenerateParams, Message, Usage
from caitool.retry import ResilientClient
from caitool.runner import Job
from caitool.seeds import derive_seed

PromptFormat = Literal["chat", "completion"]

_LEADING = re.compile(
    r"^\s*(?:(?:human|user|question|q|prompt|new question|request)\s*:\s*|[-*•]\s+|\(?\d{1,3}[.):]\s+)+",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Seed:
    id: str
    text: str


@dataclass(frozen=True)
class RedTeamTemplates:
    chat: dict[str, Any]
    completion: dict[str, Any]
    source: str
    sha256: str


def load_red_team_templates(name_or_path: str = "red_team") -> RedTeamTemplates:
    data, source, sha = load_toml(name_or_path)
    chat, completion = data.get("chat", {}), data.get("completion", {})
    for key in ("system", "separator"):
        check_template(f"{source}: chat.{key}", chat.get(key, ""), set())
    check_template(f"{source}: chat.example", chat.get("example", "- $prompt"), {"prompt"})
    check_template(f"{source}: chat.instruction", chat.get("instruction", "$examples"), {"examples"})
    check_template(f"{source}: completion.header", completion.get("header", "$examples"), {"examples"})
    check_template(f"{source}: completion.example", completion.get("example", "$prompt"), {"prompt"})
    for key in ("separator", "cue"):
        check_template(f"{source}: completion.{key}", completion.get(key, ""), set())
    if "$examples" not in chat.get("instruction", "$examples") or "$examples" not in completion.get(
        "header", "$examples"
    ):
        raise ConfigError(f"{source}: chat.instruction and completion.header must contain $examples")
    stop = completion.get("stop", [])
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise ConfigError(f"{source}: completion.stop must be a list of strings")
    return RedTeamTemplates(chat, completion, source, sha)


def parse_seed(line: Line, field: str | None = None) -> Seed:
    """The first human turn of a prompt record."""
    name = pick_field(line.data, line.where, field)
    conv = parse_conversation(line.data[name], line.where, name)
    first = next((m.content for m in conv if m.role == "user"), None)
    if first is None or not first.strip():
        raise InputError(line.where, f"field {name!r} has no human turn to use as a seed")
    return Seed(record_id(line.data, line.where, conv), " ".join(first.split()))


def request_id(index: int) -> str:
    return f"rt-{index:06d}"


def draw_shots(seeds: list[Seed], shots: int, seed: int, rid: str) -> list[Seed]:
    rng = random.Random(f"caitool:red-team:{seed}:{rid}")
    return rng.sample(seeds, min(shots, len(seeds)))


def render_request(t: RedTeamTemplates, shots: list[Seed], fmt: PromptFormat) -> list[Message] | str:
    if fmt == "chat":
        c = t.chat
        examples = c.get("separator", "\n").join(
            render(c.get("example", "- $prompt"), prompt=s.text) for s in shots
        )
        messages = [Message("system", c["system"])] if c.get("system") else []
        return [*messages, Message("user", render(c.get("instruction", "$examples"), examples=examples))]
    c = t.completion
    examples = c.get("separator", "").join(render(c.get("example", "$prompt"), prompt=s.text) for s in shots)
    return render(c.get("header", "$examples"), examples=examples) + c.get("cue", "")


def clean_prompt(raw: str) -> str:
    """The first non-empty line, without list markers, speaker labels or wrapping quotes."""
    for line in raw.splitlines():
        text = _LEADING.sub("", line).strip()
        if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'`":
            text = text[1:-1].strip()
        text = text.strip('"“”` ').strip()
        if text:
            return text
    return ""


class RedTeamGenerator:
    def __init__(
        self,
        client: ResilientClient,
        seeds: list[Seed],
        templates: RedTeamTemplates,
        *,
        shots: int,
        seed: int,
        params: GenerateParams,
        prompt_format: PromptFormat = "chat",
    ) -> None:
        self.client = client
        self.seeds = seeds
        self.t = templates
        self.shots = shots
        self.seed = seed
        self.params = params
        self.format = prompt_format

    def request(self, rid: str) -> tuple[list[Seed], list[Message] | str]:
        shots = draw_shots(self.seeds, self.shots, self.seed, rid)
        return shots, render_request(self.t, shots, self.format)

    async def run(self, job: Job[int]) -> dict[str, Any]:
        shots, request = self.request(job.id)
        p = self.params
        usage = Usage()
        if isinstance(request, str):
            stop = tuple(self.t.completion.get("stop", ()))
            params = GenerateParams(
                temperature=p.temperature,
                max_tokens=p.max_tokens,
                top_p=p.top_p,
                stop=stop,
                seed=derive_seed(self.seed, job.id, "red-team"),
            )
            result = await self.client.complete(request, params)
        else:
            params = GenerateParams(
                temperature=p.temperature,
                max_tokens=p.max_tokens,
                top_p=p.top_p,
                stop=p.stop,
                seed=derive_seed(self.seed, job.id, "red-team"),
            )
            result = await self.client.chat(request, params)
        usage.add(result.usage)
        return {
            "id": job.id,
            "prompt": clean_prompt(result.text),
            "raw": result.text,
            "seed_ids": [s.id for s in shots],
            "usage": usage.to_dict(),
        }


# ---------------------------------------------------------------------------------------------------------
# after generation


@dataclass(frozen=True)
class DedupSettings:
    threshold: float = 0.55
    ngram: int = 5
    min_chars: int = 10
    method: Literal["ngram", "embedding"] = "ngram"
    embedding_threshold: float = 0.9
    seed: int = 0


def deduplicate(
    rows: Iterable[dict[str, Any]],
    seeds: list[Seed],
    settings: DedupSettings,
    refusal_phrases: tuple[str, ...] = (),
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], dict[str, Any]]:
    """(kept rows, dropped rows with the reason, report), in request-id order.

    Dropped: `empty` / `too_short` (under `min_chars`), `refusal` (the generator declined: a phrase of the
    refusal monitor), `seed_copy` (exact or near copy of a seed), `exact`, `near` (of an earlier kept
    prompt), `embedding` (with --dedup embedding)."""
    from caitool.evaluation.stats import matches

    ordered = sorted(rows, key=lambda r: str(r["id"]))
    index = NearDuplicateIndex(settings.threshold, settings.ngram, seed=settings.seed)
    for s in seeds:
        index.add(f"seed:{s.id}", s.text)
    kept: list[dict[str, Any]] = []
    dropped: list[dict[str, Any]] = []

    def drop(row: dict[str, Any], reason: str, dup: Duplicate | None = None) -> None:
        d = {"id": row["id"], "prompt": row.get("prompt", ""), "reason": reason}
        if dup is not None:
            d["duplicate_of"] = dup.of
            d["similarity"] = dup.similarity
        dropped.append(d)

    for row in ordered:
        text = str(row.get("prompt") or "")
        if not text.strip():
            drop(row, "empty")
        elif len(text) < settings.min_chars:
            drop(row, "too_short")
        elif refusal_phrases and matches(text, refusal_phrases):
            drop(row, "refusal")
        else:
            dup = index.offer(str(row["id"]), text)
            if dup is None:
                kept.append(row)
            elif dup.of.startswith("seed:"):
                drop(row, "seed_copy", Duplicate(dup.reason, dup.of, dup.similarity))
            else:
                drop(row, dup.reason, dup)
    if settings.method == "embedding" and kept:
        emb = EmbeddingDeduplicator(settings.embedding_threshold)
        gone = emb.filter([r["id"] for r in kept], [r["prompt"] for r in kept], [s.text for s in seeds])
        for row in kept:
            if row["id"] in gone:
                drop(row, "embedding", gone[row["id"]])
        kept = [r for r in kept if r["id"] not in gone]
    dropped.sort(key=lambda d: str(d["id"]))
    reasons: dict[str, int] = {}
    for d in dropped:
        reasons[d["reason"]] = reasons.get(d["reason"], 0) + 1
    report = {
        "generated": len(ordered),
        "kept": len(kept),
        "dropped": reasons,
        "dedup": {
            "method": settings.method,
            "ngram": settings.ngram,
            "threshold": settings.threshold,
            "embedding_threshold": settings.embedding_threshold if settings.method == "embedding" else None,
            "min_chars": settings.min_chars,
        },
        "diversity": {
            "generated_kept": diversity(
                [r["prompt"] for r in kept], ngram=settings.ngram, seed=settings.seed
            ),
            "seeds": diversity([s.text for s in seeds], ngram=settings.ngram, seed=settings.seed),
        },
    }
    return kept, dropped, report
