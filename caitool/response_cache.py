"""`--cache DIR`: answers kept across runs, so an identical request is never paid for twice.

A request is identical when its model spec, base URL, kind (chat or completion), messages or prompt, and
every generation parameter (temperature, max_tokens, top_p, stop, n, seed, log-probs) are: a user who
changes a later-stage setting (more rounds, another output format, a new label question) pays only for the
requests that changed. The cost tier is not part of the key (it changes the price, not the answer), and
neither is the API key: it is never written anywhere.

One file per key, `DIR/ab/<sha256>.json`, written to a temporary file in the same folder and renamed into
place, so concurrent runs sharing a folder never see half an entry; an unreadable entry (a torn write by a
crash of another tool, a hand edit) is a miss and is written again. Only answers are stored, never errors.
A hit costs nothing: it comes back with zero usage, and the summary counts hits apart from requests.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from caitool.providers.base import (
    Choice,
    Completion,
    GenerateParams,
    Message,
    TokenLogprob,
    TopLogprob,
)

FORMAT = 1  # bumped if an entry's layout changes: old entries then miss instead of misreading


class ResponseCache:
    """Answers of one model endpoint (`scope`: spec and base URL), under `root`."""

    def __init__(self, root: str | Path, scope: str) -> None:
        self.root = Path(root)
        self.scope = scope
        self.root.mkdir(parents=True, exist_ok=True)

    def key(self, kind: str, request: list[Message] | str, params: GenerateParams) -> str:
        body = {
            "format": FORMAT,
            "scope": self.scope,
            "kind": kind,
            "request": request if isinstance(request, str) else [m.to_dict() for m in request],
            "params": {
                "temperature": params.temperature,
                "max_tokens": params.max_tokens,
                "top_p": params.top_p,
                "stop": list(params.stop),
                "n": params.n,
                "seed": params.seed,
                "logprobs": params.logprobs,
                "top_logprobs": params.top_logprobs,
            },
        }
        blob = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> Completion | None:
        try:
            data = json.loads(self._path(key).read_text(encoding="utf-8"))
            if data.get("key") != key:
                return None
            return _completion(data["completion"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None  # absent, torn or not ours: a miss

    def put(self, key: str, completion: Completion) -> None:
        path = self._path(key)
        path.parent.mkdir(exist_ok=True)
        text = json.dumps({"key": key, "completion": _plain(completion)}, ensure_ascii=False)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
        try:
            # No fsync: a crash may lose the newest entries (paid again next time), never tear one.
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


def _plain(c: Completion) -> dict[str, Any]:
    return {
        "model": c.model,
        "choices": [
            {
                "text": ch.text,
                "finish_reason": ch.finish_reason,
                "logprobs": None
                if ch.logprobs is None
                else [[t.token, t.logprob, [[a.token, a.logprob] for a in t.top]] for t in ch.logprobs],
            }
            for ch in c.choices
        ],
    }


def _completion(data: dict[str, Any]) -> Completion:
    choices = []
    for ch in data["choices"]:
        lps = ch["logprobs"]
        logprobs = (
            None
            if lps is None
            else tuple(
                TokenLogprob(str(tok), float(lp), tuple(TopLogprob(str(a), float(b)) for a, b in top))
                for tok, lp, top in lps
            )
        )
        choices.append(Choice(str(ch["text"]), ch["finish_reason"], logprobs))
    return Completion(choices=choices, model=str(data.get("model") or ""))
