"""Git Re-Basin weight matching (Ainsworth et al., 2023): coordinate descent over permutations."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from ..permutations import PermutationSpec, apply_permutation, identity_permutation


@dataclass
class MatchResult:
    perm: dict[str, Tensor]
    """Permutation name -> indices; ``apply_permutation(spec, perm, other)`` aligns ``other`` to the reference."""
    objective: float
    """``sum_k <reference[k], permuted_other[k]>`` over every key the spec permutes."""
    iterations: int


def _permuted_except(
    spec: PermutationSpec, perm: dict[str, Tensor], key: str, w: Tensor, skip_axis: int
) -> Tensor:
    for axis, p in enumerate(spec.axes_to_perm[key]):
        if axis != skip_axis and p is not None:
            w = w.index_select(axis, perm[p])
    return w


def objective(spec: PermutationSpec, reference: dict[str, Tensor], aligned: dict[str, Tensor]) -> float:
    return float(sum((reference[k].double() * aligned[k].double()).sum() for k in spec.axes_to_perm))


def weight_matching(
    spec: PermutationSpec,
    reference: dict[str, Tensor],
    other: dict[str, Tensor],
    max_iter: int = 100,
    seed: int = 0,
    init_perm: dict[str, Tensor] | None = None,
) -> MatchResult:
    """Find permutations of ``other`` maximising its inner product with ``reference``.

    Each sweep visits the permutations in a random order (``seed``) and solves one linear assignment
    per permutation with the others fixed; it stops after ``max_iter`` sweeps or a sweep that
    improves nothing.
    """
    ref = {k: reference[k].detach().float() for k in spec.axes_to_perm}
    oth = {k: other[k].detach().float() for k in spec.axes_to_perm}
    perm = dict(init_perm) if init_perm is not None else identity_permutation(spec, ref)
    names = sorted(spec.perm_to_axes)
    # The reference side of every cost term never changes: reshape it once.
    ref_rows = {
        p: [(key, axis, ref[key].movedim(axis, 0).reshape(ref[key].shape[axis], -1)) for key, axis in axes]
        for p, axes in spec.perm_to_axes.items()
    }
    rng = np.random.default_rng(seed)
    sweeps = 0
    for sweeps in range(1, max_iter + 1):  # noqa: B007  (the count is reported)
        improved = False
        for p in rng.permutation(names):
            n = perm[p].numel()
            cost = torch.zeros(n, n)
            for key, axis, w_a in ref_rows[p]:
                w_b = _permuted_except(spec, perm, key, oth[key], axis).movedim(axis, 0).reshape(n, -1)
                cost.addmm_(w_a, w_b.T)
            cost64 = cost.double()
            _, cols = linear_sum_assignment(cost64.numpy(), maximize=True)
            new = torch.from_numpy(cols).long()
            rows = torch.arange(n)
            old_val, new_val = cost64[rows, perm[p]].sum().item(), cost64[rows, new].sum().item()
            if new_val > old_val + 1e-7 * max(1.0, abs(old_val)):
                improved = True
                perm[p] = new
        if not improved:
            break
    aligned = apply_permutation(spec, perm, oth)
    return MatchResult(perm=perm, objective=objective(spec, ref, aligned), iterations=sweeps)
