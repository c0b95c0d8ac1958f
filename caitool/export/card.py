"""The dataset card (`README.md`): a YAML header the Hub and `datasets` read, and a text that says how the
rows were made. The wording lives in `dataset_card.md` beside this module (data, not code); this module
fills in its `$placeholders`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib.resources import files
from string import Template
from typing import Any

from caitool.export.rows import KIND_TITLES

_SIZE_CATEGORIES = [
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
]


def size_category(n: int) -> str:
    return next((name for bound, name in _SIZE_CATEGORIES if n < bound), "n>100M")


@dataclass
class ConfigSummary:
    """What the card says about one configuration (one kind)."""

    name: str
    splits: dict[str, int]  # split -> rows
    data_files: dict[str, str]  # split -> path pattern
    files: list[list[dict[str, Any]]]  # per input file: its stages, nearest first
    mixed_keys: list[str]
    principles: list[tuple[str, int]]
    label_sources: dict[str, int] | None = None
    histogram: list[tuple[float, float, int]] | None = None


def header(
    configs: list[ConfigSummary], *, license: str, languages: list[str], pretty_name: str
) -> dict[str, Any]:
    total = sum(sum(c.splits.values()) for c in configs)
    tags = ["constitutional-ai", "synthetic", "caitool"]
    if any(c.name == "preferences" for c in configs):
        tags += ["rlaif", "preference"]
    return {
        "license": license,
        "language": languages,
        "pretty_name": pretty_name,
        "task_categories": ["text-generation"],
        "tags": tags,
        "size_categories": [size_category(total)],
        "configs": [
            {
                "config_name": c.name,
                "data_files": [{"split": split, "path": path} for split, path in c.data_files.items()],
                **({"default": True} if i == 0 else {}),
            }
            for i, c in enumerate(configs)
        ],
    }


def _value(v: Any) -> str:
    text = v if isinstance(v, str) else json.dumps(v, sort_keys=True)
    return f"`{text}`" if text != "" else '`""`'


def _stage_lines(s: dict[str, Any]) -> list[str]:
    if s.get("command") is None:
        return [f"- `{s['file']}`: input not written by caitool, sha256 `{s.get('sha256')}`"]
    counts = ", ".join(f"{k} {v}" for k, v in s.get("counts", {}).items())
    lines = [
        f"- `{s['file']}`: `caitool {s['command']}` ({s.get('status')}; {counts}), caitool "
        f"{s.get('caitool_version')}, fingerprint `{s.get('fingerprint')}`"
    ]
    for name, m in s.get("models", {}).items():
        cost = "unknown" if m.get("cost_usd") is None else f"${m['cost_usd']:.4f}"
        lines.append(
            f"  - model `{name}`: {m.get('calls')} calls, {m.get('input_tokens')} input + "
            f"{m.get('output_tokens')} output tokens, cost {cost}"
        )
    if s.get("constitution_source"):
        lines.append(f"  - constitution source: `{s['constitution_source']}`")
    settings = s.get("settings", {})
    if settings:
        lines.append("  - settings: " + ", ".join(f"{k} {_value(v)}" for k, v in sorted(settings.items())))
    return lines


def _provenance(c: ConfigSummary) -> str:
    out = [f"### `{c.name}`", ""]
    if c.mixed_keys:
        out += [
            "**Mixed settings** (exported with `--allow-mixed`): the files of this configuration differ in "
            + ", ".join(f"`{k}`" for k in c.mixed_keys)
            + ".",
            "",
            "| file | " + " | ".join(c.mixed_keys) + " |",
            "| --- | " + " | ".join("---" for _ in c.mixed_keys) + " |",
        ]
        for stages in c.files:
            view = {"command": stages[0].get("command"), **stages[0].get("settings", {})}
            out.append(
                f"| `{stages[0]['file']}` | " + " | ".join(_value(view.get(k)) for k in c.mixed_keys) + " |"
            )
        out.append("")
    for stages in c.files:
        for s in stages:
            out += _stage_lines(s)
    return "\n".join(out)


def _principles(c: ConfigSummary) -> str:
    if not c.principles:
        return f"### `{c.name}`\n\nNo principle ids recorded.\n"
    total = sum(n for _, n in c.principles)
    rows = [f"| `{p}` | {n} | {100 * n / total:.1f} % |" for p, n in c.principles]
    unit = "principle draws" if c.name == "preferences" else "rounds"
    return "\n".join(
        [
            f"### `{c.name}` ({total} {unit})",
            "",
            "| principle | uses | share |",
            "| --- | ---: | ---: |",
            *rows,
            "",
        ]
    )


def _labels(c: ConfigSummary) -> str:
    if c.histogram is None:
        return ""
    peak = max((n for _, _, n in c.histogram), default=0) or 1
    rows = [f"| {lo:.2f}–{hi:.2f} | {n} | {'█' * round(20 * n / peak)} |" for lo, hi, n in c.histogram]
    sources = ", ".join(f"{k} {v}" for k, v in sorted((c.label_sources or {}).items()))
    return "\n".join(
        [
            "## Soft labels (`p_chosen`)",
            "",
            f"Label sources: {sources}.",
            "",
            "| p_chosen | rows | |",
            "| --- | ---: | --- |",
            *rows,
            "",
        ]
    )


def render(
    configs: list[ConfigSummary],
    *,
    title: str,
    license: str,
    languages: list[str],
    version: str,
    seed: int,
    test_split: bool,
    load_from: str,
) -> str:
    import yaml

    head = yaml.safe_dump(
        header(configs, license=license, languages=languages, pretty_name=title),
        sort_keys=False,
        allow_unicode=True,
    ).strip()
    table = ["| config | what | rows |", "| --- | --- | --- |"]
    for c in configs:
        counts = ", ".join(f"{split} {n}" for split, n in c.splits.items())
        table.append(f"| `{c.name}` | {KIND_TITLES[c.name]} | {counts} |")
    snippet = "\n".join(f'{c.name} = load_dataset("{load_from}", "{c.name}")' for c in configs)
    total = sum(sum(c.splits.values()) for c in configs)
    split_note = (
        f"The test split was drawn with seed {seed}."
        if test_split
        else "There is one split, `train`; `caitool export --test-size` draws a test split."
    )
    template = Template(files("caitool.export").joinpath("dataset_card.md").read_text(encoding="utf-8"))
    return template.substitute(
        header=head,
        title=title,
        summary=f"{total} rows in {len(configs)} configuration{'s' * (len(configs) != 1)}.",
        version=version,
        configs="\n".join(table),
        load_snippet=snippet,
        split_note=split_note,
        provenance="\n\n".join(_provenance(c) for c in configs),
        principles="\n".join(_principles(c) for c in configs),
        labels="\n" + "\n".join(_labels(c) for c in configs if c.histogram is not None),
    )
