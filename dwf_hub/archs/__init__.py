"""Architecture registry. Adding an architecture = one new module here + one recipe."""

from . import mlp, resnet, smallcnn, transformer  # noqa: F401  (registers)
from .base import ArchSpec, ParamInfo
from .registry import arch_from_config, available_archs, get_arch, get_arch_class, register

__all__ = [
    "ArchSpec",
    "ParamInfo",
    "arch_from_config",
    "available_archs",
    "get_arch",
    "get_arch_class",
    "register",
]
