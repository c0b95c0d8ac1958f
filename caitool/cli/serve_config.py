"""`caitool serve-config`: a Ray Serve LLM config for N vLLM replicas of a model
(`caitool.engines.serve_config`)."""

from __future__ import annotations

from typing import Annotated

import typer

from caitool.cli import app
from caitool.cli._options import QuietOpt


@app.command("serve-config")
def serve_config(
    model: Annotated[
        str, typer.Argument(help="The weights: a Hugging Face model id, or a path that exists on every node.")
    ],
    replicas: Annotated[
        int, typer.Option("--replicas", min=1, help="vLLM replicas (a fixed count: autoscaling min = max).")
    ] = 1,
    name: Annotated[
        str | None,
        typer.Option("--name", help="The model id the server answers to (-m vllm/NAME). Default: MODEL."),
    ] = None,
    gpus_per_replica: Annotated[
        int, typer.Option("--gpus-per-replica", min=1, help="GPUs per replica (vLLM tensor_parallel_size).")
    ] = 1,
    max_model_len: Annotated[
        int | None,
        typer.Option("--max-model-len", min=1, help="vLLM's max_model_len (default: the model's)."),
    ] = None,
    accelerator_type: Annotated[
        str | None,
        typer.Option("--accelerator-type", help="Ray accelerator type the replicas need, e.g. H100, A10G."),
    ] = None,
    route_prefix: Annotated[
        str, typer.Option("--route-prefix", help="HTTP route of the app; the OpenAI API is under ROUTE/v1.")
    ] = "/",
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Serve's HTTP port.")] = 8000,
    prefix_router: Annotated[
        bool,
        typer.Option(
            "--prefix-router/--no-prefix-router",
            help="Ray's prefix-aware router: a chain's requests go to the replica holding its prefix.",
        ),
    ] = True,
    fmt: Annotated[str, typer.Option("--format", help="yaml or json.")] = "yaml",
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="Config file to write (default: stdout).")
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace OUTPUT if it exists.")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Write a Ray Serve config for REPLICAS vLLM replicas of MODEL behind one OpenAI-compatible URL
    (ray.serve.llm:build_openai_app), with top-20 log-probs and prefix caching on. Runs nothing: start it with
    `serve run FILE` (or `serve deploy FILE`) where `ray\\[llm]` is installed, then point caitool at it."""
    import sys

    from caitool.console import info
    from caitool.engines.serve_config import ServeSpec, base_url, render, write
    from caitool.engines.serve_config import serve_config as build
    from caitool.errors import ConsumerGone, UsageError

    if fmt not in ("yaml", "json"):
        raise UsageError(f"serve-config: --format must be yaml or json, got {fmt!r}")
    spec = ServeSpec(
        model=model,
        model_id=name,
        replicas=replicas,
        gpus_per_replica=gpus_per_replica,
        max_model_len=max_model_len,
        accelerator_type=accelerator_type,
        route_prefix=route_prefix,
        port=port,
        prefix_router=prefix_router,
    )
    text = render(build(spec), fmt)
    if output is None:
        try:
            sys.stdout.write(text)
            sys.stdout.flush()
        except BrokenPipeError:
            raise ConsumerGone("output closed by the reader") from None
    else:
        write(text, output, overwrite=overwrite)
    where = output or "FILE"
    info(
        f"serve-config: start it with `serve run {where}` (ray[llm] on the cluster), then:\n"
        f"  caitool ... --base-url {base_url(spec)} -m vllm/{spec.served_id}",
        quiet=quiet,
    )
