"""Zoo recipes: one declarative TOML file per (architecture, dataset), shipped in ``zoo_recipes/``."""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import Tensor

from ..archs import ArchSpec, arch_from_config
from ..configs import FLOW_PRESETS, PAPER_FLOW, CalibrationConfig, FlowConfig, TrainingConfig, build_dataclass
from ..errors import DWFError, unknown
from ..resources import shipped

if TYPE_CHECKING:
    from .data import TaskData

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

RECIPE_DIR = shipped("zoo_recipes")


@dataclass
class Recipe:
    """How a zoo is made (architecture, data, training) and the settings generators of it start from; a
    zoo carries its recipe (``WeightZoo.recipe``), saved as a table in ``zoo.json``."""

    name: str
    arch: dict[str, Any]
    data: dict[str, Any]
    training: TrainingConfig = field(default_factory=TrainingConfig)
    flow: dict[str, Any] = field(default_factory=dict)
    """Overrides of ``FlowConfig`` defaults for this recipe (the ``dwf`` preset)."""
    paper_flow: dict[str, Any] = field(default_factory=dict)
    """This recipe's values in the paper's Table 14 (the ``paper`` preset adds them to ``PAPER_FLOW``)."""
    calibration: CalibrationConfig = field(default_factory=CalibrationConfig)
    """How generated BatchNorm networks are recalibrated."""
    description: str = ""
    license: str = "mit"
    """The licence zoos of this recipe (and flows fitted on them) are published under: the Hub's identifier
    (``mit``, ``apache-2.0``, ``cc-by-4.0``, ``other``, ...); the dataset's terms may constrain it."""

    @property
    def arch_spec(self) -> ArchSpec:
        return arch_from_config(self.arch)

    @property
    def task(self) -> TaskData:
        """The recipe's dataset (loaded once per configuration)."""
        from .data import load_task

        return load_task(self.data)

    def split(self, split: str) -> tuple[Tensor, Tensor]:
        """``(inputs [B, ...], targets [B])`` of ``split`` (``train``, ``val`` or ``test``)."""
        return self.task.split(split)

    def flow_config(self, preset: str = "dwf", **overrides: Any) -> FlowConfig:
        """Flow settings: ``dwf`` (our defaults + ``[flow]``) or ``paper`` (Table 14 + ``[paper_flow]``)."""
        if preset not in FLOW_PRESETS:
            raise unknown("flow preset", preset, list(FLOW_PRESETS))
        base = self.flow if preset == "dwf" else {**PAPER_FLOW, **self.paper_flow}
        return FlowConfig.from_flat({**base, **overrides}, f"recipe {self.name!r} flow ({preset} preset)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "recipe") -> Recipe:
        if not isinstance(d, dict):
            raise DWFError(f"{source}: a recipe must be a table, got {type(d).__name__}")
        d = dict(d)
        known = {f.name for f in dataclasses.fields(cls)}
        extra = sorted(d.keys() - known)
        if extra:
            raise DWFError(f"{source}: unknown key(s) {extra}; known: {sorted(known)}")
        for key, kind in (
            ("name", str),
            ("arch", dict),
            ("data", dict),
            ("flow", dict),
            ("paper_flow", dict),
        ):
            if key in ("name", "arch", "data") and key not in d:
                raise DWFError(f"{source}: missing required key {key!r}")
            if key in d and not isinstance(d[key], kind):
                raise DWFError(f"{source}: {key!r} must be a {kind.__name__}, got {type(d[key]).__name__}")
        d["training"] = build_dataclass(TrainingConfig, d.get("training"), f"{source} [training]")
        d["calibration"] = build_dataclass(CalibrationConfig, d.get("calibration"), f"{source} [calibration]")
        recipe = cls(**d)
        recipe.arch_spec  # noqa: B018  (validates the architecture now)
        for preset in FLOW_PRESETS:
            recipe.flow_config(preset)
        return recipe


def available_recipes() -> list[str]:
    return sorted(p.stem for p in RECIPE_DIR.glob("*.toml"))


def as_recipe(recipe: Recipe | dict[str, Any] | None, source: str = "recipe") -> Recipe | None:
    """A ``Recipe`` from itself or its ``to_dict()`` table (``None`` stays ``None``)."""
    return recipe if recipe is None or isinstance(recipe, Recipe) else Recipe.from_dict(recipe, source)


def load_recipe(name_or_path: str | Path | Recipe | dict) -> Recipe:
    """A shipped recipe by name, a TOML file path, a dict, or a Recipe (returned as is)."""
    if isinstance(name_or_path, Recipe):
        return name_or_path
    if isinstance(name_or_path, dict):
        return Recipe.from_dict(name_or_path)
    path, data = read_toml(name_or_path, RECIPE_DIR, "recipe")
    return Recipe.from_dict(data, source=str(path))


def read_toml(name_or_path: str | Path, folder: Path, kind: str) -> tuple[Path, dict[str, Any]]:
    """``(path, table)`` of a shipped ``kind`` by name (``folder/NAME.toml``) or of a ``.toml`` file."""
    path = Path(name_or_path)
    if not path.suffix:
        path = folder / f"{name_or_path}.toml"
        if not path.is_file():
            raise unknown(kind, str(name_or_path), sorted(p.stem for p in folder.glob("*.toml")))
    elif not path.is_file():
        raise DWFError(f"{path}: {kind} file not found")
    try:
        return path, tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise DWFError(f"{path}: invalid TOML ({e})") from e
