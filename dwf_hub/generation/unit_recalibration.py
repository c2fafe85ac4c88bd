"""REPAIR-style recalibration of networks without BatchNorm (Jordan et al., "REPAIR: REnormalizing
Permuted Activations for Interpolation Repair", ICLR 2023): every hidden unit's (channel's) pre-activation mean
and std on calibration inputs are reset to targets, by scaling the unit's incoming weights and shifting its bias
— what BatchNorm recalibration does for networks that have BatchNorm.

Mixing aligned networks (interpolation, or a generator's samples between zoo members) shrinks hidden units'
variance; resetting each unit to the same mixture of its parents' statistics restores much of the lost accuracy.
Baselines take their parents' statistics; a flow's samples take theirs from the codec latent through an affine
map fitted on the zoo (``codec.fit_target_map``: exact on every member, so a mixture of members' latents maps to the
mixture of their statistics). Architectures opt in by naming their hidden layers (``ArchSpec.unit_layers``). A ViT's
LayerNorms have no statistics to recalibrate (each normalizes its own token); the units that blending shrinks are
the feed-forward ``fc1`` pre-activations after them, which are reset here.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..archs import ArchSpec
from ..errors import DWFError

_EPS = 1e-6


def supports(arch: ArchSpec) -> bool:
    return bool(arch.unit_layers)


def check_supported(arch: ArchSpec) -> None:
    if not supports(arch):
        raise DWFError(
            f"unit recalibration needs an architecture that names its hidden layers (mlp, smallcnn, vit), not "
            f"{arch.name} (BatchNorm networks are recalibrated through their BatchNorm statistics)"
        )


def _moments(z: Tensor, dim: int) -> tuple[Tensor, Tensor]:
    """Per unit (along ``dim``) mean and std of a layer output over every other dim: ``[B, C, H, W]`` with
    ``dim = 1`` (convolutions), ``[B, H]`` or ``[B, T, H]`` with ``dim = -1`` (linear layers on tokens)."""
    z = z.movedim(dim, 0).reshape(z.shape[dim], -1)
    return z.mean(1), z.std(1)


CHUNK = 16  # networks per vectorized pass (a SmallCNN's first layer on 1,024 images: 64 MB each)


def _statistics(arch: ArchSpec, stacked: dict[str, Tensor], names: tuple[str, ...], x: Tensor) -> Tensor:
    """``[n, S]``: per-unit means, then stds, of the outputs of modules ``names`` for the stacked networks
    (``key -> [n, *shape]``) on ``x [B, ...]``, in one vectorized pass (``torch.func``)."""
    from torch.func import functional_call, vmap

    from ..scoring import _Caller

    caller = _Caller(arch, arch.functional_model(False))
    modules = dict(caller.model.named_modules())

    def one(params: dict[str, Tensor], xb: Tensor) -> Tensor:
        outs: list[Tensor] = []
        hook = lambda m, _i, out: outs.extend(_moments(out, 1 if isinstance(m, nn.Conv2d) else -1))  # noqa: E731
        handles = [modules[n].register_forward_hook(hook) for n in names]
        try:
            functional_call(caller, {f"model.{k}": v for k, v in params.items()}, (xb,))
        finally:
            for h in handles:
                h.remove()
        return torch.cat(outs)

    return vmap(one, in_dims=(0, None))(stacked, x)


@torch.no_grad()
def unit_statistics(arch: ArchSpec, weights: Tensor, x: Tensor) -> Tensor:
    """``[N, S]``: for each of ``weights [N, D]``, every hidden layer's per-unit pre-activation means, then stds,
    on inputs ``x [B, ...]``, layer after layer (``S = 2 * hidden units``)."""
    from ..scoring import stack_matrix

    check_supported(arch)
    return torch.cat([
        _statistics(arch, stack_matrix(arch, weights[s : s + CHUNK]), arch.unit_layers, x)
        for s in range(0, len(weights), CHUNK)
    ])  # fmt: skip


@torch.no_grad()
def recalibrate_units(arch: ArchSpec, weights: Tensor, targets: Tensor, x: Tensor) -> Tensor:
    """``weights [N, D]`` with every hidden unit's pre-activation mean and std on ``x [B, ...]`` set to
    ``targets [N, S]`` (``unit_statistics`` layout), layer after layer; a new tensor."""
    from ..scoring import stack_matrix

    check_supported(arch)
    biases = {p.key: p.numel for p in arch.layout}
    need = 2 * sum(biases[f"{name}.bias"] for name in arch.unit_layers)
    if targets.shape != (len(weights), need):
        raise DWFError(
            f"unit recalibration: targets have shape {tuple(targets.shape)}, the networks need ({len(weights)}, {need})"
        )
    weights = weights.clone()
    for s in range(0, len(weights), CHUNK):
        stacked, target, k = stack_matrix(arch, weights[s : s + CHUNK]), targets[s : s + CHUNK], 0
        for name in arch.unit_layers:  # views into ``weights``: updated in place, layer after layer
            w, b = stacked[f"{name}.weight"], stacked[f"{name}.bias"]
            units = b.shape[1]
            stats = _statistics(arch, stacked, (name,), x)
            mean, std = stats[:, :units], stats[:, units:]
            t_mean, t_std = target[:, k : k + units], target[:, k + units : k + 2 * units].clamp_min(_EPS)
            k += 2 * units
            scale = t_std / (std + _EPS)
            w.mul_(scale.view(*scale.shape, *[1] * (w.dim() - 2)))
            b.copy_((b - mean) * scale + t_mean)
    return weights
