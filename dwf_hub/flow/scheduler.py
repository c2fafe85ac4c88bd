"""ODE solvers for flow matching as a diffusers scheduler (Euler, Heun, RK4 on a uniform grid).

Like diffusers' multi-stage schedulers, ``timesteps`` lists every time at which the velocity is
evaluated (``order`` per interval); the loop is always::

    x = randn(...) * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        x = scheduler.step(velocity(x, t), t, x).prev_sample
"""

from __future__ import annotations

import torch
from diffusers import ConfigMixin, SchedulerMixin
from diffusers.configuration_utils import register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerOutput
from torch import Tensor

from ..configs import CallConfig, SchedulerConfig
from .solvers import SOLVERS


class FlowODEScheduler(SchedulerMixin, ConfigMixin):
    config_name = "scheduler_config.json"

    @register_to_config
    def __init__(
        self,
        solver: str = "rk4",
        num_inference_steps: int = 10,
        source_std: float = 1.0,
        t_start: float = 0.0,
        t_end: float = 1.0,
        temperature: float = 1.0,
    ) -> None:
        SchedulerConfig(
            solver, num_inference_steps, source_std, t_start, t_end, temperature
        )  # one line per bad value
        self.set_timesteps(num_inference_steps)

    @property
    def init_noise_sigma(self) -> float:
        """Std the samples start from: the source's (training) std times the sampling temperature."""
        return self.start_sigma()

    def start_sigma(self, temperature: float | None = None) -> float:
        """``init_noise_sigma`` at ``temperature`` (default: the configured one)."""
        t = self.temperature if temperature is None else CallConfig(temperature=temperature).temperature
        return float(self.config.source_std) * t

    @property
    def temperature(self) -> float:
        return float(self.config.temperature)

    @property
    def order(self) -> int:
        return len(SOLVERS[self.solver].offsets)

    @property
    def solver(self) -> str:
        return self._solver

    def set_timesteps(
        self,
        num_inference_steps: int | None = None,
        device: str | torch.device | None = None,
        solver: str | None = None,
    ) -> None:
        """``num_inference_steps`` intervals of ``[t_start, t_end]``; ``solver`` overrides the configured one."""
        steps = self.config.num_inference_steps if num_inference_steps is None else num_inference_steps
        CallConfig(num_inference_steps=steps, solver=solver)
        solver = solver or self.config.solver
        offsets = torch.tensor(SOLVERS[solver].offsets, dtype=torch.float64)
        self._solver, self.num_inference_steps = solver, steps
        grid = torch.linspace(self.config.t_start, self.config.t_end, steps + 1, dtype=torch.float64)
        self._h = float(grid[1] - grid[0])
        self.timesteps = (grid[:-1, None] + offsets[None] * self._h).reshape(-1).float().to(device)
        self._stage, self._x0, self._k = 0, None, []

    def step(self, model_output: Tensor, timestep: Tensor | float, sample: Tensor, return_dict: bool = True):
        """One stage: ``model_output`` is the velocity at ``(sample, timestep)``; returns the next point to evaluate."""
        h, stage = self._h, self._stage
        if stage == 0:
            self._x0, self._k = sample, []
        self._k.append(model_output)
        nxt = SOLVERS[self._solver].rule(self._x0, h, self._k, stage)
        self._stage = (stage + 1) % self.order
        if self._stage == 0:
            self._x0, self._k = None, []
        return SchedulerOutput(prev_sample=nxt) if return_dict else (nxt,)

    def __len__(self) -> int:
        return self.num_inference_steps
