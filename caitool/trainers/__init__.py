"""Training backends, found through the `caitool.trainers` entry-point group.

Built-ins: `trl` (TRL on one machine, or several through `accelerate launch`) and `openrlhf` (writes
OpenRLHF's data and launch command). A third-party package adds a backend by declaring

    [project.entry-points."caitool.trainers"]
    mybackend = "my_package.module:MyBackend"

where the target is a class (instantiated with no arguments) or an object satisfying
`caitool.trainers.base.Backend`. Loading an entry point must stay cheap: no torch at import time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from caitool.errors import UsageError
from caitool.plugins import entry_point_targets, load_target
from caitool.trainers.base import Backend

GROUP = "caitool.trainers"
# Also declared as entry points in pyproject.toml; kept here so a stale editable install still finds them.
BUILTINS: dict[str, str] = {
    "trl": "caitool.trainers.trl_backend:TrlBackend",
    "openrlhf": "caitool.trainers.openrlhf:OpenRLHFBackend",
}


@dataclass(frozen=True)
class BackendInfo:
    name: str
    source: str  # "caitool" for built-ins, else the distribution that declares the entry point
    target: str  # module:attr
    installed: bool  # the backend loads and what it drives is installed (it reports a version)
    ready: bool  # usable here (available() is true)
    version: str | None
    detail: str
    description: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _targets() -> dict[str, tuple[str, str]]:
    """name -> (target, source). Built-ins win over a plugin that reuses their name."""
    found: dict[str, tuple[str, str]] = {name: (target, "caitool") for name, target in BUILTINS.items()}
    found.update(entry_point_targets(GROUP, BUILTINS))
    return found


def _load(target: str, name: str) -> Backend:
    obj = load_target(target, f"trainer backend {name!r}")
    backend = obj() if isinstance(obj, type) else obj
    if not isinstance(backend, Backend):
        raise UsageError(
            f"trainer backend {name!r} ({target}) does not implement caitool.trainers.base.Backend"
        )
    return backend


def backend_names() -> list[str]:
    return sorted(_targets())


def get_backend(name: str) -> Backend:
    targets = _targets()
    if name not in targets:
        raise UsageError(
            f"unknown trainer backend {name!r}",
            hint=f"installed: {', '.join(sorted(targets))} (see `caitool trainers list`)",
        )
    return _load(targets[name][0], name)


def list_backends() -> list[BackendInfo]:
    out = []
    for name, (target, source) in sorted(_targets().items()):
        try:
            backend = _load(target, name)
        except UsageError as exc:
            out.append(BackendInfo(name, source, target, False, False, None, str(exc)))
            continue
        ok, detail = backend.available()
        ver = backend.version()
        desc = getattr(backend, "description", "")
        out.append(BackendInfo(name, source, target, ver is not None, ok, ver, detail, desc))
    return out
