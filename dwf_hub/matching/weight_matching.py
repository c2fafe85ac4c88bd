"""Git Re-Basin weight matching (Ainsworth et al., 2023): coordinate descent over permutations.

Many networks are matched to one reference together: every cost matrix is built for all of them
with one batched matrix product, and a linear assignment is solved only where it can change
something — when a permutation it depends on moved since its last solve. Skipped solves would
have returned the current permutation, so results equal plain coordinate descent with the same
visiting order.

Attention heads (``HeadGroup``s) follow TransFusion (Rinaldi et al., 2025): heads are first paired
by the distance between the singular-value spectra of their Q, K, V blocks (invariant to every
permutation, so the pairing is found once), then each of the group's permutations is solved as one
linear assignment per head pair, restricted to that pair's dimensions.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from ..errors import WeightFormatError
from ..permutations import HeadGroup, PermutationSpec

T = TypeVar("T")


@dataclass
class MatchResult:
    perm: dict[str, Tensor]
    """Permutation name -> indices; ``apply_permutation(spec, perm, other)`` aligns ``other`` to the reference."""
    objective: float
    """``sum_k <reference[k], permuted_other[k]>`` over every key the spec permutes."""
    iterations: int
    """Sweeps until one improved nothing (or ``max_iter``)."""
    aligned: dict[str, Tensor]
    """The permuted tensors of every key the spec names."""


def _rows(w: Tensor, axis: int) -> Tensor:
    """Stacked ``w [M, ...]`` -> ``[M, n, rest]`` with member axis ``axis`` (size n) first."""
    return w.movedim(axis + 1, 1).reshape(w.shape[0], w.shape[axis + 1], -1)


def _permute_rows(w: Tensor, axis: int, members: Tensor, perm: Tensor) -> None:
    """In place: ``w[members[c]] = w[members[c]].index_select(axis, perm[c])`` for stacked ``w [M, ...]``."""
    m, n = w.shape[0], w.shape[axis + 1]
    pre = math.prod(w.shape[1 : axis + 1])
    rows = w.view(m * pre * n, -1)  # one row per (member, leading index, permuted index)
    base = (members.view(-1, 1, 1) * pre + torch.arange(pre).view(1, -1, 1)) * n  # [c, pre, 1]
    rows.index_copy_(
        0, (base + torch.arange(n)).flatten(), rows.index_select(0, (base + perm.unsqueeze(1)).flatten())
    )


def _assignment(cost: np.ndarray) -> np.ndarray:
    """Columns of the maximising assignment of ``cost [n, n]``."""
    return _assignments(cost[None])[0]


def _assignments(cost: np.ndarray) -> np.ndarray:
    """``[T, n]``: columns of the maximising assignment of each ``cost [T, n, n]``.

    Row and column offsets do not change the optimum; taking them out first (for all T at once) makes
    scipy's solver markedly faster on the nearly rank-one costs of BatchNorm'd networks.
    """
    reduced = cost.max(2, keepdims=True) - cost
    reduced -= reduced.min(1, keepdims=True)
    return np.stack([linear_sum_assignment(c)[1] for c in reduced])


def _block_assignment(cost: np.ndarray, heads: np.ndarray) -> np.ndarray:
    """Like ``_assignment`` but reference head ``h`` may only take dimensions of head ``heads[h]``."""
    d = len(cost) // len(heads)
    cols = np.empty(len(cost), dtype=np.int64)
    for h, g in enumerate(heads):
        cols[h * d : (h + 1) * d] = g * d + _assignment(cost[h * d : (h + 1) * d, g * d : (g + 1) * d])
    return cols


def pair_heads(group: HeadGroup, reference: dict[str, Tensor], stacked: dict[str, Tensor]) -> np.ndarray:
    """TransFusion's inter-head matching: ``[M, H]``, the member head paired with each reference head.

    Cost of pairing reference head ``h`` with member head ``g``: the summed Euclidean distances between
    the singular values of their Q, K and V blocks (``stacked``: ``key -> [M, H * dh, ...]``;
    ``reference``: ``key -> [R, H * dh, ...]`` with R = 1 or M).
    """
    h = group.num_heads
    cost = 0.0
    for key in group.spectral_keys:
        ref = reference[key].reshape(
            len(reference[key]), h, -1, reference[key][0, 0].numel()
        )  # [R, H, dh, in]
        other = stacked[key].reshape(len(stacked[key]), h, -1, ref.shape[3])  # [M, H, dh, in]
        s_ref, s_other = torch.linalg.svdvals(ref.double()), torch.linalg.svdvals(other.double())
        cost = cost + torch.cdist(s_ref.expand(len(other), -1, -1), s_other)  # [M, H, H]
    return np.stack([linear_sum_assignment(c)[1] for c in np.asarray(cost)])


def _total(cost: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``sum_r cost[t, r, cols[t, r]]`` -> ``[T]``."""
    return np.take_along_axis(cost, cols[:, :, None], 2)[..., 0].sum(1)


def _dependencies(spec: PermutationSpec) -> dict[str, list[str]]:
    """Permutations each cost matrix depends on (those sharing a key; itself if on two axes of one key)."""
    deps = {}
    for p, axes in spec.perm_to_axes.items():
        found = set()
        for key, axis in axes:
            found |= {q for a, q in enumerate(spec.axes_to_perm[key]) if q is not None and a != axis}
        deps[p] = sorted(found)
    return deps


def weight_matching_many(
    spec: PermutationSpec,
    reference: dict[str, Tensor],
    others: Sequence[dict[str, Tensor]],
    max_iter: int = 100,
    seed: int = 0,
    workers: int | None = None,
) -> list[MatchResult]:
    """Find, for each of ``others``, permutations maximising its inner product with ``reference``.

    Each sweep visits the permutations in a random order (``seed``; the same order for every member)
    and solves one linear assignment per permutation with the others fixed; a member stops after a
    sweep that improves nothing. Members are independent, so ``workers`` threads each take a share of
    them with single-threaded torch; results do not depend on it. The default, two (at most torch's
    thread count), measured best: more threads contend (100 ResNet-20s on 16 cores: 1.2 s with 1–4,
    3.6 s with 8, 5.9 s with 16).
    """
    return _threaded(spec, [reference], others, max_iter, seed, workers)


def weight_matching_pairs(
    spec: PermutationSpec,
    references: Sequence[dict[str, Tensor]],
    others: Sequence[dict[str, Tensor]],
    max_iter: int = 100,
    seed: int = 0,
    workers: int | None = None,
) -> list[MatchResult]:
    """Match ``others[i]`` to ``references[i]`` for every ``i``, all pairs in one batched coordinate
    descent (as ``weight_matching_many``, whose results it equals pair by pair)."""
    if len(references) != len(others):
        raise ValueError(f"{len(references)} references for {len(others)} networks")
    return _threaded(spec, references, others, max_iter, seed, workers)


def _threaded(
    spec: PermutationSpec,
    references: Sequence[dict[str, Tensor]],
    others: Sequence[dict[str, Tensor]],
    max_iter: int,
    seed: int,
    workers: int | None,
) -> list[MatchResult]:
    """``others`` split over ``workers`` threads; ``references``: one shared, or one per network."""

    def group(idx: np.ndarray) -> list[MatchResult]:
        refs = references if len(references) == 1 else [references[i] for i in idx]
        keys = spec.axes_to_perm
        stacked = {k: torch.stack([r[k].detach().float() for r in refs]) for k in keys}
        return _match_group(spec, stacked, [others[i] for i in idx], max_iter, seed, int(idx[0]))

    size = sum(others[0][k].numel() for k in spec.axes_to_perm) if others else 0
    return [r for part in _in_threads(group, len(others), workers, size) for r in part]


def _in_threads(fn: Callable[[np.ndarray], T], n: int, workers: int | None, weights: int) -> list[T]:
    """``fn`` on ``workers`` consecutive shares of ``range(n)`` (default: two, at most torch's thread count,
    when the ``n`` networks of ``weights`` each hold ``MIN_PER_THREAD`` weights per thread), each thread with
    single-threaded torch; results in order."""
    workers = min(workers or min(2, torch.get_num_threads(), max(1, n * weights // MIN_PER_THREAD)), n)
    if workers <= 1:
        return [fn(np.arange(n))]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(fn, np.array_split(np.arange(n), workers)))
    finally:
        torch.set_num_threads(threads)


MIN_PER_THREAD = (
    500_000  # matching 8,000 / 500 / 50 pairs of Iris MLPs (131 weights): 0.12 / 0.018 / 0.0025 s on
)
# one thread, 0.09 / 0.029 / 0.005 s on two: starting threads costs more than small batches gain

MAX_MAGNITUDE = 1e15  # beyond this, float32 products in the matching costs overflow


def _stack_members(
    keys: list[str], others: Sequence[dict[str, Tensor]], first_index: int
) -> dict[str, Tensor]:
    """``key -> [M, ...]`` float copies of the members, refused (naming the network) if not finite or so
    large that the matching costs would overflow."""
    cur = {k: torch.stack([o[k].detach().float() for o in others]) for k in keys}
    _check_members(cur, first_index)
    return cur


def _check_members(cur: dict[str, Tensor], first_index: int) -> None:
    """Refuse stacked members (``key -> [M, ...]``) that are not finite or too large to match (one pass per
    key: each member's extremes, where NaN and Inf show)."""
    for k, w in cur.items():
        lo, hi = torch.aminmax(w.flatten(1), dim=1) if w[0].numel() else (w.new_zeros(len(w)),) * 2
        bad = (~torch.isfinite(lo) | ~torch.isfinite(hi)).nonzero()
        if len(bad):
            raise WeightFormatError(
                f"network {first_index + int(bad[0])}: key {k!r} contains NaN or Inf values"
            )
        huge = ((hi > MAX_MAGNITUDE) | (lo < -MAX_MAGNITUDE)).nonzero()
        if len(huge):
            raise WeightFormatError(
                f"network {first_index + int(huge[0])}: key {k!r} has values beyond {MAX_MAGNITUDE:g} in magnitude"
            )


class _Descent:
    """The state of a batched coordinate descent: ``cur[k] [M, ...]`` (the members with their current
    permutations applied, kept up to date), ``perm[p] [M, n]`` and, per member and permutation, which
    dependency versions it was last solved against (a permutation is re-solved only when one changed)."""

    def __init__(self, spec: PermutationSpec, reference: dict[str, Tensor], cur: dict[str, Tensor]) -> None:
        self.spec, self.ref, self.cur = spec, reference, cur
        self.m = m = len(next(iter(cur.values())))
        self.sizes = spec.perm_sizes({k: v[0] for k, v in reference.items()})
        self.perm = {p: torch.arange(n).repeat(m, 1) for p, n in self.sizes.items()}  # [M, n]
        self.perm_np = {p: v.numpy() for p, v in self.perm.items()}  # the same memory
        self.head_of: dict[
            str, np.ndarray
        ] = {}  # grouped permutation -> [M, H] member head per reference head
        # The reference side of every cost term never changes: reshape it once.
        self.ref_rows = {
            p: [(key, axis, _rows(reference[key], axis)) for key, axis in axes]
            for p, axes in spec.perm_to_axes.items()
        }
        self.shared = len(next(iter(reference.values()))) == 1
        self.deps = _dependencies(spec)
        self.version = {p: np.zeros(m, dtype=np.int64) for p in self.sizes}  # bumped when perm[p][i] changes
        self.solved_at = {p: np.full((m, len(self.deps[p])), -1) for p in self.sizes}
        self.unsolved = {p: np.ones(m, dtype=bool) for p in self.sizes}  # never solved yet

    def pair_heads(self) -> None:
        """Attention layers: pair each reference head with a member head first (TransFusion)."""
        m, sizes = self.m, self.sizes
        for g in self.spec.head_groups:
            for p in (g.qk, g.vo):
                if sizes[p] % g.num_heads:
                    raise WeightFormatError(
                        f"attention layer {g.spectral_keys[0]!r}: {sizes[p]} units do not split into "
                        f"{g.num_heads} heads"
                    )
            heads = pair_heads(g, self.ref, self.cur)
            for p in (g.qk, g.vo):
                d = sizes[p] // g.num_heads
                new = torch.from_numpy(heads[:, :, None] * d + np.arange(d)).reshape(m, -1)
                for key, axis in self.spec.perm_to_axes[p]:
                    _permute_rows(self.cur[key], axis, torch.arange(m), new)
                self.perm[p][:] = new
                self.head_of[p] = heads

    def _cost(self, p: str, todo: np.ndarray) -> np.ndarray:
        """``[len(todo), n, n]`` assignment costs of ``p`` in the original unit order."""
        n, idx = self.sizes[p], None if len(todo) == self.m else torch.from_numpy(todo)
        # Accumulated in place, member unit by reference unit (one matrix product per key: with a shared
        # reference, all members' rows at once), against the current state, whose p axis is already permuted
        # by perm[p]: row j belongs to original unit perm[p][j]; scatter it back to the original order.
        acc = torch.zeros(len(todo), n, n)
        for key, axis, w_a in self.ref_rows[p]:
            rows = _rows(self.cur[key] if idx is None else self.cur[key].index_select(0, idx), axis)
            if self.shared:
                acc.view(-1, n).addmm_(rows.reshape(-1, rows.shape[2]), w_a[0].T)
            else:
                acc.baddbmm_(rows, (w_a if idx is None else w_a.index_select(0, idx)).transpose(1, 2))
        p_now = self.perm[p] if idx is None else self.perm[p][idx]
        in_order = torch.empty_like(acc).scatter_(1, p_now.unsqueeze(2).expand(-1, -1, n), acc)
        return torch.empty(len(todo), n, n, dtype=torch.float64).copy_(in_order.transpose(1, 2)).numpy()

    def solve(self, p: str, active: np.ndarray) -> list[int]:
        """Re-solve ``p`` for the active members whose dependencies changed; returns those improved."""
        deps, m = self.deps[p], self.m
        current = np.stack([self.version[q] for q in deps], 1) if deps else np.zeros((m, 0))
        todo = np.flatnonzero(active & (self.unsolved[p] | (self.solved_at[p] != current).any(1)))
        if len(todo) == 0:
            return []
        self.solved_at[p][todo], self.unsolved[p][todo] = current[todo], False
        cost = self._cost(p, todo)
        if p in self.head_of:
            cols = np.stack([_block_assignment(c, self.head_of[p][i]) for c, i in zip(cost, todo)])
        else:
            cols = _assignments(cost)
        old_val = _total(cost, self.perm_np[p][todo])
        better = _total(cost, cols) > old_val + 1e-7 * np.maximum(1.0, np.abs(old_val))
        changed = todo[better].tolist()
        if changed:
            self._apply(p, changed, torch.from_numpy(cols[better]))
        return changed

    def _apply(self, p: str, changed: list[int], new: Tensor) -> None:
        ch, n = torch.tensor(changed), self.sizes[p]
        old = self.perm[p][ch]
        relative = torch.empty_like(old).scatter_(1, old, torch.arange(n).expand_as(old))
        relative = relative.gather(1, new)  # old^-1 o new, per changed member
        for key, axis in self.spec.perm_to_axes[p]:
            _permute_rows(self.cur[key], axis, ch, relative)
        self.perm[p][ch] = new
        self.version[p][changed] += 1


def _descend(
    spec: PermutationSpec, reference: dict[str, Tensor], cur: dict[str, Tensor], max_iter: int, seed: int
) -> tuple[_Descent, np.ndarray]:
    """Coordinate descent of the stacked members ``cur`` (``key -> [M, ...]``, permuted in place) against
    ``reference`` (``key -> [R, ...]``, R = 1: one shared reference, R = M: one per member); returns the
    final state and each member's number of sweeps."""
    state = _Descent(spec, reference, cur)
    state.pair_heads()
    m, names = state.m, sorted(state.sizes)
    iterations, active = np.full(m, max_iter), np.ones(m, dtype=bool)
    rng = np.random.default_rng(seed)
    for sweep in range(1, max_iter + 1):
        improved = np.zeros(m, dtype=bool)
        for p in rng.permutation(names):
            improved[state.solve(p, active)] = True
        finished = active & ~improved
        iterations[finished] = sweep
        active &= improved
        if not active.any():
            break
    return state, iterations


def _objectives(reference: dict[str, Tensor], cur: dict[str, Tensor]) -> Tensor:
    """``[M]`` float64 ``sum_k <reference[k], cur[k]>`` per member."""
    return sum((cur[k].flatten(1).double() * reference[k].flatten(1).double()).sum(1) for k in cur)


def _match_group(
    spec: PermutationSpec,
    reference: dict[str, Tensor],
    others: Sequence[dict[str, Tensor]],
    max_iter: int,
    seed: int,
    first_index: int = 0,
) -> list[MatchResult]:
    """Coordinate descent for ``others`` against ``reference`` (``key -> [R, ...]``, R = 1 or M)."""
    keys = list(spec.axes_to_perm)
    state, iterations = _descend(spec, reference, _stack_members(keys, others, first_index), max_iter, seed)
    cur, perm, names = state.cur, state.perm, sorted(state.sizes)
    objectives = _objectives(reference, cur)
    aligned = {k: [t.to(others[i][k].dtype) for i, t in enumerate(cur[k].unbind())] for k in keys}
    return [
        MatchResult(
            {p: perm[p][i].clone() for p in names},
            float(objectives[i]),
            int(iterations[i]),
            {k: aligned[k][i] for k in keys},
        )
        for i in range(len(iterations))
    ]


def matched_inner_products(
    spec: PermutationSpec,
    references: dict[str, Tensor],
    others: dict[str, Tensor],
    max_iter: int = 100,
    seed: int = 0,
    workers: int | None = None,
) -> Tensor:
    """``[M]``: the objective ``weight_matching_pairs`` reaches for each pair ``(others[k][i], references[k][i])``
    of stacked networks (``key -> [M, ...]`` over the keys ``spec`` permutes), without building per-pair
    results — for distances between many small networks, where that bookkeeping costs more than the
    matching (``benchmarks/bench_evaluate.py``). ``workers`` as in ``weight_matching_many``."""
    keys = list(spec.axes_to_perm)
    cur = {k: others[k].detach().float() for k in keys}
    _check_members(cur, 0)

    def group(idx: np.ndarray) -> Tensor:
        ref, part = ({k: v[idx] for k, v in d.items()} for d in ({k: references[k] for k in keys}, cur))
        state, _ = _descend(spec, {k: v.float() for k, v in ref.items()}, part, max_iter, seed)
        return _objectives(ref, state.cur)

    return torch.cat(_in_threads(group, len(cur[keys[0]]), workers, sum(v[0].numel() for v in cur.values())))


def weight_matching(
    spec: PermutationSpec,
    reference: dict[str, Tensor],
    other: dict[str, Tensor],
    max_iter: int = 100,
    seed: int = 0,
) -> MatchResult:
    """Match one network to ``reference`` (see ``weight_matching_many``)."""
    return weight_matching_many(spec, reference, [other], max_iter, seed, workers=1)[0]


def objective(spec: PermutationSpec, reference: dict[str, Tensor], aligned: dict[str, Tensor]) -> float:
    return float(sum((reference[k].double() * aligned[k].double()).sum() for k in spec.axes_to_perm))
