"""The `trl` backend: TRL 1.16's trainers, in-process, or under `accelerate launch` for several GPUs or nodes.

| task | trainer | data |
| --- | --- | --- |
| sft | `SFTTrainer`, assistant-only loss | conversations (`messages`) |
| pm  | `RewardTrainer` subclass with the soft-label loss | `prompt`/`chosen`/`rejected` + `p_chosen` |
| rl grpo / rloo | `GRPOTrainer` / `RLOOTrainer`, reward = the preference model | `prompt` |
| rl online-dpo | `trl.experimental.online_dpo.OnlineDPOTrainer`, same reward | `prompt` |
| rl dpo | `DPOTrainer` (offline, on the preference pairs) | `prompt`/`chosen`/`rejected` |

`rl --algo ppo` is refused: TRL removed PPOTrainer in 1.13 (use `--backend openrlhf`).

Arguments: TRL's defaults < `--config` (any field of the trainer's config class, `peft:` for LoRA,
`lora_merge: false` to keep adapters separate) < flags.
Under `--accelerate-config` / `--deepspeed` the command re-runs itself as `accelerate launch -m caitool ...`;
the launched processes train and rank 0 writes the manifest.

torch, transformers, trl, datasets and peft are imported inside functions only.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from caitool.console import info, warn
from caitool.errors import CaitoolError, ConfigError, UsageError
from caitool.trainers.base import TrainJob, TrainResult
from caitool.trainers.data import (
    Pair,
    add_mix,
    load_pairs,
    load_prompts,
    load_sft,
    split_holdout,
)
from caitool.trainers.losses import hard_labels, preference_metrics

REQUIRED = ("torch", "transformers", "trl", "datasets", "accelerate")
LAUNCHED_ENV = "CAITOOL_LAUNCHED"
LAUNCHED_BY_ENV = "CAITOOL_LAUNCHED_BY"  # the launch command, recorded in the manifest by rank 0
DEFAULT_LORA = {"r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "target_modules": "all-linear"}
TRAINERS = {
    "sft": "SFTTrainer",
    "pm": "RewardTrainer (caitool soft-label subclass)",
    "grpo": "GRPOTrainer",
    "rloo": "RLOOTrainer",
    "online-dpo": "trl.experimental.online_dpo.OnlineDPOTrainer",
    "dpo": "DPOTrainer",
}


def inside_launcher() -> bool:
    """True in a process started by `accelerate launch` (ours or the user's): do not launch again."""
    return os.environ.get(LAUNCHED_ENV) == "1" or "ACCELERATE_MIXED_PRECISION" in os.environ


def strip_options(argv: tuple[str, ...], with_value: set[str], flags: set[str]) -> list[str]:
    out: list[str] = []
    skip = False
    for tok in argv:
        if skip:
            skip = False
            continue
        name = tok.split("=", 1)[0]
        if name in with_value:
            skip = "=" not in tok
            continue
        if tok in flags:
            continue
        out.append(tok)
    return out


@dataclass
class Prepared:
    """What a run will do, computed without torch (so --dry-run stays light)."""

    trainer: str
    config: dict[str, Any]
    rows: int
    eval_rows: int = 0
    peft: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    files: dict[str, Any] = field(default_factory=dict)
    payload: dict[str, Any] = field(default_factory=dict)  # rows for the dataset(s); not shown in plans

    def plan(self, job: TrainJob) -> dict[str, Any]:
        return {
            "backend": "trl",
            "command": job.command,
            "trainer": self.trainer,
            "model": job.model,
            "reward": job.reward,
            "data": str(job.data),
            "rows": self.rows,
            "eval_rows": self.eval_rows,
            "config": self.config,
            "peft": self.peft,
            "notes": self.notes,
        }


class TrlBackend:
    name = "trl"
    description = (
        "TRL: SFT, soft-label preference model, GRPO/RLOO/online-DPO/DPO; accelerate launch to scale"
    )

    def version(self) -> str | None:
        try:
            return version("trl")
        except PackageNotFoundError:
            return None

    def available(self) -> tuple[bool, str]:
        missing = [m for m in REQUIRED if importlib.util.find_spec(m) is None]
        if missing:
            return False, f"missing {', '.join(missing)}: pip install 'caitool[train]'"
        lora = "" if importlib.util.find_spec("peft") is not None else " (no peft: --lora unavailable)"
        return True, "torch " + _dist_version("torch") + lora

    def run(self, job: TrainJob) -> TrainResult:
        if job.task == "rl" and job.algo == "ppo":
            raise UsageError(
                "--algo ppo is not available on the trl backend: TRL removed PPOTrainer in 1.13",
                hint="use --backend openrlhf for PPO, or --algo grpo / rloo / online-dpo / dpo on TRL",
            )
        prepared = prepare(job)
        if (job.accelerate_config or job.deepspeed) and not inside_launcher():
            return _launch(job, prepared)
        if job.dry_run:
            return TrainResult(
                trained=False,
                data_rows=prepared.rows,
                notes=prepared.notes,
                metrics={"plan": prepared.plan(job)},
            )
        ok, detail = self.available()
        if not ok:
            raise CaitoolError(f"the trl backend is not usable here: {detail}")
        with _quiet_libraries(job.quiet):
            _seed_everything(job.knobs.seed)
            if job.task == "sft":
                return _run_sft(job, prepared)
            if job.task == "pm":
                return _run_pm(job, prepared)
            return _run_rl(job, prepared)


def _seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch before any model is built. The Trainer seeds itself only once it is
    constructed, after the weights TRL or transformers initialise fresh (train-pm's reward head, LoRA
    adapters): without this, the same --seed gave a different preference model on every run."""
    from transformers import set_seed

    set_seed(seed)


def _dist_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "?"


# --------------------------------------------------------------------------------------------------- plans


def _preset_config(job: TrainJob) -> dict[str, Any]:
    """--preset in TRL's terms (the global batch is handled in `_base_config`, once the per-device batch is
    known; the KL coefficient in `prepare`, which knows the algorithm's field)."""
    p = job.preset
    cfg: dict[str, Any] = {}
    if p is None:
        return cfg
    if p.epochs is not None:
        cfg["num_train_epochs"] = p.epochs
    if p.lr_schedule is not None:
        cfg["lr_scheduler_type"] = p.lr_schedule  # "constant": HF's schedule without warm-up or decay
    return cfg


def _world_size() -> int:
    """Processes sharing one optimizer step: set by `accelerate launch`, 1 in a plain run."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def _base_config(
    job: TrainJob, task_defaults: dict[str, Any], flag_values: dict[str, Any] | None = None
) -> dict[str, Any]:
    """TRL config arguments: caitool's defaults < task defaults < --preset < --config < flags."""
    k = job.knobs
    cfg: dict[str, Any] = {
        "output_dir": str(job.output),
        "report_to": "none",
        "save_strategy": "no",
        "logging_steps": 1 if (k.max_steps is not None and k.max_steps <= 20) else 10,
        "disable_tqdm": True,  # caitool prints its own progress lines on stderr; tqdm would write to stdout
        "seed": k.seed,
        "dataloader_num_workers": 0,
    }
    cfg.update(task_defaults)
    cfg.update(_preset_config(job))
    options = {key: val for key, val in job.options.items() if key != "peft"}
    cfg.update(options)
    if k.max_steps is not None:
        cfg["max_steps"] = k.max_steps
    if k.epochs is not None:
        cfg["num_train_epochs"] = k.epochs
    if k.lr is not None:
        cfg["learning_rate"] = k.lr
    if k.batch_size is not None:
        cfg["per_device_train_batch_size"] = k.batch_size
    cfg.update(flag_values or {})
    if job.deepspeed is not None:
        cfg["deepspeed"] = str(job.deepspeed)
    batch = job.preset.global_batch if job.preset else None
    if batch is not None and "gradient_accumulation_steps" not in job.options:
        # The paper's batch counts sequences per optimizer step: reach it by accumulating micro-batches.
        per_step = int(cfg.get("per_device_train_batch_size", 8)) * _world_size()
        cfg["gradient_accumulation_steps"] = max(1, -(-batch // per_step))
    cfg["output_dir"] = str(job.output)
    return cfg


def _peft(job: TrainJob, task_type: str) -> dict[str, Any] | None:
    extra = job.options.get("peft")
    if extra is not None and not isinstance(extra, dict):
        raise ConfigError("--config: 'peft' must be a mapping of peft.LoraConfig arguments")
    if not job.knobs.lora:
        if extra:
            raise UsageError("--config has a 'peft' section but --lora is off", hint="add --lora")
        return None
    return {**DEFAULT_LORA, "task_type": task_type, **(extra or {})}


def prepare(job: TrainJob) -> Prepared:
    if job.task == "sft":
        data = load_sft(job.data, job.rounds_kept, job.on_bad_input)
        mix = add_mix(data, job.mix, job.knobs.seed) if job.mix else []
        p = Prepared(TRAINERS["sft"], _base_config(job, {}), len(data.rows), peft=_peft(job, "CAUSAL_LM"))
        p.payload["rows"] = data.rows
        p.files["mix"] = mix
        if data.skipped:
            p.notes.append(f"--rounds-kept {job.rounds_kept}: left out {data.skipped} later-round rows")
        if data.mixed:
            p.notes.append(f"--mix: added {data.mixed} rows to {len(data.rows) - data.mixed}")
        if data.empty:
            p.notes.append(f"left out {data.empty} rows whose reply to learn is empty")
        return p
    if job.task == "pm":
        loaded = load_pairs(job.data, job.on_bad_input)
        train, held = split_holdout(loaded.pairs, job.holdout, job.knobs.seed)
        p = Prepared(TRAINERS["pm"], _base_config(job, {}), len(train), len(held), peft=_peft(job, "SEQ_CLS"))
        p.payload.update(train=train, held=held)
        p.notes += loaded.notes()
        if job.loss == "margin" and not any(x.margin is not None for x in train):
            p.notes.append("--loss margin: the data has no 'margin' column; every margin is 0 (plain BT)")
        if job.loss == "bt":
            flipped = sum(1 for x in train if x.p_chosen < 0.5)
            if flipped:
                p.notes.append(
                    f"--loss bt: {flipped} pairs with p_chosen < 0.5 are trained the other way round"
                )
        return p
    # rl
    algo = job.algo or "grpo"
    if algo == "dpo":
        if job.reward:
            raise UsageError("--algo dpo trains offline on preference pairs and takes no --reward")
        loaded = load_pairs(job.data, job.on_bad_input)
        pairs = loaded.pairs
        flags: dict[str, Any] = {} if job.knobs.kl is None else {"beta": job.knobs.kl}
        p = Prepared(TRAINERS["dpo"], _base_config(job, {}, flags), len(pairs), peft=_peft(job, "CAUSAL_LM"))
        p.notes += loaded.notes()
        oriented = [x.swapped() if x.p_chosen < 0.5 else x for x in pairs]
        n_flip = sum(1 for x in pairs if x.p_chosen < 0.5)
        if n_flip:
            p.notes.append(f"dpo: {n_flip} pairs with p_chosen < 0.5 were swapped (DPO takes hard labels)")
        p.payload["pairs"] = oriented
        return p
    if not job.reward:
        raise UsageError(f"--algo {algo} needs --reward PM_DIR (a preference model from `caitool train-pm`)")
    prompts = load_prompts(job.data, job.on_bad_input)

    def beta(value: float | None) -> dict[str, Any]:
        if value is None:
            return {}
        return {"beta": [value] if algo == "online-dpo" else value}

    preset_kl = job.preset.kl if job.preset else None
    cfg = _base_config(job, beta(preset_kl), beta(job.knobs.kl))
    if algo in ("grpo", "rloo") and "num_generations" not in cfg:
        cfg["num_generations"] = _num_generations(cfg)
    p = Prepared(TRAINERS[algo], cfg, len(prompts), peft=_peft(job, "CAUSAL_LM"))
    p.payload["prompts"] = prompts
    return p


def _num_generations(cfg: dict[str, Any]) -> int:
    """TRL wants the generation batch (per-device batch × accumulation) divisible by num_generations (≥ 2)."""
    batch = int(cfg.get("per_device_train_batch_size", 8)) * int(cfg.get("gradient_accumulation_steps", 1))
    for g in (8, 4, 2):
        if batch % g == 0:
            return g
    raise UsageError(
        f"grpo/rloo sample several completions per prompt: the batch ({batch}) must be even",
        hint="use --batch-size 2 or more (even), or set num_generations in --config",
    )


# --------------------------------------------------------------------------------------------------- launch


def _launch(job: TrainJob, prepared: Prepared) -> TrainResult:
    exe = shutil.which("accelerate")
    cmd = ["accelerate", "launch"]
    if job.accelerate_config is not None:
        cmd += ["--config_file", str(job.accelerate_config)]
    cmd += ["-m", "caitool", *strip_options(job.argv, {"--accelerate-config"}, {"--dry-run"})]
    notes = [*prepared.notes, "the launched processes train; rank 0 writes the manifest"]
    if job.dry_run:
        return TrainResult(command=cmd, trained=False, data_rows=prepared.rows, notes=notes)
    if exe is None:
        if importlib.util.find_spec("accelerate") is None:
            raise CaitoolError("accelerate is not installed: pip install 'caitool[train]'")
        cmd[:2] = [sys.executable, "-m", "accelerate.commands.launch"]
    else:
        cmd[0] = exe
    info(f"launching: {shlex.join(cmd)}", quiet=job.quiet, style="dim")
    rc = subprocess.call(cmd, env={**os.environ, LAUNCHED_ENV: "1", LAUNCHED_BY_ENV: shlex.join(cmd)})
    if rc != 0:
        raise CaitoolError(f"accelerate launch exited with status {rc}")
    return TrainResult(command=cmd, trained=False, data_rows=prepared.rows, notes=notes)


# --------------------------------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def _quiet_libraries(quiet: bool) -> Iterator[None]:
    import datasets
    import transformers
    from huggingface_hub.utils import disable_progress_bars

    datasets.disable_progress_bars()  # caitool prints its own progress lines
    disable_progress_bars()
    transformers.utils.logging.disable_progress_bar()
    old = transformers.logging.get_verbosity()
    if quiet:
        transformers.logging.set_verbosity_error()
    with warnings.catch_warnings():
        if quiet:
            warnings.simplefilter("ignore")
        else:
            warnings.filterwarnings("ignore", message=".*gradient_checkpointing.*", category=FutureWarning)
        try:
            yield
        finally:
            transformers.logging.set_verbosity(old)


def _make_config(cls: Any, cfg: dict[str, Any], job: TrainJob) -> Any:
    import torch

    cfg = dict(cfg)
    if not torch.cuda.is_available():
        cfg.setdefault("bf16", False)
        cfg.setdefault("fp16", False)
        cfg.setdefault("dataloader_pin_memory", False)
    try:
        return cls(**cfg)
    except TypeError as exc:
        raise ConfigError(f"--config: {exc} (arguments of trl.{cls.__name__})") from exc
    except ValueError as exc:
        raise ConfigError(f"{cls.__name__}: {exc}") from exc


def _lora_config(prepared: Prepared) -> Any:
    if prepared.peft is None:
        return None
    if importlib.util.find_spec("peft") is None:
        raise CaitoolError("--lora needs peft: pip install 'caitool[train]'")
    from peft import LoraConfig

    try:
        return LoraConfig(**prepared.peft)
    except TypeError as exc:
        raise ConfigError(f"--config peft: {exc}") from exc


def _dtype() -> Any:
    import torch

    return "auto" if torch.cuda.is_available() else torch.float32


def _tokenizer(path: str) -> Any:
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(path)
    except OSError as exc:
        raise UsageError(f"cannot load a tokenizer from {path!r}: {exc}") from exc
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def _causal_lm(path: str) -> Any:
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(path, dtype=_dtype())
    except OSError as exc:
        raise UsageError(f"cannot load a causal LM from {path!r}: {exc}") from exc


def _seq_cls(path: str, pad_token_id: int | None) -> Any:
    from transformers import AutoModelForSequenceClassification

    try:
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=_dtype())
    except OSError as exc:
        raise UsageError(f"cannot load a sequence-classification model from {path!r}: {exc}") from exc
    if pad_token_id is not None:
        model.config.pad_token_id = pad_token_id
    return model


def _progress_callback(job: TrainJob) -> Any:
    from transformers import TrainerCallback

    class StderrProgress(TrainerCallback):
        """One line per logging step on stderr (the stock callbacks print to stdout)."""

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> None:
            if job.quiet or not logs or "train_runtime" in logs or not state.is_world_process_zero:
                return
            shown = []
            for key in ("loss", "reward", "rewards/mean", "kl", "accuracy", "learning_rate", "train_loss"):
                val = logs.get(key)
                if isinstance(val, int | float):
                    shown.append(f"{key}={val:.4g}")
            if shown:
                info(
                    f"{job.command}: step {state.global_step}/{state.max_steps} {' '.join(shown)}",
                    style="dim",
                )

    return StderrProgress()


def _train(trainer: Any, job: TrainJob) -> dict[str, Any]:
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(_progress_callback(job))
    started = time.monotonic()
    out = trainer.train()
    metrics: dict[str, Any] = {
        "steps": int(trainer.state.global_step),
        "train_seconds": round(time.monotonic() - started, 3),
    }
    loss = getattr(out, "training_loss", None)
    if isinstance(loss, float):
        metrics["train_loss"] = loss
    last: dict[str, float] = {}
    for entry in trainer.state.log_history:
        for key, val in entry.items():
            if isinstance(val, int | float) and key not in ("epoch", "step", "total_flos"):
                last[key] = float(val)
    metrics["last_log"] = last
    return metrics


def _save(trainer: Any, tok: Any, job: TrainJob, merge_lora: bool) -> list[str]:
    """Save a self-contained model directory: LoRA adapters merged in (unless `lora_merge: false` in
    --config), so the next command loads it like any checkpoint."""
    notes: list[str] = []
    trainer.accelerator.wait_for_everyone()
    model = trainer.accelerator.unwrap_model(trainer.model)
    is_peft = hasattr(model, "merge_and_unload") and hasattr(model, "peft_config")
    if is_peft and merge_lora and job.deepspeed is None:
        if trainer.is_world_process_zero():
            merged = model.merge_and_unload()
            merged.save_pretrained(str(job.output))
            tok.save_pretrained(str(job.output))
        notes.append("LoRA adapters merged into the saved model")
    else:
        trainer.save_model(str(job.output))
        if trainer.is_world_process_zero():
            tok.save_pretrained(str(job.output))
        if is_peft:
            notes.append("saved LoRA adapters only (load them on top of the base model)")
    return notes


def _merge_lora(job: TrainJob) -> bool:
    return bool(job.options.get("lora_merge", True))


def _strip_caitool_options(cfg: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in cfg.items() if k not in ("lora_merge",)}


# --------------------------------------------------------------------------------------------------- sft


def _sft_loss_mode(tok: Any) -> tuple[bool, str | None]:
    """(assistant_only_loss, note). Generation markers present, or a template TRL knows how to patch →
    assistant-only loss. Otherwise the conversation is split into prompt + completion and only the final
    assistant turn is learned (completion-only loss), which needs no markers."""
    from trl.chat_template_utils import get_training_chat_template, has_generation_markers

    template = tok.chat_template
    if not template:
        raise UsageError(
            "the base model's tokenizer has no chat template",
            hint="sft trains on conversations: use a chat model, or add a chat_template to its tokenizer",
        )
    if has_generation_markers(template):
        return True, None
    try:
        patched = get_training_chat_template(tok)
    except ValueError:
        return False, (
            "chat template has no {% generation %} markers and TRL cannot patch it: loss on the final "
            "assistant turn only (prompt/completion split)"
        )
    note = "chat template patched by TRL with {% generation %} markers for training" if patched else None
    return True, note


def _run_sft(job: TrainJob, prepared: Prepared) -> TrainResult:
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    tok = _tokenizer(job.model)
    assistant_only, note = _sft_loss_mode(tok)
    notes = list(prepared.notes)
    if note:
        notes.append(note)
        if not assistant_only:
            warn(note, quiet=job.quiet)
    rows = prepared.payload["rows"]
    if assistant_only:
        ds = Dataset.from_list([{"messages": m} for m in rows])
        extra = {"assistant_only_loss": True}
    else:
        ds = Dataset.from_list([{"prompt": m[:-1], "completion": [m[-1]]} for m in rows])
        extra = {"completion_only_loss": True}
    cfg = _make_config(SFTConfig, {**_strip_caitool_options(prepared.config), **extra}, job)
    trainer = _construct(
        SFTTrainer,
        model=_causal_lm(job.model),
        args=cfg,
        train_dataset=ds,
        processing_class=tok,
        peft_config=_lora_config(prepared),
    )
    metrics = _train(trainer, job)
    metrics["loss_mask"] = "assistant_only" if assistant_only else "final_turn_completion_only"
    notes += _save(trainer, tok, job, _merge_lora(job))
    return _result(trainer, metrics, prepared, notes)


def _construct(cls: Any, **kwargs: Any) -> Any:
    try:
        return cls(**kwargs)
    except ValueError as exc:
        raise CaitoolError(f"{cls.__name__}: {exc}") from exc


def _result(trainer: Any, metrics: dict[str, Any], prepared: Prepared, notes: list[str]) -> TrainResult:
    launched_by = os.environ.get(LAUNCHED_BY_ENV)
    return TrainResult(
        command=shlex.split(launched_by) if launched_by else None,
        metrics=metrics,
        trained=True,
        notes=notes,
        data_rows=prepared.rows,
        files=prepared.files,
        main_process=bool(trainer.is_world_process_zero()),
    )


# --------------------------------------------------------------------------------------------------- pm


def _reward_trainer_class() -> Any:
    import torch
    from trl import RewardTrainer

    from caitool.trainers.losses import soft_preference_loss

    class SoftLabelRewardTrainer(RewardTrainer):
        """RewardTrainer with caitool's losses. Rows carry `p_chosen`; the collator passes it through and
        `compute_loss` uses it (soft: p; bt: p rounded to 0/1). `margin` keeps TRL's native margin loss."""

        caitool_loss = "soft"

        def _set_signature_columns_if_needed(self) -> None:
            if self._signature_columns is None:
                self._signature_columns = ["chosen_ids", "rejected_ids", "margin", "p_chosen"]  # type: ignore[assignment]

        def compute_loss(
            self, model: Any, inputs: Any, return_outputs: bool = False, num_items_in_batch: Any = None
        ) -> Any:
            p = inputs.pop("p_chosen", None)
            if self.caitool_loss == "margin" or p is None:
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            _, outputs = super().compute_loss(model, inputs, True, num_items_in_batch)
            r_c, r_r = torch.chunk(outputs.logits.squeeze(-1), chunks=2)
            loss = soft_preference_loss(r_c, r_r, p)
            coef = getattr(self.args, "center_rewards_coefficient", None)
            if coef is not None:
                loss = loss + coef * torch.mean((r_c + r_r) ** 2)
            return (loss, outputs) if return_outputs else loss

    return SoftLabelRewardTrainer


def _collator(pad_token_id: int, pad_to_multiple_of: int | None) -> Any:
    import torch
    from trl.trainer.reward_trainer import DataCollatorForPreference

    base = DataCollatorForPreference(pad_token_id=pad_token_id, pad_to_multiple_of=pad_to_multiple_of)

    def collate(examples: list[dict[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = base(examples)
        if "p_chosen" in examples[0]:
            out["p_chosen"] = torch.tensor([float(e["p_chosen"]) for e in examples], dtype=torch.float)
        return out

    return collate


def _pm_rows(pairs: list[Pair], loss: str, for_eval: bool) -> list[dict[str, Any]]:
    ps = [x.p_chosen for x in pairs]
    if loss == "bt" and not for_eval:
        ps = hard_labels(ps)
    rows = []
    for x, p in zip(pairs, ps, strict=True):
        row = {**x.to_trl(), "p_chosen": p}
        if loss == "margin":
            row["margin"] = x.margin if x.margin is not None else 0.0
        rows.append(row)
    return rows


def _score_heldout(trainer: Any) -> tuple[list[float], list[float], list[float]]:
    import torch

    model = trainer.model
    model.eval()
    rc: list[float] = []
    rr: list[float] = []
    ps: list[float] = []
    with torch.no_grad():
        for batch in trainer.get_eval_dataloader():
            batch = trainer._prepare_inputs(batch)
            p = batch.pop("p_chosen")
            out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
            c, r = torch.chunk(out.logits.squeeze(-1).float(), chunks=2)
            c, r, p = trainer.accelerator.gather_for_metrics((c, r, p.float()))
            rc += c.tolist()
            rr += r.tolist()
            ps += p.tolist()
    return rc, rr, ps


def _run_pm(job: TrainJob, prepared: Prepared) -> TrainResult:
    from datasets import Dataset
    from trl import RewardConfig

    tok = _tokenizer(job.model)
    model = _seq_cls(job.model, tok.pad_token_id)
    train: list[Pair] = prepared.payload["train"]
    held: list[Pair] = prepared.payload["held"]
    cfg = _make_config(RewardConfig, _strip_caitool_options(prepared.config), job)
    cls = _reward_trainer_class()
    cls.caitool_loss = job.loss
    trainer = _construct(
        cls,
        model=model,
        args=cfg,
        data_collator=_collator(tok.pad_token_id, cfg.pad_to_multiple_of),
        train_dataset=Dataset.from_list(_pm_rows(train, job.loss, False)),
        eval_dataset=Dataset.from_list(_pm_rows(held, job.loss, True)) if held else None,
        processing_class=tok,
        peft_config=_lora_config(prepared),
    )
    metrics = _train(trainer, job)
    metrics["loss"] = job.loss
    if held:
        rc, rr, ps = _score_heldout(trainer)
        metrics["heldout"] = preference_metrics(rc, rr, ps)
    notes = list(prepared.notes)
    notes += _save(trainer, tok, job, _merge_lora(job))
    return _result(trainer, metrics, prepared, notes)


# --------------------------------------------------------------------------------------------------- rl


def _run_rl(job: TrainJob, prepared: Prepared) -> TrainResult:
    from datasets import Dataset

    algo = job.algo or "grpo"
    tok = _tokenizer(job.model)
    policy = _causal_lm(job.model)
    lora = _lora_config(prepared)
    config = _strip_caitool_options(prepared.config)
    if algo == "dpo":
        from trl import DPOConfig, DPOTrainer

        pairs: list[Pair] = prepared.payload["pairs"]
        trainer = _construct(
            DPOTrainer,
            model=policy,
            args=_make_config(DPOConfig, config, job),
            train_dataset=Dataset.from_list([x.to_trl() for x in pairs]),
            processing_class=tok,
            peft_config=lora,
        )
    else:
        reward_funcs: list[Any]
        reward_classes: list[Any]
        if job.reward_fn is not None:  # direct RLAIF: a feedback model scores samples online
            reward_funcs, reward_classes = [job.reward_fn], [None]
        else:
            assert job.reward is not None
            reward_tok = _tokenizer(job.reward)
            reward_funcs = [_seq_cls(job.reward, reward_tok.pad_token_id)]
            reward_classes = [reward_tok]
        ds = Dataset.from_list([{"prompt": m} for m in prepared.payload["prompts"]])
        if algo == "online-dpo":
            from trl.experimental.online_dpo import OnlineDPOConfig, OnlineDPOTrainer

            trainer = _construct(
                OnlineDPOTrainer,
                model=policy,
                reward_funcs=reward_funcs[0],
                reward_processing_classes=reward_classes[0],
                args=_make_config(OnlineDPOConfig, config, job),
                train_dataset=ds,
                processing_class=tok,
                peft_config=lora,
            )
        else:
            from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer

            config_cls: Any = GRPOConfig if algo == "grpo" else RLOOConfig
            trainer_cls: Any = GRPOTrainer if algo == "grpo" else RLOOTrainer
            trainer = _construct(
                trainer_cls,
                model=policy,
                reward_funcs=reward_funcs,
                reward_processing_classes=reward_classes,
                args=_make_config(config_cls, config, job),
                train_dataset=ds,
                processing_class=tok,
                peft_config=lora,
            )
    metrics = _train(trainer, job)
    metrics["algo"] = algo
    beta = getattr(trainer.args, "beta", None)
    metrics["kl_coef"] = beta[0] if isinstance(beta, list) else beta
    notes = list(prepared.notes)
    notes += _save(trainer, tok, job, _merge_lora(job))
    return _result(trainer, metrics, prepared, notes)
