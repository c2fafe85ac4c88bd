"""Textbook Git Re-Basin coordinate descent, one network at a time (as in the authors' code).

Kept as the yardstick for ``weight_matching_many``: tests check both give the same permutations, and
``benchmarks/bench_canonicalize.py`` times it as the baseline.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from ..permutations import PermutationSpec, identity_permutation


def plain_weight_matching(
    spec: PermutationSpec,
    ref: dict[str, Tensor],
    other: dict[str, Tensor],
    seed: int = 0,
    max_iter: int = 100,
) -> dict[str, Tensor]:
    """Permutations aligning ``other`` to ``ref``: every permutation re-solved in every sweep."""
    perm = identity_permutation(spec, ref)
    rng = np.random.default_rng(seed)
    for _ in range(max_iter):
        improved = False
        for p in rng.permutation(sorted(perm)):
            n = perm[p].numel()
            cost = torch.zeros(n, n, dtype=torch.float64)
            for key, axis in spec.perm_to_axes[p]:
                w_b = other[key]
                for a, q in enumerate(spec.axes_to_perm[key]):
                    if q is not None and a != axis:
                        w_b = w_b.index_select(a, perm[q])
                w_a = ref[key].movedim(axis, 0).reshape(n, -1).double()
                cost += w_a @ w_b.movedim(axis, 0).reshape(n, -1).double().T
            _, cols = linear_sum_assignment(cost.numpy(), maximize=True)
            old, new = cost[torch.arange(n), perm[p]].sum(), cost[torch.arange(n), cols].sum()
            if new > old + 1e-7 * max(1.0, abs(float(old))):
                perm[p], improved = torch.from_numpy(cols), True
        if not improved:
            break
    return perm
