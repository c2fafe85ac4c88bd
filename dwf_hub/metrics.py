"""Distances between sets of networks in (canonical) weight space."""

from __future__ import annotations

import torch
from torch import Tensor

from .errors import DWFError


def nearest_distances(query: Tensor, pool: Tensor, exclude_self: bool = False) -> Tensor:
    """``[M]`` L2 distance of each row of ``query [M, D]`` to its nearest row of ``pool [N, D]``.

    With ``exclude_self`` (``query is pool``), each row's distance to itself is ignored.
    """
    d = torch.cdist(query.double(), pool.double())
    if exclude_self:
        if query.shape[0] < 2:
            raise DWFError("need at least two networks to measure nearest-other distances")
        d.fill_diagonal_(float("inf"))
    return d.min(1).values.float()


def novelty_ratio(generated: Tensor, train: Tensor) -> float:
    """median nearest-train distance of generated networks / median nearest-other distance within train.

    Near 0: generated networks are near-copies of training networks; about 1: they are as far from the
    training set as training networks are from each other.
    """
    return float(
        nearest_distances(generated, train).median() / nearest_distances(train, train, True).median()
    )
