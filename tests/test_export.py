"""`caitool export`: real caitool outputs (critique-revise, sample-pairs, label-pairs against the local fake
server) → a dataset folder that `datasets` loads, a card whose provenance is the manifests', a mixed-settings
refusal, and a Hub push through huggingface_hub's own HTTP code to a local server written here.
"""

from __future__ import annotations

import base64
import json
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from caitool.errors import InputError, UsageError
from caitool.testing.fake_server import FakeServer
from tests.conftest import SENTINEL_KEY, cli_env, prompts, run_cli, write_jsonl

pytest.importorskip("pyarrow")
yaml = pytest.importorskip("yaml")

N_PROMPTS = 8


def _ok(r: Any) -> None:
    assert r.returncode == 0, r.stderr


@pytest.fixture(scope="module")
def outputs(server: FakeServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example pipeline's data steps, for real: traces, SFT rows, pairs, and their labels."""
    server.reset(seed=0)
    server.configure(answer_logprobs={" A": -0.3, " B": -1.4})
    d = tmp_path_factory.mktemp("outputs")
    src = str(write_jsonl(d / "prompts.jsonl", prompts(N_PROMPTS)))
    model = ("--model", "openai/test-model", "--base-url", server.openai_base_url)
    _ok(run_cli("critique-revise", src, "-o", str(d / "sl.jsonl"), "--rounds", "2", *model))
    _ok(
        run_cli(
            "critique-revise",
            src,
            "-o",
            str(d / "sft.jsonl"),
            "--format",
            "sft",
            "--keep-rounds",
            "--rounds",
            "2",
            *model,
        )
    )
    _ok(run_cli("sample-pairs", src, "-o", str(d / "pairs.jsonl"), "-k", "2", *model))
    _ok(run_cli("label-pairs", str(d / "pairs.jsonl"), "-o", str(d / "prefs.jsonl"), *model))
    return d


def _card(folder: Path) -> tuple[dict[str, Any], str]:
    text = (folder / "README.md").read_text()
    assert text.startswith("---\n")
    head, body = text[4:].split("\n---\n", 1)
    return yaml.safe_load(head), body


def _first_turn(prompt: list[dict[str, str]]) -> str:
    return next(m["content"] for m in prompt if m["role"] == "user")


def test_pipeline_outputs_load_with_grouped_splits_and_manifest_provenance(
    outputs: Path, tmp_path: Path
) -> None:
    datasets = pytest.importorskip("datasets")
    ds_dir = tmp_path / "ds"
    files = [str(outputs / f) for f in ("sl.jsonl", "sft.jsonl", "prefs.jsonl")]
    r = run_cli(
        "export", *files, "--to", str(ds_dir), "--test-size", "0.25", "--seed", "3", "--license", "mit"
    )
    _ok(r)

    header, body = _card(ds_dir)
    assert header["license"] == "mit" and header["language"] == ["en"]
    assert header["size_categories"] == ["n<1K"]
    assert [c["config_name"] for c in header["configs"]] == ["traces", "sft", "preferences"]
    assert header["configs"][0]["default"] is True
    for c in header["configs"]:
        assert {f["split"] for f in c["data_files"]} == {"train", "test"}

    loaded = {
        c: datasets.load_dataset(str(ds_dir), c, cache_dir=str(tmp_path / "cache"))
        for c in ("traces", "sft", "preferences")
    }
    expected_rows = {"traces": N_PROMPTS, "sft": 2 * N_PROMPTS, "preferences": N_PROMPTS}
    test_prompts: dict[str, set[str]] = {}
    for config, dd in loaded.items():
        assert set(dd) == {"train", "test"}
        assert dd["train"].num_rows + dd["test"].num_rows == expected_rows[config]
        by_split = {}
        for split in ("train", "test"):
            rows = dd[split].to_list()
            key = "messages" if config == "sft" else "prompt"
            by_split[split] = {_first_turn(row[key]) for row in rows}
        assert not by_split["train"] & by_split["test"], f"{config}: a prompt in both splits"
        test_prompts[config] = by_split["test"]
    # 0.25 of 8 prompts = 2 prompts, the same ones in every configuration
    assert len(test_prompts["traces"]) == 2
    assert test_prompts["traces"] == test_prompts["sft"] == test_prompts["preferences"]

    prefs = loaded["preferences"]["train"]
    assert prefs.column_names == ["id", "prompt", "chosen", "rejected", "p_chosen", "margin", "caitool"]
    row = prefs[0]  # TRL's conversational preference format
    assert row["prompt"][0]["role"] == "user" and row["chosen"][0]["role"] == "assistant"
    assert row["p_chosen"] == pytest.approx(0.75, abs=1e-3)
    assert json.loads(row["caitool"])["source"].startswith("pairs.jsonl:")  # no local directory
    traces = loaded["traces"]["train"]
    assert {"prompt", "initial_response", "rounds", "final_response"} <= set(traces.column_names)
    assert len(traces[0]["rounds"]) == 2

    # Provenance: the card and provenance.json say what the manifests say, upstream stages included.
    record = json.loads((ds_dir / "provenance.json").read_text())
    for config, name in (("traces", "sl.jsonl"), ("sft", "sft.jsonl"), ("preferences", "prefs.jsonl")):
        manifest = json.loads((outputs / f"{name}.manifest.json").read_text())
        (stages,) = record["configs"][config]["files"]
        nearest = stages[0]
        assert nearest["file"] == name and nearest["fingerprint"] == manifest["fingerprint"]
        assert nearest["command"] == manifest["command"]
        assert nearest["caitool_version"] == manifest["versions"]["caitool"]
        for model, m in manifest["counts"]["models"].items():
            assert nearest["models"][model]["input_tokens"] == m["input_tokens"]
            assert f"{m['input_tokens']} input + {m['output_tokens']} output tokens" in body
        settings = manifest["settings"]
        assert nearest["settings"] == {k: v for k, v in settings.items() if "base_url" not in k}
        assert f"constitution_sha256 `{settings['constitution_sha256']}`" in body
        assert f"`{name}`: `caitool {manifest['command']}`" in body
    pref_stages = record["configs"]["preferences"]["files"][0]
    assert [s["file"] for s in pref_stages] == ["prefs.jsonl", "pairs.jsonl", "prompts.jsonl"]
    assert pref_stages[1]["command"] == "sample-pairs" and len(pref_stages[2]["sha256"]) == 64
    assert "rounds `2`" in body and "Label sources: logprobs 8." in body
    assert "| 0.75–0.80 | 8 |" in body
    # the principle table counts every round
    assert "### `traces` (16 rounds)" in body

    # Nothing secret or local reaches the folder: no key, no server address, no temporary directory.
    for path in ds_dir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for needle in (SENTINEL_KEY, "127.0.0.1", str(outputs)):
                assert needle.encode() not in data, f"{needle} in {path.name}"


def test_mixed_settings_refused_naming_keys_then_listed_with_allow_mixed(
    outputs: Path, server: FakeServer, tmp_path: Path
) -> None:
    server.reset(seed=0)
    model = ("--model", "openai/test-model", "--base-url", server.openai_base_url)
    one_round = tmp_path / "sl-1.jsonl"
    _ok(
        run_cli(
            "critique-revise", str(outputs / "prompts.jsonl"), "-o", str(one_round), "--rounds", "1", *model
        )
    )
    files = [str(outputs / "sl.jsonl"), str(one_round)]

    r = run_cli("export", *files, "--to", str(tmp_path / "ds"))
    assert r.returncode == 2
    assert "different settings: rounds" in r.stderr and "--allow-mixed" in r.stderr
    assert not (tmp_path / "ds").exists()

    _ok(run_cli("export", *files, "--to", str(tmp_path / "ds"), "--allow-mixed"))
    _, body = _card(tmp_path / "ds")
    assert "**Mixed settings**" in body and "differ in `rounds`" in body
    assert "| `sl.jsonl` | `2` |" in body and "| `sl-1.jsonl` | `1` |" in body
    record = json.loads((tmp_path / "ds" / "provenance.json").read_text())
    assert record["configs"]["traces"]["mixed_settings"] == ["rounds"]
    assert record["configs"]["traces"]["splits"] == {"train": 2 * N_PROMPTS}


def test_refusals_before_anything_is_written(outputs: Path, tmp_path: Path) -> None:
    from caitool.export.dataset import export_dataset, parse_test_size

    to = str(tmp_path / "ds")
    orphan = tmp_path / "orphan.jsonl"
    shutil.copy(outputs / "sl.jsonl", orphan)  # rows without their manifest
    with pytest.raises(UsageError, match="no manifest beside it"):
        export_dataset([str(orphan)], to)
    with pytest.raises(InputError, match=r"pairs\.jsonl:1: an unlabelled pair .* label-pairs first"):
        export_dataset([str(outputs / "pairs.jsonl")], to)
    with pytest.raises(UsageError, match="leaves no prompt for the train split"):
        export_dataset([str(outputs / "sl.jsonl")], to, test_size=parse_test_size(str(N_PROMPTS)))
    with pytest.raises(UsageError, match="given twice"):
        export_dataset([str(outputs / "sl.jsonl")] * 2, to)
    for bad in ("-0.1", "1.5", "x"):
        with pytest.raises(UsageError, match="--test-size"):
            parse_test_size(bad)
    assert not (tmp_path / "ds").exists()
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "keep.txt").write_text("mine")
    with pytest.raises(UsageError, match="not empty"):
        export_dataset([str(outputs / "sl.jsonl")], to)
    assert (tmp_path / "ds" / "keep.txt").read_text() == "mine"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".ds")] == []


class _Hub:
    """The Hub endpoints an upload calls (repo creation, YAML validation, pre-upload, commit), on 127.0.0.1.
    Every file is declared `regular`, so its bytes travel inside the commit, where the test can read them."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                hub.requests.append(("POST", self.path, dict(self.headers), body))
                path = self.path.split("?")[0]
                if path == "/api/repos/create":
                    reply: Any = {"url": f"{hub.url}/datasets/org/cai-data", "name": "org/cai-data"}
                elif path == "/api/validate-yaml":
                    reply = {"errors": [], "warnings": []}
                elif path == "/api/datasets/org/cai-data/preupload/main":
                    reply = {
                        "files": [
                            {"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                            for f in json.loads(body)["files"]
                        ]
                    }
                elif path == "/api/datasets/org/cai-data/commit/main":
                    reply = {
                        "commitUrl": f"{hub.url}/datasets/org/cai-data/commit/{'c' * 40}",
                        "commitOid": "c" * 40,
                    }
                else:
                    self.send_error(404)
                    return
                data = json.dumps(reply).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                hub.requests.append(("GET", self.path, dict(self.headers), b""))
                self.send_error(404)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> _Hub:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def hub() -> Iterator[_Hub]:
    with _Hub() as h:
        yield h


def test_push_to_hub_sends_every_file_in_one_commit(outputs: Path, tmp_path: Path, hub: _Hub) -> None:
    pytest.importorskip("huggingface_hub")
    token = "hf_SENTINELtoken0123456789"
    env = cli_env(HF_ENDPOINT=hub.url, HF_TOKEN=token, HF_HUB_OFFLINE="0", HF_HOME=str(tmp_path / "hf-home"))
    ds_dir = tmp_path / "ds"
    r = run_cli(
        "export",
        str(outputs / "prefs.jsonl"),
        "--to",
        str(ds_dir),
        "--push-to-hub",
        "org/cai-data",
        "--private",
        env=env,
    )
    _ok(r)
    assert r.stdout.strip() == f"{hub.url}/datasets/org/cai-data"

    paths = [p for _, p, _, _ in hub.requests]
    assert paths.count("/api/datasets/org/cai-data/commit/main") == 1, paths
    create = next(json.loads(b) for _, p, _, b in hub.requests if p == "/api/repos/create")
    assert create == {"name": "cai-data", "organization": "org", "type": "dataset", "visibility": "private"}
    posts = [
        (p, {k.lower(): v for k, v in h.items()}) for method, p, h, _ in hub.requests if method == "POST"
    ]
    assert [p for p, _ in posts if p.endswith(("/preupload/main", "/commit/main"))] == [
        "/api/datasets/org/cai-data/preupload/main",
        "/api/datasets/org/cai-data/commit/main",
    ]
    for path, headers in posts:  # (huggingface_hub also GETs a probe or two, without the token)
        assert headers.get("authorization") == f"Bearer {token}", path

    commit_body = next(b for _, p, _, b in hub.requests if p.startswith("/api/datasets/org/cai-data/commit/"))
    lines = [json.loads(line) for line in commit_body.decode().splitlines()]
    assert lines[0]["key"] == "header" and lines[0]["value"]["summary"].startswith("caitool export:")
    sent = {
        item["value"]["path"]: base64.b64decode(item["value"]["content"])
        for item in lines[1:]
        if item["key"] == "file"
    }
    local = {p.relative_to(ds_dir).as_posix(): p.read_bytes() for p in ds_dir.rglob("*") if p.is_file()}
    assert sent == local
    assert set(local) == {"README.md", "provenance.json", "data/preferences/train-00000-of-00001.parquet"}
    assert token.encode() not in local["README.md"]
    assert 'load_dataset("org/cai-data", "preferences")' in local["README.md"].decode()


def test_push_without_token_is_a_usage_error(outputs: Path, tmp_path: Path, hub: _Hub) -> None:
    pytest.importorskip("huggingface_hub")
    env = cli_env(HF_ENDPOINT=hub.url, HF_HUB_OFFLINE="0", HF_HOME=str(tmp_path / "hf-home"))
    env.pop("HF_TOKEN", None)
    r = run_cli(
        "export",
        str(outputs / "prefs.jsonl"),
        "--to",
        str(tmp_path / "ds"),
        "--push-to-hub",
        "org/x",
        env=env,
    )
    assert r.returncode == 2 and "no Hugging Face token" in r.stderr
    assert hub.requests == [] and not (tmp_path / "ds").exists()  # refused before the export
