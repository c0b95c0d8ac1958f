"""Entry-point plugins, the way trainer backends and model providers are found: the targets a group declares,
and loading one without letting a broken package take the CLI down with a traceback."""

from __future__ import annotations

import importlib
from collections.abc import Collection
from importlib.metadata import entry_points
from typing import Any

from caitool.errors import UsageError


def entry_point_targets(group: str, builtins: Collection[str]) -> dict[str, tuple[str, str]]:
    """name -> (module:attr, distribution) for `group`'s entry points; a built-in name wins over a plugin."""
    found: dict[str, tuple[str, str]] = {}
    for ep in entry_points(group=group):
        if ep.name not in builtins and ep.name not in found:
            found[ep.name] = (ep.value, ep.dist.name if ep.dist is not None else "?")
    return found


def load_target(target: str, what: str) -> Any:
    """The object `module:attr` names; a failure to import is a UsageError naming `what` and the target."""
    module_name, _, attr = target.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split(".") if attr else ():
            obj = getattr(obj, part)
    except Exception as exc:  # a broken plugin must not take the CLI down with a traceback
        raise UsageError(f"{what} ({target}) failed to load: {exc}") from exc
    return obj
