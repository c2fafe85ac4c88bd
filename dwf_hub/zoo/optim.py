"""Zoo-training optimizers and learning-rate schedules, by name (``OPTIMIZERS``, ``LR_SCHEDULES``).

Adam, AdamW and SGD update every element independently, so one optimizer over stacked ``[N, ...]``
parameters is exactly ``N`` independent optimizers.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..registry import Registry

if TYPE_CHECKING:  # kept light: the CLI builds its choices from these registries without importing torch
    import torch
    from torch import Tensor

    from ..configs import TrainingConfig

OPTIMIZERS: Registry[Callable[[list[Tensor], TrainingConfig], torch.optim.Optimizer]] = Registry("optimizer")


@OPTIMIZERS.register("adam")
def _adam(params: list[Tensor], c: TrainingConfig) -> torch.optim.Optimizer:
    import torch

    return torch.optim.Adam(params, lr=c.lr, weight_decay=c.weight_decay)


@OPTIMIZERS.register("adamw")
def _adamw(params: list[Tensor], c: TrainingConfig) -> torch.optim.Optimizer:
    import torch

    return torch.optim.AdamW(params, lr=c.lr, weight_decay=c.weight_decay)


@OPTIMIZERS.register("sgd")
def _sgd(params: list[Tensor], c: TrainingConfig) -> torch.optim.Optimizer:
    import torch

    return torch.optim.SGD(params, lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)


# (step, total steps, warmup steps) -> learning-rate factor
LR_SCHEDULES: Registry[Callable[[int, int, int], float]] = Registry("learning-rate schedule")
LR_SCHEDULES.add("none", lambda step, total, warmup: 1.0)
LR_SCHEDULES.add("cosine", lambda step, total, warmup: 0.5 * (1 + math.cos(math.pi * step / max(1, total))))


@LR_SCHEDULES.register("warmup_cosine")
def _warmup_cosine(step: int, total: int, warmup: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def make_optimizer(params: list[Tensor], cfg: TrainingConfig) -> torch.optim.Optimizer:
    return OPTIMIZERS[cfg.optimizer](params, cfg)


def lr_factor(cfg: TrainingConfig, steps_per_epoch: int) -> Callable[[int], float]:
    """``step -> factor`` of the configured schedule (for ``LambdaLR``)."""
    schedule = LR_SCHEDULES[cfg.schedule]
    total, warmup = cfg.epochs * steps_per_epoch, cfg.warmup_epochs * steps_per_epoch
    return lambda step: schedule(step, total, warmup)
