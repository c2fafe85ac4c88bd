"""BatchNorm recalibration (paper Appendix C): recompute running statistics of generated networks."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from .archs import ArchSpec
from .errors import DWFError

_BN = nn.modules.batchnorm._BatchNorm


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, _BN) for m in model.modules())


def check_calibration_data(arch: ArchSpec, x: Tensor) -> None:
    """Raise unless ``x`` is a float batch ``[B, ...]`` of the architecture's input shape."""
    expected = tuple(arch.example_input(1).shape[1:])
    if (
        not torch.is_tensor(x)
        or not x.is_floating_point()
        or x.dim() != len(expected) + 1
        or tuple(x.shape[1:]) != expected
    ):
        got = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
        raise DWFError(
            f"calibration data has shape {got}, expected a float tensor (B, {', '.join(map(str, expected))})"
        )
    if len(x) < 2:
        raise DWFError("calibration data needs at least 2 samples (BatchNorm batch statistics)")


@torch.no_grad()
def recalibrate_batchnorm(
    model: nn.Module, data: Tensor | Iterable[Tensor], batch_size: int = 256
) -> nn.Module:
    """Reset running statistics, then average them over ``data`` (cumulative average) with forward passes
    in train mode — ``torch.optim.swa_utils.update_bn`` — and return ``model`` in eval mode.

    ``data`` should come from the training split, never the test split.
    """
    from torch.optim.swa_utils import update_bn

    update_bn(data.split(batch_size) if torch.is_tensor(data) else data, model)
    return model.eval()
