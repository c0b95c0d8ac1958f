"""Reading caitool's JSONL into the rows each trainer needs, with `file:line` errors. Pure Python, no torch.

Accepted inputs:

- SFT (`caitool sft`), one conversation per line, ending with the assistant turn to learn:
  - critique-revise `--format sft`: `{"id", "round", "messages": [...], "principle_id"?}`; with
    `--keep-rounds` there is one row per round, so `--rounds-kept N` keeps `round <= N` (SL-CAI-N: the
    revisions of rounds 1..N, as the paper fine-tunes on the revisions of every round);
  - critique-revise `--format trace`: `{"id", "prompt": [...], "initial_response", "rounds": [...],
    "final_response"}`; by default prompt + final_response, with `--rounds-kept N` one row per round k <= N
    (prompt + the response after round k);
  - helpfulness data for `--mix`: `{"messages": [...]}`, or `{"prompt": str | [...], "completion" or
    "response": str}`.
- Preference pairs (`caitool train-pm`, `caitool rl --algo dpo`): label-pairs output, i.e. TRL's
  conversational preference format `{"prompt": [...], "chosen": [...], "rejected": [...], "p_chosen"?,
  "margin"?}`; `prompt`, `chosen`, `rejected` may also be plain strings; without `prompt`, `chosen` and
  `rejected` are whole conversations sharing everything but the last (assistant) turn. Without `p_chosen`
  the label is hard (p = 1). An empty reply is a valid option; a pair with two identical replies is left out.

Malformed lines are bad input: raised at `file:line`, or handed to an `on_bad` handler (`--on-bad-input
skip`). Well-formed rows with nothing to learn (an empty SFT reply, identical pair replies) are left out and
counted instead, so what caitool's data commands write always loads.
- Prompts (`caitool rl`): `{"prompt": str}`, `{"prompt": [...]}` or `{"messages": [...]}` (a trailing
  assistant turn is dropped); a preference file works too (its prompt is used).
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from caitool.errors import InputError, UsageError
from caitool.inputs import read_lines
from caitool.trainers.base import BadLineHandler, MixSpec

T = TypeVar("T")

ROLES = frozenset({"system", "user", "assistant"})
Messages = list[dict[str, str]]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fail(err: InputError, data: dict[str, Any] | None) -> None:
    raise err


def read_rows(
    path: Path, convert: Callable[[str, dict[str, Any]], T], on_bad: BadLineHandler | None = None
) -> Iterator[T]:
    """`convert(file:line, object)` for each line of a JSONL file (caitool.inputs.read_lines, the reader the
    data commands use). A line that is not a JSON object, or that `convert` rejects with an InputError, goes
    to `on_bad` (by default: raised). File-level problems (missing, a directory, no records) always raise."""
    handle = on_bad or _fail
    for line in read_lines(str(path)):
        if isinstance(line, InputError):
            handle(line, None)
            continue
        try:
            yield convert(line.where, line.data)
        except InputError as err:
            handle(err, line.data)


def _messages(value: Any, where: str, field: str) -> Messages:
    if not isinstance(value, list) or not value:
        raise InputError(where, f"{field!r} must be a non-empty list of messages")
    out: Messages = []
    for i, m in enumerate(value):
        if not isinstance(m, dict):
            raise InputError(where, f"{field}[{i}] is not an object with role and content")
        role, content = m.get("role"), m.get("content")
        if role not in ROLES:
            raise InputError(where, f"{field}[{i}].role {role!r}: expected system, user or assistant")
        if not isinstance(content, str):
            raise InputError(where, f"{field}[{i}].content must be a string")
        out.append({"role": role, "content": content})
    return out


def _as_prompt(value: Any, where: str, field: str) -> Messages:
    if isinstance(value, str):
        if not value.strip():
            raise InputError(where, f"{field!r} is empty")
        return [{"role": "user", "content": value}]
    msgs = _messages(value, where, field)
    if msgs[-1]["role"] == "assistant":
        raise InputError(where, f"{field!r} must end with a user turn, not an assistant turn")
    return msgs


def _as_reply(value: Any, where: str, field: str) -> str:
    """A reply given as a string, an assistant message, or a one-element list of one."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        value = [value]
    msgs = _messages(value, where, field)
    if len(msgs) != 1 or msgs[0]["role"] != "assistant":
        raise InputError(where, f"{field!r} must be one assistant message (or a string)")
    return msgs[0]["content"]


def _check_conversation(msgs: Messages, where: str, field: str) -> Messages:
    """A conversation that ends with an assistant turn (which may be empty: see `load_sft`, `load_pairs`)."""
    if msgs[-1]["role"] != "assistant":
        raise InputError(where, f"{field!r} must end with the assistant turn to learn")
    if not any(m["role"] == "user" for m in msgs[:-1]):
        raise InputError(where, f"{field!r} has no user turn before its last assistant turn")
    return msgs


def _is_empty(conversation: Messages) -> bool:
    return not conversation[-1]["content"].strip()


# --------------------------------------------------------------------------------------------------- SFT


@dataclass
class SftData:
    rows: list[Messages]  # conversations ending with the assistant turn to learn
    skipped: int = 0  # rows left out by --rounds-kept
    empty: int = 0  # rows left out because the reply to learn is empty (nothing to imitate)
    kind: str = "sft"  # "sft" or "trace"
    mixed: int = 0  # rows added by --mix


def _sft_rows(where: str, obj: dict[str, Any], rounds_kept: int | None) -> tuple[list[Messages], int, str]:
    if "rounds" in obj and "final_response" in obj:  # critique-revise --format trace
        prompt = _as_prompt(obj.get("prompt"), where, "prompt")
        rounds = obj["rounds"]
        if not isinstance(rounds, list):
            raise InputError(where, "'rounds' must be a list")
        if rounds_kept is None:
            final = obj["final_response"]
            if not isinstance(final, str):
                raise InputError(where, "'final_response' must be a string")
            return [[*prompt, {"role": "assistant", "content": final}]], 0, "trace"
        current = obj.get("initial_response")
        out = []
        for k, r in enumerate(rounds[:rounds_kept], start=1):
            if not isinstance(r, dict):
                raise InputError(where, f"rounds[{k - 1}] is not an object")
            rev = r.get("revision")
            if isinstance(rev, str) and rev.strip():
                current = rev  # an empty revision keeps the previous response, as critique-revise does
            if not isinstance(current, str):
                raise InputError(where, f"round {k} has no revision and no 'initial_response' string")
            out.append([*prompt, {"role": "assistant", "content": current}])
        return out, 0, "trace"
    if "messages" in obj:
        if rounds_kept is not None:
            rnd = obj.get("round")
            if not isinstance(rnd, int):
                raise InputError(where, "--rounds-kept needs a 'round' number on every row")
            if rnd > rounds_kept:
                return [], 1, "sft"
        return (
            [_check_conversation(_messages(obj["messages"], where, "messages"), where, "messages")],
            0,
            "sft",
        )
    if "prompt" in obj and ("completion" in obj or "response" in obj):
        key = "completion" if "completion" in obj else "response"
        reply = _as_reply(obj[key], where, key)
        return (
            [[*_as_prompt(obj["prompt"], where, "prompt"), {"role": "assistant", "content": reply}]],
            0,
            "sft",
        )
    raise InputError(
        where,
        "not an SFT row: expected 'messages' (critique-revise --format sft), 'prompt' + 'rounds' + "
        "'final_response' (--format trace) or 'prompt' + 'completion'",
    )


def load_sft(path: Path, rounds_kept: int | None = None, on_bad: BadLineHandler | None = None) -> SftData:
    """The conversations to learn. A row whose final reply is empty is well formed (critique-revise writes
    one when the response and every revision came back empty) but has nothing to imitate: it is left out and
    counted in `empty`, not treated as bad input."""
    data = SftData(rows=[])
    kinds = set()
    for rows, skipped, kind in read_rows(path, lambda w, o: _sft_rows(w, o, rounds_kept), on_bad):
        kept = [r for r in rows if not _is_empty(r)]
        data.rows.extend(kept)
        data.empty += len(rows) - len(kept)
        data.skipped += skipped
        kinds.add(kind)
    data.kind = "trace" if kinds == {"trace"} else "sft"
    if not data.rows and data.skipped:
        raise InputError(
            f"{path}:0",
            f"no rows left with --rounds-kept {rounds_kept}: every row is from a later round (a file "
            "written without --keep-rounds holds only the last round; use --format sft --keep-rounds, or the "
            "trace file)",
        )
    if not data.rows:
        why = f"all {data.empty} replies to learn are empty" if data.empty else "every line was bad input"
        raise InputError(f"{path}:0", f"nothing to train on: {why}")
    return data


def parse_mix(value: str) -> MixSpec:
    path, sep, weight = value.rpartition(":")
    if not sep or not path:
        raise UsageError(f"--mix {value!r}: expected FILE:WEIGHT, e.g. helpful.jsonl:0.5")
    try:
        w = float(weight)
    except ValueError:
        raise UsageError(f"--mix {value!r}: WEIGHT {weight!r} is not a number") from None
    if not (w > 0 and math.isfinite(w)):
        raise UsageError(f"--mix {value!r}: WEIGHT must be > 0")
    return MixSpec(Path(path), w)


def add_mix(data: SftData, mixes: tuple[MixSpec, ...], seed: int) -> list[dict[str, Any]]:
    """Append round(weight × main rows) rows from each mix file (a seeded draw, with repeats when the file
    is short)."""
    n_main = len(data.rows)
    report = []
    for i, mix in enumerate(mixes):
        rows: list[Messages] = []
        for got, _, _ in read_rows(mix.path, lambda w, o: _sft_rows(w, o, None)):
            rows.extend(r for r in got if not _is_empty(r))
        if not rows:
            raise InputError(f"{mix.path}:0", "--mix: no row with a non-empty reply to learn")
        want = max(1, round(mix.weight * n_main))
        rng = random.Random(f"{seed}:{i}:{mix.path}")
        picked: list[Messages] = []
        while len(picked) < want:
            order = rows[:]
            rng.shuffle(order)
            picked.extend(order[: want - len(picked)])
        data.rows.extend(picked)
        data.mixed += len(picked)
        report.append(
            {
                "path": str(mix.path),
                "weight": mix.weight,
                "sha256": sha256_file(mix.path),
                "rows": len(picked),
            }
        )
    return report


# --------------------------------------------------------------------------------------------------- pairs


@dataclass
class Pair:
    prompt: Messages
    chosen: str
    rejected: str
    p_chosen: float  # probability that `chosen` is preferred (1.0 for hard labels)
    margin: float | None
    where: str

    def to_trl(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt,
            "chosen": [{"role": "assistant", "content": self.chosen}],
            "rejected": [{"role": "assistant", "content": self.rejected}],
        }

    def swapped(self) -> Pair:
        return Pair(self.prompt, self.rejected, self.chosen, 1.0 - self.p_chosen, self.margin, self.where)


def _pair(where: str, obj: dict[str, Any]) -> Pair:
    """One preference pair. Either reply may be empty: saying nothing is a legitimate option, and hh-rlhf has
    such pairs (label-pairs and mix accept them too)."""
    for key in ("chosen", "rejected"):
        if key not in obj:
            raise InputError(
                where, f"not a preference pair: missing {key!r} (label-pairs output or TRL format)"
            )
    if "prompt" in obj and obj["prompt"] not in (None, "", []):
        prompt = _as_prompt(obj["prompt"], where, "prompt")
        chosen = _as_reply(obj["chosen"], where, "chosen")
        rejected = _as_reply(obj["rejected"], where, "rejected")
    else:  # implicit prompt: two whole conversations that differ in the last turn
        c = _check_conversation(_messages(obj["chosen"], where, "chosen"), where, "chosen")
        r = _check_conversation(_messages(obj["rejected"], where, "rejected"), where, "rejected")
        if c[:-1] != r[:-1]:
            raise InputError(
                where, "without 'prompt', 'chosen' and 'rejected' must share all turns but the last"
            )
        prompt, chosen, rejected = c[:-1], c[-1]["content"], r[-1]["content"]
    p = obj.get("p_chosen", 1.0)
    if isinstance(p, bool) or not isinstance(p, int | float) or not (0.0 <= p <= 1.0) or math.isnan(p):
        raise InputError(where, f"'p_chosen' must be a probability in [0, 1], got {p!r}")
    margin = obj.get("margin")
    if margin is not None and (isinstance(margin, bool) or not isinstance(margin, int | float)):
        raise InputError(where, f"'margin' must be a number, got {margin!r}")
    return Pair(prompt, chosen, rejected, float(p), None if margin is None else float(margin), where)


@dataclass
class PairData:
    pairs: list[Pair]
    identical: int = 0  # pairs left out because both replies are the same text (no preference to learn)

    def notes(self) -> list[str]:
        if not self.identical:
            return []
        return [f"left out {self.identical} pairs whose two replies are identical (nothing to prefer)"]


def load_pairs(path: Path, on_bad: BadLineHandler | None = None) -> PairData:
    """Preference pairs. A pair whose replies are the same text is well formed (hh-rlhf has some; a policy
    may sample one text twice) but its loss has no gradient: it is left out and counted, not bad input."""
    data = PairData([])
    for pair in read_rows(path, _pair, on_bad):
        if pair.chosen.strip() == pair.rejected.strip():
            data.identical += 1
        else:
            data.pairs.append(pair)
    if not data.pairs:
        why = "every line was bad input"
        if data.identical:
            why = f"all {data.identical} pairs have identical replies"
        raise InputError(f"{path}:0", f"nothing to train on: {why}")
    return data


def split_holdout(pairs: list[Pair], fraction: float, seed: int) -> tuple[list[Pair], list[Pair]]:
    """A seeded held-out split: round(fraction × n) pairs, at least 1 (when fraction > 0), leaving at
    least 1 to train on."""
    if fraction <= 0:
        return pairs, []
    if len(pairs) < 2:
        raise UsageError(
            f"train-pm needs at least 2 pairs to hold one out (got {len(pairs)})", hint="or pass --holdout 0"
        )
    n_eval = min(len(pairs) - 1, max(1, round(fraction * len(pairs))))
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    held = set(order[:n_eval])
    return [p for i, p in enumerate(pairs) if i not in held], [p for i, p in enumerate(pairs) if i in held]


# --------------------------------------------------------------------------------------------------- prompts


def _prompt_of(where: str, obj: dict[str, Any]) -> Messages:
    if "messages" in obj:
        msgs = _messages(obj["messages"], where, "messages")
        while msgs and msgs[-1]["role"] == "assistant":
            msgs = msgs[:-1]
        if not msgs or msgs[-1]["role"] != "user":
            raise InputError(where, "'messages' has no user turn to answer")
        return msgs
    if "prompt" in obj:
        return _as_prompt(obj["prompt"], where, "prompt")
    raise InputError(where, "not a prompt: expected 'prompt' (string or messages) or 'messages'")


def load_prompts(path: Path, on_bad: BadLineHandler | None = None) -> list[Messages]:
    prompts = list(read_rows(path, _prompt_of, on_bad))
    if not prompts:
        raise InputError(f"{path}:0", "nothing to train on: every line was bad input")
    return prompts
