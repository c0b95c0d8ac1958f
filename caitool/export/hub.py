"""`--push-to-hub`: the export folder as one commit to a Hugging Face Hub dataset repository.

`create_commit` rather than `upload_folder`: with hf_xet installed, upload_folder may split a folder over
several commits, and a dataset whose card and shards arrive in different commits is, between them, a card
that describes other data. The token is huggingface_hub's own (HF_TOKEN, or `hf auth login`), and so is the
endpoint (HF_ENDPOINT), which is how the tests point it at a local server.
"""

from __future__ import annotations

import re
from pathlib import Path

from caitool.errors import CaitoolError, UsageError

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$")


def check_repo_id(repo_id: str) -> None:
    if not _REPO_ID.match(repo_id):
        raise UsageError(
            f"--push-to-hub {repo_id!r}: expected ORG/NAME (a user or organisation, then a name)"
        )


def check_ready(repo_id: str) -> str:
    """Before the export is written: a valid ORG/NAME, huggingface_hub installed, a token (returned)."""
    check_repo_id(repo_id)
    try:
        from huggingface_hub import get_token
    except ImportError:
        raise UsageError(
            "--push-to-hub needs huggingface_hub", hint='pip install "caitool[export]"'
        ) from None
    token = get_token()
    if not token:
        raise UsageError(
            "--push-to-hub: no Hugging Face token", hint="set HF_TOKEN, or run `hf auth login` once"
        )
    return token


def push_folder(folder: Path, repo_id: str, *, private: bool, message: str) -> tuple[str, str]:
    """Upload every file of `folder`; returns (the dataset's URL, the commit's URL)."""
    token = check_ready(repo_id)
    import httpx
    from huggingface_hub import CommitOperationAdd, HfApi
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    api = HfApi(token=token)
    operations = [
        CommitOperationAdd(path_in_repo=path.relative_to(folder).as_posix(), path_or_fileobj=str(path))
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    ]
    try:
        # Not private: the account's default visibility. An existing repository keeps its own.
        api.create_repo(repo_id, repo_type="dataset", private=private or None, exist_ok=True)
        info = api.create_commit(repo_id, operations, commit_message=message, repo_type="dataset")
    except OfflineModeIsEnabled:
        raise UsageError(
            "--push-to-hub: HF_HUB_OFFLINE is set", hint="unset HF_HUB_OFFLINE to upload"
        ) from None
    except (HfHubHTTPError, httpx.HTTPError, OSError, ValueError) as exc:
        raise CaitoolError(f"upload to {api.endpoint} failed: {exc}") from None
    return f"{api.endpoint}/datasets/{repo_id}", info.commit_url
