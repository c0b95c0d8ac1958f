"""examples/pipeline.sh: the whole pipeline (embedded SmolLM2 for data, a tiny model for training) runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, cli_env

pytest.importorskip("llama_cpp")
pytest.importorskip("trl")


@pytest.mark.slow
def test_example_pipeline_runs_end_to_end(tmp_path: Path) -> None:
    bin_dir = str(Path(sys.executable).parent)
    env = cli_env(PATH=bin_dir + os.pathsep + os.environ.get("PATH", ""), PYTHON=sys.executable)
    r = subprocess.run(
        ["bash", str(REPO / "examples" / "pipeline.sh"), str(tmp_path / "w")],
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    w = tmp_path / "w"
    for stage, command in (("sft", "sft"), ("pm", "train-pm"), ("rl", "rl")):
        manifest = json.loads((w / stage / "caitool-manifest.json").read_text())
        assert manifest["command"] == command
    assert json.loads((w / "rl" / "caitool-manifest.json").read_text())["reward_model"] == str(w / "pm")
    prefs = [json.loads(line) for line in (w / "prefs.jsonl").read_text().splitlines()]
    assert len(prefs) == 4 and all(p["caitool"]["label_source"] == "logprobs" for p in prefs)
    assert (w / "pm" / "metrics.json").exists()
