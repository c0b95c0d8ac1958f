"""The `openrlhf` backend: writes the data in OpenRLHF's keys and the `ray job submit` command that trains it.

OpenRLHF needs CUDA (flash-attn, deepspeed), so caitool does not import it: it prepares `DIR/openrlhf/` (data
files + `launch.sh`) and then runs the command (`--dry-run` prints it instead). The command is

    ray job submit --address $RAY_ADDRESS -- deepspeed --module openrlhf.cli.train_rm ...  (train-pm)
    ray job submit --address $RAY_ADDRESS -- python3 -m openrlhf.cli.train_ppo_ray ...     (rl: ppo/grpo/rloo)

(`train_sft` and `train_dpo` like `train_rm`). Paths are absolute: they must be visible to the cluster.

Flag style follows the OpenRLHF version: `openrlhf_version` in `--config`, else the installed one, else the
pinned `PINNED`. Versions from 0.10.2 use dotted names (`--model.model_name_or_path`), older ones underscores
(`--pretrain`); `flag_style: dotted|legacy` forces one. When that version is installed here its parser source
is read (with `ast`: it cannot be imported without CUDA) and unknown flags are refused.

`--config` keys: OpenRLHF flags (leading `--` optional; true = bare flag, false/null = drop it, a list =
several values), plus `openrlhf_version`, `flag_style`, `ray_address` (default $RAY_ADDRESS or
http://127.0.0.1:8265), `ray_job_args` (a list added to `ray job submit`, e.g. `["--runtime-env-json",
"{...}"]`), `launcher` (for the deepspeed scripts, default `deepspeed --module`) and `peft` (`r` and
`lora_alpha`, with --lora).

Soft labels: `train_rm` has only a margin loss, −log σ(r_c − r_r − m). caitool's default (`--loss soft`) keeps
each pair's orientation with probability p_chosen and swaps it otherwise (a seeded draw per pair), so the
expected Bradley–Terry loss over the draw equals the soft-label cross-entropy (an unbiased, single-copy
reduction); `--loss bt` swaps pairs with p < 0.5; `--loss margin` passes the data's `margin` with
`--model.margin_loss_enable`.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import random
import shlex
import shutil
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from caitool.console import info
from caitool.errors import CaitoolError, ConfigError, UsageError
from caitool.trainers.base import TrainJob, TrainResult
from caitool.trainers.data import Pair, load_pairs, load_prompts, load_sft, split_holdout

PINNED = "0.11.2"
DOTTED_SINCE = (0, 10, 2)
DEFAULT_RAY_ADDRESS = "http://127.0.0.1:8265"
RESERVED = ("openrlhf_version", "flag_style", "ray_address", "ray_job_args", "launcher", "peft")
SCRIPTS = {"sft": "train_sft", "pm": "train_rm", "dpo": "train_dpo", "ppo": "train_ppo_ray"}
ESTIMATORS = {"ppo": "gae", "grpo": "group_norm", "rloo": "rloo"}

# caitool's name for a setting -> (dotted flag, legacy flag). One table for the four scripts: each script only
# gets the keys it is given below, and the flags test checks every one against that script's parser.
FLAGS: dict[str, tuple[str, str]] = {
    "model": ("--model.model_name_or_path", "--pretrain"),
    "output": ("--ckpt.output_dir", "--save_path"),
    "dataset": ("--data.dataset", "--dataset"),
    "eval_dataset": ("--eval.dataset", "--eval_dataset"),
    "input_key": ("--data.input_key", "--input_key"),
    "output_key": ("--data.output_key", "--output_key"),
    "prompt_key": ("--data.prompt_key", "--prompt_key"),
    "chosen_key": ("--data.chosen_key", "--chosen_key"),
    "rejected_key": ("--data.rejected_key", "--rejected_key"),
    "chat_template": ("--data.apply_chat_template", "--apply_chat_template"),
    "epochs": ("--train.max_epochs", "--max_epochs"),
    "batch_size": ("--train.batch_size", "--train_batch_size"),
    "max_samples": ("--data.max_samples", "--max_samples"),
    "lr": ("--adam.lr", "--learning_rate"),
    "lora_rank": ("--ds.lora.rank", "--lora_rank"),
    "lora_alpha": ("--ds.lora.alpha", "--lora_alpha"),
    "seed": ("--train.seed", "--seed"),
    "margin_loss": ("--model.margin_loss_enable", "--margin_loss"),
    "beta": ("--model.beta", "--beta"),
    # train_ppo_ray
    "actor": ("--actor.model_name_or_path", "--pretrain"),
    "reward_model": ("--reward.model_name_or_path", "--reward_pretrain"),
    "prompt_dataset": ("--data.prompt_dataset", "--prompt_data"),
    "estimator": ("--algo.advantage.estimator", "--advantage_estimator"),
    "n_samples": ("--rollout.n_samples_per_prompt", "--n_samples_per_prompt"),
    "kl": ("--algo.kl.init_coef", "--init_kl_coef"),
    "kl_loss": ("--algo.kl.use_loss", "--use_kl_loss"),
    "kl_estimator": ("--algo.kl.estimator", "--kl_estimator"),
    "actor_lr": ("--actor.adam.lr", "--actor_learning_rate"),
    "rollout_batch_size": ("--rollout.batch_size", "--rollout_batch_size"),
    "episodes": ("--train.num_episodes", "--num_episodes"),
}


def _vtuple(v: str) -> tuple[int, ...]:
    parts = []
    for piece in v.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def flag_style(openrlhf_version: str) -> str:
    return "dotted" if _vtuple(openrlhf_version) >= DOTTED_SINCE else "legacy"


def installed_version() -> str | None:
    try:
        return version("openrlhf")
    except PackageNotFoundError:
        return None


def parser_flags(source: str) -> set[str]:
    """Every `--flag` passed to an `add_argument(...)` call in a Python source, read with `ast` (no import).
    f-string flags inside `for x in ("a", "b"):` loops are expanded over the loop's constants."""
    tree = ast.parse(source)
    bindings: dict[int, list[tuple[str, list[str]]]] = {}
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.For)
            and isinstance(node.target, ast.Name)
            and isinstance(node.iter, ast.Tuple | ast.List)
        ):
            values = [
                e.value for e in node.iter.elts if isinstance(e, ast.Constant) and isinstance(e.value, str)
            ]
            for sub in ast.walk(node):
                bindings.setdefault(id(sub), []).append((node.target.id, values))
    flags: set[str] = set()
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_argument"):
            continue
        for arg in node.args:
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                flags.add(arg.value)
            elif isinstance(arg, ast.JoinedStr):
                flags.update(_expand(arg, bindings.get(id(node), [])))
    return {f for f in flags if f.startswith("--")}


def _expand(node: ast.JoinedStr, loops: list[tuple[str, list[str]]]) -> set[str]:
    names = {name: values for name, values in loops}
    results = [""]
    for part in node.values:
        if isinstance(part, ast.Constant):
            results = [r + str(part.value) for r in results]
        elif (
            isinstance(part, ast.FormattedValue)
            and isinstance(part.value, ast.Name)
            and part.value.id in names
        ):
            results = [r + v for r in results for v in names[part.value.id]]
        else:
            return set()
    return set(results)


def installed_script_flags(script: str) -> set[str] | None:
    """Flags of `openrlhf.cli.<script>` as installed here, or None when OpenRLHF is not installed."""
    module = importlib.util.find_spec("openrlhf")
    if module is None or not module.submodule_search_locations:
        return None
    path = Path(next(iter(module.submodule_search_locations))) / "cli" / f"{script}.py"
    if not path.is_file():
        return None
    return parser_flags(path.read_text(encoding="utf-8"))


class Args:
    """An ordered OpenRLHF command line: flag -> value (True = bare flag)."""

    def __init__(self, style: str) -> None:
        self.style = style
        self.items: dict[str, Any] = {}

    def set(self, key: str, value: Any) -> None:
        if value is None or value is False:
            return
        flag = FLAGS[key][0 if self.style == "dotted" else 1]
        self.items[flag] = value

    def update_raw(self, options: dict[str, Any]) -> None:
        for key, value in options.items():
            flag = key if key.startswith("--") else f"--{key}"
            if value is None or value is False:
                self.items.pop(flag, None)
            else:
                self.items[flag] = value

    def argv(self) -> list[str]:
        out: list[str] = []
        for flag, value in self.items.items():
            out.append(flag)
            if value is True:
                continue
            if isinstance(value, list | tuple):
                out.extend(str(v) for v in value)
            else:
                out.append(str(value))
        return out


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def soft_to_hard(pairs: list[Pair], loss: str, seed: int) -> tuple[list[Pair], int]:
    """Orient pairs for a hard-label trainer. soft: keep with probability p (seeded per pair), else swap;
    bt: swap when p < 0.5; margin: as given. Returns (pairs, number swapped)."""
    out: list[Pair] = []
    swapped = 0
    for i, x in enumerate(pairs):
        if loss == "soft":
            keep = random.Random(f"{seed}:{i}").random() < x.p_chosen
        elif loss == "bt":
            keep = x.p_chosen >= 0.5
        else:
            keep = True
        out.append(x if keep else x.swapped())
        swapped += 0 if keep else 1
    return out, swapped


def _path_or_id(value: str) -> str:
    """A local directory as an absolute path (the job runs elsewhere); anything else (a hub id) as given."""
    return str(Path(value).resolve()) if Path(value).exists() else value


def _pair_row(x: Pair, margin: bool) -> dict[str, Any]:
    row: dict[str, Any] = {
        "prompt": x.prompt,
        "chosen": [{"role": "assistant", "content": x.chosen}],
        "rejected": [{"role": "assistant", "content": x.rejected}],
    }
    if margin:
        row["margin"] = x.margin if x.margin is not None else 0.0
    return row


class OpenRLHFBackend:
    name = "openrlhf"
    description = (
        f"OpenRLHF (Ray + DeepSpeed + vLLM): writes data and a `ray job submit` command (pinned {PINNED})"
    )

    def version(self) -> str | None:
        return installed_version()

    def available(self) -> tuple[bool, str]:
        missing = [m for m in ("openrlhf", "ray") if importlib.util.find_spec(m) is None]
        if missing:
            return False, f"missing {', '.join(missing)} (--dry-run still writes the data and the command)"
        return True, f"flag style {flag_style(installed_version() or PINNED)}"

    def run(self, job: TrainJob) -> TrainResult:
        if job.accelerate_config is not None:
            raise UsageError("--accelerate-config is for the trl backend; OpenRLHF runs on Ray")
        options = dict(job.options)
        declared = options.pop("openrlhf_version", None)
        target = str(declared or installed_version() or PINNED)
        style = str(options.pop("flag_style", flag_style(target)))
        ray_address = str(options.pop("ray_address", os.environ.get("RAY_ADDRESS") or DEFAULT_RAY_ADDRESS))
        ray_job_args = options.pop("ray_job_args", [])
        launcher = shlex.split(str(options.pop("launcher", "deepspeed --module")))
        if not isinstance(ray_job_args, list):
            raise ConfigError("--config: ray_job_args must be a list of strings")
        options.pop("peft", None)  # read by _common for --lora
        work = job.output.resolve() / "openrlhf"
        args = Args(style)
        notes: list[str] = []
        script, rows = self._build(job, args, work, notes)
        args.update_raw(options)
        if job.deepspeed is not None:
            notes.append(
                "--deepspeed ignored: OpenRLHF builds its DeepSpeed config from its own --ds.* flags"
            )
        self._check_flags(script, args, target)
        module = f"openrlhf.cli.{script}"
        inner = ["python3", "-m", module] if script == "train_ppo_ray" else [*launcher, module]
        cmd = [
            "ray",
            "job",
            "submit",
            "--address",
            ray_address,
            *map(str, ray_job_args),
            "--",
            *inner,
            *args.argv(),
        ]
        launch = work / "launch.sh"
        launch.write_text(
            "#!/usr/bin/env bash\n# written by caitool "
            + job.command
            + "\nset -euo pipefail\n"
            + shlex.join(cmd)
            + "\n"
        )
        launch.chmod(0o755)
        files = {"launch": str(launch), "openrlhf_version": target, "flag_style": style}
        if job.dry_run:
            return TrainResult(command=cmd, trained=False, data_rows=rows, notes=notes, files=files)
        missing = [m for m in ("openrlhf", "ray") if importlib.util.find_spec(m) is None]
        if missing or shutil.which("ray") is None:
            raise CaitoolError(
                f"the openrlhf backend cannot run here: {', '.join(missing) or 'ray'} not installed",
                hint=f"run {launch} where OpenRLHF and a Ray cluster are available (--dry-run prints it)",
            )
        info(f"launching: {shlex.join(cmd)}", quiet=job.quiet, style="dim")
        rc = subprocess.call(cmd)
        if rc != 0:
            raise CaitoolError(f"ray job submit exited with status {rc}")
        notes.append("trained by OpenRLHF: metrics are in its logs (wandb/tensorboard), not here")
        return TrainResult(command=cmd, trained=True, data_rows=rows, notes=notes, files=files)

    def _check_flags(self, script: str, args: Args, target: str) -> None:
        if installed_version() != target:
            return
        known = installed_script_flags(script)
        if known is None:
            return
        unknown = sorted(f for f in args.items if f not in known)
        if unknown:
            raise ConfigError(f"openrlhf {target} {script} has no flag(s) {', '.join(unknown)}")

    def _common(self, job: TrainJob, args: Args) -> None:
        k = job.knobs
        p = job.preset
        args.set("output", str(job.output.resolve()))
        # --preset fills in what the flags leave unset (OpenRLHF's train_batch_size is already global).
        epochs = k.epochs if k.epochs is not None else (p.epochs if p else None)
        if epochs is not None:
            args.set("epochs" if job.task != "rl" or job.algo == "dpo" else "episodes", max(1, round(epochs)))
        batch_size = k.batch_size if k.batch_size is not None else (p.global_batch if p else None)
        if batch_size is not None:
            args.set("batch_size", batch_size)
        if k.lora:
            peft = job.options.get("peft") or {}
            args.set("lora_rank", int(peft.get("r", 16)))
            args.set("lora_alpha", int(peft.get("lora_alpha", 32)))
        args.set("seed", k.seed)
        if k.max_steps is not None:  # OpenRLHF has no step limit: cap the samples instead
            ppo = job.task == "rl" and job.algo != "dpo"
            per_step = k.batch_size or (1024 if ppo else 128)  # OpenRLHF's default (rollout) batch size
            args.set("max_samples", k.max_steps * per_step)

    def _build(self, job: TrainJob, args: Args, work: Path, notes: list[str]) -> tuple[str, int]:
        k = job.knobs
        if job.task == "sft":
            data = load_sft(job.data, job.rounds_kept, job.on_bad_input)
            if data.empty:
                notes.append(f"left out {data.empty} rows whose reply to learn is empty")
            if job.preset is not None and job.preset.lr_schedule is not None:
                notes.append(
                    f"--preset {job.preset.name}: the paper's learning rate is {job.preset.lr_schedule}; "
                    "caitool does not set OpenRLHF's scheduler: pass it in --config"
                )
            if job.mix:
                from caitool.trainers.data import add_mix

                add_mix(data, job.mix, k.seed)
            rows = [{"prompt": m[:-1], "response": [m[-1]]} for m in data.rows]
            _write_jsonl(work / "sft.jsonl", rows)
            args.set("model", _path_or_id(job.model))
            args.set("dataset", str(work / "sft.jsonl"))
            args.set("input_key", "prompt")
            args.set("output_key", "response")
            args.set("chat_template", True)
            self._common(job, args)
            if k.lr is not None:
                args.set("lr", k.lr)
            notes.append(
                "OpenRLHF sft learns the final assistant turn (input_key prompt, output_key response)"
            )
            return SCRIPTS["sft"], len(rows)
        if job.task == "pm":
            loaded = load_pairs(job.data, job.on_bad_input)
            notes += loaded.notes()
            train, held = split_holdout(loaded.pairs, job.holdout, k.seed)
            oriented, swapped = soft_to_hard(train, job.loss, k.seed)
            margin = job.loss == "margin"
            _write_jsonl(work / "pairs.train.jsonl", [_pair_row(x, margin) for x in oriented])
            args.set("model", _path_or_id(job.model))
            args.set("dataset", str(work / "pairs.train.jsonl"))
            if held:
                _write_jsonl(work / "pairs.eval.jsonl", [_pair_row(x, margin) for x in held])
                args.set("eval_dataset", str(work / "pairs.eval.jsonl"))
            args.set("prompt_key", "prompt")
            args.set("chosen_key", "chosen")
            args.set("rejected_key", "rejected")
            args.set("chat_template", True)
            args.set("margin_loss", margin)
            self._common(job, args)
            if k.lr is not None:
                args.set("lr", k.lr)
            if job.loss == "soft":
                notes.append(
                    f"soft labels → hard: each pair kept with probability p_chosen, else swapped ({swapped} "
                    "swapped); the expected BT loss equals the soft-label loss"
                )
            elif swapped:
                notes.append(f"--loss bt: {swapped} pairs with p_chosen < 0.5 swapped")
            return SCRIPTS["pm"], len(oriented)
        algo = job.algo or "ppo"
        if algo == "dpo":
            loaded = load_pairs(job.data, job.on_bad_input)
            notes += loaded.notes()
            pairs, swapped = soft_to_hard(loaded.pairs, "bt", k.seed)
            _write_jsonl(work / "pairs.jsonl", [_pair_row(x, False) for x in pairs])
            args.set("model", _path_or_id(job.model))
            args.set("dataset", str(work / "pairs.jsonl"))
            args.set("prompt_key", "prompt")
            args.set("chosen_key", "chosen")
            args.set("rejected_key", "rejected")
            args.set("chat_template", True)
            if k.kl is not None:
                args.set("beta", k.kl)
            self._common(job, args)
            if k.lr is not None:
                args.set("lr", k.lr)
            return SCRIPTS["dpo"], len(pairs)
        if algo not in ESTIMATORS:
            raise UsageError(f"--algo {algo} is not available on the openrlhf backend (ppo, grpo, rloo, dpo)")
        if not job.reward:
            raise UsageError(
                f"--algo {algo} needs --reward PM_DIR (a preference model from `caitool train-pm`)"
            )
        prompts = load_prompts(job.data, job.on_bad_input)
        _write_jsonl(work / "prompts.jsonl", [{"input": m} for m in prompts])
        args.set("actor", _path_or_id(job.model))
        args.set("reward_model", _path_or_id(job.reward))
        args.set("prompt_dataset", str(work / "prompts.jsonl"))
        args.set("input_key", "input")
        args.set("chat_template", True)
        args.set("estimator", ESTIMATORS[algo])
        args.set("n_samples", 1 if algo == "ppo" else 4)
        if algo == "grpo":
            args.set("kl_loss", True)
            args.set("kl_estimator", "k3")
        kl = k.kl if k.kl is not None else (job.preset.kl if job.preset else None)
        if kl is not None:
            args.set("kl", kl)
        if k.lr is not None:
            args.set("actor_lr", k.lr)
        self._common(job, args)
        if k.batch_size is not None:
            args.set("rollout_batch_size", k.batch_size)
        return SCRIPTS["ppo"], len(prompts)
