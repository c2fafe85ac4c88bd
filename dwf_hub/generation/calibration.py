"""BatchNorm recalibration (paper Appendix C): recompute running statistics of generated networks."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

from ..archs import ArchSpec
from ..errors import DWFError

_BN = nn.modules.batchnorm._BatchNorm


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, _BN) for m in model.modules())


def check_calibration_data(arch: ArchSpec, x: Tensor) -> None:
    """Raise unless ``x`` is a finite, non-constant batch ``[B, ...]`` (B >= 2) of the architecture's input
    shape and kind (float inputs, or integer token ids): the statistics it feeds would be NaN or huge."""
    example = arch.example_input(1)
    expected = tuple(example.shape[1:])
    kind = "a float" if example.is_floating_point() else "an integer"
    if (
        not torch.is_tensor(x)
        or x.is_floating_point() != example.is_floating_point()
        or x.is_complex()
        or x.dim() != len(expected) + 1
        or tuple(x.shape[1:]) != expected
    ):
        got = f"{tuple(x.shape)} {x.dtype}" if torch.is_tensor(x) else f"a {type(x).__name__}"
        raise DWFError(
            f"calibration_data is {got}; expected {kind} torch tensor (B, {', '.join(map(str, expected))})"
        )
    if len(x) < 2:
        raise DWFError(f"calibration_data has {len(x)} sample(s); its statistics need at least 2")
    if x.is_floating_point():
        if not torch.isfinite(x).all():
            raise DWFError("calibration_data contains NaN or Inf values")
        if bool((x == x[:1]).all()):
            raise DWFError("calibration_data is constant: every sample is the same, so it has no statistics")


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
