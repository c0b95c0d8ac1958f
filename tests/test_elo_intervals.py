"""`caitool elo`'s intervals are at the confidence asked, `se` is the bootstrap's standard deviation, `--seed`
makes the bootstrap reproducible, and `--prior 0` refuses a fit that does not exist (docs/evaluation.md,
caitool/evaluation/elo.py).

The interval check needs a case whose bootstrap distribution is known without caitool's help: two models
and `--prior 0`. There the fit is closed-form, Elo_a − Elo_b = 400·log10(W / (n − W)) with W the soft wins of
a over n judgments, and a bootstrap resample's W* is a sum of n draws from the judgments' p_a, so it is
normal with mean W and standard deviation √n · sd(p_a) (the p_a are uniform: no ties in W*). Mapping the
interval's ends back to W* gives their z-scores: ±1.96 for 95 %, ±1.83 for 93.3 %, ±2.24 for 97.5 %.
"""

from __future__ import annotations

import math
import random
import statistics

import pytest

from caitool.errors import UsageError
from caitool.evaluation.elo import ELO_PER_NAT, EloSettings, fit_criterion, win_probability
from caitool.evaluation.judgments import Judgment


def soft_judgments(n: int, seed: int) -> list[Judgment]:
    rng = random.Random(seed)
    return [Judgment("c", "a", "b", rng.random()) for _ in range(n)]


def wins_for(elo_gap: float, n: int) -> float:
    """The soft wins W of a over n judgments that the closed-form fit turns into this Elo gap."""
    return n / (1.0 + math.exp(-elo_gap / ELO_PER_NAT))


def test_interval_is_at_the_asked_confidence_and_se_is_the_bootstrap_sd() -> None:
    n, boot = 200, 3000
    zs, se_ratios = [], []
    for seed in range(3):  # three datasets: the bootstrap's own noise on a 2.5 % quantile is ~0.05 z each
        js = soft_judgments(n, seed)
        ps = [j.p_a for j in js]
        w, sd_w = sum(ps), math.sqrt(n * statistics.pvariance(ps))
        res = fit_criterion("c", js, EloSettings(bootstrap=boot, ci=0.95, seed=seed, prior=0.0, anchor="b"))
        a = res.score("a")
        assert a.elo == pytest.approx(400 * math.log10(w / (n - w)), abs=1e-6)  # the closed form
        zs += [(w - wins_for(a.ci_low, n)) / sd_w, (wins_for(a.ci_high, n) - w) / sd_w]
        # se in Elo against the delta method: d Elo / dW = ELO_PER_NAT · n / (W (n − W)).
        se_ratios.append(a.se / (ELO_PER_NAT * n / (w * (n - w)) * sd_w))
    z = statistics.fmean(zs)
    assert 1.90 < z < 2.03, f"interval ends at ±{z:.3f} sd: not the 95 % one (±1.96)"
    assert all(0.95 < r < 1.05 for r in se_ratios), se_ratios


def test_the_anchor_model_has_a_zero_interval_and_the_others_are_measured_from_it() -> None:
    js = soft_judgments(60, 7) + [Judgment("c", "b", "c", 0.8) for _ in range(30)]
    res = fit_criterion("c", js, EloSettings(bootstrap=200, seed=1, anchor="b"))
    b = res.score("b")
    assert (b.elo, b.ci_low, b.ci_high, b.se) == (0.0, 0.0, 0.0, 0.0)
    for m in ("a", "c"):
        s = res.score(m)
        assert s.ci_low < s.elo < s.ci_high and s.se > 0


def test_a_seeded_bootstrap_is_reproducible_and_the_seed_matters() -> None:
    js = soft_judgments(80, 3)

    def intervals(seed: int) -> list[tuple[float, float, float]]:
        res = fit_criterion("c", js, EloSettings(bootstrap=100, seed=seed))
        return [(s.ci_low, s.ci_high, s.se) for s in res.models]

    assert intervals(5) == intervals(5)
    assert intervals(5) != intervals(6)


def test_prior_zero_refuses_a_disconnected_graph_and_prior_one_fits_it() -> None:
    # a–b and c–d each won and lost against each other, but the two groups never met.
    js = [Judgment("c", x, y, p) for x, y in (("a", "b"), ("c", "d")) for p in (1.0, 0.0, 1.0)]
    with pytest.raises(UsageError, match="not connected"):
        fit_criterion("c", js, EloSettings(bootstrap=0, prior=0.0))
    res = fit_criterion("c", js, EloSettings(bootstrap=0, prior=1.0))
    assert res.components == [["a", "b"], ["c", "d"]]
    assert all(math.isfinite(s.elo) for s in res.models)


def test_win_probability_is_ten_to_one_at_400_points() -> None:
    assert win_probability(400.0, 0.0) == pytest.approx(10 / 11)
    assert win_probability(0.0, 400.0) == pytest.approx(1 / 11)
