"""The README's commands use only files the repository has, files an earlier command wrote (`-o`), or files
named in capitals as the user's own; and every relative link in README and docs/ points at a file that exists.
(A newcomer following the README literally hit `sl-prompts.jsonl`, `hh-helpful.jsonl` and
`my-constitution.toml`.)
"""

from __future__ import annotations

import re
import shlex

from tests.conftest import REPO

_FILE = re.compile(r"\.(jsonl|json|toml|yaml|gguf)$")


def _bash_blocks(markdown: str) -> list[str]:
    return re.findall(r"```bash\n(.*?)```", markdown, re.DOTALL)


def test_readme_commands_use_existing_or_written_files() -> None:
    written: set[str] = set()
    unknown = []
    for block in _bash_blocks((REPO / "README.md").read_text()):
        for line in block.splitlines():
            words = shlex.split(line.split("#", 1)[0])
            if not words or words[0] != "caitool":
                continue
            for prev, word in zip(["", *words], words, strict=False):
                if prev in ("-o", "--output"):
                    written.add(word)
                elif _FILE.search(word) and not (
                    (REPO / word).exists() or word in written or word[0].isupper()
                ):
                    unknown.append(word)
    assert not unknown, f"README commands use files that exist nowhere: {unknown}"


def test_relative_links_in_docs_resolve() -> None:
    broken = []
    for doc in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)\s#]+)(?:#[^)]*)?\)", doc.read_text()):
            if "://" not in target and not (doc.parent / target).exists():
                broken.append(f"{doc.relative_to(REPO)} → {target}")
    assert not broken, broken
