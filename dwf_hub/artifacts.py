"""Artifact folders (zoos, pipelines, reports, ...): written whole or not at all, never over what is not ours.

``write_folder(target, kind)`` yields a fresh hidden sibling folder; when the block succeeds it writes
``manifest.json`` (the artifact's kind and every file with its size and SHA-256: the completion marker,
written last) and swaps the sibling in place of ``target`` with one atomic exchange, so a reader — or a
writer killed at any point — sees the old artifact or the new one, never a mixture.

One output policy (``check_output``) decides whether a folder may be replaced, for every writer: never an
input, a symlink or a file; an absent or empty folder, or an artifact of ours *of the same kind* holding
only files we wrote (its contents parse as ours: a file name proves nothing); anything else only with
``overwrite``. One writer per target at a time (an advisory lock that removes itself).
``verify_files`` checks a folder against its manifest on load: every file listed, unchanged (SHA-256,
cached per file identity), and nothing else beside them but cards. A file is hashed once: on save, or at the
first load on this machine, whose result is kept in the folder's verification record (``VERIFIED_NAME``: each
file's device, inode, size, modification and change times); later loads check sizes and that record, and any
write to a file since (which moves its change time) sends it back to a full hash.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
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
from .formats import (
    JOB_FILE,
    MANIFEST_NAME,
    UNSEALED_FILES,
    VERIFIED_NAME,
    ZOO_CONFIG_NAME,
    ZOO_FORMAT_VERSION,
)

logger = logging.getLogger(__name__)
MANIFEST_FORMAT = "dwf_hub manifest 1"
ZOO_KINDS = ("trained zoo", "canonical zoo", "generated zoo", "baseline zoo", "imported zoo")
KINDS = (*ZOO_KINDS, "pipeline", "report", "transfer results", "demo", "exported networks")
STAGING_MARKER = ".dwf_staging"  # in a staging folder until its artifact is sealed
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".npy", ".npz", ".py")
# an unfinished `train_zoo` job in its zoo folder: what it may hold
_JOB_FILES = re.compile(
    rf"^({re.escape(JOB_FILE)}|checkpoints/model_\d{{5}}\.safetensors|checkpoints/\.model_\d{{5}}\.safetensors\..*\.tmp)$"
)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _unsealed(name: str) -> bool:
    """Cards, and this machine's verification record (being rewritten by a concurrent load: its temporary file
    too): never sealed in a manifest, never a reason to refuse a folder."""
    return name in UNSEALED_FILES or (name.startswith(f".{VERIFIED_NAME}.") and name.endswith(".tmp"))


def _files(root: Path) -> list[str]:
    """Every file below ``root`` (not following symlinks; symlinks themselves are listed), relative."""
    out = []
    for folder, dirs, files in os.walk(root):
        rel = Path(folder).relative_to(root)
        out += [str(rel / f) for f in files]
        out += [str(rel / d) for d in dirs if (Path(folder) / d).is_symlink()]
    return sorted(p.removeprefix("./") for p in out)


def zoo_kind(info: dict[str, Any]) -> str:
    """Which of ``ZOO_KINDS`` a zoo with provenance ``info`` is."""
    source = str(info.get("source", ""))
    if source == "generated":
        return "generated zoo"
    if source.startswith("baseline"):
        return "baseline zoo"
    if source == "imported":
        return "imported zoo"
    return "canonical zoo" if "canonical" in info else "trained zoo"


def _manifest(root: Path) -> dict[str, Any] | None:
    """``root/manifest.json`` parsed and checked (``None`` when there is none)."""
    from .io import read_json

    path = root / MANIFEST_NAME
    if not path.exists():
        return None
    if not inside(root, path):  # in the Hub cache it links to the repo's blobs, and no further
        raise DWFError(f"{path}: a symbolic link out of the folder; refusing to read it")
    data = read_json(path, DWFError, "manifest")
    files = data.get("files") if isinstance(data, dict) else None
    if (
        not isinstance(data, dict)
        or data.get("format") != MANIFEST_FORMAT
        or not isinstance(files, dict)
        or not all(isinstance(e, dict) and isinstance(e.get("size"), int) and isinstance(e.get("sha256"), str)
                   for e in files.values())
        or data.get("kind", KINDS[0]) not in KINDS
    ):  # fmt: skip
        raise DWFError(f"{path}: not a dwf_hub manifest")
    return data


def read_manifest(root: Path) -> dict[str, dict[str, Any]] | None:
    """``relative path -> {"size", "sha256"}`` from ``root/manifest.json`` (``None`` when there is none)."""
    data = _manifest(root)
    return None if data is None else data["files"]


def _json_object(path: Path) -> dict[str, Any] | None:
    from .io import read_json

    try:
        data = read_json(path, DWFError)
    except DWFError:
        return None
    return data if isinstance(data, dict) else None


def _zoo_config_kind(root: Path) -> str | None:
    """The zoo kind ``root/zoo.json`` describes, when it parses as a zoo config of ours."""
    config = _json_object(root / ZOO_CONFIG_NAME)
    version = None if config is None else config.get("format_version")
    if (
        type(version) is not int
        or not 1 <= version <= ZOO_FORMAT_VERSION
        or not isinstance(config.get("arch"), dict)
    ):
        return None
    return zoo_kind(config.get("info") if isinstance(config.get("info"), dict) else {})


def _parses_as(root: Path, kind: str) -> bool:
    """Whether the contents of ``root`` parse as an artifact of ``kind`` (names alone prove nothing)."""
    if kind in ZOO_KINDS:
        return _zoo_config_kind(root) is not None
    if kind == "pipeline":
        index = _json_object(root / "model_index.json")
        return index is not None and index.get("_class_name") == "DeepWeightFlowPipeline"
    if kind == "transfer results":
        results = _json_object(root / "results.json")
        return results is not None and isinstance(results.get("recipe"), dict)
    if kind in ("report", "demo"):
        return _json_object(root / "summary.json") is not None and (root / "report.md").is_file()
    return kind == "exported networks"  # folders of networks: the manifest alone says what they are


def artifact_kind(root: Path) -> str | None:
    """The kind of artifact (or unfinished zoo job) of ours that ``root`` is, judged by its contents and
    only when it holds nothing we did not write; ``None`` otherwise."""
    try:
        data = _manifest(root)
    except DWFError:
        return None
    files = [f for f in _files(root) if not _unsealed(f)]
    if data is None:  # an interrupted `train_zoo`: its job record and finished members only
        job = _json_object(root / JOB_FILE)
        ours = (
            job is not None
            and isinstance(job.get("recipe"), dict)
            and all(_JOB_FILES.match(f) for f in files)
        )
        return "trained zoo" if ours else None
    kind = (
        data.get("kind") or _zoo_config_kind(root) or ("pipeline" if _parses_as(root, "pipeline") else None)
    )
    if kind is None or not _parses_as(root, kind):
        return None
    return None if _unlisted(root, data) else kind


def _unlisted(root: Path, manifest: dict[str, Any]) -> list[str]:
    """The files of ``root`` that its parsed ``manifest`` does not list (cards and our job record aside)."""
    listed = {*manifest["files"], MANIFEST_NAME, JOB_FILE}
    return [f for f in _files(root) if f not in listed and not _unsealed(f)]


def check_output(
    target: str | os.PathLike, kind: str, overwrite: bool = False, inputs: Iterable[str | os.PathLike] = ()
) -> None:
    """The one output policy. Refuse (one line naming the reason) to write artifact ``kind`` at ``target``
    when it is a symlink or a file, is or holds or lies inside one of ``inputs`` (never, even with
    ``overwrite``), or is a non-empty folder other than an artifact of ours of the same ``kind`` holding
    only files we wrote (unless ``overwrite``)."""
    target = Path(target)
    where = target.resolve()
    for source in inputs:
        path = Path(source)
        if not path.exists():  # a Hub repo id
            continue
        src = path.resolve()
        if where == src or where.is_relative_to(src) or src.is_relative_to(where):
            raise DWFError(
                f"{target}: is (or holds, or lies inside) the input {source}; choose another folder"
            )
    if target.is_symlink():
        raise DWFError(f"{target}: is a symbolic link; refusing to write through it")
    if target.exists() and not target.is_dir():
        raise DWFError(f"{target}: exists and is not a folder")
    if not target.exists() or overwrite or not any(target.iterdir()):
        return
    found = artifact_kind(target)
    if found is None:
        extra = _foreign_file(target)
        raise DWFError(
            f"{target}: not empty and not a dwf_hub artifact{extra}; refusing to replace it (choose another "
            "folder, or pass --overwrite / overwrite=True)"
        )
    if found != kind:
        raise DWFError(
            f"{target}: is a {found}; refusing to replace it with the {kind} this writes (choose another "
            "folder, or pass --overwrite / overwrite=True)"
        )


def _foreign_file(target: Path) -> str:
    """`` (it holds NAME we did not write)`` when ``target`` is one of ours but for some files."""
    try:
        data = _manifest(target)
    except DWFError:
        return ""
    if data is None:
        return ""
    extra = _unlisted(target, data)
    return (
        f" (it holds files dwf_hub did not write: {extra[0]}{' ...' if len(extra) > 1 else ''})"
        if extra
        else ""
    )


@contextlib.contextmanager
def _lock(target: Path) -> Iterator[None]:
    """Hold ``.NAME.lock`` beside ``target`` (fails at once when another process holds it); the lock file is
    removed while still held, so none is left behind. filelock (4.3) keeps the file on release: a waiter
    that opened it before the removal sees, on acquiring, that its file is no longer the one at that path,
    and is told the target is busy."""
    from filelock import FileLock, Timeout

    path = sibling(target, "lock")

    def same_file(fd: int) -> None:
        try:
            current = os.stat(path)
        except FileNotFoundError as e:
            raise Timeout(str(path)) from e
        if (current.st_dev, current.st_ino) != (os.fstat(fd).st_dev, os.fstat(fd).st_ino):
            raise Timeout(str(path))

    lock = FileLock(path, timeout=0, thread_local=False, on_acquired=same_file)
    try:
        lock.acquire()
    except Timeout as e:
        raise DWFError(f"{target}: another process is writing it; wait for it to finish") from e
    except OSError as e:
        raise DWFError(f"{target}: cannot write beside it ({e.strerror or e})") from e
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()
        lock.release()


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
    """Remove staging folders of earlier writers to ``target`` that were killed (we hold the lock): only those
    that prove to be ours by their contents — our staging marker, or an artifact of ours (the old folder a
    writer swapped out) — never a folder whose name merely matches."""
    for p in target.parent.glob(f"{glob.escape(sibling(target, '').name)}*.staging*"):
        ours = (p / STAGING_MARKER).is_file() or artifact_kind(p) is not None
        if p.is_dir() and not p.is_symlink() and ours:
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


def write_manifest(root: Path, kind: str | None = None) -> None:
    """Seal ``root``: every file but cards with its size and SHA-256, and the artifact's ``kind`` (``None``:
    the kind its old manifest recorded, if any)."""
    from .io import write_json

    if kind is None:
        old = _manifest(root) if (root / MANIFEST_NAME).is_file() else None
        kind = old.get("kind") if old else None
    names = [f for f in _files(root) if f != MANIFEST_NAME and not _unsealed(f)]
    files = {f: {"size": (root / f).stat().st_size, "sha256": _hash(root / f)} for f in names}
    data = {"format": MANIFEST_FORMAT, "files": files, **({"kind": kind} if kind else {})}
    write_json(root / MANIFEST_NAME, data)


@contextlib.contextmanager
def write_folder(
    target: str | os.PathLike,
    kind: str,
    overwrite: bool = False,
    inputs: Iterable[str | os.PathLike] = (),
    carry: Iterable[str] = (),
) -> Iterator[Path]:
    """Yield an empty staging folder; on success it replaces ``target`` whole as an artifact of ``kind``
    (see the module docstring; ``check_output`` decides whether it may). ``carry``: files of the old
    ``target`` kept in the new one (hard-linked), e.g. a job marker."""
    if kind not in KINDS:
        raise ValueError(f"unknown artifact kind {kind!r}")
    target = Path(target).absolute()
    _make_parent(target)
    with _lock(target):
        check_output(target, kind, overwrite, inputs)
        _clean_stale(target)
        stage = Path(tempfile.mkdtemp(prefix=sibling(target, "").name, suffix=".staging", dir=target.parent))
        try:
            (stage / STAGING_MARKER).touch()  # proves the folder ours to `_clean_stale` if this writer dies
            yield stage
            (stage / STAGING_MARKER).unlink()
            for name in carry:
                src = target / name
                if src.is_file() and not src.is_symlink() and not (stage / name).exists():
                    os.link(src, stage / name)
            write_manifest(stage, kind)
            _public_modes(stage)
            _record_verified(stage, read_manifest(stage) or {})  # hashed just now, from the bytes written
            _swap_in(stage, target)
        finally:
            shutil.rmtree(stage, ignore_errors=True)  # after the swap it holds the old folder


def check_disk(path: str | os.PathLike, need: int) -> None:
    """Refuse to start writing about ``need`` bytes at ``path`` where its file system has less free space."""
    path = Path(path).absolute()
    existing = next(p for p in [path, *path.parents] if p.exists())
    free = shutil.disk_usage(existing).free
    if need > free:
        raise DWFError(
            f"{path}: needs about {need / 2**30:.2f} GiB of disk, {free / 2**30:.2f} GiB are free there"
        )


def _make_parent(target: Path) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DWFError(f"{target.parent}: cannot create it ({e.strerror or e})") from e


def claim_job(folder: Path, job: dict[str, Any], refusal: str, write: bool = True) -> bool:
    """Mark ``folder`` as ``job``'s (a JSON table, in ``JOB_FILE``; when ``write``), or raise ``refusal`` if it
    holds another job. Returns whether it already held this one (a rerun: resume)."""
    from .io import write_json

    path = folder / JOB_FILE
    if path.is_file():
        if _json_object(path) != json.loads(json.dumps(job)):
            raise DWFError(refusal)
        return True
    if write:
        folder.mkdir(parents=True, exist_ok=True)
        write_json(path, job)
    return False


def sibling(target: str | os.PathLike, suffix: str) -> Path:
    """``.NAME.suffix`` beside ``target`` (locks, job and staging folders); a name that would leave no room
    under the file system's 255 bytes for a staging folder's random part is shortened and made unique with a
    hash of the whole name, so two targets never share a sibling."""
    target = Path(target).absolute()
    name = f".{target.name}.{suffix}"
    if len(os.fsencode(name)) > 200:
        digest = hashlib.sha256(os.fsencode(target.name)).hexdigest()[:16]
        name = f".{target.name[:80]}.{digest}.{suffix}"
    return target.parent / name


def job_folder(target: str | os.PathLike) -> Path:
    """Where a long job writing artifact ``target`` keeps its unfinished work: ``.NAME.job`` beside it."""
    return sibling(target, "job")


@contextlib.contextmanager
def resumable_job(
    target: str | os.PathLike, job: dict[str, Any], overwrite: bool = False, main: bool = True
) -> Iterator[Path]:
    """A work folder beside artifact ``target`` (``job_folder``, holding ``job``) for a long job that writes
    ``target`` at its end: what an interrupted run finished stays there and a rerun of the same job finds it;
    another job waiting there is refused unless ``overwrite`` (which starts over). Removed once the block
    succeeds; ``target`` itself stays the old artifact (or absent) until the block writes it. ``job`` must
    identify what is computed (settings, inputs' contents), never how inputs were spelled. Under several
    processes only the ``main`` one claims and removes the folder; the others join it."""
    folder = job_folder(target)
    foreign = folder.is_dir() and any(folder.iterdir()) and not (folder / JOB_FILE).is_file()
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()) or foreign:
        raise DWFError(f"{folder}: exists and is not a job folder of ours; refusing to use it (move it away)")
    refusal = (f"{target}: an interrupted job with other settings is waiting to resume in {folder}; rerun it "
               "with its settings, or pass --overwrite / overwrite=True to start over")  # fmt: skip
    if not main:
        claim_job(folder, job, refusal, write=False)
        yield folder
        return
    _make_parent(folder)
    with _lock(folder):
        if overwrite and folder.is_dir():
            shutil.rmtree(folder)
        if claim_job(folder, job, refusal):
            logger.info("%s: resuming the interrupted job in %s", target, folder)
        yield folder
    shutil.rmtree(folder, ignore_errors=True)


def inside(root: Path, path: Path) -> bool:
    """Whether ``path`` (following symlinks) stays inside artifact folder ``root``; in the Hugging Face cache
    a snapshot's files are links to the repo's blobs, so there the repo's cache folder is the bound."""
    base = root.parent.parent if root.parent.name == "snapshots" else root
    return path.resolve().is_relative_to(base.resolve())


# path -> (identity, sha256): a file is hashed once per process while its identity (device, inode, size,
# modification and change times) is unchanged; any write to it changes the identity, so it is hashed again.
_VERIFIED: dict[str, tuple[tuple[int, ...], str]] = {}


def _identity(path: Path) -> tuple[int, ...]:
    st = path.stat()
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _hash(path: Path) -> str:
    """SHA-256 of ``path``, cached by its identity (the file's bytes, not its name)."""
    key, ident = str(path.resolve()), _identity(path)
    cached = _VERIFIED.get(key)
    if cached is not None and cached[0] == ident:
        return cached[1]
    digest = sha256(path)
    if _identity(path) == ident:  # unchanged while it was read
        _VERIFIED[key] = (ident, digest)
    return digest


def verify_file(
    root: Path,
    name: str,
    entry: dict[str, Any],
    what: str,
    error: type[DWFError] = DWFError,
    hashes: bool = True,
) -> Path:
    """``root/name`` is a regular file inside ``root`` with the manifest ``entry``'s size (and SHA-256)."""
    path = root / name
    if not path.is_file():
        raise error(f"{path}: missing or not a regular file")
    if not inside(root, path):
        raise error(f"{path}: a symbolic link out of the {what} folder; refusing to read it")
    if path.stat().st_size != entry["size"] or (hashes and _hash(path) != entry["sha256"]):
        raise error(f"{path}: does not match {MANIFEST_NAME} (changed after the {what} was written)")
    return path


def _verified(root: Path) -> dict[str, list[int]]:
    """``name -> identity`` of the files ``root``'s record says were hashed against its current manifest
    (empty when there is no record, or it belongs to another manifest or another copy of the folder)."""
    record = _json_object(root / VERIFIED_NAME) if (root / VERIFIED_NAME).is_file() else None
    manifest = root / MANIFEST_NAME
    if record is None or not manifest.is_file() or record.get("manifest") != list(_identity(manifest)):
        return {}
    files = record.get("files")
    return files if isinstance(files, dict) else {}


def _record_verified(root: Path, names: Iterable[str]) -> None:
    """Keep in ``root``'s record that ``names`` match its manifest as they are now; where the folder cannot be
    written (read-only, another user's), or a file of that name is not a record of ours, they are hashed again
    by the next process."""
    from .io import write_json

    path = root / VERIFIED_NAME
    if path.exists() and not {"manifest", "files"} <= set(_json_object(path) or {}):
        return  # a file of that name that is not our record: never written over
    try:
        record = {"manifest": list(_identity(root / MANIFEST_NAME)),
                  "files": {**_verified(root), **{n: list(_identity(root / n)) for n in names}}}  # fmt: skip
        write_json(root / VERIFIED_NAME, record)
    except OSError:
        pass


def verify_files(
    root: Path,
    names: Iterable[str] | None,
    what: str,
    hashes: bool = True,
    error: type[DWFError] = DWFError,
    exact: bool = False,
) -> dict[str, dict[str, Any]]:
    """Check ``names`` (``None``: every file the manifest lists) against ``root``'s manifest: listed, present,
    regular files inside ``root``, same size (and SHA-256 when ``hashes``). ``exact``: ``root`` holds nothing
    else (cards aside). Returns the manifest."""
    try:
        manifest = read_manifest(root)
    except DWFError as e:
        raise error(str(e)) from e
    if manifest is None:
        raise error(f"{root}: incomplete {what} (no {MANIFEST_NAME}: written by an interrupted save?)")
    if exact:
        extra = [f for f in _files(root) if f not in manifest and f != MANIFEST_NAME and not _unsealed(f)]
        if extra:
            raise error(
                f"{root / extra[0]}: not part of this {what} (not in {MANIFEST_NAME}); refusing to load it"
            )
    verified, hashed = _verified(root) if hashes else {}, []
    for name in manifest if names is None else names:
        entry = manifest.get(name)
        if entry is None:
            raise error(f"{root}: {name} is not part of this {what} (not in {MANIFEST_NAME})")
        known = verified.get(name) == list(_identity(root / name)) if (root / name).is_file() else False
        verify_file(root, name, entry, what, error, hashes and not known)
        hashed += [name] if hashes and not known else []
    if hashed:
        _record_verified(root, hashed)
    return manifest


def folder_identity(root: Path) -> tuple[int, ...]:
    """What changes whenever ``root`` is replaced by a save (its inode) or its manifest is rewritten: compared
    before and after a load (and before every lazy read) to know one snapshot was read."""
    try:
        st, manifest = root.stat(), root / MANIFEST_NAME
        return (st.st_dev, st.st_ino, *(_identity(manifest) if manifest.exists() else ()))
    except OSError:
        return ()


def refuse_pickles(root: Path, what: str) -> None:
    """Refuse a folder holding pickle-format (or code) files by name, before anything reads them."""
    for f in _files(root):
        if f.endswith(PICKLE_SUFFIXES):
            raise DWFError(
                f"{root / f}: {what} folders hold safetensors only; refusing a pickle or code file"
            )
