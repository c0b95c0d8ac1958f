"""Per-principle statistics and Goodhart monitors over critique-revise traces and policy samples.

Input rows (JSONL), mixed freely:
- a trace (`caitool critique-revise --format trace`): `initial_response`, `rounds: [{principle_id, revision,
  flags, ...}]`, `final_response`;
- a policy sample: the text in `--field`, else the first of `response`, `final_response`, `completion`,
  `output`, `text`; else the last assistant turn of `messages` (or of an HH-RLHF transcript in `chosen`).

Monitors (phrase lists and thresholds in `prompts/monitors.toml`, or `--monitors FILE`):
- per principle: rounds, how often its revision changed the response, left it unchanged or empty, the mean
  length change, revisions that start with junk, and rounds that turned a non-refusing response into a
  refusal (which principle makes the model evasive);
- refusal / evasive / preachy rate of the final responses (and of the initial ones, for traces);
- boilerplate: word runs of at least `ngram` words found in many records ("you are valid, valued, and cared
  for"), the longest runs, with their share among final and among initial responses;
- unchanged revisions (by comparison, whitespace and case ignored, or the trace's `unchanged` flag) and
  records whose final response is their initial one;
- revision-prefix junk ("Sure, here is a revised response:") still in the stored revisions, plus the
  revisions where critique-revise already stripped such an echo (`echo_stripped` flag);
- length drift: mean length after each round, and final over initial.
Alerts are raised beyond the thresholds in the monitors file.
"""

from __future__ import annotations

import math
import re
import tomllib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from caitool.errors import ConfigError, InputError
from caitool.inputs import Line, looks_like_transcript, parse_transcript
from caitool.prompts import type_name

SAMPLE_FIELDS = ("response", "final_response", "completion", "output", "text")
_WORD = re.compile(r"[\w']+")
_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"'})

_ALERT_DEFAULTS = {
    "refusal_rate": 0.30,
    "evasive_rate": 0.20,
    "preachy_rate": 0.20,
    "unchanged_rate": 0.30,
    "prefix_junk_rate": 0.05,
    "boilerplate_fraction": 0.10,
    "length_ratio_low": 0.5,
    "length_ratio_high": 2.0,
}


def normalize(text: str) -> str:
    """Lower case, straight quotes, single spaces: the form phrases are matched in."""
    return " ".join(text.translate(_QUOTES).lower().split())


# ---------------------------------------------------------------------------------------------------------
# the monitors file


@dataclass(frozen=True)
class Monitors:
    refusal: tuple[str, ...]
    evasive: tuple[str, ...]
    preachy: tuple[str, ...]
    prefix: tuple[re.Pattern[str], ...]
    ngram: int = 6
    min_records: int = 3
    min_fraction: float = 0.05
    top: int = 15
    alerts: dict[str, float] = field(default_factory=lambda: dict(_ALERT_DEFAULTS))
    source: str = ""


# The tables of a monitors file and their keys; a user's file may hold any of them (docs/prompts.md).
_MONITOR_TABLES = {
    "refusal": ("phrases",),
    "evasive": ("phrases",),
    "preachy": ("phrases",),
    "revision_prefix": ("patterns",),
    "boilerplate": ("ngram", "min_records", "min_fraction", "top"),
    "alerts": tuple(_ALERT_DEFAULTS),
}


def _check_tables(data: dict[str, Any], source: str) -> None:
    for name, table in data.items():
        if name not in _MONITOR_TABLES:
            raise ConfigError(f"{source}: {name}: unknown table (known: {', '.join(_MONITOR_TABLES)})")
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: {name}: expected a table, got {type_name(table)}")
        unknown = sorted(set(table) - set(_MONITOR_TABLES[name]))
        if unknown:
            known = ", ".join(_MONITOR_TABLES[name])
            raise ConfigError(f"{source}: {name}.{unknown[0]}: unknown key (known: {known})")


def _phrases(data: dict[str, Any], table: str, where: str) -> tuple[str, ...]:
    value = data.get(table, {}).get("phrases", [])
    if not isinstance(value, list) or not all(isinstance(p, str) and p.strip() for p in value):
        raise ConfigError(f"{where}: {table}.phrases: expected a list of non-empty strings")
    return tuple(normalize(p) for p in value)


def _number(
    table: dict[str, Any], key: str, default: float, where: str, kind: type[int] | type[float]
) -> Any:
    value = table.get(key, default)
    ok = not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)
    if not ok or (kind is int and value != int(value)):
        raise ConfigError(f"{where}.{key}: expected {'an integer' if kind is int else 'a finite number'}")
    return kind(value)


def load_monitors(path: str | None = None) -> Monitors:
    """The packaged `prompts/monitors.toml`, with the tables of `path` (if given) replacing its own."""
    from caitool.resources import data_dir

    default = data_dir("prompts") / "monitors.toml"
    data = _load(default)
    source = str(default)
    if path is not None:
        user = _load(Path(path))
        _check_tables(user, path)
        data.update(user)
        source = path
    patterns = data.get("revision_prefix", {}).get("patterns")
    if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
        raise ConfigError(f"{source}: revision_prefix.patterns: expected a list of regular expressions")
    for i, p in enumerate(patterns):
        try:
            re.compile(p)
        except re.error as exc:
            raise ConfigError(
                f"{source}: revision_prefix.patterns[{i}]: bad regular expression: {exc}"
            ) from None
    prefix = tuple(re.compile(r"\s*(?:" + p + ")", re.IGNORECASE) for p in patterns)
    bp = data.get("boilerplate", {})
    alerts = dict(_ALERT_DEFAULTS)
    for key in data.get("alerts", {}):
        alerts[key] = _number(data["alerts"], key, 0.0, f"{source}: alerts", float)
    ngram = _number(bp, "ngram", 6, f"{source}: boilerplate", int)
    min_records = _number(bp, "min_records", 3, f"{source}: boilerplate", int)
    min_fraction = _number(bp, "min_fraction", 0.05, f"{source}: boilerplate", float)
    top = _number(bp, "top", 15, f"{source}: boilerplate", int)
    if ngram < 2 or min_records < 2:
        raise ConfigError(f"{source}: boilerplate: needs ngram >= 2 and min_records >= 2")
    return Monitors(
        refusal=_phrases(data, "refusal", source),
        evasive=_phrases(data, "evasive", source),
        preachy=_phrases(data, "preachy", source),
        prefix=prefix,
        ngram=ngram,
        min_records=min_records,
        min_fraction=min_fraction,
        top=top,
        alerts=alerts,
        source=source,
    )


def _load(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"monitors file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def matches(text: str, phrases: tuple[str, ...]) -> bool:
    norm = normalize(text)
    return any(p in norm for p in phrases)


def prefix_junk(text: str, patterns: tuple[re.Pattern[str], ...]) -> bool:
    t = text.translate(_QUOTES)
    return any(p.match(t) for p in patterns)


# ---------------------------------------------------------------------------------------------------------
# records


@dataclass(frozen=True)
class Round:
    principle_id: str
    previous: str
    revision: str
    flags: tuple[str, ...]


@dataclass(frozen=True)
class Record:
    id: str
    kind: Literal["trace", "sample"]
    final: str
    initial: str | None = None
    rounds: tuple[Round, ...] = ()
    by_round: tuple[str, ...] = ()  # trace: the response after round 0 (initial), 1, 2, ...


def _text(data: dict[str, Any], key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str):
        raise InputError(where, f"field {key!r} must be a string")
    return value


def _last_assistant(value: Any, where: str, name: str) -> str:
    if isinstance(value, str):
        if looks_like_transcript(value):
            turns = [m for m in parse_transcript(value, where) if m.role == "assistant"]
            if turns:
                return turns[-1].content
            raise InputError(where, f"transcript in {name!r} has no Assistant turn")
        return value
    if isinstance(value, list):
        for m in reversed(value):
            if isinstance(m, dict) and m.get("role") == "assistant" and isinstance(m.get("content"), str):
                return str(m["content"])
        raise InputError(where, f"{name!r} has no assistant message")
    raise InputError(where, f"field {name!r} must be a string or a list of messages")


def parse_record(line: Line, field_name: str | None = None) -> Record:
    where, data = line.where, line.data
    rid = str(data.get("id", where))
    if field_name is None and "rounds" in data:
        return _parse_trace(rid, data, where)
    if field_name is not None:
        if field_name not in data:
            raise InputError(where, f"missing field {field_name!r}")
        return Record(rid, "sample", _last_assistant(data[field_name], where, field_name))
    for name in SAMPLE_FIELDS:
        if name in data:
            return Record(rid, "sample", _text(data, name, where))
    for name in ("messages", "chosen"):
        if name in data:
            return Record(rid, "sample", _last_assistant(data[name], where, name))
    raise InputError(
        where,
        "neither a trace (rounds) nor a sample: expected one of "
        + ", ".join((*SAMPLE_FIELDS, "messages", "chosen"))
        + " (or --field)",
    )


def _parse_trace(rid: str, data: dict[str, Any], where: str) -> Record:
    initial = _text(data, "initial_response", where)
    rounds_data = data["rounds"]
    if not isinstance(rounds_data, list):
        raise InputError(where, "field 'rounds' must be a list")
    current = initial
    rounds: list[Round] = []
    by_round = [initial]
    for k, r in enumerate(rounds_data, start=1):
        if not isinstance(r, dict) or not isinstance(r.get("revision"), str):
            raise InputError(where, f"rounds[{k - 1}] has no 'revision' string")
        flags = r.get("flags") or []
        if not isinstance(flags, list) or not all(isinstance(f, str) for f in flags):
            raise InputError(where, f"rounds[{k - 1}].flags must be a list of strings")
        pid = r.get("principle_id")
        rounds.append(Round(str(pid) if pid is not None else "(none)", current, r["revision"], tuple(flags)))
        if r["revision"].strip():  # an empty revision keeps the previous response (as critique-revise does)
            current = r["revision"]
        by_round.append(current)
    final = data.get("final_response", current)
    if not isinstance(final, str):
        raise InputError(where, "field 'final_response' must be a string")
    return Record(rid, "trace", final, initial, tuple(rounds), tuple(by_round))


def is_unchanged(r: Round) -> bool:
    return "unchanged" in r.flags or (
        bool(r.revision.strip()) and normalize(r.previous) == normalize(r.revision)
    )


def is_empty(r: Round) -> bool:
    return "empty" in r.flags or not r.revision.strip()


# ---------------------------------------------------------------------------------------------------------
# boilerplate


def _tokens(text: str) -> list[tuple[str, int, int]]:
    t = text.translate(_QUOTES)
    return [(m.group().lower(), m.start(), m.end()) for m in _WORD.finditer(t)]


def boilerplate(finals: list[str], initials: list[str], mon: Monitors) -> list[dict[str, Any]]:
    """The longest word runs (≥ `ngram` words) shared by many final responses.

    Every `ngram`-word window is counted once per record; windows in at least max(min_records,
    min_fraction · records) records are frequent. In each record, consecutive frequent windows form a run;
    the runs are the candidate phrases, each counted by the records that contain it (as a word sequence).
    Candidates above the threshold are taken by count, then length, skipping any that overlaps one already
    taken.
    """
    n = mon.ngram
    total = len(finals)
    threshold = max(mon.min_records, math.ceil(mon.min_fraction * total))
    toks = [_tokens(t) for t in finals]
    df: Counter[tuple[str, ...]] = Counter()
    for tk in toks:
        words = [w for w, _, _ in tk]
        df.update({tuple(words[i : i + n]) for i in range(len(words) - n + 1)})
    frequent = {g for g, c in df.items() if c >= threshold}
    if not frequent:
        return []
    candidates: dict[str, str] = {}  # joined words -> an original text of the run
    for text, tk in zip(finals, toks, strict=True):
        words = [w for w, _, _ in tk]
        i = 0
        while i <= len(words) - n:
            if tuple(words[i : i + n]) not in frequent:
                i += 1
                continue
            j = i
            while j + 1 <= len(words) - n and tuple(words[j + 1 : j + 1 + n]) in frequent:
                j += 1
            key = " ".join(words[i : j + n])
            candidates.setdefault(key, text[tk[i][1] : tk[j + n - 1][2]])
            i = j + 1
    joined_finals = [" " + " ".join(w for w, _, _ in tk) + " " for tk in toks]
    joined_initials = [" " + " ".join(w for w, _, _ in _tokens(t)) + " " for t in initials]
    scored = []
    for key, example in candidates.items():
        needle = " " + key + " "
        count = sum(needle in j for j in joined_finals)
        if count >= threshold:
            scored.append((count, len(key.split()), key, example))
    scored.sort(key=lambda s: (-s[0], -s[1], s[2]))
    chosen: list[dict[str, Any]] = []
    for count, length, key, example in scored:
        if any(key in c["_key"] or c["_key"] in key for c in chosen):
            continue
        needle = " " + key + " "
        in_initial = sum(needle in j for j in joined_initials)
        chosen.append(
            {
                "_key": key,
                "phrase": example,
                "words": length,
                "records": count,
                "fraction": round(count / total, 4),
                "initial_fraction": round(in_initial / len(initials), 4) if initials else None,
            }
        )
        if len(chosen) >= mon.top:
            break
    for c in chosen:
        del c["_key"]
    return chosen


# ---------------------------------------------------------------------------------------------------------
# the report


@dataclass
class _PrincipleStats:
    rounds: int = 0
    changed: int = 0
    unchanged: int = 0
    empty: int = 0
    prefix_junk: int = 0
    echo_stripped: int = 0
    became_refusal: int = 0
    became_evasive: int = 0
    delta_chars: float = 0.0
    delta_words: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        n = self.rounds or 1
        return {
            "rounds": self.rounds,
            "changed": self.changed,
            "changed_rate": round(self.changed / n, 4),
            "unchanged": self.unchanged,
            "unchanged_rate": round(self.unchanged / n, 4),
            "empty": self.empty,
            "prefix_junk": self.prefix_junk,
            "echo_stripped": self.echo_stripped,
            "became_refusal": self.became_refusal,
            "became_evasive": self.became_evasive,
            "mean_length_change_chars": round(self.delta_chars / n, 2),
            "mean_length_change_words": round(self.delta_words / n, 2),
        }


def _rate(count: int, n: int) -> dict[str, Any]:
    return {"count": count, "n": n, "rate": round(count / n, 4) if n else None}


def _mean(values: list[int]) -> float | None:
    return round(sum(values) / len(values), 2) if values else None


def analyse(records: list[Record], mon: Monitors) -> dict[str, Any]:
    """The JSON report of `caitool stats`."""
    traces = [r for r in records if r.kind == "trace"]
    finals = [r.final for r in records]
    initials = [r.initial for r in traces if r.initial is not None]
    principles: dict[str, _PrincipleStats] = {}
    all_rounds = unchanged = empty = junk = stripped = 0
    junk_examples: list[dict[str, str]] = []
    for rec in traces:
        for k, rd in enumerate(rec.rounds, start=1):
            s = principles.setdefault(rd.principle_id, _PrincipleStats())
            s.rounds += 1
            all_rounds += 1
            if is_empty(rd):
                s.empty += 1
                empty += 1
            elif is_unchanged(rd):
                s.unchanged += 1
                unchanged += 1
            else:
                s.changed += 1
            after = rd.revision if rd.revision.strip() else rd.previous
            s.delta_chars += len(after) - len(rd.previous)
            s.delta_words += len(after.split()) - len(rd.previous.split())
            if prefix_junk(rd.revision, mon.prefix):
                s.prefix_junk += 1
                junk += 1
                if len(junk_examples) < 5:
                    junk_examples.append({"id": rec.id, "round": str(k), "revision": rd.revision[:120]})
            if "echo_stripped" in rd.flags:
                s.echo_stripped += 1
                stripped += 1
            if not matches(rd.previous, mon.refusal) and matches(after, mon.refusal):
                s.became_refusal += 1
            if not matches(rd.previous, mon.evasive) and matches(after, mon.evasive):
                s.became_evasive += 1

    def rates(phrases: tuple[str, ...]) -> dict[str, Any]:
        out = {"final": _rate(sum(matches(t, phrases) for t in finals), len(finals))}
        if initials:
            out["initial"] = _rate(sum(matches(t, phrases) for t in initials), len(initials))
        return out

    max_rounds = max((len(r.rounds) for r in traces), default=0)
    by_round = []
    for k in range(max_rounds + 1):
        texts = [r.by_round[k] for r in traces if len(r.by_round) > k]
        by_round.append(
            {
                "round": k,
                "n": len(texts),
                "mean_chars": _mean([len(t) for t in texts]),
                "mean_words": _mean([len(t.split()) for t in texts]),
            }
        )
    init_chars = _mean([len(t) for t in initials])
    final_trace_chars = _mean([len(r.final) for r in traces])
    ratio = round(final_trace_chars / init_chars, 4) if init_chars and final_trace_chars is not None else None
    report: dict[str, Any] = {
        "records": len(records),
        "traces": len(traces),
        "samples": len(records) - len(traces),
        "monitors": mon.source,
        "principles": {p: s.to_dict() for p, s in sorted(principles.items())},
        "revisions": {
            "rounds": all_rounds,
            "unchanged": _rate(unchanged, all_rounds),
            "empty": _rate(empty, all_rounds),
            "records_final_equals_initial": _rate(
                sum(normalize(r.final) == normalize(r.initial or "") for r in traces), len(traces)
            ),
        },
        "prefix_junk": {**_rate(junk, all_rounds), "echo_stripped": stripped, "examples": junk_examples},
        "refusal": rates(mon.refusal),
        "evasive": rates(mon.evasive),
        "preachy": rates(mon.preachy),
        "boilerplate": boilerplate(finals, initials, mon),
        "length": {
            "final_mean_chars": _mean([len(t) for t in finals]),
            "by_round": by_round,
            "final_over_initial": ratio,
        },
    }
    report["alerts"] = alerts(report, mon)
    return report


def alerts(report: dict[str, Any], mon: Monitors) -> list[dict[str, Any]]:
    a = mon.alerts
    out: list[dict[str, Any]] = []

    def add(monitor: str, value: float, limit: float, message: str) -> None:
        out.append({"monitor": monitor, "value": value, "threshold": limit, "message": message})

    for name in ("refusal", "evasive", "preachy"):
        rate = report[name]["final"]["rate"]
        limit = a[f"{name}_rate"]
        if rate is not None and rate > limit:
            add(name, rate, limit, f"{rate:.0%} of final responses are {name} (threshold {limit:.0%})")
    u = report["revisions"]["unchanged"]["rate"]
    if u is not None and u > a["unchanged_rate"]:
        add("unchanged", u, a["unchanged_rate"], f"{u:.0%} of revision rounds left the response unchanged")
    j = report["prefix_junk"]["rate"]
    if j is not None and j > a["prefix_junk_rate"]:
        add(
            "prefix_junk",
            j,
            a["prefix_junk_rate"],
            f"{j:.0%} of revisions start with junk such as 'Sure, here is'",
        )
    for b in report["boilerplate"]:
        if b["fraction"] >= a["boilerplate_fraction"]:
            add(
                "boilerplate",
                b["fraction"],
                a["boilerplate_fraction"],
                f"{b['records']} records ({b['fraction']:.0%}) repeat {b['phrase']!r}",
            )
    ratio = report["length"]["final_over_initial"]
    if ratio is not None and not a["length_ratio_low"] <= ratio <= a["length_ratio_high"]:
        add(
            "length_drift",
            ratio,
            a["length_ratio_low"] if ratio < a["length_ratio_low"] else a["length_ratio_high"],
            f"final responses are {ratio:.2f}x the initial length on average",
        )
    return out
