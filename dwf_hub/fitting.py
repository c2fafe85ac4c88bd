"""Fit a DeepWeightFlow pipeline on a zoo: canonicalize -> codec -> flow training -> pipeline."""

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
from .flow.training import train_flow
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


def fit_codec(training: WeightZoo, cfg: FlowConfig, progress: bool = False) -> tuple[WeightCodec, Tensor]:
    """The codec for ``training`` and the training latents ``[N, K]``. PCA codecs stream the zoo through
    the configured PCA solver unless it fits in memory (``exact``)."""
    arch, c, reference = training.arch, cfg.codec, cfg.canonicalization.reference
    solver = resolve_pca_solver(c.pca_solver, len(training), arch.num_params)
    if NORMALIZATIONS[c.normalization].pca and solver != "exact":
        pca = PCA_SOLVERS[solver](
            training, arch.num_params, c.n_components, c.pca_batch_size, cfg.training.seed, progress
        )
        codec = WeightCodec.fit(arch, None, c.normalization, reference=training.flat(reference), pca=pca)
        return codec, torch.cat([codec.encode(b) for b in training.iter_matrix(c.pca_batch_size)])
    matrix = training.to_matrix()
    codec = WeightCodec.fit(arch, matrix, c.normalization, c.n_components, matrix[reference])
    return codec, codec.encode(matrix)


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
    codec, latents = fit_codec(training, cfg, progress)
    timings["codec"] = time.perf_counter() - t0 - timings["canonicalize"]
    t = cfg.training
    source_std = float(latents.std()) if t.source_std == "matched" else float(t.source_std)
    t0 = time.perf_counter()
    velocity, losses = train_flow(latents, cfg, source_std, checkpoint_dir=checkpoint_dir, progress=progress)
    timings["flow_training"] = time.perf_counter() - t0
    scheduler = FlowODEScheduler(
        solver=cfg.sampling.solver,
        num_inference_steps=cfg.sampling.num_inference_steps,
        source_std=source_std,
    )
    canonical = training.canonical if cfg.canonicalization.canonicalize else None
    pipe = DeepWeightFlowPipeline(
        velocity=velocity, codec=codec, scheduler=scheduler, recipe=zoo.recipe and zoo.recipe.to_dict(),
        canonicalization=canonical and canonical.to_dict(), flow_config=cfg.to_dict(),
    )  # fmt: skip
    pipe.set_progress_bar_config(disable=True)
    logger.info("fitted on %d networks: final loss %.4g, timings %s", len(training), losses[-1], timings)
    return FitResult(pipe, training, heldout, losses, timings)
