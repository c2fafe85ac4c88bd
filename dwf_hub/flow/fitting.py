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

from ..codec import CodecCollection, WeightCodec
from ..compression.normalizations import NORMALIZATIONS
from ..compression.pca_solvers import PCA_SOLVERS, resolve_pca_solver
from ..configs import FlowConfig
from ..errors import DWFError
from ..evaluation.connectivity import measure_connectivity
from ..matching import canonicalize
from ..pipeline import DeepWeightFlowPipeline
from ..provenance import Connectivity, Selection
from ..zoo.recipes import Recipe
from ..zoo.weight_zoo import WeightZoo, open_zoo
from .scheduler import FlowODEScheduler
from .training import FlowConditions, flow_fingerprint, train_flow

logger = logging.getLogger(__name__)


@dataclass
class FitResult:
    pipeline: DeepWeightFlowPipeline
    training_zoo: WeightZoo | None
    """The zoo the flow was trained on (canonical unless canonicalization was off; ``None`` for a conditional
    flow over several architectures: see ``condition_zoos``)."""
    heldout_zoo: WeightZoo | None
    losses: list[float]
    timings: dict[str, float] = field(default_factory=dict)
    condition_zoos: dict[str, tuple[WeightZoo, WeightZoo | None]] = field(default_factory=dict)
    """A conditional flow's ``label -> (fitted members, held-out members)``."""
    connectivity: Connectivity | None = None
    """What midpoints of the aligned fitted members score (``connectivity_pairs``; ``None``: not measured)."""
    selection: Selection | None = None
    """Which snapshot of the flow's training was kept, and why (``select = "auto"``; ``None``: not selected)."""


def default_flow_config(zoo: WeightZoo, preset: str = "dwf", **overrides: Any) -> FlowConfig:
    """The zoo recipe's flow settings for ``preset`` (``dwf`` or ``paper``) with flat ``overrides`` applied."""
    recipe = zoo.recipe or Recipe("custom", zoo.arch.config, {})
    return recipe.flow_config(preset, **overrides)


def budget_for(cfg: FlowConfig, fitted: int) -> FlowConfig:
    """``cfg`` with at least ``iterations_per_member`` flow iterations per fitted member (what the pipeline then
    records). Why: the digits MLP recipe's 8,000 iterations (tuned on 80 members) underfit 240 (validation: 89.0 %,
    8 % failed, vs 95.8 %, 1 % failed at 24,000), while the selection keeps a long budget from memorizing few."""
    t = cfg.training
    if t.iterations_per_member * fitted <= t.iterations:
        return cfg
    logger.info("flow budget: %d iterations for %d fitted members (%d each; the config gives %d)",
                t.iterations_per_member * fitted, fitted, t.iterations_per_member, t.iterations)  # fmt: skip
    return cfg.replace(iterations=t.iterations_per_member * fitted)


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
    if not c.canonicalize or (record and record.aligned_to(c.reference, c.permute_residual)):
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
    from ..codec import BASIS_SHARD_BYTES

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


MAX_TARGET_MAP = 1 << 24  # entries (64 MB): a raw-weight codec's latent is every weight


def fit_unit_targets(codec: WeightCodec, zoos: list[WeightZoo], latents: Tensor, mode: str = "auto") -> bool:
    """Give ``codec`` the map from its latent to every hidden unit's pre-activation mean and std on calibration
    data (``unit_recalibration``), fitted on the members of ``zoos`` (each on its own recipe's data; a
    conditional flow's zoos) and their ``latents [N, K]`` (in that order). ``mode``: ``auto`` (where it
    applies: an architecture with ``unit_layers`` recalibrated by default, a pca/whiten codec, recipes), ``on`` (also for other codecs whose
    map is at most ``MAX_TARGET_MAP`` entries; refused where it does not apply) or ``off``.
    Returns whether the map was attached."""
    from ..codec import fit_target_map
    from ..generation.postprocess import recipe_calibration_data
    from ..generation.unit_recalibration import supports, unit_statistics

    if mode == "off":
        return False
    arch = zoos[0].arch
    biases = {f"{name}.bias" for name in arch.unit_layers}
    size = (codec.latent_dim + 1) * 2 * sum(p.numel for p in arch.layout if p.key in biases)
    missing = [
        why
        for why, ok in (
            (f"{arch.name} networks (no unit_layers: it has BatchNorm)", supports(arch)),
            (
                f"{arch.name} networks under auto (opt in with 'on')",
                mode == "on" or arch.units_recalibrated_by_default,
            ),
            (
                f"a {codec.config.normalization!r} codec (auto: pca/whiten; on: also any codec whose map "
                f"[latent + 1, 2 x units] has at most {MAX_TARGET_MAP:,} entries, here {size:,})",
                codec.normalization.pca or (mode == "on" and size <= MAX_TARGET_MAP),
            ),
            ("no recipe (no calibration data)", all(z.recipe is not None for z in zoos)),
        )
        if not ok
    ]
    if missing:
        if mode == "on":
            raise DWFError(f"unit_recalibration='on' does not apply: {'; '.join(missing)}")
        return False
    stats = [unit_statistics(arch, z.to_matrix(), recipe_calibration_data(arch, z.recipe)) for z in zoos]
    codec.set_unit_targets(fit_target_map(latents, torch.cat(stats)))
    return True


def _source_std(cfg: FlowConfig, data: Tensor) -> float:
    """The Gaussian source's std: the training data's (``matched``) or the configured value."""
    return float(data.std()) if cfg.training.source_std == "matched" else float(cfg.training.source_std)


def _scheduler(cfg: FlowConfig, source_std: float) -> FlowODEScheduler:
    s = cfg.sampling
    return FlowODEScheduler(
        solver=s.solver,
        num_inference_steps=s.num_inference_steps,
        source_std=source_std,
        temperature=s.temperature,
    )


def fit_pipeline(
    zoo: WeightZoo | str | os.PathLike,
    config: FlowConfig | None = None,
    checkpoint_dir: str | Path | None = None,
    progress: bool = True,
) -> FitResult:
    """Train a flow on ``zoo`` (defaults: the zoo recipe's ``[flow]`` table); with ``select = "auto"`` (the default)
    the snapshot of its training that ``selection`` keeps."""
    zoo = open_zoo(zoo)
    cfg = config or default_flow_config(zoo)
    _check_sizes(zoo, cfg)
    t0 = time.perf_counter()
    training, heldout = _training_zoo(zoo, cfg, progress).split_holdout(cfg.training.holdout)
    timings = {"canonicalize": time.perf_counter() - t0}
    cfg = budget_for(cfg, len(training))
    codec, latents = fit_codec(training, cfg, progress, checkpoint_dir)
    units = fit_unit_targets(codec, [training], latents, cfg.codec.unit_recalibration)
    timings["codec"] = time.perf_counter() - t0 - timings["canonicalize"]
    connectivity = _connectivity(training, cfg, units)
    if connectivity:
        timings["connectivity"] = time.perf_counter() - t0 - timings["canonicalize"] - timings["codec"]
    source_std = _source_std(cfg, latents)
    scheduler = _scheduler(cfg, source_std)
    canonical = training.canonical if cfg.canonicalization.canonicalize else None

    def make_pipeline(velocity) -> DeepWeightFlowPipeline:
        pipe = DeepWeightFlowPipeline(
            velocity=velocity, codec=codec, scheduler=scheduler, recipe=zoo.recipe and zoo.recipe.to_dict(),
            canonicalization=canonical and canonical.to_dict(), flow_config=cfg.to_dict(),
        )  # fmt: skip
        pipe.set_progress_bar_config(disable=True)
        return pipe

    t0 = time.perf_counter()  # flow training, with the selection's scoring of its snapshots
    fingerprint = flow_fingerprint(latents, cfg, source_std)
    selector = _selector(make_pipeline, {"": (training, heldout)}, cfg, fingerprint, checkpoint_dir)
    velocity, losses = train_flow(
        latents, cfg, source_std, checkpoint_dir=checkpoint_dir, progress=progress, snapshots=selector
    )
    selection = _keep_selected(selector, velocity)
    timings["flow_training"] = time.perf_counter() - t0
    pipe = make_pipeline(velocity)
    if selection is not None:
        pipe.card_info["selection"] = selection.to_dict()
    if connectivity:
        pipe.card_info["connectivity"] = connectivity.to_dict()
    if training.recipe is not None:
        from ..generation.quality_check import QualityCheck

        check = QualityCheck.fit(training)
        pipe.card_info["quality_check"] = check.to_dict()
        logger.info("quality check: %s", check.describe())
    logger.debug("fitted on %d networks: final loss %.4g, timings %s", len(training), losses[-1], timings)
    return FitResult(pipe, training, heldout, losses, timings, connectivity=connectivity, selection=selection)


def _selector(make_pipeline, zoos: dict[str, tuple[WeightZoo, WeightZoo | None]], cfg: FlowConfig,
              fingerprint: str, checkpoint_dir: str | Path | None):  # fmt: skip
    """The ``SnapshotSelector`` of a fit with ``select = "auto"`` over ``zoos`` (per condition, fitted and held-out
    members; ``None``: off, or it cannot apply, which is logged)."""
    from .selection import SnapshotSelector, applies

    if cfg.training.select == "off":
        return None
    why = applies([fitted for fitted, _ in zoos.values()])
    if why:
        logger.info("flow selection skipped: %s; the flow is kept at the end of training", why)
        return None
    folder = Path(checkpoint_dir) / "snapshots" if checkpoint_dir is not None else None
    return SnapshotSelector(
        make_pipeline, zoos, cfg.training.iterations, cfg.training.seed, fingerprint, folder
    )


def _keep_selected(selector, velocity: torch.nn.Module) -> Selection | None:
    """Load the snapshot ``selector`` keeps into ``velocity``; its record (``None`` without a selector)."""
    if selector is None:
        return None
    state, selection = selector.select()
    velocity.load_state_dict(state)
    return selection


def _connectivity(training: WeightZoo, cfg: FlowConfig, units: bool) -> Connectivity | None:
    """``measure_connectivity`` on the canonical fitted members, logged (a warning when they are not connected);
    ``None`` when ``connectivity_pairs`` is 0 or the zoo is not canonical or has no recipe (no data)."""
    pairs = cfg.canonicalization.connectivity_pairs
    if not pairs or training.recipe is None or not training.is_canonical or len(training) < 2:
        return None
    found = measure_connectivity(training, pairs, cfg.training.seed, recalibrate_units=units)
    (logger.info if found.connected else logger.warning)("connectivity: %s", found.describe())
    return found


def fit_conditional(
    zoos: list[WeightZoo | str | os.PathLike],
    labels: list[str],
    config: FlowConfig | None = None,
    checkpoint_dir: str | Path | None = None,
    progress: bool = True,
) -> FitResult:
    """One flow for several zoos, conditioned on a label per zoo (paper Appendix K).

    Every zoo keeps its last ``holdout`` members out and is aligned to its own member ``reference``. Zoos of one
    architecture share one codec (PCA over all of them; its reference, for ``pipe.canonicalize``, is the first
    zoo's); zoos of different architectures (experimental; a PCA codec is required) each get their own codec, the
    flow running over a latent as wide as the widest. One velocity model with a label embedding works on each
    condition's own whitened coordinates (``condition_coordinates``; the maps back to the codec latent live in the
    velocity model), each condition starting from its own source mean. ``pipe(condition=label)`` generates for
    that zoo. Defaults: the first zoo recipe's ``[flow]``. ``condition_zoos`` holds every zoo's fitted and held-out
    members; for one architecture ``training_zoo`` / ``heldout_zoo`` hold them all, each record tagged with its
    ``condition`` (``None`` across architectures). With ``select = "auto"`` the flow's training length is chosen
    on every zoo at once (``selection``; one architecture only).
    """
    opened = [open_zoo(z) for z in zoos]
    cfg = config or default_flow_config(opened[0])
    multi = _check_collection(opened, labels, cfg)
    for zoo in opened:
        _check_sizes(zoo, cfg)
    t0 = time.perf_counter()
    # each zoo aligned to its own reference member: a foreign reference aligns a zoo of another task loosely
    parts = [_training_zoo(zoo, cfg, progress).split_holdout(cfg.training.holdout) for zoo in opened]
    timings = {"canonicalize": time.perf_counter() - t0}
    cfg = budget_for(cfg, sum(len(p[0]) for p in parts))
    codecs, ids, (offsets, maps, coords), training, heldout = _collection_latents(
        parts, labels, cfg, multi, progress, checkpoint_dir
    )
    timings["codec"] = time.perf_counter() - t0 - timings["canonicalize"]
    source_std = _source_std(cfg, coords)
    sources = SOURCE_SEPARATION * source_std * _directions(len(labels), coords.shape[1])
    flow_conditions = FlowConditions(ids, len(labels), maps.shape[2], sources)
    make_pipeline = _conditional_pipeline(
        zoos, opened, labels, cfg, codecs, multi, parts, (offsets, maps, sources), source_std
    )
    by_label = dict(zip(labels, parts, strict=True))
    fingerprint = flow_fingerprint(coords, cfg, source_std, flow_conditions)
    # several architectures' zoos are not scored against one another's members
    selector = None if multi else _selector(make_pipeline, by_label, cfg, fingerprint, checkpoint_dir)
    t0 = time.perf_counter()
    velocity, losses = train_flow(
        coords, cfg, source_std, checkpoint_dir, progress, conditions=flow_conditions, snapshots=selector
    )
    selection = _keep_selected(selector, velocity)
    timings["flow_training"] = time.perf_counter() - t0
    pipe = make_pipeline(velocity)
    if selection is not None:
        pipe.card_info["selection"] = selection.to_dict()
    return FitResult(pipe, training, heldout, losses, timings, condition_zoos=by_label, selection=selection)


def _conditional_pipeline(zoos, opened, labels, cfg, codecs, multi, parts, label_buffers, source_std):
    """``make_pipeline(velocity)`` for a conditional fit: the velocity model given its label offsets, maps and
    sources (``label_buffers``), in a pipeline that records the conditions."""
    canonical = parts[0][0].canonical if cfg.canonicalization.canonicalize else None
    conditions = {
        "labels": list(labels),
        "zoos": [_zoo_name(z, o) for z, o in zip(zoos, opened, strict=True)],
        "recipes": [z.recipe and z.recipe.to_dict() for z in opened],
    }
    scheduler = _scheduler(cfg, source_std)

    def make_pipeline(velocity) -> DeepWeightFlowPipeline:
        for name, value in zip(("label_offsets", "label_maps", "label_sources"), label_buffers, strict=True):
            getattr(velocity, name).copy_(value)
        pipe = DeepWeightFlowPipeline(
            velocity=velocity, codec=codecs[0], scheduler=scheduler,
            canonicalization=canonical and canonical.to_dict(), flow_config=cfg.to_dict(), conditions=conditions,
            condition_codecs=CodecCollection.of(codecs[1:]) if multi else None,
        )  # fmt: skip
        pipe.set_progress_bar_config(disable=True)
        return pipe

    return make_pipeline


def _collection_latents(
    parts, labels: list[str], cfg: FlowConfig, multi: bool, progress: bool, checkpoint_dir
):
    """Codecs, member labels ``[N]``, ``(offsets, maps, coordinates)`` and, for one architecture, the tagged
    fitted / held-out zoos of a conditional fit's ``parts`` (per zoo: fitted and held-out members)."""
    mode = cfg.codec.unit_recalibration
    if multi:  # each zoo its own codec
        fitted = [fit_codec(p[0], cfg, progress) for p in parts]
        for (codec, latents), p in zip(fitted, parts, strict=True):
            fit_unit_targets(codec, [p[0]], latents, mode)
        ids = torch.cat([torch.full((len(p[0]),), i) for i, p in enumerate(parts)])
        return [f[0] for f in fitted], ids, _stacked_coordinates([f[1] for f in fitted]), None, None
    training = _tagged([p[0] for p in parts], labels)
    heldout = _tagged([p[1] for p in parts], labels) if cfg.training.holdout else None
    codec, latents = fit_codec(training, cfg, progress, checkpoint_dir)
    fit_unit_targets(codec, [p[0] for p in parts], latents, mode)  # one map, each zoo on its own data
    ids = torch.tensor([labels.index(r["condition"]) for r in training.records])
    return [codec], ids, condition_coordinates(latents, ids, len(labels)), training, heldout


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


def _stacked_coordinates(latents: list[Tensor]) -> tuple[Tensor, Tensor, Tensor]:
    """``condition_coordinates`` for conditions with their own codecs (latents ``[N_l, K_l]``, one per
    condition, in label order): ``(offsets [L, K], maps [L, R, K], coordinates [sum N_l, R])`` padded to the
    largest ``K`` and ``R``; condition ``l``'s codec decodes the first ``K_l`` latent columns."""
    parts = [condition_coordinates(z, torch.zeros(len(z), dtype=torch.long), 1) for z in latents]
    k, r = max(p[1].shape[2] for p in parts), max(p[1].shape[1] for p in parts)
    offsets, maps = torch.zeros(len(parts), k), torch.zeros(len(parts), r, k)
    coords = torch.zeros(sum(len(z) for z in latents), r)
    row = 0
    for label, (o, m, c) in enumerate(parts):
        offsets[label, : o.shape[1]] = o[0]
        maps[label, : m.shape[1], : m.shape[2]] = m[0]
        coords[row : row + len(c), : c.shape[1]] = c
        row += len(c)
    return offsets, maps, coords


def _check_collection(zoos: list[WeightZoo], labels: list[str], cfg: FlowConfig) -> bool:
    """One distinct, non-empty label per zoo; ``True`` when the zoos' architectures differ (then the codec must
    be a PCA one: each zoo gets its own, the flow works on a common latent size)."""
    if len(zoos) != len(labels):
        raise DWFError(f"{len(zoos)} zoos but {len(labels)} labels: give one label per zoo")
    if len(set(labels)) != len(labels) or not all(isinstance(x, str) and x.strip() for x in labels):
        raise DWFError(f"labels must be distinct non-empty names, got {labels}")
    other = next(((z, x) for z, x in zip(zoos, labels, strict=True) if z.arch != zoos[0].arch), None)
    if other and not NORMALIZATIONS[cfg.codec.normalization].pca:
        raise DWFError(
            f"zoo {other[1]!r} is {other[0].arch!r}, zoo {labels[0]!r} is {zoos[0].arch!r}: zoos of different "
            f"architectures need a PCA latent (normalization 'whiten' or 'pca', got {cfg.codec.normalization!r})"
        )
    return other is not None


def _tagged(zoos: list[WeightZoo], labels: list[str]) -> WeightZoo:
    """All members of ``zoos`` as one zoo (the first zoo's provenance), each record tagged with its zoo's
    ``condition`` label."""
    return WeightZoo.concatenate(zoos, condition=labels)


def _zoo_name(given: WeightZoo | str | os.PathLike, zoo: WeightZoo) -> str:
    """What a conditional pipeline records of a training zoo: the Hub repo id or folder it came from."""
    if not isinstance(given, WeightZoo):  # a Hub repo id as given; a local folder by its name only
        return Path(given).name if Path(given).is_dir() else str(given)
    return zoo.recipe.name if zoo.recipe else "in-memory zoo"
