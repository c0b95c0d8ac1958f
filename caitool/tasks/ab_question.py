"""One (A)/(B) question put to a model, and P over its options read back: what label-pairs, compare,
eval-labeler and rl --reward share.

- `resolve_label_mode`: how to ask a given client (chat, chat-prefill where it renders its own chat
  template, completion) and how many sampled votes stand in for log-probs it does not give;
- `ABQuestion`: the calls (parameters, sampling topped up where a server ignores `n`, the log-prob ask, the
  forced-prefix render);
- `read_answer`: the bounded re-ask until the answer's log-probs name an option with enough mass.

What to do with an answer that is not trusted differs by caller (label-pairs falls back to votes,
eval-labeler keeps and counts it), so that stays with them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from caitool.errors import ConfigError, RecordFailed, UsageError
from caitool.labels import TWO_OPTIONS, NoAnswer, OptionScore, UnusableLogprobs, resolve, score_answer
from caitool.providers.base import Choice, Completion, GenerateParams, Message, ModelClient, Usage

Mode = Literal["completion", "chat", "chat-prefill"]
DEFAULT_VOTES = 5  # sampled answers per question when the model gives no log-probs


def auto_mode(client: ModelClient) -> Mode:
    """chat-prefill where the client renders its own chat template (local models), else chat."""
    return "chat-prefill" if client.render_chat is not None else "chat"


def default_votes(client: ModelClient, given: int | None = None) -> int:
    """The vote count to use: the one given, else DEFAULT_VOTES for a model without log-probs, else 0
    (labels come from log-probs)."""
    if given is not None:
        return given
    return 0 if client.supports_logprobs else DEFAULT_VOTES


def resolve_label_mode(client: ModelClient, prompt_format: str, votes: int | None) -> tuple[Mode, int]:
    """The question mode and vote count for `client`: `auto` is chat-prefill where the client renders its
    own chat template, else chat; votes default to DEFAULT_VOTES where the model gives no log-probs. A
    mode the client cannot serve is a usage error, so label-pairs, compare, eval-labeler and rl --reward
    refuse the same things the same way."""
    mode = auto_mode(client) if prompt_format == "auto" else prompt_format
    if mode == "completion" and not client.supports_completions:
        raise UsageError(f"{client.spec} has no raw-completion endpoint", hint="use --prompt-format chat")
    if mode == "chat-prefill" and client.render_chat is None:
        raise UsageError("--prompt-format chat-prefill needs a local/ model", hint="use chat or completion")
    n_votes = default_votes(client, votes)
    if n_votes and mode != "chat":
        raise UsageError("--votes needs --prompt-format chat")
    return mode, n_votes  # type: ignore[return-value]


class ABQuestion:
    """The model calls of one question: `params`, `call`, `sample` (K answers, topped up with further
    requests when a server ignores `n`), `logprob_asker` (one short answer with its log-probs) and
    `prefilled` (a chat rendered by the model's own template, continued after a forced prefix)."""

    def __init__(self, client: ModelClient, *, temperature: float = 1.0, top_logprobs: int = 20) -> None:
        self.client = client
        self.temperature = temperature
        self.top_logprobs = top_logprobs

    def params(
        self, *, max_tokens: int, logprobs: bool, seed: int, n: int = 1, stop: tuple[str, ...] = ()
    ) -> GenerateParams:
        return GenerateParams(
            temperature=self.temperature,
            max_tokens=max_tokens,
            logprobs=logprobs,
            top_logprobs=self.top_logprobs if logprobs else 0,
            seed=seed,
            n=n,
            stop=stop,
        )

    async def call(self, request: list[Message] | str, params: GenerateParams, usage: Usage) -> Completion:
        if isinstance(request, str):
            result = await self.client.complete(request, params)
        else:
            result = await self.client.chat(request, params)
        usage.add(result.usage)
        return result

    async def sample(
        self,
        request: list[Message] | str,
        k: int,
        seed: int,
        usage: Usage,
        max_tokens: int,
        stop: tuple[str, ...] = (),
    ) -> list[Choice]:
        """K sampled answers; a server that ignores `n` (returns fewer choices) is topped up with further
        requests, at most K in all; the caller records how many actually came back."""
        choices: list[Choice] = []
        for call in range(k):
            if len(choices) >= k:
                break
            params = self.params(
                max_tokens=max_tokens, logprobs=False, seed=seed + 7919 * call, n=k - len(choices), stop=stop
            )
            result = await self.call(request, params, usage)
            choices.extend(result.choices)
        return choices[:k]

    def logprob_asker(self, usage: Usage) -> Callable[[list[Message] | str, int], Any]:
        """`ask(request, seed)` for `read_answer`: one answer of up to 3 tokens with its log-probs."""

        async def ask(request: list[Message] | str, seed: int) -> Choice | None:
            result = await self.call(request, self.params(max_tokens=3, logprobs=True, seed=seed), usage)
            return result.choices[0] if result.choices else None

        return ask

    def prefilled(self, messages: list[Message], prefix: str) -> str:
        render_chat = self.client.render_chat
        if render_chat is None:
            raise ConfigError(f"{self.client.spec}: chat-prefill needs a local model with a chat template")
        return render_chat(messages) + prefix


@dataclass
class AnswerRead:
    """The outcome of asking for an answer and reading its log-probs, re-asks included."""

    score: OptionScore | None  # None: no trusted answer (see `best`, `error`)
    reasks: int
    raw: str
    resolved: bool = False
    best: OptionScore | None = None  # the untrusted score with the most option mass
    error: str | None = None  # why the last log-probs were unusable


# An unresolved opening with at least this much mass is worth one more request to observe its letter.
RESOLVE_MIN_MASS = 0.01


def _display(token: str) -> str:
    return token.replace("▁", " ").replace("Ġ", " ")


async def read_answer(
    ask: Callable[[list[Message] | str, int], Any],
    request: list[Message] | str,
    seed: int,
    reask: int,
    options: str = TWO_OPTIONS,
    spec: str = "model",
) -> AnswerRead:
    """Ask (bounded re-asks) until the answer's log-probs name an option with at least MIN_OPTION_MASS.
    `ask(request, seed)` returns a Choice (or None). On a raw-completion request whose answer left mass on an
    opening it did not take, the opening is appended to the prompt and asked once to observe P1 exactly."""
    raw, best, error = "", None, None
    for attempt in range(reask + 1):
        choice: Choice | None = await ask(request, seed + attempt)
        if choice is None:
            continue
        raw = choice.text
        if not choice.logprobs:
            raise RecordFailed(
                f"{spec} returned no log-probs",
                {"hint": "this server drops log-probs: use --votes K", "raw": raw},
            )
        resolved = False
        try:
            score = score_answer(choice.logprobs, options)
        except UnusableLogprobs as e:
            error = str(e)
            continue
        except NoAnswer:
            continue
        if isinstance(request, str) and score.opening and score.unresolved >= RESOLVE_MIN_MASS:
            after: Choice | None = await ask(request + _display(score.opening), seed + attempt)
            if after is not None and after.logprobs:
                try:
                    score = resolve(score, score_answer(after.logprobs, options))
                    resolved = True
                except NoAnswer:
                    pass  # keep the bounded estimate
        if score.trusted:
            return AnswerRead(score, attempt, raw, resolved)
        if best is None or score.ab_mass > best.ab_mass:
            best = score
    return AnswerRead(None, reask, raw, best=best, error=error)
