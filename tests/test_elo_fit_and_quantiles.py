"""Two promises of caitool/evaluation/elo.py that the interval tests cannot see on well-behaved data:

- the Bradley–Terry fit is Newton's method *with step halving*: the objective is concave, so from a start
  away from the optimum it climbs to it. Every bootstrap refit is warm-started from the full fit, which can
  be away from a resample's optimum; a full Newton step from the flat tail of the logistic overshoots
  further out each time, and without halving the fit runs off to the ±50 clamp instead of converging
  (from 3 log-units, about 500 Elo, off already). The starts below are 6 log-units (about 1,000 Elo) off;
- the interval's ends are quantiles with linear interpolation between order statistics (numpy's default),
  so with few resamples the interval is not collapsed onto one resample.
"""

from __future__ import annotations

import random

import pytest

from caitool.evaluation.elo import (
    EloSettings,
    _Pairs,
    _quantile,
    fit_bradley_terry,
    fit_criterion,
    log_likelihood,
)
from caitool.evaluation.judgments import Judgment

# (model a, model b, p_a) over three models: a ahead of b ahead of c, with soft labels.
ROWS = [(0, 1, 0.7)] * 30 + [(1, 2, 0.6)] * 20 + [(0, 2, 0.5)] * 10 + [(1, 0, 1.0)] * 3


@pytest.mark.parametrize("prior", [1.0, 0.0])
@pytest.mark.parametrize("init", [[6.0, 0.0, -6.0], [-6.0, 6.0, 0.0], [6.0, -6.0, 6.0]])
def test_the_fit_reaches_the_same_optimum_from_a_far_start(prior: float, init: list[float]) -> None:
    pairs = _Pairs.build(3, ROWS)
    cold = fit_bradley_terry(pairs, prior=prior)
    warm = fit_bradley_terry(pairs, prior=prior, init=init)
    assert cold.converged and warm.converged
    assert warm.log_strength == pytest.approx(cold.log_strength, abs=1e-6)
    assert max(abs(x) for x in warm.log_strength) < 5  # nowhere near the ±50 clamp
    # The optimum is the maximum: every small move away from it lowers the objective.
    best = log_likelihood(pairs, warm.log_strength, prior)
    for i in range(2 if prior == 0.0 else 3):  # with prior 0 a common shift changes nothing
        for h in (1e-3, -1e-3):
            moved = list(warm.log_strength)
            moved[i] += h
            assert log_likelihood(pairs, moved, prior) < best


def test_each_newton_step_never_lowers_the_objective() -> None:
    """The halving's own promise: a step is shortened until it does not go downhill. Checked by running the
    fit one iteration at a time from a far start."""
    pairs = _Pairs.build(3, ROWS)
    theta = [6.0, -6.0, 0.0]
    value = log_likelihood(pairs, theta, 1.0)
    for _ in range(30):
        step = fit_bradley_terry(pairs, prior=1.0, init=theta, max_iter=1)
        new = log_likelihood(pairs, step.log_strength, 1.0)
        assert new >= value - 1e-9
        theta, value = step.log_strength, new


def test_quantiles_interpolate_between_order_statistics() -> None:
    assert _quantile([0.0, 10.0], 0.25) == pytest.approx(2.5)
    assert _quantile([1.0, 2.0, 3.0, 4.0], 0.5) == pytest.approx(2.5)
    assert _quantile([1.0, 2.0, 3.0, 4.0], 0.9) == pytest.approx(3.7)
    assert _quantile([5.0], 0.3) == 5.0 and _quantile([1.0, 9.0], 1.0) == 9.0


@pytest.mark.parametrize("ci", [0.95, 0.5])
def test_an_interval_from_two_resamples_spans_ci_of_their_distance(ci: float) -> None:
    """With two resamples s0 <= s1 the interval is [s0 + (1-ci)/2 d, s0 + (1+ci)/2 d], d = s1 - s0, and
    se = d / 2: its width is ci * 2 * se. The lower order statistic alone would give width 0."""
    rng = random.Random(3)
    judgments = [Judgment("c", "a", "b", rng.random()) for _ in range(40)]
    result = fit_criterion("c", judgments, EloSettings(bootstrap=2, ci=ci, seed=1))
    for score in result.models:
        assert score.se > 1.0  # the two resamples differ (by Elo points, not rounding)
        assert score.ci_high - score.ci_low == pytest.approx(ci * 2 * score.se, rel=1e-9)
