"""`caitool view --export report.html`: the page, its script and style, and the data in one file.

The data travel as JSON inside `<script type="application/json">`, with every `<` written `\\u003c` so no
record can close that element; the page reads it with JSON.parse and builds the DOM from text, as it does
with the server. Every row is embedded: a large file makes a large page (filter it with jq first).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from caitool.view.data import Dataset
from caitool.view.server import json_bytes, static_file


def _dataset_payload(d: Dataset) -> dict[str, Any]:
    d.start_summaries()
    d.summarized.wait()
    return {
        "info": d.info(),
        "report": d.report,
        "summaries": [s.to_dict() for s in d.summaries],
        "rows": [d.row(n) for n in range(len(d))],
    }


def export_html(datasets: list[Dataset], out: str | Path) -> int:
    """Write the report; returns its size in bytes."""
    data = json_bytes({"files": [_dataset_payload(d) for d in datasets]}).decode()
    data = data.replace("<", "\\u003c")
    page = static_file("index.html").decode()
    style = static_file("style.css").decode()
    script = static_file("app.js").decode().replace("</script", "<\\/script")
    page = page.replace('<link rel="stylesheet" href="/static/style.css">', f"<style>\n{style}</style>")
    page = page.replace(
        '<script src="/static/app.js"></script>',
        f'<script type="application/json" id="caitool-data">{data}</script>\n<script>\n{script}</script>',
    )
    path = Path(out)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    return path.stat().st_size
