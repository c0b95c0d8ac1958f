"""Every command module, imported once so that it registers itself on `caitool.cli.app`.

`app` is re-exported so `typer caitool.cli.commands utils docs` sees the full command tree.
"""

from caitool.cli import (  # noqa: F401
    app,
    batches,
    compare,
    critique_revise,
    elo,
    eval_labeler,
    export,
    label_pairs,
    merge,
    mix,
    paper_samples,
    plot,
    principles,
    providers,
    red_team,
    sample_pairs,
    serve_config,
    stats,
    train,
    try_,
    view,
)
