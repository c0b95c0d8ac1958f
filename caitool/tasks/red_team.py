"""Red-team prompt generation by few-shot prompting (Bai et al. 2022 Sec. 3.1: 140,335 of the 182,831 red-team
prompts were written by a model shown human-written ones), for `caitool red-team`.

Reads: seed prompts (`caitool.evaluation.red_team.Seed`).
Does: request k (id `rt-00000k`) shows `shots` seeds drawn without replacement (seeded by the run seed and the
request id, so reruns draw the same) and asks for one new prompt, with the templates of
`prompts/red_team.toml` (chat models) or as a list of `Human:` turns to continue (base models,
`--prompt-format completion`); the answer is cleaned (first line, no numbering, quotes or "Human:" prefix).
Writes: one raw generation row per request through the durable runner (resume, errors file, manifest);
`finish` then reads them all back and deduplicates them (`caitool.evaluation.red_team.deduplicate`), and
`write_files` writes the kept prompts, the dropped ones with their reason, and the report.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from caitool.errors import ConfigError
from caitool.evaluation.red_team import DedupSettings, Seed, deduplicate
from caitool.evaluation.stats import load_monitors
from caitool.prompts import check_template, content_hash, load_toml, render
from caitool.providers.base import GenerateParams, Message, Usage
from caitool.retry import ResilientClient
from caitool.runner import Job
from caitool.seeds import derive_seed
from caitool.store import read_jsonl, write_jsonl_atomic

PromptFormat = Literal["chat", "completion"]

_LEADING = re.compile(
    r"^\s*(?:(?:human|user|question|q|prompt|new question|request)\s*:\s*|[-*•]\s+|\(?\d{1,3}[.):]\s+)+",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class RedTeamTemplates:
    chat: dict[str, Any]
    completion: dict[str, Any]
    source: str
    sha256: str


def load_red_team_templates(name_or_path: str = "red_team") -> RedTeamTemplates:
    data, source, sha = load_toml(name_or_path)
    chat, completion = data.get("chat", {}), data.get("completion", {})
    for key in ("system", "separator"):
        check_template(f"{source}: chat.{key}", chat.get(key, ""), set())
    check_template(f"{source}: chat.example", chat.get("example", "- $prompt"), {"prompt"})
    check_template(f"{source}: chat.instruction", chat.get("instruction", "$examples"), {"examples"})
    check_template(f"{source}: completion.header", completion.get("header", "$examples"), {"examples"})
    check_template(f"{source}: completion.example", completion.get("example", "$prompt"), {"prompt"})
    for key in ("separator", "cue"):
        check_template(f"{source}: completion.{key}", completion.get(key, ""), set())
    if "$examples" not in chat.get("instruction", "$examples") or "$examples" not in completion.get(
        "header", "$examples"
    ):
        raise ConfigError(f"{source}: chat.instruction and completion.header must contain $examples")
    stop = completion.get("stop", [])
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise ConfigError(f"{source}: completion.stop must be a list of strings")
    return RedTeamTemplates(chat, completion, source, sha)


def request_id(index: int) -> str:
    return f"rt-{index:06d}"


def draw_shots(seeds: list[Seed], shots: int, seed: int, rid: str) -> list[Seed]:
    rng = random.Random(f"caitool:red-team:{seed}:{rid}")
    return rng.sample(seeds, min(shots, len(seeds)))


def render_request(t: RedTeamTemplates, shots: list[Seed], fmt: PromptFormat) -> list[Message] | str:
    if fmt == "chat":
        c = t.chat
        examples = c.get("separator", "\n").join(
            render(c.get("example", "- $prompt"), prompt=s.text) for s in shots
        )
        messages = [Message("system", c["system"])] if c.get("system") else []
        return [*messages, Message("user", render(c.get("instruction", "$examples"), examples=examples))]
    c = t.completion
    examples = c.get("separator", "").join(render(c.get("example", "$prompt"), prompt=s.text) for s in shots)
    return render(c.get("header", "$examples"), examples=examples) + c.get("cue", "")


def clean_prompt(raw: str) -> str:
    """The first non-empty line, without list markers, speaker labels or wrapping quotes."""
    for line in raw.splitlines():
        text = _LEADING.sub("", line).strip()
        if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'`":
            text = text[1:-1].strip()
        text = text.strip('"“”` ').strip()
        if text:
            return text
    return ""


class RedTeamGenerator:
    """Request k → one generated prompt. `client` may be None for a dry run (`preview` makes no call)."""

    command = "red-team"

    def __init__(
        self,
        client: ResilientClient | None,
        seeds: list[Seed],
        templates: RedTeamTemplates,
        *,
        shots: int,
        seed: int,
        params: GenerateParams,
        prompt_format: PromptFormat = "chat",
    ) -> None:
        self.client = client
        self.seeds = seeds
        self.templates = templates
        self.shots = shots
        self.seed = seed
        self.params = params
        self.format = prompt_format

    def request(self, rid: str) -> tuple[list[Seed], list[Message] | str]:
        shots = draw_shots(self.seeds, self.shots, self.seed, rid)
        return shots, render_request(self.templates, shots, self.format)

    async def run(self, job: Job[int]) -> dict[str, Any]:
        assert self.client is not None, "a dry run's generator makes no calls"
        shots, request = self.request(job.id)
        p = self.params
        usage = Usage()
        if isinstance(request, str):
            stop = tuple(self.templates.completion.get("stop", ()))
            params = GenerateParams(
                temperature=p.temperature,
                max_tokens=p.max_tokens,
                top_p=p.top_p,
                stop=stop,
                seed=derive_seed(self.seed, job.id, "red-team"),
            )
            result = await self.client.complete(request, params)
        else:
            params = GenerateParams(
                temperature=p.temperature,
                max_tokens=p.max_tokens,
                top_p=p.top_p,
                stop=p.stop,
                seed=derive_seed(self.seed, job.id, "red-team"),
            )
            result = await self.client.chat(request, params)
        usage.add(result.usage)
        return {
            "id": job.id,
            "prompt": clean_prompt(result.text),
            "raw": result.text,
            "seed_ids": [s.id for s in shots],
            "usage": usage.to_dict(),
        }

    def settings(self) -> dict[str, Any]:
        """Everything that changes the generations, for the resume fingerprint (the CLI adds `model` and
        `base_url`). Pinned by tests/test_eval_fingerprints_golden.py."""
        return {
            "seed": self.seed,
            "shots": self.shots,
            "prompt_format": self.format,
            "params": self.params.fingerprint(),
            "templates_sha256": self.templates.sha256,
            "seeds_sha256": content_hash([[s.id, s.text] for s in self.seeds]),
        }

    def jobs(self, n: int) -> Iterator[Job[int]]:
        return (Job(request_id(i), f"request {i}", i) for i in range(n))

    def preview(self) -> str:
        """The first request, exactly as it will be sent (`--dry-run`): a title line, then the request."""
        rid = request_id(0)
        shots, request = self.request(rid)
        lines = [f"===== {rid} [{self.format}]: seeds {', '.join(s.id for s in shots)} ====="]
        if isinstance(request, str):
            lines.append(request)
        else:
            lines += [json.dumps(m.to_dict(), ensure_ascii=False) for m in request]
        return "\n".join(lines)

    async def process(self, job: Job[int]) -> list[dict[str, Any]]:
        row = await self.run(job)
        assert self.client is not None
        row["caitool"] = {"model": self.client.spec, "seed": self.seed}
        return [row]


@dataclass(frozen=True)
class RedTeamResult:
    kept: list[dict[str, Any]]  # the output rows: id, prompt, seed_ids, caitool
    dropped: list[dict[str, Any]]
    report: dict[str, Any]


def finish(
    raw_path: str, n: int, seeds: list[Seed], dedup: DedupSettings, *, keep_refusals: bool, model: str
) -> RedTeamResult:
    """The first `n` generations of `raw_path`, deduplicated (no model calls: reruns re-filter for free)."""
    wanted = {request_id(i) for i in range(n)}
    rows = [r for r in read_jsonl(raw_path) if r.get("id") in wanted]
    refusals = () if keep_refusals else load_monitors().refusal
    kept, dropped, report = deduplicate(rows, seeds, dedup, refusals)
    report["model"] = model
    out_rows = [
        {
            "id": r["id"],
            "prompt": r["prompt"],
            "seed_ids": r.get("seed_ids", []),
            "caitool": r.get("caitool", {}),
        }
        for r in kept
    ]
    return RedTeamResult(out_rows, dropped, report)


def write_files(output: str, result: RedTeamResult) -> None:
    """The kept prompts to OUTPUT, with OUTPUT.dropped.jsonl and OUTPUT.report.json beside it, each replaced
    whole (they are recomputed from the raw generations on every run)."""
    write_jsonl_atomic(output, result.kept)
    write_jsonl_atomic(output + ".dropped.jsonl", result.dropped)
    Path(output + ".report.json").write_text(json.dumps(result.report, indent=2, ensure_ascii=False) + "\n")
