"""The preference-model losses and the held-out metrics. Import lazily: the losses need torch.

Soft-label loss (the paper's use of the feedback model's probabilities, Bai et al. 2022 §4.1): with
d = r_c − r_r and p = P(chosen is preferred),

    L = −( p · log σ(d) + (1 − p) · log σ(−d) )

i.e. the cross-entropy between the label distribution (p, 1 − p) and the model's σ(d). At p = 1 it is the
Bradley–Terry loss −log σ(d); it is minimised at d = logit(p), so the preference model learns calibrated odds.

The metric helpers are plain Python (no torch) so tests and other backends can use them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


def soft_preference_loss(
    r_chosen: torch.Tensor, r_rejected: torch.Tensor, p_chosen: torch.Tensor, reduction: str = "mean"
) -> torch.Tensor:
    """Cross-entropy of σ(r_chosen − r_rejected) against the soft label p_chosen (per pair, then reduced)."""
    import torch.nn.functional as F

    d = r_chosen - r_rejected
    p = p_chosen.to(d.dtype)
    loss = -(p * F.logsigmoid(d) + (1.0 - p) * F.logsigmoid(-d))
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"reduction {reduction!r}: mean, sum or none")


def bradley_terry_loss(
    r_chosen: torch.Tensor, r_rejected: torch.Tensor, margin: torch.Tensor | None = None
) -> torch.Tensor:
    """−log σ(r_c − r_r − margin), averaged: TRL's RewardTrainer loss (margin 0 when None)."""
    import torch.nn.functional as F

    d = r_chosen - r_rejected
    if margin is not None:
        d = d - margin.to(d.dtype)
    return -F.logsigmoid(d).mean()


def hard_labels(p_chosen: Sequence[float]) -> list[float]:
    """`--loss bt`: the soft label rounded (p ≥ 0.5 → 1, else 0), so a pair whose chosen side lost flips."""
    return [1.0 if p >= 0.5 else 0.0 for p in p_chosen]


def sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def preference_metrics(
    r_chosen: Sequence[float], r_rejected: Sequence[float], p_chosen: Sequence[float], bins: int = 10
) -> dict[str, float | int | None]:
    """Held-out metrics of a preference model against soft labels.

    - accuracy: fraction of pairs where the model's preferred side matches p > 0.5 (ties p = 0.5 left out);
    - ece: expected calibration error of q = σ(r_c − r_r) against p, with `bins` equal-width bins over q:
      Σ_b (n_b / n) · |mean q_b − mean p_b|;
    - soft_ce: the mean soft-label loss; brier: mean (q − p)².
    """
    n = len(p_chosen)
    if not (len(r_chosen) == len(r_rejected) == n):
        raise ValueError("r_chosen, r_rejected and p_chosen must have the same length")
    if n == 0:
        return {"n": 0, "accuracy": None, "ece": None, "soft_ce": None, "brier": None, "n_ties": 0}
    q = [sigmoid(c - r) for c, r in zip(r_chosen, r_rejected, strict=True)]
    decided = [(qi, pi) for qi, pi in zip(q, p_chosen, strict=True) if pi != 0.5]
    accuracy = sum((qi > 0.5) == (pi > 0.5) for qi, pi in decided) / len(decided) if decided else None
    sums: list[list[float]] = [[0.0, 0.0, 0.0] for _ in range(bins)]  # count, Σq, Σp
    for qi, pi in zip(q, p_chosen, strict=True):
        b = min(bins - 1, int(qi * bins))
        sums[b][0] += 1
        sums[b][1] += qi
        sums[b][2] += pi
    ece = sum(abs(sq - sp) / n for cnt, sq, sp in sums if cnt)
    eps = 1e-12
    soft_ce = -sum(
        pi * math.log(max(qi, eps)) + (1 - pi) * math.log(max(1 - qi, eps))
        for qi, pi in zip(q, p_chosen, strict=True)
    )
    brier = sum((qi - pi) ** 2 for qi, pi in zip(q, p_chosen, strict=True)) / n
    return {
        "n": n,
        "n_ties": n - len(decided),
        "accuracy": accuracy,
        "ece": ece,
        "soft_ce": soft_ce / n,
        "brier": brier,
    }
