"""Generators on the accuracy–novelty plane: score a set of networks, sweep the baselines' knobs, and
find the baseline setting whose novelty matches a generated set's, so accuracy is compared at equal novelty.

Every set is scored the same way: task metric on one split, permutation-invariant novelty, diversity and
held-out ratio (``novelty.NoveltyScorer``) against the networks the generator was fitted on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

import torch
from torch import Tensor

from ..scoring import function_values, metric_of_outputs, outputs_many
from ..zoo.weight_zoo import WeightZoo
from .baselines import ZooBaseline
from .metrics import nearest, summarize
from .novelty import NoveltyScorer, function_distances, median_ratio_interval

NOISE_GRID: tuple[dict[str, float], ...] = tuple(
    {"sigma": s} for s in (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0)
)
INTERPOLATION_GRID: tuple[dict[str, float], ...] = (
    *({"alpha": a, "k": 2} for a in (0.1, 0.2, 0.3, 0.4, 0.5)),
    {"alpha": 2 / 3, "k": 3},
    {"alpha": 3 / 4, "k": 4},
)
MEAN_NOISE_GRID: tuple[dict[str, float], ...] = tuple({"sigma": s} for s in (0.0, 0.1, 0.2, 0.3, 0.5, 0.75))
GAUSSIAN_GRID: tuple[dict[str, float], ...] = tuple(
    {"scale": s} for s in (0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0, 1.5)
)
GRIDS = {
    "noise": NOISE_GRID,
    "interpolation": INTERPOLATION_GRID,
    "mean_noise": MEAN_NOISE_GRID,
    "gaussian": GAUSSIAN_GRID,
}
COPIES = {"noise": {"sigma": 0.0}, "interpolation": {"alpha": 0.0, "k": 2}}  # novelty 0: the zoo itself
QUICK_CANDIDATES = 8  # sweeps align each network to its 8 nearest training networks only
MATCH_TOLERANCE = 0.05  # novelty ratios this close (relative, above 1) count as matched
REFINE_STEPS = 2  # more full-size draws when the first matched setting misses (steep or curved sweeps)
# a network fails below the worst fitted member's metric minus this (issue 12's floor for the worst network)
FAILED_MARGIN = 0.05


@dataclass
class Frontier:
    """Scores sets against ``seen`` (the canonical networks a generator was fitted on) on ``(x, y)``.

    ``heldout``: zoo members the generator never saw (for ``heldout_ratio``); ``num_networks`` and ``seed``:
    how many baseline networks are drawn for each setting; ``sweep_networks``: fewer for the sweeps' settings,
    which only locate the matched setting (each matched setting is drawn at ``num_networks`` and fully scored:
    BatchNorm nets are recalibrated one by one, so a conv net's report on a CPU is mostly its sweeps);
    ``recalibrate_units``: baselines reset their networks' hidden units to their parents' statistics (set it when
    the generated set's units were recalibrated).
    """

    seen: WeightZoo
    x: Tensor
    y: Tensor
    heldout: WeightZoo | None = None
    num_networks: int = 100
    seed: int = 0
    sweep_networks: int | None = None
    recalibrate_units: bool = False
    scorer: NoveltyScorer = field(init=False)

    def __post_init__(self) -> None:
        held = self.heldout.to_matrix() if self.heldout is not None else None
        train = self.seen.to_matrix()  # read once: every baseline setting is built from it
        self.seen = WeightZoo.from_matrix(self.seen.arch, train, recipe=self.seen.recipe, info=self.seen.info)
        self.scorer = NoveltyScorer(self.seen.arch, train, held)
        self.metric = self.seen.arch.metric
        self._baselines: dict[tuple, Tensor] = {}  # (kind, knob) -> weights: a matched setting is drawn once
        self._parent_statistics: Tensor | None = None  # seen networks' unit statistics, once
        self._span_coefficients: Tensor | None = None  # the gaussian baseline's in-span parts, once
        self._seen_functions: Tensor | None = None  # seen networks' function values on x [M, B, C], once
        self._function_scale = 0.0
        self._failure_threshold = 0.0  # metric below which a network counts as failed (``FAILED_MARGIN``)
        self.bar: Any = None  # a progress bar (tqdm) advanced by every score

    def score(
        self, weights: Tensor, quick: bool = False, heldout: bool = True, diversity: bool = True
    ) -> dict[str, Any]:
        """Task metric summary (``mean``, ``std``, ``min``, ``max``) and novelty figures of ``weights [N, D]``;
        ``quick``: novelty (and diversity, if asked) only, from each network's nearest candidates (for sweeps);
        ``heldout=False``: no held-out ratio (for the held-out members themselves); ``diversity=False``: no
        diversity ratio.
        Every score has ``function_novelty_ratio`` (``None`` if the seen networks all compute one function) and its
        95 % bootstrap interval (``function_novelty_interval``; ``novelty.median_ratio_interval``), ``failed_share``
        (networks below the worst seen network's metric by more than ``FAILED_MARGIN``) and
        ``working_function_novelty_ratio`` (the function novelty of the others: a broken network computes a
        function far from every member, so the plain figure counts failures as new); full scores have the other
        ratios' intervals too (``novelty_interval``, ...)."""
        self._seen_outputs()
        outputs = outputs_many(self.seen.arch, weights, self.x)
        values = metric_of_outputs(self.seen.arch, outputs, self.y)
        working = values >= self._failure_threshold
        out: dict[str, Any] = {
            "metric": self.metric,
            **summarize(values),
            "failed_share": 1.0 - float(working.float().mean()),
        }
        if quick:
            nn = self.scorer.nearest(weights, self.scorer.train, candidates=QUICK_CANDIDATES)
            out["novelty_ratio"] = float(nn.median()) / self.scorer.scale
            if diversity:
                among = self.scorer.nearest(weights, weights, exclude_self=True, candidates=QUICK_CANDIDATES)
                out["diversity_ratio"] = float(among.median()) / self.scorer.scale
        else:
            out.update(self.scorer.score(weights, diversity, heldout))
        out.update(self.function_novelty(outputs, working))
        if self.bar is not None:
            self.bar.update()
        return out

    def function_novelty(self, outputs: Tensor, working: Tensor) -> dict[str, Any]:
        """``function_novelty_ratio``: median function distance from networks with ``outputs [N, B, C]`` on ``x``
        to their nearest seen network, over the seen networks' own median nearest-other function distance;
        ``function_novelty_interval``: its bootstrap interval; ``working_function_novelty_ratio``: the same over
        the networks where ``working [N]`` (``None`` if none; all ``None`` if the seen networks all compute one
        function)."""
        self._seen_outputs()
        keys = ("function_novelty_ratio", "function_novelty_interval", "working_function_novelty_ratio")
        if self._function_scale <= 0:
            return dict.fromkeys(keys)
        to_seen = nearest(function_distances(function_values(self.seen.arch, outputs), self._seen_functions))
        scale = self._function_scale
        ratios = (float(to_seen.median()) / scale, median_ratio_interval(to_seen, scale),
                  float(to_seen[working].median()) / scale if working.any() else None)  # fmt: skip
        return dict(zip(keys, ratios, strict=True))

    def _seen_outputs(self) -> None:
        """The seen networks' function values, nearest-other function distance and failure threshold, once."""
        if self._seen_functions is not None:
            return
        outputs = outputs_many(self.seen.arch, self.scorer.train, self.x)
        self._seen_functions = function_values(self.seen.arch, outputs)
        among = nearest(function_distances(self._seen_functions, self._seen_functions), exclude_self=True)
        self._function_scale = float(among.median())
        worst = float(metric_of_outputs(self.seen.arch, outputs, self.y).min())
        self._failure_threshold = worst - FAILED_MARGIN

    def baseline_weights(self, kind: str, knob: dict[str, float], num_networks: int | None = None) -> Tensor:
        """``num_networks`` (default ``self.num_networks``) networks of baseline ``kind`` at ``knob``,
        recalibrated like generated ones."""
        num_networks = num_networks or self.num_networks
        key = (kind, num_networks, *sorted(knob.items()))
        if key not in self._baselines:
            baseline = ZooBaseline(self.seen, kind, **knob, recalibrate_units=self.recalibrate_units,
                                   parent_statistics=self._parent_statistics,
                                   span_coefficients=self._span_coefficients)  # fmt: skip
            gen = torch.Generator().manual_seed(self.seed)
            self._baselines[key] = baseline(num_networks, generator=gen, output_type="state_dict").weights
            self._parent_statistics = baseline.parent_statistics  # computed once, shared by every setting
            self._span_coefficients = baseline.span_coefficients
        return self._baselines[key]

    def sweep(
        self, kind: str, grid: tuple[dict[str, float], ...] | None = None, diversity: bool = False
    ) -> list[dict[str, Any]]:
        """Quick scores of baseline ``kind`` over its grid (default ``GRIDS[kind]``), one row per setting
        (``diversity``: with a quick diversity ratio, for matching on it), from ``sweep_networks`` networks each."""
        n = min(self.sweep_networks or self.num_networks, self.num_networks)
        return [
            {
                "knob": dict(knob),
                **self.score(self.baseline_weights(kind, knob, n), quick=True, diversity=diversity),
            }
            for knob in grid or GRIDS[kind]
        ]

    def matched(
        self,
        kind: str,
        novelty: float,
        sweep: list[dict[str, Any]] | None = None,
        diversity: bool = True,
        key: str = "novelty_ratio",
    ) -> dict[str, Any]:
        """Baseline ``kind`` at the setting whose novelty (``key``: ``novelty_ratio`` or
        ``function_novelty_ratio``; or ``diversity_ratio``, given a sweep that has it) is closest to ``novelty``,
        fully scored: the knob interpolated between the two settings that bracket it, then, while the drawn set
        misses by more than ``MATCH_TOLERANCE``, re-interpolated with that set as one more setting (at most
        ``REFINE_STEPS`` times; the closest set is kept). ``reached`` is False when no setting of the grid is
        as novel: the row is then the most novel setting; ``too_novel`` is True when every setting is more novel
        (``mean_noise``, ``gaussian``: they cannot copy the zoo): the row is then the least novel setting."""
        sweep = sweep or self.sweep(kind)
        copies = [{"knob": COPIES[kind], key: 0.0}] if kind in COPIES and key != "diversity_ratio" else []
        tol = MATCH_TOLERANCE * max(1.0, novelty)
        points, tried = [*copies, *sweep], []
        knob = _interpolate_knob(points, novelty, key)
        while knob not in (t["knob"] for t in tried) and len(tried) <= REFINE_STEPS:
            if tried and self.bar is not None:
                self.bar.total += 1  # the bar counted one set per matched setting
            row = {
                "kind": kind,
                "knob": knob,
                **self.score(self.baseline_weights(kind, knob), diversity=diversity),
            }
            tried.append(row)
            if row[key] is None or abs(row[key] - novelty) <= tol:
                break
            points = sorted([*points, row], key=_knob_order)
            knob = _interpolate_knob(points, novelty, key)
        row = min(tried, key=lambda r: abs(r[key] - novelty) if r[key] is not None else float("inf"))
        row["reached"] = row[key] is not None and row[key] >= novelty - tol
        floor = min((r[key] for r in [*copies, *sweep] if r[key] is not None), default=0.0)
        row["too_novel"] = novelty < floor - tol
        return row


def _knob_order(row: dict[str, Any]) -> tuple[float, ...]:
    """Sort key of a sweep row: by ``k`` (interpolation), then by the knob's value."""
    return (row["knob"].get("k", 0), *(v for n, v in sorted(row["knob"].items()) if n != "k"))


def _interpolate_knob(
    sweep: list[dict[str, Any]], target: float, key: str = "novelty_ratio"
) -> dict[str, float]:
    """The knob between two consecutive grid rows whose quick ``key`` values bracket ``target`` (linear in the
    knob; rows of different ``k`` are not mixed: the nearer one is taken), else the nearest end's: the least
    novel row's below every row, the most novel row's above."""
    sweep = [r for r in sweep if r[key] is not None]
    if sweep and target < min(r[key] for r in sweep):
        return dict(min(sweep, key=lambda r: r[key])["knob"])
    for a, b in pairwise(sweep):
        lo, hi = a[key], b[key]
        if min(lo, hi) <= target <= max(lo, hi) and hi != lo:
            if a["knob"].get("k") != b["knob"].get("k"):
                return dict(a["knob"] if abs(lo - target) <= abs(hi - target) else b["knob"])
            f = (target - lo) / (hi - lo)
            return {n: (v + f * (b["knob"][n] - v) if n != "k" else v) for n, v in a["knob"].items()}
    return dict(max(sweep, key=lambda r: r[key])["knob"])


def compare(generated: dict[str, Any], baseline: dict[str, Any], n: int = 100) -> dict[str, Any]:
    """Where the generated set stands against ``baseline`` (a ``Frontier.matched`` row). ``verdict``: ``ahead``
    when, at matched novelty, its mean metric is higher by more than twice the difference's standard error
    (``significant``; ``n`` networks per set, the test split shared), or when the baseline cannot reach its
    novelty and it is at least as good there (it dominates); ``behind`` when lower beyond that noise; else
    ``tie``. ``beats``: ``ahead`` — only significant wins count. When every setting of the baseline is more
    novel (``too_novel``) the generated set cannot be ahead: ``comparable`` is then False unless the baseline is
    also at least as good (it dominates the generated set)."""
    d = generated["mean"] - baseline["mean"]
    too_novel = bool(baseline.get("too_novel", False))
    se = ((generated.get("std", 0.0) ** 2 + baseline.get("std", 0.0) ** 2) / n) ** 0.5
    significant = bool(abs(d) > 2 * se)
    dominates = not too_novel and not baseline["reached"] and d >= 0
    verdict = ("ahead" if dominates or (not too_novel and d > 0 and significant)
               else "behind" if d < 0 and significant else "tie")  # fmt: skip
    return {"beats": verdict == "ahead", "verdict": verdict, "difference": d, "significant": significant,
            "comparable": not too_novel or d <= 0}  # fmt: skip
