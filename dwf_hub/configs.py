"""User-settable configurations: zoo training and flow fitting. Unknown keys are errors, never ignored."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, TypeVar

from .errors import DWFError

T = TypeVar("T")

OPTIMIZERS = ("adam", "adamw", "sgd")
LR_SCHEDULES = ("none", "cosine", "warmup_cosine")
INIT_SCHEMES = ("default", "kaiming", "kaiming_zero_bias", "xavier", "normal", "uniform")
NORMALIZATIONS = ("none", "center", "standardize", "pca", "whiten")
SOLVERS = ("euler", "heun", "rk4")


def build_dataclass(cls: type[T], data: dict[str, Any] | None, source: str) -> T:
    """``cls(**data)`` that names ``source`` and the offending key on unknown keys or bad values."""
    data = dict(data or {})
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    extra = sorted(data.keys() - known)
    if extra:
        raise DWFError(f"{source}: unknown key(s) {extra}; known: {sorted(known)}")
    for k, v in data.items():  # TOML/JSON give lists where tuples are declared
        if isinstance(v, list) and k in ("betas", "beta"):
            data[k] = tuple(v)
    return cls(**data)


def _check(cond: bool, source: str, msg: str) -> None:
    if not cond:
        raise DWFError(f"{source}: {msg}")


def _choice(value: Any, allowed: tuple[str, ...], name: str, source: str) -> None:
    _check(value in allowed, source, f"{name}={value!r} is not one of {', '.join(allowed)}")


@dataclass
class TrainingConfig:
    """How each zoo member is trained (paper Table 12)."""

    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    batch_size: int = 64
    epochs: int = 5
    schedule: str = "none"
    warmup_epochs: int = 0
    init: str | list[str] = "kaiming"
    """One scheme for every member, or a list cycled over members (member i gets ``init[i % len]``)."""
    checkpoint: str = "last"
    """``last`` (paper) or ``best_val``: the epoch with the best validation accuracy (never the test split)."""
    chunk_size: int = 100
    """How many members train together in one vectorized pass."""
    init_from: str | None = None
    """A pretrained ``transformers`` checkpoint (folder or Hub repo id) every member starts from; what it
    lacks (the task head) is initialised from the member's seed."""
    augment: str = "none"
    """``crop_flip``: random crop after ``crop_padding`` zero padding and random horizontal flip (images)."""
    crop_padding: int = 4

    def __post_init__(self) -> None:
        src = "training config"
        _choice(self.optimizer, OPTIMIZERS, "optimizer", src)
        _choice(self.schedule, LR_SCHEDULES, "schedule", src)
        _choice(self.checkpoint, ("last", "best_val"), "checkpoint", src)
        _choice(self.augment, ("none", "crop_flip"), "augment", src)
        _check(self.crop_padding >= 0, src, f"crop_padding must be >= 0, got {self.crop_padding}")
        for scheme in self.init_schemes:
            _choice(scheme, INIT_SCHEMES, "init", src)
        _check(self.lr > 0, src, f"lr must be > 0, got {self.lr}")
        _check(self.batch_size >= 1, src, f"batch_size must be >= 1, got {self.batch_size}")
        _check(self.epochs >= 1, src, f"epochs must be >= 1, got {self.epochs}")
        _check(self.chunk_size >= 1, src, f"chunk_size must be >= 1, got {self.chunk_size}")

    @property
    def init_schemes(self) -> list[str]:
        return [self.init] if isinstance(self.init, str) else list(self.init)

    def init_for(self, member: int) -> str:
        schemes = self.init_schemes
        return schemes[member % len(schemes)]


# The authors' flow setting (paper Table 14, REFERENCE_NOTES); recipes add their per-architecture values
# (time embedding, dropout, width) in a ``[paper_flow]`` table.
PAPER_FLOW: dict[str, Any] = {
    "normalization": "none",
    "iterations": 30000,
    "batch_size": 8,
    "lr": 5e-4,
    "min_lr": 1e-6,
    "weight_decay": 1e-5,
    "dropout": 0.1,
    "source_std": 0.01,
    "solver": "rk4",
    "num_inference_steps": 99,
}
FLOW_PRESETS = ("dwf", "paper")


@dataclass
class CalibrationConfig:
    """How generated BatchNorm networks are recalibrated (recipe table ``[calibration]``).

    ``data``: a dataset config like the recipe's ``[data]`` (default: the recipe's own); inputs come
    from its ``split`` — the training split, never the test split — ``num_batches`` of ``batch_size``.
    """

    data: dict[str, Any] | None = None
    split: str = "train"
    num_batches: int = 8
    batch_size: int = 128

    def __post_init__(self) -> None:
        src = "calibration config"
        _check(
            self.split == "train",
            src,
            f"split must be 'train' (statistics of the training data), got {self.split!r}",
        )
        _check(self.num_batches >= 1, src, f"num_batches must be >= 1, got {self.num_batches}")
        _check(self.batch_size >= 2, src, f"batch_size must be >= 2, got {self.batch_size}")


@dataclass
class FlowConfig:
    """Canonicalization, codec, velocity model, flow training and sampling.

    Defaults are ours, chosen by ``benchmarks/bench_mlp.py`` for a 2-core CPU budget; the authors' setting
    is the ``paper`` preset (``PAPER_FLOW`` plus the recipe's ``[paper_flow]`` table).
    """

    canonicalize: bool = True
    reference: int = 0
    holdout: int = 0
    """The last ``holdout`` zoo members are kept out of flow training: unseen networks for the held-out
    ratio (``dwf_hub.novelty``) and for choosing settings without the test split."""
    matching_iterations: int | None = None
    """Sweeps of the matching (default: 100 for Git Re-Basin, 10 for TransFusion)."""
    permute_residual: bool = True
    """Transformers: also permute the residual stream (exact; the authors' code leaves it fixed)."""
    normalization: str = "whiten"
    """``whiten``: PCA-whitened coordinates (the untrained flow samples the zoo's Gaussian fit); ``pca``:
    principal-component coordinates (the paper's PCA); ``standardize``: per-weight z-scores; ``center``;
    ``none``: raw weights (the authors' code for small networks)."""
    n_components: int | float | None = None
    """With ``pca``/``whiten``: components kept, as a count or a fraction of the total variance
    (default: every component with non-zero variance)."""
    pca_solver: str = "auto"
    """``exact`` (Gram matrix, whole zoo in memory), ``dual`` (Gram matrix streamed over column blocks of
    the checkpoints, randomized eigendecomposition), ``incremental`` (scikit-learn ``IncrementalPCA``,
    ``pca_batch_size`` networks at a time) or ``auto`` (exact if the zoo fits in memory, else dual)."""
    pca_batch_size: int = 32
    hidden_dim: int = 256
    time_embed_dim: int = 64
    dropout: float = 0.0
    iterations: int = 2000
    batch_size: int = 64
    lr: float = 3e-3
    min_lr: float = 1e-6
    weight_decay: float = 1e-5
    betas: tuple[float, float] = (0.9, 0.95)
    source_std: float | str = "matched"
    """Std of the Gaussian source; ``matched`` = std of the (normalised) training weights."""
    coupling: str = "independent"
    """How source and training samples are paired in a batch: ``independent`` (the paper) or ``ot``
    (minibatch optimal transport: an exact assignment minimising squared distances, Tong et al., 2023)."""
    ema_decay: float = 0.0
    """Exponential moving average of the velocity weights (e.g. 0.999; 0 = off): the EMA is what is saved."""
    time_distribution: str = "uniform"
    beta: tuple[float, float] = (2.0, 5.0)
    sigma: float = 0.001
    """Std of the Gaussian jitter added to points on the straight path."""
    seed: int = 0
    mixed_precision: str = "no"
    checkpoint_every: int = 500
    solver: str = "rk4"
    num_inference_steps: int = 10

    def __post_init__(self) -> None:
        src = "flow config"
        _choice(self.normalization, NORMALIZATIONS, "normalization", src)
        _choice(self.time_distribution, ("uniform", "beta"), "time_distribution", src)
        _choice(self.coupling, ("independent", "ot"), "coupling", src)
        _check(0 <= self.ema_decay < 1, src, f"ema_decay must be in [0, 1), got {self.ema_decay}")
        _choice(self.solver, SOLVERS, "solver", src)
        _choice(self.pca_solver, ("auto", "exact", "dual", "incremental"), "pca_solver", src)
        _choice(self.mixed_precision, ("no", "fp16", "bf16"), "mixed_precision", src)
        _check(
            self.source_std == "matched"
            or (isinstance(self.source_std, (int, float)) and self.source_std > 0),
            src,
            f"source_std must be 'matched' or a positive number, got {self.source_std!r}",
        )
        for name in ("hidden_dim", "time_embed_dim", "iterations", "batch_size", "num_inference_steps",
                     "pca_batch_size"):  # fmt: skip
            _check(int(getattr(self, name)) >= 1, src, f"{name} must be >= 1, got {getattr(self, name)}")
        _check(self.hidden_dim >= 2, src, "hidden_dim must be >= 2")
        _check(self.holdout >= 0, src, f"holdout must be >= 0, got {self.holdout}")
        _check(0 <= self.dropout < 1, src, f"dropout must be in [0, 1), got {self.dropout}")
        _check(self.sigma >= 0, src, f"sigma must be >= 0, got {self.sigma}")
        _check(self.lr > 0, src, f"lr must be > 0, got {self.lr}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
