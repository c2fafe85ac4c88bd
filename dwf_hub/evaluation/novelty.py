"""Are generated networks new? Permutation-invariant distances to the training zoo.

The distance between two networks is ``min_pi ||pi(a) - b||`` over the architecture's permutation symmetry,
found by aligning ``a`` to ``b`` with weight matching (exact for one hidden layer; for deeper networks
coordinate descent from the identity, so never above the plain distance, which is kept when smaller).
Every set — generated networks, baselines, held-out zoo members — is measured by this one procedure,
whether or not it is canonical, so nothing gains from how it was aligned.

- ``novelty_ratio``: median distance from a network to its nearest training network, over the median
  distance from a training network to its nearest other one. ~0: near-copies; ~1: as new as a member.
- ``diversity_ratio``: the same numerator within the set itself (nearest other generated network).
- ``heldout_ratio``: median distance to the nearest *seen* member over median distance to the nearest
  *held-out* member (zoo members the generator never saw), calibrated by the same ratio for the held-out
  members themselves (each against the other held-out ones), which takes out the effect of the seen pool
  being larger. A generator that generalizes is as close to the unseen members as to the seen ones (~1); one
  that memorizes sits next to seen members (~0); interpolations of seen members land in between.
- Each ratio comes with a 95 % percentile-bootstrap interval over the scored networks (``*_interval``): the
  median of 100 nearest-neighbour distances moves with the draw when they split into near-copies and blends
  (digits MLP: 0.59–0.82 over six draws of one flow).
- ``function_novelty_ratio``: the novelty ratio of what the networks compute rather than of their weights —
  distances between their outputs on the evaluation inputs (``function_distances``). Every weight change that
  keeps the function (permutations, rescaling a ReLU unit's weights in and out) is invisible to it, and so is
  a weight-space correction that moves weights without changing predictions; a network that is merely worse
  also looks new to it, so it is read with the task metric, like the others.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..archs import ArchSpec
from ..errors import DWFError
from .metrics import nearest

# Above this many weights in an N x M pair batch, only each query's nearest candidates are aligned.
ALL_PAIRS_BUDGET = 4e8
CONFIDENCE, RESAMPLES = 0.95, 1000  # the ratios' bootstrap intervals


def invariant_distances(
    arch: ArchSpec,
    query: Tensor,
    pool: Tensor,
    candidates: int | None = None,
    max_iter: int | None = None,
    permute_residual: bool = True,
    chunk_weights: float = 5e7,
) -> Tensor:
    """``[N, M]`` permutation-invariant distances from each row of ``query [N, D]`` to each of ``pool [M, D]``.

    ``candidates``: align each query only to its ``candidates`` nearest pool networks by plain distance
    (the others keep the plain distance, an upper bound); ``None`` aligns all pairs when
    ``N * M * D <= ALL_PAIRS_BUDGET`` and 16 candidates otherwise. Both sets should then be canonical.
    Pairs are matched in batches of about ``chunk_weights`` weights.
    """
    from ..matching import matching_spec
    from ..matching.canonicalize import DEFAULT_ITERATIONS, method_of
    from ..matching.weight_matching import matched_inner_products
    from ..scoring import stack_matrix

    n, m, d = len(query), len(pool), arch.num_params
    if query.dim() != 2 or pool.dim() != 2 or query.shape[1] != d or pool.shape[1] != d:
        raise DWFError(
            f"novelty: weights must be [N, {d}] for {arch.name}, got {tuple(query.shape)} and {tuple(pool.shape)}"
        )
    plain = torch.cdist(query.double(), pool.double())
    if candidates is None:
        candidates = m if n * m * d <= ALL_PAIRS_BUDGET else 16
    k = min(candidates, m)
    cols = plain.topk(k, dim=1, largest=False).indices  # [N, k]
    pairs = torch.stack([torch.arange(n).repeat_interleave(k), cols.flatten()], 1)  # [N k, 2] (query, pool)
    spec = matching_spec(arch, permute_residual)
    max_iter = max_iter or DEFAULT_ITERATIONS[method_of(spec)]
    q_st, p_st = stack_matrix(arch, query), stack_matrix(arch, pool)  # key -> [N or M, ...] views
    # ||pi(q) - p||^2 = |q|^2 + |p|^2 - 2 <pi(q), p>: the matcher's objective is <pi(q), p> over the keys
    # it permutes; the rest of the inner product is unchanged by pi.
    fixed = torch.zeros(d, dtype=torch.bool)
    for info in arch.layout:
        fixed[info.offset : info.offset + info.numel] = info.key not in spec.axes_to_perm
    q64, p64 = query.double(), pool.double()
    sq_q, sq_p = (q64**2).sum(1), (p64**2).sum(1)
    out = plain.clone()
    step, keys = max(1, int(chunk_weights // d)), spec.axes_to_perm
    for s in range(0, len(pairs), step):
        qi, pj = pairs[s : s + step].unbind(1)
        inner = matched_inner_products(
            spec, {k: p_st[k][pj] for k in keys}, {k: q_st[k][qi] for k in keys}, max_iter=max_iter
        )
        inner += (q64[qi][:, fixed] * p64[pj][:, fixed]).sum(1)
        dist = (sq_q[qi] + sq_p[pj] - 2 * inner).clamp_min(0).sqrt()
        out[qi, pj] = torch.minimum(out[qi, pj], dist)
    return out.float()


def function_distances(query: Tensor, pool: Tensor) -> Tensor:
    """``[N, M]`` root-mean-square distance, over shared inputs, between the function values
    (``scoring.function_values``) of each query network ``[N, B, C]`` and each pool network ``[M, B, C]``."""
    b = query.shape[1]
    return (torch.cdist(query.flatten(1).double(), pool.flatten(1).double()) / b**0.5).float()


def median_ratio_interval(numerator: Tensor, denominator: Tensor | float, seed: int = 0) -> list[float]:
    """95 % percentile-bootstrap interval of ``median(numerator) / median(denominator)`` over networks
    (``numerator [N]``; ``denominator [N]``, resampled with it, or a fixed scale); one network: its ratio twice."""
    import numpy as np
    from scipy.stats import bootstrap

    fixed = not isinstance(denominator, Tensor)
    if len(numerator) < 2:
        value = float(numerator.median()) / (denominator if fixed else float(denominator.median()))
        return [value, value]
    data = (
        (numerator.double().numpy(),) if fixed else (numerator.double().numpy(), denominator.double().numpy())
    )

    def ratio(a, b=None, axis=-1):
        return np.median(a, axis=axis) / (denominator if fixed else np.median(b, axis=axis))

    res = bootstrap(data, ratio, paired=not fixed, n_resamples=RESAMPLES, confidence_level=CONFIDENCE,
                    method="percentile", rng=np.random.default_rng(seed))  # fmt: skip
    return [float(res.confidence_interval.low), float(res.confidence_interval.high)]


@dataclass
class NoveltyScorer:
    """Scores sets of networks against one training zoo; its own nearest-neighbour scale is computed once.

    ``train [M, D]``: the networks the generator was fitted on; ``heldout [H, D]``: zoo members it never
    saw (optional, for ``heldout_ratio``).
    """

    arch: ArchSpec
    train: Tensor
    heldout: Tensor | None = None
    candidates: int | None = None
    max_iter: int | None = None
    permute_residual: bool = True

    def __post_init__(self) -> None:
        if len(self.train) < 2:
            raise DWFError("novelty needs a training zoo of at least two networks")
        self.train_nn = nearest(self.distances(self.train, self.train), exclude_self=True)  # [M]
        self.scale = float(self.train_nn.median())
        self._calibration: float | None = None  # of the held-out ratio, computed on first use
        if self.heldout is not None and len(self.heldout) < 2:
            raise DWFError("the held-out ratio needs at least two held-out networks")
        if self.scale <= 0:
            raise DWFError("novelty: the training zoo holds only copies of one network (zero distances)")

    def distances(self, query: Tensor, pool: Tensor, candidates: int | None = None) -> Tensor:
        """``invariant_distances`` with this scorer's settings (``candidates`` overrides its own)."""
        return invariant_distances(
            self.arch, query, pool, candidates or self.candidates, self.max_iter, self.permute_residual
        )

    def score(self, weights: Tensor, diversity: bool = True, heldout: bool = True) -> dict[str, float]:
        """``novelty_ratio``, ``diversity_ratio`` and (with held-out members, unless ``heldout`` is False —
        for scoring the held-out members themselves) ``heldout_ratio`` of ``weights [N, D]``, plus the
        medians they are made of."""
        to_train = self.distances(weights, self.train)
        nn_train = nearest(to_train)
        out = {
            "novelty_ratio": float(nn_train.median()) / self.scale,
            "novelty_interval": median_ratio_interval(nn_train, self.scale),
            "nn_train_median": float(nn_train.median()),
        }
        if diversity and len(weights) > 1:
            nn_self = nearest(self.distances(weights, weights), exclude_self=True)
            out["diversity_ratio"] = float(nn_self.median()) / self.scale
            out["diversity_interval"] = median_ratio_interval(nn_self, self.scale)
        if heldout and self.heldout is not None:
            out.update(self._heldout(weights, to_train))
        return out

    def _heldout(self, weights: Tensor, to_train: Tensor) -> dict[str, float]:
        """``(median d(g, seen) / median d(g, held out))`` for the generated networks ``g``, over the same
        ratio for the held-out members themselves (each against the other held-out ones): that calibration
        takes out the effect of the seen pool being larger, so a network drawn like the zoo members scores ~1."""
        if self._calibration is None:
            to_seen = nearest(self.distances(self.heldout, self.train))
            among = nearest(self.distances(self.heldout, self.heldout), exclude_self=True)
            self._calibration = float(to_seen.median()) / float(among.median())
        seen, unseen = nearest(to_train), nearest(self.distances(weights, self.heldout))
        nn_seen, nn_unseen = float(seen.median()), float(unseen.median())
        interval = median_ratio_interval(seen, unseen) if nn_unseen > 0 else [float("inf")] * 2
        return {
            "heldout_ratio": nn_seen / nn_unseen / self._calibration if nn_unseen > 0 else float("inf"),
            "heldout_interval": [v / self._calibration for v in interval],
            "nn_seen_median": nn_seen,
            "nn_unseen_median": nn_unseen,
        }


def novelty_ratio(arch: ArchSpec, generated: Tensor, train: Tensor) -> float:
    """The permutation-invariant novelty the reports use: median distance of ``generated [N, D]`` to its nearest
    member of ``train [M, D]`` over the members' own median nearest-other distance (``NoveltyScorer``). Near 0:
    near-copies; about 1: as far from the members as they are from each other, however either set is aligned."""
    return NoveltyScorer(arch, train).score(generated, diversity=False)["novelty_ratio"]
