"""Pairwise model comparisons for Elo (the paper's evaluation, Sec. 2 and Fig. 2), judged by an AI
feedback model with label-pairs' machinery.

For one prompt: each model's response (sampled, or taken from `--responses` files), then for every pair of
models and every criterion, the (A)/(B) question under that criterion's constitution, in both orders by
default. Each judgment row is what `caitool elo` reads (`criterion`, `model_a`, `model_b`, `p_a`), plus the
texts and the label's provenance.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from caitool.evaluation import paper_samples
from caitool.inputs import Line, PairItem, PromptItem, prompt_items
from caitool.providers.base import GenerateParams, ModelClient, Usage
from caitool.retry import ResilientClient
from caitool.runner import Job
from caitool.tasks.base import Request, StepCache
from caitool.tasks.label_pairs import Labeler
from caitool.tasks.sample_pairs import sample_responses


@dataclass(frozen=True)
class CompareItem:
    prompt: PromptItem
    given: tuple[tuple[str, str], ...] = ()  # (model name, response) read from --responses files


@dataclass(frozen=True)
class CompareRun:
    """What a compare run records beyond its models and labelers: the judge and the servers (URLs as the
    manifest shows them, user-info redacted), and how the input is read."""

    judge: str
    judge_url: str | None = None
    models: Mapping[str, tuple[str, str | None]] = dataclasses.field(
        default_factory=dict
    )  # name -> spec, url
    paper_sample: int = 0
    field: str | None = None


class CompareTask:
    """`caitool compare` as a record task (see `caitool.tasks.base.RecordTask`). `settings` is what the
    command fingerprints (the judge, the models and their servers, the criteria's constitutions, ...)."""

    command = "compare"
    id_key = "source_id"

    def __init__(
        self,
        sampled: Mapping[str, ModelClient],
        given: dict[str, dict[str, str]],
        labelers: dict[str, Labeler],
        params: GenerateParams,
        seed: int,
        run: CompareRun,
    ) -> None:
        # name -> client (None: the responses come from --responses files)
        self.models: dict[str, ModelClient | None] = {**dict.fromkeys(given), **sampled}
        self.given = given  # name -> {record id: response}
        self.labelers = labelers  # criterion -> labeler
        self.params = params
        self.seed = seed
        self.run = run
        self.prompt_format: str = next(iter(labelers.values())).settings.mode

    def read(self, line: Line) -> list[Job[Any]]:
        """A prompt (or a paper samples row's), with the --responses files' answers to it."""
        if self.run.field is None and paper_samples.is_paper_row(line.data):
            found = [paper_samples.prompt(line)]
        else:
            found = prompt_items(line, field=self.run.field)
        return [
            Job(
                rid,
                line.where,
                CompareItem(item, tuple((n, t[rid]) for n, t in self.given.items() if rid in t)),
            )
            for rid, item in found
        ]

    def settings(self) -> dict[str, Any]:
        label = next(iter(self.labelers.values())).settings
        return {
            "judge": self.run.judge,
            "base_url": self.run.judge_url,
            "models": {name: list(self.run.models[name]) for name in sorted(self.run.models)},
            "paper_sample": self.run.paper_sample,
            "responses": sorted(self.given),
            "criteria": {crit: labeler.constitution.sha256 for crit, labeler in self.labelers.items()},
            "both_orders": label.both_orders,
            "ensemble": label.ensemble,
            "seed": self.seed,
            "max_tokens": self.params.max_tokens,
        }

    def preview(self, job: Job[CompareItem]) -> list[tuple[str, Request]]:
        """The sampled models' requests, then the first pair's question per criterion (an answer still to
        be sampled shown as <NAME's response>)."""
        item = job.item
        given = dict(item.given)
        steps: list[tuple[str, Request]] = [
            (f"sample from {name}", list(item.prompt.messages))
            for name, client in self.models.items()
            if name not in given and client is not None
        ]
        names = sorted(given.keys() | {n for n, c in self.models.items() if c is not None})
        if len(names) < 2:
            return steps
        a, b = names[:2]
        pair = PairItem(item.prompt.messages, *(given.get(n, f"<{n}'s response>") for n in (a, b)))
        for criterion, labeler in self.labelers.items():
            rid = f"{job.id}:{a}:{b}:{criterion}"
            p = labeler.principles(rid)[0]
            request = labeler.question_request(rid, 0, pair, p, "ab")
            steps.append((f"{criterion}: {a} vs {b} (principle {p.id})", request))
        return steps

    async def process(self, job: Job[CompareItem], cache: StepCache) -> list[dict[str, Any]]:
        item = job.item
        responses = dict(item.given)
        for name, client in self.models.items():
            if name in responses or client is None:
                continue
            (text,) = await sample_responses(
                client,
                item.prompt,
                1,
                self.params,
                seed=self.seed,
                record_id=f"{job.id}@{name}",
                usage=Usage(),
                cache=cache,
            )
            responses[name] = text
        rows = []
        for (a, ra), (b, rb) in itertools.combinations(sorted(responses.items()), 2):
            pair = PairItem(item.prompt.messages, ra, rb)
            for criterion, labeler in self.labelers.items():
                label = await labeler.label(Job(f"{job.id}:{a}:{b}:{criterion}", job.where, pair))
                meta = label["caitool"]
                rows.append(
                    {
                        "id": f"{job.id}:{a}:{b}:{criterion}",
                        "source_id": job.id,
                        "criterion": criterion,
                        "model_a": a,
                        "model_b": b,
                        "p_a": meta["p_a"],
                        "source": "ai",
                        "prompt": label["prompt"],
                        "response_a": ra,
                        "response_b": rb,
                        "caitool": {
                            k: meta[k]
                            for k in ("label_source", "principle_ids", "questions", "position_disagreement")
                        },
                    }
                )
        return rows


def read_responses(path: str, *, field: str | None, paper_sample: int) -> dict[str, str]:
    """A --responses file -> {record id: response}. Rows are {id|prompt, response}, or the paper
    repository's samples/*.jsonl rows (prompt from rl_prompt, the chosen sampled answer, stop marker cut)."""
    from caitool.errors import InputError
    from caitool.evaluation import paper_samples
    from caitool.inputs import DEFAULT_FIELDS, prompt_items, read_lines

    table: dict[str, str] = {}
    for line in read_lines(path):
        if isinstance(line, InputError):
            raise line
        data = line.data
        if paper_samples.is_sl_trace(data):
            raise InputError(
                line.where,
                "an SL-CAI trace of the paper (cst), not a model's samples: compare its *_RLMADISON, "
                "*_HRLHF or *_HHRLHF files (`caitool import-paper-samples` reads SL-CAI traces)",
            )
        if field is None and paper_samples.is_policy_samples(data):
            rid, _ = paper_samples.prompt(line)
            table[rid] = paper_samples.sampled_response(line, paper_sample)
            continue
        if field is None and "id" in data and not any(name in data for name in DEFAULT_FIELDS):
            rid = str(data["id"])  # an id is enough to match the prompt
        else:
            ((rid, _),) = prompt_items(line, field=field)
        text = data.get("response")
        if not isinstance(text, str):
            raise InputError(line.where, "missing string field 'response'")
        table[rid] = text
    return table


def criteria_labelers(
    judge: ResilientClient, criteria: str, seed: int, ensemble: int, *, both_orders: bool
) -> dict[str, Labeler]:
    """--criteria CRITERION=CONSTITUTION,... -> a labeler per criterion, the judge's mode and votes resolved
    as label-pairs resolves them."""
    from caitool.constitution import load_constitution
    from caitool.errors import UsageError
    from caitool.tasks.ab_question import resolve_label_mode
    from caitool.tasks.label_pairs import LabelSettings, load_label_templates

    mode, n_votes = resolve_label_mode(judge, "auto", None)
    templates = load_label_templates()
    labelers: dict[str, Labeler] = {}
    for entry in criteria.split(","):
        crit, sep, cons_name = entry.partition("=")
        if not sep:
            raise UsageError(f"--criteria {entry!r}: expected CRITERION=CONSTITUTION")
        cons = load_constitution(cons_name)
        settings = LabelSettings(
            mode=mode, seed=seed, ensemble=ensemble, both_orders=both_orders, votes=n_votes
        )
        labelers[crit] = Labeler(judge, cons, templates, settings)
    return labelers
