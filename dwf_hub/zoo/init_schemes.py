"""Weight initialisation schemes for zoo members, by name (``INIT_SCHEMES``): each re-initialises one
``Linear`` / ``Conv`` layer in place from a generator (``default`` keeps PyTorch's own init)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..registry import Registry

if TYPE_CHECKING:  # kept light: the CLI builds its choices from this registry without importing torch
    import torch
    from torch import nn

InitScheme = Callable[["nn.Module", "torch.Generator"], None]
INIT_SCHEMES: Registry[InitScheme] = Registry("init scheme")


def _zero_bias(m: nn.Module) -> None:
    if m.bias is not None:
        m.bias.data.zero_()


@INIT_SCHEMES.register("default")
def _default(m: nn.Module, gen: torch.Generator) -> None:
    pass


@INIT_SCHEMES.register("kaiming")
def _kaiming(m: nn.Module, gen: torch.Generator) -> None:
    import torch

    torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu", generator=gen)  # bias: PyTorch's default


@INIT_SCHEMES.register("kaiming_zero_bias")
def _kaiming_zero_bias(m: nn.Module, gen: torch.Generator) -> None:
    import torch

    torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu", generator=gen)
    _zero_bias(m)


@INIT_SCHEMES.register("xavier")
def _xavier(m: nn.Module, gen: torch.Generator) -> None:
    import torch

    torch.nn.init.xavier_normal_(m.weight, generator=gen)
    _zero_bias(m)


@INIT_SCHEMES.register("normal")
def _normal(m: nn.Module, gen: torch.Generator) -> None:
    import torch

    torch.nn.init.normal_(m.weight, 0.0, 0.1, generator=gen)
    _zero_bias(m)


@INIT_SCHEMES.register("uniform")
def _uniform(m: nn.Module, gen: torch.Generator) -> None:
    import torch

    torch.nn.init.uniform_(m.weight, -0.1, 0.1, generator=gen)
    _zero_bias(m)


def initialise(model: nn.Module, scheme: str, gen: torch.Generator) -> None:
    """Apply ``scheme`` to every ``Linear`` / ``Conv`` layer of ``model`` (in module order)."""
    from torch import nn

    init = INIT_SCHEMES[scheme]
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            init(m, gen)
