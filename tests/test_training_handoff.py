"""The hand-off from the data commands to the trainers: what one stage writes, the next accepts (empty replies
included), bad lines skipped on request, the same seed giving the same weights, and `--preset paper`.

Real trainers on the tiny offline model (caitool.testing.tiny_model), label-pairs over real HTTP against the
fake server. Training runs in-process (typer's CliRunner) so torch is imported once; exit codes of the
light paths (dry runs, refusals) are checked on real processes.
"""

from __future__ import annotations

import importlib.util
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from caitool.errors import InputError, UsageError
from tests.conftest import REPO, read_jsonl, run_cli, write_jsonl
from tests.trainer_fixtures import pair_rows, prompt_rows, set_offline, sft_rows_keep_rounds

set_offline()

HH_SLICE = REPO / "tests" / "data" / "hh_rlhf" / "test_slice.jsonl"
STEPS = ["--max-steps", "2", "--batch-size", "2", "--quiet"]
needs_train = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("torch", "trl", "datasets")),
    reason="needs the train extra (torch, trl, datasets)",
)


def cli(*args: object) -> Any:
    """A caitool command in this process; CaitoolErrors come back in `.exception`."""
    from typer.testing import CliRunner

    from caitool.cli import _register, app

    _register()
    return CliRunner().invoke(app, [str(a) for a in args])


def ok(*args: object) -> Any:
    r = cli(*args)
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        raise r.exception
    assert r.exit_code == 0, r.stdout + r.stderr
    return r


def manifest(d: Path) -> dict[str, Any]:
    return json.loads((d / "caitool-manifest.json").read_text())


def plan(*args: object) -> dict[str, Any]:
    r = run_cli(*[str(a) for a in args], "--dry-run")
    assert r.returncode == 0, r.stderr
    return dict(json.loads(r.stdout))


def state(path: Path, kind: str) -> dict[str, Any]:
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification

    cls = AutoModelForSequenceClassification if kind == "pm" else AutoModelForCausalLM
    return dict(cls.from_pretrained(path).state_dict())


def same_weights(a: dict[str, Any], b: dict[str, Any]) -> bool:
    import torch

    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    if any(importlib.util.find_spec(m) is None for m in ("torch", "trl", "datasets")):
        pytest.skip("needs the train extra")
    import torch

    from caitool.testing.tiny_model import build_tiny_model

    torch.set_num_threads(1)  # tiny model: threads only add overhead
    root = tmp_path_factory.mktemp("handoff")
    build_tiny_model(root / "model")
    yield root


# --------------------------------------------------------------------------------------------------- data


def test_empty_replies_are_options_and_rows_without_signal_are_left_out(tmp_path: Path) -> None:
    from caitool.trainers.data import load_pairs, load_sft

    rows = pair_rows()[:3]
    rows[0]["chosen"] = [{"role": "assistant", "content": ""}]  # saying nothing won
    rows[1]["rejected"] = ""  # plain-string form, empty
    rows[2]["rejected"] = rows[2]["chosen"]  # identical: nothing to prefer
    data = load_pairs(write_jsonl(tmp_path / "pairs.jsonl", rows))
    assert [(p.chosen, p.rejected == "") for p in data.pairs] == [
        ("", False),
        (rows[1]["chosen"][0]["content"], True),
    ]
    assert data.identical == 1 and "identical" in data.notes()[0]
    with pytest.raises(InputError, match=r"pairs\.jsonl:0: nothing to train on: all 1 pairs"):
        load_pairs(write_jsonl(tmp_path / "pairs.jsonl", [rows[2]]))

    sft = sft_rows_keep_rounds()[:3]
    sft[1]["messages"][-1]["content"] = "  "  # critique-revise writes this when nothing came back
    got = load_sft(write_jsonl(tmp_path / "sft.jsonl", sft))
    assert len(got.rows) == 2 and got.empty == 1
    with pytest.raises(InputError, match="all 1 replies to learn are empty"):
        load_sft(write_jsonl(tmp_path / "sft.jsonl", [sft[1]]))


def test_training_commands_fail_or_skip_bad_lines_like_the_data_commands(tmp_path: Path) -> None:
    """--on-bad-input fail (default): exit 2 at file:line. skip: the line goes to --rejects with its reason
    and the command goes on. Dry runs: real processes, no torch."""
    pairs = tmp_path / "pairs.jsonl"
    good = [json.dumps(r) for r in pair_rows()]
    pairs.write_text("\n".join([good[0], '{"prompt": "q", "chosen": "a"}', "not json", *good[1:]]) + "\n")
    args = ["train-pm", str(pairs), "--model", "m", "-o", str(tmp_path / "pm")]
    r = run_cli(*args, "--dry-run")
    assert r.returncode == 2 and f"{pairs}:2: not a preference pair: missing 'rejected'" in r.stderr
    rejects = tmp_path / "rejects.jsonl"
    r = run_cli(*args, "--dry-run", "--on-bad-input", "skip", "--rejects", str(rejects))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["rows"] + json.loads(r.stdout)["eval_rows"] == len(good)
    assert "2 bad input lines skipped" in r.stderr
    assert [(x["where"], "record" in x) for x in read_jsonl(rejects)] == [
        (f"{pairs}:2", True),
        (f"{pairs}:3", False),
    ]

    prompts = write_jsonl(tmp_path / "prompts.jsonl", [*prompt_rows()[:2], {"messages": []}])
    rl = ["rl", str(prompts), "--policy", "p", "--reward", str(tmp_path), "-o", str(tmp_path / "rl")]
    assert run_cli(*rl, "--dry-run").returncode == 2
    r = run_cli(*rl, "--dry-run", "--on-bad-input", "skip")
    assert r.returncode == 0 and json.loads(r.stdout)["rows"] == 2
    assert not (tmp_path / "rl.rejects.jsonl").exists()  # a dry run writes no default rejects file

    sft = write_jsonl(tmp_path / "sft.jsonl", [{"prompt": "q"}, *sft_rows_keep_rounds()[:2]])
    s = ["sft", str(sft), "--model", "m", "-o", str(tmp_path / "sft")]
    assert run_cli(*s, "--dry-run").returncode == 2
    assert run_cli(*s, "--dry-run", "--on-bad-input", "drop").returncode == 2  # not a choice
    assert json.loads(run_cli(*s, "--dry-run", "--on-bad-input", "skip").stdout)["rows"] == 2


# --------------------------------------------------------------------------------------------------- e2e


@needs_train
def test_hh_rlhf_slice_with_empty_replies_label_pairs_train_pm_rl_dpo(work: Path, fake: Any) -> None:
    """hh-rlhf-shaped pairs, some with an empty chosen or rejected reply and one with identical replies:
    label-pairs (real HTTP) → train-pm → rl --algo dpo, every stage exit 0, every row accounted for."""
    hh = read_jsonl(HH_SLICE)
    empty = sum(1 for r in hh if r["chosen"].endswith("Assistant:") or r["rejected"].endswith("Assistant:"))
    assert len(hh) == 12 and empty == 5
    fake.configure(answer_logprobs={" A": math.log(0.8), " B": math.log(0.2)})
    labels = work / "hh-labels.jsonl"
    judge = ["--model", "openai/judge", "--base-url", fake.openai_base_url]
    r = run_cli("label-pairs", str(HH_SLICE), "-o", str(labels), *judge, "--both-orders")
    assert r.returncode == 0, r.stderr
    rows = read_jsonl(labels)
    assert len(rows) == 12 and not (work / "hh-labels.jsonl.errors.jsonl").exists()
    assert sum(1 for x in rows if "" in (x["chosen"][0]["content"], x["rejected"][0]["content"])) == 5

    pm = work / "hh-pm"
    ok("train-pm", labels, "--model", work / "model", "-o", pm, *STEPS)
    m = manifest(pm)
    assert m["data"]["rows"] + m["metrics"]["heldout"]["n"] == 11  # 12 labelled, 1 identical pair left out
    assert m["data"]["rejected"] == 0 and any(
        "1 pairs whose two replies are identical" in n for n in m["notes"]
    )

    dpo = work / "hh-dpo"
    ok("rl", labels, "--policy", work / "model", "-o", dpo, "--algo", "dpo", *STEPS)
    m = manifest(dpo)
    assert m["data"]["rows"] == 11 and m["metrics"]["steps"] == 2


# --------------------------------------------------------------------------------------------------- seeds


@needs_train
def test_same_seed_same_weights_for_every_training_command(work: Path) -> None:
    """Two runs with one seed give bit-identical weights (sft, train-pm including its fresh reward head, rl
    dpo and grpo); another seed gives another reward head."""
    sft = write_jsonl(work / "seed-sft.jsonl", sft_rows_keep_rounds())
    pairs = write_jsonl(work / "seed-pairs.jsonl", pair_rows())
    prompts = write_jsonl(work / "seed-prompts.jsonl", prompt_rows())
    cfg = work / "seed-rl.json"
    cfg.write_text(json.dumps({"max_completion_length": 6}))
    model = work / "model"
    runs: dict[str, list[Any]] = {
        "sft": ["sft", sft, "--model", model],
        "pm": ["train-pm", pairs, "--model", model],
        "dpo": ["rl", pairs, "--policy", model, "--algo", "dpo"],
    }
    for name, args in runs.items():
        kind = "pm" if name == "pm" else "lm"
        ok(*args, "-o", work / f"seed-{name}-a", *STEPS)
        ok(*args, "-o", work / f"seed-{name}-b", *STEPS)
        a, b = state(work / f"seed-{name}-a", kind), state(work / f"seed-{name}-b", kind)
        assert same_weights(a, b), name
    grpo = [
        "rl",
        prompts,
        "--policy",
        model,
        "--reward",
        work / "seed-pm-a",
        "--algo",
        "grpo",
        "--config",
        cfg,
    ]
    ok(*grpo, "-o", work / "seed-grpo-a", *STEPS)
    ok(*grpo, "-o", work / "seed-grpo-b", *STEPS)
    assert same_weights(state(work / "seed-grpo-a", "lm"), state(work / "seed-grpo-b", "lm"))

    ok(*runs["pm"], "-o", work / "seed-pm-c", *STEPS, "--seed", "1")
    a, c = state(work / "seed-pm-a", "pm"), state(work / "seed-pm-c", "pm")
    assert not same_weights({"score.weight": a["score.weight"]}, {"score.weight": c["score.weight"]})


# --------------------------------------------------------------------------------------------------- preset


def test_preset_paper_reaches_the_trl_config_and_flags_win(tmp_path: Path) -> None:
    sft = write_jsonl(tmp_path / "sft.jsonl", sft_rows_keep_rounds())
    pairs = write_jsonl(tmp_path / "pairs.jsonl", pair_rows())
    prompts = write_jsonl(tmp_path / "prompts.jsonl", prompt_rows())
    base = ["--model", "m", "-o", str(tmp_path / "o"), "--preset", "paper"]

    cfg = plan("sft", sft, *base, "--batch-size", "4")["config"]
    assert cfg["num_train_epochs"] == 1 and cfg["lr_scheduler_type"] == "constant"
    assert cfg["per_device_train_batch_size"] * cfg["gradient_accumulation_steps"] == 1024
    assert "learning_rate" not in cfg  # 0.5x the base model's pre-training LR: only the user knows it
    over = tmp_path / "over.json"
    over.write_text(json.dumps({"lr_scheduler_type": "cosine", "gradient_accumulation_steps": 3}))
    cfg = plan("sft", sft, *base, "--epochs", "2", "--config", over)["config"]
    assert (cfg["num_train_epochs"], cfg["lr_scheduler_type"], cfg["gradient_accumulation_steps"]) == (
        2,
        "cosine",
        3,
    )
    assert "lr_scheduler_type" not in plan("sft", sft, "--model", "m", "-o", str(tmp_path / "o"))["config"]

    rl = [
        "rl",
        prompts,
        "--policy",
        "p",
        "--reward",
        str(tmp_path),
        "-o",
        str(tmp_path / "o"),
        "--preset",
        "paper",
    ]
    assert plan(*rl)["config"]["beta"] == 0.001  # grpo: TRL's own default is 0, no KL anchor
    assert plan(*rl, "--algo", "rloo", "--kl", "0.1")["config"]["beta"] == 0.1
    dpo = ["rl", str(pairs), "--policy", "p", "-o", str(tmp_path / "o"), "--preset", "paper", "--algo", "dpo"]
    refused = run_cli(*dpo, "--dry-run")
    assert refused.returncode == 2 and "does not apply to --algo dpo" in refused.stderr
    assert plan("train-pm", pairs, *base)["config"].get("num_train_epochs") is None
    bad = run_cli("train-pm", str(pairs), *base[:-1], "bogus", "--dry-run")
    assert bad.returncode == 2 and "--preset 'bogus'" in bad.stderr

    # The config object TRL itself builds from the plan
    from trl import GRPOConfig, SFTConfig

    from caitool.trainers.base import TrainJob
    from caitool.trainers.presets import get_preset
    from caitool.trainers.trl_backend import _make_config, prepare

    job = TrainJob("sft", sft, tmp_path / "o", "m", preset=get_preset("paper", "sft"))
    built = _make_config(SFTConfig, prepare(job).config, job)
    assert built.lr_scheduler_type == "constant" and built.num_train_epochs == 1
    assert built.gradient_accumulation_steps == 1024 // built.per_device_train_batch_size
    job = TrainJob(
        "rl", prompts, tmp_path / "o", "m", algo="grpo", reward="r", preset=get_preset("paper", "rl", "grpo")
    )
    assert _make_config(GRPOConfig, prepare(job).config, job).beta == 0.001
    with pytest.raises(UsageError):
        get_preset("paper", "rl", "online-dpo")


@needs_train
def test_preset_paper_trains_with_a_constant_rate_and_records_its_sources(work: Path) -> None:
    sft = write_jsonl(work / "preset-sft.jsonl", sft_rows_keep_rounds())
    out = work / "preset-sft"
    # 1 step of 1024 sequences: 128 accumulated micro-batches of 8, over the 16 rows again and again
    ok(
        "sft",
        sft,
        "--model",
        work / "model",
        "-o",
        out,
        "--preset",
        "paper",
        "--max-steps",
        "1",
        "--batch-size",
        "8",
    )
    m = manifest(out)
    assert m["preset"]["epochs"] == 1 and m["preset"]["global_batch"] == 1024
    assert any("Sec. 3.1" in s for s in m["preset"]["sources"])
    assert m["metrics"]["last_log"]["learning_rate"] == pytest.approx(2e-5)  # SFTConfig's, undecayed
