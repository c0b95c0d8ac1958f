"""The paper's supervised stage for one record (Bai et al. 2022, Sec. 3.1).

Reads: the conversation so far (ending with a human turn) and, optionally, an initial response.
Does: sample the initial response (unless given), then `rounds` sequential rounds; each draws a
critique/revision principle uniformly with replacement (seeded by the run seed and the record id, so reruns
draw the same), asks for a critique, then for a revision. The revision becomes the assistant's last response
for the next round, so every round sees "prompt + response" in the same format.
Writes: one trace row (every round: principle id, requests, critique, revision, flags, usage) or SFT rows.

Every finished model call is checkpointed in the run's `StepCache`, and steps found there (from an earlier,
interrupted run) are reused instead of paid for again.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from caitool.constitution import Constitution, CritiquePrinciple, load_constitution
from caitool.errors import UsageError
from caitool.inputs import Line, PromptItem, prompt_items
from caitool.parsing import clean_critique, clean_response, clean_revision, revision_flags
from caitool.pricing import Price
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
from caitool.providers.base import Completion, GenerateParams, Message, ModelClient, Usage
from caitool.runner import Job
from caitool.seeds import derive_seed
from caitool.tasks.base import Request, StepCache

PromptFormat = Literal["chat", "completion"]
OutputFormat = Literal["trace", "sft"]


@dataclass(frozen=True)
class FewShotExample:
    conversation: tuple[Message, ...]
    response: str
    critique_request: str
    critique: str
    revision_request: str
    revision: str


@dataclass(frozen=True)
class Templates:
    chat: dict[str, str]
    completion: dict[str, Any]
    fewshot: tuple[FewShotExample, ...]
    source: str
    sha256: str


def _key(*placeholders: str, required: bool = True) -> Key:
    return Key(frozenset(placeholders), required=required)


# The layout of a `--template` file (docs/prompts.md): every key is required unless the code has a default.
TEMPLATE_SCHEMA = {
    "chat": {
        "system": _key(required=False),
        "critique_turn": _key("critique_request"),
        "revision_turn": _key("revision_request"),
        "direct_revision_turn": _key("revision_request"),
    },
    "completion": {
        "system": _key("content"),
        "user": _key("content"),
        "assistant": _key("content"),
        "response_cue": _key(),
        "critique": _key("critique_request"),
        "revision": _key("revision_request"),
        "stop": Key(required=False, strings=True),
    },
}
_EXAMPLE_KEYS = ("response", "critique_request", "critique", "revision_request", "revision")


def _fewshot_example(ex: dict[str, Any]) -> FewShotExample:
    example_keys(ex, {"conversation", *_EXAMPLE_KEYS})
    conversation = example_conversation(ex)
    response, critique_request, critique, revision_request, revision = (
        example_str(ex, k) for k in _EXAMPLE_KEYS
    )
    return FewShotExample(
        conversation=conversation,
        response=response,
        critique_request=critique_request,
        critique=critique,
        revision_request=revision_request,
        revision=revision,
    )


def load_templates(
    template: str = "critique_revise", fewshot: str = "critique_revise_fewshot", n_fewshot: int | None = None
) -> Templates:
    data, source, sha_t = load_toml(template)
    check_sections(source, data, TEMPLATE_SCHEMA)
    examples, sha_f = load_examples(fewshot, n_fewshot, _fewshot_example)
    sha = templates_hash(sha_t, sha_f, len(examples))
    return Templates(
        chat=data["chat"], completion=data["completion"], fewshot=tuple(examples), source=source, sha256=sha
    )


@dataclass(frozen=True)
class CritiqueReviseSettings:
    rounds: int = 4
    seed: int = 0
    critique: bool = True  # False: the paper's direct-revision ablation (--no-critique)
    prompt_format: PromptFormat = "chat"
    params: GenerateParams = field(default_factory=GenerateParams)
    output_format: OutputFormat = "trace"
    keep_rounds: bool = False


def draw_principles(
    constitution: Constitution, seed: int, record_id: str, rounds: int
) -> list[CritiquePrinciple]:
    """Uniform with replacement, one per round; the same seed and id always give the same draw."""
    rng = random.Random(f"caitool:{seed}:{record_id}")
    return constitution.sample_critiques(rng, rounds)


class CritiqueReviser:
    def __init__(
        self,
        client: ModelClient | None,  # None: only render requests (--dry-run)
        constitution: Constitution,
        templates: Templates,
        settings: CritiqueReviseSettings,
    ) -> None:
        self.client = client
        self.constitution = constitution
        self.templates = templates
        self.settings = settings

    # -- rendering (pure) -------------------------------------------------------------------------------

    @functools.cached_property
    def _chat_fewshot(self) -> tuple[Message, ...]:
        """The few-shot turns every chat request starts with: the same for every record of the run, so
        built once (Messages are frozen, so sharing them between requests is safe)."""
        out: list[Message] = []
        if self.templates.chat.get("system"):
            out.append(Message("system", self.templates.chat["system"]))
        for ex in self.templates.fewshot:
            out += list(ex.conversation)
            out.append(Message("assistant", ex.response))
            if self.settings.critique:
                out.append(
                    Message(
                        "user",
                        render(self.templates.chat["critique_turn"], critique_request=ex.critique_request),
                    )
                )
                out.append(Message("assistant", ex.critique))
                out.append(
                    Message(
                        "user",
                        render(self.templates.chat["revision_turn"], revision_request=ex.revision_request),
                    )
                )
            else:
                out.append(
                    Message(
                        "user",
                        render(
                            self.templates.chat["direct_revision_turn"], revision_request=ex.revision_request
                        ),
                    )
                )
            out.append(Message("assistant", ex.revision))
        if out:  # the few-shot prefix is the same in every record's request: the provider may cache it
            out[-1] = replace(out[-1], cache_point=True)
        return tuple(out)

    def _transcript(self, messages: tuple[Message, ...] | list[Message]) -> str:
        c = self.templates.completion
        return "".join(render(c[m.role], content=m.content) for m in messages)

    @functools.cached_property
    def _completion_fewshot(self) -> str:
        c = self.templates.completion
        parts = []
        for ex in self.templates.fewshot:
            text = self._transcript(ex.conversation) + render(c["assistant"], content=ex.response)
            if self.settings.critique:
                text += render(c["critique"], critique_request=ex.critique_request) + " " + ex.critique
            text += render(c["revision"], revision_request=ex.revision_request) + " " + ex.revision
            parts.append(text)
        return "".join(parts)

    def initial_request(self, item: PromptItem) -> list[Message] | str:
        if self.settings.prompt_format == "chat":
            return list(item.messages)
        return self._transcript(item.messages) + self.templates.completion["response_cue"]

    def critique_request(self, item: PromptItem, response: str, p: CritiquePrinciple) -> list[Message] | str:
        if self.settings.prompt_format == "chat":
            return [
                *self._chat_fewshot,
                *item.messages,
                Message("assistant", response),
                Message("user", render(self.templates.chat["critique_turn"], critique_request=p.critique)),
            ]
        c = self.templates.completion
        return (
            self._completion_fewshot
            + self._transcript(item.messages)
            + render(c["assistant"], content=response)
            + render(c["critique"], critique_request=p.critique)
        )

    def revision_request(
        self, item: PromptItem, response: str, p: CritiquePrinciple, critique: str | None
    ) -> list[Message] | str:
        if self.settings.prompt_format == "chat":
            base = [*self._chat_fewshot, *item.messages, Message("assistant", response)]
            if critique is None:
                turn = render(self.templates.chat["direct_revision_turn"], revision_request=p.revision)
                return [*base, Message("user", turn)]
            return [
                *base,
                Message("user", render(self.templates.chat["critique_turn"], critique_request=p.critique)),
                Message("assistant", critique),
                Message("user", render(self.templates.chat["revision_turn"], revision_request=p.revision)),
            ]
        c = self.templates.completion
        text = (
            self._completion_fewshot
            + self._transcript(item.messages)
            + render(c["assistant"], content=response)
        )
        if critique is not None:
            text += render(c["critique"], critique_request=p.critique) + " " + critique
        return text + render(c["revision"], revision_request=p.revision)

    # -- model calls ------------------------------------------------------------------------------------

    async def _generate(
        self, record_id: str, step: str, request: list[Message] | str, usage: Usage, cache: StepCache
    ) -> str:
        cached = cache.get(record_id, step)
        if cached is not None:
            return str(cached["text"])
        params = self.settings.params
        stop = tuple(self.templates.completion.get("stop", ())) if isinstance(request, str) else params.stop
        params = GenerateParams(
            temperature=params.temperature,
            max_tokens=params.max_tokens,
            top_p=params.top_p,
            stop=stop,
            seed=derive_seed(self.settings.seed, record_id, step),
        )
        result: Completion
        assert self.client is not None, "a reviser without a client only renders requests"
        if isinstance(request, str):
            result = await self.client.complete(request, params)
        else:
            result = await self.client.chat(request, params)
        usage.add(result.usage)
        cache.save(record_id, step, {"text": result.text, "usage": result.usage.to_dict()})
        return result.text

    async def run(self, job: Job[PromptItem], cache: StepCache | None = None) -> dict[str, Any]:
        """One record through all rounds; returns the trace row."""
        item, rid = job.item, job.id
        cache = cache or StepCache()
        usage = Usage()
        principles = draw_principles(self.constitution, self.settings.seed, rid, self.settings.rounds)
        if item.response is not None:
            initial = item.response
        else:
            initial = clean_response(
                await self._generate(rid, "initial", self.initial_request(item), usage, cache)
            )
        current = initial
        rounds: list[dict[str, Any]] = []
        for k, p in enumerate(principles, start=1):
            round_usage = Usage()
            critique: str | None = None
            if self.settings.critique:
                raw = await self._generate(
                    rid, f"r{k}.critique", self.critique_request(item, current, p), round_usage, cache
                )
                critique = clean_critique(raw)
            raw_rev = await self._generate(
                rid, f"r{k}.revision", self.revision_request(item, current, p, critique), round_usage, cache
            )
            revision, flags = clean_revision(raw_rev)
            flags = revision_flags(current, revision, flags)
            rounds.append(
                {
                    "round": k,
                    "principle_id": p.id,
                    "critique_request": p.critique if self.settings.critique else "",
                    "critique": critique or "",
                    "revision_request": p.revision,
                    "revision": revision,
                    "flags": flags,
                    "usage": round_usage.to_dict(),
                }
            )
            usage.add(round_usage)
            if revision:  # an empty revision keeps the previous response for the next round
                current = revision
        return {
            "id": rid,
            "prompt": [m.to_dict() for m in item.messages],
            "initial_response": initial,
            "rounds": rounds,
            "final_response": current,
            "usage": usage.to_dict(),
        }

    def rows(self, trace: dict[str, Any]) -> list[dict[str, Any]]:
        """The output rows of one record, in the chosen format."""
        if self.settings.output_format == "trace":
            return [trace]
        prompt = trace["prompt"]
        if not self.settings.keep_rounds:
            return [
                {
                    "id": trace["id"],
                    "round": len(trace["rounds"]),
                    "messages": [*prompt, {"role": "assistant", "content": trace["final_response"]}],
                }
            ]
        out = []
        current = trace["initial_response"]
        for r in trace["rounds"]:
            current = r["revision"] or current
            out.append(
                {
                    "id": trace["id"],
                    "round": r["round"],
                    "principle_id": r["principle_id"],
                    "messages": [*prompt, {"role": "assistant", "content": current}],
                }
            )
        return out


@dataclass(frozen=True)
class CritiqueReviseRun:
    """What a critique-revise run records about itself beyond the reviser's settings: the fingerprint's
    model, server and input options, and the price for each row's cost."""

    model: str
    base_url: str | None = None
    per_turn: bool = False
    field: str | None = None
    response_field: str | None = None
    keep_response: bool = False
    price: Price | None = None


class CritiqueReviseTask:
    """`caitool critique-revise` as a record task (see `caitool.tasks.base.RecordTask`)."""

    command = "critique-revise"
    id_key = "id"

    @property
    def answer_tokens(self) -> int:
        """The longest answer a request can get (--max-tokens): the bound caitool.budget estimates with."""
        return self.reviser.settings.params.max_tokens

    def __init__(self, reviser: CritiqueReviser, run: CritiqueReviseRun) -> None:
        client, s = reviser.client, reviser.settings
        if client is not None and s.prompt_format == "completion" and not client.supports_completions:
            raise UsageError(f"{run.model} has no raw-completion endpoint", hint="use --prompt-format chat")
        if s.keep_rounds and s.output_format != "sft":
            raise UsageError("--keep-rounds needs --format sft")
        if run.response_field and run.keep_response:
            raise UsageError(
                "--response-field and --keep-response both name the initial response; choose one"
            )
        self.reviser = reviser
        self.run = run
        self.prompt_format: str = s.prompt_format
        self.extra_manifest = {
            "constitution_source": reviser.constitution.source,
            "templates_source": reviser.templates.source,
        }

    @classmethod
    def load(
        cls,
        client: ModelClient | None,
        settings: CritiqueReviseSettings,
        run: CritiqueReviseRun,
        *,
        constitution: str | None = None,
        template: str | None = None,
        fewshot_file: str | None = None,
        fewshot: int | None = None,
    ) -> CritiqueReviseTask:
        """The task with its constitution and templates loaded by name or path (None: the defaults)."""
        templates = load_templates(
            template or "critique_revise", fewshot_file or "critique_revise_fewshot", fewshot
        )
        return cls(CritiqueReviser(client, load_constitution(constitution), templates, settings), run)

    def read(self, line: Line) -> list[Job[Any]]:
        run = self.run
        items = prompt_items(
            line,
            field=run.field,
            response_field=run.response_field,
            keep_response=run.keep_response,
            per_turn=run.per_turn,
        )
        return [Job(rid, line.where, item) for rid, item in items]

    def settings(self) -> dict[str, Any]:
        s, cons, run = self.reviser.settings, self.reviser.constitution, self.run
        return {
            "model": run.model,
            "base_url": run.base_url,
            "rounds": s.rounds,
            "seed": s.seed,
            "critique": s.critique,
            "per_turn": run.per_turn,
            "field": run.field,
            "response_field": run.response_field,
            "keep_response": run.keep_response,
            "format": s.output_format,
            "keep_rounds": s.keep_rounds,
            "prompt_format": s.prompt_format,
            "params": s.params.fingerprint(),
            "constitution": cons.name,
            "constitution_sha256": cons.sha256,
            "templates_sha256": self.reviser.templates.sha256,
        }

    def preview(self, job: Job[PromptItem]) -> list[tuple[str, Request]]:
        """The exact requests of the record, every round, with placeholders for model answers."""
        reviser, s = self.reviser, self.reviser.settings
        response = job.item.response or "<initial response>"
        steps: list[tuple[str, Request]] = []
        if job.item.response is None:
            steps.append(("initial response", reviser.initial_request(job.item)))
        for k, p in enumerate(draw_principles(reviser.constitution, s.seed, job.id, s.rounds), start=1):
            if s.critique:
                request = reviser.critique_request(job.item, response, p)
                steps.append((f"round {k} critique (principle {p.id})", request))
            critique = f"<critique {k}>" if s.critique else None
            request = reviser.revision_request(job.item, response, p, critique)
            steps.append((f"round {k} revision (principle {p.id})", request))
            response = f"<revision {k}>"  # the next round critiques this round's revision
        return steps

    async def process(self, job: Job[PromptItem], cache: StepCache) -> list[dict[str, Any]]:
        trace = await self.reviser.run(job, cache)
        cons, price = self.reviser.constitution, self.run.price
        u = trace["usage"]
        trace["caitool"] = {
            "model": self.run.model,
            "constitution": cons.name,
            "constitution_sha256": cons.sha256,
            "seed": self.reviser.settings.seed,
            "source": job.where,
            "cost_usd": round(price.cost(Usage(u["input_tokens"], u["output_tokens"], u["calls"])), 8)
            if price
            else None,
        }
        return self.reviser.rows(trace)
