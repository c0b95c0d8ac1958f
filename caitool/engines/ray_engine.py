"""`--engine ray`: a generating command's records run in Ray actors, each hosting its own in-process engine.

Reads: the command's `RecordTask` and its clients, as the command built them on the driver.
Does: connects to a Ray cluster (`--ray-address`, else $RAY_ADDRESS, else a local one started for the run),
starts `--ray-actors` actors, and hands records to the least busy one. A CPU engine's actors (llama.cpp)
default to one per CPU of the cluster, each given the cluster's CPUs divided among them (llama.cpp runs that
many threads). A GPU engine's actors (vLLM: its client's `actor_gpus` > 0) default to one per `actor_gpus`
GPUs of the cluster, each given that many GPUs and one CPU. Every actor holds a copy
of the task whose clients load their model inside the actor (the embedded SmolLM2, any `local/PATH.gguf`),
and runs caitool's own `task.process` for whole records, multi-round chains included, with the same seeds.
An actor holds as many records at once as its client's `default_concurrency` (1 for llama.cpp, which runs
one request at a time; 64 for vLLM, which batches them), unless --concurrency sets the window.
Writes: nothing. An actor returns a record's rows, the model calls it finished and its call counters to the
driver, whose runner writes them through the same `OutputStore` as a local run.

Why the driver makes rows durable (and not Ray Data's checkpoints plus a merge): the store already gives
every id exactly once, resume by rerunning, the errors file, the steps file and the manifest, and it does so
row by row, where Ray Data's `CheckpointConfig` is at-least-once per block and needs a dedupe afterwards. A
record's rows are a few kB next to seconds of generation, so one writer is not the bottleneck, and the driver
needs no shared storage with the workers.

A node that dies takes its actors with it: their in-flight records fail on the driver with `RayActorError`,
and the driver gives them to the surviving actors (its own re-dispatch, not Ray's actor restarts: a restarted
actor waits for CPUs that a lost node no longer offers, and an actor-task retry runs where the driver cannot
see it). Nothing had been written for those records, and an answer arrives only once per dispatch, so no
record is lost or written twice. A record whose actor died `MAX_LOSSES` times goes to the errors file (it may
be what kills them); with no actor left the run stops (exit 1), and rerunning it resumes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
import logging
import os
import pickle
from collections.abc import Callable, Iterator
from typing import Any

from caitool.console import info
from caitool.errors import CaitoolError, RecordFailed, UsageError
from caitool.pipeline import Process, RunSpec, execute
from caitool.pricing import Price
from caitool.providers.base import current_record
from caitool.retry import CallStats, ResilientClient
from caitool.runner import Job, RunCounts
from caitool.store import OutputStore
from caitool.tasks.base import RecordTask, StepCache

MAX_LOSSES = 3  # actors a record may outlive before it goes to the errors file
READY_TIMEOUT_S = 120.0  # for the actors to be placed and answer once; longer means the cluster lacks CPUs
INSTALL_HINT = 'install Ray: pip install "caitool[ray]"'


def pack(task: RecordTask, clients: list[ResilientClient]) -> tuple[bytes, bytes]:
    """(clients, task) as bytes for the actors. The task refers to its clients by their place in `clients`,
    so an actor knows which of its clients is which and can send back each one's counters."""
    from ray import cloudpickle

    index = {id(c): i for i, c in enumerate(clients)}

    class _Pickler(cloudpickle.CloudPickler):
        def persistent_id(self, obj: Any) -> int | None:
            return index.get(id(obj))

    buf = io.BytesIO()
    try:
        clients_blob = cloudpickle.dumps(clients)
        _Pickler(buf, protocol=pickle.HIGHEST_PROTOCOL).dump(task)
    except (TypeError, pickle.PicklingError, AttributeError) as exc:
        raise UsageError(
            f"--engine ray: this command's model clients cannot be sent to Ray actors ({exc})",
            hint="--engine ray runs in-process engines (local/smollm2, local/PATH.gguf, vllm-engine/MODEL); "
            "for model servers use --base-url (docs/scale.md)",
        ) from None
    return clients_blob, buf.getvalue()


def unpack(clients_blob: bytes, task_blob: bytes) -> tuple[list[ResilientClient], RecordTask]:
    clients: list[ResilientClient] = pickle.loads(clients_blob)

    class _Unpickler(pickle.Unpickler):
        def persistent_load(self, pid: Any) -> Any:
            return clients[pid]

    task: RecordTask = _Unpickler(io.BytesIO(task_blob)).load()
    return clients, task


def _exception_state(exc: BaseException) -> tuple[type[BaseException], tuple[Any, ...], dict[str, Any]]:
    # Rebuilt without calling __init__: ProviderError's keyword-only arguments would not survive pickle's
    # usual `cls(*args)`.
    return type(exc), exc.args, dict(vars(exc))


def _exception(state: tuple[type[BaseException], tuple[Any, ...], dict[str, Any]]) -> BaseException:
    cls, args, attrs = state
    exc = cls.__new__(cls)
    exc.args = args
    exc.__dict__.update(attrs)
    return exc


class RecordActor:
    """One Ray actor: a copy of the task and its clients; its records run on the actor's event loop."""

    def __init__(self, clients_blob: bytes, task_blob: bytes, cpus: int) -> None:
        os.environ["CAITOOL_LOCAL_THREADS"] = str(cpus)  # read when the model loads, on the first record
        self.clients, self.task = unpack(clients_blob, task_blob)

    def node(self) -> str:
        import ray

        return str(ray.get_runtime_context().get_node_id())

    async def process(self, job: Job[Any], steps: dict[str, Any] | None) -> dict[str, Any]:
        """The record's rows, or the exception its task raised, with the model calls it finished (so the
        driver keeps them in the steps file) and each client's counters since the last answer."""
        saved: list[tuple[str, Any]] = []
        cache = StepCache(
            {job.id: steps} if steps else {}, lambda _rid, step, data: saved.append((step, data))
        )
        current_record.set(job.id)
        rows, error = None, None
        try:
            rows = await self.task.process(job, cache)
        except Exception as exc:  # the driver's runner decides, as for a local run: errors file or fatal
            error = _exception_state(exc)
        stats = []
        for c in self.clients:  # swapped, not copied: a concurrent record's calls land in the new counters
            stats.append(c.stats)
            c.stats = CallStats()
        return {"rows": rows, "error": error, "steps": saved, "stats": stats, "node": self.node()}


class RayEngine:
    """The driver's side: the actors, which of them are alive and busy, and what the manifest records."""

    def __init__(self, actors: list[Any], cpus: int, address: str, gpus: int = 0) -> None:
        self.actors = actors
        self.busy = [0] * len(actors)
        self.alive = [True] * len(actors)
        self.per_actor = 1  # records at once on one actor's model; set from the window by execute_on_ray
        self._free = asyncio.Condition()
        # The manifest's "engine": its counters change in place until the manifest's last write.
        self.manifest: dict[str, Any] = {
            "name": "ray",
            "address": address,
            "actors": len(actors),
            "cpus_per_actor": cpus,
            "gpus_per_actor": gpus,
            "actors_lost": 0,
            "resubmitted": 0,
            "records_by_node": {},
        }

    @classmethod
    def start(
        cls, address: str | None, actors: int | None, clients_blob: bytes, task_blob: bytes, gpus: int = 0
    ) -> RayEngine:
        """`gpus`: what one actor's clients need (their largest `actor_gpus`); 0 places actors by CPUs."""
        try:
            import ray
        except ImportError:
            raise UsageError("--engine ray: Ray is not installed", hint=INSTALL_HINT) from None
        try:
            context = ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise UsageError(f"--engine ray: cannot connect to the Ray cluster at {address}: {exc}") from None
        resources = ray.cluster_resources()
        total = int(resources.get("CPU", 0))
        if gpus:
            # Checked before any output file exists: without it the actors would wait for GPUs forever.
            total_gpus = int(resources.get("GPU", 0))
            n = actors or max(1, total_gpus // gpus)
            cpus = 1  # the engine's work is on the GPU; vLLM's own engine process is not Ray's to place
            if n * gpus > total_gpus or n > total:
                ray.shutdown()
                raise UsageError(
                    f"--engine ray: {n} actors of {gpus} GPU(s) each need {n * gpus} GPUs and {n} CPUs; "
                    f"the Ray cluster has {total_gpus} GPUs and {total} CPUs",
                    hint="start the cluster on GPU nodes, lower --ray-actors, or set "
                    "CAITOOL_VLLM_TENSOR_PARALLEL_SIZE to fit a node's GPUs",
                )
        else:
            n = actors or max(1, total)
            cpus = max(1, total // n)
            if n * cpus > total:
                ray.shutdown()
                raise UsageError(
                    f"--ray-actors {n}: the Ray cluster has {total} CPUs, and each actor needs one"
                )
        remote = ray.remote(RecordActor).options(num_cpus=cpus, num_gpus=gpus, max_restarts=0)
        pool = [remote.remote(clients_blob, task_blob, cpus) for _ in range(n)]
        try:
            ray.get([a.node.remote() for a in pool], timeout=READY_TIMEOUT_S)  # type: ignore[attr-defined]
        except ray.exceptions.GetTimeoutError:
            ray.shutdown()
            raise CaitoolError(
                f"--engine ray: {n} actors were not placed within {READY_TIMEOUT_S:.0f} s"
            ) from None
        info_ = getattr(context, "address_info", {})
        return cls(pool, cpus, str(info_.get("address", address or "local")), gpus)

    async def _acquire(self) -> int:
        """A live actor with fewer than `per_actor` records, waiting for one. After a node loss the window
        is not shrunk, so the records beyond the survivors' share wait here rather than share a model."""
        async with self._free:
            while True:
                live = [i for i, ok in enumerate(self.alive) if ok]
                if not live:
                    raise CaitoolError(
                        f"--engine ray: all {len(self.actors)} Ray actors are lost (nodes gone?); "
                        "rerun to resume"
                    )
                idle = [i for i in live if self.busy[i] < self.per_actor]
                if idle:
                    i = min(idle, key=lambda i: self.busy[i])
                    self.busy[i] += 1
                    return i
                await self._free.wait()

    async def _release(self, i: int) -> None:
        async with self._free:
            self.busy[i] -= 1
            self._free.notify_all()

    def _lose(self, i: int) -> None:
        import ray

        if self.alive[i]:
            self.alive[i] = False
            self.manifest["actors_lost"] += 1
            ray.kill(self.actors[i], no_restart=True)  # if it was only unreachable, it must not answer later

    def make_process(self, clients: list[ResilientClient]) -> Callable[[OutputStore], Process]:
        """`pipeline.execute`'s `make_process`: each record goes to an actor, and comes back to the store."""
        import ray

        def make(store: OutputStore) -> Process:
            async def process(job: Job[Any]) -> list[dict[str, Any]]:
                steps = store.steps.get(job.id)
                losses = 0
                while True:
                    i = await self._acquire()
                    try:
                        out: dict[str, Any] = await self.actors[i].process.remote(job, steps)
                        break
                    except ray.exceptions.RayActorError:
                        self._lose(i)
                        losses += 1
                        if losses >= MAX_LOSSES:
                            raise RecordFailed(
                                f"its Ray actor died {losses} times", {"engine": "ray"}
                            ) from None
                        self.manifest["resubmitted"] += 1
                    finally:
                        await self._release(i)
                for step, data in out["steps"]:
                    store.save_step(job.id, step, data)
                for client, stats in zip(clients, out["stats"], strict=True):
                    client.stats.add(stats)
                by_node = self.manifest["records_by_node"]
                by_node[out["node"]] = by_node.get(out["node"], 0) + 1
                if out["error"] is not None:
                    raise _exception(out["error"])
                rows: list[dict[str, Any]] = out["rows"]
                return rows

            return process

        return make

    def stop(self) -> None:
        import ray

        ray.shutdown()  # the actors belong to this driver and end with it


def execute_on_ray(
    run_spec: RunSpec,
    jobs: Iterator[Job[Any]],
    task: RecordTask,
    clients: list[ResilientClient],
    *,
    price: Price | None,
    counts: RunCounts,
    address: str | None,
    actors: int | None,
    window: int | None,
) -> int:
    """`pipeline.execute` with the records run by Ray actors; the same files, resume and exit codes.
    `window`: records in flight (--concurrency); by default the task's model's `default_concurrency` per
    actor: one for llama.cpp, so that no actor interleaves two records on its model (a record's text then
    depends on its seed only, as in a local run at -c 1); many for vLLM, whose batches they fill."""
    clients_blob, task_blob = pack(task, clients)
    gpus = max((c.actor_gpus for c in clients), default=0)
    engine = RayEngine.start(address, actors, clients_blob, task_blob, gpus)
    try:
        per_actor = clients[0].default_concurrency if clients else 1
        window = window or len(engine.actors) * max(1, per_actor)
        engine.per_actor = -(-window // len(engine.actors))  # ceil
        run_spec = dataclasses.replace(
            run_spec,
            concurrency=window,
            extra_manifest={**run_spec.extra_manifest, "engine": engine.manifest},
        )
        return execute(run_spec, jobs, engine.make_process(clients), clients, price=price, counts=counts)
    finally:
        engine.stop()
        m = engine.manifest
        lost = (
            f"; {m['actors_lost']} lost, {m['resubmitted']} records resubmitted" if m["actors_lost"] else ""
        )
        per = f"{m['gpus_per_actor']} GPUs" if m["gpus_per_actor"] else f"{m['cpus_per_actor']} CPUs"
        info(
            f"ray: {m['actors']} actors x {per} at {m['address']}{lost}",
            quiet=run_spec.quiet,
        )
