"""Gold sets for `caitool eval-labeler`, and scoring their items with a feedback model.

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
from caitool.labels import NINE_OPTIONS, TWO_OPTIONS, parse_vote, vote_probability
from caitool.providers.base import Choice, GenerateParams, Message, Usage
from caitool.retry import ResilientClient
from caitool.runner import Job, RecordFailed
from caitool.seeds import derive_seed

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
    cot: bool = False  # reason first (the paper's CoT format), then read the answer
    cot_samples: int = 1  # chains of thought averaged (the paper's "ensembled CoT": 5)
    cot_max_tokens: int = 256


# The paper repository's CoT frame (prompts/RLMadisonPrecogFewShotPrompts.json) around an eval question.
COT_OPEN = "\n\nHuman: "
COT_REASON = "\n\nAssistant: Let's think step by step:"
COT_ANSWER = "\n\nHuman:\nSo the answer is: ("
COT_STOP = ("\n\nHuman:", "So the answer is")
CHAT_COT_ASK = 'Let\'s think step by step, then end with "So the answer is: (X)" naming one option.'
CHAT_COT_FOLLOWUP = "So the answer is: ("


def question_body(prompt: str) -> str:
    """The eval question without its closing "The answer is:" line (for the CoT frame)."""
    tail = _TAIL.search(prompt)
    return (prompt[: tail.start()] if tail else prompt).strip("\n")


class QuestionScorer:
    """P(option) for a question already written out, such as the paper's eval prompts ("... The answer is:"),
    read with label-pairs' answer reader (`read_answer`: two-token answers, option-mass threshold)."""

    def __init__(self, client: ResilientClient, settings: ScoreSettings) -> None:
        self.client = client
        self.s = settings

    def _params(
        self, *, logprobs: bool, n: int, seed: int, max_tokens: int, stop: tuple[str, ...] = ()
    ) -> Any:
        return GenerateParams(
            temperature=self.s.temperature,
            max_tokens=max_tokens,
            logprobs=logprobs,
            top_logprobs=self.s.top_logprobs if logprobs else 0,
            n=n,
            seed=seed,
            stop=stop,
        )

    async def _call(self, request: list[Message] | str, params: GenerateParams, usage: Usage) -> list[Choice]:
        if isinstance(request, str):
            result = await self.client.complete(request, params)
        else:
            result = await self.client.chat(request, params)
        usage.add(result.usage)
        return list(result.choices)

    async def _sample(
        self,
        request: list[Message] | str,
        k: int,
        seed: int,
        usage: Usage,
        max_tokens: int,
        stop: tuple[str, ...],
    ) -> list[Choice]:
        """K samples, topped up with further requests when a server ignores `n`."""
        out: list[Choice] = []
        for call in range(k):
            if len(out) >= k:
                break
            params = self._params(
                logprobs=False, n=k - len(out), seed=seed + 7919 * call, max_tokens=max_tokens, stop=stop
            )
            out.extend(await self._call(request, params, usage))
        return out[:k]

    async def _read(
        self, request: list[Message] | str, seed: int, usage: Usage, letters: str, untrusted: list[float]
    ) -> dict[str, float]:
        from caitool.tasks.label_pairs import read_answer

        if self.s.votes:
            raw = ""
            for attempt in range(self.s.reask + 1):
                choices = await self._sample(request, self.s.votes, seed + attempt, usage, 8, ())
                votes = [parse_vote(c.text, letters) for c in choices]
                raw = choices[-1].text if choices else ""
                if any(votes):
                    if len(letters) == 2:
                        p = vote_probability(votes.count("A"), votes.count("B"))
                        return {"A": p, "B": 1.0 - p}
                    # add-one smoothing over every option, as for two
                    total = sum(1 for v in votes if v) + len(letters)
                    return {x: (votes.count(x) + 1) / total for x in letters}
            raise RecordFailed(f"no option in sampled votes after {self.s.reask + 1} attempts", {"raw": raw})

        async def ask(req: list[Message] | str, s: int) -> Choice | None:
            choices = await self._call(req, self._params(logprobs=True, n=1, seed=s, max_tokens=3), usage)
            return choices[0] if choices else None

        read = await read_answer(ask, request, seed, self.s.reask, letters, self.client.spec)
        if read.score is None and read.best is not None:
            # Measuring, not labelling: the model's own low-mass answer is what is being evaluated, so it
            # is kept, and the row counts it (`untrusted_answers`) instead of silently swapping in votes.
            untrusted.append(read.best.ab_mass)
            return read.best.probs
        if read.score is None:
            why = read.error or "no option among the log-probs"
            raise RecordFailed(
                f"no trusted answer after {self.s.reask + 1} attempts ({why})", {"raw": read.raw}
            )
        return read.score.probs

    async def probs(
        self,
        prompt: str,
        seed: int,
        usage: Usage,
        letters: str = TWO_OPTIONS,
        untrusted: list[float] | None = None,
    ) -> dict[str, float]:
        """P over the options for one question (averaged over the chains of thought with --cot)."""
        chat = self.s.prompt_format == "chat"
        low: list[float] = untrusted if untrusted is not None else []
        if not self.s.cot:
            return await self._read([Message("user", prompt)] if chat else prompt, seed, usage, letters, low)
        body = question_body(prompt)
        base: list[Message] | str = (
            [Message("user", f"{body}\n\n{CHAT_COT_ASK}")] if chat else COT_OPEN + body + COT_REASON
        )
        chains = await self._sample(
            base, self.s.cot_samples, seed, usage, self.s.cot_max_tokens, () if chat else COT_STOP
        )
        if not chains:
            raise RecordFailed("the server returned no chain of thought", {"raw": ""})
        total = dict.fromkeys(letters, 0.0)
        for i, c in enumerate(chains):
            text = c.text.strip()
            request: list[Message] | str
            if isinstance(base, str):
                request = f"{base} {text}{COT_ANSWER}"
            else:
                request = [*base, Message("assistant", text), Message("user", CHAT_COT_FOLLOWUP)]
            for x, p in (await self._read(request, seed + 101 * (i + 1), usage, letters, low)).items():
                total[x] += p / len(chains)
        return total

    async def score(self, item: GoldItem) -> dict[str, Any]:
        assert item.prompt is not None
        usage = Usage()
        letters = item.letters
        low: list[float] = []
        probs = await self.probs(item.prompt, derive_seed(self.s.seed, item.id, "ab"), usage, letters, low)
        extra: dict[str, Any] = {"usage": usage.to_dict()}
        if len(letters) > 2:
            extra.update(probs=probs, n_options=len(letters), choice=max(probs, key=lambda k: probs[k]))
            if low:
                extra["untrusted_answers"] = len(low)
            return probability_row(item, probs[item.correct_position], None, extra)
        p = probs[item.correct_position]
        p_swapped = None
        if self.s.both_orders and item.swapped_prompt is not None:
            # In the swapped question the correct option sits in the other seat.
            other = "B" if item.correct_position == "A" else "A"
            q = await self.probs(
                item.swapped_prompt, derive_seed(self.s.seed, item.id, "ba"), usage, TWO_OPTIONS, low
            )
            p_swapped = q[other]
        if low:
            extra["untrusted_answers"] = len(low)  # answers with option mass below MIN_OPTION_MASS
        return probability_row(item, p, p_swapped, extra)


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
