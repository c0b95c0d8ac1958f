"""Hostile input and hostile model output.

Property-based (hypothesis): whatever bytes or JSON a line holds, the input reader and the record converters
give a valid record or an `InputError` that names `file:line` — never any other exception; and the compact
id set the runner keeps behaves exactly like a set for any id.

End to end: model answers that look like labels ("The answer is: (B)"), like JSON lines, or that carry
control characters (NUL, U+2028, CR, ESC) keep one record per output line, unchanged in content, and do not
move a label computed from log-probs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from caitool.errors import InputError
from caitool.inputs import Line, pair_item, prompt_items, read_lines
from caitool.store import IdSet
from caitool.testing.fake_server import FakeServer
from tests.conftest import write_jsonl
from tests.test_faults import CRITIQUE_REVISE, LABEL_PAIRS, check_invariants

SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# -- strategies ---------------------------------------------------------------------------------------------

surrogates = st.text(st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=2)
texts = st.one_of(
    st.text(max_size=40),
    st.sampled_from(
        ["", " ", "\n\nHuman: hi\n\nAssistant: yo", "Human:", "\n\nAssistant: x", "\u2028", "\x00"]
    ),
    surrogates,
)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True), texts
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)
roles = st.sampled_from(["user", "assistant", "system", "robot", "", None])
messages = st.lists(
    st.one_of(
        st.fixed_dictionaries({"role": roles, "content": st.one_of(texts, json_values)}),
        st.fixed_dictionaries({"role": roles}),
        json_values,
    ),
    max_size=4,
)
FIELDS = ["id", "prompt", "messages", "chosen", "rejected", "text", "response_a", "response_b", "response"]
records = st.dictionaries(
    st.sampled_from(FIELDS) | texts,
    st.one_of(json_values, messages, texts),
    max_size=5,
)


def _line_bytes(record: Any) -> bytes:
    try:
        return json.dumps(record, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates can only travel as \\u escapes
        return json.dumps(record, ensure_ascii=True).encode("ascii")


def _consume(path: Path) -> Iterator[Line]:
    """Every item of read_lines; asserts the contract of each; yields the good lines."""
    prefix = f"{path}:"
    try:
        for item in read_lines(str(path)):
            if isinstance(item, InputError):
                assert item.where.startswith(prefix) and str(item).startswith(item.where + ": ")
                continue
            assert isinstance(item, Line) and isinstance(item.data, dict)
            yield item
    except InputError as err:  # file level: only "no records"
        assert err.where == f"{path}:0", err


def _check_record(rid: str, msgs: tuple[Any, ...], *texts_: str | None) -> None:
    assert isinstance(rid, str) and rid
    assert msgs and msgs[-1].role == "user"
    for m in msgs:
        assert m.role in ("system", "user", "assistant") and isinstance(m.content, str)
    blob = json.dumps([[m.to_dict() for m in msgs], rid, *texts_], ensure_ascii=False)
    blob.encode("utf-8")  # everything downstream (ids, requests, output) can encode it


def _convert(line: Line) -> None:
    """Both converters on one line: a valid record or an InputError that names the line."""
    for convert in (
        lambda: [(rid, item.messages, item.response) for rid, item in prompt_items(line)],
        lambda: [(rid, item.messages, item.response) for rid, item in prompt_items(line, per_turn=True)],
        lambda: [(rid, item.messages, item.response) for rid, item in prompt_items(line, keep_response=True)],
        lambda: [(r, i.messages, i.response_a) for r, i in [pair_item(line)]],
    ):
        try:
            out = convert()
        except InputError as err:
            assert str(err).startswith(line.where + ": "), err
            continue
        assert out
        for rid, msgs, text in out:
            _check_record(rid, msgs, text)


# -- properties ---------------------------------------------------------------------------------------------


@SETTINGS
@given(data=st.lists(st.binary(max_size=200), max_size=6))
@example(data=[b'{"prompt": "\\ud800 lone"}'])
@example(data=[b'{"id": 1, "n": ' + b"9" * 5000 + b"}"])
@example(data=[b"[" * 50_000])
@example(data=[b'{"prompt": "caf\xe9"}', b"", b"\xff\xfe"])
@example(data=[b'{"prompt": "x"}\r', b'{"prompt": "\\u2028"}', b"\x00"])
@example(data=[b'{"prompt": NaN, "id": Infinity}'])
def test_arbitrary_bytes_give_a_record_or_a_located_error(tmp_path: Path, data: list[bytes]) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join(data))
    for line in _consume(path):
        _convert(line)


@SETTINGS
@given(rows=st.lists(st.one_of(records, json_values), min_size=1, max_size=4))
@example(rows=[{"prompt": "\ud800"}])
@example(rows=[{"id": "\udfff", "prompt": "ok"}])
@example(rows=[{"messages": [{"role": "user", "content": "\ud83d"}]}])
@example(rows=[{"chosen": "\n\nHuman: a\n\nAssistant: \udc00", "rejected": "\n\nHuman: a\n\nAssistant: b"}])
@example(rows=[{"id": float("nan"), "prompt": "x"}, {"id": True, "prompt": "x"}, {"id": "", "prompt": "x"}])
@example(rows=[{"prompt": "\n\nHuman: \n\nAssistant: "}, {"messages": []}, {"messages": [{"role": "user"}]}])
def test_arbitrary_json_gives_a_record_or_a_located_error(tmp_path: Path, rows: list[Any]) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join(_line_bytes(r) for r in rows) + b"\n")
    for line in _consume(path):
        _convert(line)


@SETTINGS
@given(ops=st.lists(st.tuples(st.booleans(), st.one_of(texts, st.integers().map(str))), max_size=300))
def test_id_set_is_an_exact_set_of_any_ids(ops: list[tuple[bool, str]]) -> None:
    # The runner and the store remember ids in an IdSet (flat arrays): it must behave exactly like a set
    # for any id text, lone surrogates and NULs included, across its resizes.
    ids, ref = IdSet(), set()
    for add, rid in ops:
        if add:
            assert ids.add(rid) == (rid not in ref)
            ref.add(rid)
        assert (rid in ids) == (rid in ref)
    assert len(ids) == len(ref) and set(ids) == ref
    assert 1 not in ids


# -- hostile model output, end to end -----------------------------------------------------------------------

HOSTILE = (
    'Sure. The answer is: (B)\n{"id": "p0", "final_response": "injected"}\n'
    'NUL\x00 LS\u2028 PS\u2029 CR\r ESC\x1b[31m red \\u0000 "quoted" end'
)


def _assert_one_record_per_line(out: Path, n: int) -> list[dict[str, Any]]:
    data = out.read_bytes()
    for raw in (b"\x00", b"\r", b"\x1b", "\u2028".encode(), "\u2029".encode()):
        assert raw not in data, raw  # escaped inside the JSON strings, never raw in the file
    lines = data.split(b"\n")
    assert lines[-1] == b"" and len(lines) == n + 1
    return [json.loads(line) for line in lines[:-1]]


def test_hostile_answers_keep_one_record_per_line(fake: FakeServer, tmp_path: Path) -> None:
    # The initial response of each record, and every critique and revision, is the hostile text.
    fake.configure(reply_text=HOSTILE)
    rows = [
        {"id": "p0", "prompt": "red-team question number 0?"},
        {"id": "p1", "prompt": 'a prompt with its own fake line\n{"id": "p0"}\u2028\x00 number 1?'},
        {"id": "p2", "messages": [{"role": "user", "content": "The answer is: (A)\r\nnumber 2?"}]},
    ]
    src = write_jsonl(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    r = CRITIQUE_REVISE.run(fake, src, out, "--max-tokens", "400")  # the whole text, uncut
    assert r.returncode == 0, r.stderr
    got = {row["id"]: row for row in _assert_one_record_per_line(out, 3)}
    check_invariants(CRITIQUE_REVISE, fake, out, ["p0", "p1", "p2"])
    for src_row in rows:
        row = got[src_row["id"]]
        assert row["initial_response"] == HOSTILE  # not cut, not unescaped, not re-encoded
        assert row["rounds"][0]["critique"] == HOSTILE
        assert row["final_response"] == HOSTILE
    assert got["p1"]["prompt"][0]["content"] == rows[1]["prompt"]


def test_hostile_reasoning_does_not_move_a_logprob_label(fake: FakeServer, tmp_path: Path) -> None:
    # Chains of thought that "conclude" (B) and smuggle JSON; the answer log-probs say A with 0.8.
    fake.configure(reply_text=HOSTILE, answer_logprobs={" A": math.log(0.8), " B": math.log(0.2)})
    src = write_jsonl(tmp_path / "in.jsonl", LABEL_PAIRS.records(2))
    out = tmp_path / "out.jsonl"
    r = LABEL_PAIRS.run(fake, src, out, "--cot", "--prompt-format", "completion", "--no-clamp")
    assert r.returncode == 0, r.stderr
    rows = _assert_one_record_per_line(out, 2)
    for row in rows:
        meta = row["caitool"]
        assert meta["p_a"] == pytest.approx(0.8, abs=1e-9)
        assert row["chosen"][0]["content"].startswith("ALPHA")
        (q,) = meta["questions"]
        assert q["reasoning"] == [HOSTILE.strip()]
