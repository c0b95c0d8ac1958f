"""The import rules of the house (CONTRIBUTING.md), read from the source with `ast`: every import counts, the
ones inside functions too, since a lazy import is still a dependency.

- `tasks/` and `evaluation/` never import `cli/` or typer: they run without a shell (from Python, a notebook);
- `evaluation/` is pure statistics over files: no `retry`, `runner` or `providers`;
- `providers/` sit on the bottom floor: nothing of caitool but `errors`, `console` and `plugins`;
- `trainers/` see only data files: no `providers`, no `tasks`;
- in `cli/`, only `_common.py` reaches `pipeline` and `providers` (the provider types in `providers.base`
  excepted): a command is flags plus one call;
- nothing reaches through the retry wrapper to the provider behind it, or reads a capability from the model
  string: a provider declares its capabilities and `ResilientClient` forwards them.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "caitool"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> Iterator[tuple[int, str]]:
    """(line, imported name) for every import in the file: `import a.b` yields a.b, `from a import b` a.b."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                yield node.lineno, f"{node.module}.{alias.name}"


def under(module: str, *prefixes: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def violations(package: str, forbidden: tuple[str, ...], allowed: tuple[str, ...] = ()) -> list[str]:
    """`file:line imports X` for each import in `package` (a package folder or one module file) that falls
    under `forbidden` and not under `allowed`; a package's imports of its own modules are always allowed."""
    root = PACKAGE.joinpath(*package.split(".")[1:])
    files = [root.with_suffix(".py")] if root.with_suffix(".py").exists() else sorted(root.rglob("*.py"))
    found = []
    for path in files:
        for line, target in imports(path):
            if under(target, package) or under(target, *allowed) or not under(target, *forbidden):
                continue
            found.append(f"{path.relative_to(REPO)}:{line} imports {target}")
    return sorted(set(found))


def cli_modules() -> list[str]:
    """Every command module of `cli/` (not the package's `__init__`, which registers them, nor `_common`)."""
    skip = ("__init__.py", "_common.py")
    return sorted(module_name(p) for p in (PACKAGE / "cli").glob("*.py") if p.name not in skip)


RULES = [
    pytest.param("caitool.tasks", ("caitool.cli", "typer", "click"), (), id="tasks-no-cli"),
    pytest.param("caitool.evaluation", ("caitool.cli", "typer", "click"), (), id="evaluation-no-cli"),
    pytest.param(
        "caitool.evaluation",
        ("caitool.retry", "caitool.runner", "caitool.providers"),
        (),
        id="evaluation-is-statistics",
    ),
    pytest.param(
        "caitool.providers",
        ("caitool",),
        ("caitool.errors", "caitool.console", "caitool.plugins", "caitool.__version__"),
        id="providers-at-the-bottom",
    ),
    pytest.param("caitool.trainers", ("caitool.providers", "caitool.tasks"), (), id="trainers-see-data"),
    # The cost tiers sit beside the retry layer: they execute requests and know nothing of tasks or runs.
    pytest.param(
        "caitool.tiers",
        ("caitool.cli", "caitool.pipeline", "caitool.tasks", "caitool.engines", "typer", "click"),
        (),
        id="tiers-execute-requests",
    ),
    pytest.param("caitool.engines", ("caitool.cli", "typer", "click"), (), id="engines-no-cli"),
    pytest.param("caitool.budget", ("caitool.cli", "caitool.pipeline", "typer"), (), id="budget-no-cli"),
    pytest.param(
        "caitool.response_cache", ("caitool",), ("caitool.providers.base",), id="cache-on-the-contract"
    ),
    *(
        pytest.param(
            module,
            ("caitool.pipeline", "caitool.providers"),
            ("caitool.providers.base",),
            id=f"{module.rsplit('.', 1)[-1]}-through-_common",
        )
        for module in cli_modules()
    ),
]


@pytest.mark.parametrize(("package", "forbidden", "allowed"), RULES)
def test_import_rule(package: str, forbidden: tuple[str, ...], allowed: tuple[str, ...]) -> None:
    assert violations(package, forbidden, allowed) == []


def source_files() -> list[Path]:
    dirs = [PACKAGE, REPO / "tests", REPO / "benchmarks", REPO / "scripts", REPO / "examples"]
    return sorted(p for d in dirs if d.exists() for p in d.rglob("*.py") if p != Path(__file__).resolve())


# Written in two halves so that this file does not match itself.
REACH_THROUGH = "client." + "client"
SPEC_SNIFFING = 'startswith("' + 'local/")'


@pytest.mark.parametrize("needle", [REACH_THROUGH, SPEC_SNIFFING])
def test_no_reach_through_the_wrapper_or_sniffing_the_spec(needle: str) -> None:
    hits = [
        f"{p.relative_to(REPO)}:{n}"
        for p in source_files()
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if needle in line
    ]
    assert hits == []


def test_the_rules_catch_what_they_forbid(tmp_path: Path) -> None:
    """The scanner itself: a lazy import inside a function and `from caitool import x` both count."""
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from caitool import pipeline\n    import typer.core\n")
    found = dict((target, line) for line, target in imports(sample))
    assert found["caitool.pipeline"] == 2 and found["typer.core"] == 3
    assert under("caitool.providers.base", "caitool.providers")
    assert not under("caitool.providers_x", "caitool.providers")
