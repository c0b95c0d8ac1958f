"""One data-generation run from the shell's point of view: files, resume, progress, summary, exit code.

Commands (critique-revise, label-pairs, ...) describe their run with a `RunSpec` and hand over their jobs and
their per-record `process`; this module owns everything they share: the output store and its resume rules,
the manifest, progress and the closing summary on stderr, SIGINT/SIGTERM, and the exit code (0 all done,
3 some records failed, 130 interrupted; fatal errors propagate as `CaitoolError`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import json
import platform
import re
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from caitool import __version__
from caitool.budget import Budget
from caitool.console import RunProgress, info
from caitool.errors import EXIT_BUDGET, EXIT_INTERRUPTED, EXIT_OK, EXIT_PARTIAL, CaitoolError, ConsumerGone
from caitool.inputs import check_input
from caitool.pricing import Price, cost_by_tier, total_cost
from caitool.providers._http import redact
from caitool.retry import ResilientClient, stats_by_spec
from caitool.runner import Job, RunCounts, run_jobs
from caitool.store import OutputStore, RunFiles, refuse_aliases

Process = Callable[[Job[Any]], Awaitable[list[dict[str, Any]]]]


@dataclass
class RunSpec:
    command: str
    input: str
    output: str | None
    settings: dict[str, Any]  # everything that changes the output: fingerprinted, and refused on a mismatch
    errors: str | None = None
    concurrency: int = 8
    limit: int | None = None
    quiet: bool = False
    overwrite: bool = False
    total: int | None = None
    id_key: str = "id"
    extra_manifest: dict[str, Any] = field(default_factory=dict)

    def fingerprint(self) -> str:
        blob = json.dumps({"command": self.command, **self.settings}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:20]


# Flags whose value is a credential (--api-key, and any plugin's --*-key/--*-token/--*-secret/--*-password).
_SECRET_FLAG = re.compile(r"^--[\w-]*(?:key|token|secret|password)$")


def redact_argv(argv: list[str]) -> list[str]:
    """The command line as the manifest records it: credential values and URL user-info replaced by ***."""
    out: list[str] = []
    hide_next = False
    for arg in argv:
        if hide_next:
            out.append("***")
            hide_next = False
            continue
        flag, eq, _ = arg.partition("=")
        if _SECRET_FLAG.match(flag):
            out.append(f"{flag}=***" if eq else arg)
            hide_next = not eq
            continue
        out.append(redact(arg))
    return out


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"caitool": __version__, "python": platform.python_version()}
    for pkg in ("openai", "anthropic", "llama-cpp-python"):
        with contextlib.suppress(PackageNotFoundError):
            out[pkg] = version(pkg)
    return out


def _usd(cost: float | None) -> float | None:
    return None if cost is None else round(cost, 6)


def _summary(
    run: RunSpec, counts: RunCounts, clients: list[ResilientClient], price: Price | None
) -> dict[str, Any]:
    out: dict[str, Any] = counts.to_dict()
    for model_spec, s in stats_by_spec(clients).items():  # a spec used by two clients adds up
        total = total_cost(price, s.usage_by_tier)
        costs = cost_by_tier(price, s.usage_by_tier)
        out.setdefault("models", {})[model_spec] = {
            "requests": s.requests,
            "attempts": s.attempts,
            "retries": s.retries,
            "rate_limited": s.rate_limited,
            "failed_requests": s.failures,
            **s.usage.to_dict(),
            "cost_usd": _usd(total),
            # Tokens and USD per cost tier (a flex run that fell back has both flex and standard).
            "by_tier": {
                tier: {**u.to_dict(), "cost_usd": _usd(costs[tier])} for tier, u in s.usage_by_tier.items()
            },
        }
        if s.flex_unavailable:
            out["models"][model_spec]["flex_unavailable"] = s.flex_unavailable
        if s.cache_hits:  # answered from --cache: not sent, not paid
            out["models"][model_spec]["cache_hits"] = s.cache_hits
    for c in clients:  # a flex run that switched to standard after --flex-fallback N answers
        if c.fell_back:
            out["models"][c.spec]["flex_fallback"] = {"after": c.flex_fallback, "fell_back": True}
    for c in clients:  # an endpoint fleet: requests, errors and latency per endpoint
        if (endpoint_stats := getattr(c, "endpoint_stats", None)) is not None:
            out["models"][c.spec].setdefault("endpoints", {}).update(endpoint_stats())
    return out


def _tier_part(tier: str, m: dict[str, Any]) -> str:
    tok = m["input_tokens"] + m["output_tokens"]
    return f"{tier} {tok:,} tokens" + ("" if m["cost_usd"] is None else f" ${m['cost_usd']:.4f}")


def _print_summary(run: RunSpec, status: str, summary: dict[str, Any], files: RunFiles) -> None:
    if run.quiet:
        return
    parts = [f"{run.command}: {status}", f"{summary['done']} written"]
    if summary["resumed"]:
        parts.append(f"{summary['resumed']} already done")
    if summary["failed"]:
        parts.append(f"{summary['failed']} failed" + (f" (see {files.errors})" if files.errors else ""))
    if summary["duplicates"]:
        parts.append(f"{summary['duplicates']} duplicate ids skipped")
    if summary["rejected"]:
        parts.append(f"{summary['rejected']} bad input lines skipped")
    parts.append(f"{summary['seconds']:.1f}s")
    for model_spec, m in summary.get("models", {}).items():
        tok = m["input_tokens"] + m["output_tokens"]
        cost = f", ${m['cost_usd']:.4f}" if m["cost_usd"] is not None else ""
        # After a resume the counts are this run's requests only (the earlier runs' are in their summaries).
        scope = "this run: " if summary["resumed"] else ""
        calls = f"{m['attempts']} calls ({m['retries']} retries)"
        if m.get("cache_hits"):
            calls += f", {m['cache_hits']} answers from --cache ($0)"
        tiers = m.get("by_tier", {})
        if set(tiers) - {"standard"}:  # name the tiers when any is not standard (a fallback has two)
            cost += " (" + ", ".join(_tier_part(t, x) for t, x in tiers.items()) + ")"
        cached = m.get("cached_input_tokens", 0)
        share = f" ({cached / m['input_tokens']:.0%} of input from the prompt cache)" if cached else ""
        parts.append(f"{model_spec}: {scope}{calls}, {tok:,} tokens{share}{cost}")
        if (fallback := m.get("flex_fallback")) is not None:
            parts.append(f"fell back from flex to standard after {fallback['after']} unavailable answers")
        for url, e in m.get("endpoints", {}).items():
            lat = e["latency_ms"]["p50"]
            parts.append(f"{url}: {e['requests']} requests, {e['errors']} errors, p50 {lat} ms")
    info("; ".join(parts), style="dim")


def execute(
    run: RunSpec,
    jobs: Iterator[Job[Any]],
    make_process: Callable[[OutputStore], Process],
    clients: list[ResilientClient],
    *,
    price: Price | None = None,
    counts: RunCounts | None = None,
    budget: Budget | None = None,
) -> int:
    files = RunFiles.for_output(run.output, run.errors)
    # Before any file is created or truncated: a missing input leaves nothing behind, and no file of the run
    # may be the input or another file of the run.
    check_input(run.input)
    refuse_aliases({"the input": run.input, **files.roles()})
    manifest = {
        "command": run.command,
        "input": run.input,
        "output": run.output or "-",
        "settings": {k: redact(v) if isinstance(v, str) else v for k, v in run.settings.items()},
        "versions": versions(),
        "argv": redact_argv(sys.argv[1:]),
        **run.extra_manifest,
    }
    store = OutputStore(files, run.fingerprint(), manifest, overwrite=run.overwrite, id_key=run.id_key)
    store.open()
    if store.repaired_bytes:
        info(
            f"repaired a torn last line ({store.repaired_bytes} bytes) in {files.output}",
            quiet=run.quiet,
            style="yellow",
        )
    if store.done_rebuilt:
        info(
            f"{files.output} was changed outside caitool: its records were read again from its rows",
            quiet=run.quiet,
        )
    if store.done:
        info(f"resuming: {len(store.done)} records already in {files.output}", quiet=run.quiet)
    counts = counts or RunCounts()
    total = run.total if run.limit is None else min(run.total or run.limit, run.limit)
    counts.total = total
    status = "interrupted"
    failure: BaseException | None = None
    try:
        with RunProgress(run.command, total, quiet=run.quiet) as progress:

            def on_progress(c: RunCounts) -> None:
                tokens = sum(x.stats.usage.input_tokens + x.stats.usage.output_tokens for x in clients)
                costs = [total_cost(price, x.stats.usage_by_tier) for x in clients]
                cost = None if None in costs else sum(c for c in costs if c is not None)
                progress.update(c.done + c.resumed + c.failed, tokens=tokens, cost=cost, failed=c.failed)

            # Everything alive now (modules, constitution, templates, the resumed id set) lives for the whole
            # run: frozen, the cycle collector's full passes skip it instead of rescanning it every few
            # thousand requests.
            gc.freeze()
            asyncio.run(_run(jobs, make_process(store), store, run, counts, on_progress, clients))
        status = "partial" if counts.failed else "complete"
        if budget is not None and budget.stopped:
            status = "stopped at --max-cost"
    except (KeyboardInterrupt, asyncio.CancelledError):
        status = "interrupted"
    except ConsumerGone as exc:
        status, failure = "reader closed", exc
        raise
    except BaseException as exc:
        status, failure = "failed", exc
        raise
    finally:
        summary = _summary(run, counts, clients, price)
        if budget is not None:
            summary["budget"] = budget.summary()
        try:
            store.close(status=status, counts=summary, resumable_left=status != "complete")
        except CaitoolError as close_error:
            if failure is None:
                raise
            # The run's own error (a full disk, say) is the one to report; closing then often fails the
            # same way, and must not hide it.
            info(f"also: {close_error}", quiet=run.quiet)
        _print_summary(run, status, summary, files)
    if status == "interrupted":
        info("interrupted: rerun the same command to resume", quiet=run.quiet)
        return EXIT_INTERRUPTED
    if budget is not None and budget.stopped:
        b = summary["budget"]
        info(
            f"stopped at --max-cost ${b['max_cost_usd']:g}: ${b['spent_usd']:.4f} spent; the next record "
            "could have crossed it; rerun (with a larger --max-cost) to resume",
            quiet=run.quiet,
        )
        return EXIT_BUDGET
    return EXIT_PARTIAL if counts.failed else EXIT_OK


async def _run(
    jobs: Iterator[Job[Any]],
    process: Process,
    store: OutputStore,
    run: RunSpec,
    counts: RunCounts,
    on_progress: Callable[[RunCounts], None],
    clients: list[ResilientClient],
) -> None:
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    if main is not None:
        # SIGTERM (a scheduler's stop) ends the run like Ctrl-C: in-flight records are dropped, files closed.
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGTERM, main.cancel)
    try:
        await run_jobs(
            jobs,
            process,
            store,
            concurrency=run.concurrency,
            limit=run.limit,
            counts=counts,
            on_progress=on_progress,
        )
    finally:
        for c in clients:
            await c.aclose()
