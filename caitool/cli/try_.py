"""`caitool try`: one prompt through the paper's pipeline, live in the terminal.

The rounds are the ones `critique-revise` runs (the same CritiqueReviser, templates and seeded principle
draw); `try` watches its checkpoints (`save_step`) and prints each answer as it is finished. The label is
the one `label-pairs` would give the pair (initial response, final revision). On a terminal a spinner says
what is being generated; piped, the same content comes out as plain text.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from caitool.cli import app
from caitool.cli._options import (
    ApiKeyOpt,
    BaseUrlOpt,
    ConstitutionOpt,
    ModelOpt,
    RetriesOpt,
    SeedOpt,
    TimeoutOpt,
)


@app.command("try")
def try_(
    prompt: Annotated[str, typer.Argument(help="The human turn to send through the rounds.")],
    model: ModelOpt = None,
    rounds: Annotated[int, typer.Option("--rounds", min=1, help="Critique → revision rounds.")] = 4,
    constitution: ConstitutionOpt = None,
    seed: SeedOpt = 0,
    temperature: Annotated[float, typer.Option("--temperature", min=0)] = 1.0,
    max_tokens: Annotated[int, typer.Option("--max-tokens", min=1, help="Tokens per model answer.")] = 256,
    base_url: BaseUrlOpt = None,
    api_key: ApiKeyOpt = None,
    timeout: TimeoutOpt = 120.0,
    retries: RetriesOpt = 6,
) -> None:
    """Watch one prompt go through critique → revision, then the (A)/(B) label of initial vs final.

    Prints the initial response, then each round's principle, critique and revision as they arrive, the
    final revision, and P(final is better) under a sampled comparison principle. With no --model, the
    embedded model runs offline.
    """
    import asyncio

    from caitool.cli._common import ClientFlags
    from caitool.constitution import load_constitution
    from caitool.providers.base import GenerateParams
    from caitool.tasks.critique_revise import CritiqueReviseSettings, load_templates

    if not prompt.strip():
        from caitool.errors import UsageError

        raise UsageError("PROMPT is empty")
    flags = ClientFlags.from_params(
        {"model": model, "base_url": base_url, "api_key": api_key, "timeout": timeout, "retries": retries}
    )
    cons = load_constitution(constitution)
    templates = load_templates()
    settings = CritiqueReviseSettings(
        rounds=rounds,
        seed=seed,
        params=GenerateParams(temperature=temperature, max_tokens=max_tokens),
    )
    asyncio.run(_try(prompt, flags.build(), cons, templates, settings, flags.model))


class _Screen:
    """Sections on stdout as they arrive; on a terminal, a spinner naming what is being generated."""

    def __init__(self) -> None:
        from rich.console import Console

        # markup=False: model output is printed as it is, never read as Rich markup.
        self.console = Console(markup=False, highlight=False, emoji=False, soft_wrap=True)
        self.status: Any = None

    def __enter__(self) -> _Screen:
        if self.console.is_terminal:
            self.status = self.console.status("")
            self.status.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.status is not None:
            self.status.stop()

    def waiting(self, what: str) -> None:
        if self.status is not None:
            self.status.update(what + " …")

    def section(self, title: str, text: str, style: str = "bold") -> None:
        from rich.text import Text

        self.console.print(Text(title, style=style))
        self.console.print(Text(text if text.strip() else "(empty)"))
        self.console.print()
        self.console.file.flush()


async def _try(prompt: str, client: Any, cons: Any, templates: Any, settings: Any, spec: str) -> None:
    from caitool.inputs import PairItem, PromptItem
    from caitool.parsing import clean_critique, clean_response, clean_revision
    from caitool.providers.base import Message
    from caitool.runner import Job
    from caitool.tasks.ab_question import resolve_label_mode
    from caitool.tasks.base import StepCache
    from caitool.tasks.critique_revise import CritiqueReviser, draw_principles
    from caitool.tasks.label_pairs import Labeler, LabelSettings, load_label_templates

    rid = "try"
    item = PromptItem((Message("user", prompt),))
    principles = draw_principles(cons, settings.seed, rid, settings.rounds)
    with _Screen() as screen:

        def show(_id: str, step: str, data: Any) -> None:
            text = str(data["text"])
            if step == "initial":
                screen.section(f"Initial response ({spec})", clean_response(text), "bold cyan")
                what = "critique"
                k = 1
            else:
                k = int(step[1 : step.index(".")])
                p = principles[k - 1]
                if step.endswith(".critique"):
                    screen.section(f"Round {k} · {p.id}", p.critique, "bold magenta")
                    screen.section(f"Round {k} · critique", clean_critique(text), "bold yellow")
                    what = "revision"
                else:
                    screen.section(f"Round {k} · revision", clean_revision(text)[0], "bold green")
                    what = "critique"
                    k += 1
            if k <= len(principles):
                screen.waiting(f"round {k}: {what} under {principles[k - 1].id}")
            else:
                screen.waiting("labelling initial vs final")

        try:
            screen.waiting(f"sampling the initial response from {spec}")
            reviser = CritiqueReviser(client, cons, templates, settings)
            trace = await reviser.run(Job(rid, "try", item), StepCache(save=show))
            screen.section("Final revision", trace["final_response"], "bold green")
            mode, votes = resolve_label_mode(client, "auto", None)
            labeler = Labeler(
                client,
                cons,
                load_label_templates(),
                LabelSettings(mode=mode, seed=settings.seed, votes=votes),
            )
            pair = PairItem(item.messages, trace["initial_response"], trace["final_response"])
            row = await labeler.label(Job(rid, "try", pair))
        finally:
            await client.aclose()
        meta = row["caitool"]
        pid = meta["principle_ids"][0]
        p_final = 1.0 - float(meta["p_a"])
        winner = "(B) the final revision" if p_final >= 0.5 else "(A) the initial response"
        screen.section(
            f"Label under {pid}: {cons.comparison(pid).text}",
            f"{winner} is better: P(B) = {p_final:.3f}, P(A) = {1 - p_final:.3f} ({meta['label_source']})",
            "bold",
        )
