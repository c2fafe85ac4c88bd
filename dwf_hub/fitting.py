"""Fit a DeepWeightFlow pipeline on a zoo: canonicalize -> codec -> flow training -> pipeline; or one
conditional flow on a collection of zoos (``fit_conditional``, paper Appendix K)."""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .codec import WeightCodec
from .configs import FlowConfig
from .errors import DWFError
from .flow.scheduler import FlowODEScheduler
from .flow.training import FlowConditions, train_flow
from .matching import canonicalize
from .normalizations import NORMALIZATIONS
from .pca_solvers import PCA_SOLVERS, resolve_pca_solver
from .pipeline import DeepWeightFlowPipeline
from .recipes import Recipe
from .zoo import WeightZoo, open_zoo

logger = logging.getLogger(__name__)


@dataclass
class FitResult:
    pipeline: DeepWeightFlowPipeline
    training_zoo: WeightZoo
    """The zoo the flow was trained on (canonical unless canonicalization was off)."""
    heldout_zoo: WeightZoo | None
    losses: list[float]
    timings: dict[str, float] = field(default_factory=dict)


def default_flow_config(zoo: WeightZoo, preset: str = "dwf", **overrides: Any) -> FlowConfig:
    """The zoo recipe's flow settings for ``preset`` (``dwf`` or ``paper``) with flat ``overrides`` applied."""
    recipe = zoo.recipe or Recipe("custom", zoo.arch.config, {})
    return recipe.flow_config(preset, **overrides)


def _check_sizes(zoo: WeightZoo, cfg: FlowConfig) -> None:
    holdout, reference = cfg.training.holdout, cfg.canonicalization.reference
    if holdout > len(zoo) - 2:
        raise DWFError(
            f"holdout={holdout} must leave at least 2 of the zoo's {len(zoo)} networks for fitting"
        )
    if not 0 <= reference < len(zoo) - holdout:
        raise DWFError(
            f"reference index {reference} is out of range for the {len(zoo) - holdout} networks "
            f"fitted on (zoo of {len(zoo)}, holdout {holdout})"
        )


def _training_zoo(zoo: WeightZoo, cfg: FlowConfig, progress: bool) -> WeightZoo:
    """``zoo`` canonicalized as ``cfg`` asks (as it is when it already is, or when canonicalization is off)."""
    c = cfg.canonicalization
    record = zoo.canonical
    if not c.canonicalize or (
        record and (record.reference, record.permute_residual) == (c.reference, c.permute_residual)
    ):
        return zoo
    return canonicalize(
        zoo, c.reference, c.matching_iterations, seed=cfg.training.seed, progress=progress,
        permute_residual=c.permute_residual,
    ).zoo  # fmt: skip


def fit_codec(
    training: WeightZoo, cfg: FlowConfig, progress: bool = False, work_dir: Path | None = None
) -> tuple[WeightCodec, Tensor]:
    """The codec for ``training`` and the training latents ``[N, K]``. PCA codecs stream the zoo through
    the configured PCA solver unless it fits in memory (``exact``); the dual solver writes a basis larger
    than ``BASIS_SHARD_BYTES`` into ``work_dir`` (memory-mapped from there) when one is given."""
    from .codec import BASIS_SHARD_BYTES

    arch, c, reference = training.arch, cfg.codec, cfg.canonicalization.reference
    solver = resolve_pca_solver(c.pca_solver, len(training), arch.num_params)
    if NORMALIZATIONS[c.normalization].pca and solver != "exact":
        args = (training, arch.num_params, c.n_components, c.pca_batch_size, cfg.training.seed, progress)
        if solver == "dual" and work_dir and 4 * (len(training) - 1) * arch.num_params > BASIS_SHARD_BYTES:
            Path(work_dir).mkdir(parents=True, exist_ok=True)
            pca = PCA_SOLVERS[solver](*args, basis_path=Path(work_dir) / "basis.safetensors")
        else:
            pca = PCA_SOLVERS[solver](*args)
        codec = WeightCodec.fit(arch, None, c.normalization, reference=training.flat(reference), pca=pca)
        block = max(1, (1 << 24) // len(training))  # ~64 MB column blocks, as the dual PCA reads them
        return codec, codec.encode_columns(training.read_columns, len(training), block)
    matrix = training.to_matrix()
    codec = WeightCodec.fit(arch, matrix, c.normalization, c.n_components, matrix[reference])
    return codec, codec.encode(matrix)


def _source_std(cfg: FlowConfig, data: Tensor) -> float:
    """The Gaussian source's std: the training data's (``matched``) or the configured value."""
    return float(data.std()) if cfg.training.source_std == "matched" else float(cfg.training.source_std)


def _scheduler(cfg: FlowConfig, source_std: float) -> FlowODEScheduler:
    s = cfg.sampling
    return FlowODEScheduler(solver=s.solver, num_inference_steps=s.num_inference_steps, source_std=source_std)


def fit_pipeline(
    zoo: WeightZoo | str | os.PathLike,
    config: FlowConfig | None = None,
    checkpoint_dir: str | Path | None = None,
    progress: bool = True,
) -> FitResult:
    """Train a flow on ``zoo`` (defaults: the zoo recipe's ``[flow]`` table)."""
    zoo = open_zoo(zoo)
    cfg = config or default_flow_config(zoo)
    _check_sizes(zoo, cfg)
    t0 = time.perf_counter()
    training, heldout = _training_zoo(zoo, cfg, progress).split_holdout(cfg.training.holdout)
    timings = {"canonicalize": time.perf_counter() - t0}
    codec, latents = fit_codec(training, cfg, progress, checkpoint_dir)
    timings["codec"] = time.perf_counter() - t0 - timings["canonicalize"]
    source_std = _source_std(cfg, latents)
    t0 = time.perf_counter()
    velocity, losses = train_flow(latents, cfg, source_std, checkpoint_dir=checkpoint_dir, progress=progress)
    timings["flow_training"] = time.perf_counter() - t0
    scheduler = _scheduler(cfg, source_std)
    canonical = training.canonical if cfg.canonicalization.canonicalize else None
    pipe = DeepWeightFlowPipeline(
        velocity=velocity, codec=codec, scheduler=scheduler, recipe=zoo.recipe and zoo.recipe.to_dict(),
        canonicalization=canonical and canonical.to_dict(), flow_config=cfg.to_dict(),
    )  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    logger.info("fitted on %d networks: final loss %.4g, timings %s", len(training), losses[-1], timings)
    return FitResult(pipe, training, heldout, losses, timings)


def fit_conditional(
    zoos: list[WeightZoo | str | os.PathLike],
    labels: list[str],
    config: FlowConfig | None = None,
    checkpoint_dir: str | Path | None = None,
    progress: bool = True,
) -> FitResult:
    """One flow for several zoos of one architecture, conditioned on a label per zoo (paper Appendix K).

    Every zoo keeps its last ``holdout`` members out and is aligned to its own member ``reference`` (the codec's
    reference, for ``pipe.canonicalize``, is the first zoo's); all share one codec (PCA over all of them) and one
    velocity model with a label embedding on each condition's own whitened coordinates
    (``condition_coordinates``; the maps back to the codec's latent live in the velocity model), each condition
    starting from its own source mean. ``pipe(condition=label)`` generates for that zoo. Defaults: the first
    zoo recipe's ``[flow]``. ``training_zoo`` / ``heldout_zoo`` hold every zoo's members, each record
    tagged with its ``condition``.
    """
    opened = [open_zoo(z) for z in zoos]
    _check_collection(opened, labels)
    cfg = config or default_flow_config(opened[0])
    for zoo in opened:
        _check_sizes(zoo, cfg)
    t0 = time.perf_counter()
    # each zoo aligned to its own reference member: a foreign reference aligns a zoo of another task loosely
    parts = [_training_zoo(zoo, cfg, progress).split_holdout(cfg.training.holdout) for zoo in opened]
    training = _tagged([p[0] for p in parts], labels)
    heldout = _tagged([p[1] for p in parts], labels) if cfg.training.holdout else None
    timings = {"canonicalize": time.perf_counter() - t0}
    codec, latents = fit_codec(training, cfg, progress, checkpoint_dir)
    timings["codec"] = time.perf_counter() - t0 - timings["canonicalize"]
    ids = torch.tensor([labels.index(r["condition"]) for r in training.records])
    offsets, maps, coords = condition_coordinates(latents, ids, len(labels))
    source_std = _source_std(cfg, coords)
    sources = SOURCE_SEPARATION * source_std * _directions(len(labels), coords.shape[1])
    t0 = time.perf_counter()
    flow_conditions = FlowConditions(ids, len(labels), latents.shape[1], sources)
    velocity, losses = train_flow(
        coords, cfg, source_std, checkpoint_dir, progress, conditions=flow_conditions
    )
    for name, value in (("label_offsets", offsets), ("label_maps", maps), ("label_sources", sources)):
        getattr(velocity, name).copy_(value)
    timings["flow_training"] = time.perf_counter() - t0
    scheduler = _scheduler(cfg, source_std)
    canonical = training.canonical if cfg.canonicalization.canonicalize else None
    conditions = {
        "labels": list(labels),
        "zoos": [_zoo_name(z, o) for z, o in zip(zoos, opened, strict=True)],
        "recipes": [z.recipe and z.recipe.to_dict() for z in opened],
    }
    pipe = DeepWeightFlowPipeline(
        velocity=velocity, codec=codec, scheduler=scheduler, canonicalization=canonical and canonical.to_dict(),
        flow_config=cfg.to_dict(), conditions=conditions,
    )  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    return FitResult(pipe, training, heldout, losses, timings)


SOURCE_SEPARATION = (
    6.0  # conditions' source means this many source stds apart (times sqrt(2)): paths do not cross
)


def _directions(count: int, dim: int) -> Tensor:
    """``count`` unit directions ``[count, dim]``: the first axes (orthonormal), or seeded random ones beyond ``dim``."""
    if count <= dim:
        return torch.eye(dim)[:count]
    return torch.nn.functional.normalize(
        torch.randn(count, dim, generator=torch.Generator().manual_seed(0)), dim=1
    )


def condition_coordinates(latents: Tensor, ids: Tensor, num_labels: int) -> tuple[Tensor, Tensor, Tensor]:
    """Each condition's own whitened principal coordinates inside the shared latent space — as if each zoo had
    its own whitened PCA codec — padded to the largest rank ``R``: ``(offsets [L, K], maps [L, R, K],
    coordinates [N, R])`` with ``latents[i] = offsets[l] + coordinates[i] @ maps[l]`` for member ``i`` of
    condition ``l`` (a flow on one zoo's whitened coordinates is what the unconditional flows learn)."""
    parts = []
    for label in range(num_labels):
        z = latents[ids == label].double()
        centred = z - z.mean(0)
        _, s, vh = torch.linalg.svd(centred, full_matrices=False)
        rank = int((s > s[0] * 1e-6).sum())
        std = s[:rank] / (len(z) - 1) ** 0.5
        parts.append((z.mean(0), std[:, None] * vh[:rank], centred @ vh[:rank].T / std))
    width = max(p[1].shape[0] for p in parts)
    offsets = torch.stack([p[0] for p in parts]).float()
    maps = torch.zeros(num_labels, width, latents.shape[1])
    coords = torch.zeros(len(latents), width)
    for label, (_, m, c) in enumerate(parts):
        maps[label, : len(m)] = m.float()
        coords[ids == label, : c.shape[1]] = c.float()
    return offsets, maps, coords


def _check_collection(zoos: list[WeightZoo], labels: list[str]) -> None:
    """One distinct, non-empty label per zoo; one architecture for all (a shared latent space across
    architectures is not built)."""
    if len(zoos) != len(labels):
        raise DWFError(f"{len(zoos)} zoos but {len(labels)} labels: give one label per zoo")
    if len(set(labels)) != len(labels) or not all(isinstance(x, str) and x.strip() for x in labels):
        raise DWFError(f"labels must be distinct non-empty names, got {labels}")
    for zoo, label in zip(zoos[1:], labels[1:], strict=True):
        if zoo.arch != zoos[0].arch:
            raise DWFError(
                f"zoo {label!r} is {zoo.arch!r}, zoo {labels[0]!r} is {zoos[0].arch!r}: a conditional flow "
                "needs one architecture (several architectures would need a shared PCA latent, not built)"
            )


def _tagged(zoos: list[WeightZoo], labels: list[str]) -> WeightZoo:
    """All members of ``zoos`` as one zoo (the first zoo's provenance), each record tagged with its zoo's
    ``condition`` label."""
    return WeightZoo.concatenate(zoos, condition=labels)


def _zoo_name(given: WeightZoo | str | os.PathLike, zoo: WeightZoo) -> str:
    """What a conditional pipeline records of a training zoo: the Hub repo id or folder it came from."""
    if not isinstance(given, WeightZoo):  # a Hub repo id as given; a local folder by its name only
        return Path(given).name if Path(given).is_dir() else str(given)
    return zoo.recipe.name if zoo.recipe else "in-memory zoo"
