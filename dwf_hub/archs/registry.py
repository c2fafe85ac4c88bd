"""Name -> architecture spec class."""

from __future__ import annotations

from typing import Any

from ..errors import DWFError
from ..registry import Registry
from .base import ArchSpec

ARCHS: Registry[type[ArchSpec]] = Registry("architecture")


def register(cls: type[ArchSpec]) -> type[ArchSpec]:
    """Class decorator: ``cls`` under ``cls.name`` (a second class of one name is refused)."""
    return ARCHS.add(cls.name, cls)


def available_archs() -> list[str]:
    return sorted(ARCHS)


def get_arch_class(name: str) -> type[ArchSpec]:
    return ARCHS[name]


def get_arch(name: str, **kwargs: Any) -> ArchSpec:
    cls = get_arch_class(name)
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise DWFError(f"architecture {name!r}: bad arguments {kwargs!r} ({e})") from e


def arch_from_config(config: dict[str, Any]) -> ArchSpec:
    """Inverse of ``ArchSpec.config``: ``{"name": ..., **kwargs}``."""
    if not isinstance(config, dict) or "name" not in config:
        raise DWFError(f"architecture config must be a dict with a 'name', got {config!r}")
    kwargs = {k: v for k, v in config.items() if k != "name"}
    return get_arch(config["name"], **kwargs)
