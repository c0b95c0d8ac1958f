"""What a training backend is: a small Protocol, the job the CLI hands it, and the result it hands back.

A backend gets one `TrainJob` (which task, the data file, the output directory, the common knobs and the
backend's own arguments from `--config`) and returns a `TrainResult`. The CLI, not the backend, validates
the flags, writes `DIR/caitool-manifest.json` and prints the summary, so a third-party backend only has to
train (or launch something that trains) and save a model into `job.output`.

Tasks:
- `sft`  supervised fine-tuning on conversations (`caitool sft`);
- `pm`   a preference (reward) model on pairs (`caitool train-pm`);
- `rl`   policy optimisation with `job.algo` in `ALGOS` (`caitool rl`).

Nothing here imports torch: backends import their stack inside `run`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

from caitool.errors import InputError

if TYPE_CHECKING:
    from caitool.trainers.presets import Preset

Task = Literal["sft", "pm", "rl"]
TASKS: tuple[Task, ...] = ("sft", "pm", "rl")
COMMANDS: dict[Task, str] = {"sft": "sft", "pm": "train-pm", "rl": "rl"}
LOSSES = ("soft", "bt", "margin")
# What a data loader does with a bad line: raise it (the default, exit 2 at `file:line`), or record it and go
# on (`--on-bad-input skip` writes it to the rejects file). It gets the error and the line's object, if any.
BadLineHandler = Callable[[InputError, dict[str, Any] | None], None]
ALGOS = ("grpo", "rloo", "online-dpo", "dpo", "ppo")


@dataclass
class Knobs:
    """The training knobs every command takes. None means: the backend's own default."""

    max_steps: int | None = None
    epochs: float | None = None
    lr: float | None = None
    batch_size: int | None = None
    lora: bool = False
    kl: float | None = None
    seed: int = 0

    def given(self) -> dict[str, Any]:
        """The knobs that were set explicitly (for manifests and dry runs)."""
        out = {k: v for k, v in self.__dict__.items() if v is not None}
        if not self.lora:
            out.pop("lora")
        return out


@dataclass(frozen=True)
class MixSpec:
    """`--mix FILE:WEIGHT`: add round(WEIGHT × main rows) rows drawn from FILE (with repeats when WEIGHT asks
    for more rows than FILE has)."""

    path: Path
    weight: float


@dataclass
class TrainJob:
    task: Task
    data: Path
    output: Path
    model: str
    knobs: Knobs = field(default_factory=Knobs)
    options: dict[str, Any] = field(default_factory=dict)  # the backend's own arguments (--config)
    preset: Preset | None = None  # --preset: below --config and flags, above the backend's defaults
    loss: str = "soft"  # pm
    holdout: float = 0.1  # pm: fraction of pairs held out for accuracy / ECE
    algo: str | None = None  # rl
    reward: str | None = None  # rl: a preference-model directory
    # rl: a callable reward function instead (direct RLAIF): fn(prompts, completions, **kw) -> list[float]
    reward_fn: Any = None
    mix: tuple[MixSpec, ...] = ()  # sft
    rounds_kept: int | None = None  # sft
    accelerate_config: Path | None = None
    deepspeed: Path | None = None
    dry_run: bool = False
    quiet: bool = False
    on_bad_input: BadLineHandler | None = None  # None: the first bad line raises
    argv: tuple[str, ...] = ()  # the caitool command line, canonical form (relaunch + manifest)

    @property
    def command(self) -> str:
        return COMMANDS[self.task]


@dataclass
class TrainResult:
    """`metrics` go to the manifest and summary (with --dry-run, `metrics["plan"]` is printed instead).
    `command` is the external command a backend launched (or, with --dry-run, would launch). `trained` is
    False when nothing was trained here (a dry run, or a launcher whose own processes write the manifest)."""

    metrics: dict[str, Any] = field(default_factory=dict)
    command: list[str] | None = None
    trained: bool = True
    notes: list[str] = field(default_factory=list)
    data_rows: int | None = None
    files: dict[str, Any] = field(default_factory=dict)
    main_process: bool = True  # False on the other ranks of a distributed run: they write nothing


@runtime_checkable
class Backend(Protocol):
    """A training backend. `available()` must be cheap and must not import the backend's stack."""

    name: str
    description: str

    def version(self) -> str | None:
        """The installed version of what this backend drives (e.g. trl), or None when it is not installed."""
        ...

    def available(self) -> tuple[bool, str]:
        """(usable here, one-line detail such as what is missing)."""
        ...

    def run(self, job: TrainJob) -> TrainResult: ...
