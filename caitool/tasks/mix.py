"""The paper's hybrid preference-model data (Bai et al. 2022, Sec. 4.1): AI-labelled harmlessness
comparisons mixed with human helpfulness comparisons (135,296 human + 182,831 AI in the paper).

Both inputs are read whole (shuffling needs them in memory); each row keeps `caitool.label_source`
("human" for human comparisons, whose label is hard: p_chosen = 1, with a finite `margin`, see
DEFAULT_HUMAN_MARGIN) and `caitool.mix_source` (file:line).
The output is written whole, with a manifest like every other command's: a rerun with the same inputs and
settings rewrites the same rows, and one with other inputs or settings is refused unless `overwrite`.
"""

from __future__ import annotations

import hashlib
import math
import random
import sys
from pathlib import Path
from typing import Any

from caitool.errors import InputError, UsageError
from caitool.inputs import pair_item, read_lines
from caitool.labels import logit
from caitool.pipeline import RunSpec, redact_argv, versions
from caitool.store import OutputStore, RunFiles, refuse_aliases


def parse_ratio(ratio: str | None) -> tuple[float, float] | None:
    if ratio is None:
        return None
    try:
        a, h = (float(x) for x in ratio.split(":"))
    except ValueError:
        raise UsageError(f"--ratio {ratio!r}: expected AI:HUMAN, e.g. 1:1 or 182831:135296") from None
    if not (math.isfinite(a) and math.isfinite(h)) or a < 0 or h < 0 or a + h == 0:
        raise UsageError(f"--ratio {ratio!r}: parts must be finite, non-negative and not both zero")
    return a, h


def _ai_rows(path: str) -> list[dict[str, Any]]:
    rows = []
    for line in read_lines(path):
        if isinstance(line, InputError):
            raise line
        row = dict(line.data)
        for key in ("prompt", "chosen", "rejected", "p_chosen"):
            if key not in row:
                raise InputError(line.where, f"not a label-pairs row: missing {key!r}")
        meta = dict(row.get("caitool") or {})
        meta["mix_source"] = line.where
        row["caitool"] = meta
        rows.append(row)
    return rows


# The `margin` of a human comparison (`train-pm --loss margin`, OpenRLHF's margin loss). Its p_chosen is 1.0,
# the paper's hard label, but logit(1.0) is ~13.8 at the clamp, which would make every human row demand a
# reward gap several times any AI label's (logit(0.99) = 4.6) and dominate the loss: it counts as a 95 % one.
DEFAULT_HUMAN_MARGIN = round(logit(0.95), 4)


def _human_rows(path: str, margin: float) -> list[dict[str, Any]]:
    rows = []
    for line in read_lines(path):
        if isinstance(line, InputError):
            raise line
        rid, item = pair_item(line)  # response_a = the human-preferred ("chosen") response
        rows.append(
            {
                "id": f"human-{rid}",
                "prompt": [m.to_dict() for m in item.messages],
                "chosen": [{"role": "assistant", "content": item.response_a}],
                "rejected": [{"role": "assistant", "content": item.response_b}],
                "p_chosen": 1.0,
                "margin": margin,
                "caitool": {"label_source": "human", "mix_source": line.where},
            }
        )
    return rows


def mix_preferences(
    ai_path: str,
    human_path: str,
    ratio: str | None,
    seed: int,
    human_margin: float = DEFAULT_HUMAN_MARGIN,
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    if not math.isfinite(human_margin) or human_margin < 0:
        raise UsageError(f"--human-margin {human_margin}: must be a finite number >= 0")
    ai, human = _ai_rows(ai_path), _human_rows(human_path, human_margin)
    rng = random.Random(f"caitool-mix:{seed}")
    rng.shuffle(ai)
    rng.shuffle(human)
    parts = parse_ratio(ratio)
    if parts is not None:
        a, h = parts
        # The largest mix with exactly the stated proportions that both inputs can supply.
        if h == 0:
            human = []
        elif a == 0:
            ai = []
        else:
            scale = min(len(ai) / a, len(human) / h)
            ai, human = ai[: round(a * scale)], human[: round(h * scale)]
    # The two sources may share ids (the same prompt labelled by AI and by people): keep both.
    rows = ai + human
    rng.shuffle(rows)
    return rows, {"ai": len(ai), "human": len(human)}


def _file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_mix(
    rows: list[dict[str, Any]],
    summary: dict[str, int],
    *,
    output: str | None,
    ai_path: str,
    human_path: str,
    ratio: str | None,
    seed: int,
    overwrite: bool,
    human_margin: float = DEFAULT_HUMAN_MARGIN,
) -> None:
    """The mixed rows to `output` (stdout for None or "-"), with a manifest; the inputs' contents join the
    settings, so a rerun over other data is refused like one with another ratio or seed."""
    files = RunFiles.for_output(output)
    refuse_aliases({"--ai": ai_path, "--human": human_path, **files.roles()})
    run = RunSpec(
        command="mix",
        input=ai_path,
        output=output,
        settings={
            "ratio": ratio,
            "seed": seed,
            "ai_sha256": None if ai_path == "-" else _file_sha256(ai_path),
            "human_sha256": None if human_path == "-" else _file_sha256(human_path),
            # Only when set: the default keeps the fingerprint of earlier outputs, which a rerun rewrites
            # whole (a mix output is never appended to, so old and new margins cannot share a file).
            **({"human_margin": human_margin} if human_margin != DEFAULT_HUMAN_MARGIN else {}),
        },
    )
    manifest = {
        "command": "mix",
        "input": {"ai": ai_path, "human": human_path},
        "output": output or "-",
        "settings": run.settings,
        "versions": versions(),
        "argv": redact_argv(sys.argv[1:]),
    }
    store = OutputStore(files, run.fingerprint(), manifest, overwrite=overwrite)
    store.replace_output(rows, counts={"done": len(rows), **summary})
