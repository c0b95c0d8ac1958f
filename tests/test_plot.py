"""`caitool plot elo`: the paper's Fig. 2 from an Elo report. The figure's data is read back from the
matplotlib objects (lines and error-bar segments), not from pixels."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from caitool.evaluation.plot import draw_calibration, draw_elo, elo_points, split_checkpoint, step_key
from tests.conftest import run_cli

pytest.importorskip("matplotlib")


def score(model: str, elo: float, half: float) -> dict[str, Any]:
    return {"model": model, "elo": elo, "ci_low": elo - half, "ci_high": elo + 2 * half}


# Checkpoints deliberately listed out of training order; `sl-cai` is scored on one criterion only.
HELP = [
    score("rl-cai@1000", 60.0, 10),
    score("rl-cai@100", 20.0, 8),
    score("rl-cai@500", 45.0, 9),
    score("hh-rlhf@ckpt-10", 90.0, 12),
    score("hh-rlhf@ckpt-2", 30.0, 7),
    score("helpful-only", 100.0, 15),
    score("sl-cai", 0.0, 5),
]
HARM = [
    score("rl-cai@1000", 140.0, 11),
    score("rl-cai@100", 40.0, 6),
    score("rl-cai@500", 95.0, 10),
    score("hh-rlhf@ckpt-10", 50.0, 9),
    score("hh-rlhf@ckpt-2", 20.0, 5),
    score("helpful-only", -80.0, 20),
]
REPORT = {
    "criteria": {
        "helpfulness": {"anchor": "mean", "models": HELP},
        "harmlessness": {"anchor": "mean", "models": HARM},
    }
}


def test_checkpoint_names_and_training_order() -> None:
    assert split_checkpoint("rl-cai@500") == ("rl-cai", "500")
    assert split_checkpoint("org/model@v2@ckpt-3") == ("org/model@v2", "ckpt-3")
    assert split_checkpoint("sl-cai") == ("sl-cai", None)
    steps = ["1000", "ckpt-10", None, "90", "ckpt-2", "2.5"]
    assert sorted(steps, key=step_key) == [None, "2.5", "90", "1000", "ckpt-2", "ckpt-10"]


def test_figure_has_one_line_per_family_with_points_in_order_and_error_bars() -> None:
    from matplotlib.container import ErrorbarContainer

    data = elo_points(REPORT)
    assert data.missing == {"harmlessness": ["sl-cai"]}
    fig = draw_elo(data)
    (ax,) = fig.axes
    assert ax.get_xlabel() == "Helpfulness Elo" and ax.get_ylabel() == "Harmlessness Elo"
    containers = {c.get_label(): c for c in ax.containers if isinstance(c, ErrorbarContainer)}
    assert sorted(containers) == ["helpful-only", "hh-rlhf", "rl-cai"]
    help_ = {m["model"]: m for m in HELP}
    harm = {m["model"]: m for m in HARM}
    expected_order = {
        "rl-cai": ["rl-cai@100", "rl-cai@500", "rl-cai@1000"],
        "hh-rlhf": ["hh-rlhf@ckpt-2", "hh-rlhf@ckpt-10"],
        "helpful-only": ["helpful-only"],
    }
    for family, models in expected_order.items():
        line, _caps, (xbars, ybars) = containers[family].lines
        assert list(line.get_xdata()) == [help_[m]["elo"] for m in models]
        assert list(line.get_ydata()) == [harm[m]["elo"] for m in models]
        # Horizontal bars: the helpfulness interval at the point's harmlessness Elo; vertical: the reverse.
        for seg, m in zip(xbars.get_segments(), models, strict=True):
            assert seg.tolist() == [
                [help_[m]["ci_low"], harm[m]["elo"]],
                [help_[m]["ci_high"], harm[m]["elo"]],
            ]
        for seg, m in zip(ybars.get_segments(), models, strict=True):
            assert seg.tolist() == [
                [help_[m]["elo"], harm[m]["ci_low"]],
                [help_[m]["elo"], harm[m]["ci_high"]],
            ]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == sorted(expected_order)


def test_calibration_figure_reads_back() -> None:
    report = {
        "calibration": {
            "ece": 0.1,
            "bins": [
                {"lo": 0.5, "hi": 0.6, "count": 4, "confidence": 0.55, "accuracy": 0.5},
                {"lo": 0.6, "hi": 0.7, "count": 0, "confidence": None, "accuracy": None},
                {"lo": 0.9, "hi": 1.0, "count": 6, "confidence": 0.95, "accuracy": 0.8},
            ],
        }
    }
    fig = draw_calibration(report)
    (ax,) = fig.axes
    _diagonal, curve = ax.get_lines()
    assert list(curve.get_xdata()) == [0.55, 0.95] and list(curve.get_ydata()) == [0.5, 0.8]
    assert "ECE 0.100" in ax.get_title()


@pytest.mark.parametrize("suffix", ["png", "svg"])
def test_cli_renders_the_image_and_writes_its_data_beside_it(tmp_path: Path, suffix: str) -> None:
    src = tmp_path / "elo.json"
    src.write_text(json.dumps(REPORT))
    out = tmp_path / f"fig2.{suffix}"
    r = run_cli("plot", "elo", str(src), "-o", str(out), "--annotate")
    assert r.returncode == 0, r.stderr
    body = out.read_bytes()
    if suffix == "png":
        assert body.startswith(b"\x89PNG\r\n\x1a\n") and len(body) > 10_000
    else:
        assert b"<svg" in body[:2000] and b"rl-cai" in body  # the legend is text in the SVG
    data = json.loads((tmp_path / f"fig2.{suffix}.json").read_text())
    assert [p["model"] for p in data["families"]["rl-cai"]] == ["rl-cai@100", "rl-cai@500", "rl-cai@1000"]
    assert data["x"] == "helpfulness" and data["y"] == "harmlessness"
    assert "sl-cai" in r.stderr  # left out: not scored on harmlessness


def test_cli_from_elo_through_a_pipe(tmp_path: Path) -> None:
    rows = []
    for crit, order in [("helpfulness", ["m@1", "m@2", "n"]), ("harmlessness", ["n", "m@2", "m@1"])]:
        for i, a in enumerate(order):
            for b in order[i + 1 :]:
                rows += [{"criterion": crit, "model_a": a, "model_b": b, "p_a": 0.8}] * 10
    judgments = "".join(json.dumps(r) + "\n" for r in rows)
    r = run_cli("elo", "-", "-b", "50", input=judgments)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "fig.svg"
    r = run_cli("plot", "elo", "-", "-o", str(out), input=r.stdout)
    assert r.returncode == 0, r.stderr
    data = json.loads((tmp_path / "fig.svg.json").read_text())
    m = data["families"]["m"]
    assert [p["step"] for p in m] == ["1", "2"]
    assert m[0]["x"] > m[1]["x"] and m[0]["y"] < m[1]["y"]  # m@1 more helpful, m@2 more harmless


def test_cli_rejects_unknown_format_and_criterion(tmp_path: Path) -> None:
    src = tmp_path / "elo.json"
    src.write_text(json.dumps(REPORT))
    r = run_cli("plot", "elo", str(src), "-o", str(tmp_path / "fig.jpg"))
    assert r.returncode == 2 and ".png" in r.stderr
    r = run_cli("plot", "elo", str(src), "-o", str(tmp_path / "fig.png"), "--y", "honesty")
    assert r.returncode == 2 and "honesty" in r.stderr
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    r = run_cli("plot", "elo", str(bad), "-o", str(tmp_path / "fig.png"))
    assert r.returncode == 2 and f"{bad}:1" in r.stderr
