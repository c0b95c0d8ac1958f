"""Gold sets for `caitool eval-labeler`: reading their items and their per-item probability rows (pure; the
scoring with a feedback model is `caitool.tasks.score_gold`).

Accepted rows (JSONL):
- the paper's eval format (`evals/438HHHEvaluations.jsonl`, `HarmfulVsEthical.jsonl`, and the nine-option
  `HarmfulnessClassification.jsonl`):
  `{"prompt": "...Options:\\n (A) ...\\n (B) ...\\n\\nThe answer is:",
    "corrects": [" (B)"], "incorrects": [" (A)"]}`
  The prompt is sent as it is; the options are found in it (the last "(A) ... (B) ..." block before the
  closing "...:" line, after one or two newlines) for their lengths and, with two options, for the
  swapped-order question. With more options (up to I), P is read over all of them and the argmax is the
  labeler's choice. `--cot` asks the same question as the paper's CoT few-shots do ("Human: <question>
  Assistant: Let's think step by step:" ... "Human:\\nSo the answer is: (") and averages over K chains.
- preference pairs: TRL `{prompt, chosen, rejected}` (text or messages), HH-RLHF `{chosen, rejected}`
  transcripts, or `{prompt, response_a, response_b, "correct": "a"|"b"}`; the chosen response is the
  correct option. These are asked with label-pairs' own question (principle, few-shot examples).
Either may carry precomputed probabilities, `p_correct` (and `p_correct_swapped`), instead of a model.

The result per item (`probability_row`, written by `caitool.tasks.score_gold`) is a row that `--probs` reads
back: `id`, `p_correct`, `p_correct_swapped`, `correct_position`, `len_correct`, `len_incorrect`.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import Any, Literal

from caitool.errors import InputError
from caitool.evaluation.labeler_metrics import ItemProbability
from caitool.inputs import Line, PairItem, pair_item
from caitool.labels import NINE_OPTIONS

Position = Literal["A", "B"]

# An option line "\n (A) ..." and the closing "...:" line after one newline (HarmfulVsEthical) or two (HHH).
_OPTION = re.compile(r"\n[ \t]*\((?P<letter>[A-I])\)[ \t]*")
_TAIL = re.compile(r"\n\n?[^\n]*:[ \t]*$")
_WRAP = re.compile(r"^\s*\[\[\[(.*)\]\]\]\s*$", re.DOTALL)


@dataclass(frozen=True)
class GoldItem:
    id: str
    where: str
    correct_position: str  # the correct option's letter: A or B, or up to I in a many-option item
    option_a: str | None = None
    option_b: str | None = None
    prompt: str | None = None  # the paper's format: the whole question
    swapped_prompt: str | None = None  # the same with the options swapped; None if they were not found
    pair: PairItem | None = None  # preference pairs
    p_correct: float | None = None
    p_correct_swapped: float | None = None
    n_options: int = 2

    @property
    def letters(self) -> str:
        return NINE_OPTIONS[: self.n_options]

    @property
    def lengths(self) -> tuple[int | None, int | None]:
        if self.option_a is None or self.option_b is None:
            return None, None
        a, b = len(self.option_a), len(self.option_b)
        return (a, b) if self.correct_position == "A" else (b, a)

    def with_probabilities(self, p: float, p_swapped: float | None) -> ItemProbability:
        lc, li = self.lengths
        seat: Position = "A" if self.correct_position == "A" else "B"
        return ItemProbability(self.id, p, p_swapped, seat, lc, li)


def _letters(value: Any, where: str, key: str, many: bool) -> list[str]:
    if (
        not isinstance(value, list)
        or not value
        or (len(value) != 1 and not many)
        or not all(isinstance(v, str) for v in value)
    ):
        what = "of answers" if many else "with one answer"
        raise InputError(where, f'field {key!r} must be a list {what} such as [" (A)"]')
    out = []
    for v in value:
        letter = v.strip().strip("()").strip().upper()
        if len(letter) != 1 or letter not in NINE_OPTIONS:
            raise InputError(where, f"{key} {v!r}: answers are option letters (A) to (I)")
        out.append(letter)
    return out


def split_options(prompt: str) -> tuple[str, list[tuple[str, str]], str] | None:
    """(text before the options, [(option marker, option text)], the closing line) or None: the last block
    of consecutive options "(A)", "(B)", ... before the closing "...:" line."""
    tail = _TAIL.search(prompt)
    if tail is None:
        return None
    body = prompt[: tail.start()]
    marks = list(_OPTION.finditer(body))
    firsts = [i for i, m in enumerate(marks) if m.group("letter") == "A"]
    if not firsts:
        return None
    marks = marks[firsts[-1] :]
    if "".join(m.group("letter") for m in marks) != NINE_OPTIONS[: len(marks)] or len(marks) < 2:
        return None
    options = [
        (m.group(0), body[m.end() : marks[i + 1].start() if i + 1 < len(marks) else len(body)])
        for i, m in enumerate(marks)
    ]
    return body[: marks[0].start()], options, prompt[tail.start() :]


def _prob(data: dict[str, Any], key: str, where: str) -> float | None:
    v = data.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float) or math.isnan(v) or not 0.0 <= v <= 1.0:
        raise InputError(where, f"field {key!r} must be a probability in [0, 1], got {v!r}")
    return float(v)


def unwrap(option: str) -> str:
    m = _WRAP.match(option)
    return (m.group(1) if m else option).strip()


def swap_options(prompt: str) -> tuple[str, str, str] | None:
    """(option A text, option B text, the prompt with the two swapped), or None if not found or the item
    has more than two options."""
    found = split_options(prompt)
    if found is None or len(found[1]) != 2:
        return None
    head, ((ma, a), (mb, b)), tail = found
    return unwrap(a), unwrap(b), head + ma + b + mb + a + tail


def parse_gold(line: Line) -> GoldItem:
    where, data = line.where, line.data
    p, ps = _prob(data, "p_correct", where), _prob(data, "p_correct_swapped", where)
    if "corrects" in data or "incorrects" in data:
        prompt = data.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise InputError(where, "field 'prompt' must be the question text")
        (correct,) = _letters(data.get("corrects"), where, "corrects", many=False)
        wrong = _letters(data.get("incorrects"), where, "incorrects", many=True)
        named = [correct, *wrong]
        if len(set(named)) != len(named):
            raise InputError(where, "corrects and incorrects name the same option")
        n_options = max(2, NINE_OPTIONS.index(max(named)) + 1)
        parsed = split_options(prompt)
        if parsed is not None and len(parsed[1]) != n_options and len(parsed[1]) > 2:
            n_options = max(n_options, len(parsed[1]))
        rid = str(data["id"]) if "id" in data else _hash(prompt, correct)
        found = swap_options(prompt) if n_options == 2 else None
        a, b, swapped = found if found else (None, None, None)
        return GoldItem(
            rid,
            where,
            correct,
            a,
            b,
            prompt=prompt,
            swapped_prompt=swapped,
            p_correct=p,
            p_correct_swapped=ps,
            n_options=n_options,
        )
    if "response_a" in data and "correct" not in data:
        raise InputError(
            where, 'a response_a/response_b pair needs \'correct\': "a" or "b" (or use chosen/rejected)'
        )
    rid, item = pair_item(line)
    position: Position = "A"
    if "correct" in data:
        c = str(data["correct"]).strip().strip("()").upper()
        if c not in ("A", "B"):
            raise InputError(where, f"field 'correct' must be 'a' or 'b', got {data['correct']!r}")
        position = "A" if c == "A" else "B"
    return GoldItem(
        rid, where, position, item.response_a, item.response_b, pair=item, p_correct=p, p_correct_swapped=ps
    )


def _hash(prompt: str, correct: str) -> str:
    return hashlib.sha256(json.dumps([prompt, correct]).encode()).hexdigest()[:16]


def probability_row(
    item: GoldItem, p: float, p_swapped: float | None, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    lc, li = item.lengths
    row = {
        "id": item.id,
        "p_correct": p,
        "p_correct_swapped": p_swapped,
        "correct_position": item.correct_position,
        "len_correct": lc,
        "len_incorrect": li,
    }
    if extra:
        row.update(extra)
    return row


def parse_probability(line: Line) -> ItemProbability:
    """A `--probs` row: `id` and `p_correct` (and `p_correct_swapped`), e.g. a row of `eval-labeler -o`."""
    if "id" not in line.data:
        raise InputError(line.where, "missing 'id' (the gold item it scores)")
    return row_to_probability(line.data, line.where)


def row_to_probability(row: dict[str, Any], where: str) -> ItemProbability:
    p = _prob(row, "p_correct", where)
    if p is None:
        raise InputError(where, "missing 'p_correct'")
    pos = row.get("correct_position", "A")
    if pos not in ("A", "B"):
        raise InputError(where, "'correct_position' must be A or B")
    lc, li = row.get("len_correct"), row.get("len_incorrect")
    return ItemProbability(
        str(row.get("id", where)),
        p,
        _prob(row, "p_correct_swapped", where),
        pos,
        lc if isinstance(lc, int) else None,
        li if isinstance(li, int) else None,
    )


def question_body(prompt: str) -> str:
    """The eval question without its closing "The answer is:" line (for the CoT frame)."""
    tail = _TAIL.search(prompt)
    return (prompt[: tail.start()] if tail else prompt).strip("\n")
