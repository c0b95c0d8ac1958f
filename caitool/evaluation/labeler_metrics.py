"""How good is a feedback model? Metrics from per-item probabilities on a two-option gold set. Pure functions.

Per item: `p_correct`, the probability the labeler gives the correct option, with the options in the gold
order; optionally `p_correct_swapped`, the same with the two options swapped (the correct one moved to the
other seat); `correct_position` ("A" or "B", in the gold order); and the lengths of the two options.

- accuracy: the labeler picks the option with p > 0.5; an exact 0.5 counts half. `accuracy_both_orders`
  uses the mean of the two orders' probabilities (Lee et al.'s position debiasing), on items that have both.
- mean_p_correct, brier (mean of (1 − p)²), log_loss (mean of −ln p, p floored at 1e-12).
- calibration (the paper's Fig. 9): confidence = max(p, 1 − p), outcome = 1 if the chosen option is
  correct (0.5 for a tie); `bins` equal-width bins over [0.5, 1] (a two-way choice is never less than 0.5
  confident), bin k = [0.5 + k·w, 0.5 + (k+1)·w), the last one closed; per bin the count, mean confidence
  and accuracy; ECE = Σ_bins (count / N) · |accuracy − mean confidence|.
- position: `flip_rate`, the share of items with both orders whose choice changes when the options swap
  seats (p on either side of 0.5; an exact 0.5 on one side only counts as a flip); `first_position_rate`,
  the mean probability given to whatever option sits in seat (A), over every question asked (0.5 = no
  position bias).
- length: over items whose options differ in length, `longer_preferred_rate` (the labeler picks the longer
  option; ties count half), `gold_longer_rate` (the correct option is the longer), their difference
  `length_bias`, and accuracy when the correct option is the longer / the shorter one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class ItemProbability:
    id: str
    p_correct: float
    p_correct_swapped: float | None = None
    correct_position: Literal["A", "B"] = "A"
    len_correct: int | None = None
    len_incorrect: int | None = None


def _decision(p: float) -> float:
    """1 if the correct option is chosen, 0 if not, 0.5 for an exact tie."""
    return 1.0 if p > 0.5 else 0.0 if p < 0.5 else 0.5


def _side(p: float) -> int:
    return (p > 0.5) - (p < 0.5)


def _mean(xs: Sequence[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def calibration(items: Sequence[ItemProbability], bins: int = 10) -> dict[str, Any]:
    width = 0.5 / bins
    counts = [0] * bins
    conf_sum = [0.0] * bins
    acc_sum = [0.0] * bins
    for it in items:
        conf = max(it.p_correct, 1.0 - it.p_correct)
        k = min(bins - 1, math.floor((conf - 0.5) / width + 1e-9))
        counts[k] += 1
        conf_sum[k] += conf
        acc_sum[k] += _decision(it.p_correct)
    n = len(items)
    out_bins = []
    ece = 0.0
    for k in range(bins):
        c = counts[k]
        mean_conf = conf_sum[k] / c if c else None
        acc = acc_sum[k] / c if c else None
        if c and mean_conf is not None and acc is not None:
            ece += c / n * abs(acc - mean_conf)
        out_bins.append(
            {
                "lo": round(0.5 + k * width, 6),
                "hi": round(0.5 + (k + 1) * width, 6),
                "count": c,
                "confidence": mean_conf,
                "accuracy": acc,
            }
        )
    return {"bins": out_bins, "ece": ece if n else None, "n_bins": bins}


def metrics(items: Sequence[ItemProbability], bins: int = 10) -> dict[str, Any]:
    """Every metric of the module docstring, as a JSON-ready dict."""
    n = len(items)
    ps = [it.p_correct for it in items]
    both = [it for it in items if it.p_correct_swapped is not None]
    out: dict[str, Any] = {
        "items": n,
        "accuracy": _mean([_decision(p) for p in ps]),
        "accuracy_both_orders": _mean(
            [
                _decision((it.p_correct + it.p_correct_swapped) / 2)
                for it in both
                if it.p_correct_swapped is not None
            ]
        ),
        "mean_p_correct": _mean(ps),
        "brier": _mean([(1.0 - p) ** 2 for p in ps]),
        "log_loss": _mean([-math.log(max(p, 1e-12)) for p in ps]),
        "calibration": calibration(items, bins),
    }
    seat_a: list[float] = []
    flips: list[float] = []
    for it in items:
        seat_a.append(it.p_correct if it.correct_position == "A" else 1.0 - it.p_correct)
        if it.p_correct_swapped is not None:
            ps_ = it.p_correct_swapped  # after the swap the correct option sits in the other seat
            seat_a.append(ps_ if it.correct_position == "B" else 1.0 - ps_)
            flips.append(float(_side(it.p_correct) != _side(ps_)))
    out["position"] = {
        "items_both_orders": len(both),
        "flip_rate": _mean(flips),
        "first_position_rate": _mean(seat_a),
    }
    longer_pref: list[float] = []
    gold_longer: list[float] = []
    acc_longer: list[float] = []
    acc_shorter: list[float] = []
    for it in items:
        if it.len_correct is None or it.len_incorrect is None or it.len_correct == it.len_incorrect:
            continue
        d = _decision(it.p_correct)
        correct_is_longer = it.len_correct > it.len_incorrect
        gold_longer.append(float(correct_is_longer))
        longer_pref.append(d if correct_is_longer else 1.0 - d)
        (acc_longer if correct_is_longer else acc_shorter).append(d)
    lp, gl = _mean(longer_pref), _mean(gold_longer)
    out["length"] = {
        "items": len(longer_pref),
        "longer_preferred_rate": lp,
        "gold_longer_rate": gl,
        "length_bias": lp - gl if lp is not None and gl is not None else None,
        "accuracy_when_correct_longer": _mean(acc_longer),
        "accuracy_when_correct_shorter": _mean(acc_shorter),
    }
    return out


@dataclass(frozen=True)
class ItemDistribution:
    """A many-option item (the paper's nine-way HarmfulnessClassification): P over every option."""

    id: str
    probs: dict[str, float]
    correct: str


def multiclass_metrics(items: Sequence[ItemDistribution], bins: int = 10) -> dict[str, Any]:
    """Accuracy of the argmax (ties split evenly), mean P(correct), multi-class Brier score (sum over options
    of (p − y)²), log loss, and calibration of the argmax: confidence = max p, equal-width bins over
    [1/K, 1] for K options (no K-way choice is less confident than 1/K), ECE as for two options."""
    n = len(items)
    k_opts = max((len(it.probs) for it in items), default=2)
    lo = 1.0 / k_opts
    width = (1.0 - lo) / bins
    counts = [0] * bins
    conf_sum = [0.0] * bins
    acc_sum = [0.0] * bins
    accs: list[float] = []
    for it in items:
        top = max(it.probs.values())
        winners = [x for x, p in it.probs.items() if p == top]
        acc = 1.0 / len(winners) if it.correct in winners else 0.0
        accs.append(acc)
        k = min(bins - 1, max(0, math.floor((top - lo) / width + 1e-9)))
        counts[k] += 1
        conf_sum[k] += top
        acc_sum[k] += acc
    out_bins = []
    ece = 0.0
    for k in range(bins):
        c = counts[k]
        if c:
            ece += c / n * abs(acc_sum[k] / c - conf_sum[k] / c)
        out_bins.append(
            {
                "lo": round(lo + k * width, 6),
                "hi": round(lo + (k + 1) * width, 6),
                "count": c,
                "confidence": conf_sum[k] / c if c else None,
                "accuracy": acc_sum[k] / c if c else None,
            }
        )
    pc = [it.probs.get(it.correct, 0.0) for it in items]
    return {
        "items": n,
        "options": k_opts,
        "accuracy": _mean(accs),
        "mean_p_correct": _mean(pc),
        "brier": _mean(
            [sum((p - (1.0 if x == it.correct else 0.0)) ** 2 for x, p in it.probs.items()) for it in items]
        ),
        "log_loss": _mean([-math.log(max(p, 1e-12)) for p in pc]),
        "calibration": {"bins": out_bins, "ece": ece if n else None, "n_bins": bins},
    }
