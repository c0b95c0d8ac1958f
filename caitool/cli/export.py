"""`caitool export`: caitool outputs as a dataset folder with a card, optionally pushed to the Hub."""

from __future__ import annotations

from typing import Annotated

import typer

from caitool.cli import app


@app.command("export")
def export(
    files: Annotated[
        list[str],
        typer.Argument(
            help="caitool outputs (critique-revise traces or SFT rows, label-pairs or mix preferences)."
        ),
    ],
    to: Annotated[str, typer.Option("--to", help="The dataset folder to write (Parquet, README.md card).")],
    test_size: Annotated[
        str | None,
        typer.Option(
            "--test-size",
            help="A test split of this share (0.1) or number (50) of the prompts; default: train only.",
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the test split's draw.")] = 0,
    allow_mixed: Annotated[
        bool,
        typer.Option(
            "--allow-mixed",
            help="Put files made with different settings in one configuration (the card lists each).",
        ),
    ] = False,
    license: Annotated[
        str, typer.Option("--license", help="The card's license id (Hub ids: apache-2.0, cc-by-4.0, ...).")
    ] = "unknown",
    language: Annotated[
        list[str] | None, typer.Option("--language", help="The rows' language(s), ISO 639-1 (default: en).")
    ] = None,
    title: Annotated[
        str | None, typer.Option("--title", help="The card's title (default: the folder name).")
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace a non-empty --to folder.")] = False,
    push_to_hub: Annotated[
        str | None,
        typer.Option(
            "--push-to-hub",
            metavar="ORG/NAME",
            help="Then upload the folder to this Hub dataset repo, one commit (token: HF_TOKEN or login).",
        ),
    ] = None,
    private: Annotated[bool, typer.Option("--private", help="Create the Hub repository private.")] = False,
) -> None:
    """Write a dataset folder from caitool outputs: Parquet shards per kind (traces, sft, preferences) and
    split, a README.md dataset card whose provenance comes from the manifests beside each file, and
    provenance.json. `datasets.load_dataset(DIR, "preferences")` loads it; TRL trainers take the sft and
    preferences configurations as they are.
    """
    from caitool.console import info
    from caitool.errors import UsageError
    from caitool.export import hub
    from caitool.export.dataset import export_dataset, parse_test_size

    if private and not push_to_hub:
        raise UsageError("--private applies to --push-to-hub")
    if push_to_hub:
        hub.check_ready(push_to_hub)  # before the export, not after it
    result = export_dataset(
        files,
        to,
        test_size=parse_test_size(test_size),
        seed=seed,
        allow_mixed=allow_mixed,
        overwrite=overwrite,
        license=license,
        languages=tuple(language or ["en"]),
        title=title or (push_to_hub.split("/")[1] if push_to_hub else None),
        load_from=push_to_hub,
    )
    parts = [f"{c.name} " + "/".join(f"{n} {s}" for s, n in c.splits.items()) for c in result.configs]
    info(f"export: {result.folder}: " + "; ".join(parts))
    if push_to_hub:
        url, commit = hub.push_folder(
            result.folder, push_to_hub, private=private, message=f"caitool export: {'; '.join(parts)}"
        )
        info(f"pushed: {commit}")
        print(url)
