"""caitool sft / train-pm / rl / trainers list, on a tiny model built offline, on CPU.

The training tests run the real commands in-process (typer's CliRunner), so torch and trl are imported once;
the import-cost and plugin tests run caitool as a subprocess. Nothing touches the network: the model is built
from a config and a locally trained tokenizer, and HF_HUB_OFFLINE etc. are set before any HF import.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from caitool.errors import ConfigError, InputError, UsageError
from caitool.testing.tiny_model import BAD, GOOD, PLAIN_TEMPLATE, QUESTIONS, build_tiny_model
from tests.trainer_fixtures import (
    pair_rows,
    prompt_rows,
    set_offline,
    sft_rows_keep_rounds,
    trace_rows,
    write_jsonl,
)

set_offline()

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "transformers", "trl", "datasets", "accelerate", "peft")
needs_train = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("torch", "trl", "datasets")),
    reason="needs the train extra (torch, trl, datasets)",
)
STEPS = ["--max-steps", "2", "--batch-size", "2", "--quiet"]
RL_CONFIG = {"max_completion_length": 8}  # grpo, rloo: short generations
ODPO_CONFIG = {"max_new_tokens": 8}  # online-dpo names it differently


# --------------------------------------------------------------------------------------------------- helpers


class Result:
    def __init__(self, exit_code: int, stdout: str, stderr: str, exception: BaseException | None) -> None:
        self.exit_code, self.stdout, self.stderr, self.exception = exit_code, stdout, stderr, exception


def cli(*args: object) -> Result:
    """Run a caitool command in this process. CaitoolErrors come back in `.exception`."""
    from typer.testing import CliRunner

    from caitool.cli import _register, app

    _register()
    r = CliRunner().invoke(app, [str(a) for a in args])
    exc = r.exception if r.exception and not isinstance(r.exception, SystemExit) else None
    return Result(r.exit_code, r.stdout, r.stderr, exc)


def ok(*args: object) -> Result:
    r = cli(*args)
    if r.exception is not None:
        raise r.exception
    assert r.exit_code == 0, r.stdout + r.stderr
    return r


def subprocess_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", **(env or {})}
    full_env.pop("CAITOOL_DEBUG", None)
    return subprocess.run(
        [sys.executable, "-m", "caitool", *args], capture_output=True, text=True, env=full_env, cwd=REPO
    )


# Runs the CLI's main() in a fresh interpreter and reports which heavy modules it imported.
PROBE = """
import sys, time
t0 = time.perf_counter()
from caitool.cli import main
sys.argv = ["caitool", *sys.argv[1:]]
code = 0
try:
    main()
except SystemExit as e:
    code = e.code or 0
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {heavy})
print("PROBE", code, round(time.perf_counter() - t0, 3), ",".join(heavy), file=sys.stderr)
""".replace("{heavy}", repr(set(HEAVY)))


def probe(*args: str, cwd: Path = REPO) -> tuple[int, float, list[str], str, str]:
    p = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"},
    )
    line = [x for x in p.stderr.splitlines() if x.startswith("PROBE ")][-1].split(" ")
    heavy = [m for m in (line[3] if len(line) > 3 else "").split(",") if m]
    return int(line[1]), float(line[2]), heavy, p.stdout, p.stderr


def manifest(d: Path) -> dict[str, Any]:
    return json.loads((d / "caitool-manifest.json").read_text())


# --------------------------------------------------------------------------------------------------- losses


def test_soft_loss_matches_hand_computed_value() -> None:
    torch = pytest.importorskip("torch")
    from caitool.trainers.losses import soft_preference_loss

    # d = 1, p = 0.8: −(0.8·log σ(1) + 0.2·log σ(−1)) = 0.8·log(1 + e^−1) + 0.2·log(1 + e)
    expected_1 = 0.8 * 0.31326168751822286 + 0.2 * 1.3132616875182228  # 0.5132616875182228
    # d = −2, p = 0.3: 0.3·log(1 + e^2) + 0.7·log(1 + e^−2)
    expected_2 = 0.3 * 2.1269280110429727 + 0.7 * 0.12692801104297263
    rc, rr = torch.tensor([1.5, -1.0]), torch.tensor([0.5, 1.0])
    p = torch.tensor([0.8, 0.3])
    per = soft_preference_loss(rc, rr, p, reduction="none")
    assert per.tolist() == pytest.approx([expected_1, expected_2], abs=1e-6)
    assert float(soft_preference_loss(rc, rr, p)) == pytest.approx((expected_1 + expected_2) / 2, abs=1e-6)
    assert expected_1 == pytest.approx(0.5132616875, abs=1e-9)


def test_soft_loss_at_p1_is_bradley_terry_and_minimised_at_logit_p() -> None:
    torch = pytest.importorskip("torch")
    from caitool.trainers.losses import bradley_terry_loss, soft_preference_loss

    g = torch.Generator().manual_seed(0)
    rc, rr = torch.randn(16, generator=g), torch.randn(16, generator=g)
    ones = torch.ones(16)
    assert float(soft_preference_loss(rc, rr, ones)) == pytest.approx(
        float(bradley_terry_loss(rc, rr)), abs=1e-6
    )
    assert float(soft_preference_loss(rc, rr, 0 * ones)) == pytest.approx(float(bradley_terry_loss(rr, rc)))
    # the soft loss is minimised where σ(r_c − r_r) = p: zero gradient at d = logit(p)
    d = torch.tensor([math.log(0.7 / 0.3)], requires_grad=True)
    soft_preference_loss(d, torch.zeros(1), torch.tensor([0.7])).backward()
    assert d.grad is not None and abs(float(d.grad)) < 1e-6


def test_preference_metrics_by_hand() -> None:
    from caitool.trainers.losses import preference_metrics

    # q = σ(d): d = 0 → 0.5, d = ln 3 → 0.75, d = −ln 3 → 0.25
    m = preference_metrics([0.0, math.log(3), 0.0], [0.0, 0.0, math.log(3)], [0.9, 0.75, 0.5])
    assert m["n"] == 3 and m["n_ties"] == 1
    # decided pairs: (q .5, p .9) → model says "not chosen" (q ≤ .5) vs label chosen: wrong; (.75, .75): right
    assert m["accuracy"] == pytest.approx(0.5)
    # bins of width .1: q=.25 → bin 2 (p .5), q=.5 → bin 5 (p .9), q=.75 → bin 7 (p .75)
    assert m["ece"] == pytest.approx((0.25 + 0.4 + 0.0) / 3)
    assert m["brier"] == pytest.approx((0.16 + 0.0 + 0.0625) / 3)


# --------------------------------------------------------------------------------------------------- data


def test_sft_data_rounds_kept_and_trace(tmp_path: Path) -> None:
    from caitool.trainers.data import add_mix, load_sft, parse_mix

    rounds = write_jsonl(tmp_path / "sft.jsonl", sft_rows_keep_rounds())
    assert len(load_sft(rounds).rows) == 16
    one = load_sft(rounds, rounds_kept=1)
    assert len(one.rows) == 8 and one.skipped == 8
    trace = write_jsonl(tmp_path / "trace.jsonl", trace_rows())
    final = load_sft(trace)
    assert len(final.rows) == 8 and final.rows[0][-1]["content"] == "Simmer tomatoes with basil, then blend."
    per_round = load_sft(trace, rounds_kept=2)
    assert [r[-1]["content"] for r in per_round.rows[:2]] == [
        "Simmer tomatoes with basil",
        final.rows[0][-1]["content"],
    ]
    helpful = write_jsonl(tmp_path / "help.jsonl", [{"prompt": "hi", "completion": "hello!"}])
    report = add_mix(one, (parse_mix(f"{helpful}:0.5"),), seed=0)
    assert report[0]["rows"] == 4 and len(one.rows) == 12 and one.mixed == 4
    with pytest.raises(UsageError, match="FILE:WEIGHT"):
        parse_mix("nofile")


def test_bad_data_points_at_file_and_line(tmp_path: Path) -> None:
    from caitool.trainers.data import load_pairs, load_prompts, load_sft

    rows = pair_rows()[:3]
    rows[2]["p_chosen"] = 1.5
    bad = write_jsonl(tmp_path / "pairs.jsonl", rows)
    with pytest.raises(InputError) as err:
        load_pairs(bad)
    assert err.value.where == f"{bad}:3" and "p_chosen" in str(err.value)
    (tmp_path / "broken.jsonl").write_text('{"prompt": "a"}\n{"prompt": \n')
    with pytest.raises(InputError, match=r"broken\.jsonl:2: malformed JSON"):
        load_prompts(tmp_path / "broken.jsonl")
    write_jsonl(tmp_path / "noasst.jsonl", [{"messages": [{"role": "user", "content": "x"}]}])
    with pytest.raises(InputError, match=r"noasst\.jsonl:1: .*assistant"):
        load_sft(tmp_path / "noasst.jsonl")
    # implicit prompt (chosen/rejected as whole conversations) and plain TRL rows without p_chosen
    implicit = {
        "chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "good"}],
        "rejected": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "bad"}],
    }
    pairs = load_pairs(write_jsonl(tmp_path / "implicit.jsonl", [implicit])).pairs
    assert pairs[0].prompt == [{"role": "user", "content": "q"}] and pairs[0].p_chosen == 1.0


def test_soft_labels_to_hard_flips_in_proportion() -> None:
    from caitool.trainers.data import Pair
    from caitool.trainers.openrlhf import soft_to_hard

    pairs = [Pair([{"role": "user", "content": "q"}], "a", "b", 0.8, None, f"f:{i}") for i in range(2000)]
    oriented, swapped = soft_to_hard(pairs, "soft", seed=0)
    assert 0.17 < swapped / len(pairs) < 0.23  # kept with probability p = 0.8
    assert sum(1 for x in oriented if x.chosen == "b") == swapped
    assert soft_to_hard(pairs, "bt", seed=0)[1] == 0


def test_load_config_json_yaml_and_errors(tmp_path: Path) -> None:
    from caitool.cli.train import load_config

    (tmp_path / "c.json").write_text('{"warmup_ratio": 0.1}')
    assert load_config(str(tmp_path / "c.json")) == {"warmup_ratio": 0.1}
    (tmp_path / "bad.json").write_text('{"a": }')
    with pytest.raises(ConfigError, match=r"bad\.json:1: invalid JSON"):
        load_config(str(tmp_path / "bad.json"))
    (tmp_path / "list.json").write_text("[1]")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(str(tmp_path / "list.json"))
    (tmp_path / "c.yaml").write_text("warmup_ratio: 0.1\npeft:\n  r: 4\n")
    if importlib.util.find_spec("yaml") is None:
        with pytest.raises(ConfigError, match="PyYAML"):
            load_config(str(tmp_path / "c.yaml"))
    else:
        assert load_config(str(tmp_path / "c.yaml")) == {"warmup_ratio": 0.1, "peft": {"r": 4}}


# ------------------------------------------------------------------------------------------------- light CLI


def test_help_is_fast_and_imports_no_torch(capsys: pytest.CaptureFixture[str]) -> None:
    """`caitool --help`, the training commands' help and `trainers list` never import torch or trl."""
    for args in (
        ["--help"],
        ["sft", "--help"],
        ["train-pm", "--help"],
        ["rl", "--help"],
        ["trainers", "list"],
    ):
        code, _, heavy, _, err = probe(*args)
        assert code == 0, err
        assert heavy == [], f"{args} imported {heavy}"
    walls = []
    for _ in range(3):
        t0 = time.perf_counter()
        p = subprocess.run([sys.executable, "-m", "caitool", "--help"], capture_output=True, cwd=REPO)
        walls.append(time.perf_counter() - t0)
        assert p.returncode == 0
    best = min(walls)
    with capsys.disabled():
        print(f"\n[caitool --help wall time: best {best:.3f}s of {[round(w, 3) for w in walls]}]")
    assert best < 2.0


def test_trainers_list_shows_builtins() -> None:
    p = subprocess_cli("trainers", "list", "--json")
    assert p.returncode == 0, p.stderr
    rows = {r["name"]: r for r in map(json.loads, p.stdout.splitlines())}
    assert {"trl", "openrlhf"} <= set(rows)
    if importlib.util.find_spec("trl") is not None:
        from importlib.metadata import version

        assert rows["trl"]["installed"] and rows["trl"]["version"] == version("trl")
    table = subprocess_cli("trainers", "list")
    assert "trl" in table.stdout and "openrlhf" in table.stdout and "version" in table.stdout


def test_plugin_backend_installs_lists_and_runs(tmp_path: Path) -> None:
    """A third-party backend is a pip-installable package with a `caitool.trainers` entry point."""
    from tests.plugin_install import install_plugin

    target = install_plugin("fake_trainer_plugin", tmp_path)
    env = {"PYTHONPATH": os.pathsep.join([target, os.environ.get("PYTHONPATH", "")])}
    listed = subprocess_cli("trainers", "list", "--json", env=env)
    rows = {r["name"]: r for r in map(json.loads, listed.stdout.splitlines())}
    assert rows["fake"]["source"] == "caitool-fake-trainer"
    assert rows["fake"]["version"] == "0.0.1" and rows["fake"]["ready"]
    data = write_jsonl(tmp_path / "sft.jsonl", sft_rows_keep_rounds())
    out = tmp_path / "out"
    run = subprocess_cli("sft", str(data), "--model", "base", "-o", str(out), "--backend", "fake", env=env)
    assert run.returncode == 0, run.stderr
    assert (out / "fake-model.txt").read_text() == "sft base 16\n"
    m = manifest(out)
    assert m["backend"] == {"name": "fake", "version": "0.0.1"}
    assert m["metrics"] == {"fake_rows": 16, "task": "sft"}
    unknown = subprocess_cli(
        "sft", str(data), "--model", "base", "-o", str(tmp_path / "o2"), "--backend", "nope"
    )
    assert unknown.returncode == 2 and "unknown trainer backend 'nope'" in unknown.stderr


def test_dry_runs_print_plans_and_launch_commands_without_torch(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "sft.jsonl", sft_rows_keep_rounds())
    code, _, heavy, out, err = probe("sft", str(data), "--model", "m", "-o", str(tmp_path / "o"), "--dry-run")
    assert code == 0, err
    plan = json.loads(out)
    assert plan["trainer"] == "SFTTrainer" and plan["rows"] == 16 and heavy == []
    acc = tmp_path / "acc.yaml"
    acc.write_text("num_processes: 2\n")
    code, _, heavy, out, err = probe(
        *("sft", str(data), "--model", "m", "-o", str(tmp_path / "o"), "--lr", "1e-5"),
        *("--accelerate-config", str(acc), "--dry-run"),
    )
    assert code == 0, err
    expected = f"accelerate launch --config_file {acc} -m caitool sft {data} --output {tmp_path / 'o'}"
    assert out.strip() == expected + " --model m --lr 1e-05"
    assert heavy == []


def test_usage_errors_exit_2_with_a_reason(tmp_path: Path) -> None:
    prompts = write_jsonl(tmp_path / "prompts.jsonl", prompt_rows())
    pm = tmp_path / "pm"
    pm.mkdir()
    ppo = subprocess_cli(
        "rl", str(prompts), "--policy", "p", "--reward", str(pm), "-o", str(tmp_path / "o"), "--algo", "ppo"
    )
    assert (
        ppo.returncode == 2 and "TRL removed PPOTrainer" in ppo.stderr and "--backend openrlhf" in ppo.stderr
    )
    spec = subprocess_cli(
        "rl",
        str(prompts),
        "--policy",
        "p",
        "--reward",
        "openai/gpt-4o-mini",
        "-o",
        "o",
        "--backend",
        "openrlhf",
    )
    assert spec.returncode == 2 and "direct RLAIF runs on the trl backend only" in spec.stderr
    missing = subprocess_cli("rl", str(prompts), "--policy", "p", "-o", str(tmp_path / "o"))
    assert missing.returncode == 2 and "needs --reward PM_DIR" in missing.stderr
    bad = write_jsonl(tmp_path / "pairs.jsonl", [*pair_rows()[:2], {"prompt": "q", "chosen": "a"}])
    r = subprocess_cli("train-pm", str(bad), "--model", "m", "-o", str(tmp_path / "o"))
    assert r.returncode == 2 and f"{bad}:3: not a preference pair: missing 'rejected'" in r.stderr
    loss = subprocess_cli("train-pm", str(bad), "--model", "m", "-o", "o", "--loss", "hinge")
    assert loss.returncode == 2 and "--loss 'hinge'" in loss.stderr


# --------------------------------------------------------------------------------------------------- training


@pytest.fixture(scope="session")
def work(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    if any(importlib.util.find_spec(m) is None for m in ("torch", "trl", "datasets")):
        pytest.skip("needs the train extra")
    import torch

    torch.set_num_threads(1)  # tiny model: threads only add overhead, more so on a busy 2-core machine
    root = tmp_path_factory.mktemp("trainers")
    build_tiny_model(root / "model")
    write_jsonl(root / "sft.jsonl", sft_rows_keep_rounds())
    write_jsonl(root / "trace.jsonl", trace_rows())
    write_jsonl(root / "pairs.jsonl", pair_rows())
    write_jsonl(root / "prompts.jsonl", prompt_rows())
    write_jsonl(
        root / "helpful.jsonl",
        [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "Hello!"}]}],
    )
    (root / "rl.json").write_text(json.dumps(RL_CONFIG))
    (root / "online-dpo.json").write_text(json.dumps(ODPO_CONFIG))
    yield root


@pytest.fixture(scope="session")
def sft_dir(work: Path) -> Path:
    out = work / "sft-out"
    ok(
        "sft",
        work / "sft.jsonl",
        "--model",
        work / "model",
        "-o",
        out,
        "--rounds-kept",
        "1",
        "--mix",
        f"{work / 'helpful.jsonl'}:0.5",
        *STEPS,
    )
    return out


@pytest.fixture(scope="session")
def pm_dir(work: Path) -> Path:
    out = work / "pm-soft"
    ok("train-pm", work / "pairs.jsonl", "--model", work / "model", "-o", out, *STEPS)
    return out


@needs_train
def test_sft_trains_saves_and_reloads(work: Path, sft_dir: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from caitool.trainers.data import sha256_file

    m = manifest(sft_dir)
    assert m["command"] == "sft" and m["backend"]["name"] == "trl" and m["backend"]["version"]
    assert m["data"]["sha256"] == sha256_file(work / "sft.jsonl")
    assert m["data"]["rows"] == 12  # 8 round-1 rows + 4 mixed in (weight 0.5)
    assert m["data"]["mix"][0]["rows"] == 4
    assert m["metrics"]["steps"] == 2 and m["metrics"]["loss_mask"] == "assistant_only"
    assert m["argv"][:3] == ["caitool", "sft", str(work / "sft.jsonl")] and "--rounds-kept" in m["argv"]
    model = AutoModelForCausalLM.from_pretrained(sft_dir)
    tok = AutoTokenizer.from_pretrained(sft_dir)
    assert model.config.model_type == "qwen2" and tok.chat_template


@needs_train
def test_sft_trace_lora_and_template_without_markers(work: Path) -> None:
    """Trace input, LoRA merged on save, and a chat template without {% generation %} markers (the
    fallback: prompt/completion split, loss on the final assistant turn)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    plain = work / "model-plain"
    shutil.copytree(work / "model", plain)
    tok = AutoTokenizer.from_pretrained(plain)
    tok.chat_template = PLAIN_TEMPLATE
    tok.save_pretrained(plain)
    out = work / "sft-lora"
    cfg = work / "lora.json"
    cfg.write_text(json.dumps({"peft": {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]}}))
    ok("sft", work / "trace.jsonl", "--model", plain, "-o", out, "--lora", "--config", cfg, *STEPS)
    m = manifest(out)
    assert m["metrics"]["loss_mask"] == "final_turn_completion_only"
    assert any("merged" in n for n in m["notes"]) and any("generation" in n for n in m["notes"])
    assert not (out / "adapter_config.json").exists()
    AutoModelForCausalLM.from_pretrained(out)


@needs_train
@pytest.mark.parametrize("loss", ["soft", "bt", "margin"])
def test_train_pm_each_loss(work: Path, pm_dir: Path, loss: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import AutoModelForSequenceClassification

    import caitool.trainers.losses as losses

    calls = []
    real = losses.soft_preference_loss

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(losses, "soft_preference_loss", spy)
    out = pm_dir if loss == "soft" else work / f"pm-{loss}"
    if loss != "soft":
        ok("train-pm", work / "pairs.jsonl", "--model", work / "model", "-o", out, "--loss", loss, *STEPS)
        assert bool(calls) == (loss == "bt")  # bt = soft loss on rounded labels; margin = TRL's own loss
    m = manifest(out)
    assert m["command"] == "train-pm" and m["metrics"]["loss"] == loss and m["metrics"]["steps"] == 2
    metrics = json.loads((out / "metrics.json").read_text())
    held = metrics["heldout"]
    assert held["n"] == 1 and held["accuracy"] in (0.0, 1.0) and 0.0 <= held["ece"] <= 1.0
    rm = AutoModelForSequenceClassification.from_pretrained(out)
    assert rm.config.num_labels == 1 and rm.config.pad_token_id is not None


@needs_train
@pytest.mark.parametrize("algo", ["grpo", "rloo", "online-dpo"])
def test_rl_with_the_preference_model(work: Path, sft_dir: Path, pm_dir: Path, algo: str) -> None:
    """The policy from sft, the reward from train-pm (a sequence-classification model as reward function)."""
    from transformers import AutoModelForCausalLM

    out = work / f"rl-{algo}"
    config = work / ("online-dpo.json" if algo == "online-dpo" else "rl.json")
    args = ["--policy", sft_dir, "--reward", pm_dir, "-o", out, "--algo", algo, "--kl", "0.05"]
    r = ok("rl", work / "prompts.jsonl", *args, "--config", config, "--max-steps", "2", "--batch-size", "2")
    assert r.stdout == ""  # stdout is for data: progress and the summary go to stderr
    assert "rl: step 2/2" in r.stderr and "rl: done; 2 steps" in r.stderr
    m = manifest(out)
    assert m["metrics"]["algo"] == algo and m["metrics"]["steps"] == 2 and m["metrics"]["kl_coef"] == 0.05
    assert m["reward_model"] == str(pm_dir) and m["base_model"] == str(sft_dir)
    assert any(k.startswith(("rewards/", "objective/rlhf_reward")) for k in m["metrics"]["last_log"])
    AutoModelForCausalLM.from_pretrained(out)


@needs_train
def test_rl_dpo_offline_on_pairs(work: Path, sft_dir: Path) -> None:
    from transformers import AutoModelForCausalLM

    out = work / "rl-dpo"
    ok("rl", work / "pairs.jsonl", "--policy", sft_dir, "-o", out, "--algo", "dpo", "--beta", "0.2", *STEPS)
    m = manifest(out)
    assert m["metrics"]["steps"] == 2 and m["metrics"]["kl_coef"] == 0.2
    assert any("swapped" in n for n in m["notes"])  # the p_chosen = 0.4 pair
    AutoModelForCausalLM.from_pretrained(out)


@needs_train
def test_output_dirs_chain_and_guard(work: Path, sft_dir: Path, pm_dir: Path) -> None:
    again = cli("sft", work / "sft.jsonl", "--model", work / "model", "-o", sft_dir, *STEPS)
    assert isinstance(again.exception, UsageError) and "--overwrite" in (again.exception.hint or "")
    swapped = cli("rl", work / "prompts.jsonl", "--policy", pm_dir, "--reward", sft_dir, "-o", work / "x")
    assert isinstance(swapped.exception, UsageError) and "preference model" in str(swapped.exception)
    cfg = work / "unknown.json"
    cfg.write_text('{"no_such_argument": 1}')
    bad = cli("sft", work / "sft.jsonl", "--model", work / "model", "-o", work / "x", "--config", cfg, *STEPS)
    assert isinstance(bad.exception, ConfigError) and "no_such_argument" in str(bad.exception)


@needs_train
@pytest.mark.parametrize("algo", ["grpo", "rloo"])
def test_rl_direct_rlaif_with_a_feedback_model(work: Path, sft_dir: Path, fake: Any, algo: str) -> None:
    """--reward provider/model: samples are compared pairwise by the feedback model over real HTTP."""
    from transformers import AutoModelForCausalLM

    fake.configure(answer_logprobs={" A": math.log(0.7), " B": math.log(0.3)})
    out = work / f"rlaif-{algo}"
    args = ["--policy", sft_dir, "--reward", "openai/judge", "--reward-base-url", fake.openai_base_url]
    ok("rl", work / "prompts.jsonl", *args, "-o", out, "--algo", algo, "--config", work / "rl.json", *STEPS)
    m = manifest(out)
    assert m["metrics"]["steps"] == 2 and m["reward_model"] == "openai/judge"
    assert any(k.startswith("rewards/ai_feedback") for k in m["metrics"]["last_log"])
    # Each prompt's generations were compared in both orders: (A) = 0.7 then (A) = 0.7 averages to 0.5.
    assert fake.stats()["by_endpoint"]["/v1/chat/completions"] >= 4
    AutoModelForCausalLM.from_pretrained(out)


@needs_train
def test_label_pairs_output_trains_stock_trl_reward_and_dpo_trainers(work: Path, fake: Any) -> None:
    """label-pairs' rows, loaded with `datasets` as they are, train TRL's own RewardTrainer and DPOTrainer."""
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
    from trl import DPOConfig, DPOTrainer, RewardConfig, RewardTrainer

    from tests.conftest import run_cli

    fake.configure(answer_logprobs={" A": math.log(0.3), " B": math.log(0.7)})
    pairs = [
        {"id": f"p{i}", "prompt": q, "response_a": good, "response_b": bad}
        for i, (q, good, bad) in enumerate(zip(QUESTIONS, GOOD, BAD, strict=True))
    ]
    src = write_jsonl(work / "lp-in.jsonl", pairs)
    out = work / "lp-out.jsonl"
    r = run_cli(
        "label-pairs",
        str(src),
        "-o",
        str(out),
        "--model",
        "openai/judge",
        "--base-url",
        fake.openai_base_url,
        "--both-orders",
    )
    assert r.returncode == 0, r.stderr
    ds = load_dataset("json", data_files=str(out), split="train")
    assert ds.num_rows == len(pairs)
    tok = AutoTokenizer.from_pretrained(work / "model")
    common = {
        "max_steps": 2,
        "per_device_train_batch_size": 2,
        "report_to": "none",
        "save_strategy": "no",
        "use_cpu": True,
        "logging_steps": 1,
    }

    rm = AutoModelForSequenceClassification.from_pretrained(work / "model", num_labels=1)
    rm.config.pad_token_id = tok.pad_token_id
    reward = RewardTrainer(
        model=rm,
        args=RewardConfig(output_dir=str(work / "stock-rm"), **common),
        train_dataset=ds,
        processing_class=tok,
    )
    assert reward.train().global_step == 2

    policy = AutoModelForCausalLM.from_pretrained(work / "model")
    dpo = DPOTrainer(
        model=policy,
        args=DPOConfig(output_dir=str(work / "stock-dpo"), **common),
        train_dataset=ds,
        processing_class=tok,
    )
    assert dpo.train().global_step == 2
