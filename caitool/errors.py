"""Errors a user can act on, each mapped to one exit code.

    CaitoolError (exit 1)
    ├── UsageError (exit 2)        bad flags, a refused resume, an unknown model spec
    │   └── InputError (exit 2)    bad input data; carries file:line
    ├── ConfigError (exit 2)       a constitution or template that does not validate
    ├── ProviderError (exit 1)     a model call failed; `retryable` says whether the retry layer may try again
    └── ConsumerGone (exit 141)    the reader closed stdout (`| head -1`): stop quietly

    RecordFailed                   one record failed (a task raises it inside `process`): the runner writes
                                   it to the errors file with its `detail` and the run goes on. A model
                                   answer that cannot be parsed is one (with the raw text in `detail`). Not a
                                   CaitoolError on purpose: it never stops a run and never reaches the CLI.

The CLI prints `str(error)` (plus `hint`) and exits with `exit_code`; no traceback unless CAITOOL_DEBUG=1.
"""

from __future__ import annotations

from typing import Any

EXIT_OK = 0
EXIT_FATAL = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3
EXIT_BUDGET = 4  # stopped at --max-cost before every record was done: a rerun resumes
EXIT_INTERRUPTED = 130


class CaitoolError(Exception):
    exit_code = EXIT_FATAL

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class UsageError(CaitoolError):
    exit_code = EXIT_USAGE


class ConfigError(CaitoolError):
    exit_code = EXIT_USAGE


class InputError(UsageError):
    """Bad input data. `where` is `file:line` so editors and terminals can jump to it."""

    def __init__(self, where: str, message: str, line: str | None = None) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where
        self.reason = message
        self.line = line  # the raw text of a line that could not be read as a record, for the rejects file


class ProviderError(CaitoolError):
    """A failed model call. The provider adapters translate SDK exceptions into this one type."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        status: int | None = None,
        retry_after: float | None = None,
        rate_limited: bool = False,
        hint: str | None = None,
        limits: tuple[float | None, float | None] = (None, None),
    ) -> None:
        super().__init__(message, hint=hint)
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after
        self.rate_limited = rate_limited
        # (requests, tokens) per minute the server advertised with a 429 (x-ratelimit-limit-*), if it did.
        self.limits = limits


class ConsumerGone(CaitoolError):
    """stdout was closed by the reader (`| head -1`): stop quietly, exit 141 like other Unix tools."""

    exit_code = 141


class RecordFailed(Exception):
    """Raised by a task's `process` to send its record to the errors file with extra detail (`raw`, ...)."""

    def __init__(self, reason: str, detail: dict[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.detail = detail or {}
