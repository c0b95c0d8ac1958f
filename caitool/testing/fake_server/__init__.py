"""A local HTTP server that speaks the OpenAI and Anthropic APIs, with deterministic fault injection.

It is real HTTP (aiohttp on 127.0.0.1), so the real `openai` and `anthropic` SDKs, and caitool's providers,
talk to it exactly as they talk to a hosted API. Used by the tests and by the benchmarks; never by the CLI.

Endpoints
    POST /v1/chat/completions   OpenAI chat (n, logprobs/top_logprobs, max_tokens, stop)
    POST /v1/completions        OpenAI legacy completions (n, logprobs=K, max_tokens, stop, list prompts)
    POST /v1/messages           Anthropic Messages (key as `x-api-key` or `Authorization: Bearer`)
    GET  /v1/models             model list (a shape both SDKs accept)
    /v1/files, /v1/batches      OpenAI Files (purpose=batch upload, retrieve, content) and Batches (create,
                                retrieve, list with limit/after, cancel; output and error files as JSONL)
    /v1/messages/batches        Anthropic Message Batches (create, retrieve, list, cancel, results JSONL)
    GET  /_stats                counters (`?brief=1`: without the per-prompt maps); API keys never stored
    GET  /_config, POST /_config   read / update the config (JSON object, merged into the current one)
    POST /_reset                clear the counters, drop requests in flight, and set the config to the
                                startup one (constructor / command line) updated by the JSON body if any

Streaming (`stream: true`) is not implemented: such a request gets a 400.

Use from pytest::

    import openai
    import pytest
    from caitool.testing.fake_server import FakeServer

    @pytest.fixture
    def fake():
        with FakeServer(latency_ms=0) as server:   # starts on a free port in a background thread
            yield server

    def test_retry(fake):
        fake.configure(fail_first=2)               # the first 2 attempts of every prompt get 503
        client = openai.OpenAI(base_url=fake.openai_base_url, api_key="k", max_retries=0)
        ...
        assert fake.attempts_for("my record text") == 3
        assert fake.stats()["faults"]["fail_first"] == 2

    # Anthropic: anthropic.Anthropic(base_url=fake.anthropic_base_url, api_key="k", max_retries=0)

A session-scoped server plus `fake.reset(**config)` in each test is cheaper than a server per test:
reset() zeroes the counters, drops requests still in flight and sets the config back to the one given to
the constructor, updated by `config`; configure() updates the current config.

From a shell, or for the benchmarks::

    python -m caitool.testing.fake_server --port 0 --latency-ms 100-500 --p429 0.05 --retry-after 1

prints `listening on http://127.0.0.1:PORT` as its first line (flushed) and serves until SIGINT/SIGTERM.

Replies (deterministic)
    Default text `reply {i} to: {snippet}`: i is the choice index (n samples), snippet the first 40
    characters of the last user message (chat, messages) or the last 40 characters of the prompt
    (completions), whitespace collapsed. `reply_text` replaces it; `reply_script` rules (substring ->
    reply, first match wins, matched against the last user message or the whole completions prompt) take
    precedence over both.
    `answer_logprobs` ({token: logprob}) applies to requests that ask for log-probs: the reply is then the
    single token with the highest log-prob (shown with a leading "▁"/"Ġ" as a space), and the dict, sorted
    and cut to the requested top-k, is that token's top log-probs. A `reply_script` rule may carry its own
    `answer_logprobs`. `answer_style` spells that answer as real chat models do: `paren` / `space-paren`
    ("(" or " (" first, then the letter), `joined` ("(A" as one token), `prose` ("The answer is (A)");
    `ignore_n` answers one choice whatever `n` asks. Other tokens get log-probs -0.05..-0.14 and filler
    alternatives. `max_tokens` cuts
    the reply (finish_reason "length", Anthropic stop_reason "max_tokens"); `stop` / `stop_sequences` cut
    it at the first match.

Faults (all deterministic)
    Each request draws one number from sha1(seed, prompt key, attempt number): the same prompt's k-th
    attempt meets the same fault whatever the concurrency. The `p*` rates share that one draw (their sum
    must be <= 1), in the order p429, p429_quota, p500, p503, p529, p_hang, p_reset, p_truncate,
    p_empty_choices, p_garbage_answer. Before the draw, in this order: `require_key` (401, every
    endpoint), `fail_keys_containing` (substring of the prompt -> status), `rpm` (token bucket, burst of
    one second, 429 with the wait until the next token), `fail_first` (the first N attempts of each prompt
    key get `fail_status`). `fault_endpoints` and `fault_match` restrict rpm, fail_first and the p* faults
    to some endpoints / to prompts containing a substring. 4xx answers are immediate; everything else
    waits `latency_ms` first. `p_hang` sleeps `hang_s` more and then answers normally (a client with a
    shorter timeout sees a timeout; a client that disconnects frees the handler at once).

Misbehaviours (hostile-server tests)
    `misbehave="MODE"` applies MODE to every generation request; a request whose model is
    "misbehave.MODE" (`-m openai/misbehave.ra:86400`) gets MODE whatever the config says. Modes
    (`MISBEHAVIOURS`): `ra:V` / `ra_once:V` / `ra_ms:V` (a 429 with only `Retry-After: V` / on the first
    attempt only / only `retry-after-ms: V`; V `date2100` is an HTTP date in 2100), `drip:MS` (the body one
    byte every MS ms), `huge:MiB` (`huge_chunked:MiB`: without Content-Length), `lp:V` / `lp_all:V`
    (first-token log-probs set to V: -inf, nan, inf, -1e308, or nan_str for the string "nan"; written by
    json.dumps, so NaN/Infinity are bare literals),
    `usage_str|list|inf|neg`, `content_int|list|null|filter|str`, `text_int`, `deep_json`,
    `deep_json_err`, `choices_str`. `canned_body` (with `canned_status`, `canned_headers`) answers every
    generation request with that exact body.

Batches (see `batches.py`)
    Each request in a batch is answered `batch_delay_s` after creation by the live endpoints' fault
    machine and reply builder (log-probs, answer styles, fail_first, p* faults and misbehaviours apply;
    rpm and latency do not, and transport faults become a 500 for that request). `batch_expire`
    (custom_ids) and `p_batch_expire` (seeded rate) expire requests, `batch_fail` (custom_id -> status)
    fails them. Files and batches belong to the API key that made them. `/_stats` has a `batches` block:
    batches created per API, requests seen, answered, errored, expired, cancelled.

The prompt key (`prompt_key(body)`) is the sha1 of the JSON of `messages` (chat; Anthropic:
`[system, messages]` when a system prompt is given) or of `prompt` (completions), with sorted keys and
compact separators.

Modules (each owns one seam; a new endpoint group adds its paths in `endpoints`, wire shapes in
the API's module, handlers in `server` (or its own module, as batches do) and routes in `server.build_app`)
    endpoints       the paths
    config          FakeConfig (every knob, validated) and Active (what the hot path derives from it)
    request         reading a request: prompt key, prompt texts, API key
    answers         reply text and tokens, per-token log-probs, answer styles
    openai_api      OpenAI bodies: chat, completions, log-probs, model list, errors
    anthropic_api   Anthropic bodies: Messages, errors
    replies         one generation request -> its reply body in the endpoint's wire shape
    faults          seeded draws, connection reset, misbehaviour modes
    server          State and handlers (the fault machine), build_app, serve
    batches         OpenAI Files + Batches and Anthropic Message Batches: store, lifecycle, wire, handlers
    handle          FakeServer, the background-thread handle for tests
    cli             the command line (`__main__` runs it)
"""

from __future__ import annotations

from .cli import main
from .config import FakeConfig
from .handle import FakeServer
from .request import prompt_key
from .server import build_app, serve

__all__ = ["FakeConfig", "FakeServer", "build_app", "main", "prompt_key", "serve"]
