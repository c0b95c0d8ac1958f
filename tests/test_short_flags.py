"""One meaning per short flag across every command: `-n` was `--rounds` in critique-revise but `--num` in
red-team, `-k` was `--samples` in sample-pairs but `--shots` in red-team."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import typer

from caitool.cli import _register, app


def _commands(group: Any, prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for name, cmd in group.commands.items():
        if hasattr(cmd, "commands"):  # a command group (typer ships its own click)
            out += _commands(cmd, f"{prefix}{name} ")
        else:
            out.append((prefix + name, cmd))
    return out


def test_each_short_flag_names_one_long_flag() -> None:
    _register()
    root = typer.main.get_command(app)
    meanings: dict[str, list[frozenset[str]]] = defaultdict(list)
    for name, cmd in _commands(root):
        for param in cmd.params:
            longs = frozenset(o for o in param.opts if o.startswith("--")) or frozenset({name})
            for short in (o for o in param.opts if len(o) == 2):
                meanings[short].append(longs)
    # rl's `--policy` is also spelled `--model`: a shared long name is one meaning.
    clashes = {
        short: sorted({sorted(s)[0] for s in sets})
        for short, sets in meanings.items()
        if not frozenset.intersection(*sets)
    }
    assert not clashes, clashes
    assert set.union(*map(set, meanings["-k"])) == {"--samples"}
    assert set.union(*map(set, meanings["-n"])) == {"--num"}
