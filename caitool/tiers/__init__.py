"""Cost tiers: how a run's requests are sent and billed, never what they return.

`standard` and `flex` are live requests (flex is OpenAI's `service_tier`, set per attempt by `caitool.retry`).
`batch` sends them through a provider's batch API at half price: `batch_client` wraps a provider's client in
a `BatchClient` (`caitool.tiers.batch`), which `caitool.retry.ResilientClient` then wraps like any other, so
the commands, the runner and the retry layer do not change. Its ledgers live beside the output
(`caitool.tiers.ledger`); `caitool batches` reads them.
"""

from __future__ import annotations

import os
from typing import Any

from caitool.errors import UsageError
from caitool.store import RunFiles
from caitool.tiers.backends import AnthropicBatches, Backend, FolderBatches, OpenAIBatches
from caitool.tiers.batch import BatchClient, BatchSettings


def batch_backend(provider: Any) -> Backend:
    """The batch API of a provider's client, from the capability it declares (`batch_api`); with
    $CAITOOL_BATCH_DIR, a folder of OpenAI batch files instead (for `vllm run-batch`)."""
    kind = getattr(provider, "batch_api", None)
    if kind == "openai" and os.environ.get("CAITOOL_BATCH_DIR"):
        return FolderBatches(os.environ["CAITOOL_BATCH_DIR"])
    if kind == "openai":
        return OpenAIBatches(provider.batch_sdk(), provider.redact)
    if kind == "anthropic":
        return AnthropicBatches(provider.batch_sdk(), provider.redact)
    raise UsageError(
        f"--tier batch: {provider.spec} has no batch API here (OpenAI's Batch API on openai/ and other "
        "OpenAI-protocol models with one --base-url, or Anthropic's Message Batches)",
        hint="use --tier standard or --tier flex",
    )


def warn_uncollected(spec: str, output: str | None) -> None:
    """A run on another tier leaves a batch run's unfinished batches uncollected (their requests are sent
    again, live): say so, before anything is sent, so the user can rerun with --tier batch instead."""
    from caitool.console import warn
    from caitool.tiers.ledger import read_ledger

    path = RunFiles.for_output(output).batches
    if path is None or not path.exists():
        return
    waiting = [
        e for e in read_ledger(path) if e.intent.get("spec") == spec and not (e.ingested or e.abandoned)
    ]
    if waiting:
        n = sum(int(e.intent.get("n", 0)) for e in waiting)
        warn(
            f"{path}: {len(waiting)} batches of {spec} ({n} requests) were sent and not collected; this "
            "run sends what they answer again, at this tier's price (stop, and rerun with --tier batch to "
            "collect them)"
        )


def batch_client(provider: Any, output: str | None) -> BatchClient:
    """`provider`'s requests through its batch API, with the ledgers beside `output` (in memory only for
    stdout, where there is no resume)."""
    backend = batch_backend(provider)
    files = RunFiles.for_output(output)
    return BatchClient(
        provider,
        backend,
        ledger=files.batches,
        results=files.batch_results,
        settings=BatchSettings.from_env(backend.limits),
    )


__all__ = ["BatchClient", "BatchSettings", "batch_backend", "batch_client", "warn_uncollected"]
