"""Pure functions that turn raw model text into clean fields. No I/O, no model calls."""

from __future__ import annotations

import re

# Echoes a model puts in front of a revision instead of the revision itself ("Sure, here is a revised
# response:", "Revision:", ...). Matched only at the very start, case-insensitively, possibly repeated.
_REVISION_PREFIXES = [
    r"(?:sure|certainly|of course|okay|ok)[,!.]?\s*(?:here(?:'s| is| are)\s+)?(?:a |the |my )?"
    r"(?:revised|rewritten|new|updated|improved)\s+(?:version(?: of the (?:assistant(?:'s)? )?response)?|"
    r"response|answer|reply)[^\n:]*[:.]\s*",
    r"here(?:'s| is)\s+(?:a |the |my )?(?:revised|rewritten|new|updated|improved)\s+"
    r"(?:version(?: of the (?:assistant(?:'s)? )?response)?|response|answer|reply)[^\n:]*[:.]\s*",
    r"(?:revised|rewritten|new|updated|improved)\s+(?:assistant\s+)?(?:response|answer|version)\s*:\s*",
    r"revision\s*:\s*",
    r"assistant\s*:\s*",
]
_REVISION_PREFIX_RE = re.compile(r"^\s*(?:" + "|".join(_REVISION_PREFIXES) + r")", re.IGNORECASE)
_CRITIQUE_PREFIX_RE = re.compile(r"^\s*(?:critique\s*:\s*)", re.IGNORECASE)
# Turn markers that mean the model ran on past its answer into the next turn of a transcript.
_RUNON_RE = re.compile(
    r"\n\s*(?:Human|User|CritiqueRequest|Critique Request|RevisionRequest|Revision Request)\s*:.*\Z",
    re.DOTALL,
)


def _strip_quotes(text: str) -> str:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        inner = text[1:-1]
        if text[0] not in inner:
            return inner.strip()
    return text


def clean_response(text: str) -> str:
    """An initial response: trimmed, with a run-on into the next transcript turn cut off."""
    return _RUNON_RE.sub("", text).strip()


def clean_critique(text: str) -> str:
    return _CRITIQUE_PREFIX_RE.sub("", clean_response(text), count=1).strip()


def clean_revision(text: str) -> tuple[str, list[str]]:
    """A revision without echoes of the request. Returns the text and the flags describing what was done."""
    flags: list[str] = []
    cleaned = clean_response(text)
    for _ in range(3):  # "Sure! Revision: ..." carries two echoes
        stripped = _REVISION_PREFIX_RE.sub("", cleaned, count=1).strip()
        if stripped == cleaned:
            break
        cleaned = stripped
        if "echo_stripped" not in flags:
            flags.append("echo_stripped")
    cleaned = _strip_quotes(cleaned)
    if not cleaned:
        flags.append("empty")
    return cleaned, flags


def normalized(text: str) -> str:
    return " ".join(text.lower().split())


def revision_flags(previous: str, revision: str, flags: list[str]) -> list[str]:
    """Add `unchanged` when a revision repeats the response it revises (modulo case and spacing)."""
    out = list(flags)
    if revision and normalized(previous) == normalized(revision):
        out.append("unchanged")
    return out
