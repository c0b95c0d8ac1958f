"""`vllm-engine/MODEL`: a model run in-process by vLLM's `AsyncLLM` on this machine's GPU, with log-probs.

MODEL is a Hugging Face id or a local folder in Hugging Face format (config, safetensors, tokenizer). vLLM
0.26 has no GGUF loader any more (its `load_format` list has none), so a `.gguf` file is refused with the
conversion to run once (transformers reads GGUF with `gguf_file=`; docs/scale.md). `vllm/MODEL` is another
provider: vLLM's OpenAI-compatible *server* over HTTP.

The engine is created on first use, inside the process that uses it (a local run, or a Ray actor with
`--engine ray`), and `vllm` is imported only there: the client travels to an actor as its spec and settings.
Nothing here depends on Ray. vLLM batches the requests in flight itself (continuous batching), so the client
asks for many at once (`default_concurrency`), and an actor for `actor_gpus` GPUs.

The engine's settings come from the environment of the process that builds the client (the driver), not from
flags, and travel with it: CAITOOL_VLLM_GPU_MEMORY_UTILIZATION, CAITOOL_VLLM_TENSOR_PARALLEL_SIZE,
CAITOOL_VLLM_MAX_MODEL_LEN, CAITOOL_VLLM_TOKENIZER (a tokenizer other than the model's own).

The pure parts (GenerateParams to SamplingParams' keywords, one position's log-probs to a `TokenLogprob`, the
finish reason) import nothing of vLLM, so CI tests them without it (tests/test_vllm_engine.py).
"""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from caitool.errors import CaitoolError, ProviderError, UsageError
from caitool.providers.base import (
    Choice,
    Completion,
    GenerateParams,
    Message,
    TokenLogprob,
    TopLogprob,
    Usage,
)

INSTALL_HINT = (
    'vLLM needs a GPU environment of its own: pip install "caitool[vllm]" there '
    "(never together with caitool[train]: they pin different torch versions; docs/scale.md)"
)
GGUF_HINT = (
    'convert it once to a Hugging Face folder: python -c "from transformers import '
    "AutoModelForCausalLM as M, AutoTokenizer as T; d, f = 'DIR', 'FILE.gguf'; "
    "M.from_pretrained(d, gguf_file=f).save_pretrained('OUT'); T.from_pretrained(d, gguf_file=f)"
    ".save_pretrained('OUT')\" (needs pip install gguf), then use vllm-engine/OUT"
)
# OpenAI's ceiling for top_logprobs; the engine is started with room for it (its own default is also 20).
MAX_LOGPROBS = 20
ENV_PREFIX = "CAITOOL_VLLM_"


def _env_number(name: str, kind: type[int] | type[float]) -> int | float | None:
    raw = os.environ.get(ENV_PREFIX + name)
    if not raw:
        return None
    try:
        value = kind(raw)
    except ValueError:
        raise UsageError(f"{ENV_PREFIX}{name}={raw!r}: not a number") from None
    if value <= 0:
        raise UsageError(f"{ENV_PREFIX}{name}={raw!r}: must be above 0")
    return value


def sampling_kwargs(params: GenerateParams) -> dict[str, Any]:
    """SamplingParams' keywords for `params`. The seed is the request's own, so a record's samples depend on
    its seed, not on the records batched beside it (vLLM gives the n samples of a seeded request seeds of
    their own). `logprobs` is the number of alternatives besides the sampled token, as OpenAI's
    `top_logprobs`."""
    kw: dict[str, Any] = {
        "n": max(1, params.n),
        "temperature": params.temperature,
        "max_tokens": params.max_tokens,
        "seed": params.seed,
        "stop": list(params.stop) or None,
    }
    if params.top_p is not None:
        kw["top_p"] = params.top_p
    if params.logprobs:
        kw["logprobs"] = min(MAX_LOGPROBS, max(0, params.top_logprobs))
    return kw


def token_logprob(
    sampled: tuple[str, float], alternatives: Iterable[tuple[str, float, int | None]], top_k: int
) -> TokenLogprob:
    """One position's log-probs as OpenAI reports them: the sampled token, and the `top_k` most likely
    tokens in rank order. vLLM's dict for a position holds the sampled token (with its rank in the
    vocabulary) and the top k; a sampled token ranked below k is not one of the top, as in OpenAI's
    `top_logprobs`. `alternatives` are (decoded token, log-prob, rank) triples."""
    ranked = sorted((a for a in alternatives if a[2] is not None and a[2] <= top_k), key=lambda a: a[2] or 0)
    return TokenLogprob(
        token=sampled[0],
        logprob=float(sampled[1]),
        top=tuple(TopLogprob(tok, float(lp)) for tok, lp, _ in ranked),
    )


def finish_reason(reason: str | None, spec: str) -> str:
    """vLLM's "stop" (EOS or a stop string) and "length" are OpenAI's; "abort" means the engine dropped the
    request (it was cancelled, or the engine is shutting down), which another attempt may not meet."""
    if reason in ("stop", "length"):
        return reason
    raise ProviderError(f"{spec}: the engine ended the request ({reason})", retryable=True)


def choice_from_output(output: Any, top_k: int | None, spec: str) -> Choice:
    """A `Choice` from one vLLM `CompletionOutput` (read by its attributes: text, token_ids, logprobs,
    finish_reason). `top_k` None: no log-probs were asked for. `logprobs` is a list of dicts token id ->
    `Logprob`, or vLLM's `FlatLogprobs`, which yields the same dicts."""
    lps: tuple[TokenLogprob, ...] | None = None
    if top_k is not None and output.logprobs is not None:
        out: list[TokenLogprob] = []
        for token_id, position in zip(output.token_ids, output.logprobs, strict=False):
            chosen = position[token_id]
            out.append(
                token_logprob(
                    (chosen.decoded_token or "", chosen.logprob),
                    ((lp.decoded_token or "", lp.logprob, lp.rank) for lp in position.values()),
                    top_k,
                )
            )
        lps = tuple(out)
    return Choice(text=output.text, finish_reason=finish_reason(output.finish_reason, spec), logprobs=lps)


def require_vllm() -> None:
    """Before the first tokenizer or engine: without vLLM nothing here could run, and the error should say so
    rather than whatever the tokenizer's download fails with."""
    if importlib.util.find_spec("vllm") is None:
        raise UsageError("vLLM is not installed", hint=INSTALL_HINT)


def check_model(model: str) -> str:
    """The model as vLLM should get it; refused here, before any output file exists, when vLLM could not
    load it. An existing path must be a Hugging Face folder; anything else is taken as a hub id."""
    path = Path(model).expanduser()
    if model.lower().endswith(".gguf"):
        raise UsageError(f"vllm-engine/{model}: vLLM 0.26 cannot load GGUF files", hint=GGUF_HINT)
    if path.exists():
        if not (path / "config.json").is_file():
            raise UsageError(
                f"vllm-engine/{model}: {path} is not a Hugging Face model folder (no config.json)"
            )
        return str(path.resolve())
    return model


class VLLMEngineClient:
    supports_logprobs = True
    supports_completions = True
    supports_n = True
    # vLLM schedules every request in flight into one continuous batch: more in flight is more throughput,
    # up to its KV cache; 64 keeps a 135M-8B model's GPU busy without queueing minutes of work in one actor.
    default_concurrency = 64

    def __init__(self, spec: str, model: str) -> None:
        self.spec = spec
        self.model = check_model(model)
        self.tokenizer_name = os.environ.get(ENV_PREFIX + "TOKENIZER") or None
        self.gpu_memory_utilization = _env_number("GPU_MEMORY_UTILIZATION", float)
        self.tensor_parallel_size = int(_env_number("TENSOR_PARALLEL_SIZE", int) or 1)
        self.max_model_len = _env_number("MAX_MODEL_LEN", int)
        self._reset()

    # What `--engine ray` gives each actor that holds this client: one engine over this many GPUs.
    @property
    def actor_gpus(self) -> int:
        return self.tensor_parallel_size

    def _reset(self) -> None:
        self._engine: Any = None
        self._tokenizer: Any = None
        self._lock: asyncio.Lock | None = None
        self._ids = itertools.count()

    # Sent to a Ray actor as its spec and settings; the engine and tokenizer are built again there.
    def __getstate__(self) -> dict[str, Any]:
        keep = (
            "spec",
            "model",
            "tokenizer_name",
            "gpu_memory_utilization",
            "tensor_parallel_size",
            "max_model_len",
        )
        return {k: getattr(self, k) for k in keep}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._reset()

    def engine_args(self) -> dict[str, Any]:
        """AsyncEngineArgs' keywords: prefix caching (a record's chain and a command's shared few-shot prefix
        are computed once), room for 20 alternatives per token, and the settings from the environment."""
        kw: dict[str, Any] = {
            "model": self.model,
            "tokenizer": self.tokenizer_name,
            "seed": 0,
            "enable_prefix_caching": True,
            "max_logprobs": MAX_LOGPROBS,
            "tensor_parallel_size": self.tensor_parallel_size,
            "disable_log_stats": True,
        }
        if self.gpu_memory_utilization is not None:
            kw["gpu_memory_utilization"] = self.gpu_memory_utilization
        if self.max_model_len is not None:
            kw["max_model_len"] = self.max_model_len
        return kw

    def _hf_tokenizer(self) -> Any:
        """The model's tokenizer, for the chat template and the prompt's tokens (loaded apart from the engine,
        so `render_chat` works before the first request)."""
        if self._tokenizer is None:
            require_vllm()
            try:
                from transformers import AutoTokenizer
            except ImportError:
                raise UsageError("transformers is not installed", hint=INSTALL_HINT) from None
            name = self.tokenizer_name or self.model
            try:
                self._tokenizer = AutoTokenizer.from_pretrained(name)
            except (OSError, ValueError) as exc:  # not on disk, not downloadable, not a tokenizer
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise UsageError(f"{self.spec}: cannot load the tokenizer of {name}: {first}") from None
        return self._tokenizer

    async def _get(self) -> Any:
        if self._engine is not None:
            return self._engine
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:  # the first requests of a run arrive together; one engine is built
            if self._engine is None:
                try:
                    from vllm.engine.arg_utils import AsyncEngineArgs
                    from vllm.v1.engine.async_llm import AsyncLLM
                except ImportError:
                    raise UsageError("vLLM is not installed", hint=INSTALL_HINT) from None
                # Built on this event loop: AsyncLLM starts its output handler on the running loop.
                try:
                    self._engine = AsyncLLM.from_engine_args(AsyncEngineArgs(**self.engine_args()))
                except (ValueError, RuntimeError, OSError) as exc:
                    raise CaitoolError(f"{self.spec}: vLLM could not start: {exc}") from None
        return self._engine

    def _prompt_tokens(self, prompt: str) -> list[int]:
        # A rendered chat already starts with the template's BOS; a second one would shift the model's answer.
        tok = self._hf_tokenizer()
        bos = getattr(tok, "bos_token", None)
        add_special = not (bos and prompt.startswith(bos))
        return list(tok(prompt, add_special_tokens=add_special)["input_ids"])

    async def complete(self, prompt: str, params: GenerateParams) -> Completion:
        engine = await self._get()
        from vllm.sampling_params import RequestOutputKind, SamplingParams
        from vllm.v1.engine.exceptions import EngineDeadError

        kw = sampling_kwargs(params)
        try:
            sampling = SamplingParams(**kw, output_kind=RequestOutputKind.FINAL_ONLY)
        except ValueError as exc:  # e.g. top_logprobs above the engine's ceiling
            raise ProviderError(f"{self.spec}: {exc}", retryable=False) from None
        ids = self._prompt_tokens(prompt)
        final = None
        try:
            async for out in engine.generate(
                {"prompt_token_ids": ids}, sampling, f"caitool-{next(self._ids)}"
            ):
                final = out
        except ValueError as exc:  # the request itself is wrong (too long for the context, say)
            raise ProviderError(f"{self.spec}: {exc}", retryable=False) from None
        except EngineDeadError as exc:
            raise CaitoolError(f"{self.spec}: the vLLM engine died: {exc}") from None
        if final is None:
            raise ProviderError(f"{self.spec}: the engine returned nothing", retryable=True)
        top_k = kw.get("logprobs")
        choices = [choice_from_output(o, top_k, self.spec) for o in final.outputs]
        # Prompt tokens once per request (vLLM computes a prompt once for its n samples), as OpenAI counts.
        # Prefix-cache hits are left out: they depend on the records batched beside this one, and a row's
        # usage must not.
        usage = Usage(
            input_tokens=len(final.prompt_token_ids or ids),
            output_tokens=sum(len(o.token_ids) for o in final.outputs),
            calls=1,
        )
        return Completion(choices=choices, usage=usage, model=self.model)

    async def chat(self, messages: list[Message], params: GenerateParams) -> Completion:
        return await self.complete(self.render_chat(messages), params)

    def render_chat(self, messages: list[Message], *, add_generation_prompt: bool = True) -> str:
        """The model's chat template applied to `messages` (chat and forced-prefix completions share it)."""
        tok = self._hf_tokenizer()
        if not getattr(tok, "chat_template", None):
            raise UsageError(f"{self.spec}: the model's tokenizer has no chat template")
        return str(
            tok.apply_chat_template(
                [m.to_dict() for m in messages], tokenize=False, add_generation_prompt=add_generation_prompt
            )
        )

    async def aclose(self) -> None:
        if self._engine is not None:
            self._engine.shutdown()
            self._engine = None
