"""Mutation testing for the core modules: does the suite notice when a documented behaviour breaks?

Each mutation is a named, hand-written edit (module, original snippet, replacement) of one behaviour that a
doc or docstring promises. For each one the script copies the repository to a temporary folder (never the
working tree, which others may be editing), applies the edit there, and runs only the test files that cover
that module, with `-x` and a timeout, with the copy first on PYTHONPATH. A failing test "kills" the mutation;
a mutation every test passes "survives" and names a promise no test guards.

    python scripts/mutate.py                    # every mutation, then a summary per module
    python scripts/mutate.py --module retry     # one module's mutations
    python scripts/mutate.py --only T2,S3       # some mutations by id
    python scripts/mutate.py --repo DIR         # another checkout (e.g. a `git archive` of an old commit)
    python scripts/mutate.py --list             # the mutations, without running anything

Before the mutations, each module's tests run once unmutated (skip with --no-baseline): a module whose
tests already fail there cannot kill anything, and its mutations are reported as not run. A snippet that
no longer occurs exactly once in the module (the code moved on) is reported as "stale", not as a result:
update the snippet, or add the new code's version as `alt`. A mutation marked `equivalent` (with the reason
no test can tell it from the original) is not run unless named with --only, and is counted apart from the
survivors. Ids come from the test audit of 2026-11-30
(T retry, H3 its header parser, S store, R runner, L labels, LS losses, E elo, P CLI); ids ending in "x"
were added afterwards. Slow tests (real model,
trainers) are deselected: the losses' trainer-level mutation (the audit's PM1) is not part of this run.
Exit status: 0 when every mutation ran (survivors included), 1 when a baseline failed or a snippet was stale.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()  # progress of a long run, line by line, also when redirected to a file


@dataclass(frozen=True)
class Mutation:
    id: str
    module: str  # key of TESTS
    path: str  # file, relative to the repository root
    edits: tuple[tuple[str, str], ...]  # (original snippet, replacement), each original exactly once
    what: str  # the promise it breaks
    alt: tuple[tuple[tuple[str, str], ...], ...] = ()  # the same mutation for later versions of the code
    # Why no test can kill it: it cannot change what the program does, or only under a fault no test on one
    # machine can make (a power cut). Empty for every mutation a test must kill.
    equivalent: str = ""


def m(
    mid: str,
    module: str,
    path: str,
    what: str,
    *edits: tuple[str, str],
    alt: tuple[tuple[str, str], ...] = (),
    equivalent: str = "",
) -> Mutation:
    return Mutation(mid, module, path, tuple(edits), what, (alt,) if alt else (), equivalent)


LABELS, STORE, RUNNER, RETRY = (
    "caitool/labels.py",
    "caitool/store.py",
    "caitool/runner.py",
    "caitool/retry.py",
)
LOSSES, ELO = "caitool/trainers/losses.py", "caitool/evaluation/elo.py"

MUTATIONS: list[Mutation] = [
    # caitool/labels.py -----------------------------------------------------------------------------------
    m("L1", "labels", LABELS, "spellings of one option combined with max instead of summed",
      ("    m = max(values)\n    return m + math.log(sum(math.exp(v - m) for v in values))",
       "    return max(values)"),
      alt=(("                mass[opt] += carry * p",
            "                mass[opt] = max(mass[opt], carry * p)"),)),
    m("L12", "labels", LABELS, "p_a computed from B (sanity)",
      ('p_a=ps["A"] / total', 'p_a=ps["B"] / total'),
      alt=(('        return self.probs["A"]', '        return self.probs["B"]'),)),
    m("L3", "labels", LABELS, "missing-option bound = the least likely listed token only",
      ("bound = min(min(probs), max(0.0, 1.0 - sum(probs))) if probs else 0.0",
       "bound = min(probs) if probs else 0.0"),
      alt=(("    return max(min(min(probs), max(0.0, 1.0 - sum(probs))), 1e-12)",
            "    return max(min(probs), 1e-12)"),)),
    m("L2", "labels", LABELS, "missing-option bound = the unlisted mass only",
      ("bound = min(min(probs), max(0.0, 1.0 - sum(probs))) if probs else 0.0",
       "bound = max(0.0, 1.0 - sum(probs)) if probs else 0.0"),
      alt=(("    return max(min(min(probs), max(0.0, 1.0 - sum(probs))), 1e-12)",
            "    return max(max(0.0, 1.0 - sum(probs)), 1e-12)"),)),
    m("L5", "labels", LABELS, "score_answer scans past a token that is neither an option nor '('",
      ("if not is_opening(tok.token):", "if False and not is_opening(tok.token):"),
      alt=(("        if not sampled_opens:\n            break", "        if False:\n            break"),)),
    m("L6", "labels", LABELS, "the sampled token is not added to its own top list",
      ("if not any(t == tok.token for t, _ in top):", "if False:"),
      alt=(("    if tok.token not in seen:\n        seen[tok.token]",
            "    if False:\n        seen[tok.token]"),)),
    m("L7", "labels", LABELS, "parse_vote: the first explicit 'answer is' wins, not the last",
      ("return explicit[-1].upper()", "return explicit[0].upper()"),
      alt=(("        if letter is not None and letter in options:\n            found = letter",
            "        if letter is not None and letter in options and found is None:\n"
            "            found = letter"),)),
    m("L9", "labels", LABELS, "the answer is looked for in 2 positions instead of 4",
      ("max_positions: int = 4", "max_positions: int = 2"),
      alt=(("_MAX_POSITIONS = 4", "_MAX_POSITIONS = 2"),)),
    m("L13x", "labels", LABELS, "vote probability without add-one smoothing",
      ("return (votes_a + 1) / (votes_a + votes_b + 2)", "return votes_a / max(1, votes_a + votes_b)")),
    m("L14x", "labels", LABELS, "clamp ignores the lower bound",
      ("return min(hi, max(lo, p))", "return min(hi, p)")),
    m("L15x", "labels", LABELS, "a bracketed spelling '[A' no longer names an option",
      ('_STRIP = " \\t\\n▁Ġ(["', '_STRIP = " \\t\\n▁Ġ("')),
    # caitool/store.py ------------------------------------------------------------------------------------
    m("S1", "store", STORE, "repair_tail reports the torn bytes but cuts nothing",
      ("        fh.truncate(keep)\n        return size - keep", "        return size - keep"),
      alt=(("            try:\n                os.ftruncate(self._fd, committed)",
            "            try:\n                pass"),)),
    m("S2", "store", STORE, "repair_tail scans only the last 64 KiB: a longer torn tail empties the file",
      ("            pos = start\n", "            break\n"),
      alt=(("        pos = start\n    return 0", "        break\n    return 0"),)),
    m("S3", "store", STORE, "steps file truncated on every open (a second crash loses the first's calls)",
      ("self._steps_fd = self._open(f.steps, os.O_TRUNC if self.overwrite else os.O_APPEND)",
       "self._steps_fd = self._open(f.steps, os.O_TRUNC)")),
    m("S5", "store", STORE, "a different fingerprint is not refused",
      ('if old.get("fingerprint") != self.fingerprint:', "if False:"),
      alt=(('        if old.get("fingerprint") == self.fingerprint:\n            return',
            "        if True:\n            return"),)),
    m("S6", "store", STORE, "--overwrite appends instead of truncating",
      ("    def _open_append(self, path: Path) -> int:\n"
       "        return self._open(path, os.O_TRUNC if self.overwrite else os.O_APPEND)",
       "    def _open_append(self, path: Path) -> int:\n        return self._open(path, os.O_APPEND)"),
      alt=(("self._fd = self._open(f.output, os.O_TRUNC if self.overwrite else os.O_APPEND)",
            "self._fd = self._open(f.output, os.O_APPEND)"),)),
    m("S7", "store", STORE, "the errors file is appended to instead of rewritten",
      ("self._err_fd = self._open(f.errors, os.O_TRUNC)",
       "self._err_fd = self._open(f.errors, os.O_APPEND)")),
    m("S9", "store", STORE, "read_ids ignores id_key (sample-pairs resume by source_id)",
      ("self.done = read_ids(f.output, self.id_key)", "self.done = read_ids(f.output)"),
      alt=(("rid = str(json.loads(raw)[self.id_key])", 'rid = str(json.loads(raw)["id"])'),)),
    m("S10", "store", STORE, "the steps file is never removed",
      ("            self.files.steps.unlink(missing_ok=True)", "            pass")),
    m("S14", "store", STORE, "the output is never fsynced during the run",
      ("if self._fd > 2 and now - self._last_sync >= FSYNC_INTERVAL_S:", "if False:"),
      alt=(("if self._regular and now - self._last_sync >= FSYNC_INTERVAL_S:", "if False:"),),
      equivalent="the rows still reach the page cache and are fsynced at close; only a power cut or a "
                 "kernel crash mid-run tells the difference (kill -9 does not), and counting os.fsync calls "
                 "with a stand-in would test the call, not the promise"),
    m("S18", "store", STORE, "IdSet membership by the 32-bit hash alone",
      ("if k < 0 or (hashes[k] == h and blob[ends[k - 1] if k else 0 : ends[k]] == key):",
       "if k < 0 or hashes[k] == h:")),
    m("S19", "store", STORE, "checkpoints never loaded (sanity)",
      ("                self._load_steps(f.steps)", "                pass")),
    m("S20x", "store", STORE, "rows written without the newline after the last row",
      ('data = "".join(dumps(r) + "\\n" for r in rows).encode()',
       'data = "\\n".join(dumps(r) for r in rows).encode()'),
      alt=(('the done file: the commit."""\n        data = "".join(dumps(r) + "\\n" for r in rows).encode()',
            'the done file: the commit."""\n        data = "\\n".join(dumps(r) for r in rows).encode()'),)),
    m("S21x", "store", STORE, "an empty errors file is left behind",
      ("if self.files.errors.stat().st_size == 0:", "if False:")),
    m("S22x", "store", STORE, "a foreign output file (no manifest) is not refused",
      ("if not f.manifest.exists():", "if False:")),
    # caitool/runner.py -----------------------------------------------------------------------------------
    m("R1", "runner", RUNNER, "C + 1 records in flight",
      ("while len(in_flight) < concurrency:", "while len(in_flight) <= concurrency:")),
    m("R2", "runner", RUNNER, "no concurrency bound at all",
      ("while len(in_flight) < concurrency:", "while True:")),
    m("R3", "runner", RUNNER, "--limit off by one (sanity)",
      ("if limit is not None and dispatched >= limit:", "if limit is not None and dispatched > limit:")),
    m("R5", "runner", RUNNER, "an InputError aborts at once, dropping the in-flight records before it",
      ("            except InputError as exc:\n                input_error = exc\n",
       "            except InputError as exc:\n                raise exc\n"),
      alt=(("            except StopIteration:\n                exhausted = True\n"
            "                return None\n            except InputError as exc:\n"
            "                input_error = exc\n",
            "            except StopIteration:\n                exhausted = True\n"
            "                return None\n            except InputError as exc:\n"
            "                raise exc\n"),)),
    m("R8", "runner", RUNNER, "resumed records not counted",
      ("                counts.resumed += 1", "                pass")),
    m("R13", "runner", RUNNER, "in-flight tasks not cancelled on exit",
      ("        for task in in_flight:\n            task.cancel()",
       "        for task in in_flight:\n            pass")),
    m("R14x", "runner", RUNNER, "failed records not counted",
      ("                    counts.failed += 1", "                    pass")),
    m("R15x", "runner", RUNNER, "a duplicate id is processed again",
      ("if not seen.add(job.id):", "if not seen.add(job.id) and False:")),
    m("R16x", "runner", RUNNER, "the HTTP status is left out of the error row",
      ('                        row["status"] = exc.status', "                        pass")),
    # the CLI's promises about pipes and the terminal (caitool/cli/__init__.py, caitool/console.py) ---------
    m("P1", "cli", "caitool/cli/__init__.py", "exit 0 instead of 141 when the reader closes stdout",
      ("        sys.exit(ConsumerGone.exit_code)", "        sys.exit(0)")),
    m("P2", "cli", "caitool/console.py", "progress drawn when stderr is not a terminal",
      ("    return sys.stderr.isatty()", "    return True"),
      alt=(("    return sys.stderr is not None and sys.stderr.isatty()",
            "    return sys.stderr is not None"),)),
    # caitool/retry.py (and the Retry-After parser in providers/_http.py) ---------------------------------
    m("T1", "retry", RETRY, "the backoff ignores Retry-After",
      ("            wait = max(wait, exc.retry_after)", "            pass")),
    m("T2", "retry", RETRY, "a 429 does not pause the other workers",
      ("self._paused_until = max(self._paused_until, time.monotonic() + pause)", "pass"),
      alt=(("self._paused_until = max(self._paused_until, until)", "pass"),)),
    m("T3", "retry", RETRY, "RateLimiter.acquire is a no-op",
      ("    async def acquire(self, est_tokens: int = 0) -> None:\n",
       "    async def acquire(self, est_tokens: int = 0) -> None:\n        return\n")),
    m("T4", "retry", RETRY, "a 429 no longer lowers --rpm by 30 %",
      ("self.rpm = max(1.0, self.rpm * 0.7)", "self.rpm = max(1.0, self.rpm * 1.0)")),
    m("T5", "retry", RETRY, "--tpm never waits",
      ("if self.tpm and est_tokens and self._tok_tokens < min(est_tokens, self.tpm):", "if False:")),
    m("T6", "retry", RETRY, "no jitter",
      ("wait = random.uniform(backoff / 2, backoff)", "wait = backoff")),
    m("T7", "retry", RETRY, "constant instead of exponential backoff",
      ("self.policy.initial_wait * 2 ** (failed_attempts - 1)", "self.policy.initial_wait")),
    m("T8", "retry", RETRY, "non-retryable errors get one more attempt",
      ("if not exc.retryable or self.policy.retries < 1:", "if self.policy.retries < 1:")),
    m("T9", "retry", RETRY, "one attempt more than --retries",
      ("stop=stop_after_attempt(self.policy.retries)", "stop=stop_after_attempt(self.policy.retries + 1)")),
    m("H3", "retry", "caitool/providers/_http.py", "a plain `Retry-After: N` header is ignored",
      ('    value = headers.get("retry-after")\n', "    value = None\n")),
    m("T13x", "retry", RETRY, "the 60 s backoff cap ignored",
      ("min(self.policy.max_wait, self.policy.initial_wait * 2 ** (failed_attempts - 1))",
       "self.policy.initial_wait * 2 ** (failed_attempts - 1)")),
    m("T14x", "retry", RETRY, "the rate recovers to the target at once instead of +1 rpm per success",
      ("self.rpm = min(self.target_rpm, self.rpm + 1.0)", "self.rpm = self.target_rpm")),
    m("T15x", "retry", RETRY, "token usage corrections applied with the wrong sign",
      ("self._tok_tokens += est_tokens - actual_tokens", "self._tok_tokens += actual_tokens - est_tokens")),
    m("T16x", "retry", RETRY, "a 429 without Retry-After pauses nobody",
      ("pause = retry_after if retry_after is not None else 1.0",
       "pause = retry_after if retry_after is not None else 0.0")),
    # caitool/trainers/losses.py ------------------------------------------------------------------------
    m("LS1", "losses", LOSSES, "preference_metrics soft_ce with p and 1 - p swapped",
      ("pi * math.log(max(qi, eps)) + (1 - pi) * math.log(max(1 - qi, eps))",
       "(1 - pi) * math.log(max(qi, eps)) + pi * math.log(max(1 - qi, eps))")),
    m("LS2", "losses", LOSSES, "hard_labels: p = 0.5 rounds to 0",
      ("return [1.0 if p >= 0.5 else 0.0 for p in p_chosen]",
       "return [1.0 if p > 0.5 else 0.0 for p in p_chosen]")),
    m("LS3", "losses", LOSSES, "soft loss with p and 1 - p swapped (sanity)",
      ("loss = -(p * F.logsigmoid(d) + (1.0 - p) * F.logsigmoid(-d))",
       "loss = -((1.0 - p) * F.logsigmoid(d) + p * F.logsigmoid(-d))")),
    m("LS4", "losses", LOSSES, "ECE bin index int(q * (bins - 1))",
      ("b = min(bins - 1, int(qi * bins))", "b = min(bins - 1, int(qi * (bins - 1)))")),
    m("LS5", "losses", LOSSES, "bradley_terry_loss adds the margin (used only by tests)",
      ("d = d - margin.to(d.dtype)", "d = d + margin.to(d.dtype)")),
    m("LS6", "losses", LOSSES, "reduction='mean' returns the sum (sanity)",
      ("        return loss.mean()", "        return loss.sum()")),
    m("LS7x", "losses", LOSSES, "accuracy counts ties (p = 0.5)",
      ("for qi, pi in zip(q, p_chosen, strict=True) if pi != 0.5]",
       "for qi, pi in zip(q, p_chosen, strict=True)]")),
    m("LS8x", "losses", LOSSES, "brier not squared",
      ("brier = sum((qi - pi) ** 2 for", "brier = sum(abs(qi - pi) for")),
    m("LS9x", "losses", LOSSES, "ECE bins not weighted by their size",
      ("ece = sum(abs(sq - sp) / n for cnt, sq, sp in sums if cnt)",
       "ece = sum(abs(sq - sp) / cnt for cnt, sq, sp in sums if cnt) / bins")),
    # caitool/evaluation/elo.py ---------------------------------------------------------------------------
    m("E1b", "elo", ELO, "the prior adds `prior` pseudo-wins instead of prior/2",
      ("total += (pairs.wins[i] + prior / 2.0) * theta[i]", "total += (pairs.wins[i] + prior) * theta[i]"),
      ("grad = [pairs.wins[i] + prior / 2.0 - prior", "grad = [pairs.wins[i] + prior - prior")),
    m("E2", "elo", ELO, "--prior 0 on a disconnected comparison graph accepted",
      ("    if len(components) > 1:\n        raise UsageError(", "    if False:\n        raise UsageError(")),
    m("E3", "elo", ELO, "a 97.5 % interval when 95 % is asked",
      ("alpha = (1.0 - settings.ci) / 2.0", "alpha = (1.0 - settings.ci) / 4.0")),
    m("E7", "elo", ELO, "a 93.3 % interval when 95 % is asked",
      ("alpha = (1.0 - settings.ci) / 2.0", "alpha = (1.0 - settings.ci) / 1.5")),
    m("E4", "elo", ELO, "se doubled",
      ("se = statistics.pstdev(s) if len(s) > 1 else 0.0",
       "se = 2 * statistics.pstdev(s) if len(s) > 1 else 0.0")),
    m("E5", "elo", ELO, "bootstrap RNG unseeded (--seed ignored)",
      ('rng = random.Random(f"caitool:elo:{settings.seed}:{criterion}")', "rng = random.Random()")),
    m("E6", "elo", ELO, "Newton without step halving",
      ("if value >= current - 1e-12 or t < 1e-6:", "if True:")),
    m("E8x", "elo", ELO, "quantiles without interpolation (lower order statistic)",
      ("return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)",
       "return sorted_values[lo]")),
    m("E9x", "elo", ELO, "bootstrap samples not re-anchored on --anchor",
      ("for i, e in enumerate(_anchored(b.log_strength, anchor_index)):",
       "for i, e in enumerate(_anchored(b.log_strength, None)):")),
    m("E10x", "elo", ELO, "win_probability with the sides swapped",
      ("10.0 ** ((elo_j - elo_i) / 400.0)", "10.0 ** ((elo_i - elo_j) / 400.0)")),
    m("E11x", "elo", ELO, "Elo on a log2 instead of a log10 scale (sanity)",
      ("ELO_PER_NAT = 400.0 / math.log(10.0)", "ELO_PER_NAT = 400.0 / math.log(2.0)")),
]  # fmt: skip

# The tests that cover each module, fast ones first (with -x the first failure ends the run). A path that
# does not exist in the mutated checkout is left out, so one list serves old commits too.
_RETRY_FAULTS = [
    "tests/test_faults.py::test_retry_after_is_honoured",
    "tests/test_faults.py::test_sustained_rpm_limit_converges_with_few_429s",
    "tests/test_faults.py::test_outage_beyond_retry_budget_goes_to_errors_and_rerun_pays_only_those",
    "tests/test_critique_revise.py::test_faults_are_retried_within_budget",
    "tests/test_critique_revise.py::test_fatal_error_goes_to_errors_file_with_exit_3",
    "tests/test_critique_revise.py::test_auth_error_is_fatal_and_key_never_printed",
]
_CHECKPOINTS = [
    "tests/test_faults.py::test_chain_killed_between_critique_and_revision_does_not_pay_again",
    "tests/test_faults.py::test_label_pairs_killed_between_orders_does_not_pay_again",
]
TESTS: dict[str, list[str]] = {
    "labels": [
        "tests/test_labels.py",
        "tests/test_bracketed_option_spellings.py",
        "tests/test_label_pairs.py",
    ],
    "store": [
        "tests/test_id_set_exact.py",
        "tests/test_resume_guarantees.py",
        "tests/test_resume_without_done_file.py",
        "tests/test_hostile_input.py::test_id_set_is_an_exact_set_of_any_ids",
        "tests/test_critique_revise.py",
        "tests/test_crash_resume.py",
        *_CHECKPOINTS,
        "tests/test_faults.py::test_outage_beyond_retry_budget_goes_to_errors_and_rerun_pays_only_those",
    ],
    "runner": [
        "tests/test_runner_guarantees.py",
        "tests/test_resume_guarantees.py::test_resumed_records_are_counted",
        "tests/test_bad_input.py",
        "tests/test_critique_revise.py",
        "tests/test_crash_resume.py",
        "tests/test_faults.py::test_interrupt_while_requests_hang_exits_130_at_once_then_resumes",
    ],
    "cli": [
        "tests/test_runner_guarantees.py",
        "tests/test_critique_revise.py::test_stdin_to_stdout_pipeline_head_gets_one_valid_line",
        "tests/test_critique_revise.py::test_progress_and_summary_go_to_stderr_only",
    ],
    "retry": [
        "tests/test_retry_backoff.py",
        "tests/test_rate_limits.py",
        "tests/test_openai_transport.py",
        *_RETRY_FAULTS,
    ],
    "losses": [
        "tests/test_loss_orientation.py",
        "tests/test_trainers.py::test_soft_loss_matches_hand_computed_value",
        "tests/test_trainers.py::test_soft_loss_at_p1_is_bradley_terry_and_minimised_at_logit_p",
        "tests/test_trainers.py::test_preference_metrics_by_hand",
        "tests/test_trainers.py::test_soft_labels_to_hard_flips_in_proportion",
    ],
    "elo": [
        "tests/test_elo_fit_and_quantiles.py",
        "tests/test_elo_intervals.py",
        "tests/test_elo.py",
        "tests/test_plot.py",
    ],
}

_IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis",
    "*.egg-info", "demo-output", "results", "gpu",
)  # fmt: skip


def existing(tests: list[str], root: Path) -> list[str]:
    return [t for t in tests if (root / t.split("::", 1)[0]).exists()]


def run_tests(root: Path, tests: list[str], timeout: float, deselect: list[str]) -> tuple[str, float, str]:
    """('pass' | 'fail' | 'timeout' | 'error', seconds, the first failing test or the last output line) of one
    pytest run in `root`. It runs in its own process group, so a timeout also ends the CLIs it started."""
    env = {**os.environ, "PYTHONPATH": str(root), "PYTHONDONTWRITEBYTECODE": "1"}
    argv = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-m", "not slow"]
    argv += [f"--timeout={int(timeout)}", *tests, *(f"--deselect={d}" for d in deselect)]
    t0 = time.monotonic()
    proc = subprocess.Popen(
        argv,
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return "timeout", time.monotonic() - t0, "timeout"
    seconds = time.monotonic() - t0
    lines = out.strip().splitlines()
    failed = [line.split(" - ")[0] for line in lines if line.startswith(("FAILED ", "ERROR "))]
    detail = failed[0] if failed else (lines[-1] if lines else "")
    # pytest: 0 all passed, 1 some failed; 2-5 interrupted, internal error, usage error, nothing collected.
    verdict = {0: "pass", 1: "fail"}.get(proc.returncode, "error")
    return verdict, seconds, detail


def apply(root: Path, mutation: Mutation) -> str | None:
    """Apply the first variant of the edits whose snippets are each there exactly once; else the reason."""
    path = root / mutation.path
    original = path.read_text()
    reason = ""
    for edits in (mutation.edits, *mutation.alt):
        text = original
        for old, new in edits:
            count = text.count(old)
            if count != 1:
                reason = f"snippet found {count} times in {mutation.path}: {old.splitlines()[0].strip()!r}"
                break
            text = text.replace(old, new)
        else:
            path.write_text(text)
            return None
    return reason


def run_one(
    root: Path,
    x: Mutation,
    tests: list[str],
    broken: str,
    timeout: float,
    deselect: list[str],
    run_equivalent: bool = False,
) -> dict[str, object]:
    row: dict[str, object] = {"id": x.id, "module": x.module, "what": x.what, "seconds": 0.0}
    if x.equivalent and not run_equivalent:
        row["result"], row["detail"] = "equivalent", x.equivalent
        say(f"{x.id:6} {x.module:7} {'equivalent':9} {'':8}  {x.what}")
        return row
    original = (root / x.path).read_text()
    stale = None if broken else apply(root, x)
    if broken or stale:
        row["result"], row["detail"] = ("not run", broken) if broken else ("stale", stale)
    else:
        try:
            verdict, secs, detail = run_tests(root, tests, timeout, deselect)
        finally:
            (root / x.path).write_text(original)
        row["seconds"] = round(secs, 1)
        row["result"] = {"pass": "survived", "fail": "killed", "timeout": "killed"}.get(verdict, "error")
        row["detail"] = "" if verdict == "pass" else detail
    say(f"{x.id:6} {x.module:7} {row['result']:9} {row['seconds']:6.1f} s  {x.what}")
    if row["result"] != "survived" and row["detail"]:
        say(f"{'':16}{row['detail']}")
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", type=Path, default=REPO, help="checkout to mutate (default: this one)")
    ap.add_argument("--module", action="append", choices=sorted(TESTS), help="only these modules")
    ap.add_argument("--only", help="only these mutation ids, comma-separated")
    ap.add_argument("--timeout", type=float, default=300, help="seconds per test run (default 300)")
    ap.add_argument(
        "--deselect",
        action="append",
        default=[],
        metavar="NODEID",
        help="leave out a (flaky) test; repeatable",
    )
    ap.add_argument(
        "--no-baseline", action="store_true", help="skip the unmutated run of each module's tests"
    )
    ap.add_argument("--json", type=Path, help="also write every result to this JSON file")
    ap.add_argument("--list", action="store_true", help="list the mutations and exit")
    args = ap.parse_args(argv)

    chosen = [x for x in MUTATIONS if not args.module or x.module in args.module]
    if args.only:
        wanted = {s.strip() for s in args.only.split(",")}
        unknown = wanted - {x.id for x in MUTATIONS}
        if unknown:
            ap.error(f"unknown mutation ids: {', '.join(sorted(unknown))}")
        chosen = [x for x in chosen if x.id in wanted]  # an equivalent one named here is run too
    if args.list:
        for x in chosen:
            say(f"{x.id:6} {x.module:7} {x.path:32} {x.what}")
        return 0

    started = time.monotonic()
    results: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="caitool-mutate-") as tmp:
        root = Path(tmp) / "repo"
        shutil.copytree(args.repo.resolve(), root, ignore=_IGNORE)
        say(f"mutating a copy of {args.repo.resolve()} in {root}")
        for module in dict.fromkeys(x.module for x in chosen):
            tests = existing(TESTS[module], root)
            broken = ""
            if not tests:
                broken = "no test files"
            elif not args.no_baseline:
                # A test that fails unmutated would "kill" everything; one retry tells a flaky test (noted)
                # from a broken one (the module is skipped).
                for _ in (1, 2):
                    verdict, secs, detail = run_tests(root, tests, args.timeout, args.deselect)
                    say(
                        f"baseline {module}: {verdict} in {secs:.0f} s  {'' if verdict == 'pass' else detail}"
                    )
                    if verdict == "pass":
                        break
                if verdict != "pass":
                    broken = f"baseline {verdict}: {detail}"
            for x in (x for x in chosen if x.module == module):
                results.append(run_one(root, x, tests, broken, args.timeout, args.deselect, bool(args.only)))

    kinds = ("killed", "survived", "equivalent")
    say(f"\n{'module':8} {'killed':>6} {'survived':>8} {'equivalent':>10} {'other':>5}")
    for module in dict.fromkeys(str(r["module"]) for r in results):
        rows = [r for r in results if r["module"] == module]
        counts = {k: sum(r["result"] == k for r in rows) for k in kinds}
        other = len(rows) - sum(counts.values())
        say(f"{module:8} {counts['killed']:6} {counts['survived']:8} {counts['equivalent']:10} {other:5}")
    survivors = [r for r in results if r["result"] == "survived"]
    if survivors:
        say("\nsurvivors:")
        for r in survivors:
            say(f"  {r['id']:6} {r['module']:7} {r['what']}")
    for r in results:
        if r["result"] == "equivalent":
            say(f"  {r['id']:6} equivalent: {r['detail']}")
    for r in results:
        if r["result"] in ("stale", "error", "not run"):
            say(f"  {r['id']:6} {r['result']}: {r.get('detail', '')}")
    elapsed = time.monotonic() - started
    say(f"\n{len(results)} mutations in {elapsed / 60:.1f} min")
    if args.json:
        args.json.write_text(
            json.dumps({"repo": str(args.repo), "seconds": round(elapsed), "results": results}, indent=1)
            + "\n"
        )
    return 1 if any(r["result"] in ("stale", "not run") for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
