"""Scoring a gold set with a feedback model, for `caitool eval-labeler --model`.

Reads: gold items (`caitool.evaluation.gold.GoldItem`): the paper's eval questions, or preference pairs.
Does: asks the model each question with label-pairs' answer reader (`read_answer`: two-token answers, the
option-mass threshold), in both orders unless `--one-order`; P(A) from the log-probs, or from K sampled
answers (`--votes`) on servers without them; with `--cot`, K chains of thought first (the paper's CoT
frame), averaged.
Preference pairs go through label-pairs' own `Labeler` (principle, few-shot examples).
Writes: one probability row per item (`caitool.evaluation.gold.probability_row`), which `--probs` reads back.

The statistics over those rows (accuracy, calibration, flip rate, length bias) are pure and live in
`caitool.evaluation.labeler_metrics`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from caitool.constitution import load_constitution
from caitool.errors import RecordFailed, UsageError
from caitool.evaluation.gold import GoldItem, probability_row, question_body
from caitool.labels import LABEL_METHOD, TWO_OPTIONS, parse_vote, vote_probability
from caitool.prompts import content_hash
from caitool.providers.base import Message, Usage
from caitool.retry import ResilientClient
from caitool.runner import Job
from caitool.seeds import derive_seed
from caitool.tasks.ab_question import ABQuestion, auto_mode, default_votes, read_answer
from caitool.tasks.label_pairs import Labeler, LabelSettings, load_label_templates


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


class QuestionScorer:
    """P(option) for a question already written out, such as the paper's eval prompts ("... The answer is:"),
    read with label-pairs' answer reader (`read_answer`: two-token answers, option-mass threshold)."""

    def __init__(self, client: ResilientClient, settings: ScoreSettings) -> None:
        self.client = client
        self.settings = settings
        self.ask = ABQuestion(client, temperature=settings.temperature, top_logprobs=settings.top_logprobs)

    async def _read(
        self, request: list[Message] | str, seed: int, usage: Usage, letters: str, untrusted: list[float]
    ) -> dict[str, float]:
        if self.settings.votes:
            raw = ""
            for attempt in range(self.settings.reask + 1):
                choices = await self.ask.sample(request, self.settings.votes, seed + attempt, usage, 8, ())
                votes = [parse_vote(c.text, letters) for c in choices]
                raw = choices[-1].text if choices else ""
                if any(votes):
                    if len(letters) == 2:
                        p = vote_probability(votes.count("A"), votes.count("B"))
                        return {"A": p, "B": 1.0 - p}
                    # add-one smoothing over every option, as for two
                    total = sum(1 for v in votes if v) + len(letters)
                    return {x: (votes.count(x) + 1) / total for x in letters}
            raise RecordFailed(
                f"no option in sampled votes after {self.settings.reask + 1} attempts", {"raw": raw}
            )

        ask = self.ask.logprob_asker(usage)
        read = await read_answer(ask, request, seed, self.settings.reask, letters, self.client.spec)
        if read.score is None and read.best is not None:
            # Measuring, not labelling: the model's own low-mass answer is what is being evaluated, so it
            # is kept, and the row counts it (`untrusted_answers`) instead of silently swapping in votes.
            untrusted.append(read.best.ab_mass)
            return read.best.probs
        if read.score is None:
            why = read.error or "no option among the log-probs"
            raise RecordFailed(
                f"no trusted answer after {self.settings.reask + 1} attempts ({why})", {"raw": read.raw}
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
        chat = self.settings.prompt_format == "chat"
        low: list[float] = untrusted if untrusted is not None else []
        if not self.settings.cot:
            return await self._read([Message("user", prompt)] if chat else prompt, seed, usage, letters, low)
        body = question_body(prompt)
        base: list[Message] | str = (
            [Message("user", f"{body}\n\n{CHAT_COT_ASK}")] if chat else COT_OPEN + body + COT_REASON
        )
        chains = await self.ask.sample(
            base,
            self.settings.cot_samples,
            seed,
            usage,
            self.settings.cot_max_tokens,
            () if chat else COT_STOP,
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
        probs = await self.probs(
            item.prompt, derive_seed(self.settings.seed, item.id, "ab"), usage, letters, low
        )
        extra: dict[str, Any] = {"usage": usage.to_dict()}
        if len(letters) > 2:
            extra.update(probs=probs, n_options=len(letters), choice=max(probs, key=lambda k: probs[k]))
            if low:
                extra["untrusted_answers"] = len(low)
            return probability_row(item, probs[item.correct_position], None, extra)
        p = probs[item.correct_position]
        p_swapped = None
        if self.settings.both_orders and item.swapped_prompt is not None:
            # In the swapped question the correct option sits in the other seat.
            other = "B" if item.correct_position == "A" else "A"
            q = await self.probs(
                item.swapped_prompt, derive_seed(self.settings.seed, item.id, "ba"), usage, TWO_OPTIONS, low
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


@dataclass(frozen=True)
class GoldOptions:
    """How eval-labeler asks (its flags); `GoldScoring` resolves them against the model's capabilities."""

    prompt_format: str = "auto"  # auto, completion or chat
    one_order: bool = False
    votes: int | None = None  # None: 5 where the server has no log-probs, else read the log-probs
    constitution: str | None = None  # comparison principles for preference pairs
    cot: bool = False
    cot_samples: int = 1
    seed: int = 0


class GoldScoring:
    """One gold item → one probability row (the per-record job of `eval-labeler --model`)."""

    command = "eval-labeler"

    def __init__(self, client: ResilientClient, items: list[GoldItem], options: GoldOptions) -> None:
        self.client = client
        self.items = items
        self.options = options
        fmt = options.prompt_format
        if fmt == "auto":
            fmt = "completion" if client.supports_completions else "chat"
        if fmt == "completion" and not client.supports_completions:
            raise UsageError(f"{client.spec} has no raw-completion endpoint", hint="use --prompt-format chat")
        self.votes = default_votes(client, options.votes)
        if self.votes and fmt != "chat":
            raise UsageError("--votes needs --prompt-format chat")
        self.prompt_format: Literal["completion", "chat"] = "chat" if fmt == "chat" else "completion"
        both = not options.one_order
        self.scorer = QuestionScorer(
            client,
            ScoreSettings(
                prompt_format=self.prompt_format,
                seed=options.seed,
                both_orders=both,
                votes=self.votes,
                cot=options.cot,
                cot_samples=options.cot_samples,
            ),
        )
        self.labeler: Any = None
        self.labeler_settings: dict[str, Any] = {}
        if any(it.pair is not None for it in items):
            cons = load_constitution(options.constitution)
            templates = load_label_templates()
            mode = "chat" if self.votes else auto_mode(client)
            settings = LabelSettings(
                mode=mode,
                seed=options.seed,
                both_orders=both,
                votes=self.votes,
                cot=options.cot,
                cot_samples=options.cot_samples,
            )
            self.labeler = Labeler(client, cons, templates, settings)
            self.labeler_settings = {
                "mode": mode,
                "constitution_sha256": cons.sha256,
                "templates_sha256": templates.sha256,
            }

    def settings(self) -> dict[str, Any]:
        """Everything that changes the rows, for the resume fingerprint (the CLI adds `model` and `base_url`).
        Keys and values are pinned by tests/test_eval_fingerprints_golden.py: changing one strands users'
        half-finished outputs."""
        o = self.options
        return {
            "seed": o.seed,
            "both_orders": not o.one_order,
            "prompt_format": self.prompt_format,
            "votes": self.votes,
            "cot": o.cot,
            "cot_samples": o.cot_samples if o.cot else None,
            "label_method": LABEL_METHOD,
            "gold_sha256": content_hash(
                [[it.id, it.prompt, repr(it.pair), it.correct_position] for it in self.items]
            ),
            **self.labeler_settings,
        }

    def jobs(self) -> list[Job[GoldItem]]:
        return [Job(it.id, it.where, it) for it in self.items]

    async def process(self, job: Job[GoldItem]) -> list[dict[str, Any]]:
        item = job.item
        row = await (self.scorer.score(item) if item.pair is None else score_pair(self.labeler, item))
        row["caitool"] = {"model": self.client.spec, "source": item.where}
        return [row]
