"""`--preset paper`: the hyper-parameters Bai et al. (2022) report, per task, in backend-neutral terms.

Each backend translates a `Preset` into its own arguments (the trl backend: `TrlBackend` config fields; the
openrlhf backend: its flags). Precedence: the backend's defaults < the preset < `--config` < flags, so a
preset only fills in what the user did not set. Without `--preset`, the backend's defaults stay the default.

Only values the papers state are here; what they leave open (the SL learning rate is "0.5× the pre-training
learning rate" of a model we do not know; PM and RL schedules) stays the backend's default. Sources are
quoted in docs/training.md.
"""

from __future__ import annotations

from dataclasses import dataclass

from caitool.errors import UsageError
from caitool.trainers.base import Task

PRESETS = ("paper",)


@dataclass(frozen=True)
class Preset:
    name: str
    epochs: float | None = None  # passes over the data
    lr_schedule: str | None = None  # "constant": no warm-up, no decay
    global_batch: int | None = None  # sequences per optimizer step, over all devices
    kl: float | None = None  # KL penalty coefficient to the initial (SL) policy
    loss: str | None = None  # preference-model loss
    sources: tuple[str, ...] = ()  # where each value comes from (manifest, docs)

    def values(self) -> dict[str, object]:
        """The values this preset sets (for manifests and dry-run plans)."""
        keys = ("epochs", "lr_schedule", "global_batch", "kl", "loss")
        return {k: getattr(self, k) for k in keys if getattr(self, k) is not None}


PAPER: dict[Task, Preset] = {
    # CAI Sec. 3.1: "one epoch", "constant learning rate of 0.5 relative to the pre-training learning rate",
    # "batch size 1024 sequences". The 0.5x learning rate needs the base model's own, so it is left to --lr.
    "sft": Preset(
        "paper",
        epochs=1,
        lr_schedule="constant",
        global_batch=1024,
        sources=("Bai et al. 2022 (CAI) Sec. 3.1: 1 epoch, constant LR, batch 1024 sequences",),
    ),
    # CAI Sec. 4.1: the normalised (A)/(B) probabilities are the preference model's targets (soft labels).
    "pm": Preset(
        "paper",
        loss="soft",
        sources=("Bai et al. 2022 (CAI) Sec. 4.1: normalised label probabilities as soft targets",),
    ),
    # CAI Sec. 4.2 uses the RL set-up of Bai et al. 2022a, whose Sec. 4.1 adds a KL penalty to the initial
    # policy with lambda_KL = 0.001 (the initial policy is the SL-CAI model here).
    "rl": Preset(
        "paper",
        kl=0.001,
        sources=(
            "Bai et al. 2022 (CAI) Sec. 4.2: RL hyper-parameters as in Bai et al. 2022a",
            "Bai et al. 2022a Sec. 4.1: PPO, reward r_PM - lambda_KL * KL(policy || initial policy), "
            "lambda_KL = 0.001",
        ),
    ),
}

# Algorithms the RL preset means something for: a KL penalty to the initial policy while optimising a reward.
PAPER_RL_ALGOS = ("ppo", "grpo", "rloo")


def get_preset(name: str | None, task: Task, algo: str | None = None) -> Preset | None:
    if name is None:
        return None
    if name not in PRESETS:
        raise UsageError(f"--preset {name!r}: choose one of {', '.join(PRESETS)}")
    if task == "rl" and algo not in PAPER_RL_ALGOS:
        raise UsageError(
            f"--preset paper does not apply to --algo {algo}: the paper's RL stage is PPO against a "
            "preference model with a KL penalty to the SL policy",
            hint="use --algo ppo (--backend openrlhf), or grpo / rloo on trl (the closest with a KL anchor)",
        )
    return PAPER[task]
