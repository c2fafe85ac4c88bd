"""Exact PCA of a zoo's weight matrix through its N x N Gram matrix (N networks << D weights).

Memory: the centred copy of ``weights`` plus the ``[k, D]`` components, never an SVD workspace of N x D.
Explained variance is reported as a fraction of the *total* variance of the zoo.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .errors import DWFError


@dataclass
class PCAResult:
    mean: Tensor
    """``[D]``"""
    components: Tensor
    """``[k, D]``, orthonormal rows, by decreasing variance."""
    std: Tensor
    """``[k]``: standard deviation of the zoo along each component."""
    explained_variance: float
    """Fraction of the zoo's total variance the ``k`` components hold."""
    rank: int
    """Number of components with non-zero variance (at most N - 1)."""


def choose_k(variances: Tensor, n_components: int | float | None, rank: int) -> int:
    """``None``: every non-zero component; int: that many; float in (0, 1]: the fewest reaching that fraction."""
    if n_components is None:
        return rank
    if isinstance(n_components, float):
        if not 0 < n_components <= 1:
            raise DWFError(
                f"n_components as a fraction of the variance must be in (0, 1], got {n_components}"
            )
        cumulative = torch.cumsum(variances[:rank], 0) / variances.sum()
        return min(rank, int((cumulative < n_components - 1e-12).sum()) + 1)
    k = int(n_components)
    if isinstance(n_components, bool) or not 1 <= k <= rank:
        raise DWFError(f"n_components={n_components} must be between 1 and the zoo's rank {rank}")
    return k


def fit_pca(weights: Tensor, n_components: int | float | None = None) -> PCAResult:
    """PCA of ``weights [N, D]`` (float32); components come from the eigenvectors of the Gram matrix."""
    n = weights.shape[0]
    if weights.dim() != 2 or n < 2:
        raise DWFError(f"PCA needs a matrix of at least two networks, got shape {tuple(weights.shape)}")
    mean = weights.mean(0)
    centred = weights - mean  # the one extra N x D copy
    gram = _gram(centred)
    eigvals, eigvecs = torch.linalg.eigh(gram)  # ascending
    eigvals, eigvecs = eigvals.flip(0).clamp_min(0), eigvecs.flip(1)
    variances = eigvals / (n - 1)
    rank = int((eigvals > eigvals[0] * 1e-10).sum()) if eigvals[0] > 0 else 0
    if rank == 0:
        raise DWFError("PCA: all networks are identical (zero variance)")
    k = choose_k(variances, n_components, rank)
    singular = eigvals[:k].sqrt()
    components = (eigvecs[:, :k] / singular).T.float() @ centred  # [k, D] = U_k^T X_c / s_k
    components /= components.norm(dim=1, keepdim=True)
    return PCAResult(
        mean=mean,
        components=components,
        std=variances[:k].sqrt().float(),
        explained_variance=float(variances[:k].sum() / variances.sum()),
        rank=rank,
    )


def _gram(centred: Tensor) -> Tensor:
    """``X X^T`` accumulated in float64 over column blocks of ~16M values (no float64 copy of X)."""
    n = centred.shape[0]
    block = max(1, (1 << 24) // n)
    gram = torch.zeros(n, n, dtype=torch.float64)
    for s in range(0, centred.shape[1], block):
        part = centred[:, s : s + block].double()
        gram += part @ part.T
    return gram
