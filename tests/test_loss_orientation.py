"""The preference-model metrics and labels point the right way (caitool/trainers/losses.py): the held-out
soft cross-entropy scores σ(r_chosen − r_rejected) against p = P(chosen preferred), not against 1 − p; ECE
bins are tenths of q weighted by their size; `--loss bt` rounds p = 0.5 up. Values computed by hand."""

from __future__ import annotations

import math

import pytest

from caitool.trainers.losses import hard_labels, preference_metrics


def logit(q: float) -> float:
    return math.log(q / (1 - q))


def test_soft_cross_entropy_scores_the_chosen_side_with_p() -> None:
    # d = 1, so q = σ(1) = 0.731; p = 0.9:
    # −(0.9·log σ(1) + 0.1·log σ(−1)) = 0.9·log(1 + e^−1) + 0.1·log(1 + e)
    expected = 0.9 * 0.31326168751822286 + 0.1 * 1.3132616875182228  # 0.4133; 1 − p instead would give 1.2133
    m = preference_metrics([1.0], [0.0], [0.9])
    assert m["soft_ce"] == pytest.approx(expected, abs=1e-12)
    # the same pair seen from the other side: chosen and rejected swapped, p → 1 − p: the same loss
    assert preference_metrics([0.0], [1.0], [0.1])["soft_ce"] == pytest.approx(expected, abs=1e-12)


def test_ece_bins_are_tenths_of_q_weighted_by_size_and_ties_are_left_out_of_accuracy() -> None:
    # q = .71 and .79 share the bin [.7, .8) and cancel (mean q .75, mean p .75); q = .2 (p 0) and q = .9
    # (p .5, a tie) sit alone: ECE = (0 + .2 + .4) / 4. Under ninths (int(q·9)) .71 and .79 would part.
    q = [0.71, 0.79, 0.2, 0.9]
    p = [0.79, 0.71, 0.0, 0.5]
    m = preference_metrics([logit(x) for x in q], [0.0] * 4, p)
    assert m["n"] == 4 and m["n_ties"] == 1
    assert m["ece"] == pytest.approx((0.0 + 0.2 + 0.4) / 4, abs=1e-9)
    assert m["brier"] == pytest.approx((0.08**2 + 0.08**2 + 0.2**2 + 0.4**2) / 4, abs=1e-9)
    assert m["accuracy"] == 1.0  # the three decided pairs are right; the tie (model says .9) is not counted


def test_hard_labels_round_half_up() -> None:
    assert hard_labels([0.5, 0.49, 0.51, 1.0, 0.0]) == [1.0, 0.0, 1.0, 1.0, 0.0]


def test_bradley_terry_margin_is_subtracted() -> None:
    torch = pytest.importorskip("torch")
    from caitool.trainers.losses import bradley_terry_loss

    # TRL's RewardTrainer loss: −log σ(r_c − r_r − margin); d = 1, margin 0.5 → log(1 + e^−0.5) = 0.4741
    loss = bradley_terry_loss(torch.tensor([1.0]), torch.tensor([0.0]), torch.tensor([0.5]))
    assert float(loss) == pytest.approx(0.47407698418010663, abs=1e-6)
