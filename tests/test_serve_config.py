"""`caitool serve-config`: the Ray Serve LLM config it writes, checked against Ray's own schema on CPU.

What is checked, in the installed ray (no vLLM, no GPU, nothing started):
- the whole file, YAML and JSON, by `ray.serve.schema.ServeDeploySchema.model_validate` (the schema that
  `serve run` and `serve deploy` read a config file with): http_options, the application's name, route
  prefix and import path;
- the application's `args`, as `LLMServingArgs` would check them: each entry of `llm_configs` by Ray's own
  `LLMConfig` pydantic model (`extra="forbid"`, so a misspelled key fails), imported from
  `ray.llm._internal.serve.core.configs.llm_config` because the public `ray.serve.llm` module needs vLLM
  or SGLang at import. Its validators check `model_loading_config` (`ModelLoadingConfig`: model_id,
  model_source), `deployment_config` (Serve's `DeploymentConfig`: the autoscaling bounds,
  `request_router_config`'s keys) and `accelerator_type` (Ray's list of accelerators);
- that the builder (`ray.serve.llm:build_openai_app`) and the prefix-aware router class the config names
  are defined in the installed ray, read from its source with `ast` (importing them needs vLLM; where vLLM
  is installed they are imported too).

Not checked here: `LLMServingArgs` itself (its module imports vLLM's protocol models; its checks are the
per-entry `LLMConfig` validation above plus unique model ids, and there is one model); loading the
prefix-aware router class (its module needs vLLM: that config is validated with a router class Serve ships
for CPU in its place); `engine_kwargs` (a free dict for Ray; vLLM reads `max_logprobs`,
`enable_prefix_caching`, `tensor_parallel_size` and `max_model_len` only when a replica starts, on a GPU).

`ray.serve` imports starlette, fastapi, uvicorn, grpc and (ray 2.60) grpc_reflection, part of `ray[serve]`;
the dev extra installs them. Without ray or them, the Ray checks skip, saying which (probed in a child
process, see `serve_import_error`); the command's own tests run everywhere.
"""

from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from caitool.engines.serve_config import (
    BUILDER,
    MAX_LOGPROBS,
    PREFIX_ROUTER,
    ServeSpec,
    serve_config,
    to_yaml,
)
from tests.conftest import run_cli

yaml = pytest.importorskip("yaml", reason="PyYAML reads the config back (ray and the export extra bring it)")

MODEL = "HuggingFaceTB/SmolLM2-1.7B-Instruct"
# A router class Serve ships that imports on CPU (ray/serve/experimental/round_robin_router.py), put in the
# place of the prefix-aware one, whose module imports vLLM when Serve's DeploymentConfig loads it.
CPU_ROUTER = "ray.serve.experimental.round_robin_router:RoundRobinRouter"


def ray_source(relative: str) -> Path:
    """A file of the installed ray package, found without importing ray."""
    spec = importlib.util.find_spec("ray")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("ray is not installed (pip install 'caitool[ray]')")
    return Path(next(iter(spec.submodule_search_locations))) / relative


@functools.cache
def serve_import_error() -> str | None:
    """Why `ray.serve.schema` does not import here (None when it does), found in a child process: a failed
    `import ray.serve` leaves a logging filter behind that fails every later log call of this process (a
    missing `grpc_reflection` under ray 2.60 broke two unrelated tests that way)."""
    probe = subprocess.run(
        [sys.executable, "-c", "import ray.serve.schema"], capture_output=True, text=True, timeout=120
    )
    if probe.returncode == 0:
        return None
    lines = probe.stderr.strip().splitlines()
    return lines[-1] if lines else f"exit {probe.returncode}"


def ray_serve_schema() -> Any:
    ray_source("serve/schema.py")
    if (why := serve_import_error()) is not None:  # ray.serve needs ray[serve]'s web and gRPC stack
        pytest.skip(f"ray.serve is not importable here ({why}); the dev extra installs what it needs")
    from ray.serve.schema import ServeDeploySchema

    return ServeDeploySchema


def ray_llm_config() -> Any:
    ray_serve_schema()
    try:
        from ray.llm._internal.serve.core.configs.llm_config import LLMConfig
    except ImportError as exc:
        pytest.skip(f"Ray's LLMConfig is not importable here: {exc}")
    return LLMConfig


def write_config(tmp_path: Path, *args: str, fmt: str = "yaml") -> tuple[dict[str, Any], str]:
    out = tmp_path / f"serve.{fmt}"
    result = run_cli("serve-config", MODEL, "-o", str(out), "--format", fmt, *args)
    assert result.returncode == 0, result.stderr
    text = out.read_text(encoding="utf-8")
    return (yaml.safe_load(text) if fmt == "yaml" else json.loads(text)), result.stderr


def test_the_written_file_is_a_valid_serve_deploy_config(tmp_path: Path) -> None:
    schema = ray_serve_schema()
    config, _ = write_config(tmp_path, "--replicas", "4", "--name", "smol", "--route-prefix", "/llm")
    parsed = schema.model_validate(config)
    assert parsed.http_options.host == "0.0.0.0" and parsed.http_options.port == 8000
    (app,) = parsed.applications
    assert (app.import_path, app.route_prefix) == (BUILDER, "/llm")
    json_config, _ = write_config(
        tmp_path, "--replicas", "4", "--name", "smol", "--route-prefix", "/llm", fmt="json"
    )
    assert json_config == config
    schema.model_validate(json_config)


def test_the_schema_check_can_fail() -> None:
    schema = ray_serve_schema()
    config = serve_config(ServeSpec(MODEL))
    config["applications"][0]["port"] = 8000  # a multi-application config sets it in http_options only
    with pytest.raises(ValueError, match="top level deploy config"):
        schema.model_validate(config)
    del config["applications"][0]["import_path"]
    with pytest.raises(ValueError, match="import_path"):
        schema.model_validate(config)
    llm_config = ray_llm_config()
    entry = serve_config(ServeSpec(MODEL, prefix_router=False))["applications"][0]["args"]["llm_configs"][0]
    entry["model_loading"] = entry.pop("model_loading_config")
    with pytest.raises(ValueError, match="model_loading"):
        llm_config.model_validate(entry)


def llm_entries(config: dict[str, Any]) -> list[dict[str, Any]]:
    (app,) = config["applications"]
    assert set(app["args"]) == {"llm_configs"}  # LLMServingArgs' other fields keep their defaults
    entries: list[dict[str, Any]] = app["args"]["llm_configs"]
    return entries


def test_each_llm_config_validates_as_rays_llm_config(tmp_path: Path) -> None:
    llm_config = ray_llm_config()
    config, _ = write_config(
        tmp_path, "--replicas", "3", "--gpus-per-replica", "2", "--max-model-len", "8192",
        "--accelerator-type", "H100", "--no-prefix-router",
    )  # fmt: skip
    (entry,) = llm_entries(config)
    parsed = llm_config.model_validate(entry)
    assert (parsed.model_loading_config.model_id, parsed.model_loading_config.model_source) == (MODEL, MODEL)
    assert parsed.deployment_config["autoscaling_config"] == {"min_replicas": 3, "max_replicas": 3}
    assert "request_router_config" not in parsed.deployment_config
    assert parsed.accelerator_type == "H100"
    assert parsed.engine_kwargs == {
        "max_logprobs": MAX_LOGPROBS,
        "enable_prefix_caching": True,
        "tensor_parallel_size": 2,
        "max_model_len": 8192,
    }
    assert MAX_LOGPROBS >= 20  # label-pairs asks for the top 20


def test_the_prefix_router_config_has_serves_shape(tmp_path: Path) -> None:
    llm_config = ray_llm_config()
    config, _ = write_config(tmp_path, "--replicas", "2")
    (entry,) = llm_entries(config)
    router = entry["deployment_config"]["request_router_config"]
    assert router == {"request_router_class": PREFIX_ROUTER}
    router["request_router_class"] = CPU_ROUTER  # see the module docstring: the real one needs vLLM to load
    parsed = llm_config.model_validate(entry)
    assert parsed.deployment_config["autoscaling_config"] == {"min_replicas": 2, "max_replicas": 2}


def defined_names(path: Path) -> dict[str, ast.AST]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    return {
        node.name: node
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
    }


@pytest.mark.parametrize("import_path", [BUILDER, PREFIX_ROUTER])
def test_the_import_paths_resolve_in_the_installed_ray(import_path: str) -> None:
    module, _, name = import_path.partition(":")
    package = ray_source(str(Path(*module.split(".")[1:])))
    source = package / "__init__.py" if package.is_dir() else package.with_suffix(".py")
    assert source.exists(), f"{module} is not in the installed ray"
    assert name in defined_names(source), f"{name} is not defined in {source}"
    if name == "build_openai_app":  # Serve calls it with the app's `args` as its one argument
        node = defined_names(source)[name]
        assert isinstance(node, ast.FunctionDef) and len(node.args.args) == 1
    if importlib.util.find_spec("vllm") is not None:  # where ray[llm] is installed, import it for real
        assert callable(getattr(importlib.import_module(module), name))


def test_the_command_prints_where_to_point_caitool(tmp_path: Path) -> None:
    _, stderr = write_config(tmp_path, "--name", "smol", "--route-prefix", "/llm", "--port", "9000")
    assert "--base-url http://HOST:9000/llm/v1 -m vllm/smol" in stderr
    assert f"serve run {tmp_path / 'serve.yaml'}" in stderr
    stdout = run_cli("serve-config", MODEL, "-q")
    assert stdout.returncode == 0 and stdout.stderr == ""
    assert yaml.safe_load(stdout.stdout) == serve_config(ServeSpec(MODEL))


@pytest.mark.parametrize(
    "args",
    [
        ["--route-prefix", "llm"],
        ["--route-prefix", "/llm/"],
        ["--format", "toml"],
        ["--replicas", "0"],
        ["--name", " "],
    ],
)
def test_bad_flags_exit_2(args: list[str]) -> None:
    result = run_cli("serve-config", MODEL, *args)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""


def test_an_existing_file_is_kept_unless_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "serve.yaml"
    out.write_text("# my edits\n", encoding="utf-8")
    refused = run_cli("serve-config", MODEL, "-o", str(out))
    assert refused.returncode == 2 and "--overwrite" in refused.stderr
    assert out.read_text(encoding="utf-8") == "# my edits\n"
    assert run_cli("serve-config", MODEL, "-o", str(out), "--overwrite").returncode == 0
    assert yaml.safe_load(out.read_text(encoding="utf-8")) == serve_config(ServeSpec(MODEL))
    assert [p.name for p in tmp_path.iterdir()] == ["serve.yaml"]  # no temporary file left


scalars = st.one_of(st.text(), st.integers(), st.booleans(), st.none())
documents = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(st.one_of(scalars, st.dictionaries(st.text(), inner))), st.dictionaries(st.text(), inner)
    ),
    max_leaves=12,
)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text(), documents))
def test_the_yaml_writer_round_trips_through_pyyaml(document: dict[str, Any]) -> None:
    """Model names and paths are the user's: whatever the text, YAML reads back what was meant."""
    assert yaml.safe_load(to_yaml(document)) == (document or None)


def test_a_key_longer_than_yaml_reads_in_plain_form_round_trips() -> None:
    """YAML reads a plain `key: value` key only up to 1024 characters as written; a longer one (a long model
    path, or 200 combining marks escaped six characters each, as Hypothesis found) takes the `? key` form."""
    marks = "o" + "\u0301" * 200
    for document in (
        {marks: "", "short": []},
        {"k" * 2000: {"nested": ["a", {"x" * 1100: None}]}},
        {"p" * 1025: [1, 2]},
    ):
        assert yaml.safe_load(to_yaml(document)) == document
