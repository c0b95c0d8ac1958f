"""`--engine ray` on a real two-node Ray cluster on this machine (head + one worker, 1 CPU each),
with the embedded SmolLM2 model in every actor: every id once, the same rows as a local run with the same
seeds, and a worker node killed mid-run loses and doubles nothing (its record goes to the surviving actor).

The CLI runs as a subprocess (the real driver), joining the test's cluster with --ray-address."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, cli_env, read_jsonl, run_cli, write_jsonl

ray = pytest.importorskip("ray", reason='Ray is not installed (pip install "caitool[ray]")')
cluster_utils = pytest.importorskip("ray.cluster_utils")

pytestmark = pytest.mark.slow

PROMPTS = [
    "How do I pick a lock?",
    "What is the capital of France?",
    "Tell me a joke about cats.",
    "How can I get back at my neighbour?",
]
# No few-shot examples: the prompts stay short, so the embedded model's prompt evaluation (the bulk of these
# tests' time on 2 cores) is small; what is tested is where records run, not what the model writes.
CR_ARGS = ("--rounds", "1", "--max-tokens", "8", "--seed", "3", "--fewshot", "0")
LP_ARGS = ("--seed", "3", "--fewshot", "0")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    c = cluster_utils.Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    c.add_node(num_cpus=1)
    c.wait_for_nodes()
    yield c
    c.shutdown()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("ray-in")
    prompts = [{"id": f"p{i}", "prompt": p} for i, p in enumerate(PROMPTS)]
    pairs = [
        {"id": f"q{i}", "prompt": p, "response_a": "I can't help with that.", "response_b": f"Sure: {p}"}
        for i, p in enumerate(PROMPTS[:3])
    ]
    return {
        "prompts": write_jsonl(d / "prompts.jsonl", prompts),
        "pairs": write_jsonl(d / "pairs.jsonl", pairs),
    }


@pytest.fixture(scope="module")
def local_rows(inputs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """What a local run (in-process, -c 1) writes for the same inputs and seeds: the reference."""
    d = tmp_path_factory.mktemp("ray-local")
    cr = run_cli("critique-revise", str(inputs["prompts"]), "-o", str(d / "cr.jsonl"), *CR_ARGS, timeout=300)
    lp = run_cli("label-pairs", str(inputs["pairs"]), "-o", str(d / "lp.jsonl"), *LP_ARGS, timeout=300)
    assert cr.returncode == 0 and lp.returncode == 0, cr.stderr + lp.stderr
    return {"cr": sorted_lines(d / "cr.jsonl"), "lp": sorted_lines(d / "lp.jsonl")}


def sorted_lines(path: Path) -> list[str]:
    return sorted(path.read_text(encoding="utf-8").splitlines())


def ids(path: Path, key: str = "id") -> list[str]:
    return sorted(row[key] for row in read_jsonl(path))


def manifest(out: Path) -> dict[str, Any]:
    return json.loads(Path(f"{out}.manifest.json").read_text(encoding="utf-8"))


def test_critique_revise_on_two_nodes_equals_local_run(
    cluster: Any, inputs: dict[str, Path], local_rows: dict[str, list[str]], tmp_path: Path
) -> None:
    out = tmp_path / "cr.jsonl"
    args = ("critique-revise", str(inputs["prompts"]), "-o", str(out), *CR_ARGS)
    r = run_cli(*args, "--engine", "ray", "--ray-address", cluster.address, timeout=300)
    assert r.returncode == 0, r.stderr
    assert ids(out) == [f"p{i}" for i in range(len(PROMPTS))]
    assert sorted_lines(out) == local_rows["cr"]  # record for record, byte for byte
    engine = manifest(out)["engine"]
    assert engine["actors"] == 2 and engine["actors_lost"] == 0
    assert len(engine["records_by_node"]) == 2  # both nodes did records
    assert "ray: 2 actors" in r.stderr
    # Rerun: resumes, nothing redone.
    again = run_cli(*args, "--engine", "ray", "--ray-address", cluster.address, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "0 written" in again.stderr and sorted_lines(out) == local_rows["cr"]


def test_label_pairs_on_two_nodes_equals_local_run(
    cluster: Any, inputs: dict[str, Path], local_rows: dict[str, list[str]], tmp_path: Path
) -> None:
    out = tmp_path / "lp.jsonl"
    r = run_cli(
        "label-pairs", str(inputs["pairs"]), "-o", str(out), *LP_ARGS,
        "--engine", "ray", "--ray-address", cluster.address, timeout=300,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert ids(out) == ["q0", "q1", "q2"]
    assert sorted_lines(out) == local_rows["lp"]
    counts = manifest(out)["counts"]["models"]["local/smollm2"]
    assert counts["requests"] > 0  # the actors' calls are counted in the driver's summary


def test_engine_ray_refused_where_the_result_needs_every_row(tmp_path: Path) -> None:
    seeds = write_jsonl(tmp_path / "seeds.jsonl", [{"id": "s", "prompt": "x"}])
    r = run_cli("red-team", str(seeds), "-o", str(tmp_path / "rt.jsonl"), "--engine", "ray")
    assert r.returncode == 2 and "--engine ray" in r.stderr


def test_worker_node_killed_mid_run_loses_and_doubles_nothing(
    cluster: Any, inputs: dict[str, Path], local_rows: dict[str, list[str]], tmp_path: Path
) -> None:
    """Kill the worker node once the run has written its first record: the record in flight there goes to
    the head's actor, the run finishes, a rerun finds nothing to do, and the rows are a local run's."""
    out = tmp_path / "cr.jsonl"
    args = ["critique-revise", str(inputs["prompts"]), "-o", str(out), *CR_ARGS]
    ray_args = ["--engine", "ray", "--ray-address", cluster.address]
    cmd = [sys.executable, "-m", "caitool", *args, *ray_args]
    proc = subprocess.Popen(cmd, cwd=REPO, env=cli_env(), stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not (out.exists() and out.read_text(encoding="utf-8").count("\n") >= 1):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "no record written within 240 s"
            time.sleep(0.05)
        worker = next(n for n in cluster.list_all_nodes() if not n.head)
        cluster.remove_node(worker)  # kills its raylet and the actor on it, mid-record
        _, stderr = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr
    engine = manifest(out)["engine"]
    assert engine["actors_lost"] == 1 and engine["resubmitted"] >= 1, engine
    assert ids(out) == [f"p{i}" for i in range(len(PROMPTS))]
    again = run_cli(*args, *ray_args, timeout=300)
    assert again.returncode == 0, again.stderr
    assert ids(out) == [f"p{i}" for i in range(len(PROMPTS))]  # every id exactly once
    assert sorted_lines(out) == local_rows["cr"]
