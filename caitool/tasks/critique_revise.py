"""The paper's supervised stage for one record (Bai et al. 2022, Sec. 3.1).

Reads: the conversation so far (ending with a human turn) and, optionally, an initial response.
Does: sample the initial response (unless given), then `rounds` sequential rounds; each draws a
critique/revision principle uniformly with replacement (seeded by the run seed and the record id, so reruns
draw the same), asks for a critique, then for a revision. The revision becomes the assistant's last response
for the next round, so every round sees "prompt + response" in the same format.
Writes: one trace row (every round: principle id, requests, critique, revision, flags, usage) or SFT rows.

Every finished model call is checkpointed through `save_step`, and steps found in `steps` (from an earlier,
interrupted run) are reused instead of paid for again.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from caitool.constitution import Constitution, CritiquePrinciple
from caitool.inputs import PromptItem
from caitool.parsing import clean_critique, clean_response, clean_revision, revision_flags
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
from caitool.providers.base import Completion, GenerateParams, Message, Usage
from caitool.retry import ResilientClient
from caitool.runner import Job
from caitool.seeds import derive_seed

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
        client: ResilientClient,
        constitution: Constitution,
        templates: Templates,
        settings: CritiqueReviseSettings,
        *,
        steps: dict[str, dict[str, Any]] | None = None,
        save_step: Callable[[str, str, Any], None] | None = None,
    ) -> None:
        self.client = client
        self.constitution = constitution
        self.t = templates
        self.s = settings
        self.steps = steps if steps is not None else {}
        self.save_step = save_step or (lambda _id, _step, _data: None)

    # -- rendering (pure) -------------------------------------------------------------------------------

    def _chat_fewshot(self) -> list[Message]:
        out: list[Message] = []
        if self.t.chat.get("system"):
            out.append(Message("system", self.t.chat["system"]))
        for ex in self.t.fewshot:
            out += list(ex.conversation)
            out.append(Message("assistant", ex.response))
            if self.s.critique:
                out.append(
                    Message(
                        "user", render(self.t.chat["critique_turn"], critique_request=ex.critique_request)
                    )
                )
                out.append(Message("assistant", ex.critique))
                out.append(
                    Message(
                        "user", render(self.t.chat["revision_turn"], revision_request=ex.revision_request)
                    )
                )
            else:
                out.append(
                    Message(
                        "user",
                        render(self.t.chat["direct_revision_turn"], revision_request=ex.revision_request),
                    )
                )
            out.append(Message("assistant", ex.revision))
        return out

    def _transcript(self, messages: tuple[Message, ...] | list[Message]) -> str:
        c = self.t.completion
        return "".join(render(c[m.role], content=m.content) for m in messages)

    def _completion_fewshot(self) -> str:
        c = self.t.completion
        parts = []
        for ex in self.t.fewshot:
            text = self._transcript(ex.conversation) + render(c["assistant"], content=ex.response)
            if self.s.critique:
                text += render(c["critique"], critique_request=ex.critique_request) + " " + ex.critique
            text += render(c["revision"], revision_request=ex.revision_request) + " " + ex.revision
            parts.append(text)
        return "".join(parts)

    def initial_request(self, item: PromptItem) -> list[Message] | str:
        if self.s.prompt_format == "chat":
            return list(item.messages)
        return self._transcript(item.messages) + self.t.completion["response_cue"]

    def critique_request(self, item: PromptItem, response: str, p: CritiquePrinciple) -> list[Message] | str:
        if self.s.prompt_format == "chat":
            return [
                *self._chat_fewshot(),
                *item.messages,
                Message("assistant", response),
                Message("user", render(self.t.chat["critique_turn"], critique_request=p.critique)),
            ]
        c = self.t.completion
        return (
            self._completion_fewshot()
            + self._transcript(item.messages)
            + render(c["assistant"], content=response)
            + render(c["critique"], critique_request=p.critique)
        )

    def revision_request(
        self, item: PromptItem, response: str, p: CritiquePrinciple, critique: str | None
    ) -> list[Message] | str:
        if self.s.prompt_format == "chat":
            base = [*self._chat_fewshot(), *item.messages, Message("assistant", response)]
            if critique is None:
                turn = render(self.t.chat["direct_revision_turn"], revision_request=p.revision)
                return [*base, Message("user", turn)]
            return [
                *base,
                Message("user", render(self.t.chat["critique_turn"], critique_request=p.critique)),
                Message("assistant", critique),
                Message("user", render(self.t.chat["revision_turn"], revision_request=p.revision)),
            ]
        c = self.t.completion
        text = (
            self._completion_fewshot()
            + self._transcript(item.messages)
            + render(c["assistant"], content=response)
        )
        if critique is not None:
            text += render(c["critique"], critique_request=p.critique) + " " + critique
        return text + render(c["revision"], revision_request=p.revision)

    # -- model calls ------------------------------------------------------------------------------------

    async def _generate(self, record_id: str, step: str, request: list[Message] | str, usage: Usage) -> str:
        cached = self.steps.get(record_id, {}).get(step)
        if cached is not None:
            return str(cached["text"])
        params = self.s.params
        stop = tuple(self.t.completion.get("stop", ())) if isinstance(request, str) else params.stop
        params = GenerateParams(
            temperature=params.temperature,
            max_tokens=params.max_tokens,
            top_p=params.top_p,
            stop=stop,
            seed=derive_seed(self.s.seed, record_id, step),
        )
        result: Completion
        if isinstance(request, str):
            result = await self.client.complete(request, params)
        else:
            result = await self.client.chat(request, params)
        usage.add(result.usage)
        self.save_step(record_id, step, {"text": result.text, "usage": result.usage.to_dict()})
        return result.text

    async def run(self, job: Job[PromptItem]) -> dict[str, Any]:
        """One record through all rounds; returns the trace row."""
        item, rid = job.item, job.id
        usage = Usage()
        principles = draw_principles(self.constitution, self.s.seed, rid, self.s.rounds)
        if item.response is not None:
            initial = item.response
        else:
            initial = clean_response(await self._generate(rid, "initial", self.initial_request(item), usage))
        current = initial
        rounds: list[dict[str, Any]] = []
        for k, p in enumerate(principles, start=1):
            round_usage = Usage()
            critique: str | None = None
            if self.s.critique:
                raw = await self._generate(
                    rid, f"r{k}.critique", self.critique_request(item, current, p), round_usage
                )
                critique = clean_critique(raw)
            raw_rev = await self._generate(
                rid, f"r{k}.revision", self.revision_request(item, current, p, critique), round_usage
            )
            revision, flags = clean_revision(raw_rev)
            flags = revision_flags(current, revision, flags)
            rounds.append(
                {
                    "round": k,
                    "principle_id": p.id,
                    "critique_request": p.critique if self.s.critique else "",
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
        if self.s.output_format == "trace":
            return [trace]
        prompt = trace["prompt"]
        if not self.s.keep_rounds:
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
