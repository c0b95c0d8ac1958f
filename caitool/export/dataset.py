"""`caitool export`: caitool outputs → a dataset folder (Parquet shards per configuration and split, a card,
provenance.json) that `datasets.load_dataset(DIR, CONFIG)` and the Hub read.

The folder is written beside its final place and renamed into it at the end: a reader, or a push, never
sees half an export.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from caitool.errors import UsageError
from caitool.export import card, provenance
from caitool.export.rows import KindFile, label_sources, p_chosen_histogram, principle_counts, read_kind_file

SHARD_ROWS = 100_000  # rows per Parquet file: ~100-500 MB of text, the size the Hub's viewer handles well


@dataclass
class ExportResult:
    folder: Path
    configs: list[card.ConfigSummary]


def parse_test_size(text: str | None) -> float | int | None:
    """`0.1` is a share of the prompts, `50` a number of prompts; None or 0: no test split."""
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"--test-size {text!r}: expected a fraction like 0.1 or a count like 50") from None
    if value == 0:
        return None
    if 0 < value < 1:
        return value
    if value >= 1 and value.is_integer():
        return int(value)
    raise UsageError(f"--test-size {text!r}: expected a fraction in (0, 1) or a whole number of prompts")


def test_groups(groups: set[str], test_size: float | int | None, seed: int) -> set[str]:
    """The prompt groups of the test split: a seeded draw over the sorted groups, so the same inputs and seed
    give the same split whatever the order of the files."""
    if test_size is None:
        return set()
    n = round(test_size * len(groups)) if isinstance(test_size, float) else test_size
    n = max(1, n)
    if n >= len(groups):
        raise UsageError(
            f"--test-size {test_size} leaves no prompt for the train split ({len(groups)} prompts in all)"
        )
    ordered = sorted(groups)
    random.Random(seed).shuffle(ordered)
    return set(ordered[:n])


def _table(rows: list[dict[str, Any]]) -> Any:
    import pyarrow as pa

    table = pa.Table.from_pylist(rows)
    # A column that is null in every row (e.g. `votes` with log-prob labels) has no type Parquet readers agree
    # on: store it as strings, which every reader loads as None.
    for i, col in enumerate(table.schema):
        if pa.types.is_null(col.type):
            table = table.set_column(i, pa.field(col.name, pa.string()), table.column(i).cast(pa.string()))
    return table


def _write_split(table: Any, folder: Path, config: str, split: str) -> None:
    import pyarrow.parquet as pq

    shards = max(1, -(-table.num_rows // SHARD_ROWS))
    (folder / "data" / config).mkdir(parents=True, exist_ok=True)
    for i in range(shards):
        part = table.slice(i * SHARD_ROWS, SHARD_ROWS)
        pq.write_table(part, folder / "data" / config / f"{split}-{i:05d}-of-{shards:05d}.parquet")


def _check_pyarrow() -> None:
    try:
        import pyarrow  # noqa: F401
        import yaml  # noqa: F401
    except ImportError as exc:
        raise UsageError(
            f"caitool export needs {exc.name}",
            hint='pip install "caitool[export]" (pyarrow, pyyaml, datasets)',
        ) from None


def prepare_folder(to: str, overwrite: bool) -> None:
    target = Path(to)
    if target.exists() and not target.is_dir():
        raise UsageError(f"--to {to}: exists and is not a folder")
    if target.is_dir() and any(target.iterdir()) and not overwrite:
        raise UsageError(f"--to {to}: the folder is not empty", hint="pass --overwrite to replace it")


def export_dataset(
    paths: list[str],
    to: str,
    *,
    test_size: float | int | None = None,
    seed: int = 0,
    allow_mixed: bool = False,
    overwrite: bool = False,
    license: str = "unknown",
    languages: tuple[str, ...] = ("en",),
    title: str | None = None,
    load_from: str | None = None,
) -> ExportResult:
    _check_pyarrow()
    if "-" in paths:
        raise UsageError("export reads files, not stdin: the manifest beside each file is its provenance")
    if len({os.path.realpath(p) for p in paths}) != len(paths):
        raise UsageError("the same file is given twice: its rows would be exported twice")
    prepare_folder(to, overwrite)

    # Every check before anything is written: lineage (manifests), shapes, mixed settings.
    lineages = {p: provenance.lineage(p) for p in paths}
    files = [read_kind_file(p) for p in paths]
    by_kind: dict[str, list[KindFile]] = {}
    for f in files:  # configurations in the order their first file was given: the first is the default
        by_kind.setdefault(f.kind, []).append(f)
    for kind, group in by_kind.items():
        differing = provenance.differing_keys([lineages[f.path][0] for f in group])
        if differing and not allow_mixed:
            names = ", ".join(Path(f.path).name for f in group)
            raise UsageError(
                f"the {kind} files ({names}) were made with different settings: {', '.join(differing)}",
                hint="export them separately, or pass --allow-mixed to put them in one configuration "
                "(the card lists each file's settings)",
            )

    test = test_groups({g for f in files for g in f.groups}, test_size, seed)
    target = Path(to)
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.export-", dir=target.parent))
    try:
        summaries = []
        for kind in by_kind:
            group = by_kind[kind]
            rows = [r for f in group for r in f.rows]
            where = ["test" if g in test else "train" for f in group for g in f.groups]
            table = _table(rows)
            splits: dict[str, int] = {}
            data_files: dict[str, str] = {}
            for split in ("train", "test"):
                idx = [i for i, s in enumerate(where) if s == split]
                if not idx:
                    continue
                _write_split(table.take(idx), work, kind, split)
                splits[split] = len(idx)
                data_files[split] = f"data/{kind}/{split}-*.parquet"
            prefs = kind == "preferences"
            summaries.append(
                card.ConfigSummary(
                    name=kind,
                    splits=splits,
                    data_files=data_files,
                    files=[lineages[f.path] for f in group],
                    mixed_keys=provenance.differing_keys([lineages[f.path][0] for f in group]),
                    principles=sorted(principle_counts(kind, rows).items(), key=lambda kv: (-kv[1], kv[0])),
                    label_sources=dict(label_sources(rows)) if prefs else None,
                    histogram=p_chosen_histogram(rows) if prefs else None,
                )
            )
        from caitool import __version__

        name = title or target.resolve().name
        (work / "README.md").write_text(
            card.render(
                summaries,
                title=name,
                license=license,
                languages=list(languages),
                version=__version__,
                seed=seed,
                test_split=bool(test),
                load_from=load_from or str(target),
            ),
            encoding="utf-8",
        )
        record = {
            "caitool": __version__,
            "split": {"test_size": test_size, "seed": seed, "test_prompts": len(test)},
            "configs": {
                s.name: {"splits": s.splits, "mixed_settings": s.mixed_keys, "files": s.files}
                for s in summaries
            },
        }
        (work / "provenance.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
        _replace(work, target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return ExportResult(target, summaries)


def _replace(work: Path, target: Path) -> None:
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
        os.replace(work, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(work, target)
