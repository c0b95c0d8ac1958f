"""Gold sets for `caitool eval-labeler`, and scoring their items with a feedback model.

Accepted rows (JSONL), two options each:
- the paper's eval format (`evals/438HHHEvaluations.jsonl`, `HarmfulVsEthical.jsonl`):
  `{"prompt": "...Options:\\n (A) ...\\n (B) ...\\n\\nThe answer is:",
    "corrects": [" (B)"], "incorrects": [" (A)"]}`
  The prompt is sent as it is; the options are found in it (the last "(A) ... (B) ..." block before the
  closing "...:" line) for their lengths and for the swapped-order question. Items with more than two
  options (the 9-way `HarmfulnessClassification.jsonl`) are not supported.
- preference pairs: TRL `{prompt, chosen, rejected}` (text or messages), HH-RLHF `{chosen, rejected}`
  transcripts, or `{prompt, response_a, response_b, "correct": "a"|"b"}`; the chosen response is the
  correct option. These are asked with label-pairs' own question (principle, few-shot examples).
Either may carry precomputed probabilities, `p_correct` (and `p_correct_swapped`), instead of a model.

Scoring uses label-pairs' machinery: `caitool.labels.score_answer` reads P(A) from the answer's log-probs
(or `parse_vote` / `vote_probability` from sampled answers), and pairs go through `Labeler.label` with both
orders. The result per item is a row that `--probs` reads back: `id`, `p_correct`, `p_correct_swapped`,
`correct_position`, `len_correct`, `len_incorrect`.
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
from caitool.labels import NoAnswer, parse_vote, score_answer, vote_probability
from caitool.providers.base import GenerateParams, Message, Usage
from caitool.retry import ResilientClient
from caitool.runner import Job, RecordFailed
from caitool.seeds import derive_seed

Position = Literal["A", "B"]

_OPTIONS = re.compile(
    r"^(?P<head>.*\n[ \t]*)\(A\)(?P<sa>[ \t]*)(?P<a>.*?)(?P<mid>\n[ \t]*)\(B\)(?P<sb>[ \t]*)(?P<b>.*?)"
    r"(?P<tail>\n\n[^\n]*:[ \t]*)$",
    re.DOTALL,
)
_WRAP = re.compile(r"^\s*\[\[\[(.*)\]\]\]\s*$", re.DOTALL)


@dataclass(frozen=True)
class GoldItem:
    id: str
    where: str
    correct_position: Position
    option_a: str | None = None
    option_b: str | None = None
    prompt: str | None = None  # the paper's format: the whole question
    swapped_prompt: str | None = None  # the same with the options swapped; None if they were not found
    pair: PairItem | None = None  # preference pairs
    p_correct: float | None = None
    p_correct_swapped: float | None = None

    @property
    def lengths(self) -> tuple[int | None, int | None]:
        if self.option_a is None or self.option_b is None:
            return None, None
        a, b = len(self.option_a), len(self.option_b)
        return (a, b) if self.correct_position == "A" else (b, a)

    def with_probabilities(self, p: float, p_swapped: float | None) -> ItemProbability:
        lc, li = self.lengths
        return ItemProbability(self.id, p, p_swapped, self.correct_position, lc, li)


def _letter(value: Any, where: str, key: str) -> Position:
    if not isinstance(value, list) or len(value) != 1 or not isinstance(value[0], str):
        raise InputError(where, f'field {key!r} must be a list with one answer such as [" (A)"]')
    letter = value[0].strip().strip("()").strip().upper()
    if letter not in ("A", "B"):
        raise InputError(
            where, f"{key} {value[0]!r}: only two-option items, answered (A) or (B), are supported"
        )
    return "A" if letter == "A" else "B"


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
    """(option A text, option B text, the prompt with the two swapped), or None if not found."""
    m = _OPTIONS.match(prompt)
    if m is None:
        return None
    g = m.groupdict()
    swapped = g["head"] + "(A)" + g["sa"] + g["b"] + g["mid"] + "(B)" + g["sb"] + g["a"] + g["tail"]
    return unwrap(g["a"]), unwrap(g["b"]), swapped


def parse_gold(line: Line) -> GoldItem:
    where, data = line.where, line.data
    p, ps = _prob(data, "p_correct", where), _prob(data, "p_correct_swapped", where)
    if "corrects" in data or "incorrects" in data:
        prompt = data.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise InputError(where, "field 'prompt' must be the question text")
        correct = _letter(data.get("corrects"), where, "corrects")
        wrong = _letter(data.get("incorrects"), where, "incorrects")
        if correct == wrong:
            raise InputError(where, "corrects and incorrects name the same option")
        rid = str(data["id"]) if "id" in data else _hash(prompt, correct)
        found = swap_options(prompt)
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


# ---------------------------------------------------------------------------------------------------------
# scoring with a model


@dataclass(frozen=True)
class ScoreSettings:
    prompt_format: Literal["completion", "chat"] = "completion"
    seed: int = 0
    both_orders: bool = True
    votes: int = 0  # > 0: P(A) from K sampled answers (servers without log-probs)
    reask: int = 2
    top_logprobs: int = 20
    temperature: float = 1.0


class QuestionScorer:
    """P(A) for a question already written out, such as the paper's eval prompts ("... The answer is:")."""

    def __init__(self, client: ResilientClient, settings: ScoreSettings) -> None:
        self.client = client
        self.s = settings

    async def p_a(self, prompt: str, seed: int, usage: Usage) -> float:
        request: list[Message] | str = (
            prompt if self.s.prompt_format == "completion" else [Message("user", prompt)]
        )
        raw = ""
        for attempt in range(self.s.reask + 1):
            params = GenerateParams(
                temperature=self.s.temperature,
                max_tokens=8 if self.s.votes else 3,
                logprobs=not self.s.votes,
                top_logprobs=0 if self.s.votes else self.s.top_logprobs,
                n=self.s.votes or 1,
                seed=seed + attempt,
            )
            if isinstance(request, str):
                result = await self.client.complete(request, params)
            else:
                result = await self.client.chat(request, params)
            usage.add(result.usage)
            if self.s.votes:
                votes = [parse_vote(c.text) for c in result.choices]
                a, b = votes.count("A"), votes.count("B")
                raw = result.choices[-1].text if result.choices else ""
                if a + b:
                    return vote_probability(a, b)
                continue
            choice = result.choices[0]
            raw = choice.text
            if not choice.logprobs:
                raise RecordFailed(
                    f"{self.client.spec} returned no log-probs", {"hint": "use --votes K", "raw": raw}
                )
            try:
                return score_answer(choice.logprobs).p_a
            except NoAnswer:
                continue
        raise RecordFailed(f"no (A)/(B) answer after {self.s.reask + 1} attempts", {"raw": raw})

    async def score(self, item: GoldItem) -> dict[str, Any]:
        assert item.prompt is not None
        usage = Usage()
        p_a = await self.p_a(item.prompt, derive_seed(self.s.seed, item.id, "ab"), usage)
        p = p_a if item.correct_position == "A" else 1.0 - p_a
        p_swapped = None
        if self.s.both_orders and item.swapped_prompt is not None:
            # In the swapped question the correct option sits in the other seat.
            q = await self.p_a(item.swapped_prompt, derive_seed(self.s.seed, item.id, "ba"), usage)
            p_swapped = q if item.correct_position == "B" else 1.0 - q
        return probability_row(item, p, p_swapped, {"usage": usage.to_dict()})


async def score_pair(labeler: Any, item: GoldItem) -> dict[str, Any]:
    """A preference pair through label-pairs' `Labeler` (its settings decide both orders)."""
    assert item.pair is not None
    row = await labeler.label(Job(item.id, item.where, item.pair))
    questions = row["caitool"]["questions"]
    by_order: dict[str, list[float]] = {"ab": [], "ba": []}
    for q in questions:
        by_order[q["order"]].append(q["p_a"])  # P(response_a is better), whatever the seat order

    def correct(p_a: float) -> float:
        return p_a if item.correct_position == "A" else 1.0 - p_a

    p = correct(sum(by_order["ab"]) / len(by_order["ab"]))
    p_swapped = correct(sum(by_order["ba"]) / len(by_order["ba"])) if by_order["ba"] else None
    extra = {
        "principle_ids": row["caitool"]["principle_ids"],
        "label_source": row["caitool"]["label_source"],
        "usage": row["caitool"]["usage"],
    }
    return probability_row(item, p, p_swapped, extra)
