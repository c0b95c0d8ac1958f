"""Pairwise judgment rows: the input of `caitool elo`, written by people or by an AI labeler alike.

One JSON object per line (see docs/evaluation.md):

    {"criterion": "harmlessness", "model_a": "rl-cai@200", "model_b": "sl-cai", "p_a": 0.73}
    {"criterion": "helpfulness",  "model_a": "hh-rlhf@50", "model_b": "sl-cai", "winner": "b"}

- `criterion`: any string; each criterion gets its own Elo scale. Absent: `overall`.
- `model_a`, `model_b`: the two models (or checkpoints, `family@step`) that answered the same prompt.
- `p_a`: probability (or share of the vote) that A's answer is the better one, in [0, 1]. A soft label
  counts as `p_a` of a win for A and `1 - p_a` for B; 1.0 / 0.0 / 0.5 are a hard win, loss and tie.
- `winner`: `"a"`, `"b"` or `"tie"` (any case), or the name of one of the two models; used when `p_a` is
  absent. A row with both uses `p_a`.
Anything else (`id`, `prompt`, `source`, `principle_id`, `labeler`, ...) is carried along and ignored, except
`source`, which `--source` filters on (`human`, `ai`, ...).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from caitool.errors import InputError
from caitool.inputs import Line

DEFAULT_CRITERION = "overall"


@dataclass(frozen=True)
class Judgment:
    criterion: str
    model_a: str
    model_b: str
    p_a: float
    source: str | None = None


def _model(data: dict[str, Any], key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise InputError(where, f"field {key!r} must be a non-empty string (the model's name)")
    return value.strip()


def parse_judgment(line: Line) -> Judgment:
    """One input line → a `Judgment`, or an `InputError` naming file:line and what is wrong."""
    where, data = line.where, line.data
    a = _model(data, "model_a", where)
    b = _model(data, "model_b", where)
    if a == b:
        raise InputError(where, f"model_a and model_b are the same model ({a!r})")
    criterion = data.get("criterion", DEFAULT_CRITERION)
    if not isinstance(criterion, str) or not criterion.strip():
        raise InputError(where, "field 'criterion' must be a non-empty string")
    source = data.get("source")
    if source is not None and not isinstance(source, str):
        raise InputError(where, "field 'source' must be a string")
    if "p_a" in data and data["p_a"] is not None:
        p = data["p_a"]
        if isinstance(p, bool) or not isinstance(p, int | float) or math.isnan(p) or not 0.0 <= p <= 1.0:
            raise InputError(where, f"field 'p_a' must be a number in [0, 1], got {p!r}")
        p_a = float(p)
    elif "winner" in data:
        p_a = _winner(data["winner"], a, b, where)
    else:
        raise InputError(where, "no judgment: expected 'p_a' (a number in [0, 1]) or 'winner' (a, b or tie)")
    return Judgment(criterion.strip(), a, b, p_a, source)


def _winner(value: Any, a: str, b: str, where: str) -> float:
    if isinstance(value, str):
        v = value.strip()
        low = v.lower()
        if low in ("a", "(a)", "model_a"):
            return 1.0
        if low in ("b", "(b)", "model_b"):
            return 0.0
        if low in ("tie", "draw", "equal"):
            return 0.5
        if v == a:
            return 1.0
        if v == b:
            return 0.0
    raise InputError(where, f"field 'winner' must be 'a', 'b', 'tie' or one of the two models, got {value!r}")
