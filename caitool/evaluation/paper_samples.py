"""The paper repository's published samples, read as they are (anthropics/ConstitutionalHarmlessnessPaper,
`samples/*.jsonl`), so that its models can be re-judged (`caitool compare --responses`) and its SL-CAI
traces read as caitool trace rows (`caitool import-paper-samples`).

Two row shapes (the repository ships no LICENSE, so caitool ships none of its rows; tests use look-alikes):

- policy samples (`*_RLMADISON`, `*_RLMADISON_COT`, `*_HRLHF`, `*_HHRLHF`):
  `{"rl_prompt": "\\n\\nHuman: ...\\n\\nAssistant:", "comparison_dataset": "PALMS", "comparison_model": "...",
  "sampled_answers": [{"sampled_string": " text\\n\\nHuman:", "pm_scores": [{"pm_score": 3.1}]}, ...]}`:
  17 samples per prompt, sorted by PM score, best first. `comparison_model` (the comparison dataset's own
  answer) is absent from the PALMS files.
- SL-CAI traces (`*_SLMADISON`): `rl_prompt`, `initial_response` (`[{"sample": text}]`) and `cst`, a list
  of rounds `{"cst_key": "harmful7", "cst_value": {"prompt": ["\\n\\nCritiqueRequest: ...\\n\\nCritique:"],
  "edit_request": "\\n\\nRevisionRequest: ...\\n\\nRevision:"}, "critique": {"sample"},
  "revision": {"sample"}}`.

Sampled strings run until the model's stop marker: a trailing "Human:" turn (sometimes "Assistant:"), or an
`<EOT>` / `<META_START>` token. `clean_sample` cuts it.
"""

from __future__ import annotations

import re
from typing import Any

from caitool.errors import InputError
from caitool.inputs import Line, PromptItem, prompt_items

PROMPT_FIELD = "rl_prompt"
# A stop marker the paper's samples end with, and the whitespace around it.
_TRAILER = re.compile(r"(?:\s*(?:\n\s*(?:Human|Assistant):?|<EOT>|<META_START>))+\s*$")
_REQUEST_PREFIX = re.compile(r"^\s*(?:CritiqueRequest|RevisionRequest):\s*")
_REQUEST_SUFFIX = re.compile(r"\s*(?:Critique|Revision):\s*$")


def is_policy_samples(data: dict[str, Any]) -> bool:
    return PROMPT_FIELD in data and "sampled_answers" in data


def is_sl_trace(data: dict[str, Any]) -> bool:
    return PROMPT_FIELD in data and "cst" in data


def is_paper_row(data: dict[str, Any]) -> bool:
    return is_policy_samples(data) or is_sl_trace(data)


def clean_sample(text: str) -> str:
    """A sampled string without the stop marker it ran into and the surrounding whitespace."""
    return _TRAILER.sub("", text).strip()


def prompt(line: Line) -> tuple[str, PromptItem]:
    """The row's id (a content hash of its conversation, the same in every file of one prompt set) and its
    conversation, from `rl_prompt`."""
    ((rid, item),) = prompt_items(line, field=PROMPT_FIELD)
    return rid, item


def sampled_response(line: Line, index: int) -> str:
    """`sampled_answers[index].sampled_string` of a policy-samples row, cleaned."""
    answers = line.data.get("sampled_answers")
    if not isinstance(answers, list) or not answers:
        raise InputError(line.where, "field 'sampled_answers' must be a non-empty list")
    if not -len(answers) <= index < len(answers):
        raise InputError(
            line.where, f"sample {index} asked for, but this row has {len(answers)} sampled answers"
        )
    entry = answers[index]
    text = entry.get("sampled_string") if isinstance(entry, dict) else None
    if not isinstance(text, str):
        raise InputError(line.where, f"sampled_answers[{index}] has no string 'sampled_string'")
    return clean_sample(text)


def _sample(value: Any, where: str, name: str) -> str:
    """A sampled text stored as {"sample": text} (or a one-element list of those, as `initial_response`)."""
    if isinstance(value, list) and value:
        value = value[0]
    if isinstance(value, str):
        return value.strip()
    text = value.get("sample") if isinstance(value, dict) else None
    if not isinstance(text, str):
        raise InputError(where, f"{name} has no string 'sample'")
    return text.strip()


def _request(value: Any) -> str:
    """The instruction of a "\\n\\nCritiqueRequest: text\\n\\nCritique:" string, without that framing."""
    if isinstance(value, list):
        value = value[0] if value else ""
    text = value if isinstance(value, str) else ""
    return _REQUEST_SUFFIX.sub("", _REQUEST_PREFIX.sub("", text)).strip()


def trace_row(line: Line, source: str) -> dict[str, Any]:
    """An SL-CAI trace row (`cst`) as a caitool trace row (`critique-revise --format trace`)."""
    where, data = line.where, line.data
    rid, item = prompt(line)
    initial = _sample(data.get("initial_response"), where, "initial_response")
    steps = data.get("cst")
    if not isinstance(steps, list) or not steps:
        raise InputError(where, "field 'cst' must be a non-empty list of rounds")
    rounds = []
    current = clean_sample(initial)
    for k, step in enumerate(steps, start=1):
        if not isinstance(step, dict):
            raise InputError(where, f"cst[{k - 1}] is not an object")
        value = step.get("cst_value")
        request: dict[str, Any] = value if isinstance(value, dict) else {}
        revision = clean_sample(_sample(step.get("revision"), where, f"cst[{k - 1}].revision"))
        flags = []
        if not revision:
            flags.append("empty")
        elif " ".join(revision.lower().split()) == " ".join(current.lower().split()):
            flags.append("unchanged")
        rounds.append(
            {
                "round": k,
                "principle_id": str(step.get("cst_key", "(none)")),
                "critique_request": _request(request.get("prompt")),
                "critique": clean_sample(_sample(step.get("critique"), where, f"cst[{k - 1}].critique")),
                "revision_request": _request(request.get("edit_request")),
                "revision": revision,
                "flags": flags,
                "usage": {"input_tokens": 0, "output_tokens": 0, "calls": 0},
            }
        )
        current = revision or current
    return {
        "id": rid,
        "prompt": [m.to_dict() for m in item.messages],
        "initial_response": clean_sample(initial),
        "rounds": rounds,
        "final_response": current,
        "usage": {"input_tokens": 0, "output_tokens": 0, "calls": 0},
        "caitool": {
            # The paper's own helpful RLHF model wrote these; the file names only the prompt set.
            "model": "paper",
            "prompt_set": str(data.get("comparison_dataset", "")),
            "constitution": "anthropic-cai-2022",
            "source": source,
            "imported_from": "anthropics/ConstitutionalHarmlessnessPaper samples/*_SLMADISON.jsonl",
        },
    }
