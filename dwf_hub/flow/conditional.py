"""Conditional recipes (paper Appendix K): which zoo recipe each condition label stands for, and the one
conditional flow's settings — ``zoo_recipes/conditional/NAME.toml``::

    name = "digits_halves_mlp"
    [conditions]            # label = zoo recipe (shipped name or TOML path); one architecture, or several
                            # (experimental: each zoo its own PCA codec, one flow over a common latent size)
    digits04 = "digits04_mlp"
    digits59 = "digits59_mlp"
    [flow]                  # FlowConfig keys, as a zoo recipe's [flow]
    iterations = 8000

Train each condition's zoo with ``dwf-hub zoo train RECIPE``, then ``dwf-hub fit ZOO1 ZOO2 --labels a,b``
(``fitting.fit_conditional``); ``benchmarks/bench_conditional.py`` runs the whole comparison.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from ..compression.normalizations import NORMALIZATIONS
from ..configs import FlowConfig
from ..errors import DWFError
from ..resources import shipped
from ..zoo.recipes import Recipe, load_recipe, read_toml

CONDITIONAL_DIR = shipped("zoo_recipes") / "conditional"


@dataclass
class ConditionalRecipe:
    name: str
    conditions: dict[str, str]
    """``label -> zoo recipe`` (a shipped name or a TOML path), in label order."""
    flow: dict[str, Any] = field(default_factory=dict)
    """Overrides of ``FlowConfig`` defaults for the conditional flow."""
    description: str = ""

    def recipes(self) -> dict[str, Recipe]:
        """``label -> Recipe``; recipes of different architectures (experimental) need a PCA codec."""
        recipes = {label: load_recipe(r) for label, r in self.conditions.items()}
        (first_label, first), normalization = (
            next(iter(recipes.items())),
            self.flow_config().codec.normalization,
        )
        for label, recipe in recipes.items():
            if recipe.arch_spec != first.arch_spec and not NORMALIZATIONS[normalization].pca:
                raise DWFError(
                    f"conditional recipe {self.name!r}: condition {label!r} is {recipe.arch_spec!r}, "
                    f"{first_label!r} is {first.arch_spec!r}: several architectures need a PCA latent "
                    f"(normalization 'whiten' or 'pca', got {normalization!r})"
                )
        return recipes

    def flow_config(self, **overrides: Any) -> FlowConfig:
        return FlowConfig.from_flat({**self.flow, **overrides}, f"conditional recipe {self.name!r} [flow]")


def load_conditional_recipe(name_or_path: str | os.PathLike) -> ConditionalRecipe:
    """A shipped conditional recipe by name (``zoo_recipes/conditional/NAME.toml``) or a TOML file."""
    path, data = read_toml(name_or_path, CONDITIONAL_DIR, "conditional recipe")
    known = {"name", "conditions", "flow", "description"}
    if data.keys() - known or not {"name", "conditions"} <= data.keys():
        raise DWFError(
            f"{path}: a conditional recipe has keys {sorted(known)} (name and conditions required)"
        )
    conditions = data["conditions"]
    if (
        not isinstance(conditions, dict)
        or len(conditions) < 2
        or not all(isinstance(v, str) for v in conditions.values())
    ):
        raise DWFError(f"{path}: [conditions] must map at least two labels to zoo recipe names")
    if not isinstance(data.get("flow", {}), dict):
        raise DWFError(f"{path}: [flow] must be a table of flow settings")
    return ConditionalRecipe(**data)
