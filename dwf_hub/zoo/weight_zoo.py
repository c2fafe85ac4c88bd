"""WeightZoo: a population of networks of one architecture, stored as a Hugging Face dataset repo.

On disk::

    README.md                  dataset card (YAML metadata points ``datasets`` at metadata.parquet)
    zoo.json                   format version, architecture config, recipe, info (written last)
    metadata.parquet           one row per model (``datasets.load_dataset(dir)`` reads it)
    checkpoints/*.safetensors  one checkpoint per model; its header metadata repeats the row

or, for many networks (``save(networks_per_shard=k)``, ``write_packed_zoo``, ``dwf-hub generate`` of large N),
packed shards ``checkpoints/shard_*.safetensors`` holding every tensor stacked ``[n, *shape]``; each row then
names its shard and its ``shard_row`` — still one row per network, and few files per folder.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import Tensor

from ..archs import ArchSpec, arch_from_config
from ..artifacts import (
    folder_identity,
    inside,
    read_manifest,
    verify_file,
    verify_files,
    write_folder,
    zoo_kind,
)
from ..errors import WeightFormatError, ZooFormatError
from ..formats import (
    CARD_NAME,
    CHECKPOINT_DIR,
    JOB_FILE,
    METADATA_FILES,
    METADATA_NAME,
    RECORD_KEY,
    SHARD_KEY,
    SHARD_ROW_COLUMN,
    WEIGHTS_COLUMN,
    WEIGHTS_COLUMN_MAX_PARAMS,
    ZOO_CONFIG_NAME,
    ZOO_FORMAT_VERSION,
)
from ..hub.repos import PRETRAINED_FILES, HubMixin, download
from ..io import (
    DTYPE_NAMES,
    FlatReader,
    check_finite_rows,
    load_tensors,
    read_header,
    read_json,
    save_tensors,
    write_json,
    write_text,
)
from ..provenance import CanonicalizationRecord
from .recipes import Recipe, as_recipe


def checkpoint_name(index: int) -> str:
    return f"{CHECKPOINT_DIR}/model_{index:05d}.safetensors"


def shard_name(index: int) -> str:
    return f"{CHECKPOINT_DIR}/shard_{index:05d}.safetensors"


class Packed(NamedTuple):
    """Network ``row`` of the packed shard ``path`` (tensors stacked ``[rows, *shape]``)."""

    path: Path
    row: int
    rows: int


class WeightZoo(HubMixin):
    """``N`` networks of one architecture with one metadata record each.

    Members live in memory (state dicts) or on disk (loaded lazily, validated on read). A zoo on the Hub
    is a *dataset* repo: ``WeightZoo.from_pretrained(repo_id, members=...)``, ``zoo.push_to_hub(repo_id)``.
    """

    repo_type = "dataset"

    def __init__(
        self,
        arch: ArchSpec,
        members: Sequence[dict[str, Tensor] | Path | Packed],
        records: Sequence[dict[str, Any]] | None = None,
        recipe: Recipe | dict[str, Any] | None = None,
        info: dict[str, Any] | None = None,
    ) -> None:
        if len(members) == 0:
            raise ZooFormatError("a zoo needs at least one network; got an empty zoo")
        records = [dict(r) for r in records] if records is not None else [{} for _ in members]
        if len(records) != len(members):
            raise ZooFormatError(f"{len(members)} networks but {len(records)} metadata records")
        self.arch, self._members, self.records = arch, list(members), records
        self.recipe, self.info = as_recipe(recipe, "zoo recipe"), dict(info or {})
        self._origin: tuple[Path, tuple[int, ...], dict[str, Any] | None] | None = None  # set by `load`

    # -- constructors ----------------------------------------------------------------------------
    @classmethod
    def from_matrix(cls, arch: ArchSpec, matrix: Tensor, **kwargs: Any) -> WeightZoo:
        """From flat weights ``[N, D]`` (rows are cloned)."""
        if matrix.dim() != 2 or matrix.shape[1] != arch.num_params:
            raise ZooFormatError(
                f"weight matrix has shape {tuple(matrix.shape)}, expected (N, {arch.num_params})"
            )
        return cls(arch, [arch.unflatten(row.clone()) for row in matrix], **kwargs)

    @classmethod
    def from_transformers(cls, models: Sequence[str | os.PathLike], **kwargs: Any) -> WeightZoo:
        """A zoo of saved ``transformers`` models (folders or Hub repo ids with ``config.json`` and
        ``model.safetensors``); every member must have the same architecture — hidden size, heads, layers."""
        from ..archs.transformer import spec_from_hf_config

        if not models:
            raise ZooFormatError("a zoo needs at least one network; got no models")
        arch, members = None, []
        for model in models:
            folder = download(model, repo_type="model", allow_patterns=PRETRAINED_FILES)
            config_path = folder / "config.json"
            if not config_path.is_file():
                raise ZooFormatError(f"{model}: no config.json (not a saved transformers model)")
            spec = spec_from_hf_config(json.loads(config_path.read_text()), source=str(config_path))
            if arch is None:
                arch, first = spec, model
            elif spec != arch:
                diff = [f"{k}: {arch.kwargs.get(k)} in {first} vs {v}" for k, v in spec.kwargs.items()
                        if arch.kwargs.get(k) != v]  # fmt: skip
                raise ZooFormatError(
                    f"{model}: architecture differs from the first member ({'; '.join(diff)})"
                )
            if not any(folder.glob("*.safetensors")):
                raise ZooFormatError(
                    f"{model}: no *.safetensors weights (only safetensors checkpoints are read)"
                )
            members.append(arch.pretrained_state(str(folder), strict=True))
        return cls(arch, members, [{"source": str(m)} for m in models], **kwargs)

    # -- access ----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._members)

    def __iter__(self) -> Iterator[dict[str, Tensor]]:
        return (self.state_dict(i) for i in range(len(self)))

    def __repr__(self) -> str:
        return f"WeightZoo({self.arch!r}, {len(self)} networks, canonical={self.is_canonical})"

    @property
    def is_canonical(self) -> bool:
        return "canonical" in self.info

    @property
    def canonical(self) -> CanonicalizationRecord | None:
        """How the zoo was canonicalized (``None``: it was not)."""
        return CanonicalizationRecord.from_info(self.info)

    def state_dict(self, index: int) -> dict[str, Tensor]:
        member = self._members[index]
        if isinstance(member, Packed):
            return self.arch.unflatten(self.flat(index))
        if isinstance(member, Path):
            sd = load_tensors(self._verified(member))
            self.arch.validate(sd, source=str(member))
            return sd
        return member

    def _verified(self, path: Path) -> Path:
        """``path`` (a member file of the folder this zoo was opened from), refused when that folder was
        replaced since, or the file's bytes differ from its manifest (hashed once per file per process)."""
        if self._origin is None:
            return path
        root, identity, manifest = self._origin
        if folder_identity(root) != identity:
            raise ZooFormatError(f"{root}: the zoo folder was replaced after it was opened; open it again")
        if manifest is not None:
            name = path.relative_to(root).as_posix()
            verify_file(root, name, manifest[name], "zoo", ZooFormatError)
        return path

    def flat(self, index: int) -> Tensor:
        """Member ``index`` as flat float32 weights ``[D]``."""
        member = self._members[index]
        if isinstance(member, Packed):
            flat = self._reader(member).read(0, self.arch.num_params, member.row)
            return check_finite_rows(flat[None], f"{member.path} row {member.row}")[0]
        src = str(member) if isinstance(member, Path) else f"zoo member {index}"
        return self.arch.flatten(self.state_dict(index), source=src)

    def fingerprint(self) -> str:
        """SHA-256 of what the zoo holds (its manifest and the members selected when opened from a folder;
        else its weights and records): the same zoo or not, however its folder or repo was named."""
        import hashlib

        records = json.dumps([r.get("model_id", i) for i, r in enumerate(self.records)])
        h = hashlib.sha256(records.encode())
        if self._origin is not None and self._origin[2] is not None:
            h.update(json.dumps(self._origin[2], sort_keys=True).encode())
            return h.hexdigest()
        h.update(json.dumps(self.records, sort_keys=True, default=str).encode())
        for i in range(len(self)):
            h.update(self.flat(i).numpy().tobytes())
        return h.hexdigest()

    def to_matrix(self) -> Tensor:
        """All members as flat float32 weights ``[N, D]``."""
        out = torch.empty(len(self), self.arch.num_params)
        for i in range(len(self)):
            out[i] = self.flat(i)
        return out

    def iter_matrix(self, batch_size: int) -> Iterator[Tensor]:
        """Row batches ``[b, D]`` of ``to_matrix()``, reading (from disk, if stored there) one batch at a time."""
        for start in range(0, len(self), batch_size):
            yield torch.stack([self.flat(i) for i in range(start, min(start + batch_size, len(self)))])

    def read_columns(self, start: int, stop: int) -> Tensor:
        """Columns ``[start, stop)`` of ``to_matrix()``: ``[N, stop - start]``, read from the checkpoint files
        without loading whole networks (for PCA of zoos larger than memory)."""
        out = torch.empty(len(self), stop - start)
        for i, member in enumerate(self._members):
            if isinstance(member, (Path, Packed)):
                out[i] = self._reader(member).read(start, stop, getattr(member, "row", 0))
            else:
                out[i] = self.flat(i)[start:stop]
        return check_finite_rows(out, f"zoo {self._origin[0] if self._origin else 'in memory'}")

    def _reader(self, member: Path | Packed) -> FlatReader:
        """One cached reader per checkpoint file or packed shard."""
        readers = self.__dict__.setdefault("_readers", {})
        path = member.path if isinstance(member, Packed) else member
        if path not in readers:
            rows = member.rows if isinstance(member, Packed) else None
            readers[path] = FlatReader(self._verified(path), self.arch.layout, rows)
        return readers[path]

    @classmethod
    def concatenate(
        cls, zoos: Sequence[WeightZoo], info: dict[str, Any] | None = None, **tags: Sequence[Any]
    ) -> WeightZoo:
        """The members of ``zoos`` (one architecture) as one zoo with the first zoo's recipe; each keyword
        ``name=[value per zoo]`` is added to every record of that zoo (e.g. ``condition=["a", "b"]``)."""
        for name, values in tags.items():
            if len(values) != len(zoos):
                raise ZooFormatError(f"{name}: {len(values)} values for {len(zoos)} zoos")
        members = [m for zoo in zoos for m in zoo._members]
        records = [
            {**r, **{k: v[i] for k, v in tags.items()}} for i, zoo in enumerate(zoos) for r in zoo.records
        ]
        return cls(
            zoos[0].arch,
            members,
            records,
            recipe=zoos[0].recipe,
            info=info if info is not None else zoos[0].info,
        )

    def subset(self, indices: Sequence[int]) -> WeightZoo:
        """The members ``indices`` (with their records) as a zoo of the same recipe and provenance."""
        indices = list(indices)
        for i in indices:
            if not 0 <= i < len(self):
                raise ZooFormatError(f"member index {i} is out of range for a zoo of {len(self)} networks")
        return WeightZoo(
            self.arch, [self._members[i] for i in indices], [self.records[i] for i in indices],
            recipe=self.recipe, info=self.info,
        )  # fmt: skip

    def split_holdout(self, holdout: int) -> tuple[WeightZoo, WeightZoo | None]:
        """``(first N - holdout members, last holdout members)``: the networks a generator is fitted on and
        those kept unseen for held-out metrics (``None`` when ``holdout`` is 0)."""
        if isinstance(holdout, bool) or not isinstance(holdout, int) or not 0 <= holdout <= len(self) - 2:
            raise ZooFormatError(
                f"holdout={holdout} must leave at least 2 of the zoo's {len(self)} networks for fitting"
            )
        n = len(self) - holdout
        return self.subset(range(n)), (self.subset(range(n, len(self))) if holdout else None)

    def model(self, index: int) -> torch.nn.Module:
        """Member ``index`` as a ready-to-use model in eval mode."""
        return self.arch.instantiate(self.state_dict(index))

    # -- disk ------------------------------------------------------------------------------------
    def _save_pretrained(
        self,
        root: Path,
        *,
        repo_id: str | None = None,
        overwrite: bool = False,
        extra_tensors: dict[str, dict[str, Tensor]] | None = None,
        license: str | None = None,
        networks_per_shard: int | None = None,
    ) -> None:
        """``save_pretrained`` (``save``): the zoo as a dataset repo folder, whole or not at all
        (``artifacts.write_folder``): a folder that is not an empty one or a zoo of ours is refused unless
        ``overwrite``. ``repo_id`` goes into the card's usage lines (and is where ``push_to_hub=True`` uploads),
        ``license`` into its metadata (default: the recipe's); ``extra_tensors``: more safetensors files saved
        with the zoo (``file name -> tensors``, e.g. the permutations ``canonicalize`` applied);
        ``networks_per_shard``: packed shards of that many networks instead of one file per network."""
        if networks_per_shard is not None:
            if extra_tensors:
                raise ZooFormatError("extra_tensors: not supported with networks_per_shard (packed zoos)")
            step = check_shard_size(networks_per_shard)
            chunks = (
                (batch, self.records[start : start + step])
                for start, batch in zip(range(0, len(self), step), self.iter_matrix(step), strict=True)
            )
            write_packed_zoo(root, self.arch, chunks, self.recipe, self.info, overwrite, repo_id, license)
            return
        with write_folder(root, zoo_kind(self.info), overwrite, carry=[JOB_FILE]) as stage:
            records = self._write(stage, root.absolute(), repo_id, license)
            for name, tensors in (extra_tensors or {}).items():
                if Path(name).name != name or not name.endswith(".safetensors"):
                    raise ZooFormatError(f"extra file {name!r}: a plain *.safetensors file name")
                save_tensors(stage / name, tensors)
        self.records = records

    save = HubMixin.save_pretrained  # the older name

    def _write(
        self, stage: Path, root: Path, repo_id: str | None, license: str | None
    ) -> list[dict[str, Any]]:
        """Every file of the zoo into ``stage``; members already at their place in ``root`` are hard-linked."""
        from ..hub.cards import render_zoo_card

        records, dtype = [], None
        for i in range(len(self)):
            own = {k: v for k, v in self.records[i].items() if k != SHARD_ROW_COLUMN}  # from a packed zoo
            rec = {**own, "model_id": i, "checkpoint": checkpoint_name(i)}
            member, target = self._members[i], stage / rec["checkpoint"]
            target.parent.mkdir(exist_ok=True)
            header = read_header(self._verified(member)) if isinstance(member, Path) else None
            if header is not None and header.metadata.get(RECORD_KEY) == json.dumps(rec, sort_keys=True):
                # the same bytes (validated when loaded), not re-serialized: linked when the file belongs to
                # the folder being replaced (its old copy goes away), copied otherwise (no shared inodes)
                _link_or_copy(member, target, link=member.absolute().is_relative_to(root))
                member_dtype = DTYPE_NAMES.get(next(iter(header.dtypes.values())), "float32")
            else:
                sd = self.state_dict(i)
                member_dtype = str(next(iter(sd.values())).dtype).removeprefix("torch.")
                save_tensors(target, sd, metadata={RECORD_KEY: json.dumps(rec, sort_keys=True)})
            if dtype not in (None, member_dtype):
                raise WeightFormatError(
                    f"zoo member {i} is {member_dtype}, member 0 is {dtype}: a zoo has one dtype"
                )
            dtype = member_dtype
            records.append(rec)
        weights = None
        if self.arch.num_params <= WEIGHTS_COLUMN_MAX_PARAMS:  # lets `datasets` stream the weights too
            weights = [self.flat(i).tolist() for i in range(len(self))]
        _write_parquet(stage / METADATA_NAME, records, weights)
        write_text(stage / CARD_NAME, render_zoo_card(self, records, repo_id or "ORG/dwf-zoo-NAME", license))
        config = {"format_version": ZOO_FORMAT_VERSION, "arch": self.arch.config, "dtype": dtype,
                  "recipe": self.recipe and self.recipe.to_dict(), "info": self.info, "num_models": len(self)}  # fmt: skip
        write_json(stage / ZOO_CONFIG_NAME, config)
        return records

    @classmethod
    def load(cls, path: str | os.PathLike, members: int | Sequence[int] | None = None) -> WeightZoo:
        """Open a zoo folder; checks that it is complete (its manifest), that table rows, checkpoint files,
        their header records and ``zoo.json`` agree, and every selected checkpoint's header (keys, shapes,
        dtype). ``members``: all (``None``), the first ``k``, or these indices. A folder replaced while it
        is opened is opened again (one snapshot is read, never a mixture); member files are verified against
        the manifest when first read."""
        root = Path(path)
        if not root.is_dir():
            raise ZooFormatError(f"{root}: no such zoo directory")
        members = _member_selection(members)
        for _ in range(3):
            identity = folder_identity(root)
            try:
                zoo = cls._open(root, members)
            except (ZooFormatError, WeightFormatError):
                if folder_identity(root) == identity:
                    raise
                continue
            if folder_identity(root) == identity:
                zoo._origin = (root, identity, read_manifest(root))
                return zoo
        raise ZooFormatError(f"{root}: the zoo folder keeps changing while it is opened; try again")

    @classmethod
    def _open(cls, root: Path, members: int | list[int] | None) -> WeightZoo:
        config = read_zoo_config(root)
        if config["format_version"] >= 2:
            verify_files(root, [ZOO_CONFIG_NAME, METADATA_NAME], "zoo", error=ZooFormatError)
        arch = arch_from_config(config["arch"])
        everything = _read_parquet(root / METADATA_NAME)
        _check_table(root, everything, config)
        records = [everything[i] for i in _select(everything, members)]
        if config["format_version"] >= 2:
            manifest = verify_files(
                root,
                dict.fromkeys(r["checkpoint"] for r in records),
                "zoo",
                hashes=False,
                error=ZooFormatError,
            )
            unlisted = sorted(
                {f for f in manifest if f.startswith(f"{CHECKPOINT_DIR}/")}
                - {r["checkpoint"] for r in everything}
            )
            if unlisted:
                raise ZooFormatError(f"{root / METADATA_NAME}: no row for checkpoint {unlisted[0]}")
        headers: dict[Path, Any] = {}  # one header read per packed shard
        members = [_checked_member(root, rec, arch, config.get("dtype"), headers) for rec in records]
        recipe = as_recipe(config.get("recipe"), f"{root / ZOO_CONFIG_NAME} recipe")
        return cls(arch, members, records, recipe=recipe, info=config.get("info"))

    @classmethod
    def _from_pretrained(
        cls,
        repo_id_or_path: str | os.PathLike,
        hub: dict[str, Any],
        members: int | Sequence[int] | None = None,
    ) -> WeightZoo:
        """Download only the ``members`` asked for (all, the first ``k``, or these indices) plus the config,
        card and metadata table."""
        meta = download(repo_id_or_path, cls.repo_type, allow_patterns=METADATA_FILES, **hub)
        read_zoo_config(meta)  # a clear error before fetching checkpoints of something that is no zoo
        records = _read_parquet(meta / METADATA_NAME)
        wanted = list(dict.fromkeys(records[i]["checkpoint"] for i in _select(records, members)))
        root = download(repo_id_or_path, cls.repo_type, allow_patterns=[*METADATA_FILES, *wanted], **hub)
        return cls.load(root, members)


def zoo_bytes(arch: ArchSpec, num_networks: int) -> int:
    """About how many bytes a saved zoo of ``num_networks`` takes (float32 checkpoints, and the same again in
    the table's weights column for small architectures); a save stages it whole before the swap."""
    per = 4 * arch.num_params * (2 if arch.num_params <= WEIGHTS_COLUMN_MAX_PARAMS else 1)
    return num_networks * per + 65_536


def _link_or_copy(source: Path, target: Path, link: bool) -> None:
    """A hard link when ``link`` and possible (no bytes written), else a plain file copy."""
    if link:
        try:
            os.link(source, target)
            return
        except OSError:
            pass
    shutil.copyfile(source, target)


_CHECKPOINT_NAME = re.compile(rf"^{CHECKPOINT_DIR}/[A-Za-z0-9_][A-Za-z0-9_.-]*\.safetensors$")


def _check_table(root: Path, rows: list[dict[str, Any]], config: dict[str, Any]) -> None:
    """Rows agree with ``zoo.json`` (count) and name distinct checkpoints, each a plain file name under
    ``checkpoints/`` — checked before any checkpoint is opened."""
    table = root / METADATA_NAME
    if not rows:
        raise ZooFormatError(f"{root}: empty zoo (no rows in {METADATA_NAME})")
    count = config.get("num_models")
    if count is not None and count != len(rows):
        raise ZooFormatError(f"{table}: {len(rows)} rows, but {ZOO_CONFIG_NAME} says num_models = {count}")
    seen: set[tuple[str, Any]] = set()
    for i, rec in enumerate(rows):
        name, row = rec["checkpoint"], rec.get(SHARD_ROW_COLUMN)
        if not _CHECKPOINT_NAME.match(name) or ".." in name:
            raise ZooFormatError(
                f"{table}: row {i} names checkpoint {name!r}, not a file name under {CHECKPOINT_DIR}/"
            )
        if row is not None and (isinstance(row, bool) or not isinstance(row, int) or row < 0):
            raise ZooFormatError(f"{table}: row {i} has {SHARD_ROW_COLUMN} {row!r}, not an index")
        if (name, row) in seen:
            raise ZooFormatError(
                f"{table}: row {i} repeats checkpoint {name!r}" + (f" row {row}" if row is not None else "")
            )
        seen.add((name, row))


def _checked_member(
    root: Path, rec: dict[str, Any], arch: ArchSpec, dtype: str | None, headers: dict[Path, Any]
) -> Path | Packed:
    """The checkpoint of row ``rec``, refused unless it is a regular file inside ``root`` whose header
    matches the architecture, the zoo's dtype and the row itself (``headers``: packed shards already read)."""
    ckpt = root / rec["checkpoint"]
    if rec.get(SHARD_ROW_COLUMN) is not None:
        return _checked_packed(root, ckpt, rec, arch, headers)
    if not inside(root, ckpt):
        raise ZooFormatError(f"{ckpt}: a symbolic link or outside the zoo folder; refusing to read it")
    header = read_header(ckpt)
    _check_shapes(ckpt, header, arch, dtype)
    stored = header.metadata.get(RECORD_KEY)
    if stored is not None:
        try:
            own = json.loads(stored)
        except json.JSONDecodeError:
            own = None
        if not isinstance(own, dict) or (own.get("model_id"), own.get("checkpoint")) != (
            rec.get("model_id"),
            rec["checkpoint"],
        ):
            raise ZooFormatError(f"{ckpt}: its header record does not match its row in {METADATA_NAME}")
    return ckpt


def _check_shapes(ckpt: Path, header, arch: ArchSpec, dtype: str | None, rows: int | None = None) -> None:
    """The header's keys and shapes are the architecture's (stacked ``[rows, ...]`` in a packed shard)."""
    shapes = {k: s for k, s in header.shapes.items() if not k.endswith("num_batches_tracked")}
    expected = {p.key: p.shape if rows is None else (rows, *p.shape) for p in arch.layout}
    if shapes != expected:
        bad = sorted(set(shapes.items()) ^ set(expected.items()))[:3]
        raise ZooFormatError(
            f"{ckpt}: keys/shapes do not match architecture {arch!r}; first differences: {bad}"
        )
    kinds = {DTYPE_NAMES.get(v, v) for k, v in header.dtypes.items() if k in expected}
    if dtype is not None and kinds != {dtype}:
        raise ZooFormatError(f"{ckpt}: dtype {', '.join(sorted(kinds))}, but the zoo is {dtype}")


def _checked_packed(
    root: Path, ckpt: Path, rec: dict[str, Any], arch: ArchSpec, headers: dict[Path, Any]
) -> Packed:
    """Network ``shard_row`` of a packed shard whose header (read once per shard) agrees with the row."""
    if ckpt not in headers:
        if not inside(root, ckpt):
            raise ZooFormatError(f"{ckpt}: a symbolic link or outside the zoo folder; refusing to read it")
        header = read_header(ckpt)
        try:
            info = json.loads(header.metadata[SHARD_KEY])
            first, count = int(info["first_model_id"]), int(info["count"])
        except (KeyError, TypeError, ValueError) as e:
            raise ZooFormatError(f"{ckpt}: not a packed shard (no valid {SHARD_KEY!r} header record)") from e
        _check_shapes(ckpt, header, arch, "float32", count)
        headers[ckpt] = (first, count)
    first, count = headers[ckpt]
    row = rec[SHARD_ROW_COLUMN]
    if row >= count or rec.get("model_id") != first + row:
        raise ZooFormatError(
            f"{ckpt}: row {row} of model {rec.get('model_id')} does not match the shard's header"
        )
    return Packed(ckpt, row, count)


def write_packed_zoo(
    path: str | os.PathLike,
    arch: ArchSpec,
    chunks: Iterable[tuple[Tensor, Sequence[dict[str, Any]]]],
    recipe: Recipe | None = None,
    info: dict[str, Any] | None = None,
    overwrite: bool = False,
    repo_id: str | None = None,
    license: str | None = None,
) -> Path:
    """A zoo folder written one chunk at a time: each ``(weights [n, D], n metadata rows)`` becomes one packed
    shard and one row group of the table, so memory holds one chunk whatever the zoo's size. Written whole or
    not at all, like ``WeightZoo.save``."""
    import pyarrow.parquet as pq

    from ..hub.cards import render_zoo_card

    root, members, kinds, writer = Path(path), [], {}, None
    with write_folder(root, zoo_kind(info or {}), overwrite) as stage:
        (stage / CHECKPOINT_DIR).mkdir()
        try:
            for index, (weights, extra) in enumerate(chunks):
                n, name, first = len(weights), shard_name(index), len(members)
                if len(extra) != n:
                    raise ZooFormatError(f"chunk {index}: {n} networks but {len(extra)} metadata rows")
                check_finite_rows(weights, f"shard {index} (networks {first} to {first + n - 1})")
                tensors = {
                    p.key: weights[:, p.offset : p.offset + p.numel].reshape(n, *p.shape) for p in arch.layout
                }
                save_tensors(
                    stage / name,
                    tensors,
                    metadata={SHARD_KEY: json.dumps({"first_model_id": first, "count": n})},
                )
                rows = [
                    {**e, "model_id": first + j, "checkpoint": name, SHARD_ROW_COLUMN: j}
                    for j, e in enumerate(extra)
                ]
                small = arch.num_params <= WEIGHTS_COLUMN_MAX_PARAMS
                table = _table(rows, weights.tolist() if small else None)
                writer = writer or pq.ParquetWriter(stage / METADATA_NAME, table.schema)
                writer.write_table(table.cast(writer.schema))
                members += [Packed(root / name, j, n) for j in range(n)]
                kinds.update({(e.get("seed"), e.get("init")): None for e in extra})
        finally:
            if writer is not None:
                writer.close()
        if not members:
            raise ZooFormatError("a zoo needs at least one network; got no chunks")
        card_rows = [
            {k: v for k, v in zip(("seed", "init"), key, strict=True) if v is not None} for key in kinds
        ]
        zoo = WeightZoo(arch, members, recipe=recipe, info=info)
        write_text(stage / CARD_NAME, render_zoo_card(zoo, card_rows, repo_id or "ORG/dwf-zoo-NAME", license))
        config = {"format_version": ZOO_FORMAT_VERSION, "arch": arch.config, "dtype": "float32",
                  "recipe": recipe and recipe.to_dict(), "info": dict(info or {}), "num_models": len(members)}  # fmt: skip
        write_json(stage / ZOO_CONFIG_NAME, config)
    return root


def check_shard_size(networks_per_shard: int) -> int:
    """``networks_per_shard``, refused unless a positive integer."""
    if (
        isinstance(networks_per_shard, bool)
        or not isinstance(networks_per_shard, int)
        or networks_per_shard < 1
    ):
        raise ZooFormatError(f"networks_per_shard={networks_per_shard!r} must be a positive integer")
    return networks_per_shard


def _member_selection(members: Any) -> int | list[int] | None:
    """``members`` as ``load`` takes it: ``None``, a count, or a non-empty list of indices (integers, numpy's
    included; never bools, floats or strings)."""
    import numbers

    def index(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, numbers.Integral):
            raise ZooFormatError(f"members: {value!r} is not an integer index")
        return int(value)

    if members is None:
        return None
    if isinstance(members, (numbers.Integral, bool)):
        return index(members)
    if isinstance(members, (str, bytes)) or not isinstance(members, Iterable):
        raise ZooFormatError(f"members={members!r}: give a count or a list of indices")
    return [index(v) for v in members]


def _select(records: list[dict[str, Any]], members: int | Sequence[int] | None) -> list[int]:
    n = len(records)
    if members is None:
        return list(range(n))
    if isinstance(members, int):
        if not 1 <= members <= n:
            raise ZooFormatError(f"members={members}: the zoo has {n} networks")
        return list(range(members))
    bad = [i for i in members if not 0 <= int(i) < n]
    if bad or not members:
        raise ZooFormatError(f"members {bad or '[]'} are not indices of a zoo of {n} networks")
    return [int(i) for i in members]


def read_metadata(
    repo_id_or_path: str | os.PathLike,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    local_files_only: bool = False,
) -> list[dict[str, Any]]:
    """The metadata rows of a zoo (folder or Hub dataset repo) without fetching any checkpoint."""
    root = download(repo_id_or_path, "dataset", revision, cache_dir, local_files_only, METADATA_FILES)
    read_zoo_config(root)
    return _read_parquet(root / METADATA_NAME)


def read_zoo_config(root: Path) -> dict[str, Any]:
    cfg_path = root / ZOO_CONFIG_NAME
    if not cfg_path.is_file():
        raise ZooFormatError(f"{root}: not a dwf_hub zoo (missing {ZOO_CONFIG_NAME})")
    config = read_json(cfg_path, ZooFormatError)
    if not isinstance(config, dict):
        raise ZooFormatError(
            f"{cfg_path}: not a dwf_hub zoo config (a JSON object), got {type(config).__name__}"
        )
    if not isinstance(config.get("info", {}), dict) or not isinstance(config.get("recipe") or {}, dict):
        raise ZooFormatError(f"{cfg_path}: 'info' and 'recipe' must be JSON objects")
    version = config.get("format_version")
    if type(version) is not int or version < 1 or "arch" not in config:
        raise ZooFormatError(f"{cfg_path}: not a dwf_hub zoo config (needs 'format_version' and 'arch')")
    if version > ZOO_FORMAT_VERSION:
        raise ZooFormatError(
            f"{cfg_path}: zoo format version {version} is newer than this dwf_hub supports ({ZOO_FORMAT_VERSION}); "
            "upgrade dwf-hub"
        )
    return config


def _write_parquet(path: Path, records: list[dict[str, Any]], weights: list[list[float]] | None) -> None:
    import pyarrow.parquet as pq

    from ..io import atomic_path

    with atomic_path(path) as tmp:
        pq.write_table(_table(records, weights), tmp)


def _table(records: list[dict[str, Any]], weights: list[list[float]] | None):
    """The metadata rows (and, for small architectures, the flat weights column) as an Arrow table."""
    import pyarrow as pa

    table = pa.Table.from_pylist(records)
    if weights is not None:
        table = table.append_column(WEIGHTS_COLUMN, pa.array(weights, type=pa.list_(pa.float32())))
    return table


def _read_parquet(path: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    if not path.is_file():
        raise ZooFormatError(f"{path.parent}: missing metadata table {METADATA_NAME}")
    try:
        names = pq.read_schema(path).names
        records = pq.read_table(path, columns=[c for c in names if c != WEIGHTS_COLUMN]).to_pylist()
    except Exception as e:
        raise ZooFormatError(f"{path}: unreadable metadata table ({e})") from e
    for i, rec in enumerate(records):
        if not isinstance(rec.get("checkpoint"), str):
            raise ZooFormatError(f"{path}: row {i} has no 'checkpoint' path")
        bad = [k for k, v in rec.items() if isinstance(v, float) and not math.isfinite(v)]
        if bad:
            raise ZooFormatError(f"{path}: row {i} has {bad[0]} = {rec[bad[0]]} (not a finite number)")
    return records


def open_zoo(zoo: WeightZoo | str | os.PathLike) -> WeightZoo:
    """A zoo object, a zoo folder, or a Hub dataset repo id."""
    return zoo if isinstance(zoo, WeightZoo) else WeightZoo.from_pretrained(zoo)
