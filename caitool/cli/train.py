"""`caitool sft`, `caitool train-pm`, `caitool rl` and `caitool trainers list`: the trainer hand-off.

Each command validates its flags and data, hands a `TrainJob` to a backend (`--backend`, default trl; see
`caitool trainers list`), then writes `DIR/caitool-manifest.json` and a summary on stderr. sft output works
as `rl --policy`, train-pm output as `rl --reward`. Nothing heavy is imported here: backends import torch and
trl inside their `run`. The full description is in docs/training.md.
"""

from __future__ import annotations

import importlib
import json
import os
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from caitool.cli import app
from caitool.cli._options import OnBadInputOpt, RejectsOpt, with_shared_flags
from caitool.errors import ConfigError, UsageError

if TYPE_CHECKING:
    from caitool.cli._common import BadInputPolicy
    from caitool.trainers.base import Knobs, Task, TrainJob, TrainResult

trainers_app = typer.Typer(help="Training backends (trl, openrlhf, plugins).", no_args_is_help=True)
app.add_typer(trainers_app, name="trainers")

OutputDirOpt = Annotated[
    str, typer.Option("--output", "-o", help="Output directory (model, tokenizer, caitool-manifest.json).")
]
BackendOpt = Annotated[
    str, typer.Option("--backend", help="trl, openrlhf, or a plugin (see `caitool trainers list`).")
]
MaxStepsOpt = Annotated[int | None, typer.Option("--max-steps", min=1, help="Stop after N optimizer steps.")]
EpochsOpt = Annotated[float | None, typer.Option("--epochs", min=0, help="Passes over the data.")]
LrOpt = Annotated[float | None, typer.Option("--lr", min=0, help="Learning rate.")]
BatchSizeOpt = Annotated[int | None, typer.Option("--batch-size", min=1, help="Batch size per device.")]
LoraOpt = Annotated[
    bool, typer.Option("--lora", help="Train LoRA adapters (peft; `peft:` in --config), merged on save.")
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed for the data split and training.")]
ConfigOpt = Annotated[
    str | None,
    typer.Option("--config", help="The backend's own arguments, YAML or JSON; flags override it."),
]
AccelerateOpt = Annotated[
    str | None,
    typer.Option("--accelerate-config", help="trl: run under `accelerate launch --config_file FILE`."),
]
DeepSpeedOpt = Annotated[
    str | None, typer.Option("--deepspeed", help="trl: DeepSpeed JSON config (runs under accelerate launch).")
]
DryRunOpt = Annotated[
    bool,
    typer.Option(
        "--dry-run", help="Validate the data and print the plan or launch command on stdout; no training."
    ),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress or summary on stderr.")]
OverwriteOpt = Annotated[
    bool, typer.Option("--overwrite", help="Train into a directory that already holds a caitool manifest.")
]
PresetOpt = Annotated[
    str | None,
    typer.Option(
        "--preset",
        help="paper: the hyper-parameters Bai et al. 2022 report (docs/training.md); --config and flags win.",
    ),
]

# The flags every training command takes, in --help order after the command's own: name -> (type, default).
_TRAINING: dict[str, tuple[Any, Any]] = {
    "backend": (BackendOpt, "trl"),
    "max_steps": (MaxStepsOpt, None),
    "epochs": (EpochsOpt, None),
    "lr": (LrOpt, None),
    "batch_size": (BatchSizeOpt, None),
    "lora": (LoraOpt, False),
    "seed": (SeedOpt, 0),
    "config": (ConfigOpt, None),
    "accelerate_config": (AccelerateOpt, None),
    "deepspeed": (DeepSpeedOpt, None),
    "preset": (PresetOpt, None),
    "on_bad_input": (OnBadInputOpt, "fail"),
    "rejects": (RejectsOpt, None),
    "dry_run": (DryRunOpt, False),
    "quiet": (QuietOpt, False),
    "overwrite": (OverwriteOpt, False),
}
training_command = with_shared_flags(_TRAINING)

# --------------------------------------------------------------------------------------------------- helpers


def load_config(path: str | None) -> dict[str, Any]:
    """--config FILE: a JSON or YAML mapping (YAML needs PyYAML, which caitool does not install)."""
    if path is None:
        return {}
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"--config {path}: no such file")
    text = p.read_text(encoding="utf-8")
    if p.suffix.lower() in (".yaml", ".yml"):
        try:
            yaml: Any = importlib.import_module("yaml")  # optional: caitool does not depend on PyYAML
        except ImportError:
            raise ConfigError(
                f"--config {path}: reading YAML needs PyYAML, which is not installed",
                hint="pip install pyyaml, or write the file as JSON",
            ) from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"--config {path}: invalid YAML: {exc}") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"--config {path}:{exc.lineno}: invalid JSON: {exc.msg}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"--config {path}: expected a mapping of argument names to values")
    return data


def canonical_argv(ctx: typer.Context) -> tuple[str, ...]:
    """The command line as caitool understands it: the command name, positionals, then each option that
    differs from its default. Used for the manifest and to re-run the command under `accelerate launch`."""
    positionals: list[str] = []
    options: list[str] = []
    for param in ctx.command.params:  # typer vendors click: duck-type instead of isinstance
        if param.name is None or param.name not in ctx.params:
            continue
        value = ctx.params[param.name]
        kind = getattr(param, "param_type_name", "")
        if kind == "argument":
            positionals.append(str(value))
            continue
        if kind != "option" or value is None or value == param.default or value == []:
            continue
        if getattr(param, "is_flag", False):
            if value:
                options.append(param.opts[0])
            elif getattr(param, "secondary_opts", None):
                options.append(param.secondary_opts[0])
        elif param.multiple:
            for v in value:
                options += [param.opts[0], str(v)]
        else:
            options += [param.opts[0], str(value)]
    return (str(ctx.info_name), *positionals, *options)


def _check_output(output: str, overwrite: bool, dry_run: bool) -> Path:
    from caitool.trainers.manifest import MANIFEST

    out = Path(output)
    if out.exists() and not out.is_dir():
        raise UsageError(f"-o {output}: exists and is not a directory")
    if (out / MANIFEST).exists() and not overwrite and not dry_run:
        raise UsageError(f"-o {output} already holds a trained model ({MANIFEST})", hint="add --overwrite")
    return out


def _existing(path: str | None, flag: str) -> Path | None:
    if path is None:
        return None
    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{flag} {path}: no such file")
    return p


def _knobs(params: dict[str, Any], kl: float | None = None) -> Knobs:
    from caitool.trainers.base import Knobs

    return Knobs(
        max_steps=params["max_steps"],
        epochs=params["epochs"],
        lr=params["lr"],
        batch_size=params["batch_size"],
        lora=params["lora"],
        kl=kl,
        seed=params["seed"],
    )


def _bad_input(mode: str, rejects: str | None, output: Path, dry_run: bool) -> BadInputPolicy:
    """The data commands' --on-bad-input / --rejects, for training data. Skipped lines go to --rejects, by
    default OUTPUT_DIR.rejects.jsonl beside the output directory (a dry run writes none unless named).
    Under `accelerate launch` only rank 0 writes it, so the ranks do not write each line several times."""
    from caitool.cli._common import BadInputPolicy
    from caitool.runner import RunCounts

    other_rank = os.environ.get("RANK", "0") != "0"
    out = None if dry_run or other_rank else str(output)
    return BadInputPolicy(mode, None if other_rank else rejects, out, RunCounts())


def _run(ctx: typer.Context, job: TrainJob, bad: BadInputPolicy) -> None:
    """Run the job on --backend; then the manifest, the summary, or (dry run) the plan on stdout."""
    from caitool.console import info
    from caitool.trainers import get_backend
    from caitool.trainers.data import sha256_file
    from caitool.trainers.manifest import write_manifest

    backend = get_backend(ctx.params["backend"])
    if not job.dry_run:
        info(
            f"{job.command}: {backend.name} backend, {job.model} → {job.output}", quiet=job.quiet, style="dim"
        )
    result = backend.run(job)
    if bad.counts.rejected:
        where = f" (see {bad.path})" if bad.path else ""
        result.notes.append(f"{bad.counts.rejected} bad input lines skipped{where}")
    if job.dry_run:
        _print_plan(result)
        for note in result.notes:
            info(f"note: {note}", quiet=job.quiet, style="dim")
        return
    if not result.main_process or not result.trained:
        return
    mix = result.files.get("mix") if isinstance(result.files.get("mix"), list) else None
    manifest = {
        "command": job.command,
        "argv": ["caitool", *job.argv],
        "data": {
            "path": str(job.data),
            "sha256": sha256_file(job.data),
            "rows": result.data_rows,
            "mix": mix,
            "rejected": bad.counts.rejected,
            "rejects": str(bad.path) if bad.path and bad.counts.rejected else None,
        },
        "base_model": job.model,
        "reward_model": job.reward,
        "backend": {"name": backend.name, "version": backend.version()},
        "args": dict(ctx.params),
        "config": job.options,
        "preset": None if job.preset is None else {**job.preset.values(), "sources": job.preset.sources},
        "metrics": result.metrics,
        "launch_command": result.command,
        "files": {k: v for k, v in result.files.items() if k != "mix"},
        "notes": result.notes,
    }
    path = write_manifest(job.output, manifest)
    if result.metrics.get("heldout"):
        (job.output / "metrics.json").write_text(json.dumps(result.metrics, indent=2, sort_keys=True) + "\n")
    _summary(job, result, path)


def _print_plan(result: TrainResult) -> None:
    if result.command:
        typer.echo(shlex.join(result.command))
    else:
        typer.echo(json.dumps(result.metrics.get("plan", {}), indent=2, default=str))


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _summary(job: TrainJob, result: TrainResult, manifest: Path) -> None:
    from caitool.console import info

    m = result.metrics
    parts = [f"{job.command}: done"]
    if "steps" in m:
        parts.append(f"{m['steps']} steps in {m.get('train_seconds', 0):.1f}s")
    if isinstance(m.get("train_loss"), float):
        parts.append(f"loss {m['train_loss']:.4f}")
    held = m.get("heldout")
    if isinstance(held, dict) and held.get("n"):
        parts.append(
            f"held-out {held['n']} pairs: accuracy {_fmt(held['accuracy'])}, ECE {_fmt(held['ece'])}"
            f" (metrics.json)"
        )
    parts.append(f"→ {job.output}")
    info("; ".join(parts), quiet=job.quiet, style="dim")
    for note in result.notes:
        info(f"note: {note}", quiet=job.quiet, style="dim")


def _job(
    ctx: typer.Context,
    task: Task,
    data: str,
    output: str,
    model: str,
    *,
    kl: float | None = None,
    **extra: Any,
) -> tuple[TrainJob, BadInputPolicy]:
    """The job of a training command: its own arguments, and the shared flags from `ctx.params`."""
    from caitool.trainers.base import TrainJob
    from caitool.trainers.presets import get_preset

    p = ctx.params
    data_path = Path(data)
    if not data_path.is_file():
        raise UsageError(f"{data}: no such file")
    out = _check_output(output, p["overwrite"], p["dry_run"])
    chosen_preset = get_preset(p["preset"], task, extra.get("algo"))
    bad = _bad_input(p["on_bad_input"], p["rejects"], out, p["dry_run"])
    job = TrainJob(
        task=task,
        data=data_path,
        output=out,
        model=model,
        knobs=_knobs(p, kl),
        options=load_config(p["config"]),
        preset=chosen_preset,
        on_bad_input=bad.handle if bad.mode == "skip" else None,
        accelerate_config=_existing(p["accelerate_config"], "--accelerate-config"),
        deepspeed=_existing(p["deepspeed"], "--deepspeed"),
        dry_run=p["dry_run"],
        quiet=p["quiet"],
        argv=canonical_argv(ctx),
        **extra,
    )
    return job, bad


# --------------------------------------------------------------------------------------------------- commands


@app.command("sft")
@training_command
def sft(
    ctx: typer.Context,
    data: Annotated[str, typer.Argument(help="critique-revise output (--format sft or trace), JSONL.")],
    output: OutputDirOpt,
    model: Annotated[str, typer.Option("--model", "-m", help="Base model: a directory or hub id.")],
    rounds_kept: Annotated[
        int | None,
        typer.Option(
            "--rounds-kept", min=1, help="Keep revisions of rounds 1..N (SL-CAI-N); default all rows."
        ),
    ] = None,
    mix: Annotated[
        list[str] | None,
        typer.Option(
            "--mix", help="FILE:WEIGHT, add WEIGHT × rows of helpfulness data from FILE (repeatable)."
        ),
    ] = None,
) -> None:
    """SL-CAI: fine-tune BASE on critique-revise revisions (assistant-only loss), optionally with LoRA."""
    from caitool.trainers.data import parse_mix

    mixes = tuple(parse_mix(m) for m in mix or [])
    for m in mixes:
        if not m.path.is_file():
            raise UsageError(f"--mix {m.path}: no such file")
    job, bad = _job(ctx, "sft", data, output, model, mix=mixes, rounds_kept=rounds_kept)
    _run(ctx, job, bad)


@app.command("train-pm")
@training_command
def train_pm(
    ctx: typer.Context,
    pairs: Annotated[str, typer.Argument(help="label-pairs output (TRL preference JSONL with p_chosen).")],
    output: OutputDirOpt,
    model: Annotated[str, typer.Option("--model", "-m", help="Base model for the preference model.")],
    loss: Annotated[
        str,
        typer.Option("--loss", help="soft (cross-entropy on p_chosen), bt (hard Bradley–Terry) or margin."),
    ] = "soft",
    holdout: Annotated[
        float,
        typer.Option("--holdout", min=0, max=0.9, help="Fraction of pairs held out for accuracy and ECE."),
    ] = 0.1,
) -> None:
    """Train a preference model on AI-labelled pairs; held-out accuracy and ECE go to DIR/metrics.json."""
    from caitool.cli._common import check_choice
    from caitool.trainers.base import LOSSES

    check_choice("--loss", loss, LOSSES)
    job, bad = _job(ctx, "pm", pairs, output, model, loss=loss, holdout=holdout)
    _run(ctx, job, bad)


def _reward_source(reward: str | None) -> tuple[str | None, str | None]:
    """(preference-model directory, feedback-model spec): one of them, or neither."""
    if reward is None:
        return None, None
    if Path(reward).is_dir():
        return reward, None
    from caitool.cli._common import names_a_provider

    if names_a_provider(reward):  # a built-in provider or an installed plugin's
        return None, reward
    raise UsageError(
        f"--reward {reward}: neither a preference-model directory (train-pm output) nor a provider/model spec"
    )


def _check_dirs(policy: str, reward: str | None) -> None:
    from caitool.trainers.manifest import read_manifest

    pm = read_manifest(Path(policy)) if Path(policy).is_dir() else None
    if pm and pm.get("command") == "train-pm":
        raise UsageError(
            f"--policy {policy} is a preference model (train-pm output)", hint="pass it as --reward"
        )
    rm = read_manifest(Path(reward)) if reward else None
    if rm and rm.get("command") in ("sft", "rl"):
        raise UsageError(
            f"--reward {reward} is a policy ({rm.get('command')} output), not a preference model"
        )


@app.command("rl")
@training_command
def rl(
    ctx: typer.Context,
    prompts: Annotated[
        str, typer.Argument(help="Prompts JSONL (or, for --algo dpo, the preference pairs from label-pairs).")
    ],
    output: OutputDirOpt,
    policy: Annotated[
        str, typer.Option("--policy", "--model", "-m", help="Policy to start from (e.g. sft output).")
    ],
    algo: Annotated[
        str, typer.Option("--algo", help="grpo, rloo, online-dpo, dpo (offline) or ppo.")
    ] = "grpo",
    reward: Annotated[
        str | None,
        typer.Option("--reward", help="PM_DIR from train-pm, or provider/model for direct RLAIF."),
    ] = None,
    reward_base_url: Annotated[
        str | None, typer.Option("--reward-base-url", help="Server URL of the --reward feedback model.")
    ] = None,
    reward_constitution: Annotated[
        str | None, typer.Option("--reward-constitution", help="Comparison principles for direct RLAIF.")
    ] = None,
    reward_one_order: Annotated[
        bool, typer.Option("--reward-one-order", help="Direct RLAIF: ask (A,B) only, not both orders.")
    ] = False,
    kl: Annotated[
        float | None,
        typer.Option(
            "--kl", "--beta", min=0, help="KL coefficient to the reference (backend default if unset)."
        ),
    ] = None,
) -> None:
    """RL from AI feedback: optimise the policy against the preference model (or DPO on the pairs)."""
    from caitool.cli._common import check_choice
    from caitool.trainers.base import ALGOS

    check_choice("--algo", algo, ALGOS)
    if algo == "dpo" and reward is not None:
        raise UsageError("--algo dpo trains offline on preference pairs and takes no --reward")
    reward_dir, reward_spec = _reward_source(reward)
    _check_dirs(policy, reward_dir)
    reward_fn = None
    if reward_spec is not None:
        if ctx.params["backend"] != "trl":
            raise UsageError(f"--reward {reward_spec}: direct RLAIF runs on the trl backend only")
        if algo not in ("grpo", "rloo", "online-dpo"):
            raise UsageError(f"--algo {algo} takes a preference-model directory, not a feedback model")
        if not ctx.params["dry_run"]:
            from caitool.cli._common import build_client
            from caitool.tasks.rlaif_reward import ai_feedback_reward

            client = build_client(
                reward_spec,
                base_url=reward_base_url,
                api_key=None,
                timeout=120.0,
                retries=6,
                rpm=None,
                tpm=None,
            )
            reward_fn = ai_feedback_reward(
                client, reward_constitution, both_orders=not reward_one_order, seed=ctx.params["seed"]
            )
    job, bad = _job(
        ctx,
        "rl",
        prompts,
        output,
        policy,
        kl=kl,
        algo=algo,
        reward=reward_dir or reward_spec,
        reward_fn=reward_fn,
    )
    try:
        _run(ctx, job, bad)
    finally:
        if reward_fn is not None:
            reward_fn.close()


@trainers_app.command("list")
def list_trainers(
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per backend.")] = False,
) -> None:
    """Show each training backend, whether it is usable here, and its version."""
    from caitool.trainers import list_backends

    rows = list_backends()
    if as_json:
        for b in rows:
            typer.echo(json.dumps(b.to_dict()))
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table()
    for col in ("backend", "installed", "version", "ready", "from", "detail"):
        table.add_column(col, overflow="fold")
    for b in rows:
        yes = {True: "yes", False: "no"}
        cells = (b.name, yes[b.installed], b.version or "-", yes[b.ready], b.source, b.detail)
        table.add_row(*(Text(c) for c in cells))  # plain text: "pip install 'caitool[train]'" keeps [train]
    Console(highlight=False, soft_wrap=False).print(table)
