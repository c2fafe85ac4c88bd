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

    n, k = len(query), _candidates(arch, query, pool, candidates)
    plain = torch.cdist(query.double(), pool.double())
    cols = plain.topk(k, dim=1, largest=False).indices  # [N, k]
    qi, pj = torch.arange(n).repeat_interleave(k), cols.flatten()
    spec = matching_spec(arch, permute_residual)
    dist = _aligned_distances(arch, spec, query, pool, qi, pj, max_iter, chunk_weights)
    out = plain.clone()
    out[qi, pj] = torch.minimum(out[qi, pj], dist)
    return out.float()


def _candidates(arch: ArchSpec, query: Tensor, pool: Tensor, candidates: int | None) -> int:
    """How many pool networks each query is aligned to (``invariant_distances``), the shapes checked."""
    n, m, d = len(query), len(pool), arch.num_params
    if query.dim() != 2 or pool.dim() != 2 or query.shape[1] != d or pool.shape[1] != d:
        raise DWFError(
            f"novelty: weights must be [N, {d}] for {arch.name}, got {tuple(query.shape)} and {tuple(pool.shape)}"
        )
    if candidates is None:
        candidates = m if n * m * d <= ALL_PAIRS_BUDGET else 16
    return min(candidates, m)


def _aligned_distances(arch: ArchSpec, spec, query: Tensor, pool: Tensor, qi: Tensor, pj: Tensor,
                       max_iter: int | None, chunk_weights: float = 5e7) -> Tensor:  # fmt: skip
    """``[P]`` float64 aligned distances of the pairs ``(query[qi], pool[pj])``, matched in batches of about
    ``chunk_weights`` weights (a pair's result does not depend on its batch)."""
    from ..matching.canonicalize import DEFAULT_ITERATIONS, method_of
    from ..matching.weight_matching import matched_inner_products
    from ..scoring import stack_matrix

    max_iter = max_iter or DEFAULT_ITERATIONS[method_of(spec)]
    q_st, p_st = stack_matrix(arch, query), stack_matrix(arch, pool)  # key -> [N or M, ...] views
    # ||pi(q) - p||^2 = |q|^2 + |p|^2 - 2 <pi(q), p>: the matcher's objective is <pi(q), p> over the keys
    # it permutes; the rest of the inner product is unchanged by pi.
    fixed = _unpermuted(arch, spec)
    q64, p64 = query.double(), pool.double()
    sq_q, sq_p = (q64**2).sum(1), (p64**2).sum(1)
    out, step, keys = [], max(1, int(chunk_weights // arch.num_params)), spec.axes_to_perm
    for s in range(0, len(qi), step):
        a, b = qi[s : s + step], pj[s : s + step]
        inner = matched_inner_products(
            spec, {k: p_st[k][b] for k in keys}, {k: q_st[k][a] for k in keys}, max_iter=max_iter
        )
        inner += (q64[a][:, fixed] * p64[b][:, fixed]).sum(1)
        out.append((sq_q[a] + sq_p[b] - 2 * inner).clamp_min(0).sqrt())
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


def _unpermuted(arch: ArchSpec, spec) -> Tensor:
    """``[D]`` bool: the weights of keys the matcher does not permute."""
    fixed = torch.zeros(arch.num_params, dtype=torch.bool)
    for info in arch.layout:
        fixed[info.offset : info.offset + info.numel] = info.key not in spec.axes_to_perm
    return fixed


def _distance_bounds(arch: ArchSpec, spec, query: Tensor, pool: Tensor, qi: Tensor, pj: Tensor,
                     chunk_weights: float = 5e7) -> Tensor:  # fmt: skip
    """``[P]`` lower bounds of every aligned distance of the pairs ``(query[qi], pool[pj])``, from upper bounds
    of ``max_pi <pi(q), p>``: a permutation's units (the slices of the keys it alone permutes) paired by each
    row's or column's best inner product, not one-to-one; a key permuted on two axes by Cauchy-Schwarz per
    unit and the units' norms paired in sorted order (the rearrangement inequality); the rest exactly.
    Computed in batches of about ``chunk_weights`` weights."""
    from ..matching.weight_matching import _rows
    from ..scoring import stack_matrix

    q_st, p_st = stack_matrix(arch, query), stack_matrix(arch, pool)
    single: dict[str, list[str]] = {}
    for key, axes in spec.axes_to_perm.items():
        perms = [p for p in axes if p is not None]
        if len(perms) == 1:
            single.setdefault(perms[0], []).append(key)

    def units(
        st: dict[str, Tensor], key: str, rows: Tensor
    ) -> Tensor:  # [P, n, rest] along the permuted axis
        axis = next(a for a, p in enumerate(spec.axes_to_perm[key]) if p is not None)
        return _rows(st[key][rows].double(), axis)

    q64, p64, fixed = query.double(), pool.double(), _unpermuted(arch, spec)
    out, step = [], max(1, int(chunk_weights // arch.num_params))
    for s in range(0, len(qi), step):
        a, b = qi[s : s + step], pj[s : s + step]
        bound = (q64[a][:, fixed] * p64[b][:, fixed]).sum(1)
        for keys in single.values():
            cost = (
                torch.cat([units(q_st, k, a) for k in keys], 2)
                @ torch.cat([units(p_st, k, b) for k in keys], 2).mT
            )
            bound += torch.minimum(cost.amax(2).sum(1), cost.amax(1).sum(1))
        for key, axes in spec.axes_to_perm.items():
            if sum(p is not None for p in axes) == 1:
                continue
            if all(p is None for p in axes):
                bound += (q_st[key][a].double() * p_st[key][b].double()).flatten(1).sum(1)
                continue
            nq, np_ = (units(st, key, r).norm(dim=2).sort(dim=1).values for st, r in ((q_st, a), (p_st, b)))
            bound += (nq * np_).sum(1)
        sq = (q64[a] ** 2).sum(1) + (p64[b] ** 2).sum(1)
        out.append((sq - 2 * bound).clamp_min(0).sqrt())
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


def nearest_invariant(
    arch: ArchSpec,
    query: Tensor,
    pool: Tensor,
    exclude_self: bool = False,
    candidates: int | None = None,
    max_iter: int | None = None,
    permute_residual: bool = True,
) -> Tensor:
    """``[N]``: exactly ``nearest(invariant_distances(arch, query, pool, ...), exclude_self)``, without matching
    the pairs that cannot be nearest: a pair whose lower bound (``_distance_bounds``) exceeds its row's best
    distance so far is skipped. A first round matches each row's most promising pair, a second what is left.
    ``bench_speed.py``: the demo's report matches about a third of its pairs, with the same figures."""
    from ..matching import matching_spec

    n, k = len(query), _candidates(arch, query, pool, candidates)
    if exclude_self and n < 2:
        raise DWFError("need at least two networks to compare a set with itself")
    plain = torch.cdist(query.double(), pool.double())
    todo = torch.zeros_like(plain, dtype=torch.bool).scatter_(
        1, plain.topk(k, 1, largest=False).indices, True
    )
    if exclude_self:
        plain.fill_diagonal_(float("inf"))
        todo.fill_diagonal_(False)
    best = plain.min(1).values  # every aligned distance is at most the plain one
    spec = matching_spec(arch, permute_residual)
    bound = torch.full_like(plain, float("inf"))
    qi, pj = todo.nonzero().unbind(1)
    bound[qi, pj] = _distance_bounds(arch, spec, query, pool, qi, pj)
    first = True
    while True:
        todo &= bound <= best[:, None] * (1 + 1e-9) + 1e-12  # a margin for rounding: a tie is never skipped
        if not todo.any():
            return best.float()
        take = todo
        if first:  # each row's most promising pair: its best distance then prunes most of the others
            lowest = torch.where(todo, bound, float("inf")).argmin(1, keepdim=True)
            take = torch.zeros_like(todo).scatter_(1, lowest, True) & todo
        qi, pj = take.nonzero().unbind(1)
        best.scatter_reduce_(0, qi, _aligned_distances(arch, spec, query, pool, qi, pj, max_iter), "amin")
        todo, first = todo & ~take, False


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


MEMO_WEIGHTS = 10_000_000  # sets up to this many weights (with their pool) have their nearest distances kept


def _content_key(query: Tensor, pool: Tensor, args: tuple) -> tuple:
    import hashlib

    digest = [hashlib.sha1(t.detach().contiguous().numpy().tobytes()).hexdigest() for t in (query, pool)]
    return (*digest, tuple(query.shape), tuple(pool.shape), args)


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
        self._memo: dict[tuple, Tensor] = {}
        self.train_nn = self.nearest(self.train, self.train, exclude_self=True)  # [M]
        self.scale = float(self.train_nn.median())
        self._calibration: float | None = None  # of the held-out ratio, computed on first use
        if self.heldout is not None and len(self.heldout) < 2:
            raise DWFError("the held-out ratio needs at least two held-out networks")
        if self.scale <= 0:
            raise DWFError("novelty: the training zoo holds only copies of one network (zero distances)")

    def distances(self, query: Tensor, pool: Tensor, candidates: int | None = None) -> Tensor:
        """``[N, M]``: ``invariant_distances`` with this scorer's settings (``candidates`` overrides its own)."""
        return invariant_distances(
            self.arch, query, pool, candidates or self.candidates, self.max_iter, self.permute_residual
        )

    def nearest(
        self, query: Tensor, pool: Tensor, exclude_self: bool = False, candidates: int | None = None
    ) -> Tensor:
        """``[N]`` permutation-invariant distance of each query network to its nearest one in ``pool``
        (``nearest_invariant`` with this scorer's settings; ``candidates`` overrides its own). Results for
        small sets are kept by content: a report asks again for the sets it scored (its figures)."""
        args = (exclude_self, candidates or self.candidates)
        key = _content_key(query, pool, args) if query.numel() + pool.numel() <= MEMO_WEIGHTS else None
        if key is None or key not in self._memo:
            found = nearest_invariant(self.arch, query, pool, *args, self.max_iter, self.permute_residual)
            if key is None:
                return found
            self._memo[key] = found
        return self._memo[key]

    def score(self, weights: Tensor, diversity: bool = True, heldout: bool = True) -> dict[str, float]:
        """``novelty_ratio``, ``diversity_ratio`` and (with held-out members, unless ``heldout`` is False —
        for scoring the held-out members themselves) ``heldout_ratio`` of ``weights [N, D]``, plus the
        medians they are made of."""
        nn_train = self.nearest(weights, self.train)
        out = {
            "novelty_ratio": float(nn_train.median()) / self.scale,
            "novelty_interval": median_ratio_interval(nn_train, self.scale),
            "nn_train_median": float(nn_train.median()),
        }
        if diversity and len(weights) > 1:
            nn_self = self.nearest(weights, weights, exclude_self=True)
            out["diversity_ratio"] = float(nn_self.median()) / self.scale
            out["diversity_interval"] = median_ratio_interval(nn_self, self.scale)
        if heldout and self.heldout is not None:
            out.update(self._heldout(weights, nn_train))
        return out

    def _heldout(self, weights: Tensor, seen: Tensor) -> dict[str, float]:
        """``(median d(g, seen) / median d(g, held out))`` for the generated networks ``g``, over the same
        ratio for the held-out members themselves (each against the other held-out ones): that calibration
        takes out the effect of the seen pool being larger, so a network drawn like the zoo members scores ~1."""
        if self._calibration is None:
            to_seen = self.nearest(self.heldout, self.train)
            among = self.nearest(self.heldout, self.heldout, exclude_self=True)
            self._calibration = float(to_seen.median()) / float(among.median())
        unseen = self.nearest(weights, self.heldout)
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
