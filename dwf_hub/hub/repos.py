"""Hugging Face Hub transfer: resolve a repo id (or a local folder) to a folder, upload a folder.

Zoos are *dataset* repos, flows are *model* repos. Everything goes through ``huggingface_hub``
(``snapshot_download``, ``HfApi.create_repo`` / ``upload_folder``), so the
usual cache, ``HF_HUB_OFFLINE``, tokens and revisions apply.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from ..errors import DWFError
from ..formats import VERIFIED_NAME

MAX_FILES_PER_FOLDER = 10_000  # the Hub's limit on files in one folder of a repo
PRETRAINED_FILES = ["*.json", "*.safetensors"]  # what a transformers checkpoint needs (never pickles)


def download(
    repo_id_or_path: str | os.PathLike,
    repo_type: str,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
    allow_patterns: Sequence[str] | None = None,
    token: str | bool | None = None,
) -> Path:
    """A local folder as is, or the cached snapshot of Hub repo ``repo_id`` (downloading ``allow_patterns``)."""
    path = Path(repo_id_or_path)
    if path.is_dir():
        return path
    repo_id = str(repo_id_or_path)
    if repo_id.count("/") != 1 or repo_id.startswith((".", "/")):
        raise DWFError(f"{repo_id}: no such folder, and not a Hub repo id of the form 'org/name'")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    kind = "dataset " if repo_type == "dataset" else ""
    try:
        return Path(
            snapshot_download(
                repo_id,
                repo_type=repo_type,
                revision=revision,
                cache_dir=cache_dir,
                local_files_only=local_files_only,
                allow_patterns=list(allow_patterns) if allow_patterns is not None else None,
                token=token,
                library_name="dwf-hub",
                library_version=package_version(),
            )
        )
    except LocalEntryNotFoundError as e:
        from huggingface_hub import constants

        why = (
            "downloading is off (local_files_only=True)" if local_files_only
            else "downloading is off (HF_HUB_OFFLINE=1)" if constants.HF_HUB_OFFLINE
            else f"the Hub could not be reached ({_first_line(e)})"
        )  # fmt: skip
        raise DWFError(
            f"{repo_id}: not a folder here, and {kind}repo {repo_id!r}{f' at revision {revision!r}' if revision else ''}"
            f" is not in the local Hugging Face cache; {why}. Fetch it once with network access: hf download "
            f"{repo_id}{' --repo-type dataset' if repo_type == 'dataset' else ''}"
        ) from e
    except (RepositoryNotFoundError, RevisionNotFoundError) as e:
        raise DWFError(f"{kind}repo {repo_id!r} not found on the Hub ({type(e).__name__})") from e
    except HfHubHTTPError as e:
        raise DWFError(f"{kind}repo {repo_id!r}: Hub request failed ({e})") from e


def upload(
    folder: str | os.PathLike,
    repo_id: str,
    repo_type: str,
    private: bool | None = None,
    token: str | None = None,
    commit_message: str | None = None,
    revision: str | None = None,
    create_pr: bool = False,
) -> str:
    """Create ``repo_id`` if needed and make it mirror ``folder`` (remote files the folder no longer has, e.g.
    the checkpoints of a larger zoo pushed before, are deleted in the same commit; ``.gitattributes`` stays);
    ``create_pr`` opens a pull request instead of committing to the branch. Returns the repo URL.

    ``upload_folder`` (with ``hf_xet``, a dependency of ``huggingface_hub``) commits large folders in
    resumable batches; no folder may hold more than the Hub's ``MAX_FILES_PER_FOLDER`` files.
    """
    from huggingface_hub import HfApi

    root = Path(folder)
    files = [p for p in root.rglob("*") if p.is_file() and p.name != VERIFIED_NAME]
    per_folder: dict[Path, int] = {}
    for f in files:
        per_folder[f.parent] = per_folder.get(f.parent, 0) + 1
    crowded = [(d, n) for d, n in per_folder.items() if n > MAX_FILES_PER_FOLDER]
    if crowded:
        d, n = crowded[0]
        raise DWFError(
            f"{d}: {n} files in one folder; the Hub allows at most {MAX_FILES_PER_FOLDER} per folder"
        )
    api = HfApi(token=token)
    try:  # one commit: a failure before it leaves the remote repo as it was
        url = api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
        api.upload_folder(
            repo_id=repo_id,
            folder_path=root,
            repo_type=repo_type,
            revision=revision,
            commit_message=commit_message or f"Upload with dwf_hub ({len(files)} files)",
            delete_patterns="*",
            ignore_patterns=[
                VERIFIED_NAME
            ],  # this machine's record of hashed files, not part of the artifact
            create_pr=create_pr,
        )
    except _network_errors() as e:
        raise DWFError(
            f"push to {repo_id!r} failed, nothing was committed: {type(e).__name__}: {_first_line(e)}"
        ) from e
    return str(url)


def _network_errors() -> tuple[type[BaseException], ...]:
    """What a Hub request raises when the network or the server fails (HTTP errors included): huggingface_hub's
    own, and its HTTP client's (``httpx2`` today, ``httpx`` in earlier releases)."""
    import importlib.util

    from huggingface_hub.errors import HfHubHTTPError

    clients = [
        importlib.import_module(n).HTTPError for n in ("httpx2", "httpx") if importlib.util.find_spec(n)
    ]
    return (HfHubHTTPError, OSError, *clients)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else type(e).__name__


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dwf-hub")
    except PackageNotFoundError:
        return "unknown"


class HubMixin:
    """``from_pretrained`` / ``push_to_hub`` for dwf_hub artifacts, in the spirit of
    ``huggingface_hub.ModelHubMixin``: a class names its ``repo_type`` and implements ``_save_pretrained``
    (write into a folder) and ``_from_pretrained`` (read from a local folder or snapshot); the Hub
    arguments are keyword-only and the same for every artifact."""

    repo_type: ClassVar[str]

    def _save_pretrained(self, folder: Path, *, repo_id: str | None = None, **kwargs: Any) -> None:
        raise NotImplementedError

    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        *,
        repo_id: str | None = None,
        push_to_hub: bool = False,
        private: bool | None = None,
        token: str | None = None,
        commit_message: str | None = None,
        create_pr: bool = False,
        **kwargs: Any,
    ) -> Path:
        """Write into ``save_directory`` (``_save_pretrained``, with ``kwargs``); with ``push_to_hub``, upload
        that folder as ``repo_id`` too. Returns the folder."""
        if push_to_hub and not repo_id:
            raise DWFError("push_to_hub=True needs repo_id='org/name'")
        self._save_pretrained(Path(save_directory), repo_id=repo_id, **kwargs)
        if push_to_hub:
            upload(save_directory, repo_id, self.repo_type, private, token, commit_message, None, create_pr)
        return Path(save_directory)

    @classmethod
    def _from_pretrained(cls, repo_id_or_path: str | os.PathLike, hub: dict[str, Any], **kwargs: Any):
        """Load from ``repo_id_or_path``, downloading with ``download(..., **hub)``."""
        raise NotImplementedError

    @classmethod
    def from_pretrained(
        cls,
        repo_id_or_path: str | os.PathLike,
        *,
        revision: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        local_files_only: bool = False,
        token: str | bool | None = None,
        **kwargs: Any,
    ):
        """From a local folder or a Hub repo of ``repo_type`` (through the Hugging Face cache)."""
        hub = dict(revision=revision, cache_dir=cache_dir, local_files_only=local_files_only, token=token)
        return cls._from_pretrained(repo_id_or_path, hub, **kwargs)

    def push_to_hub(
        self,
        repo_id: str,
        *,
        private: bool | None = None,
        token: str | None = None,
        commit_message: str | None = None,
        revision: str | None = None,
        create_pr: bool = False,
        **save_kwargs: Any,
    ) -> str:
        """Save into a temporary folder, then upload it as a Hub repo of ``repo_type`` (created if needed);
        returns the repo URL."""
        with tempfile.TemporaryDirectory() as tmp:
            self._save_pretrained(Path(tmp), repo_id=repo_id, **save_kwargs)
            return upload(tmp, repo_id, self.repo_type, private, token, commit_message, revision, create_pr)


# The Hub dataset each loader reads by default (cards name them as source datasets).
HUB_DATASETS = {
    "mnist": "ylecun/mnist",
    "fashion_mnist": "zalando-datasets/fashion_mnist",
    "cifar10": "uoft-cs/cifar10",
    "stl10": "tanganke/stl10",
    "cifar100": "uoft-cs/cifar100",
    "svhn": "ufldl-stanford/svhn",
    "yelp_review_full": "Yelp/yelp_review_full",
}


def source_datasets(data_config: dict[str, Any]) -> list[str]:
    """The Hub datasets a task is made from (``[]`` for scikit-learn and synthetic data, or a local path)."""
    path = data_config.get("path")
    if isinstance(path, str) and path.count("/") == 1 and not Path(path).exists():
        return [path]
    return [HUB_DATASETS[data_config["name"]]] if data_config.get("name") in HUB_DATASETS and not path else []
