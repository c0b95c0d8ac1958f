"""What `caitool view` shows: caitool's output files, indexed rather than loaded.

A JSONL file is opened by recording the byte offset of every line (one pass over the bytes, no JSON
parsing), so the first page of a 200,000-row file is on screen at once; a row is read and parsed only when
it is shown. Filters, sorting, counts and the p histogram need a few fields of every row: a background
thread parses each row once into a small `Summary` (id, principles, flags, p, ...) and throws the row away.
Text search reads the raw bytes, so it needs no summary.

Each row is recognised by its shape (docs/records.md): a critique-revise trace, an SFT row, a label-pairs
row, a compare judgment, an eval-labeler item, an errors-file row, or any other JSON object. A file that is
one JSON document (the reports of `elo`, `eval-labeler`, `stats`) is a report, shown whole.
`OUT.jsonl.errors.jsonl` beside an opened `OUT.jsonl` joins its list, so "errors only" shows what failed.
"""

from __future__ import annotations

import bisect
import json
import math
import mmap
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from caitool.errors import InputError

PREVIEW_CHARS = 160
_BLANK = (b" ", b"\t", b"\r")
HISTOGRAM_BINS = 20


class _Foreground:
    """Requests being answered right now (the background indexer pauses while there are any)."""

    def __init__(self) -> None:
        self.busy = 0
        self._lock = threading.Lock()

    def __enter__(self) -> None:
        with self._lock:
            self.busy += 1

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self.busy -= 1


FOREGROUND = _Foreground()


@dataclass(frozen=True)
class Summary:
    """The fields of one row that filters, sorting and the list need."""

    kind: str
    id: str
    principles: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()
    p: float | None = None
    rounds: int | None = None
    preview: str = ""

    @property
    def is_error(self) -> bool:
        return self.kind in ("error", "bad-json")

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "id": self.id,
            "principles": list(self.principles),
            "flags": list(self.flags),
            "p": self.p,
            "rounds": self.rounds,
            "preview": self.preview,
        }


def _text(value: Any) -> str:
    """A prompt or response as plain text: a string, or the content of a message list's turns."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return " / ".join(str(m.get("content", "")) if isinstance(m, dict) else str(m) for m in value)
    return "" if value is None else json.dumps(value, ensure_ascii=False)


def _preview(value: Any) -> str:
    return " ".join(_text(value).split())[:PREVIEW_CHARS]


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _order_flip(questions: Any) -> bool:
    """True when asking the same principle in the two orders picked different winners."""
    if not isinstance(questions, list):
        return False
    seen: dict[str, set[bool]] = {}
    for q in questions:
        if isinstance(q, dict) and isinstance(q.get("p_a"), int | float):
            seen.setdefault(str(q.get("principle_id")), set()).add(q["p_a"] >= 0.5)
    return any(len(v) > 1 for v in seen.values())


def kind_of(row: dict[str, Any]) -> str:
    if "rounds" in row and "initial_response" in row:
        return "trace"
    if "chosen" in row and "rejected" in row:
        return "label"
    if "model_a" in row and "model_b" in row:
        return "judgment"
    if "error" in row and "where" in row:
        return "error"
    if "p_correct" in row:
        return "eval-item"
    if "messages" in row and "round" in row:
        return "sft"
    return "row"


def summarize(row: Any) -> Summary:
    if not isinstance(row, dict):
        return Summary("row", "", preview=_preview(row))
    kind = kind_of(row)
    rid = str(row.get("id", ""))
    meta: dict[str, Any] = row["caitool"] if isinstance(row.get("caitool"), dict) else {}
    if kind == "trace":
        rounds = [r for r in row["rounds"] if isinstance(r, dict)] if isinstance(row["rounds"], list) else []
        flags = sorted({str(f) for r in rounds for f in (r.get("flags") or [])})
        return Summary(
            kind,
            rid,
            principles=tuple(str(r.get("principle_id", "")) for r in rounds),
            flags=tuple(flags),
            rounds=len(rounds),
            preview=_preview(row.get("prompt")),
        )
    if kind == "label":
        flags = [str(meta.get("label_source", ""))] if meta.get("label_source") else []
        if _order_flip(meta.get("questions")):
            flags.append("order_flip")
        return Summary(
            kind,
            rid,
            principles=tuple(str(p) for p in meta.get("principle_ids") or []),
            flags=tuple(flags),
            p=_float(row.get("p_chosen")),
            preview=_preview(row.get("prompt")),
        )
    if kind == "judgment":
        return Summary(
            kind,
            rid,
            principles=tuple(str(p) for p in row.get("principle_ids") or meta.get("principle_ids") or []),
            flags=tuple(str(x) for x in (row.get("criterion"),) if x),
            p=_float(row.get("p_a")),
            preview=f"{row.get('model_a')} vs {row.get('model_b')}: " + _preview(row.get("prompt")),
        )
    if kind == "error":
        status = row.get("status")
        return Summary(
            kind,
            rid,
            flags=(f"status {status}",) if status is not None else (),
            preview=_preview(f"{row.get('where')}: {row.get('error')}"),
        )
    if kind == "eval-item":
        return Summary(kind, rid, p=_float(row.get("p_correct")), preview=_preview(row.get("prompt", "")))
    if kind == "sft":
        pid = row.get("principle_id")
        return Summary(
            kind,
            rid,
            principles=(str(pid),) if pid else (),
            rounds=row["round"] if isinstance(row["round"], int) else None,
            preview=_preview(row.get("messages")),
        )
    return Summary(kind, rid, preview=_preview(row.get("prompt", row)))


@dataclass
class Segment:
    """One JSONL file: where each line starts (`starts[i]`) and ends."""

    path: Path
    starts: list[int]
    ends: list[int]
    mm: mmap.mmap | None

    def line(self, i: int) -> bytes:
        assert self.mm is not None
        return self.mm[self.starts[i] : self.ends[i]]


def _line_bounds(mm: mmap.mmap) -> tuple[list[int], list[int]]:
    """Start and end offsets of every non-blank line. mmap.find runs at C speed; the Python loop costs
    about a microsecond a line (0.2 s for 200,000 rows), and no line is copied or parsed."""
    starts: list[int] = []
    ends: list[int] = []
    size = len(mm)
    i = 0
    while i < size:
        j = mm.find(b"\n", i)
        if j < 0:
            j = size
        if j > i and (mm[i : i + 1] not in _BLANK or mm[i:j].strip()):
            starts.append(i)
            ends.append(j)
        i = j + 1
    return starts, ends


def _report_kind(doc: Any) -> str:
    if isinstance(doc, dict):
        if isinstance(doc.get("criteria"), dict):
            return "elo-report"
        if isinstance(doc.get("calibration"), dict):
            return "eval-labeler-report"
        return "stats-report" if "caitool" in doc or "traces" in doc or "labels" in doc else "report"
    return "report"


class Dataset:
    """One file opened in the viewer (plus its errors file): rows by number, summaries, queries."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise InputError(str(self.path), "no such file")
        self.segments: list[Segment] = []
        self.report: Any = None
        self.kind = "jsonl"
        self._offsets: list[int] = [0]  # row number where each segment begins
        self.summaries: list[Summary] = []
        self.summarized = threading.Event()
        self._open()

    # -- opening --------------------------------------------------------------------------------------

    def _open(self) -> None:
        doc = self._whole_document()
        if doc is not None:
            self.report = doc
            self.kind = _report_kind(doc)
            self.summarized.set()
            return
        self._add_segment(self.path)
        errors = Path(str(self.path) + ".errors.jsonl")
        if errors.is_file() and not self.path.name.endswith(".errors.jsonl"):
            self._add_segment(errors)

    def _whole_document(self) -> Any:
        """The parsed file when it is one JSON document (a report) rather than JSON lines."""
        with self.path.open("rb") as f:
            head = f.read(1 << 16)
        first = head.lstrip()[:1]
        if first not in (b"{", b"["):
            return None
        line = head.split(b"\n", 1)[0]
        try:
            json.loads(line)
            one_line = len(head.strip().split(b"\n")) == 1
        except ValueError:
            one_line = False
            if self.path.stat().st_size > 64 << 20:
                return None
        else:
            if not one_line:
                return None  # the first line is a whole object: JSON lines
        try:
            doc = json.loads(self.path.read_bytes())
        except ValueError:
            return None
        return doc if _report_kind(doc) != "report" or not one_line else None

    def _add_segment(self, path: Path) -> None:
        with path.open("rb") as f:
            size = f.seek(0, 2)
            mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else None
        starts, ends = _line_bounds(mm) if mm is not None else ([], [])
        self.segments.append(Segment(path, starts, ends, mm))
        self._offsets.append(self._offsets[-1] + len(starts))

    def start_summaries(self) -> None:
        if not self.summarized.is_set():
            threading.Thread(target=self._summarize_all, daemon=True, name="caitool-view-index").start()

    def _summarize_all(self) -> None:
        out = self.summaries
        for seg in self.segments:
            for i in range(len(seg.starts)):
                if i % 256 == 0:
                    # Parsing holds the GIL; a request in flight would wait ~5 ms per switch, so a page turn
                    # took 0.75 s during indexing. Step aside while the page asks for something.
                    while FOREGROUND.busy:
                        time.sleep(0.002)
                out.append(self._summary_of(seg.line(i)))
        self.summarized.set()

    @staticmethod
    def _summary_of(raw: bytes) -> Summary:
        try:
            return summarize(json.loads(raw))
        except ValueError:
            return Summary("bad-json", "", preview=raw[:PREVIEW_CHARS].decode("utf-8", "replace"))

    # -- reading --------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._offsets[-1]

    def _locate(self, n: int) -> tuple[Segment, int]:
        if not 0 <= n < len(self):
            raise IndexError(n)
        s = bisect.bisect_right(self._offsets, n) - 1
        return self.segments[s], n - self._offsets[s]

    def raw(self, n: int) -> bytes:
        seg, i = self._locate(n)
        return seg.line(i)

    def row(self, n: int) -> dict[str, Any]:
        """Row `n` for the detail view: the parsed record, its kind, and where it came from."""
        seg, i = self._locate(n)
        raw = seg.line(i)
        where = f"{seg.path}:{n - self._offsets[self.segments.index(seg)] + 1}"
        try:
            record = json.loads(raw)
        except ValueError as exc:
            return {
                "n": n,
                "kind": "bad-json",
                "where": where,
                "error": str(exc),
                "text": raw.decode("utf-8", "replace"),
            }
        return {
            "n": n,
            "kind": kind_of(record) if isinstance(record, dict) else "row",
            "where": where,
            "record": record,
        }

    def summary(self, n: int) -> Summary:
        if n < len(self.summaries):
            return self.summaries[n]
        return self._summary_of(self.raw(n))

    # -- queries --------------------------------------------------------------------------------------

    def _search(self, text: str) -> set[int]:
        """Row numbers whose JSON text contains `text` (case-insensitive), found in the raw bytes."""
        # As written (UTF-8) and as json.dumps escapes it; lower-cased too, since IGNORECASE on bytes
        # folds ASCII only (an escaped "\u00c9" never matches "\u00e9" otherwise).
        forms = {text, text.lower()}
        needles = {f.encode() for f in forms} | {json.dumps(f)[1:-1].encode() for f in forms}
        pattern = re.compile(b"|".join(re.escape(n) for n in needles), re.IGNORECASE)
        hits: set[int] = set()
        for s, seg in enumerate(self.segments):
            if seg.mm is None:
                continue
            for m in pattern.finditer(seg.mm):
                i = bisect.bisect_right(seg.starts, m.start()) - 1
                if i >= 0 and m.start() < seg.ends[i]:
                    hits.add(self._offsets[s] + i)
        return hits

    def query(self, q: Query) -> dict[str, Any]:
        """One page of the filtered, sorted list, with counts and the p histogram of every match."""
        total = len(self)
        if q.is_plain():  # file order, no filter: no summaries needed, so a huge file pages at once
            stop = min(total, q.offset + q.limit)
            rows = [{"n": n, **self.summary(n).to_dict()} for n in range(q.offset, stop)]
            return {"total": total, "matched": total, "rows": rows, "histogram": None, "ready": False}
        self.summarized.wait()
        hits = self._search(q.text) if q.text else None
        matched = [n for n, s in enumerate(self.summaries) if q.accepts(s) and (hits is None or n in hits)]
        if q.sort == "id":
            matched.sort(key=lambda n: self.summaries[n].id)
        elif q.sort in ("p", "-p"):
            sign = -1.0 if q.sort == "-p" else 1.0
            matched.sort(key=lambda n: (self.summaries[n].p is None, sign * (self.summaries[n].p or 0.0)))
        page = matched[q.offset : q.offset + q.limit]
        return {
            "total": total,
            "matched": len(matched),
            "rows": [{"n": n, **self.summaries[n].to_dict()} for n in page],
            "histogram": histogram(self.summaries[n].p for n in matched),
            "ready": True,
        }

    def facets(self) -> dict[str, Any]:
        """Everything the filter controls offer, with counts (waits for the summaries)."""
        self.summarized.wait()
        principles: dict[str, int] = {}
        flags: dict[str, int] = {}
        kinds: dict[str, int] = {}
        for s in self.summaries:
            kinds[s.kind] = kinds.get(s.kind, 0) + 1
            for p in set(s.principles):
                principles[p] = principles.get(p, 0) + 1
            for f in s.flags:
                flags[f] = flags.get(f, 0) + 1
        return {
            "total": len(self),
            "kinds": kinds,
            "principles": dict(sorted(principles.items())),
            "flags": dict(sorted(flags.items())),
            "errors": sum(1 for s in self.summaries if s.is_error),
            "histogram": histogram(s.p for s in self.summaries),
        }

    def info(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "kind": self.kind,
            "rows": len(self),
            "files": [str(s.path) for s in self.segments],
        }


def histogram(values: Any, bins: int = HISTOGRAM_BINS) -> list[int] | None:
    """Counts of p over [0, 1] in `bins` equal bins; None when no row has a p."""
    counts = [0] * bins
    seen = False
    for p in values:
        if p is None:
            continue
        seen = True
        counts[min(bins - 1, max(0, int(p * bins)))] += 1
    return counts if seen else None


@dataclass
class Query:
    offset: int = 0
    limit: int = 100
    principle: str = ""
    flag: str = ""
    kind: str = ""
    p_min: float | None = None
    p_max: float | None = None
    errors_only: bool = False
    text: str = ""
    sort: str = "order"  # order, id, p, -p
    extra: dict[str, str] = field(default_factory=dict)

    def is_plain(self) -> bool:
        return (
            not (
                self.principle
                or self.flag
                or self.kind
                or self.p_min is not None
                or self.p_max is not None
                or self.errors_only
                or self.text
            )
            and self.sort == "order"
        )

    def accepts(self, s: Summary) -> bool:
        if self.principle and self.principle not in s.principles:
            return False
        if self.flag and self.flag not in s.flags:
            return False
        if self.kind and s.kind != self.kind:
            return False
        if self.errors_only and not s.is_error:
            return False
        if self.p_min is not None and (s.p is None or s.p < self.p_min):
            return False
        return not (self.p_max is not None and (s.p is None or s.p > self.p_max))
