"""Artifact folders (zoos, pipelines): written whole or not at all, never over what is not ours.

``write_folder(target)`` yields a fresh hidden sibling folder; when the block succeeds it writes
``manifest.json`` (every file with its size and SHA-256: the completion marker, written last) and swaps
the sibling in place of ``target`` with one atomic exchange, so a reader — or a writer killed at any point
— sees the old artifact or the new one, never a mixture. A folder is replaced only when it is empty or
an artifact of ours holding nothing we did not write (else ``overwrite=True``); symlinks are never
written through. One writer per target at a time (an advisory lock, released when its process dies).
``verify_files`` checks a folder against its manifest on load.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .errors import DWFError
from .formats import JOB_FILE, MANIFEST_NAME

logger = logging.getLogger(__name__)
MANIFEST_FORMAT = "dwf_hub manifest 1"
JOB_MARKERS = (".dwf_job.json", ".flow_checkpoint")  # unfinished jobs of ours that an artifact replaces
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".npy", ".npz", ".py")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _files(root: Path) -> list[str]:
    """Every file below ``root`` (not following symlinks; symlinks themselves are listed), relative."""
    out = []
    for folder, dirs, files in os.walk(root):
        rel = Path(folder).relative_to(root)
        out += [str(rel / f) for f in files]
        out += [str(rel / d) for d in dirs if (Path(folder) / d).is_symlink()]
    return sorted(p.removeprefix("./") for p in out)


def read_manifest(root: Path) -> dict[str, dict[str, Any]] | None:
    """``relative path -> {"size", "sha256"}`` from ``root/manifest.json`` (``None`` when there is none)."""
    path = root / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise DWFError(f"{path}: unreadable manifest ({e})") from None
    if (
        not isinstance(data, dict)
        or data.get("format") != MANIFEST_FORMAT
        or not isinstance(data.get("files"), dict)
    ):
        raise DWFError(f"{path}: not a dwf_hub manifest")
    return data["files"]


def _owned(root: Path, legacy_markers: Iterable[str]) -> set[str] | None:
    """The files of ``root`` that are ours (``None``: the folder is not an artifact or job of ours)."""
    files = _files(root)
    manifest = read_manifest(root)
    if manifest is not None:
        return {*manifest, MANIFEST_NAME}
    if any((root / m).exists() for m in JOB_MARKERS):
        job = re.compile(
            r"^(\.dwf_job\.json|\.flow_checkpoint/.*|checkpoints/model_\d{5}\.safetensors|.*\.tmp)$"
        )
        return {f for f in files if job.match(f)}
    if any((root / m).is_file() for m in legacy_markers):  # written before manifests existed: all of it
        return set(files)
    return None


def check_replaceable(target: Path, overwrite: bool = False, legacy_markers: Iterable[str] = ()) -> None:
    """Refuse (one line naming the reason) to replace ``target`` unless it is absent, empty, or an
    artifact of ours holding only files we wrote; ``overwrite`` replaces any folder."""
    if target.is_symlink():
        raise DWFError(f"{target}: is a symbolic link; refusing to write through it")
    if not target.exists():
        return
    if not target.is_dir():
        raise DWFError(f"{target}: exists and is not a folder")
    if overwrite or not any(target.iterdir()):
        return
    owned = _owned(target, legacy_markers)
    if owned is None:
        raise DWFError(
            f"{target}: not empty and not a dwf_hub artifact; refusing to replace it (choose another folder, "
            "or pass --overwrite / overwrite=True)"
        )
    extra = [f for f in _files(target) if f not in owned]
    if extra:
        raise DWFError(
            f"{target}: holds files dwf_hub did not write ({extra[0]}{' ...' if len(extra) > 1 else ''}); "
            "refusing to replace it (move them, or pass --overwrite / overwrite=True)"
        )


@contextlib.contextmanager
def _lock(target: Path) -> Iterator[None]:
    lock = target.parent / f".{target.name}.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DWFError(f"{target}: another process is writing it; wait for it to finish") from None
        yield
    finally:
        os.close(fd)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported."""
    libc = ctypes.CDLL(None, use_errno=True)
    if not hasattr(libc, "renameat2"):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if libc.renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: the file system or kernel cannot
        return False
    raise DWFError(f"{b}: cannot replace it ({os.strerror(err)})")


def _swap_in(stage: Path, target: Path) -> None:
    """Put ``stage`` at ``target``; the old ``target`` (if any) ends up at ``stage``."""
    if not target.exists():
        os.rename(stage, target)
    elif not _exchange(stage, target):  # two renames: a crash between them leaves the old one hidden
        old = stage.with_name(stage.name + ".old")
        os.rename(target, old)
        os.rename(stage, target)
        os.rename(old, stage)


def _clean_stale(target: Path) -> None:
    """Remove staging folders of earlier writers to ``target`` that were killed (we hold the lock)."""
    for p in target.parent.glob(f".{target.name}.*.staging*"):
        if p.is_dir() and not p.is_symlink():
            logger.info("removing %s, left by an interrupted save", p)
            shutil.rmtree(p, ignore_errors=True)


def _public_modes(root: Path) -> None:
    """Temporary files are created 0600: give the artifact the modes a plain write would (umask)."""
    mask = os.umask(0)
    os.umask(mask)
    for folder, _, files in os.walk(root):
        os.chmod(folder, 0o777 & ~mask)
        for f in files:
            os.chmod(Path(folder) / f, 0o666 & ~mask)


def write_manifest(root: Path) -> None:
    from .io import write_json

    names = [f for f in _files(root) if f != MANIFEST_NAME]
    files = {f: {"size": (root / f).stat().st_size, "sha256": sha256(root / f)} for f in names}
    write_json(root / MANIFEST_NAME, {"format": MANIFEST_FORMAT, "files": files})


@contextlib.contextmanager
def write_folder(
    target: str | os.PathLike,
    overwrite: bool = False,
    carry: Iterable[str] = (),
    legacy_markers: Iterable[str] = (),
) -> Iterator[Path]:
    """Yield an empty staging folder; on success it replaces ``target`` whole (see the module docstring).
    ``carry``: files of the old ``target`` kept in the new one (hard-linked), e.g. a job marker."""
    target = Path(target).absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    with _lock(target):
        check_replaceable(target, overwrite, legacy_markers)
        _clean_stale(target)
        stage = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".staging", dir=target.parent))
        try:
            yield stage
            for name in carry:
                src = target / name
                if src.is_file() and not src.is_symlink() and not (stage / name).exists():
                    os.link(src, stage / name)
            write_manifest(stage)
            _public_modes(stage)
            _swap_in(stage, target)
        finally:
            shutil.rmtree(stage, ignore_errors=True)  # after the swap it holds the old folder


def claim_job(folder: Path, job: dict[str, Any], refusal: str, write: bool = True) -> bool:
    """Mark ``folder`` as ``job``'s (a JSON table, in ``JOB_FILE``; when ``write``), or raise ``refusal`` if it
    holds another job. Returns whether it already held this one (a rerun: resume)."""
    from .io import write_json

    path = folder / JOB_FILE
    if path.is_file():
        if json.loads(path.read_text()) != json.loads(json.dumps(job)):
            raise DWFError(refusal)
        return True
    if write:
        folder.mkdir(parents=True, exist_ok=True)
        write_json(path, job)
    return False


@contextlib.contextmanager
def resumable_job(target: str | os.PathLike, job: dict[str, Any], overwrite: bool = False) -> Iterator[Path]:
    """A work folder beside artifact ``target`` (``.NAME.job``, holding ``job``) for a long job that writes
    ``target`` at its end: what an interrupted run finished stays there and a rerun of the same job finds it;
    another job waiting there is refused unless ``overwrite`` (which starts over). Removed once the block
    succeeds; ``target`` itself stays the old artifact (or absent) until the block writes it."""
    target = Path(target).absolute()
    folder = target.parent / f".{target.name}.job"
    foreign = folder.is_dir() and any(folder.iterdir()) and not (folder / JOB_FILE).is_file()
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()) or foreign:
        raise DWFError(f"{folder}: exists and is not a job folder of ours; refusing to use it (move it away)")
    with _lock(folder):
        if overwrite and folder.is_dir():
            shutil.rmtree(folder)
        refusal = (f"{target}: an interrupted job with other settings is waiting to resume in {folder}; rerun it "
                   "with its settings, or pass --overwrite / overwrite=True to start over")  # fmt: skip
        if claim_job(folder, job, refusal):
            logger.info("%s: resuming the interrupted job in %s", target, folder)
        yield folder
    shutil.rmtree(folder, ignore_errors=True)


def inside(root: Path, path: Path) -> bool:
    """Whether ``path`` (following symlinks) stays inside artifact folder ``root``; in the Hugging Face cache
    a snapshot's files are links to the repo's blobs, so there the repo's cache folder is the bound."""
    base = root.parent.parent if root.parent.name == "snapshots" else root
    return path.resolve().is_relative_to(base.resolve())


def verify_files(
    root: Path, names: Iterable[str], what: str, hashes: bool = True, error: type[DWFError] = DWFError
) -> dict[str, dict[str, Any]]:
    """Check ``names`` against ``root``'s manifest: listed, present, regular files inside ``root``, same
    size (and SHA-256 when ``hashes``). Returns the manifest."""
    manifest = read_manifest(root)
    if manifest is None:
        raise error(f"{root}: incomplete {what} (no {MANIFEST_NAME}: written by an interrupted save?)")
    for name in names:
        entry = manifest.get(name)
        path = root / name
        if entry is None:
            raise error(f"{root}: {name} is not part of this {what} (not in {MANIFEST_NAME})")
        if not path.is_file():
            raise error(f"{path}: missing or not a regular file")
        if not inside(root, path):
            raise error(f"{path}: a symbolic link out of the {what} folder; refusing to read it")
        if path.stat().st_size != entry["size"] or (hashes and sha256(path) != entry["sha256"]):
            raise error(f"{path}: does not match {MANIFEST_NAME} (changed after the {what} was written)")
    return manifest


def refuse_pickles(root: Path, what: str) -> None:
    """Refuse a folder holding pickle-format (or code) files by name, before anything reads them."""
    for f in _files(root):
        if f.endswith(PICKLE_SUFFIXES):
            raise DWFError(
                f"{root / f}: {what} folders hold safetensors only; refusing a pickle or code file"
            )
