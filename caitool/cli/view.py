"""`caitool view`: read caitool's outputs in a local web page (caitool/view/)."""

from __future__ import annotations

from typing import Annotated

import typer

from caitool.cli import app


@app.command("view")
def view(
    files: Annotated[
        list[str], typer.Argument(help="Output files: traces, SFT rows, labels, judgments, errors, reports.")
    ],
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="Port on 127.0.0.1 (0: any free one).")
    ] = 0,
    no_browser: Annotated[
        bool, typer.Option("--no-browser", help="Print the URL; do not open a browser.")
    ] = False,
    export: Annotated[
        str | None,
        typer.Option("--export", help="Write one self-contained HTML file (no server) and exit."),
    ] = None,
) -> None:
    """Browse caitool output in a local web page: traces round by round with word diffs, labels side by side,
    filters, counts and the p histogram; elo and eval-labeler reports as plots.

    Binds 127.0.0.1 only and serves until Ctrl-C. Large files are indexed, not loaded.
    """
    from caitool.console import info
    from caitool.errors import UsageError
    from caitool.view.data import Dataset

    datasets = [Dataset(f) for f in files]
    if export:
        from caitool.view.export import export_html

        size = export_html(datasets, export)
        info(f"{export}: {size / 1e6:.1f} MB, self-contained (open it in any browser)")
        return

    from caitool.view.server import ViewServer

    try:
        server = ViewServer(datasets, port)
    except OSError as exc:
        raise UsageError(f"--port {port}: {exc.strerror or exc}") from None
    # The URL is the command's output: on stdout, flushed, so a script or test can read it.
    print(server.url, flush=True)
    info("serving on 127.0.0.1 only; Ctrl-C to stop")
    if not no_browser:
        import webbrowser

        webbrowser.open(server.url)
    try:
        server.serve_forever()
    finally:
        server.close()
