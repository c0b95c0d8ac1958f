"""The rows of an export: which kind each input file holds, the column layout of each kind, the prompt a row
belongs to (for splits), and the per-row facts the card summarises.

Kinds are recognised by shape, one kind per file (every caitool output has one schema):

    traces       critique-revise --format trace (and import-paper-samples): prompt, rounds, final_response
    sft          critique-revise --format sft: id, round, messages (the prompt, then the revision)
    preferences  label-pairs --format trl and mix: prompt, chosen, rejected, p_chosen, margin

Columns are the row's own, so TRL reads `preferences` and `sft` as they are. The per-row `caitool` metadata
(label details, usage, source) varies in shape between commands and versions, so it is kept whole as a JSON
string column rather than as a struct whose type would drift between files; its `source`/`mix_source`
paths keep only the file name (a local path says nothing to a reader and may name a user).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from caitool.errors import InputError, UsageError
from caitool.inputs import read_lines

KINDS = ("traces", "sft", "preferences")
KIND_TITLES = {
    "traces": "SL-CAI critique → revision traces",
    "sft": "SL-CAI supervised fine-tuning rows",
    "preferences": "RL-CAI preference pairs with soft AI labels",
}


@dataclass
class KindFile:
    """One input file's rows, all of one kind."""

    path: str
    kind: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)  # the prompt group of each row, for splits


def kind_of(row: dict[str, Any]) -> str | None:
    if "rounds" in row and "final_response" in row:
        return "traces"
    if "chosen" in row and "rejected" in row and "p_chosen" in row and "prompt" in row:
        return "preferences"
    if "messages" in row and "chosen" not in row:
        return "sft"
    return None


def _unrecognised(row: dict[str, Any]) -> str:
    if "chosen" in row and "prompt" not in row:
        return "a preference row without `prompt` (label-pairs --format openrlhf?): export reads --format trl"
    if "response_a" in row:
        return "an unlabelled pair (sample-pairs output): label it with label-pairs first"
    return "not a caitool trace, SFT or preference row"


def _short_source(value: Any) -> Any:
    """`/some/dir/file.jsonl:12` → `file.jsonl:12`."""
    return os.path.basename(value) if isinstance(value, str) else value


def _export_row(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    meta = out.get("caitool")
    if isinstance(meta, dict):
        meta = dict(meta)
        for key in ("source", "mix_source"):
            if key in meta:
                meta[key] = _short_source(meta[key])
        out["caitool"] = json.dumps(meta, ensure_ascii=False, sort_keys=True)
    elif "caitool" in out:
        out["caitool"] = json.dumps(meta, ensure_ascii=False)
    return out


def _first_human_turn(prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list):
        for message in prompt:
            if isinstance(message, dict) and message.get("role") == "user":
                return str(message.get("content", ""))
    return json.dumps(prompt, sort_keys=True)


def prompt_group(kind: str, row: dict[str, Any]) -> str:
    """Rows that share their first human turn are one group and never straddle two splits: the pairs of one
    prompt, the rounds of one trace, the `--per-turn` records of one conversation."""
    prompt = row["messages"][:-1] if kind == "sft" else row.get("prompt")
    text = " ".join(_first_human_turn(prompt).split())
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def read_kind_file(path: str) -> KindFile:
    found: KindFile | None = None
    for line in read_lines(path):
        if isinstance(line, InputError):
            raise line
        kind = kind_of(line.data)
        if kind is None:
            raise InputError(line.where, _unrecognised(line.data))
        if kind == "sft" and not (isinstance(line.data["messages"], list) and line.data["messages"]):
            raise InputError(line.where, "`messages` must be a non-empty list of messages")
        if found is None:
            found = KindFile(path, kind)
        elif kind != found.kind:
            raise InputError(line.where, f"a {kind} row in a file of {found.kind} rows")
        found.rows.append(_export_row(line.data))
        found.groups.append(prompt_group(kind, line.data))
    if found is None:
        raise UsageError(f"{path}: no rows to export")
    return found


def principle_counts(kind: str, rows: list[dict[str, Any]]) -> Counter[str]:
    """How often each principle was used: per round for traces and SFT rows, per question for labels."""
    counts: Counter[str] = Counter()
    for row in rows:
        if kind == "traces":
            counts.update(
                str(r.get("principle_id")) for r in row.get("rounds") or [] if r.get("principle_id")
            )
        elif kind == "sft" and row.get("principle_id"):
            counts[str(row["principle_id"])] += 1
        elif kind == "preferences":
            meta = json.loads(row["caitool"]) if isinstance(row.get("caitool"), str) else {}
            counts.update(str(p) for p in meta.get("principle_ids") or [])
    return counts


def label_sources(rows: list[dict[str, Any]]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for row in rows:
        meta = json.loads(row["caitool"]) if isinstance(row.get("caitool"), str) else {}
        counts[str(meta.get("label_source", "unknown"))] += 1
    return counts


def p_chosen_histogram(rows: list[dict[str, Any]], bins: int = 10) -> list[tuple[float, float, int]]:
    """Counts of p_chosen in `bins` equal bins over [0.5, 1.0] (p_chosen ≥ 0.5 by construction; the last bin
    includes 1.0, where human labels sit)."""
    width = 0.5 / bins
    counts = [0] * bins
    for row in rows:
        p = float(row["p_chosen"])
        counts[min(bins - 1, max(0, int((p - 0.5) / width)))] += 1
    return [(0.5 + i * width, 0.5 + (i + 1) * width, n) for i, n in enumerate(counts)]
