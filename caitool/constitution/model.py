"""The constitution model: principles, the content hash, and the paper's sampling with replacement."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from caitool.errors import ConfigError

_T = TypeVar("_T")


@dataclass(frozen=True)
class CritiquePrinciple:
    id: str
    critique: str
    revision: str


@dataclass(frozen=True)
class ComparisonPrinciple:
    id: str
    text: str


def _content_hash(
    name: str, critiques: Sequence[CritiquePrinciple], comparisons: Sequence[ComparisonPrinciple]
) -> str:
    doc = {
        "name": name,
        "critique": [{"id": p.id, "critique": p.critique, "revision": p.revision} for p in critiques],
        "comparison": [{"id": p.id, "text": p.text} for p in comparisons],
    }
    blob = json.dumps(doc, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Constitution:
    """A loaded, validated constitution.

    `source` is where it came from: the path as given, or `builtin:<name>`. `citation` is the file's own
    `source` key (free text naming the origin of the principles). `sha256` is always computed from the
    content; a value passed in is replaced, so `dataclasses.replace(c, name=...)` yields a consistent hash.
    """

    name: str
    description: str
    source: str
    critiques: tuple[CritiquePrinciple, ...]
    comparisons: tuple[ComparisonPrinciple, ...]
    sha256: str = ""
    citation: str = field(default="")

    def __post_init__(self) -> None:
        object.__setattr__(self, "critiques", tuple(self.critiques))
        object.__setattr__(self, "comparisons", tuple(self.comparisons))
        object.__setattr__(self, "sha256", _content_hash(self.name, self.critiques, self.comparisons))

    def critique(self, id: str) -> CritiquePrinciple:
        for p in self.critiques:
            if p.id == id:
                return p
        raise ConfigError(
            f"constitution {self.name!r} has no critique/revision pair {id!r}",
            hint=_id_hint("critique", [p.id for p in self.critiques]),
        )

    def comparison(self, id: str) -> ComparisonPrinciple:
        for p in self.comparisons:
            if p.id == id:
                return p
        raise ConfigError(
            f"constitution {self.name!r} has no comparison principle {id!r}",
            hint=_id_hint("comparison", [p.id for p in self.comparisons]),
        )

    def sample_critiques(self, rng: random.Random, k: int) -> list[CritiquePrinciple]:
        """k pairs drawn uniformly with replacement (the paper's SL sampling); reproducible when seeded."""
        if not self.critiques:
            raise ConfigError(
                f"constitution {self.name!r} ({self.source}) has no critique/revision pairs",
                hint="critique-revise needs a constitution with a [[critique]] section",
            )
        return _sample(self.critiques, rng, k)

    def sample_comparisons(self, rng: random.Random, k: int) -> list[ComparisonPrinciple]:
        """k principles drawn uniformly with replacement (one per comparison label, as in the paper)."""
        if not self.comparisons:
            raise ConfigError(
                f"constitution {self.name!r} ({self.source}) has no comparison principles",
                hint="label-pairs needs a constitution with a [[comparison]] section",
            )
        return _sample(self.comparisons, rng, k)


def _sample(items: tuple[_T, ...], rng: random.Random, k: int) -> list[_T]:
    if isinstance(k, bool) or not isinstance(k, int) or k < 0:
        raise ValueError(f"k must be a non-negative int, got {k!r}")
    return rng.choices(items, k=k)


def _id_hint(section: str, ids: list[str]) -> str:
    if not ids:
        return f"this constitution has no {section} section"
    shown = ", ".join(ids[:20]) + (", …" if len(ids) > 20 else "")
    return f"{section} ids: {shown}"
