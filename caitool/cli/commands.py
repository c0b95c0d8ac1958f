"""Every command module, imported once so that it registers itself on `caitool.cli.app`."""

from caitool.cli import critique_revise, label_pairs, principles  # noqa: F401
