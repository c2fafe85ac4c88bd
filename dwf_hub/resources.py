"""Where the shipped recipes and card templates are: inside the installed package (``dwf_hub/zoo_recipes``,
``dwf_hub/model_cards``), mapped from the repository's top-level ``zoo_recipes/`` and ``model_cards/``."""

from __future__ import annotations

from pathlib import Path

_REPOSITORY = Path(__file__).resolve().parents[1]


def shipped(name: str) -> Path:
    """The folder ``name`` (``zoo_recipes`` or ``model_cards``): the installed copy, else the source tree's."""
    import importlib.util

    spec = importlib.util.find_spec(f"dwf_hub.{name}")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            if Path(location).is_dir():
                return Path(location)
    return _REPOSITORY / name  # a source checkout that is not installed
