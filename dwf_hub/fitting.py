"""Fit a DeepWeightFlow pipeline on a zoo: canonicalize -> codec -> flow training -> pipeline."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from .codec import PCA_NORMALIZATIONS, WeightCodec
from .configs import FlowConfig
from .errors import DWFError
from .flow.scheduler import FlowODEScheduler
from .flow.training import train_flow
from .matching import canonicalize
from .pca import exact_fits_in_memory, fit_pca_dual, fit_pca_incremental
from .pipeline import DeepWeightFlowPipeline
from .recipes import Recipe
from .zoo import WeightZoo, open_zoo


@dataclass
class FitResult:
    pipeline: DeepWeightFlowPipeline
    training_zoo: WeightZoo
    """The zoo the flow was trained on (canonical unless canonicalization was off)."""
    heldout_zoo: WeightZoo | None
    losses: list[float]
    timings: dict[str, float] = field(default_factory=dict)


def default_flow_config(zoo: WeightZoo, preset: str = "dwf", **overrides: Any) -> FlowConfig:
    """The zoo recipe's flow settings for ``preset`` (``dwf`` or ``paper``) with ``overrides`` applied."""
    recipe = (
        Recipe.from_dict(zoo.recipe, source="zoo recipe")
        if zoo.recipe
        else Recipe("custom", zoo.arch.config, {})
    )
    return recipe.flow_config(preset, **overrides)


def _pca_solver(cfg: FlowConfig, n: int, d: int) -> str:
    """``auto``: exact PCA when the zoo fits in memory, else the streaming dual PCA."""
    if cfg.pca_solver == "auto":
        return "exact" if exact_fits_in_memory(n, d) else "dual"
    return cfg.pca_solver


def fit_pipeline(
    zoo: WeightZoo | str | os.PathLike,
    config: FlowConfig | None = None,
    checkpoint_dir: str | Path | None = None,
    progress: bool = True,
) -> FitResult:
    """Train a flow on ``zoo`` (defaults: the zoo recipe's ``[flow]`` table)."""
    zoo = open_zoo(zoo)
    cfg = config or default_flow_config(zoo)
    if cfg.holdout > len(zoo) - 2:
        raise DWFError(
            f"holdout={cfg.holdout} must leave at least 2 of the zoo's {len(zoo)} networks for fitting"
        )
    if not 0 <= cfg.reference < len(zoo) - cfg.holdout:
        raise DWFError(
            f"reference index {cfg.reference} is out of range for the {len(zoo) - cfg.holdout} networks "
            f"fitted on (zoo of {len(zoo)}, holdout {cfg.holdout})"
        )
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    canonical_info = zoo.info.get("canonical")
    already = canonical_info is not None and (
        canonical_info.get("reference"),
        canonical_info.get("permute_residual", True),
    ) == (cfg.reference, cfg.permute_residual)
    if cfg.canonicalize and not already:
        training = canonicalize(
            zoo,
            cfg.reference,
            cfg.matching_iterations,
            seed=cfg.seed,
            progress=progress,
            permute_residual=cfg.permute_residual,
        ).zoo
    else:
        training = zoo
    training, heldout = training.split_holdout(cfg.holdout)
    timings["canonicalize"] = time.perf_counter() - t0
    codec_config = {
        "recipe": zoo.recipe,
        "canonicalization": training.info.get("canonical") if cfg.canonicalize else None,
        "flow_config": cfg.to_dict(),
    }
    solver = _pca_solver(cfg, len(training), zoo.arch.num_params)
    if cfg.normalization in PCA_NORMALIZATIONS and solver != "exact":
        batches = lambda: training.iter_matrix(cfg.pca_batch_size)  # noqa: E731
        if solver == "dual":
            n, d = len(training), zoo.arch.num_params
            pca = fit_pca_dual(
                training.read_columns, n, d, cfg.n_components, seed=cfg.seed, progress=progress
            )
        else:
            pca = fit_pca_incremental(batches, len(training), cfg.n_components, cfg.pca_batch_size)
        reference = training.flat(cfg.reference)
        codec = WeightCodec.fit(
            zoo.arch, None, cfg.normalization, reference=reference, pca=pca, **codec_config
        )
        latents = torch.cat([codec.encode(b) for b in batches()])
    else:
        matrix = training.to_matrix()
        codec = WeightCodec.fit(
            zoo.arch, matrix, cfg.normalization, cfg.n_components, matrix[cfg.reference], **codec_config
        )
        latents = codec.encode(matrix)
        del matrix
    timings["codec"] = time.perf_counter() - t0 - timings["canonicalize"]
    source_std = float(latents.std()) if cfg.source_std == "matched" else float(cfg.source_std)
    t0 = time.perf_counter()
    velocity, losses = train_flow(latents, cfg, source_std, checkpoint_dir=checkpoint_dir, progress=progress)
    timings["flow_training"] = time.perf_counter() - t0
    scheduler = FlowODEScheduler(
        solver=cfg.solver, num_inference_steps=cfg.num_inference_steps, source_std=source_std
    )
    pipe = DeepWeightFlowPipeline(velocity=velocity, codec=codec, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return FitResult(pipe, training, heldout, losses, timings)
