"""`vllm-engine/MODEL`: the parts that need no GPU and no vLLM (CI never installs it), and, where vLLM is
importable, its real SamplingParams / Logprob / CompletionOutput objects through the client's conversion.

What needs a GPU (the engine itself, `--engine ray` actors holding it) is checked by
benchmarks/gpu_check_vllm_ray.sh on a GPU machine, not here."""

from __future__ import annotations

import importlib.util
import math
import pickle
from pathlib import Path
from typing import Any

import pytest

from caitool.errors import ProviderError, UsageError
from caitool.labels import score_answer
from caitool.providers import get_client, list_providers
from caitool.providers.base import GenerateParams, TokenLogprob, TopLogprob
from caitool.providers.vllm_engine import (
    VLLMEngineClient,
    choice_from_output,
    finish_reason,
    sampling_kwargs,
    token_logprob,
)
from caitool.retry import ResilientClient
from tests.conftest import cli_env, read_jsonl, run_cli, write_jsonl

HUB_ID = "HuggingFaceTB/SmolLM2-135M-Instruct"  # never downloaded here: the engine is built on first use


def test_sampling_params_follow_the_request() -> None:
    kw = sampling_kwargs(GenerateParams(temperature=0.0, max_tokens=5, seed=7, stop=("\n",), n=3))
    assert kw == {"n": 3, "temperature": 0.0, "max_tokens": 5, "seed": 7, "stop": ["\n"]}
    # top_p only when given (vLLM's default is 1.0); log-probs only when asked, capped at OpenAI's 20.
    kw = sampling_kwargs(GenerateParams(top_p=0.9, logprobs=True, top_logprobs=50))
    assert kw["top_p"] == 0.9 and kw["logprobs"] == 20 and kw["stop"] is None and kw["seed"] is None
    # logprobs=True with no alternatives: the sampled token's log-prob alone (vLLM's logprobs=0).
    assert sampling_kwargs(GenerateParams(logprobs=True))["logprobs"] == 0


def test_a_position_is_reported_as_openai_does() -> None:
    # vLLM's order: the sampled token first (with its vocabulary rank), then the top k.
    inside = token_logprob(("B", -0.9), [("B", -0.9, 2), ("A", -0.6, 1), ("C", -3.0, 3)], 2)
    assert inside == TokenLogprob("B", -0.9, (TopLogprob("A", -0.6), TopLogprob("B", -0.9)))
    # A sampled token ranked below k is not in the top list, which keeps k entries.
    outside = token_logprob(("Z", -7.0), [("Z", -7.0, 31), ("A", -0.2, 1), ("B", -1.9, 2)], 2)
    assert outside.top == (TopLogprob("A", -0.2), TopLogprob("B", -1.9)) and outside.token == "Z"
    # Probability 0 stays -inf (the label code reads it as 0); no alternatives asked: an empty top.
    assert token_logprob(("A", -math.inf), [("A", -math.inf, 9)], 0) == TokenLogprob("A", -math.inf, ())


def test_the_label_code_reads_p_a_from_them() -> None:
    # label-pairs' answer "(A" scored from what the conversion makes of vLLM's per-position dicts.
    opening = token_logprob(("(", -0.01), [("(", -0.01, 1), (" (", -5.0, 2)], 2)
    letter = token_logprob(("A", math.log(0.7)), [("A", math.log(0.7), 1), ("B", math.log(0.3), 2)], 2)
    score = score_answer([opening, letter])
    assert score.probs["A"] == pytest.approx(0.7) and score.probs["B"] == pytest.approx(0.3)


def test_finish_reasons() -> None:
    assert finish_reason("stop", "vllm-engine/m") == "stop"
    assert finish_reason("length", "vllm-engine/m") == "length"
    with pytest.raises(ProviderError) as err:
        finish_reason("abort", "vllm-engine/m")
    assert err.value.retryable


def test_the_client_travels_as_its_spec_and_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAITOOL_VLLM_GPU_MEMORY_UTILIZATION", "0.5")
    monkeypatch.setenv("CAITOOL_VLLM_TENSOR_PARALLEL_SIZE", "2")
    monkeypatch.setenv("CAITOOL_VLLM_MAX_MODEL_LEN", "4096")
    client = get_client(f"vllm-engine/{HUB_ID}")
    assert isinstance(client, VLLMEngineClient)
    client._engine = object()  # an engine in this process stays here
    copy = pickle.loads(pickle.dumps(client))
    monkeypatch.delenv("CAITOOL_VLLM_TENSOR_PARALLEL_SIZE")  # the actor's environment does not matter
    assert copy._engine is None and copy.spec == f"vllm-engine/{HUB_ID}"
    assert copy.engine_args() == {
        "model": HUB_ID,
        "tokenizer": None,
        "seed": 0,
        "enable_prefix_caching": True,
        "max_logprobs": 20,
        "tensor_parallel_size": 2,
        "disable_log_stats": True,
        "gpu_memory_utilization": 0.5,
        "max_model_len": 4096,
    }
    wrapped = ResilientClient(copy)  # what --engine ray reads: the GPUs an actor needs, and its batch size
    assert wrapped.actor_gpus == 2 and wrapped.default_concurrency == 64 and wrapped.supports_logprobs
    assert ResilientClient(get_client("vllm/m")).actor_gpus == 0  # a server's client needs no GPU here


def test_bad_models_and_settings_are_usage_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UsageError, match="cannot load GGUF") as err:
        get_client("vllm-engine/model.Q4_1.gguf")
    assert "gguf_file=" in (err.value.hint or "")
    with pytest.raises(UsageError, match="not a Hugging Face model folder"):
        get_client(f"vllm-engine/{tmp_path}")
    (tmp_path / "config.json").write_text("{}")
    assert get_client(f"vllm-engine/{tmp_path}").model == str(tmp_path.resolve())  # type: ignore[attr-defined]
    monkeypatch.setenv("CAITOOL_VLLM_GPU_MEMORY_UTILIZATION", "most")
    with pytest.raises(UsageError, match="CAITOOL_VLLM_GPU_MEMORY_UTILIZATION"):
        get_client(f"vllm-engine/{HUB_ID}")


def test_listed_with_an_honest_reason() -> None:
    (entry,) = [p for p in list_providers() if p.name == "vllm-engine"]
    if importlib.util.find_spec("vllm") is None:
        assert not entry.ready and "caitool[vllm]" in entry.detail
    assert any(p.name == "vllm" for p in list_providers())  # the server provider is still there


def test_a_gguf_is_refused_before_any_output(tmp_path: Path) -> None:
    pairs = write_jsonl(
        tmp_path / "pairs.jsonl", [{"id": "q", "prompt": "p", "response_a": "a", "response_b": "b"}]
    )
    out = tmp_path / "out.jsonl"
    r = run_cli("label-pairs", str(pairs), "-o", str(out), "-m", "vllm-engine/x.gguf", env=cli_env())
    assert r.returncode == 2 and "GGUF" in r.stderr and not out.exists()


def test_a_run_without_vllm_says_so(tmp_path: Path) -> None:
    """Not a traceback from the tokenizer's download (the first thing a run needs): exit 2 and the install."""
    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vLLM is installed here")
    pairs = write_jsonl(
        tmp_path / "pairs.jsonl", [{"id": "q", "prompt": "p", "response_a": "a", "response_b": "b"}]
    )
    out = tmp_path / "out.jsonl"
    r = run_cli("label-pairs", str(pairs), "-o", str(out), "-m", f"vllm-engine/{HUB_ID}", env=cli_env())
    assert r.returncode == 2, r.stderr
    assert "vLLM is not installed" in r.stderr and "caitool[vllm]" in r.stderr
    assert "Traceback" not in r.stderr and not read_jsonl(out)


@pytest.mark.slow
def test_engine_ray_without_gpus_is_refused_before_any_output(tmp_path: Path) -> None:
    pytest.importorskip("ray", reason='Ray is not installed (pip install "caitool[ray]")')
    pairs = write_jsonl(
        tmp_path / "pairs.jsonl", [{"id": "q", "prompt": "p", "response_a": "a", "response_b": "b"}]
    )
    out = tmp_path / "out.jsonl"
    r = run_cli(
        "label-pairs", str(pairs), "-o", str(out), "-m", f"vllm-engine/{HUB_ID}", "--engine", "ray",
        env=cli_env(RAY_ADDRESS="", CUDA_VISIBLE_DEVICES=""), timeout=180,
    )  # fmt: skip
    assert r.returncode == 2, r.stderr
    assert "1 GPU(s) each" in r.stderr and "has 0 GPUs" in r.stderr and not out.exists()


def test_real_vllm_objects_through_the_conversion() -> None:
    if importlib.util.find_spec("vllm") is None:
        pytest.skip('vLLM is not installed (a GPU environment: pip install "caitool[vllm]"; never in CI)')
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.logprobs import FlatLogprobs, append_logprobs_for_next_position
    from vllm.outputs import CompletionOutput
    from vllm.sampling_params import RequestOutputKind, SamplingParams

    params = GenerateParams(temperature=0.0, max_tokens=4, seed=3, stop=(")",), logprobs=True, top_logprobs=2)
    sp = SamplingParams(**sampling_kwargs(params), output_kind=RequestOutputKind.FINAL_ONLY)
    assert (sp.temperature, sp.max_tokens, sp.seed, sp.stop, sp.logprobs) == (0.0, 4, 3, [")"], 2)
    # Two positions as vLLM's output processor fills them: [sampled] + top-k ids, log-probs, the sampled
    # token's rank, decoded tokens. Position 2's sampled token (id 9) is ranked 5th, below the top 2.
    steps = [
        ([11, 11, 12], [-0.1, -0.1, -2.5], 1, ["(", "(", " ("]),
        ([9, 21, 22], [-4.0, -0.4, -1.2], 5, ["x", "A", "B"]),
    ]
    containers: list[Any] = [[], FlatLogprobs()]
    for container in containers:
        for ids, lps, rank, toks in steps:
            append_logprobs_for_next_position(container, ids, lps, toks, rank, 2)
        out = CompletionOutput(
            index=0, text="(x", token_ids=[11, 9], cumulative_logprob=-4.1, logprobs=container,
            finish_reason="length",
        )  # fmt: skip
        choice = choice_from_output(out, 2, "vllm-engine/m")
        assert choice.text == "(x" and choice.finish_reason == "length"
        assert choice.logprobs == (
            TokenLogprob("(", -0.1, (TopLogprob("(", -0.1), TopLogprob(" (", -2.5))),
            TokenLogprob("x", -4.0, (TopLogprob("A", -0.4), TopLogprob("B", -1.2))),
        )
    # The engine's arguments are ones AsyncEngineArgs takes (building its config needs a GPU and the model).
    client = get_client(f"vllm-engine/{HUB_ID}")
    args = AsyncEngineArgs(**client.engine_args())  # type: ignore[attr-defined]
    assert args.enable_prefix_caching and args.max_logprobs == 20
