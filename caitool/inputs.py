"""Reading input JSONL into prompt records, lazily, with file:line errors.

Accepted shapes, per line:
- `{"prompt": "text"}`                       one user turn;
- `{"messages": [{"role", "content"}, ...]}` a conversation; the conversation so far is the context;
- an Anthropic HH-RLHF transcript `"\\n\\nHuman: ...\\n\\nAssistant: ..."`, in whatever field (`chosen` in
  hh-rlhf); detected by its `Human:` / `Assistant:` markers.
`--field` picks the field; by default the first of `messages`, `prompt`, `chosen`, `text` that is present.

Every problem is an `InputError` whose message starts with `file:line`.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from caitool.console import stdin_notice
from caitool.errors import InputError
from caitool.providers.base import Message

DEFAULT_FIELDS = ("messages", "prompt", "chosen", "text")
_ROLES = {"system", "user", "assistant"}
_TRANSCRIPT_TURN = re.compile(r"(?:^|\n\n)(Human|Assistant):[ \t]?")


@dataclass(frozen=True)
class PromptItem:
    """One conversation to continue: the turns so far (ending with a user turn), and optionally an initial
    assistant response taken from the input instead of sampled."""

    messages: tuple[Message, ...]
    response: str | None = None


@dataclass(frozen=True)
class Line:
    where: str  # "file:line"
    data: dict[str, Any]


def input_name(path: str) -> str:
    return "<stdin>" if path == "-" else path


def check_input(path: str) -> None:
    """File-level problems, raised before a run creates any file: a missing input leaves nothing behind."""
    if path == "-":
        return
    p = Path(path)
    if not p.exists():
        raise InputError(f"{path}:0", "no such file")
    if p.is_dir():
        raise InputError(f"{path}:0", "is a directory, not a JSONL file")


def _open(path: str) -> IO[bytes]:
    if path == "-":
        stdin_notice(path)
        return sys.stdin.buffer
    check_input(path)
    return Path(path).open("rb")


# JSON may spell a UTF-16 surrogate as an escape; alone (not part of a pair) it is no character at all, and
# every later encode (ids, requests, output) would fail on it.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _has_lone_surrogate(data: Any) -> bool:
    try:
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def read_lines(path: str) -> Iterator[Line | InputError]:
    """Each non-blank line as a JSON object, or the `InputError` that describes what is wrong with it (so a
    caller may skip it and go on). File-level problems (missing, a directory, no records at all) raise."""
    name = input_name(path)
    stream = _open(path)
    count = 0
    try:
        for lineno, raw in enumerate(stream, start=1):
            where = f"{name}:{lineno}"
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]  # a UTF-8 byte-order mark, as Windows editors write it
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield InputError(
                    where,
                    f"not UTF-8 (byte {exc.start}: {raw[exc.start : exc.start + 1]!r})",
                    raw.decode("utf-8", "backslashreplace").rstrip("\r\n"),
                )
                count += 1
                continue
            if not text.strip():
                continue
            count += 1
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                reason = f"malformed JSON: {exc.msg} at column {exc.colno}"
                yield InputError(where, reason, text.rstrip("\r\n"))
                continue
            except RecursionError:
                yield InputError(where, "JSON nested too deeply", text.rstrip("\r\n"))
                continue
            except ValueError as exc:  # an integer beyond Python's digit limit, and the like
                yield InputError(where, f"malformed JSON: {exc}", text.rstrip("\r\n"))
                continue
            if _SURROGATE_ESCAPE.search(text) and _has_lone_surrogate(data):
                yield InputError(
                    where, "invalid Unicode: a lone surrogate escape (\\ud800-\\udfff)", text.rstrip("\r\n")
                )
                continue
            if not isinstance(data, dict):
                reason = f"expected a JSON object, got {type(data).__name__}"
                yield InputError(where, reason, text.rstrip("\r\n"))
                continue
            yield Line(where, data)
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    if count == 0:
        raise InputError(f"{name}:0", "no records (the input is empty)")


def count_lines(path: str) -> int | None:
    """Non-blank lines of a regular file (for progress totals); None for stdin and pipes."""
    if path == "-" or not Path(path).is_file():
        return None
    n = 0
    with open(path, "rb") as fh:
        for raw in fh:
            if raw.strip():
                n += 1
    return n


def parse_transcript(text: str, where: str) -> list[Message]:
    """An HH-RLHF transcript: "\\n\\nHuman: ...\\n\\nAssistant: ..." into messages."""
    marks = list(_TRANSCRIPT_TURN.finditer(text))
    if not marks:
        raise InputError(where, "transcript has no 'Human:' / 'Assistant:' turns")
    if text[: marks[0].start()].strip():
        raise InputError(where, "transcript has text before its first 'Human:' turn")
    messages = []
    for i, m in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        content = text[m.end() : end].strip()
        messages.append(Message("user", content) if m.group(1) == "Human" else Message("assistant", content))
    return messages


def looks_like_transcript(text: str) -> bool:
    return text.lstrip().startswith("Human:") or "\n\nHuman:" in text


def parse_conversation(value: Any, where: str, field: str) -> list[Message]:
    if isinstance(value, str):
        if not value.strip():
            raise InputError(where, f"field {field!r} is empty")
        if looks_like_transcript(value):
            return parse_transcript(value, where)
        return [Message("user", value)]
    if isinstance(value, list):
        if not value:
            raise InputError(where, f"field {field!r} is an empty list")
        messages = []
        for i, item in enumerate(value):
            if not isinstance(item, dict) or "role" not in item or "content" not in item:
                raise InputError(where, f"{field}[{i}] is not a {{'role', 'content'}} message")
            role, content = item["role"], item["content"]
            if role not in _ROLES:
                raise InputError(
                    where, f"{field}[{i}] has unknown role {role!r} (use system, user or assistant)"
                )
            if not isinstance(content, str):
                raise InputError(where, f"{field}[{i}].content is not a string")
            messages.append(Message(role, content))
        return messages
    raise InputError(
        where, f"field {field!r} must be a string or a list of messages, not {type(value).__name__}"
    )


def pick_field(data: dict[str, Any], where: str, field: str | None) -> str:
    if field is not None:
        if field not in data:
            raise InputError(
                where, f"missing field {field!r} (fields present: {', '.join(sorted(data)) or 'none'})"
            )
        return field
    for name in DEFAULT_FIELDS:
        if name in data:
            return name
    raise InputError(
        where,
        "no prompt field: expected one of " + ", ".join(DEFAULT_FIELDS) + " (or name one with --field)",
    )


def record_id(data: dict[str, Any], where: str, messages: list[Message]) -> str:
    """The record's own `id`, or a content hash of its conversation: stable across runs and machines."""
    if "id" in data:
        value = data["id"]
        if isinstance(value, bool) or not isinstance(value, str | int) or str(value) == "":
            raise InputError(where, "field 'id' must be a non-empty string or an integer")
        return str(value)
    canonical = json.dumps([m.to_dict() for m in messages], ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def prompt_items(
    line: Line,
    *,
    field: str | None = None,
    response_field: str | None = None,
    keep_response: bool = False,
    per_turn: bool = False,
) -> list[tuple[str, PromptItem]]:
    """The prompt record(s) of one input line, each with its stable id.

    A trailing assistant turn is dropped (the model answers for itself, as in the paper) unless
    `keep_response`, which makes it the initial response. `response_field` takes the initial response from
    another field. `per_turn` makes one record per human turn (ids `ID-t1`, `ID-t2`, ...), each with the
    conversation up to that turn as context, as the paper did with multi-turn red-team conversations.
    """
    where, data = line.where, line.data
    name = pick_field(data, where, field)
    conv = parse_conversation(data[name], where, name)
    rid = record_id(data, where, conv)
    response: str | None = None
    if conv[-1].role == "assistant":
        if keep_response:
            response = conv[-1].content
        conv = conv[:-1]
    if response_field is not None:
        value = data.get(response_field)
        if not isinstance(value, str) or not value.strip():
            raise InputError(
                where, f"field {response_field!r} (the initial response) is missing or not a string"
            )
        response = value
    if not conv or conv[-1].role != "user":
        raise InputError(where, f"field {name!r} has no human turn to respond to")
    if not per_turn:
        return [(rid, PromptItem(tuple(conv), response))]
    out = []
    turns = [i for i, m in enumerate(conv) if m.role == "user"]
    full = parse_conversation(data[name], where, name)
    for k, i in enumerate(turns, start=1):
        given = response if i == len(conv) - 1 else None
        if keep_response and given is None and i + 1 < len(full) and full[i + 1].role == "assistant":
            given = full[i + 1].content
        out.append((f"{rid}-t{k}", PromptItem(tuple(conv[: i + 1]), given)))
    return out


@dataclass(frozen=True)
class PairItem:
    """Two candidate responses to the same conversation (which ends with a user turn)."""

    messages: tuple[Message, ...]
    response_a: str
    response_b: str


def _response_text(value: Any, where: str, name: str) -> str:
    """A response given as a string, or as a message list whose last turn is the assistant's. It may be
    empty: saying nothing is a legitimate option (hh-rlhf has such pairs), and train-pm accepts it too."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value:
        last = value[-1]
        if (
            isinstance(last, dict)
            and last.get("role") == "assistant"
            and isinstance(last.get("content"), str)
        ):
            return str(last["content"])
    raise InputError(where, f"field {name!r} must be a string or messages ending with an assistant turn")


def _split_shared_prefix(chosen: list[Message], rejected: list[Message], where: str) -> PairItem:
    """HH-RLHF and TRL implicit-prompt pairs: the shared turns are the conversation, the final assistant
    turns are the two responses."""
    n = 0
    while n < min(len(chosen), len(rejected)) - 1 and chosen[n] == rejected[n]:
        n += 1
    prefix = chosen[:n]
    tail_c, tail_r = chosen[n:], rejected[n:]
    if len(tail_c) != 1 or len(tail_r) != 1 or tail_c[0].role != "assistant" or tail_r[0].role != "assistant":
        raise InputError(where, "'chosen' and 'rejected' must share every turn but a final assistant turn")
    if not prefix or prefix[-1].role != "user":
        raise InputError(where, "the shared conversation must end with a human turn")
    return PairItem(tuple(prefix), tail_c[0].content, tail_r[0].content)


def pair_item(line: Line, *, field: str | None = None) -> tuple[str, PairItem]:
    """One comparison from a line in any of the accepted shapes, with its stable id:
    `{prompt|messages, response_a, response_b}`, TRL `{prompt, chosen, rejected}` (text or messages), or
    HH-RLHF / TRL implicit-prompt `{chosen, rejected}` (the shared prefix is the conversation)."""
    where, data = line.where, line.data
    if "response_a" in data or "response_b" in data:
        name = pick_field(data, where, field)
        conv = parse_conversation(data[name], where, name)
        if conv[-1].role == "assistant":
            conv = conv[:-1]
        if not conv or conv[-1].role != "user":
            raise InputError(where, f"field {name!r} has no human turn to respond to")
        for key in ("response_a", "response_b"):
            if key not in data:
                raise InputError(where, f"missing field {key!r}")
        item = PairItem(
            tuple(conv),
            _response_text(data["response_a"], where, "response_a"),
            _response_text(data["response_b"], where, "response_b"),
        )
    elif "chosen" in data and "rejected" in data:
        prompt_field = field or ("prompt" if "prompt" in data else None)
        if prompt_field is not None:
            conv = parse_conversation(data[prompt_field], where, prompt_field)
            if conv[-1].role != "user":
                raise InputError(where, f"field {prompt_field!r} must end with a human turn")
            item = PairItem(
                tuple(conv),
                _response_text(data["chosen"], where, "chosen"),
                _response_text(data["rejected"], where, "rejected"),
            )
        else:
            chosen = parse_conversation(data["chosen"], where, "chosen")
            rejected = parse_conversation(data["rejected"], where, "rejected")
            item = _split_shared_prefix(chosen, rejected, where)
    else:
        raise InputError(
            where,
            "not a pair: expected response_a/response_b, or chosen/rejected (TRL or HH-RLHF); "
            "for prompts only, pass --policy to sample the pair",
        )
    if "id" in data:
        rid = record_id(data, where, list(item.messages))
    else:
        blob = json.dumps(
            [[m.to_dict() for m in item.messages], item.response_a, item.response_b],
            ensure_ascii=False,
            sort_keys=True,
        )
        rid = hashlib.sha256(blob.encode()).hexdigest()[:16]
    return rid, item
