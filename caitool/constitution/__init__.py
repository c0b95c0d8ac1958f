"""Constitutions: the principles that steer critique-revise and label-pairs.

A constitution has two sections, either of which may be absent (not both):

- `critique`: critique/revision pairs (paper Sec. 3). critique-revise samples one pair per revision round.
- `comparison`: multiple-choice principles (paper Sec. 4). label-pairs samples one principle per comparison.

Both are sampled uniformly *with replacement*, as in the paper (its SL samples draw the same key twice for one
prompt). The packaged default, `anthropic-cai-2022`, holds the paper's 16 + 16 principles verbatim.

Files are TOML (the native format) or JSON with the same structure. Two foreign JSON layouts are recognised
and converted on load: the paper repository's `CritiqueRevisionInstructions.json` /
`RLMadisonInstructions.json` and the Hugging Face CAI recipe's
`{"constitutions": [...], "system_chat": [...]}`. See docs/principles.md.

Principle texts in a file are `string.Template` strings: `$$` is a literal dollar sign and `$name` / `${name}`
is a placeholder; only names in `ALLOWED_PLACEHOLDERS` may appear (none at present). A loaded principle holds
the final text (`$$` already turned into `$`), ready to be substituted into a prompt template.

`Constitution.sha256` hashes a canonical JSON dump of the name and both principle lists (in order), not the
file bytes, so the same content written as TOML or JSON, with other comments or key order, hashes alike.

Standard library only: this package is imported by every command and must stay light.

Modules (each owns one seam)
    model     `Constitution`, the two principle types, the content hash, seeded sampling
    read      parsing a file (file:line problems), caitool's own layout, the checks every layout shares
    foreign   importers of the paper repository's two JSON files and the Hugging Face recipe
    load      `load_constitution`, `validate_file`, `import_file`, `builtin_names`
    write     `merge_constitutions`, `to_toml`
A new layout is a `from_*` function in `foreign` plus its branch in `foreign.detect` and `load._inspect`.
"""

from __future__ import annotations

from .load import DEFAULT_CONSTITUTION, builtin_names, import_file, load_constitution, validate_file
from .model import ComparisonPrinciple, Constitution, CritiquePrinciple
from .read import ALLOWED_PLACEHOLDERS
from .write import merge_constitutions, to_toml

__all__ = [
    "ALLOWED_PLACEHOLDERS",
    "DEFAULT_CONSTITUTION",
    "ComparisonPrinciple",
    "Constitution",
    "CritiquePrinciple",
    "builtin_names",
    "import_file",
    "load_constitution",
    "merge_constitutions",
    "to_toml",
    "validate_file",
]
