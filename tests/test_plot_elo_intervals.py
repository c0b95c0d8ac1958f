"""`caitool plot elo` on any report: an interval that does not contain its point (a percentile bootstrap can
produce one) is drawn where it is; a report that is not a set of intervals is a usage error (exit 2) naming
the criterion and model. Never a traceback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from caitool.evaluation.plot import draw_elo, elo_points
from tests.conftest import run_cli

pytest.importorskip("matplotlib")


def report(help_scores: list[dict[str, Any]], harm_scores: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "criteria": {
            "helpfulness": {"anchor": "mean", "models": help_scores},
            "harmlessness": {"anchor": "mean", "models": harm_scores},
        }
    }


def s(model: str, elo: Any, low: Any, high: Any) -> dict[str, Any]:
    return {"model": model, "elo": elo, "ci_low": low, "ci_high": high}


# m@2's helpfulness interval [12, 20] lies right of its Elo 10; its harmlessness interval [-30, -5] below 0.
MISSED = report(
    [s("m@1", 0.0, -5.0, 5.0), s("m@2", 10.0, 12.0, 20.0)],
    [s("m@1", 1.0, -4.0, 6.0), s("m@2", 0.0, -30.0, -5.0)],
)


def test_an_interval_that_misses_its_point_is_drawn_where_it_is() -> None:
    from matplotlib.container import ErrorbarContainer

    fig = draw_elo(elo_points(MISSED))
    (container,) = [c for c in fig.axes[0].containers if isinstance(c, ErrorbarContainer)]
    line, caps, (xbars, ybars) = container.lines
    assert list(line.get_xdata()) == [0.0, 10.0] and list(line.get_ydata()) == [1.0, 0.0]
    assert [seg.tolist() for seg in xbars.get_segments()] == [
        [[-5.0, 1.0], [5.0, 1.0]],
        [[12.0, 0.0], [20.0, 0.0]],
    ]
    assert [seg.tolist() for seg in ybars.get_segments()] == [
        [[0.0, -4.0], [0.0, 6.0]],
        [[10.0, -30.0], [10.0, -5.0]],
    ]
    assert [list(c.get_xdata()) for c in caps[:2]] == [[-5.0, 12.0], [5.0, 20.0]]
    assert [list(c.get_ydata()) for c in caps[2:]] == [[-4.0, -30.0], [6.0, -5.0]]


def test_cli_draws_a_report_whose_interval_misses_its_point(tmp_path: Path) -> None:
    src = tmp_path / "elo.json"
    src.write_text(json.dumps(MISSED))
    r = run_cli("plot", "elo", str(src), "-o", str(tmp_path / "fig.png"))
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and (tmp_path / "fig.png").read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        (s("m@2", 10.0, 20.0, 12.0), "ci_low 20.0 is above ci_high 12.0"),
        (s("m@2", float("nan"), 0.0, 1.0), "elo is nan"),
        ({"model": "m@2", "elo": 1.0, "ci_low": 0.0}, "ci_high is None"),
        (s("m@2", "high", 0.0, 1.0), "elo is 'high'"),
    ],
    ids=["reversed", "nan", "missing", "text"],
)
def test_a_report_that_is_not_intervals_is_a_usage_error(
    tmp_path: Path, entry: dict[str, Any], says: str
) -> None:
    src = tmp_path / "elo.json"
    src.write_text(json.dumps(report([s("m@1", 0.0, -5.0, 5.0), entry], [s("m@1", 0.0, -1.0, 1.0)])))
    r = run_cli("plot", "elo", str(src), "-o", str(tmp_path / "fig.png"))
    assert r.returncode == 2, r.stderr
    assert says in r.stderr and "helpfulness" in r.stderr and "m@2" in r.stderr
    assert "Traceback" not in r.stderr
