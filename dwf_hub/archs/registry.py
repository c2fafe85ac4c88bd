"""Name -> architecture spec class."""

from __future__ import annotations

from typing import Any

from ..errors import DWFError, unknown
from .base import ArchSpec

_REGISTRY: dict[str, type[ArchSpec]] = {}


def register(cls: type[ArchSpec]) -> type[ArchSpec]:
    _REGISTRY[cls.name] = cls
    return cls


def available_archs() -> list[str]:
    return sorted(_REGISTRY)


def get_arch_class(name: str) -> type[ArchSpec]:
    if name not in _REGISTRY:
        raise unknown("architecture", name, available_archs())
    return _REGISTRY[name]


def get_arch(name: str, **kwargs: Any) -> ArchSpec:
    cls = get_arch_class(name)
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise DWFError(f"architecture {name!r}: bad arguments {kwargs!r} ({e})") from None


def arch_from_config(config: dict[str, Any]) -> ArchSpec:
    """Inverse of ``ArchSpec.config``: ``{"name": ..., **kwargs}``."""
    if not isinstance(config, dict) or "name" not in config:
        raise DWFError(f"architecture config must be a dict with a 'name', got {config!r}")
    kwargs = {k: v for k, v in config.items() if k != "name"}
    return get_arch(config["name"], **kwargs)
