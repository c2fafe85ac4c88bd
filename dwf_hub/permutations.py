"""Permutation symmetries of a state dict (Git Re-Basin style specs).

A spec maps every state-dict key to a tuple with one entry per tensor axis: the name of the
permutation acting on that axis, or ``None``. A permutation ``perm[p]`` is a LongTensor of indices;
applying it to axis ``a`` of a tensor means ``w.index_select(a, perm[p])``.

Attention layers add ``HeadGroup``s: their query/key and value/output permutations may only move whole
heads (the same head order for both) and dimensions within a head.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import torch
from torch import Tensor

Axes = tuple[str | None, ...]


@dataclass(frozen=True)
class HeadGroup:
    """One multi-head attention layer: ``qk`` permutes the query/key rows, ``vo`` the value rows and
    the output projection's columns, both of size ``num_heads * head_dim``. A valid pair moves heads as
    whole blocks, in the same head order, and permutes dimensions only inside a head; ``spectral_keys``
    (``[num_heads * head_dim, ...]`` weights: Q, K, V) pair heads by their singular values (TransFusion).
    """

    qk: str
    vo: str
    num_heads: int
    spectral_keys: tuple[str, ...]


@dataclass(frozen=True)
class PermutationSpec:
    axes_to_perm: dict[str, Axes]
    head_groups: tuple[HeadGroup, ...] = ()
    residual: str | None = None
    """The permutation of a transformer's residual stream (``None``: the architecture has none)."""
    perm_to_axes: dict[str, list[tuple[str, int]]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        p2a: dict[str, list[tuple[str, int]]] = defaultdict(list)
        for key, axes in self.axes_to_perm.items():
            for axis, p in enumerate(axes):
                if p is not None:
                    p2a[p].append((key, axis))
        object.__setattr__(self, "perm_to_axes", dict(p2a))

    def without(self, perms: set[str]) -> PermutationSpec:
        """The same spec with ``perms`` fixed to the identity (their axes left unpermuted)."""
        axes = {k: tuple(None if p in perms else p for p in a) for k, a in self.axes_to_perm.items()}
        groups = tuple(g for g in self.head_groups if not {g.qk, g.vo} & perms)
        return PermutationSpec(axes, groups, None if self.residual in perms else self.residual)

    def without_residual(self) -> PermutationSpec:
        """The same spec with the residual stream fixed (as the authors' code leaves it)."""
        return self.without({self.residual}) if self.residual else self

    def perm_sizes(self, state_dict: dict[str, Tensor]) -> dict[str, int]:
        """Size of every permutation, read off the tensors; raises if two axes disagree."""
        sizes: dict[str, int] = {}
        for p, axes in self.perm_to_axes.items():
            for key, axis in axes:
                n = state_dict[key].shape[axis]
                if sizes.setdefault(p, n) != n:
                    raise ValueError(
                        f"permutation {p!r}: axis {axis} of {key!r} has size {n}, expected {sizes[p]}"
                    )
        return sizes


def dense(name: str, p_in: str | None, p_out: str | None, bias: bool = True) -> dict[str, Axes]:
    """A ``nn.Linear`` (weight ``[out, in]``) or 1x1 conv-like layer."""
    axes: dict[str, Axes] = {f"{name}.weight": (p_out, p_in)}
    if bias:
        axes[f"{name}.bias"] = (p_out,)
    return axes


def conv(name: str, p_in: str | None, p_out: str | None, bias: bool = False) -> dict[str, Axes]:
    """A ``nn.Conv2d`` (weight ``[out, in, kh, kw]``)."""
    axes: dict[str, Axes] = {f"{name}.weight": (p_out, p_in, None, None)}
    if bias:
        axes[f"{name}.bias"] = (p_out,)
    return axes


def batchnorm(name: str, p: str | None) -> dict[str, Axes]:
    """A ``nn.BatchNorm*d``: affine parameters and running statistics all follow the channel permutation."""
    return {f"{name}.{k}": (p,) for k in ("weight", "bias", "running_mean", "running_var")}


def apply_permutation(
    spec: PermutationSpec, perm: dict[str, Tensor], state_dict: dict[str, Tensor]
) -> dict[str, Tensor]:
    """Permute every key of ``state_dict`` named in ``spec``; other keys are copied unchanged."""
    out = {}
    for key, w in state_dict.items():
        for axis, p in enumerate(spec.axes_to_perm.get(key, ())):
            if p is not None:
                w = w.index_select(axis, perm[p])
        out[key] = w
    return out


def head_block_permutation(heads: Tensor, within: Tensor) -> Tensor:
    """Permutation of ``H * dh`` units that puts head ``heads[h]`` at slot ``h``, its dimensions in the
    order ``within[h]`` (``heads [H]``, ``within [H, dh]``)."""
    return (heads[:, None] * within.shape[1] + within).flatten()


def random_permutation(
    spec: PermutationSpec, state_dict: dict[str, Tensor], generator: torch.Generator | None = None
) -> dict[str, Tensor]:
    """A random symmetry of ``spec`` (head groups: random head order, random dimensions within heads)."""
    perm = {p: torch.randperm(n, generator=generator) for p, n in spec.perm_sizes(state_dict).items()}
    for g in spec.head_groups:
        heads, dh = torch.randperm(g.num_heads, generator=generator), len(perm[g.qk]) // g.num_heads
        for p in (g.qk, g.vo):
            within = torch.stack([torch.randperm(dh, generator=generator) for _ in range(g.num_heads)])
            perm[p] = head_block_permutation(heads, within)
    return perm


def identity_permutation(spec: PermutationSpec, state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
    return {p: torch.arange(n) for p, n in spec.perm_sizes(state_dict).items()}
