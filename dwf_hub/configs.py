"""User-settable configurations: zoo training, calibration and flow fitting (one dataclass per phase).

Every field declares its help, its allowed range or choices (from the strategy registries) and its
size limit in ``option(...)``; ``Config.__post_init__`` checks types, finiteness and those bounds, so a
bad value is refused before any work starts, naming the key. Unknown keys are errors, never ignored.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from .compression.normalizations import NORMALIZATIONS
from .compression.pca_solvers import PCA_SOLVERS
from .errors import DWFError
from .flow.solvers import SOLVERS
from .registry import Registry
from .zoo.init_schemes import INIT_SCHEMES
from .zoo.optim import LR_SCHEDULES, OPTIMIZERS

T = TypeVar("T")
C = TypeVar("C", bound="Config")


def option(default: Any = dataclasses.MISSING, help: str = "", *, low: float | None = None,
           high: float | None = None, choices: Registry | tuple[str, ...] | None = None,
           open_low: bool = False, factory: Any = dataclasses.MISSING) -> Any:  # fmt: skip
    """A dataclass field with its ``help`` and allowed values: ``[low, high]`` (``(low, high]`` when
    ``open_low``) or ``choices``."""
    meta = {"help": help, "low": low, "high": high, "choices": choices, "open_low": open_low}
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def _type_ok(value: Any, hint: Any) -> bool:
    """``isinstance`` against a (resolved) annotation: unions, ``list[str]``, ``tuple[float, float]``;
    ints pass as floats, bools never pass as numbers."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return True
    if hint is type(None):
        return value is None
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return any(_type_ok(value, a) for a in args)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(_type_ok(v, a) for v, a in zip(value, args))
        return all(_type_ok(v, args[0]) for v in value) if args else True
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    if isinstance(value, bool):
        return hint is bool
    if hint is float:
        return isinstance(value, (int, float))
    return isinstance(value, hint)


def _type_name(hint: Any) -> str:
    return str(hint).replace("typing.", "").replace("<class '", "").replace("'>", "")


@dataclass
class Config:
    """Base of every config: type, finiteness and bound checks from the fields' declarations."""

    section: ClassVar[str] = "config"

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, list) and typing.get_origin(hints[f.name]) is tuple:
                value = tuple(value)  # TOML and JSON give lists where tuples are declared
                setattr(self, f.name, value)
            self._check_value(f, value, hints[f.name])
        self.validate()

    def _check_value(self, f: dataclasses.Field, value: Any, hint: Any) -> None:
        where = f"{self.section}: {f.name}"
        if not _type_ok(value, hint):
            raise DWFError(f"{where}={value!r} has type {type(value).__name__}, expected {_type_name(hint)}")
        values = value if isinstance(value, (list, tuple)) else [value]
        meta = f.metadata
        for v in values:
            if isinstance(v, float) and not math.isfinite(v):
                raise DWFError(f"{where}={value!r} must be finite")
            if meta.get("choices") is not None and isinstance(v, str) and v not in meta["choices"]:
                raise DWFError(f"{where}={v!r} is not one of {', '.join(meta['choices'])}")
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                low, high = meta.get("low"), meta.get("high")
                if low is not None and (v <= low if meta.get("open_low") else v < low):
                    raise DWFError(f"{where} must be {'>' if meta.get('open_low') else '>='} {low}, got {v}")
                if high is not None and v > high:
                    raise DWFError(f"{where} must be <= {high}, got {v}")

    def validate(self) -> None:
        """Checks across fields (subclasses)."""

    def check(self, cond: bool, msg: str) -> None:
        if not cond:
            raise DWFError(f"{self.section}: {msg}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def build_dataclass(cls: type[T], data: dict[str, Any] | None, source: str) -> T:
    """``cls(**data)`` that names ``source`` and the offending key on unknown keys or bad values."""
    if data is not None and not isinstance(data, dict):
        raise DWFError(f"{source}: expected a table of settings, got {type(data).__name__}")
    data = dict(data or {})
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    extra = sorted(data.keys() - known)
    if extra:
        raise DWFError(f"{source}: unknown key(s) {extra}; known: {sorted(known)}")
    try:
        return cls(**data)
    except DWFError as e:
        raise DWFError(f"{source}: {e}") from e


@dataclass
class TrainingConfig(Config):
    """How each zoo member is trained (paper Table 12)."""

    section: ClassVar[str] = "training config"
    optimizer: str = option("adam", "adam, adamw or sgd", choices=OPTIMIZERS)
    lr: float = option(1e-3, "learning rate", low=0, open_low=True, high=10)
    weight_decay: float = option(0.0, "weight decay", low=0, high=10)
    momentum: float = option(0.9, "SGD momentum", low=0, high=1)
    batch_size: int = option(64, "mini-batch size", low=1, high=1 << 20)
    epochs: int = option(5, "epochs per member", low=1, high=100_000)
    schedule: str = option("none", "learning-rate schedule", choices=LR_SCHEDULES)
    warmup_epochs: int = option(0, "warmup epochs (warmup_cosine)", low=0, high=100_000)
    init: str | list[str] = option(
        "kaiming", "one scheme for every member, or a list cycled over members", choices=INIT_SCHEMES
    )
    checkpoint: str = option(
        "last",
        "last (paper) or best_val: the epoch with the best validation score",
        choices=("last", "best_val"),
    )
    chunk_size: int = option(100, "members trained together in one vectorized pass", low=1, high=100_000)
    init_from: str | None = option(
        None, "a pretrained transformers checkpoint (folder or Hub repo id) every member starts from"
    )
    augment: str = option(
        "none", "crop_flip: random crop and horizontal flip (images)", choices=("none", "crop_flip")
    )
    crop_padding: int = option(4, "zero padding before the random crop", low=0, high=1024)
    start: str = option(
        "auto",
        "independent: each member from its own seed's initialisation; spawned: every member continues one parent "
        "network trained spawn_epochs epochs from spawn_seed, then diverges by its own data order (Frankle et al. "
        "2020: such children are linearly connected); auto: spawned for one init scheme without init_from, else "
        "independent",
        choices=("auto", "independent", "spawned"),
    )
    spawn_epochs: int | None = option(
        None, "spawned: the parent's epochs before members diverge (0: a shared initialisation; default: a third)",
        low=0, high=100_000,
    )  # fmt: skip
    spawn_seed: int = option(10_000, "spawned: the parent's seed", low=0, high=2**62)

    def validate(self) -> None:
        self.check(bool(self.init_schemes), "init must name at least one scheme")
        if self.start == "auto":  # resolved here, so a zoo records what its members did
            self.start = (
                "spawned" if len(self.init_schemes) == 1 and self.init_from is None else "independent"
            )
        if self.spawn_epochs is None:
            # A third: the digits ViT needs 10 of 30 epochs to give connected children (2 of 30 leaves aligned
            # midpoints at 54 %), MLPs and CNNs 2-3 of 30 (benchmarks/HISTORY.md); more shared epochs only
            # connect more, at the cost of the members' diversity.
            self.spawn_epochs = self.epochs // 3 if self.start == "spawned" else 0
        self.check(self.spawn_epochs < self.epochs, "spawn_epochs must be fewer than epochs")
        self.check(self.start == "spawned" or self.spawn_epochs == 0, 'spawn_epochs needs start = "spawned"')

    @property
    def init_schemes(self) -> list[str]:
        return [self.init] if isinstance(self.init, str) else list(self.init)

    def init_for(self, member: int) -> str:
        schemes = self.init_schemes
        return schemes[member % len(schemes)]


@dataclass
class CalibrationConfig(Config):
    """How generated BatchNorm networks are recalibrated (recipe table ``[calibration]``): ``num_batches``
    of ``batch_size`` inputs from ``data`` (default: the recipe's dataset), training split only."""

    section: ClassVar[str] = "calibration config"
    data: dict[str, Any] | None = option(None, "a dataset config like the recipe's [data]")
    split: str = option("train", "statistics of the training data: train only")
    num_batches: int = option(8, "batches of inputs", low=1, high=100_000)
    batch_size: int = option(128, "inputs per batch", low=2, high=1 << 20)

    def validate(self) -> None:
        self.check(
            self.split == "train",
            f"split must be 'train' (statistics of the training data), got {self.split!r}",
        )


# -- flow fitting: one config per phase ------------------------------------------------------------
MAX_INFERENCE_STEPS = 100_000
MAX_TEMPERATURE = 10.0
MAX_LATENT = 1 << 20  # widths and dimensions beyond this would allocate tens of GB in the velocity model


@dataclass
class CanonicalizationConfig(Config):
    """Which zoo member every other is aligned to, and how (Git Re-Basin / TransFusion)."""

    section: ClassVar[str] = "flow config [canonicalization]"
    canonicalize: bool = option(True, "align the zoo to one reference before fitting")
    reference: int = option(0, "index of the reference member", low=0)
    matching_iterations: int | None = option(
        None, "sweeps of the matching (default: 100 Git Re-Basin, 10 TransFusion)", low=1, high=100_000
    )
    permute_residual: bool = option(True, "transformers: also permute the residual stream (exact)")
    connectivity_pairs: int = option(
        16,
        "midpoints of aligned members scored at fit time on the validation split (0: skip)",
        low=0,
        high=100_000,
    )


@dataclass
class CodecConfig(Config):
    """Flat weights <-> the flow's coordinates."""

    section: ClassVar[str] = "flow config [codec]"
    normalization: str = option(
        "whiten",
        "whiten: PCA-whitened coordinates; pca: principal components (the paper); standardize: per-weight "
        "z-scores; center; none: raw weights",
        choices=NORMALIZATIONS,
    )
    n_components: int | float | None = option(
        None, "pca/whiten: components kept, a count or a fraction of the variance (default: all)", low=0,
        open_low=True, high=MAX_LATENT,
    )  # fmt: skip
    pca_solver: str = option(
        "auto",
        "exact (in memory), dual (streamed Gram), incremental (scikit-learn) or auto",
        choices=PCA_SOLVERS,
    )
    pca_batch_size: int = option(32, "networks per batch of the incremental PCA", low=1, high=1 << 20)
    unit_recalibration: str = option(
        "auto",
        "reset generated networks' hidden units to the pre-activation mean/std the latent predicts (REPAIR); "
        "auto: for MLPs and SmallCNNs with a pca/whiten codec and a recipe; on: required (also ViTs' fc1 units, and "
        "raw-weight codecs of small networks); off: never",
        choices=("auto", "on", "off"),
    )

    def validate(self) -> None:
        if isinstance(self.n_components, float):
            self.check(
                self.n_components <= 1, f"n_components as a fraction must be <= 1, got {self.n_components}"
            )


@dataclass
class VelocityConfig(Config):
    """The velocity MLP (paper Table 14)."""

    section: ClassVar[str] = "flow config [velocity]"
    hidden_dim: int = option(256, "width of the velocity MLP", low=2, high=MAX_LATENT)
    time_embed_dim: int = option(64, "size of the time embedding", low=1, high=MAX_LATENT)
    dropout: float = option(0.0, "dropout of the velocity MLP", low=0, high=0.99)


@dataclass
class FlowTrainingConfig(Config):
    """Flow-matching training; everything here but ``checkpoint_every`` changes the trained weights."""

    section: ClassVar[str] = "flow config [training]"
    holdout: int = option(0, "the last N zoo members are kept out of fitting (unseen networks)", low=0)
    iterations: int = option(2000, "optimizer steps", low=1, high=100_000_000)
    iterations_per_member: int = option(
        0,
        "at least this many optimizer steps per fitted member (0: iterations as given): a larger zoo needs a longer "
        "flow, and the selection keeps it from memorizing a smaller one",
        low=0,
        high=1_000_000,
    )
    batch_size: int = option(64, "networks per step", low=1, high=1 << 20)
    lr: float = option(3e-3, "AdamW learning rate", low=0, open_low=True, high=10)
    min_lr: float = option(1e-6, "cosine schedule floor", low=0, high=10)
    weight_decay: float = option(1e-5, "AdamW weight decay", low=0, high=10)
    betas: tuple[float, float] = option((0.9, 0.95), "AdamW betas", low=0, high=1)
    source_std: float | str = option(
        "matched", "std of the Gaussian source; 'matched' = of the training data"
    )
    coupling: str = option(
        "independent",
        "independent (the paper) or ot (minibatch optimal transport)",
        choices=("independent", "ot"),
    )
    ema_decay: float = option(
        0.0, "EMA of the velocity weights (0 = off); the EMA is saved", low=0, high=0.999999
    )
    time_distribution: str = option("uniform", "uniform or beta", choices=("uniform", "beta"))
    beta: tuple[float, float] = option(
        (2.0, 5.0), "Beta(a, b) of the beta time distribution", low=0, open_low=True, high=1e6
    )
    sigma: float = option(0.001, "std of the jitter on the straight path", low=0, high=1e6)
    seed: int = option(0, "seed of canonicalization, PCA and training", low=0, high=2**63 - 1)
    mixed_precision: str = option("no", "no, fp16 or bf16", choices=("no", "fp16", "bf16"))
    label_dropout: float = option(
        0.0, "conditional flows: fraction of labels replaced by 'no label' (classifier-free guidance)", low=0,
        high=0.9,
    )  # fmt: skip
    gradient_accumulation: int = option(
        1, "batches of batch_size per optimizer step (1: the launcher's --gradient_accumulation_steps)", low=1,
        high=65_536,
    )  # fmt: skip
    checkpoint_every: int = option(500, "iterations between resumable checkpoints", low=1, high=100_000_000)
    select: str = option(
        "auto",
        "auto: keep the snapshot (of 8 along training, 1/64 to all of it) whose networks are new and working on the validation split "
        "and held-out members (dwf_hub/flow/selection.py); off: the end of training",
        choices=("auto", "off"),
    )

    def validate(self) -> None:
        if isinstance(self.source_std, str):
            self.check(
                self.source_std == "matched",
                f"source_std must be 'matched' or a number, got {self.source_std!r}",
            )
        else:
            self.check(0 < self.source_std <= 1e6, f"source_std must be in (0, 1e6], got {self.source_std}")

    def fingerprint(self) -> dict[str, Any]:
        """What changes the trained weights (a resumed run must agree on all of it)."""
        return {k: v for k, v in self.to_dict().items() if k not in ("checkpoint_every", "holdout", "select")}


@dataclass
class SamplingConfig(Config):
    """How the pipeline integrates the flow by default (changeable at every call)."""

    section: ClassVar[str] = "flow config [sampling]"
    solver: str = option("rk4", "ODE solver", choices=SOLVERS)
    num_inference_steps: int = option(10, "ODE steps", low=1, high=MAX_INFERENCE_STEPS)
    temperature: float = option(
        1.0,
        "the source std at sampling times this (< 1: samples nearer the zoo's modes)",
        low=0,
        open_low=True,
        high=MAX_TEMPERATURE,
    )
    guidance_scale: float = option(
        1.0,
        "conditional flows: classifier-free guidance scale (1: none; needs label_dropout > 0)",
        low=0,
        high=100,
    )


@dataclass
class CodecState(Config):
    """A ``WeightCodec``'s saved configuration (``codec/config.json``): checked when the codec is built."""

    section: ClassVar[str] = "codec config"
    num_weights: int = option(1, "the architecture's weights", low=1)
    normalization: str = option("none", "coordinates", choices=NORMALIZATIONS)
    latent_dim: int | None = option(None, "principal components (pca, whiten)", low=1)
    explained_variance: float | None = option(None, "their share of the zoo's variance", low=0)
    basis_shard_columns: int | None = option(None, "weights per column shard of the basis", low=1)
    unit_statistics: int | None = option(None, "hidden-unit statistics the latent predicts", low=1)

    def validate(self) -> None:
        if self.latent_dim is not None:
            self.check(
                self.latent_dim <= self.num_weights,
                f"latent_dim={self.latent_dim} exceeds the architecture's {self.num_weights} weights",
            )
        if NORMALIZATIONS[self.normalization].pca:
            self.check(
                self.latent_dim is not None,
                f"normalization {self.normalization!r} needs latent_dim (the number of components)",
            )


@dataclass
class SchedulerConfig(Config):
    """A ``FlowODEScheduler``'s settings (``scheduler_config.json``): checked when the scheduler is built."""

    section: ClassVar[str] = "scheduler config"
    solver: str = option("rk4", "ODE solver", choices=SOLVERS)
    num_inference_steps: int = option(10, "ODE steps", low=1, high=MAX_INFERENCE_STEPS)
    source_std: float = option(1.0, "std of the source the flow starts from", low=0, open_low=True, high=1e6)
    t_start: float = option(0.0, "first time of the ODE", low=0, high=1)
    t_end: float = option(1.0, "last time of the ODE", low=0, high=1)
    temperature: float = option(1.0, "source std multiplier", low=0, open_low=True, high=MAX_TEMPERATURE)

    def validate(self) -> None:
        self.check(self.t_start < self.t_end, f"need t_start < t_end, got {self.t_start} and {self.t_end}")


@dataclass
class CallConfig(Config):
    """One generation call's arguments (``pipe(...)``, ``generate_to_disk``; ``None``: the pipeline's default),
    checked before any work by building this."""

    section: ClassVar[str] = "pipeline call"
    num_networks: int = option(1, "networks to generate", low=1, high=1 << 40)
    seed: int = option(0, "the generator's seed", low=0, high=2**63 - 1)
    num_inference_steps: int | None = option(None, "ODE steps", low=1, high=MAX_INFERENCE_STEPS)
    solver: str | None = option(None, "ODE solver", choices=SOLVERS)
    temperature: float | None = option(
        None, "source std multiplier", low=0, open_low=True, high=MAX_TEMPERATURE
    )
    guidance_scale: float | None = option(None, "classifier-free guidance scale", low=0, high=100)
    quality_check: bool | None = option(None, "redraw networks below the quality threshold")


PHASES: dict[str, type[Config]] = {
    "canonicalization": CanonicalizationConfig,
    "codec": CodecConfig,
    "velocity": VelocityConfig,
    "training": FlowTrainingConfig,
    "sampling": SamplingConfig,
}


@dataclass
class FlowConfig:
    """Everything ``fit_pipeline`` needs, one typed config per phase.

    Defaults are ours, chosen by ``benchmarks/bench_mlp.py`` for a 2-core CPU budget; the authors' setting
    is the ``paper`` preset (``PAPER_FLOW`` plus the recipe's ``[paper_flow]`` table). Recipes and the CLI
    give flat keys (every field name is unique across phases): ``FlowConfig.from_flat``.
    """

    canonicalization: CanonicalizationConfig = field(default_factory=CanonicalizationConfig)
    codec: CodecConfig = field(default_factory=CodecConfig)
    velocity: VelocityConfig = field(default_factory=VelocityConfig)
    training: FlowTrainingConfig = field(default_factory=FlowTrainingConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)

    @classmethod
    def from_flat(
        cls, data: dict[str, Any] | None = None, source: str = "flow config", **kw: Any
    ) -> FlowConfig:
        """From flat keys (``{"hidden_dim": 32, "iterations": 60}``) and/or phase tables
        (``{"velocity": {"hidden_dim": 32}}``); unknown keys are refused naming ``source``."""
        if data is not None and not isinstance(data, dict):
            raise DWFError(f"{source}: expected a table of settings, got {type(data).__name__}")
        owner = {f.name: phase for phase, c in PHASES.items() for f in dataclasses.fields(c)}
        parts: dict[str, dict[str, Any]] = {phase: {} for phase in PHASES}
        for key, value in {**(data or {}), **kw}.items():
            if key in PHASES and isinstance(value, dict):
                parts[key].update(value)
            elif key in owner:
                parts[owner[key]][key] = value
            else:
                raise DWFError(f"{source}: unknown key {key!r}; known: {sorted(owner)}")
        return cls(**{p: build_dataclass(PHASES[p], parts[p], source) for p in PHASES})

    def flat(self) -> dict[str, Any]:
        """Every field by its (unique) name."""
        return {k: v for phase in PHASES for k, v in getattr(self, phase).to_dict().items()}

    def replace(self, **flat: Any) -> FlowConfig:
        """A copy with flat keys changed."""
        return FlowConfig.from_flat({**self.flat(), **flat})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


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
