"""A non-editable install finds its data: principles/ and prompts/ ship inside the wheel."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO, cli_env


@pytest.mark.slow
def test_wheel_install_lists_the_papers_principles(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(REPO)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = wheels.glob("caitool-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "caitool/_data/principles/anthropic-cai-2022.toml" in names
    assert "caitool/_data/prompts/critique_revise.toml" in names

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", str(wheel)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert pip.returncode == 0, pip.stderr
    # Run from an unrelated directory so nothing can come from the source checkout.
    r = subprocess.run(
        [str(venv / "bin" / "caitool"), "principles", "list"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=cli_env(),
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert "harmful0" in r.stdout and "harmful15" in r.stdout and "compare16" in r.stdout
    r = subprocess.run(
        [
            str(venv / "bin" / "caitool"),
            "critique-revise",
            "-",
            "--dry-run",
            "--model",
            "openai/x",
            "--base-url",
            "http://127.0.0.1:9/v1",
        ],
        input='{"prompt": "hi"}\n',
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=cli_env(),
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    assert "round 1 critique" in r.stdout
