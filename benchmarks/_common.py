"""What the benchmark scripts share: cached zoos, the recipe's default flow, baseline sweeps and reading them at a
novelty, the flow sweeps of the frontier benchmark, synthetic zoo rows, and figure panels."""

from __future__ import annotations

import argparse
import json
from itertools import pairwise
from pathlib import Path

import torch

from dwf_hub.evaluation.frontier import Frontier
from dwf_hub.flow.fitting import fit_pipeline
from dwf_hub.matching import canonicalize
from dwf_hub.scoring import score_many
from dwf_hub.zoo.recipes import load_recipe
from dwf_hub.zoo.training import train_zoo
from dwf_hub.zoo.weight_zoo import WeightZoo

DIRECTIONS = 8

# Flow settings swept per zoo (one thing varied at a time around the recipe's default); every fit is also
# sampled at temperatures 0.8 and 1.2.
SWEEPS = {
    "iris_mlp": [
        {"n_components": None, "iterations": it} for it in (500, 1000, 2000, 4000)
    ] + [{"n_components": 0.95, "iterations": it} for it in (500, 1000, 2000)]
    + [{"n_components": 0.99, "iterations": it} for it in (1000, 2000, 4000)]
    + [{"normalization": "none", "source_std": "matched", "iterations": 2000}],
    "digits_mlp": [
        {"n_components": None, "iterations": it} for it in (2000, 8000)
    ] + [{"n_components": f, "iterations": it} for f in (0.95, 0.99) for it in (2000, 8000)],
    # Conv / ViT zoos: a GPU run (`--device cuda`); on 2 CPU cores only the first two settings are affordable.
    **{name: [{"n_components": f} for f in (None, 0.99, 0.95)] for name in ("digits_smallcnn", "digits_resnet20", "digits_vit")},
}  # fmt: skip
TEMPERATURES = (0.8, 1.0, 1.2)


def add_overrides(p: argparse.ArgumentParser) -> None:
    """``--set KEY=VALUE`` (repeatable): flow config overrides; ``overrides(args)`` reads them."""
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="flow config override, e.g. --set coupling=ot --set ema_decay=0.999")  # fmt: skip


def overrides(a: argparse.Namespace) -> dict:
    """The ``--set`` values, JSON where they parse (numbers, true, null), else plain strings."""

    def value(text: str):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text

    return {k: value(v) for k, v in (s.split("=", 1) for s in a.set)}


def margins(r: dict, sweeps: dict[str, list[dict]]) -> list[str]:
    """Per baseline, ``r``'s accuracy minus its sweep's at ``r``'s weight / function novelty, as ``"+a / +b"`` (``(max)``:
    the sweep never gets that novel)."""
    cells = []
    for sweep in sweeps.values():
        out = []
        for key in ("novelty_ratio", "function_novelty_ratio"):
            acc, reached = at_novelty(sweep, r[key], key)
            out.append(f"{100 * (r['mean'] - acc):+.2f}{'' if reached else ' (max)'}")
        cells.append(" / ".join(out))
    return cells


def cached_zoo(recipe: str, root: Path) -> WeightZoo:
    """The benchmark zoo of ``recipe`` (100 members, seed 0) from ``root / recipe / "zoo"``, trained there first
    if it is not cached yet."""
    folder = root / recipe / "zoo"
    return (
        WeightZoo.load(folder) if folder.is_dir() else train_zoo(recipe, 100, folder, seed=0, progress=False)
    )


def default_flow(recipe: str, root: Path, split: str, seed: int = 0):
    """``(pipeline, Frontier)``: the recipe's default flow (``seed``) fitted on the cached zoo's first 80
    canonical members, and the frontier scoring on ``split`` against them (20 held out), baselines recalibrated
    as the flow's samples are."""
    zoo = cached_zoo(recipe, root)
    x, y = zoo.recipe.task.split(split)
    seen, heldout = canonicalize(zoo, progress=False).zoo.split_holdout(20)
    pipe = fit_pipeline(seen, load_recipe(recipe).flow_config(seed=seed), progress=False).pipeline
    return pipe, Frontier(seen, x, y, heldout, recalibrate_units=pipe.codec.has_unit_targets)


def swept(frontier: Frontier, kinds: tuple[str, ...] = ("noise", "interpolation")) -> dict[str, list[dict]]:
    """Each baseline's quick sweep, its rows carrying the fitted members' mean accuracy (``copies_mean``: the
    zero-novelty end of the curve ``at_novelty`` reads)."""
    copies = float(score_many(frontier.seen.arch, frontier.scorer.train, frontier.x, frontier.y).mean())
    return {kind: [{**r, "copies_mean": copies} for r in frontier.sweep(kind)] for kind in kinds}


def panels(n: int, width: float = 6, height: float = 4):
    """``(figure, axes [n])``: one row of ``n`` panels on matplotlib's file-only backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, n, figsize=(width * n, height), squeeze=False)
    return fig, axes[0]


def plot_sweeps(ax, sweeps: dict[str, list[dict]], key: str = "novelty_ratio") -> None:
    """Each baseline's sweep as a dashed line of accuracy (%) against ``key`` (weight or function novelty)."""
    for kind, sweep in sweeps.items():
        ax.plot(*zip(*sorted((r[key], 100 * r["mean"]) for r in sweep)), "o--", ms=4, alpha=0.7, label=kind)


def pm(r: dict, key: str = "") -> str:
    return f"{100 * r[key + 'mean']:.2f} ± {100 * r[key + 'std']:.2f}"


def at_novelty(sweep: list[dict], novelty: float, key: str = "novelty_ratio") -> tuple[float, bool]:
    """A baseline's test accuracy at ``novelty`` (``key``: weight or function novelty) read off its sweep
    (sorted by novelty, linear between settings); ``False`` when the sweep never gets that novel (then its most
    novel setting's accuracy)."""
    pts = sorted(
        [(0.0, sweep[0]["copies_mean"])] + [(r[key], r["mean"]) for r in sweep if r[key] is not None]
    )
    if novelty >= pts[-1][0]:
        return pts[-1][1], False
    for (n0, a0), (n1, a1) in pairwise(pts):
        if n0 <= novelty <= n1:
            return a0 + (a1 - a0) * (novelty - n0) / max(n1 - n0, 1e-12), True
    return pts[0][1], True


def sample(pipe, n: int, seed: int, temperature: float | None = None) -> torch.Tensor:
    """``n`` generated networks (BN recalibrated), the source std scaled by ``temperature`` (None: the
    pipeline's own)."""
    gen = torch.Generator().manual_seed(seed)
    out = pipe(
        num_networks=n, generator=gen, output_type="state_dict", temperature=temperature, quality_check=False
    )
    return out.weights  # the raw flow


def finish_panel(ax, title: str) -> None:
    """Title, accuracy–novelty axis labels and legend of one figure panel."""
    ax.set(title=title, xlabel="novelty ratio (permutation-invariant)", ylabel="mean test accuracy (%)")
    ax.legend(fontsize=7)


def synthetic_rows(n: int, d: int, seed: int = 0):
    """Yields ``[D]`` rows: mean + coefficients @ directions + noise (fixed by ``seed``)."""
    g = torch.Generator().manual_seed(seed)
    mean = torch.randn(d, generator=g) * 0.05
    directions = torch.randn(DIRECTIONS, d, generator=g) * 0.01
    scales = torch.logspace(0, -1, DIRECTIONS)
    for _ in range(n):
        coef = torch.randn(DIRECTIONS, generator=g) * scales
        yield mean + coef @ directions + 0.001 * torch.randn(d, generator=g)
