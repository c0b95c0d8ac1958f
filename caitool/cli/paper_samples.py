"""`caitool import-paper-samples`: the paper repository's samples/*.jsonl as caitool rows."""

from __future__ import annotations

from typing import Annotated

import typer

from caitool.cli import app


@app.command("import-paper-samples")
def import_paper_samples(
    files: Annotated[
        list[str], typer.Argument(help="samples/*.jsonl files of anthropics/ConstitutionalHarmlessnessPaper.")
    ],
    output: Annotated[
        str | None,
        typer.Option("--output", "-o", help="Output JSONL file (default: stdout); rewritten whole."),
    ] = None,
    paper_sample: Annotated[
        int,
        typer.Option(
            "--paper-sample",
            min=0,
            help="Which sampled answer a policy-samples row becomes (sorted by PM score; 0: best).",
        ),
    ] = 0,
) -> None:
    """Convert the paper's published samples into caitool rows (no model calls).

    SL-CAI traces (*_SLMADISON: `cst` rounds) become `critique-revise --format trace` rows, which `stats` and
    `sft` read. Policy samples (*_RLMADISON, *_HRLHF, ...) become {id, prompt, response} rows; `compare
    --responses` also reads those files as they are.
    """
    import os
    import sys
    import tempfile

    from caitool.errors import InputError, UsageError
    from caitool.evaluation import paper_samples
    from caitool.inputs import read_lines
    from caitool.store import dumps

    rows = []
    for path in files:
        for line in read_lines(path):
            if isinstance(line, InputError):
                raise line
            if paper_samples.is_sl_trace(line.data):
                rows.append(paper_samples.trace_row(line, line.where))
            elif paper_samples.is_policy_samples(line.data):
                rid, item = paper_samples.prompt(line)
                rows.append(
                    {
                        "id": rid,
                        "prompt": [m.to_dict() for m in item.messages],
                        "response": paper_samples.sampled_response(line, paper_sample),
                        "caitool": {"source": line.where, "paper_sample": paper_sample},
                    }
                )
            else:
                raise InputError(
                    line.where, "not a paper samples row: expected rl_prompt with sampled_answers or cst"
                )
    if len({"rounds" in row for row in rows}) > 1:  # one schema per file, as every caitool output
        raise UsageError("SL-CAI traces and policy samples give different rows: import them separately")
    text = "".join(dumps(row) + "\n" for row in rows)
    if output is None or output == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    # Written to a temporary file and renamed: a reader never sees half a conversion.
    folder = os.path.dirname(os.path.abspath(output))
    fd, tmp = tempfile.mkstemp(prefix=".import-", dir=folder)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, output)
