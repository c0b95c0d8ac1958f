"""AI preference labels for one pair (Bai et al. 2022, Sec. 4.1).

Reads: a conversation and two responses. Does: for each of `ensemble` comparison principles (drawn with the
seed and the record id; the paper used one) and each order ((A, B), and (B, A) with `both_orders`), renders
the multiple-choice question with few-shot examples (each under its own independently drawn principle) and
obtains P(A is better):
- `logprobs`: the normalized probability of the option letters at the answer position (soft label);
- `votes`: models without log-probs (Anthropic; servers that drop them) answer K times at temperature 1,
  and the smoothed vote share is the estimate;
- `cot-*`: the chain-of-thought variant: sample reasoning, then read the answer after it; averaged over
  `cot_samples`, then clamped (the paper clamps CoT labels to [0.4, 0.6]).
An answer that names neither option is asked again (bounded), then the record fails with the raw text:
never a silent 0.5. Writes: a TRL conversational preference row with `p_chosen`, `margin` and provenance.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Literal

from caitool.constitution import ComparisonPrinciple, Constitution
from caitool.errors import ConfigError, InputError, UsageError
from caitool.inputs import Line, PairItem, pair_item, prompt_items
from caitool.labels import (
    LABEL_METHOD,
    MIN_OPTION_MASS,
    clamp,
    logit,
    parse_vote,
    vote_probability,
)
from caitool.prompts import (
    Key,
    check_sections,
    example_conversation,
    example_keys,
    example_str,
    load_examples,
    load_toml,
    render,
    templates_hash,
)
from caitool.providers.base import GenerateParams, Message, Usage
from caitool.retry import ResilientClient
from caitool.runner import Job, RecordFailed
from caitool.seeds import derive_seed
from caitool.tasks.ab_question import (
    DEFAULT_VOTES,
    ABQuestion,
    Mode,
    read_answer,
)
from caitool.tasks.base import Request, StepCache
from caitool.tasks.sample_pairs import make_pairs, sample_responses

Order = Literal["ab", "ba"]

# The named question formats (`--question-format`), each a data file under prompts/. "paper" reproduces the
# paper repository's strings (options in [[[ ]]], H:/A: turns inside the CoT frame, " (A)" continuations);
# "caitool" is the paper's displayed layout (Sec. 4.1) without delimiters, the format before v2.
QUESTION_FORMATS = {"paper": "label_pairs_paper", "caitool": "label_pairs"}
DEFAULT_QUESTION_FORMAT = "paper"


@dataclass(frozen=True)
class LabelExample:
    conversation: tuple[Message, ...]
    response_a: str
    response_b: str
    answer: str
    reasoning: str


@dataclass(frozen=True)
class LabelTemplates:
    completion: dict[str, Any]
    chat: dict[str, Any]
    examples: tuple[LabelExample, ...]
    source: str
    sha256: str


def _label_example(ex: dict[str, Any]) -> LabelExample:
    example_keys(ex, {"conversation", "response_a", "response_b", "answer", "reasoning"})
    conversation = example_conversation(ex)
    response_a, response_b = example_str(ex, "response_a"), example_str(ex, "response_b")
    answer = example_str(ex, "answer").strip().strip("()").upper()
    if answer not in ("A", "B"):
        raise ValueError("answer: must be A or B")
    reasoning = example_str(ex, "reasoning", required=False)
    return LabelExample(conversation, response_a, response_b, answer, reasoning)


# The layout of a `--template` file (docs/prompts.md): every key is required unless the code has a default.
_QUESTION = frozenset({"conversation", "principle", "response_a", "response_b"})
_TURNS = {
    f"{pre}{role}": Key(frozenset({"content"}), required=False)
    for pre in ("", "cot_")
    for role in ("user", "assistant", "system")
}
TEMPLATE_SCHEMA = {
    "completion": {
        **_TURNS,
        "user": Key(frozenset({"content"})),
        "assistant": Key(frozenset({"content"})),
        "turn_separator": Key(required=False),
        "question": Key(_QUESTION),
        "answer": Key(frozenset({"answer"})),
        "example_separator": Key(required=False),
        "cot_question": Key(_QUESTION),
        "cot_answer": Key(frozenset({"reasoning"})),
        "cot_example_answer": Key(frozenset({"answer"}), required=False),
        "cot_stop": Key(required=False, strings=True),
    },
    "chat": {
        **_TURNS,
        "turn_separator": Key(required=False),
        "question": Key(_QUESTION),
        "answer": Key(frozenset({"answer"})),
        "cot_question": Key(_QUESTION),
        "cot_followup": Key(),
    },
}


def load_label_templates(
    template: str | None = None, fewshot: str = "label_pairs_fewshot", n_fewshot: int | None = None
) -> LabelTemplates:
    """The question templates: a file or a name under prompts/ (default: the default question format's)."""
    data, source, sha_t = load_toml(template or QUESTION_FORMATS[DEFAULT_QUESTION_FORMAT])
    check_sections(source, data, TEMPLATE_SCHEMA)
    examples, sha_f = load_examples(fewshot, n_fewshot, _label_example)
    sha = templates_hash(sha_t, sha_f, len(examples))
    return LabelTemplates(data.get("completion", {}), data.get("chat", {}), tuple(examples), source, sha)


@dataclass(frozen=True)
class LabelSettings:
    mode: Mode = "chat"
    seed: int = 0
    ensemble: int = 1
    both_orders: bool = False
    cot: bool = False
    cot_samples: int = 1
    cot_max_tokens: int = 256
    clamp: tuple[float, float] | None = None
    votes: int = 0  # > 0: estimate from K sampled answers instead of log-probs
    reask: int = 2
    top_logprobs: int = 20
    temperature: float = 1.0


@dataclass
class Question:
    """One scored question: a principle, an order, and P(A) in the *original* response order."""

    principle_id: str
    order: Order
    p_a: float
    logprob_first: float | None = None
    logprob_second: float | None = None
    ab_mass: float | None = None
    bounded: list[str] = field(default_factory=list)
    votes: dict[str, int] | None = None
    samples: list[float] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    reasks: int = 0
    source: str = "logprobs"  # "logprobs", "votes", or "votes-fallback" (log-probs untrusted: see labels)
    unresolved: float = 0.0  # mass on an opening whose letter was not observed (see labels.score_answer)
    p_range: list[float] | None = None  # bounds on p_a (question order) from that unresolved mass
    resolved: bool = False  # the opening was appended to the prompt and asked again to observe it
    votes_received: int | None = None  # sampled answers actually received (a server may ignore n)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "unresolved": self.unresolved,
            "p_range": self.p_range,
            "resolved": self.resolved,
            "votes_received": self.votes_received,
            "principle_id": self.principle_id,
            "order": self.order,
            "p_a": self.p_a,
            "logprob_first": self.logprob_first,
            "logprob_second": self.logprob_second,
            "ab_mass": self.ab_mass,
            "bounded": self.bounded,
            "votes": self.votes,
            "samples": self.samples,
            "reasoning": self.reasoning,
            "reasks": self.reasks,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Question:
        return cls(**d)


def label_source(settings: LabelSettings, questions: list[Question] | None = None) -> str:
    """How the label was read: logprobs / votes (cot- prefixed for chains of thought); "+votes-fallback"
    when some question's log-probs put less than MIN_OPTION_MASS on the options and votes were used."""
    base = "votes" if settings.votes else "logprobs"
    if questions and any(q.source == "votes-fallback" for q in questions):
        base += "+votes-fallback"
    return f"cot-{base}" if settings.cot else base


class Labeler:
    def __init__(
        self,
        client: ResilientClient,
        constitution: Constitution,
        templates: LabelTemplates,
        settings: LabelSettings,
    ) -> None:
        self.client = client
        self.constitution = constitution
        self.templates = templates
        self.settings = settings
        self.ask = ABQuestion(client, temperature=settings.temperature, top_logprobs=settings.top_logprobs)
        # The few-shot examples' questions, filled once per (template, example, principle): records differ
        # only in which principles their examples draw, and filling them was a tenth of a request's CPU.
        self._example_questions: dict[tuple[str, str, int, str], str] = {}
        if not constitution.comparisons:
            raise ConfigError(f"constitution {constitution.name!r} has no comparison principles")

    # -- rendering (pure) -------------------------------------------------------------------------------

    def _conversation(self, messages: tuple[Message, ...], section: dict[str, Any]) -> str:
        """The judged conversation as text, in the section's turn templates (CoT questions may have their
        own, e.g. the paper's H:/A:). Its system message is part of what is judged, so it is rendered here
        as a turn, never sent as the judge's own system prompt."""
        c = self.templates.completion
        pre = "cot_" if self.settings.cot and "cot_user" in section else ""
        src = section if "user" in section else c

        def turn(role: str) -> str:
            key = pre + role if pre + role in src else role
            default = "System: $content" if role == "system" else c[role]
            return str(src.get(key, c.get(role, default)))

        return str(src.get("turn_separator", c.get("turn_separator", "\n\n"))).join(
            render(turn(m.role if m.role in ("assistant", "system") else "user"), content=m.content)
            for m in messages
        )

    def _fill(
        self,
        template: str,
        messages: tuple[Message, ...],
        principle: str,
        a: str,
        b: str,
        section: dict[str, Any] | None = None,
    ) -> str:
        return render(
            template,
            conversation=self._conversation(
                messages, self.templates.completion if section is None else section
            ),
            principle=principle,
            response_a=a,
            response_b=b,
        )

    def _example_question(self, mode: str, key: str, i: int, principle: str) -> str:
        memo = (mode, key, i, principle)
        text = self._example_questions.get(memo)
        if text is None:
            ex, section = self.templates.examples[i], getattr(self.templates, mode)
            text = self._fill(
                section[key],
                ex.conversation,
                principle,
                ex.response_a,
                ex.response_b,
                section if mode == "chat" else None,
            )
            self._example_questions[memo] = text
        return text

    def _example_principles(self, rng: random.Random) -> list[ComparisonPrinciple]:
        return (
            self.constitution.sample_comparisons(rng, len(self.templates.examples))
            if self.templates.examples
            else []
        )

    def render_question(
        self, item: PairItem, principle: ComparisonPrinciple, order: Order, rng: random.Random
    ) -> list[Message] | str:
        """The exact request for the answer (non-CoT), or for the reasoning (CoT)."""
        a, b = (item.response_a, item.response_b) if order == "ab" else (item.response_b, item.response_a)
        ex_principles = self._example_principles(rng)
        cot = self.settings.cot
        if self.settings.mode == "completion":
            c = self.templates.completion
            parts = []
            for i, (ex, p) in enumerate(zip(self.templates.examples, ex_principles, strict=True)):
                if cot:
                    q = self._example_question("completion", "cot_question", i, p.text)
                    parts.append(
                        q
                        + render(c["cot_answer"], reasoning=ex.reasoning)
                        + render(c.get("cot_example_answer", c["answer"]), answer=ex.answer)
                    )
                else:
                    q = self._example_question("completion", "question", i, p.text)
                    parts.append(q + render(c["answer"], answer=ex.answer))
            key = "cot_question" if cot else "question"
            parts.append(self._fill(c[key], item.messages, principle.text, a, b))
            return c.get("example_separator", "\n\n\n").join(parts)
        ch = self.templates.chat
        msgs: list[Message] = []  # no system prompt: the judged conversation's own is inside the question
        for i, (ex, p) in enumerate(zip(self.templates.examples, ex_principles, strict=True)):
            if cot:
                msgs.append(Message("user", self._example_question("chat", "cot_question", i, p.text)))
                msgs.append(Message("assistant", f"{ex.reasoning} {ch['cot_followup']}{ex.answer})"))
            else:
                msgs.append(Message("user", self._example_question("chat", "question", i, p.text)))
                msgs.append(Message("assistant", render(ch["answer"], answer=ex.answer)))
        key = "cot_question" if cot else "question"
        msgs.append(Message("user", self._fill(ch[key], item.messages, principle.text, a, b, ch)))
        return msgs

    async def _answer_logprobs(self, request: list[Message] | str, seed: int, usage: Usage) -> Question:
        """P(A) from the answer's log-probs (re-asked when no option, or too little mass on the options);
        when none is trusted, from sampled votes instead ("votes-fallback"); else the record fails."""
        ask = self.ask.logprob_asker(usage)
        read = await read_answer(ask, request, seed, self.settings.reask, spec=self.client.spec)
        score = read.score
        if score is not None:
            return Question(
                "",
                "ab",
                score.p_a,
                logprob_first=score.logprob_a,
                logprob_second=score.logprob_b,
                ab_mass=score.ab_mass,
                bounded=score.bounded,
                reasks=read.reasks,
                unresolved=score.unresolved,
                p_range=list(score.p_range) if score.p_range else None,
                resolved=read.resolved,
            )
        attempts = self.settings.reask + 1
        if read.best is None and read.error is not None:
            raise RecordFailed(
                f"unusable log-probs after {attempts} attempts: {read.error}", {"raw": read.raw}
            )
        why = (
            f"option mass {read.best.ab_mass:.3g} < {MIN_OPTION_MASS}"
            if read.best is not None
            else "no (A)/(B) among the log-probs"
        )
        votes, received, raw = await self._vote_round(request, seed + 7717, usage, DEFAULT_VOTES, 8)
        if votes["A"] + votes["B"] == 0:
            raise RecordFailed(
                f"no (A)/(B) answer after {attempts} attempts ({why}) and {received} sampled votes",
                {"raw": raw or read.raw},
            )
        return Question(
            "",
            "ab",
            vote_probability(votes["A"], votes["B"]),
            ab_mass=read.best.ab_mass if read.best is not None else None,
            votes=votes,
            reasks=read.reasks,
            source="votes-fallback",
            votes_received=received,
        )

    async def _vote_round(
        self, request: list[Message] | str, seed: int, usage: Usage, k: int, max_tokens: int
    ) -> tuple[dict[str, int], int, str]:
        choices = await self.ask.sample(request, k, seed, usage, max_tokens)
        votes = {"A": 0, "B": 0}
        for choice in choices:
            vote = parse_vote(choice.text)
            if vote:
                votes[vote] += 1
        return votes, len(choices), choices[-1].text if choices else ""

    async def _answer_votes(
        self, request: list[Message], seed: int, usage: Usage, k: int
    ) -> tuple[dict[str, int], int, int]:
        received = 0
        raw = ""
        for attempt in range(self.settings.reask + 1):
            votes, received, raw = await self._vote_round(request, seed + attempt, usage, k, 8)
            if votes["A"] + votes["B"]:
                return votes, attempt, received
        raise RecordFailed(
            f"no (A)/(B) answer in {k} sampled votes after {self.settings.reask + 1} attempts", {"raw": raw}
        )

    def principles(self, rid: str) -> list[ComparisonPrinciple]:
        """The record's principles: `ensemble` drawn from the constitution, seeded by the run seed and id."""
        return self.constitution.sample_comparisons(
            random.Random(f"caitool-label:{self.settings.seed}:{rid}"), self.settings.ensemble
        )

    def question_request(
        self, rid: str, qi: int, item: PairItem, principle: ComparisonPrinciple, order: Order
    ) -> list[Message] | str:
        """The exact question `qi` of record `rid` in `order` (its few-shot draw seeded by both)."""
        rng = random.Random(f"caitool-label:{self.settings.seed}:{rid}:{qi}:{order}")
        return self.render_question(item, principle, order, rng)

    async def _question(
        self,
        rid: str,
        qi: int,
        item: PairItem,
        principle: ComparisonPrinciple,
        order: Order,
        usage: Usage,
        cache: StepCache,
        last: bool = False,
    ) -> Question:
        step = f"q{qi}.{order}"
        cached = cache.get(rid, step)
        if cached is not None:
            return Question.from_dict(cached)
        request = self.question_request(rid, qi, item, principle, order)
        seed = derive_seed(self.settings.seed, rid, step)
        if self.settings.cot:
            q = await self._cot_question(request, principle, order, seed, usage)
        elif self.settings.votes:
            assert not isinstance(request, str)
            votes, reasks, received = await self._answer_votes(request, seed, usage, self.settings.votes)
            p_first = vote_probability(votes["A"], votes["B"])
            q = Question(
                principle.id,
                order,
                p_first,
                votes=votes,
                reasks=reasks,
                source="votes",
                votes_received=received,
            )
        else:
            if self.settings.mode == "chat-prefill":
                assert not isinstance(request, str)
                # The few-shot answers read "(B)", so the forced prefix is the opening parenthesis.
                request = self.ask.prefilled(request, "(")
            q = await self._answer_logprobs(request, seed, usage)
            q.principle_id, q.order = principle.id, order
        if order == "ba":  # the question's (A) was response B: express it as P(response A better)
            q.p_a = 1.0 - q.p_a
            q.samples = [1.0 - s for s in q.samples]
            if q.p_range is not None:
                q.p_range = [1.0 - q.p_range[1], 1.0 - q.p_range[0]]
        if not last:  # the record's last question goes straight into its row: a step line would be dead
            cache.save(rid, step, q.to_dict())
        return q

    async def _cot_question(
        self,
        request: list[Message] | str,
        principle: ComparisonPrinciple,
        order: Order,
        seed: int,
        usage: Usage,
    ) -> Question:
        k = self.settings.cot_samples
        c, ch = self.templates.completion, self.templates.chat
        if self.settings.mode == "chat" and isinstance(request, list):
            if self.settings.votes or not self.client.supports_logprobs:
                # Votes from the conclusions of K sampled chains of thought.
                chains = await self.ask.sample(request, k, seed, usage, self.settings.cot_max_tokens)
                texts = [ch_.text for ch_ in chains]
                parsed = [parse_vote(t) for t in texts]
                a, b = parsed.count("A"), parsed.count("B")
                if a + b == 0:
                    raise RecordFailed("no (A)/(B) conclusion in any chain of thought", {"raw": texts[-1]})
                return Question(
                    principle.id,
                    order,
                    a / (a + b),
                    votes={"A": a, "B": b},
                    samples=[1.0 if v == "A" else 0.0 for v in parsed if v],
                    reasoning=texts,
                    source="votes",
                    votes_received=len(texts),
                )
            chains = await self.ask.sample(request, k, seed, usage, self.settings.cot_max_tokens)
            texts = [ch_.text.strip() for ch_ in chains]
            requests: list[list[Message] | str] = [
                [*request, Message("assistant", t), Message("user", ch["cot_followup"])] for t in texts
            ]
        else:
            if isinstance(
                request, list
            ):  # chat-prefill: the local model's own template, then a forced prefix
                base = self.ask.prefilled(request, "Let's think step-by-step:")
                answer_tail = " {reasoning}\n\nSo the answer is: ("
            else:
                base = request
                answer_tail = ""
            stop = tuple(c.get("cot_stop", ()))
            chains = await self.ask.sample(base, k, seed, usage, self.settings.cot_max_tokens, stop)
            texts = [ch_.text.strip() for ch_ in chains]
            if answer_tail:
                requests = [base + answer_tail.format(reasoning=t) for t in texts]
            else:
                requests = [base + render(c["cot_answer"], reasoning=t) for t in texts]
        if not requests:
            raise RecordFailed("the server returned no chain of thought", {"raw": ""})
        samples: list[float] = []
        masses: list[float] = []
        reasks = 0
        fallback = False
        for i, req in enumerate(requests):
            answer = await self._answer_logprobs(req, seed + 101 * (i + 1), usage)
            samples.append(answer.p_a)
            if answer.ab_mass is not None:
                masses.append(answer.ab_mass)
            reasks += answer.reasks
            fallback = fallback or answer.source == "votes-fallback"
        return Question(
            principle.id,
            order,
            sum(samples) / len(samples),
            ab_mass=sum(masses) / len(masses) if masses else None,
            samples=samples,
            reasoning=texts,
            reasks=reasks,
            source="votes-fallback" if fallback else "logprobs",
            votes_received=len(texts) if len(texts) != k else None,
        )

    async def label(self, job: Job[PairItem], cache: StepCache | None = None) -> dict[str, Any]:
        """One pair's label row (TRL's layout); finished questions are kept in and reused from `cache`."""
        item, rid = job.item, job.id
        cache = cache or StepCache()
        usage = Usage()
        principles = self.principles(rid)
        orders: list[Order] = ["ab", "ba"] if self.settings.both_orders else ["ab"]
        questions: list[Question] = []
        for qi, p in enumerate(principles):
            for order in orders:
                last = qi == len(principles) - 1 and order == orders[-1]
                questions.append(await self._question(rid, qi, item, p, order, usage, cache, last))
        p_raw = sum(q.p_a for q in questions) / len(questions)
        p_a = clamp(p_raw, self.settings.clamp)
        disagreement = None
        if self.settings.both_orders:
            pairs = [(questions[i].p_a, questions[i + 1].p_a) for i in range(0, len(questions), 2)]
            disagreement = sum(abs(x - y) for x, y in pairs) / len(pairs)
        a_wins = p_a >= 0.5
        chosen, rejected = (
            (item.response_a, item.response_b) if a_wins else (item.response_b, item.response_a)
        )
        p_chosen = p_a if a_wins else 1.0 - p_a
        return {
            "id": rid,
            "prompt": [m.to_dict() for m in item.messages],
            "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}],
            "p_chosen": p_chosen,
            "margin": logit(p_chosen),
            "caitool": {
                "label_source": label_source(self.settings, questions),
                "p_a": p_a,
                "p_a_unclamped": p_raw,
                "chosen_is": "a" if a_wins else "b",
                "principle_ids": [p.id for p in principles],
                "questions": [q.to_dict() for q in questions],
                "position_disagreement": disagreement,
                "clamp": list(self.settings.clamp) if self.settings.clamp else None,
                "usage": usage.to_dict(),
            },
        }


def to_openrlhf(row: dict[str, Any]) -> dict[str, Any]:
    """OpenRLHF's reward-model data: the whole conversation per side (its `--apply_chat_template` with
    `--chosen_key chosen --rejected_key rejected`), and the soft label as `margin`, the only per-example
    strength OpenRLHF's train_rm takes (an approximation of the soft label: see docs/records.md)."""
    return {
        "id": row["id"],
        "chosen": row["prompt"] + row["chosen"],
        "rejected": row["prompt"] + row["rejected"],
        "margin": row["margin"],
        "p_chosen": row["p_chosen"],
        "caitool": row["caitool"],
    }


@dataclass(frozen=True)
class LabelPairsRun:
    """What a label-pairs run records beyond the labeler's settings: the fingerprint's model, server, policy
    and input options, and the output format."""

    model: str
    base_url: str | None = None
    policy: str | None = None  # prompt-only records: sample the pair from this model first
    policy_base_url: str | None = None
    max_tokens: int = 256  # of the policy's samples
    question_format: str | None = "paper"  # None: the user's own --template
    output_format: str = "trl"
    field: str | None = None


class LabelPairsTask:
    """`caitool label-pairs` as a record task (see `caitool.tasks.base.RecordTask`)."""

    command = "label-pairs"
    id_key = "id"

    def __init__(self, labeler: Labeler, run: LabelPairsRun, policy_client: ResilientClient | None = None):
        self.labeler = labeler
        self.run = run
        self.policy_client = policy_client
        self.prompt_format: str = labeler.settings.mode

    def read(self, line: Line) -> list[Job[Any]]:
        """A pair; with a policy, a prompt-only record too (its pair is sampled first)."""
        try:
            rid, item = pair_item(line, field=self.run.field)
            return [Job(rid, line.where, item)]
        except InputError:
            if self.policy_client is None:
                raise
        return [Job(rid, line.where, prompt) for rid, prompt in prompt_items(line, field=self.run.field)]

    def settings(self) -> dict[str, Any]:
        s, cons, run = self.labeler.settings, self.labeler.constitution, self.run
        return {
            "model": run.model,
            "base_url": run.base_url,
            "policy": run.policy,
            "policy_base_url": run.policy_base_url,
            "max_tokens": run.max_tokens if run.policy else None,
            "cot_max_tokens": s.cot_max_tokens if s.cot else None,
            "reask": s.reask,
            "question_format": run.question_format,
            "label_method": LABEL_METHOD,
            "mode": s.mode,
            "seed": s.seed,
            "ensemble": s.ensemble,
            "both_orders": s.both_orders,
            "cot": s.cot,
            "cot_samples": s.cot_samples,
            "clamp": s.clamp,
            "votes": s.votes,
            "format": run.output_format,
            "field": run.field,
            "constitution": cons.name,
            "constitution_sha256": cons.sha256,
            "templates_sha256": self.labeler.templates.sha256,
        }

    def preview(self, job: Job[Any]) -> list[tuple[str, Request]]:
        """The record's first question, exactly as the run asks it."""
        if not isinstance(job.item, PairItem):
            raise UsageError("--dry-run shows the question of a pair; this record has only a prompt")
        p = self.labeler.principles(job.id)[0]
        return [(f"question (principle {p.id})", self.labeler.question_request(job.id, 0, job.item, p, "ab"))]

    async def process(self, job: Job[Any], cache: StepCache) -> list[dict[str, Any]]:
        item = job.item
        sampled: dict[str, Any] = {}
        if not isinstance(item, PairItem):  # a prompt: sample the pair from the policy first
            assert self.policy_client is not None
            params = GenerateParams(max_tokens=self.run.max_tokens)
            seed = self.labeler.settings.seed
            texts = await sample_responses(
                self.policy_client, item, 2, params, seed=seed, record_id=job.id, usage=Usage(), cache=cache
            )
            ((_, item),) = make_pairs(job.id, item, texts, "first")
            sampled = {"policy": self.run.policy}
        row = await self.labeler.label(Job(job.id, job.where, item), cache)
        cons = self.labeler.constitution
        row["caitool"].update(
            model=self.run.model,
            seed=self.labeler.settings.seed,
            constitution=cons.name,
            constitution_sha256=cons.sha256,
            source=job.where,
            **sampled,
        )
        return [to_openrlhf(row) if self.run.output_format == "openrlhf" else row]
