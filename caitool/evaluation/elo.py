"""Bradley–Terry strengths and Elo scores with bootstrap intervals, from pairwise judgments. Pure Python.

Model. Bradley–Terry: P(i beats j) = π_i / (π_i + π_j). Each judgment adds `p_a` of a win to A and
`1 - p_a` to B (soft labels and ties need nothing special). The log-strengths θ_i = ln π_i maximise

    Σ_i (W_i + prior/2) θ_i − Σ_{i<j} n_ij ln(e^θ_i + e^θ_j) − prior Σ_i ln(e^θ_i + 1)

(W_i: i's total soft wins; n_ij: comparisons of i with j), found by Newton's method with step halving: the
function is concave, so a few steps reach the optimum to 1e-10 (the minorize–maximize iteration of Hunter
2004 reaches the same point but crawls when the scale is weakly pinned). `prior` adds, for every model,
`prior` pseudo-comparisons (half won, half lost) against a virtual reference of strength 1: a weak prior that
keeps every estimate finite when a model never won or never lost, or when the comparison graph is not
connected; its pull is that of `prior` comparisons, negligible against real data. `prior=0` is the pure
maximum-likelihood fit, which exists only if every model has both won and lost in one connected graph.
Cost: O(judgments + K³) per fit for K models (a K×K Cholesky solve per Newton step), times the bootstrap
count.

Scale. Elo_i = 400 · log10(π_i), so a 400-point gap means 10:1 odds, and P(i beats j) =
1 / (1 + 10^((Elo_j − Elo_i) / 400)). Only differences are meaningful (as in the paper's figures): the
`anchor` fixes the zero, either the mean over the criterion's models (default) or one named model (the paper's
Fig. 8 sets the SL-CAI model to 0), whose interval is then [0, 0] by construction.

Intervals. Percentile bootstrap: the criterion's judgments are resampled with replacement (seeded), refitted
(warm-started from the full fit) and re-anchored; the interval is the (1 − ci)/2 and (1 + ci)/2 quantiles of
each model's anchored Elo, `se` their standard deviation. Each criterion is fitted and resampled on its own.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from caitool.errors import UsageError
from caitool.evaluation.judgments import Judgment

ELO_PER_NAT = 400.0 / math.log(10.0)  # Elo points per unit of natural-log strength


@dataclass
class _Pairs:
    """Judgments aggregated per unordered pair: the sufficient statistics of the Bradley–Terry likelihood."""

    k: int
    wins: list[float]  # W_i
    games: list[int]  # comparisons per model
    nbrs: list[list[tuple[int, float]]]  # i -> [(j, n_ij)]

    @classmethod
    def build(cls, k: int, rows: Sequence[tuple[int, int, float]]) -> _Pairs:
        wins = [0.0] * k
        games = [0] * k
        n: dict[tuple[int, int], float] = {}
        for i, j, p in rows:
            wins[i] += p
            wins[j] += 1.0 - p
            games[i] += 1
            games[j] += 1
            key = (i, j) if i < j else (j, i)
            n[key] = n.get(key, 0.0) + 1.0
        nbrs: list[list[tuple[int, float]]] = [[] for _ in range(k)]
        for (i, j), c in n.items():
            nbrs[i].append((j, c))
            nbrs[j].append((i, c))
        return cls(k, wins, games, nbrs)


@dataclass
class Fit:
    log_strength: list[float]  # natural log of π_i
    iterations: int
    converged: bool


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def _log1pexp(x: float) -> float:
    return x + math.log1p(math.exp(-x)) if x > 0 else math.log1p(math.exp(x))


def log_likelihood(pairs: _Pairs, theta: list[float], prior: float) -> float:
    """Bradley–Terry log-likelihood (plus the prior's pseudo-comparisons) at log-strengths `theta`."""
    total = 0.0
    for i in range(pairs.k):
        total += (pairs.wins[i] + prior / 2.0) * theta[i] - prior * _log1pexp(theta[i])
        for j, n_ij in pairs.nbrs[i]:
            if j > i:
                d = theta[i] - theta[j]
                total -= n_ij * (theta[j] + _log1pexp(d))
    return total


def _cholesky_solve(a: list[list[float]], b: list[float]) -> list[float]:
    """Solve A x = b for a symmetric positive-definite A (Cholesky, in place on a copy)."""
    n = len(b)
    low = [[0.0] * n for _ in range(n)]
    for i in range(n):
        row_i = low[i]
        for j in range(i + 1):
            row_j = low[j]
            s = a[i][j] - sum(row_i[k] * row_j[k] for k in range(j))
            if i == j:
                row_i[i] = math.sqrt(max(s, 1e-300))
            else:
                row_i[j] = s / row_j[j]
    y = [0.0] * n
    for i in range(n):
        y[i] = (b[i] - sum(low[i][k] * y[k] for k in range(i))) / low[i][i]
    x = [0.0] * n
    for i in reversed(range(n)):
        x[i] = (y[i] - sum(low[k][i] * x[k] for k in range(i + 1, n))) / low[i][i]
    return x


def fit_bradley_terry(
    pairs: _Pairs,
    *,
    prior: float = 1.0,
    tol: float = 1e-10,
    max_iter: int = 100,
    init: list[float] | None = None,
) -> Fit:
    """Maximum (penalised) likelihood by Newton's method on the log-strengths, with step halving.

    The log-likelihood is concave; with `prior > 0` strictly, so the Newton system is positive definite.
    With `prior == 0` the likelihood is invariant to a common shift, so the last model is held at 0 while
    solving and the result is centred afterwards.
    """
    k = pairs.k
    theta = list(init) if init is not None else [0.0] * k
    free = k if prior > 0 else k - 1
    current = log_likelihood(pairs, theta, prior)
    converged = False
    it = 0
    while it < max_iter:
        it += 1
        grad = [pairs.wins[i] + prior / 2.0 - prior * _sigmoid(theta[i]) for i in range(k)]
        info = [[0.0] * k for _ in range(k)]  # minus the Hessian
        for i in range(k):
            s_i = _sigmoid(theta[i])
            info[i][i] += prior * s_i * (1.0 - s_i)
            for j, n_ij in pairs.nbrs[i]:
                s = _sigmoid(theta[i] - theta[j])
                grad[i] -= n_ij * s
                w = n_ij * s * (1.0 - s)
                info[i][i] += w
                info[i][j] -= w
        if free == 0:
            converged = True
            break
        sub = [row[:free] for row in info[:free]]
        for i in range(free):
            sub[i][i] += 1e-12  # a model with no comparisons and no prior would make the system singular
        step = _cholesky_solve(sub, grad[:free]) + [0.0] * (k - free)
        t = 1.0
        while True:
            cand = [max(-50.0, min(50.0, theta[i] + t * step[i])) for i in range(k)]
            value = log_likelihood(pairs, cand, prior)
            if value >= current - 1e-12 or t < 1e-6:
                break
            t /= 2.0
        moved = max((abs(c - x) for c, x in zip(cand, theta, strict=True)), default=0.0)
        theta, current = cand, value
        if moved < tol:
            converged = True
            break
    if prior == 0.0:
        mean = sum(theta) / k
        theta = [x - mean for x in theta]
    return Fit(theta, it, converged)


def _components(pairs: _Pairs) -> list[list[int]]:
    seen = [False] * pairs.k
    out = []
    for s in range(pairs.k):
        if seen[s]:
            continue
        stack, comp = [s], []
        seen[s] = True
        while stack:
            i = stack.pop()
            comp.append(i)
            for j, _ in pairs.nbrs[i]:
                if not seen[j]:
                    seen[j] = True
                    stack.append(j)
        out.append(sorted(comp))
    return out


def _quantile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between order statistics (numpy's default)."""
    if not sorted_values:
        return math.nan
    pos = q * (len(sorted_values) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


@dataclass
class ModelScore:
    model: str
    elo: float
    ci_low: float
    ci_high: float
    se: float
    comparisons: int
    wins: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "elo": round(self.elo, 2),
            "ci_low": round(self.ci_low, 2),
            "ci_high": round(self.ci_high, 2),
            "se": round(self.se, 2),
            "comparisons": self.comparisons,
            "wins": round(self.wins, 4),
            "win_rate": round(self.wins / self.comparisons, 4) if self.comparisons else None,
        }


@dataclass
class CriterionResult:
    criterion: str
    comparisons: int
    anchor: str
    models: list[ModelScore]
    iterations: int
    converged: bool
    components: list[list[str]] = field(default_factory=list)

    def score(self, model: str) -> ModelScore:
        for m in self.models:
            if m.model == model:
                return m
        raise KeyError(model)

    def to_dict(self) -> dict[str, Any]:
        return {
            "comparisons": self.comparisons,
            "anchor": self.anchor,
            "converged": self.converged,
            "iterations": self.iterations,
            "components": self.components,
            "models": [m.to_dict() for m in self.models],
        }


@dataclass(frozen=True)
class EloSettings:
    bootstrap: int = 1000
    ci: float = 0.95
    seed: int = 0
    prior: float = 1.0
    anchor: str | None = None  # None: the mean of the criterion's models is 0

    def check(self) -> None:
        if not 0.0 < self.ci < 1.0:
            raise UsageError(f"--ci {self.ci}: must be between 0 and 1 (e.g. 0.95)")
        if self.bootstrap < 0:
            raise UsageError("--bootstrap must be >= 0")
        if self.prior < 0:
            raise UsageError("--prior must be >= 0")


def _anchored(log_strength: list[float], anchor_index: int | None) -> list[float]:
    elo = [x * ELO_PER_NAT for x in log_strength]
    zero = elo[anchor_index] if anchor_index is not None else sum(elo) / len(elo)
    return [e - zero for e in elo]


def fit_criterion(criterion: str, judgments: Sequence[Judgment], settings: EloSettings) -> CriterionResult:
    """Elo scores and bootstrap intervals for one criterion's judgments."""
    settings.check()
    models = sorted({j.model_a for j in judgments} | {j.model_b for j in judgments})
    if not models:
        raise UsageError(f"criterion {criterion!r}: no judgments")
    index = {m: i for i, m in enumerate(models)}
    anchor_index: int | None = None
    if settings.anchor is not None:
        if settings.anchor not in index:
            raise UsageError(
                f"--anchor {settings.anchor!r} is not among the models judged on {criterion!r}",
                hint="models: " + ", ".join(models),
            )
        anchor_index = index[settings.anchor]
    rows = [(index[j.model_a], index[j.model_b], j.p_a) for j in judgments]
    pairs = _Pairs.build(len(models), rows)
    components = _components(pairs)
    if settings.prior == 0.0:
        _check_mle_exists(models, pairs, components)
    fit = fit_bradley_terry(pairs, prior=settings.prior, init=None)
    point = _anchored(fit.log_strength, anchor_index)

    rng = random.Random(f"caitool:elo:{settings.seed}:{criterion}")
    samples: list[list[float]] = [[] for _ in models]
    n = len(rows)
    for _ in range(settings.bootstrap):
        resampled = [rows[i] for i in rng.choices(range(n), k=n)]
        b = fit_bradley_terry(
            _Pairs.build(len(models), resampled), prior=settings.prior, tol=1e-7, init=fit.log_strength
        )
        for i, e in enumerate(_anchored(b.log_strength, anchor_index)):
            samples[i].append(e)

    alpha = (1.0 - settings.ci) / 2.0
    scores = []
    for i, m in enumerate(models):
        s = sorted(samples[i])
        if s:
            lo, hi = _quantile(s, alpha), _quantile(s, 1.0 - alpha)
            se = statistics.pstdev(s) if len(s) > 1 else 0.0
        else:
            lo = hi = point[i]
            se = 0.0
        scores.append(ModelScore(m, point[i], lo, hi, se, pairs.games[i], pairs.wins[i]))
    scores.sort(key=lambda s: (-s.elo, s.model))
    return CriterionResult(
        criterion=criterion,
        comparisons=n,
        anchor=settings.anchor or "mean",
        models=scores,
        iterations=fit.iterations,
        converged=fit.converged,
        components=[[models[i] for i in c] for c in components],
    )


def _check_mle_exists(models: list[str], pairs: _Pairs, components: list[list[int]]) -> None:
    hint = "use --prior 1 (the default) for a weakly regularised fit"
    if len(components) > 1:
        raise UsageError(
            "--prior 0: the comparison graph is not connected, so the groups' Elo are not comparable",
            hint=hint,
        )
    for i, m in enumerate(models):
        if pairs.wins[i] <= 0.0 or pairs.wins[i] >= pairs.games[i]:
            what = "never won" if pairs.wins[i] <= 0.0 else "never lost"
            raise UsageError(f"--prior 0: {m!r} {what}, so its maximum-likelihood Elo is infinite", hint=hint)


def fit_all(judgments: Sequence[Judgment], settings: EloSettings) -> dict[str, CriterionResult]:
    """One independent scale per criterion, in order of first appearance."""
    by: dict[str, list[Judgment]] = {}
    for j in judgments:
        by.setdefault(j.criterion, []).append(j)
    return {c: fit_criterion(c, js, settings) for c, js in by.items()}


def win_probability(elo_i: float, elo_j: float) -> float:
    """P(i beats j) on the Elo scale."""
    return 1.0 / (1.0 + 10.0 ** ((elo_j - elo_i) / 400.0))


def report(results: dict[str, CriterionResult], settings: EloSettings) -> dict[str, Any]:
    """The JSON document `caitool elo` prints (and `caitool plot elo` reads)."""
    from caitool import __version__

    return {
        "caitool": {"command": "elo", "version": __version__},
        "method": "bradley-terry (maximum likelihood, Newton)",
        "scale": "elo: 400*log10(strength); only differences are meaningful",
        "anchor": settings.anchor or "mean",
        "prior": settings.prior,
        "ci": settings.ci,
        "bootstrap": settings.bootstrap,
        "seed": settings.seed,
        "criteria": {c: r.to_dict() for c, r in results.items()},
    }
