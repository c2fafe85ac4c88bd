"""The machine's memory (``require_memory``), and where the shipped recipes and card templates are: inside the installed package (``dwf_hub/zoo_recipes``,
``dwf_hub/model_cards``), mapped from the repository's top-level ``zoo_recipes/`` and ``model_cards/``."""

from __future__ import annotations

import os
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


def require_memory(need: int, what: str, advice: str) -> None:
    """Refuse, before any allocation, work that needs ``need`` bytes when less memory is available."""
    from .errors import DWFError

    free = available_memory()
    if need > free:
        raise DWFError(
            f"{what} needs about {need / 2**30:.1f} GiB of memory, more than the {free / 2**30:.1f} GiB "
            f"available; {advice}"
        )


def available_memory() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))
