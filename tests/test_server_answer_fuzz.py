"""Fuzz (hypothesis) over what a server may answer: any JSON, or almost-right chat/completion shapes with odd
values anywhere (numbers as strings, NaN/Infinity literals, lists for strings, nulls, deep nesting), sent by
the real local fake server (`canned_body`) over real HTTP to the real providers.

Whatever it sends, a call ends as a `Completion` whose texts are strings, whose token counts are
non-negative integers and whose log-probs are numbers <= +inf-free (NaN and +Infinity refused), or as a
`ProviderError` (the record's error row) — never any other exception; and a run through the CLI exits 0 or
3 with every line of its output valid JSON with finite numbers only.
"""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from caitool.errors import ProviderError
from caitool.providers.anthropic import AnthropicClient
from caitool.providers.base import Completion, GenerateParams, Message
from caitool.providers.openai import OpenAIClient
from caitool.testing.fake_server import FakeServer
from tests.conftest import cli_env, prompts, run_cli, write_jsonl


def fuzz(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )


CHAT_PARAMS = GenerateParams(max_tokens=4, logprobs=True, top_logprobs=3, n=2)
TEXT_PARAMS = GenerateParams(max_tokens=4, logprobs=True, top_logprobs=3)

# -- strategies ---------------------------------------------------------------------------------------------

numbers = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -1e308, 1e400, -0.0, "12", "12a", "nan", "-inf", "", True]),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=12))
any_json = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=12,
)


def maybe(value: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly the well-formed value, sometimes anything at all."""
    return st.one_of(value, value, value, any_json)


texts = maybe(st.text(max_size=20))
content = st.one_of(
    texts,
    st.lists(st.fixed_dictionaries({"type": maybe(st.just("text")), "text": texts}), max_size=3),
)
top_chat = st.lists(st.fixed_dictionaries({"token": texts, "logprob": maybe(numbers)}), max_size=3)
chat_logprobs = st.fixed_dictionaries(
    {
        "content": maybe(
            st.lists(
                st.fixed_dictionaries({"token": texts, "logprob": numbers, "top_logprobs": maybe(top_chat)}),
                max_size=2,
            )
        )
    }
)
text_logprobs = st.fixed_dictionaries(
    {
        "tokens": maybe(st.lists(texts, max_size=2)),
        "token_logprobs": maybe(st.lists(maybe(numbers), max_size=2)),
        "top_logprobs": maybe(
            st.lists(maybe(st.dictionaries(st.text(max_size=4), numbers, max_size=3)), max_size=2)
        ),
    }
)
usage = maybe(st.fixed_dictionaries({"prompt_tokens": maybe(numbers), "completion_tokens": maybe(numbers)}))
finish = maybe(st.sampled_from(["stop", "length", "content_filter", None]))
chat_choice = st.fixed_dictionaries(
    {
        "message": maybe(st.fixed_dictionaries({"content": content})),
        "logprobs": maybe(chat_logprobs),
        "finish_reason": finish,
    }
)
text_choice = st.fixed_dictionaries(
    {"text": content, "logprobs": maybe(text_logprobs), "finish_reason": finish}
)


def response(choice: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return maybe(
        st.fixed_dictionaries(
            {"choices": maybe(st.lists(choice, min_size=1, max_size=2)), "usage": usage, "model": texts}
        )
    )


anthropic_response = maybe(
    st.fixed_dictionaries(
        {
            "type": st.just("message"),
            "role": st.just("assistant"),
            "model": texts,
            "content": maybe(
                st.lists(st.fixed_dictionaries({"type": maybe(st.just("text")), "text": texts}))
            ),
            "stop_reason": finish,
            "usage": maybe(st.fixed_dictionaries({"input_tokens": maybe(numbers), "output_tokens": numbers})),
        }
    )
)
raw_bodies = st.sampled_from(["", "not json", "[" * 50_000, '{"choices": [', "null", "\ud800"])


def body_text(value: Any) -> str:
    return value if isinstance(value, str) and not value.startswith("{") else json.dumps(value)


# -- checks -------------------------------------------------------------------------------------------------


def check_outcome(make: Any, *calls: tuple[str, GenerateParams]) -> None:
    async def go() -> list[Completion | ProviderError]:
        client = make()
        out: list[Completion | ProviderError] = []
        try:
            for kind, params in calls:
                try:
                    if kind == "chat":
                        out.append(await client.chat([Message("user", "q?")], params))
                    else:
                        out.append(await client.complete("q? (", params))
                except ProviderError as exc:  # the record's error row; anything else fails the test
                    out.append(exc)
        finally:
            await client.aclose()
        return out

    for outcome in asyncio.run(go()):
        if isinstance(outcome, ProviderError):
            assert isinstance(str(outcome), str)
            continue
        assert outcome.choices and all(isinstance(c.text, str) for c in outcome.choices)
        u = outcome.usage
        assert all(isinstance(n, int) and n >= 0 for n in (u.input_tokens, u.output_tokens, u.calls))
        for c in outcome.choices:
            for tok in c.logprobs or ():
                for lp in (tok.logprob, *(t.logprob for t in tok.top)):
                    assert isinstance(lp, float) and not math.isnan(lp) and lp != math.inf
        row = {"texts": [c.text for c in outcome.choices], "usage": u.to_dict(), "model": outcome.model}
        json.dumps(row, allow_nan=False)


@pytest.mark.parametrize("http", ["aiohttp", "sdk"])
@fuzz(120)
@given(body=st.one_of(response(chat_choice), response(text_choice), any_json, raw_bodies))
@example(body={"choices": [{"message": {"content": [{"type": "text", "text": "a"}, {"text": 1}]}}]})
@example(body={"choices": [{"text": "x", "logprobs": {"tokens": ["x"], "token_logprobs": ["nan"]}}]})
def test_any_openai_answer_is_a_completion_or_a_provider_error(
    fake: FakeServer, monkeypatch: pytest.MonkeyPatch, http: str, body: Any
) -> None:
    monkeypatch.setenv("CAITOOL_HTTP", http)
    fake.configure(canned_body=body_text(body))

    def make() -> OpenAIClient:
        return OpenAIClient("openai/m", "m", base_url=fake.openai_base_url, api_key="k", timeout=10)

    check_outcome(make, ("chat", CHAT_PARAMS), ("complete", TEXT_PARAMS))


@fuzz(80)
@given(body=st.one_of(anthropic_response, any_json, raw_bodies))
def test_any_anthropic_answer_is_a_completion_or_a_provider_error(fake: FakeServer, body: Any) -> None:
    fake.configure(canned_body=body_text(body))

    def make() -> AnthropicClient:
        return AnthropicClient("anthropic/m", "m", base_url=fake.anthropic_base_url, api_key="k", timeout=10)

    check_outcome(make, ("chat", GenerateParams(max_tokens=4)), ("chat", GenerateParams(max_tokens=4, n=2)))


def strict_json(line: str) -> Any:
    def refuse(token: str) -> Any:
        raise AssertionError(f"non-finite number {token} in the output")

    return json.loads(line, parse_constant=refuse)


@fuzz(6)
@given(body=response(chat_choice))
@example(body={"choices": [{"message": {"content": None}, "finish_reason": "content_filter"}]})
@example(body={"choices": [{"message": {"content": "ok"}}], "usage": {"prompt_tokens": 1e400}})
def test_a_run_on_any_answer_exits_0_or_3_with_valid_json(
    fake: FakeServer, tmp_path: Path, body: Any
) -> None:
    fake.configure(canned_body=body_text(body))
    folder = tmp_path / str(abs(hash(body_text(body))))
    folder.mkdir()
    src = write_jsonl(folder / "in.jsonl", prompts(2))
    out = folder / "out.jsonl"
    r = run_cli(
        "critique-revise",
        str(src),
        "-o",
        str(out),
        "--model",
        "openai/m",
        "--base-url",
        fake.openai_base_url,
        "--rounds",
        "1",
        "--retries",
        "0",
        "--format",
        "sft",
        env=cli_env(CAITOOL_RETRY_BACKOFF_S="0.01"),
    )
    assert r.returncode in (0, 3), r.stderr
    assert "Traceback" not in r.stderr
    for path in folder.glob("out.jsonl*"):  # the output, errors and steps files
        if path.suffix == ".jsonl":
            for line in path.read_text().splitlines():
                strict_json(line)
