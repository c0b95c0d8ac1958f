"""The OpenRLHF commands caitool writes use only flags that exist in the pinned OpenRLHF's parsers.

OpenRLHF cannot be imported here (flash-attn and deepspeed need CUDA), so its wheel is installed with
`pip install --no-deps openrlhf==<PINNED>` (the Makefile's dev setup does it) and each CLI script's
`add_argument(...)` calls are read from source with `ast`. The reader below is the test's own, independent of
the one caitool uses to validate `--config` flags.

An older, underscore-style release can be checked too: put its wheel in a folder and point
CAITOOL_OPENRLHF_WHEELS at it (e.g. `pip download --no-deps openrlhf==0.10.1 -d DIR`).
"""

from __future__ import annotations

import ast
import importlib.util
import itertools
import json
import os
import shlex
import subprocess
import sys
import zipfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pytest

from caitool.errors import ConfigError, UsageError
from caitool.trainers.base import TrainJob
from caitool.trainers.openrlhf import PINNED, OpenRLHFBackend, parser_flags
from tests.trainer_fixtures import pair_rows, prompt_rows, sft_rows_keep_rounds, write_jsonl

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = ("train_sft", "train_rm", "train_dpo", "train_ppo_ray")


def add_argument_flags(source: str) -> set[str]:
    """`--flags` of every add_argument call; f-strings inside `for NAME in (consts):` loops expanded."""
    tree = ast.parse(source)
    flags: set[str] = set()

    def visit(node: ast.AST, env: dict[str, tuple[str, ...]]) -> None:
        if (
            isinstance(node, ast.For)
            and isinstance(node.target, ast.Name)
            and isinstance(node.iter, ast.Tuple)
        ):
            values = tuple(e.value for e in node.iter.elts if isinstance(e, ast.Constant))
            env = {**env, node.target.id: values}
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "add_argument"
        ):
            for arg in node.args:
                if isinstance(arg, ast.Constant):
                    flags.add(arg.value)
                elif isinstance(arg, ast.JoinedStr):
                    variants = [""]
                    for part in arg.values:
                        if isinstance(part, ast.Constant):
                            variants = [v + part.value for v in variants]
                        else:
                            assert isinstance(part, ast.FormattedValue) and isinstance(part.value, ast.Name)
                            variants = [v + str(x) for v in variants for x in env[part.value.id]]
                    flags.update(variants)
        for child in ast.iter_child_nodes(node):
            visit(child, env)

    visit(tree, {})
    return {f for f in flags if isinstance(f, str) and f.startswith("--")}


def installed_sources() -> dict[str, str] | None:
    try:
        if version("openrlhf") != PINNED:
            return None
    except PackageNotFoundError:
        return None
    spec = importlib.util.find_spec("openrlhf")  # finds the package without importing it
    assert spec is not None and spec.submodule_search_locations
    cli = Path(next(iter(spec.submodule_search_locations))) / "cli"
    return {s: (cli / f"{s}.py").read_text() for s in SCRIPTS}


def wheel_sources(ver: str) -> dict[str, str] | None:
    folder = os.environ.get("CAITOOL_OPENRLHF_WHEELS")
    if not folder:
        return None
    wheels = sorted(Path(folder).glob(f"openrlhf-{ver}-*.whl"))
    if not wheels:
        return None
    with zipfile.ZipFile(wheels[0]) as zf:
        names = zf.namelist()
        return {
            s: zf.read(next(n for n in names if n.endswith(f"openrlhf/cli/{s}.py"))).decode() for s in SCRIPTS
        }


@pytest.fixture(scope="module")
def pinned() -> dict[str, set[str]]:
    sources = installed_sources() or wheel_sources(PINNED)
    if sources is None:
        pytest.skip(
            f"openrlhf=={PINNED} not installed: pip install --no-deps openrlhf=={PINNED} (make setup-dev)"
        )
    return {s: add_argument_flags(src) for s, src in sources.items()}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("orl")
    write_jsonl(root / "sft.jsonl", sft_rows_keep_rounds())
    write_jsonl(root / "pairs.jsonl", pair_rows())
    write_jsonl(root / "prompts.jsonl", prompt_rows())
    (root / "policy").mkdir()
    (root / "pm").mkdir()
    return root


def dry_run(*args: object) -> list[str]:
    """Run a caitool command with --backend openrlhf --dry-run in-process; return the printed command."""
    from typer.testing import CliRunner

    from caitool.cli import _register, app

    _register()
    r = CliRunner().invoke(app, [*map(str, args), "--backend", "openrlhf", "--dry-run"])
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    assert r.exit_code == 0, r.stdout + r.stderr
    return shlex.split(r.stdout)


def split_command(cmd: list[str]) -> tuple[list[str], str, list[str]]:
    """ray job submit ARGS -- LAUNCHER... openrlhf.cli.SCRIPT FLAGS → (ray args, script, openrlhf args)."""
    assert cmd[:3] == ["ray", "job", "submit"]
    sep = cmd.index("--")
    module_at = next(i for i, tok in enumerate(cmd) if tok.startswith("openrlhf.cli."))
    assert module_at > sep
    return cmd[3:sep], cmd[module_at].removeprefix("openrlhf.cli."), cmd[module_at + 1 :]


KNOBS = ("--epochs", "2", "--batch-size", "16", "--lr", "1e-5", "--max-steps", "5", "--lora", "--seed", "3")
CASES = {
    "sft": ("sft", "{d}/sft.jsonl", "--model", "base", "--rounds-kept", "1", "--mix", "{d}/sft.jsonl:0.5"),
    "pm-soft": ("train-pm", "{d}/pairs.jsonl", "--model", "base"),
    "pm-bt": ("train-pm", "{d}/pairs.jsonl", "--model", "base", "--loss", "bt"),
    "pm-margin": ("train-pm", "{d}/pairs.jsonl", "--model", "base", "--loss", "margin"),
    "ppo": (
        "rl",
        "{d}/prompts.jsonl",
        "--policy",
        "{d}/policy",
        "--reward",
        "{d}/pm",
        "--algo",
        "ppo",
        "--kl",
        "0.01",
    ),
    "grpo": (
        "rl",
        "{d}/prompts.jsonl",
        "--policy",
        "{d}/policy",
        "--reward",
        "{d}/pm",
        "--algo",
        "grpo",
        "--kl",
        "0",
    ),
    "rloo": ("rl", "{d}/prompts.jsonl", "--policy", "{d}/policy", "--reward", "{d}/pm", "--algo", "rloo"),
    "dpo": ("rl", "{d}/pairs.jsonl", "--policy", "{d}/policy", "--algo", "dpo", "--beta", "0.1"),
}
EXPECTED_SCRIPT = {
    "sft": "train_sft",
    "ppo": "train_ppo_ray",
    "grpo": "train_ppo_ray",
    "rloo": "train_ppo_ray",
}


def case_args(name: str, d: Path, out: Path) -> list[str]:
    return [a.replace("{d}", str(d)) for a in CASES[name]] + ["-o", str(out), *KNOBS]


def test_reader_sees_loop_generated_flags(pinned: dict[str, set[str]]) -> None:
    ppo = pinned["train_ppo_ray"]
    assert {
        "--actor.adam.lr",
        "--critic.adam.lr",
        "--actor.model_name_or_path",
        "--data.prompt_dataset",
    } <= ppo
    assert "--model.model_name_or_path" in pinned["train_rm"] and "--pretrain" not in pinned["train_rm"]
    sources = installed_sources() or wheel_sources(PINNED)
    assert sources is not None
    for script, src in sources.items():  # caitool's own reader (used to validate --config) agrees
        assert parser_flags(src) == pinned[script], script


@pytest.mark.parametrize("case", list(CASES))
def test_every_emitted_flag_exists_in_the_pinned_parser(
    case: str, data: Path, tmp_path: Path, pinned: dict[str, set[str]]
) -> None:
    ray_args, script, args = split_command(dry_run(*case_args(case, data, tmp_path / "out")))
    assert script == EXPECTED_SCRIPT.get(case, "train_rm" if case.startswith("pm") else "train_dpo")
    assert ray_args[:2] == ["--address", os.environ.get("RAY_ADDRESS", "http://127.0.0.1:8265")]
    flags = [a for a in args if a.startswith("--")]
    unknown = sorted(set(flags) - pinned[script])
    assert not unknown, f"{case}: {script} {PINNED} has no {unknown}"
    assert len(flags) >= 8
    # the data files named in the command exist and carry the keys the command names
    values = dict(itertools.pairwise(args))
    dataset = values.get("--data.dataset") or values["--data.prompt_dataset"]
    row = json.loads(Path(dataset).read_text().splitlines()[0])
    for key_flag in ("--data.prompt_key", "--data.chosen_key", "--data.rejected_key", "--data.input_key"):
        if key_flag in values:
            assert values[key_flag] in row, (key_flag, row)
    assert (tmp_path / "out" / "openrlhf" / "launch.sh").read_text().strip().endswith(shlex.join(args))
    if case == "pm-margin":
        assert "--model.margin_loss_enable" in flags and "margin" in row
    if case == "grpo":
        assert values["--algo.advantage.estimator"] == "group_norm" and "--algo.kl.use_loss" in flags


def test_config_passes_flags_through_and_refuses_unknown_ones(data: Path, tmp_path: Path) -> None:
    if installed_sources() is None:
        pytest.skip(f"needs openrlhf=={PINNED} installed to validate flags")
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"actor.num_gpus_per_node": 4, "--vllm.num_engines": 2, "train.seed": None}))
    _, _, args = split_command(dry_run(*case_args("ppo", data, tmp_path / "o"), "--config", cfg))
    assert args[args.index("--actor.num_gpus_per_node") + 1] == "4" and "--vllm.num_engines" in args
    assert "--train.seed" not in args
    cfg.write_text(json.dumps({"no_such.flag": True}))
    with pytest.raises(ConfigError, match=r"no flag\(s\) --no_such\.flag"):
        dry_run(*case_args("ppo", data, tmp_path / "o2"), "--config", cfg)


def test_legacy_flag_style_for_older_openrlhf(data: Path, tmp_path: Path) -> None:
    sources = wheel_sources("0.10.1")
    if sources is None:
        pytest.skip("set CAITOOL_OPENRLHF_WHEELS to a folder holding the openrlhf 0.10.1 wheel")
    legacy = {s: add_argument_flags(src) for s, src in sources.items()}
    cfg = tmp_path / "v.json"
    cfg.write_text(json.dumps({"openrlhf_version": "0.10.1"}))
    for case in CASES:
        _, script, args = split_command(dry_run(*case_args(case, data, tmp_path / case), "--config", cfg))
        unknown = sorted({a for a in args if a.startswith("--")} - legacy[script])
        assert not unknown, f"{case}: {script} 0.10.1 has no {unknown}"
        assert not any("." in a for a in args if a.startswith("--"))


def test_dry_run_imports_nothing_heavy_and_a_real_run_needs_ray(data: Path, tmp_path: Path) -> None:
    code = (
        "import sys\nfrom caitool.cli import main\nsys.argv = ['caitool', *sys.argv[1:]]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    rc = e.code\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'trl') if m in sys.modules)\n"
        "print('HEAVY', heavy, file=sys.stderr)\nsys.exit(rc)\n"
    )
    env = {**os.environ, "NO_COLOR": "1"}
    args = [*case_args("pm-soft", data, tmp_path / "o"), "--backend", "openrlhf"]
    p = subprocess.run(
        [sys.executable, "-c", code, *args, "--dry-run"], capture_output=True, text=True, env=env
    )
    assert p.returncode == 0, p.stderr
    assert "HEAVY []" in p.stderr and p.stdout.startswith("ray job submit")
    if importlib.util.find_spec("ray") is not None:
        return
    p = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env)
    assert p.returncode == 1 and "cannot run here" in p.stderr and "launch.sh" in p.stderr


def test_algorithms_openrlhf_does_not_have_are_refused(data: Path, tmp_path: Path) -> None:
    job = TrainJob(
        "rl", data / "prompts.jsonl", tmp_path / "o", "p", algo="online-dpo", reward=str(data / "pm")
    )
    with pytest.raises(UsageError, match="not available on the openrlhf backend"):
        OpenRLHFBackend().run(job)
