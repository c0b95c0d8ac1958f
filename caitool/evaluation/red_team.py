"""Red-team prompts, the pure half: seed prompts read from JSONL, and the deduplication pass over generations
(exact, near-duplicate, seed copies, refusals) with its diversity report. Generating the prompts with a model
is `caitool.tasks.red_team`.

Seeds: a JSONL file of `prompt` text, `messages`, or an HH-RLHF transcript in `chosen`/`text`; the first human
turn is the seed. Deduplication (`deduplicate`) is a pass over all generations after they are made, so it is
deterministic and can be redone with other thresholds without new model calls.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from caitool.errors import InputError
from caitool.evaluation.dedup import Duplicate, EmbeddingDeduplicator, NearDuplicateIndex, diversity
from caitool.inputs import Line, parse_conversation, pick_field, record_id


@dataclass(frozen=True)
class Seed:
    id: str
    text: str


def parse_seed(line: Line, field: str | None = None) -> Seed:
    """The first human turn of a prompt record."""
    name = pick_field(line.data, line.where, field)
    conv = parse_conversation(line.data[name], line.where, name)
    first = next((m.content for m in conv if m.role == "user"), None)
    if first is None or not first.strip():
        raise InputError(line.where, f"field {name!r} has no human turn to use as a seed")
    return Seed(record_id(line.data, line.where, conv), " ".join(first.split()))


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
