"""`caitool elo`: Bradley–Terry / Elo with bootstrap intervals, checked against comparisons drawn from known
strengths, and through the real CLI."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from caitool.errors import InputError, UsageError
from caitool.evaluation.elo import EloSettings, fit_all, fit_criterion, win_probability
from caitool.evaluation.judgments import Judgment, parse_judgment
from caitool.inputs import Line
from tests.conftest import run_cli, write_jsonl

TRUE = {"sl-cai": 0.0, "rl-cai@100": 120.0, "rl-cai@200": 260.0, "helpful-rlhf": -180.0}


def draw(true: dict[str, float], per_pair: int, seed: int, criterion: str = "harmlessness") -> list[Judgment]:
    """Hard judgments sampled from the Bradley–Terry model with the given Elo scores."""
    rng = random.Random(seed)
    out = []
    names = sorted(true)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            p = win_probability(true[a], true[b])
            for k in range(per_pair):
                first, second = (a, b) if k % 2 else (b, a)  # both seat orders
                won = rng.random() < p
                p_a = 1.0 if won == (first == a) else 0.0
                out.append(Judgment(criterion, first, second, p_a))
    return out


def test_recovers_order_and_true_spacing_lies_within_intervals() -> None:
    judgments = draw(TRUE, per_pair=150, seed=11)
    r = fit_criterion("harmlessness", judgments, EloSettings(bootstrap=400, anchor="sl-cai", seed=3))
    assert [m.model for m in r.models] == sorted(TRUE, key=lambda m: -TRUE[m])
    for m in r.models:
        assert m.ci_low <= TRUE[m.model] <= m.ci_high, (m, TRUE[m.model])
        assert m.ci_low <= m.elo <= m.ci_high
        if m.model != "sl-cai":
            assert 40 < m.ci_high - m.ci_low < 200  # informative, not vacuous
    anchor = r.score("sl-cai")
    assert anchor.elo == 0.0 and anchor.ci_low == 0.0 and anchor.ci_high == 0.0


def test_interval_coverage_over_many_synthetic_datasets() -> None:
    # 95% intervals should hold the true spacing about 95% of the time; vacuous intervals are ruled out by
    # their width, too-narrow ones by the coverage.
    hits = total = 0
    widths = []
    for seed in range(12):
        r = fit_criterion(
            "h", draw(TRUE, 60, seed, "h"), EloSettings(bootstrap=120, anchor="sl-cai", seed=seed)
        )
        for m in r.models:
            if m.model == "sl-cai":
                continue
            total += 1
            hits += m.ci_low <= TRUE[m.model] <= m.ci_high
            widths.append(m.ci_high - m.ci_low)
    assert hits / total >= 0.85, (hits, total)
    assert sum(widths) / len(widths) < 250


def test_soft_labels_at_the_true_probability_recover_the_exact_spacing() -> None:
    names = sorted(TRUE)
    judgments = [
        Judgment("h", a, b, win_probability(TRUE[a], TRUE[b])) for a in names for b in names if a != b
    ]
    r = fit_criterion("h", judgments, EloSettings(bootstrap=0, prior=0.0))
    mean = sum(TRUE.values()) / len(TRUE)
    for m in r.models:
        assert m.elo == pytest.approx(TRUE[m.model] - mean, abs=0.01)
    assert r.converged


def test_more_data_gives_narrower_intervals() -> None:
    s = EloSettings(bootstrap=200, anchor="sl-cai")
    small = fit_criterion("h", draw(TRUE, 30, 1), s).score("rl-cai@200")
    large = fit_criterion("h", draw(TRUE, 480, 1), s).score("rl-cai@200")
    assert (large.ci_high - large.ci_low) < 0.5 * (small.ci_high - small.ci_low)


def test_each_criterion_has_its_own_scale() -> None:
    harm = draw(TRUE, 40, 5, "harmlessness")
    flipped = {m: -e for m, e in TRUE.items()}
    helpful = draw(flipped, 40, 6, "helpfulness")
    results = fit_all(harm + helpful, EloSettings(bootstrap=0))
    assert list(results) == ["harmlessness", "helpfulness"]
    assert results["harmlessness"].models[0].model == "rl-cai@200"
    assert results["helpfulness"].models[0].model == "helpful-rlhf"
    assert results["harmlessness"].comparisons == len(harm)


def test_prior_keeps_a_model_that_never_won_finite_and_prior_zero_refuses() -> None:
    js = [Judgment("h", "a", "b", 1.0)] * 5 + [Judgment("h", "b", "c", 0.5)] * 4
    r = fit_criterion("h", js, EloSettings(bootstrap=50))
    assert all(abs(m.elo) < 1000 for m in r.models)
    assert r.models[0].model == "a" and r.models[-1].model == "b"
    with pytest.raises(UsageError, match="never lost"):
        fit_criterion("h", js, EloSettings(bootstrap=0, prior=0.0))


def test_cli_json_on_stdout_table_on_stderr(tmp_path: Path) -> None:
    rows = [
        {"criterion": j.criterion, "model_a": j.model_a, "model_b": j.model_b, "p_a": j.p_a, "source": "ai"}
        for j in draw(TRUE, 40, 2)
    ]
    # Hard labels as `winner` (human judgments) in the same file, on another criterion.
    rows += [
        {"criterion": "helpfulness", "model_a": "x", "model_b": "y", "winner": w, "source": "human"}
        for w in ["a", "A", "tie", "b", "x", "a"]
    ]
    src = write_jsonl(tmp_path / "j.jsonl", rows)
    r = run_cli("elo", str(src), "--bootstrap", "100", "--anchor", "sl-cai", "--criterion", "harmlessness")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert list(doc["criteria"]) == ["harmlessness"]
    harm = doc["criteria"]["harmlessness"]
    assert harm["anchor"] == "sl-cai" and harm["comparisons"] == 6 * 40
    assert [m["model"] for m in harm["models"]] == sorted(TRUE, key=lambda m: -TRUE[m])
    assert {"elo", "ci_low", "ci_high", "se", "comparisons", "wins", "win_rate"} <= set(harm["models"][0])
    assert "harmlessness: 240 comparisons" in r.stderr and "rl-cai@200" in r.stderr

    r = run_cli("elo", str(src), "--bootstrap", "0", "--source", "human")
    assert r.returncode == 0, r.stderr
    helpful = json.loads(r.stdout)["criteria"]["helpfulness"]
    x = next(m for m in helpful["models"] if m["model"] == "x")
    assert x["wins"] == pytest.approx(4.5) and x["comparisons"] == 6  # a, A, x win; tie is half


def test_bad_rows_are_named_with_file_and_line(tmp_path: Path) -> None:
    good = {"criterion": "h", "model_a": "a", "model_b": "b", "p_a": 0.7}
    for bad, message in [
        ({"criterion": "h", "model_a": "a", "model_b": "b", "p_a": 1.5}, "p_a"),
        ({"criterion": "h", "model_a": "a", "model_b": "b", "p_a": True}, "p_a"),
        ({"criterion": "h", "model_a": "a", "model_b": "a", "p_a": 0.5}, "same model"),
        ({"criterion": "h", "model_a": "a", "model_b": "b"}, "no judgment"),
        ({"criterion": "h", "model_a": "a", "model_b": "b", "winner": "c"}, "winner"),
        ({"criterion": "", "model_a": "a", "model_b": "b", "p_a": 1}, "criterion"),
        ({"model_b": "b", "p_a": 1}, "model_a"),
    ]:
        with pytest.raises(InputError, match=message) as err:
            parse_judgment(Line("j.jsonl:2", bad))
        assert str(err.value).startswith("j.jsonl:2: ")
    assert parse_judgment(Line("x:1", {"model_a": "a", "model_b": "b", "winner": "B"})).p_a == 0.0
    assert parse_judgment(Line("x:1", {"model_a": "a", "model_b": "b", "winner": "a"})).criterion == "overall"

    src = write_jsonl(tmp_path / "bad.jsonl", [good, {"criterion": "h", "model_a": "a", "model_b": "b"}])
    r = run_cli("elo", str(src), "-b", "0")
    assert r.returncode == 2, r.stderr
    assert f"{src}:2" in r.stderr and "no judgment" in r.stderr and "Traceback" not in r.stderr
    r = run_cli(
        "elo", str(src), "-b", "0", "--on-bad-input", "skip", "--rejects", str(tmp_path / "rej.jsonl")
    )
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["criteria"]["h"]["comparisons"] == 1
    assert "no judgment" in (tmp_path / "rej.jsonl").read_text()
    r = run_cli("elo", str(src), "-b", "0", "--anchor", "nobody", "--on-bad-input", "skip")
    assert r.returncode == 2 and "nobody" in r.stderr
