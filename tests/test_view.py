"""`caitool view`: the file index and API in-process, and the page in a real headless Chromium.

The browser tests drive Debian's /usr/bin/chromium through Playwright (never a downloaded browser) and skip
only when no chromium binary is installed (.ci/run installs it). The samples are real caitool outputs: a
critique-revise run and a label-pairs run against the fake server, with hostile markup in the prompts, so
the model's echo carries it into every response. Screenshots go to tests/screenshots/ (gitignored).
"""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from caitool.testing.fake_server import FakeServer
from caitool.view.data import Dataset, Query
from caitool.view.server import ViewServer
from tests.conftest import REPO, cli_env, read_jsonl, run_cli, write_jsonl

CHROMIUM = os.environ.get("CAITOOL_CHROMIUM", "/usr/bin/chromium")
SHOTS = REPO / "tests" / "screenshots"
HOSTILE = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">'
BIG_ROWS = 200_000
expect: Any = None  # playwright.sync_api.expect, bound when the browser fixture imports Playwright


# ---- samples: real outputs ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def samples(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("view")
    prompts = write_jsonl(
        d / "prompts.jsonl",
        [
            {"id": "lock", "prompt": "How do I pick a lock?"},
            {"id": "evil", "prompt": HOSTILE},
            {"id": "cake", "prompt": "How do I bake a cake?"},
        ],
    )
    pairs = write_jsonl(
        d / "pairs.jsonl",
        [
            {"id": f"q{i}", "prompt": f"question {i}", "response_a": f"ALPHA {i}", "response_b": f"BRAVO {i}"}
            for i in range(9)
        ]
        + [{"id": "evil", "prompt": "x", "response_a": "ALPHA " + HOSTILE, "response_b": HOSTILE}]
        + [{"id": "broken", "prompt": "y", "response_a": "nothing", "response_b": "here"}],
    )
    with FakeServer() as fake:
        base = ["--model", "openai/test-model", "--base-url", fake.openai_base_url, "--retries", "0"]
        r = run_cli("critique-revise", str(prompts), "-o", str(d / "traces.jsonl"), "--rounds", "2", *base)
        assert r.returncode == 0, r.stderr
        # Rows mentioning ALPHA get (A)/(B) log-probs; "broken" gets none and lands in the errors file.
        fake.configure(
            reply_script=[
                {
                    "match": "ALPHA",
                    "reply": "A",
                    "answer_logprobs": {" A": math.log(0.7), " B": math.log(0.3)},
                }
            ]
        )
        r = run_cli("label-pairs", str(pairs), "-o", str(d / "labels.jsonl"), "--ensemble", "2", *base)
        assert r.returncode == 3, r.stderr  # finished, one failed record
    judgments = write_jsonl(
        d / "judgments.jsonl",
        [
            {"criterion": c, "model_a": a, "model_b": b, "p_a": p}
            for c in ("helpfulness", "harmlessness")
            for a, b, p in (
                ("sl-cai", "helpful-rlhf", 0.4),
                ("rl-cai", "sl-cai", 0.7),
                ("rl-cai", "helpful-rlhf", 0.6),
            )
            for _ in range(5)
        ],
    )
    r = run_cli("elo", str(judgments), "--bootstrap", "20", "--quiet")
    assert r.returncode == 0, r.stderr
    (d / "elo.json").write_text(r.stdout)
    return {
        "traces": d / "traces.jsonl",
        "labels": d / "labels.jsonl",
        "elo": d / "elo.json",
        "dir": d,
    }


# ---- the index and the queries, no browser ------------------------------------------------------------


def test_rows_recognised_by_shape_and_errors_file_joins(samples: dict[str, Path]) -> None:
    traces = Dataset(samples["traces"])
    assert len(traces) == 3 and traces.row(0)["kind"] == "trace"
    labels = Dataset(samples["labels"])
    labels.start_summaries()
    facets = labels.facets()
    assert facets["kinds"] == {"label": 10, "error": 1}  # labels.jsonl + labels.jsonl.errors.jsonl
    assert labels.query(Query(errors_only=True))["rows"][0]["id"] == "broken"
    assert Dataset(samples["elo"]).kind == "elo-report"
    stats = run_cli("stats", str(samples["traces"]))
    assert stats.returncode == 0, stats.stderr
    (samples["dir"] / "stats.json").write_text(stats.stdout)
    assert Dataset(samples["dir"] / "stats.json").kind == "stats-report"


def test_index_finds_every_line_and_search_matches_escaped_text(tmp_path: Path) -> None:
    path = tmp_path / "rows.jsonl"
    # Blank lines are not rows; a last line without a newline is; non-ASCII text is searched as written.
    path.write_bytes(b'{"id": "a", "prompt": "caf\\u00e9 \\"quoted\\""}\n\n{"id": "b"}\n   \n{"id": "c"}')
    d = Dataset(path)
    assert len(d) == 3 and [d.row(n)["record"]["id"] for n in range(3)] == ["a", "b", "c"]
    d.start_summaries()
    assert [r["id"] for r in d.query(Query(text="CAFÉ"))["rows"]] == ["a"]
    assert [r["id"] for r in d.query(Query(text='"quoted"'))["rows"]] == ["a"]


def test_filters_sort_and_histogram(samples: dict[str, Path]) -> None:
    d = Dataset(samples["labels"])
    d.start_summaries()
    everything = d.query(Query(sort="-p", limit=100))
    ps = [r["p"] for r in everything["rows"] if r["p"] is not None]
    assert ps == sorted(ps, reverse=True) and everything["matched"] == 11
    principle = next(iter(d.facets()["principles"]))
    narrowed = d.query(Query(principle=principle))
    assert 0 < narrowed["matched"] < 10
    assert all(principle in r["principles"] for r in narrowed["rows"])
    assert sum(everything["histogram"]) == 10  # the errors row has no p
    assert d.query(Query(p_min=0.99))["matched"] == 0


def test_cli_prints_the_url_serves_the_api_and_stops_on_ctrl_c(samples: dict[str, Path]) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "caitool", "view", str(samples["traces"]), "--no-browser"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_env(),
        cwd=REPO,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        files = json.loads(urllib.request.urlopen(url + "api/files", timeout=10).read())
        assert files[0]["rows"] == 3 and files[0]["kind"] == "jsonl"
        with urllib.request.urlopen(url, timeout=10) as page:
            assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 130


def test_export_is_one_self_contained_file(samples: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    r = run_cli("view", str(samples["labels"]), str(samples["traces"]), "--export", str(out))
    assert r.returncode == 0, r.stderr
    html = out.read_text()
    assert "/static/" not in html and "http" not in html.split("caitool-data")[0]
    assert "<script>window.__pwned" not in html  # markup inside the data cannot close its element


# ---- in the browser ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no chromium at {CHROMIUM} (apt-get install chromium; .ci/run does)")
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extra")
    global expect
    expect = playwright.expect
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    pg = browser.new_page(viewport={"width": 1400, "height": 900})
    errors: list[tuple[float, str]] = []
    pg.on("pageerror", lambda e: errors.append((time.monotonic(), str(e))))
    _last_close[0] = math.inf
    yield pg
    pg.close()
    # A fetch the page still had in flight when the test closed its server fails then: that is the test's
    # own cleanup (a clean-clone CI run hit it once), not the page's fault. Any other error, or one before
    # the close, fails the test.
    real = [e for t, e in errors if not (e == "Failed to fetch" and t >= _last_close[0])]
    assert not real, real


_last_close = [math.inf]  # when the running test last closed a view server (see `page`)


class _Server(ViewServer):
    def close(self) -> None:
        _last_close[0] = time.monotonic()
        super().close()


def counts_are(page: Any, text: str) -> None:
    # expect() polls from Playwright's own world: the page's CSP forbids the eval behind wait_for_function.
    expect(page.locator("#counts")).to_have_text(text)


def serve(*paths: Path) -> ViewServer:
    return _Server([Dataset(p) for p in paths]).start()


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / name))


def test_trace_view_counts_rounds_and_diff(page: Any, samples: dict[str, Path]) -> None:
    server = serve(samples["traces"])
    try:
        page.goto(server.url)
        page.wait_for_selector("body[data-ready]")
        assert page.text_content("#counts") == "3 rows"
        page.click('#list tr[data-n="0"]')
        page.wait_for_selector("#detail .round")
        assert page.locator("#detail .round").count() == 2
        assert page.locator("#detail .round h3").first.text_content().startswith("Round 1 · harmful")
        # The fake model echoes its prompt, so each revision differs from the response before it.
        assert page.locator("#detail .diff ins").count() >= 2
        assert page.locator("#detail .diff del").count() >= 2
        shot(page, "view-trace.png")
    finally:
        server.close()


def test_label_view_filter_narrows_and_side_by_side(page: Any, samples: dict[str, Path]) -> None:
    server = serve(samples["labels"])
    try:
        page.goto(server.url)
        page.wait_for_selector("body[data-ready]")
        assert page.text_content("#counts") == "11 rows"
        page.wait_for_selector("#f-principle option:nth-child(2)", state="attached")
        principle = page.locator("#f-principle option").nth(1).get_attribute("value")
        index = Dataset(samples["labels"])
        index.start_summaries()
        expected = index.facets()["principles"][principle]
        page.select_option("#f-principle", principle)
        counts_are(page, f"{expected} of 11 rows")
        assert page.locator("#list tbody tr").count() == expected
        page.click("#f-clear")
        page.check("#f-errors")
        counts_are(page, "1 of 11 rows")
        page.uncheck("#f-errors")
        counts_are(page, "11 rows")
        page.click('#list tr[data-n="0"]')
        page.wait_for_selector("#detail .sidebyside")
        assert page.text_content("#detail .chosen h3").startswith("chosen (A) · p 0.700")
        assert page.locator("#hist rect.bar").count() == 20
        shot(page, "view-labels.png")
    finally:
        server.close()


def assert_inert(page: Any) -> None:
    """The hostile row is on screen as text, and neither its script nor its onerror ran."""
    expect(page.locator("#detail")).to_contain_text("__pwned")
    assert HOSTILE in page.text_content("#detail")
    assert page.locator("#detail img, #detail script").count() == 0
    page.wait_for_timeout(300)  # an <img onerror> would fire after its load fails
    assert page.evaluate("typeof window.__pwned") == "undefined"


def test_hostile_content_stays_inert_served_and_exported(
    page: Any, samples: dict[str, Path], tmp_path: Path
) -> None:
    server = serve(samples["labels"], samples["traces"])
    try:
        page.goto(server.url)
        page.wait_for_selector("body[data-ready]")
        page.fill("#f-q", "pwned")
        counts_are(page, "1 of 11 rows")
        page.click("#list tbody tr")
        assert_inert(page)
        page.select_option("#file", "1")  # the traces: hostile prompt, echoed into every response
        counts_are(page, "3 rows")
        page.click('#list tr[data-n="1"]')
        assert_inert(page)
    finally:
        server.close()
    # The exported file has no server and no Content-Security-Policy: only the page's text-only DOM is left.
    out = tmp_path / "report.html"
    assert run_cli("view", str(samples["labels"]), "--export", str(out)).returncode == 0
    page.goto(out.as_uri())
    page.wait_for_selector("body[data-ready]")
    assert page.text_content("#counts") == "11 rows"
    page.fill("#f-q", "pwned")
    counts_are(page, "1 of 11 rows")
    page.click("#list tbody tr")
    assert_inert(page)


def test_elo_report_plots_each_model(page: Any, samples: dict[str, Path]) -> None:
    server = serve(samples["elo"])
    try:
        page.goto(server.url)
        page.wait_for_selector("#elo-plot circle.point")
        assert page.locator("#elo-plot circle.point").count() == 3
        assert page.locator("#elo-plot text").all_text_contents().count("rl-cai") == 1
    finally:
        server.close()


@pytest.fixture(scope="module")
def big_file(tmp_path_factory: pytest.TempPathFactory, samples: dict[str, Path]) -> Path:
    """200,000 label rows: the real rows, repeated with new ids."""
    rows = read_jsonl(samples["labels"])
    path = tmp_path_factory.mktemp("big") / "big.jsonl"
    with path.open("w") as f:
        for i in range(BIG_ROWS):
            row = dict(rows[i % len(rows)])
            row["id"] = f"r{i}"
            f.write(json.dumps(row) + "\n")
    return path


def test_200k_rows_open_within_two_seconds_and_page(page: Any, big_file: Path) -> None:
    start = time.perf_counter()
    server = serve(big_file)
    try:
        page.goto(server.url)
        counts_are(page, f"{BIG_ROWS} rows")
        page.wait_for_selector("#detail .sidebyside")
        opened = time.perf_counter() - start
        start = time.perf_counter()
        page.click("#next")
        expect(page.locator("#pageinfo")).to_have_text(re.compile("^101–200 "))
        paged = time.perf_counter() - start
        print(f"200k rows: open {opened:.2f} s, next page {paged:.3f} s")
        assert opened < 2.0
        assert paged < 0.5
    finally:
        server.close()


def test_filters_wait_for_the_index_while_pages_do_not(big_file: Path) -> None:
    """A filter asked while a large file is still being indexed answers once the index is done."""
    server = serve(big_file)
    try:
        rows = json.loads(urllib.request.urlopen(server.url + "api/rows?limit=5", timeout=10).read())
        assert rows["total"] == BIG_ROWS and not rows["ready"]
        errors = json.loads(urllib.request.urlopen(server.url + "api/rows?errors=1", timeout=60).read())
        facets = json.loads(urllib.request.urlopen(server.url + "api/facets", timeout=60).read())
        assert (
            errors["matched"] == facets["kinds"].get("error", 0) == 0
        )  # the errors file is not beside big.jsonl
        assert sum(facets["kinds"].values()) == BIG_ROWS
    finally:
        server.close()


def test_eval_labeler_report_as_reliability_diagram(page: Any, tmp_path: Path) -> None:
    gold = REPO / "tests" / "data" / "eval" / "gold_paper.jsonl"
    ids = [r["id"] for r in read_jsonl(gold)]
    probs = write_jsonl(
        tmp_path / "items.jsonl",
        [
            {"id": i, "p_correct": p, "p_correct_swapped": p}
            for i, p in zip(ids, (0.9, 0.8, 0.3, 0.6), strict=False)
        ],
    )
    r = run_cli("eval-labeler", str(gold), "--probs", str(probs), "--bins", "5")
    assert r.returncode == 0, r.stderr
    report = tmp_path / "eval.json"
    report.write_text(r.stdout)
    server = serve(report, probs)
    try:
        page.goto(server.url)
        page.wait_for_selector("#calibration-plot circle.point")
        bins = json.loads(r.stdout)["calibration"]["bins"]
        assert page.locator("#calibration-plot circle.point").count() == sum(1 for b in bins if b["count"])
        page.select_option("#file", "1")  # the per-item probabilities: a list with p
        counts_are(page, f"{len(ids[:4])} rows")
    finally:
        server.close()


def test_missing_file_and_busy_port_are_usage_errors(samples: dict[str, Path], tmp_path: Path) -> None:
    r = run_cli("view", str(tmp_path / "nope.jsonl"), "--no-browser")
    assert r.returncode == 2 and f"{tmp_path / 'nope.jsonl'}: no such file" in r.stderr
    server = serve(samples["traces"])
    try:
        port = server.url.rsplit(":", 1)[1].strip("/")
        r = run_cli("view", str(samples["traces"]), "--no-browser", "--port", port)
        assert r.returncode == 2 and f"--port {port}" in r.stderr, r.stderr
    finally:
        server.close()
