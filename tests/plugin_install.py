"""Installing one of the test plugin packages (tests/fake_*_plugin) the way a user would, with pip, into a
folder of its own that a test puts on PYTHONPATH: offline, and without touching the test venv."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent


def install_plugin(name: str, workdir: Path) -> str:
    """pip-install tests/`name` into `workdir`/site and return that folder; skip the test if pip cannot."""
    src = workdir / "src"
    shutil.copytree(TESTS / name, src)
    target = workdir / "site"
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target)]
    if importlib.util.find_spec("setuptools") is not None:
        cmd.append("--no-build-isolation")  # offline: build with the setuptools already installed
    cmd.append(str(src))
    pip = subprocess.run(cmd, capture_output=True, text=True)
    if pip.returncode != 0:
        pytest.skip(f"pip could not build the plugin here: {pip.stderr[-300:]}")
    return str(target)
