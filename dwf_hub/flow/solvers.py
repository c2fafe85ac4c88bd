"""ODE solvers on a uniform grid, by name (``SOLVERS``): each is the fractions of an interval at which
the velocity is evaluated and the rule that makes the next point from the velocities seen so far."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..registry import Registry

if TYPE_CHECKING:  # kept light: the CLI builds its choices from this registry without importing torch
    from torch import Tensor

# (x0 [N, K], step h, velocities k[0..stage] each [N, K], stage) -> next point [N, K]
StepRule = Callable[["Tensor", float, list["Tensor"], int], "Tensor"]


@dataclass(frozen=True)
class Solver:
    offsets: tuple[float, ...]
    """Fractions of the interval at which stages are evaluated (``len`` = the solver's order)."""
    rule: StepRule


SOLVERS: Registry[Solver] = Registry("solver")


def _euler(x0: Tensor, h: float, k: list[Tensor], stage: int) -> Tensor:
    return x0 + h * k[0]


def _heun(x0: Tensor, h: float, k: list[Tensor], stage: int) -> Tensor:
    return x0 + h * k[0] if stage == 0 else x0 + 0.5 * h * (k[0] + k[1])


def _rk4(x0: Tensor, h: float, k: list[Tensor], stage: int) -> Tensor:
    if stage < 3:
        return x0 + (h if stage == 2 else 0.5 * h) * k[stage]
    return x0 + (h / 6.0) * (k[0] + 2 * k[1] + 2 * k[2] + k[3])


SOLVERS.add("rk4", Solver((0.0, 0.5, 0.5, 1.0), _rk4))
SOLVERS.add("heun", Solver((0.0, 1.0), _heun))
SOLVERS.add("euler", Solver((0.0,), _euler))
