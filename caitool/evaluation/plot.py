"""Figures: harmlessness Elo against helpfulness Elo per model family (the paper's Fig. 2), and labeler
calibration (Fig. 9).

Model names carry family and checkpoint as `family@step` (`rl-cai@500`, `hh-rlhf@ckpt-3`); a name without `@`
is a family of one point. A family's points are joined in training order: steps compare as numbers where they
are numbers (`rl-cai@90` before `rl-cai@500`), digit runs inside text compare numerically (`ckpt-2` before
`ckpt-10`), and a name without a step comes first (the starting point, e.g. the SL-CAI model a run starts
from, when it is named `rl-cai` or `rl-cai@0`).

The data of a figure is computed by pure functions (`elo_points`, `calibration_points`) and written as JSON
beside the image; matplotlib (the `plot` extra) is imported only to draw, without pyplot, so no GUI backend is
ever needed.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from caitool.errors import UsageError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FORMATS = ("png", "svg", "pdf")
_DIGITS = re.compile(r"(\d+(?:\.\d+)?)")


def split_checkpoint(model: str) -> tuple[str, str | None]:
    """`family@step` → (family, step); a name without `@` → (name, None). Splits at the last `@`."""
    family, sep, step = model.rpartition("@")
    if not sep or not family or not step:
        return model, None
    return family, step


def step_key(step: str | None) -> tuple[Any, ...]:
    """Training order: no step first, then numeric steps by value, then text with digit runs as numbers."""
    if step is None:
        return (0,)
    try:
        return (1, float(step))
    except ValueError:
        parts = _DIGITS.split(step)
        return (2, tuple((1, float(p)) if i % 2 else (0, p) for i, p in enumerate(parts)))


@dataclass
class Point:
    model: str
    step: str | None
    x: float
    x_low: float
    x_high: float
    y: float
    y_low: float
    y_high: float

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class EloPlotData:
    x_criterion: str
    y_criterion: str
    families: dict[str, list[Point]]
    missing: dict[str, list[str]] = field(default_factory=dict)  # criterion -> models absent from it

    def to_dict(self) -> dict[str, Any]:
        return {
            "x": self.x_criterion,
            "y": self.y_criterion,
            "families": {f: [p.to_dict() for p in pts] for f, pts in self.families.items()},
            "missing": self.missing,
        }


def _scores(report: dict[str, Any], criterion: str) -> dict[str, dict[str, Any]]:
    criteria = report.get("criteria")
    if not isinstance(criteria, dict):
        raise UsageError("not an Elo report: no 'criteria' (make one with `caitool elo JUDGMENTS`)")
    if criterion not in criteria:
        raise UsageError(
            f"criterion {criterion!r} is not in the Elo report",
            hint="criteria there: " + ", ".join(criteria) + " (choose with --x / --y)",
        )
    entry = criteria[criterion]
    models = entry.get("models") if isinstance(entry, dict) else None
    if not isinstance(models, list):
        raise UsageError(f"Elo report, {criterion}: no 'models' list")
    return {str(m["model"]): m for m in (_checked_score(x, criterion) for x in models)}


def _checked_score(m: Any, criterion: str) -> dict[str, Any]:
    """A model's score: finite elo, ci_low and ci_high, ci_low <= ci_high; a clear UsageError otherwise (hand-
    edited or foreign reports reach here too). An interval that does not contain its point is valid: a
    percentile bootstrap of skewed resamples can miss the full-data estimate; `draw_elo` draws it as it is."""
    name = m.get("model") if isinstance(m, dict) else None
    where = f"Elo report, {criterion}, model {name!r}"
    if not isinstance(m, dict) or name is None:
        raise UsageError(f"Elo report, {criterion}: a model entry without a 'model' name")
    for key in ("elo", "ci_low", "ci_high"):
        v = m.get(key)
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise UsageError(f"{where}: {key} is {v!r}, not a finite number")
    if m["ci_low"] > m["ci_high"]:
        raise UsageError(f"{where}: ci_low {m['ci_low']} is above ci_high {m['ci_high']}: not an interval")
    return m


def elo_points(report: dict[str, Any], x: str = "helpfulness", y: str = "harmlessness") -> EloPlotData:
    """The points of the Elo-vs-Elo figure from a `caitool elo` report: models scored on both criteria,
    grouped by family, each family in training order."""
    xs, ys = _scores(report, x), _scores(report, y)
    families: dict[str, list[Point]] = {}
    for model in sorted(set(xs) & set(ys)):
        family, step = split_checkpoint(model)
        mx, my = xs[model], ys[model]
        families.setdefault(family, []).append(
            Point(model, step, mx["elo"], mx["ci_low"], mx["ci_high"], my["elo"], my["ci_low"], my["ci_high"])
        )
    for pts in families.values():
        pts.sort(key=lambda p: step_key(p.step))
    missing = {
        x: sorted(set(ys) - set(xs)),
        y: sorted(set(xs) - set(ys)),
    }
    return EloPlotData(x, y, dict(sorted(families.items())), {k: v for k, v in missing.items() if v})


def _matplotlib_figure() -> Figure:
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise UsageError(
            "plotting needs matplotlib", hint="pip install 'caitool[plot]' (or: pip install matplotlib)"
        ) from None
    return Figure(figsize=(6.4, 4.8), layout="constrained")


def draw_elo(data: EloPlotData, *, title: str | None = None, annotate: bool = False) -> Figure:
    """One errorbar line per family (label = family), a point per checkpoint in training order; error bars
    are the bootstrap intervals on both axes."""
    fig = _matplotlib_figure()
    ax = fig.add_subplot()
    for family, pts in data.families.items():
        # errorbar takes lengths either side of the point, which must be >= 0; an interval that misses its
        # point (see _checked_score) is drawn from clipped lengths, then its bar and caps are moved onto the
        # interval's true ends.
        container = ax.errorbar(
            [p.x for p in pts],
            [p.y for p in pts],
            xerr=[[max(0.0, p.x - p.x_low) for p in pts], [max(0.0, p.x_high - p.x) for p in pts]],
            yerr=[[max(0.0, p.y - p.y_low) for p in pts], [max(0.0, p.y_high - p.y) for p in pts]],
            marker="o",
            markersize=4,
            capsize=2,
            linewidth=1.5,
            elinewidth=0.8,
            label=family,
        )
        if any(not (p.x_low <= p.x <= p.x_high and p.y_low <= p.y <= p.y_high) for p in pts):
            _, caps, (xbars, ybars) = container.lines
            xbars.set_segments([[(p.x_low, p.y), (p.x_high, p.y)] for p in pts])
            ybars.set_segments([[(p.x, p.y_low), (p.x, p.y_high)] for p in pts])
            caps[0].set_xdata([p.x_low for p in pts])
            caps[1].set_xdata([p.x_high for p in pts])
            caps[2].set_ydata([p.y_low for p in pts])
            caps[3].set_ydata([p.y_high for p in pts])
        if annotate:
            for p in pts:
                if p.step is not None:
                    ax.annotate(p.step, (p.x, p.y), textcoords="offset points", xytext=(4, 4), fontsize=7)
    ax.set_xlabel(f"{data.x_criterion.capitalize()} Elo")
    ax.set_ylabel(f"{data.y_criterion.capitalize()} Elo")
    ax.set_title(title or f"{data.y_criterion.capitalize()} vs {data.x_criterion} Elo")
    ax.grid(True, alpha=0.3)
    if data.families:
        ax.legend(fontsize=8)
    return fig


def calibration_points(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The non-empty bins of an `eval-labeler` report's calibration curve."""
    curve = report.get("calibration", {}).get("bins")
    if not isinstance(curve, list):
        raise UsageError("not an eval-labeler report: no 'calibration.bins'")
    return [b for b in curve if b.get("count")]


def draw_calibration(report: dict[str, Any], *, title: str | None = None) -> Figure:
    """Reliability diagram: accuracy against mean confidence per bin, with the diagonal of perfect
    calibration; the marker size grows with the bin's count."""
    bins = calibration_points(report)
    fig = _matplotlib_figure()
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfect calibration")
    total = sum(b["count"] for b in bins) or 1
    ax.plot(
        [b["confidence"] for b in bins],
        [b["accuracy"] for b in bins],
        marker="o",
        label="labeler",
    )
    ax.scatter(
        [b["confidence"] for b in bins],
        [b["accuracy"] for b in bins],
        s=[20 + 400 * b["count"] / total for b in bins],
        alpha=0.3,
    )
    ece = report.get("calibration", {}).get("ece")
    ax.set_xlabel("Confidence (probability of the chosen option)")
    ax.set_ylabel("Accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    heading = title or "Labeler calibration"
    if isinstance(ece, int | float):
        heading += f" (ECE {ece:.3f})"
    ax.set_title(heading)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    return fig


def image_format(path: str) -> str:
    fmt = Path(path).suffix.lower().lstrip(".")
    if fmt not in FORMATS:
        raise UsageError(f"-o {path}: the file name must end in " + ", ".join("." + f for f in FORMATS))
    return fmt


def save(fig: Figure, path: str, data: dict[str, Any]) -> Path:
    """Write the image (format from the suffix) and its data as JSON beside it (`PATH.json`)."""
    fmt = image_format(path)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format=fmt, dpi=150)
    side = out.with_name(out.name + ".json")
    side.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return side
