"""A tiny chat model built offline (no hub), and small data files in caitool's formats, for trainer tests.

The model itself is built by `caitool.testing.tiny_model.build_tiny_model` (a 2-layer Qwen2, ~35k
parameters, with a locally trained tokenizer); this module adds the offline environment and the data rows.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

# The model and its corpus live in caitool.testing.tiny_model (examples use it too).
from caitool.testing.tiny_model import BAD, GOOD, QUESTIONS

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "WANDB_DISABLED": "true",
    "CUDA_VISIBLE_DEVICES": "",
}


def set_offline() -> None:
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def sft_rows_keep_rounds() -> list[dict[str, Any]]:
    """critique-revise --format sft --keep-rounds: two rounds per record."""
    rows = []
    for i, (q, a) in enumerate(zip(QUESTIONS, GOOD, strict=True)):
        for rnd in (1, 2):
            answer = a if rnd == 2 else a.split(",")[0]
            rows.append(
                {
                    "id": f"r{i}",
                    "round": rnd,
                    "principle_id": "harmful1",
                    "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": answer}],
                }
            )
    return rows


def trace_rows() -> list[dict[str, Any]]:
    """critique-revise --format trace."""
    return [
        {
            "id": f"t{i}",
            "prompt": [{"role": "user", "content": q}],
            "initial_response": b,
            "rounds": [
                {"round": 1, "principle_id": "harmful1", "critique": "c", "revision": a.split(",")[0]},
                {"round": 2, "principle_id": "harmful2", "critique": "c", "revision": a},
            ],
            "final_response": a,
        }
        for i, (q, a, b) in enumerate(zip(QUESTIONS, GOOD, BAD, strict=True))
    ]


def pair_rows() -> list[dict[str, Any]]:
    """label-pairs output: TRL conversational preference rows with a soft label and a margin."""
    return [
        {
            "id": f"p{i}",
            "prompt": [{"role": "user", "content": q}],
            "chosen": [{"role": "assistant", "content": g}],
            "rejected": [{"role": "assistant", "content": b}],
            "p_chosen": [0.9, 0.7, 0.95, 0.6, 0.8, 0.55, 0.99, 0.4][i],
            "margin": 0.5 + 0.1 * i,
            "caitool": {"principle_id": "compare1"},
        }
        for i, (q, g, b) in enumerate(zip(QUESTIONS, GOOD, BAD, strict=True))
    ]


def prompt_rows() -> list[dict[str, Any]]:
    return [{"prompt": q} for q in QUESTIONS[:4]] + [
        {"messages": [{"role": "user", "content": q}]} for q in QUESTIONS[4:]
    ]
