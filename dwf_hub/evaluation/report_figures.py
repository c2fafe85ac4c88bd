"""The report's figures: accuracy ECDFs, accuracy vs. mIoU (paper Figure 2), nearest-neighbour distances, and
the accuracy–novelty plane with the baselines' sweeps and matched points."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import Tensor

from . import metrics
from .verdict import INTERVALS, unit

MIOU_MIN_SAMPLES = 100  # below this many test samples the accuracy-vs-mIoU scatter stacks on a few values


def _figures(
    root: Path,
    sets: dict[str, Tensor],
    acc: dict[str, Tensor],
    preds: dict[str, Tensor] | None,
    y: Tensor,
    summary: dict[str, Any],
    scorer=None,
) -> dict[str, str]:
    """The report's PNG figures in ``root`` (``name -> file``); ``scorer`` (a ``NoveltyScorer``): the
    nearest-neighbour distances are its permutation-invariant ones, in units of the zoo's own (the novelty ratio's
    scale), else plain L2 in canonical space."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # per-network figures: the function- and diversity-matched baselines would crowd the legends (they are in the tables
    # and on the accuracy-vs-novelty panels)
    names = [k for k in sets if not k.endswith(("function-matched)", "diversity-matched)"))]
    metric = summary["metric"]
    scale, suffix = unit(metric)
    files = {}
    fig, ax = plt.subplots(figsize=(6, 4))
    for k in names:  # ECDFs: overlaid histograms of a few possible values (a 30-sample split) are unreadable
        ax.ecdf(scale * acc[k].numpy(), label=k)
    ax.set(xlabel=f"{summary['split']} {metric}{suffix}", ylabel="share of networks at or below",
           title=f"{metric.capitalize()} (empirical distribution)")  # fmt: skip
    ax.legend(fontsize=7)
    files[f"{metric} distribution"] = _save(fig, root / "accuracy_hist.png")
    if preds is not None and len(y) >= MIOU_MIN_SAMPLES:  # on a few samples the IoUs stack on a few values
        fig, ax = plt.subplots(figsize=(6, 4))
        for k in names:
            iou = metrics.max_wrong_iou(preds[k], preds["zoo"], y, same=k == "zoo")
            ax.scatter(iou.numpy(), scale * acc[k].numpy(), s=12, alpha=0.6, label=k)
        ax.set(xlabel="max IoU of wrong predictions with a zoo network", ylabel=f"{metric}{suffix}",
               title="Accuracy vs. mIoU (paper Figure 2)")  # fmt: skip
        ax.legend(fontsize=7)
        files["accuracy vs mIoU"] = _save(fig, root / "accuracy_vs_miou.png")

    files["nearest-neighbour distances"] = _nearest_figure(plt, root, sets, names, scorer)

    fig, axes = plt.subplots(1, 2, figsize=(12, 6.5))
    for ax, key in zip(axes, ("novelty_ratio", "function_novelty_ratio"), strict=True):
        plot_frontier(ax, summary, key)
    # one legend under both panels: inside an axis it covered the generated point (ResNet-20, ViT reports)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=4, fontsize=8)
    fig.subplots_adjust(bottom=0.36, wspace=0.25)
    files["accuracy vs novelty"] = _save(fig, root / "accuracy_vs_novelty.png")
    return files


MATCH_MARKERS = {"(matched)": "x", "(function-matched)": "+", "(diversity-matched)": "D"}


def plot_frontier(ax, summary: dict[str, Any], key: str = "novelty_ratio") -> None:
    """The accuracy–novelty plane (``key``: weight or function novelty), log x: each baseline's sweep as a thin line,
    its matched settings in the line's colour with one marker per kind of match (weight ×, function +, diversity ◆),
    the held-out members as a band of their novelty's interval, and every scored set with its 95 % interval of the
    mean (the generated set a large star)."""
    scale, suffix = unit(summary["metric"])
    colours, others = {}, iter(f"C{i}" for i in range(len(summary["sweeps"]), 10))
    for kind, rows in summary["sweeps"].items():
        pts = [(r[key], scale * r["mean"]) for r in rows if r.get(key)]
        if pts:
            colours[kind] = ax.plot(*zip(*pts), "-", lw=0.8, alpha=0.6, label=f"{kind} (sweep)")[
                0
            ].get_color()
    held = summary.get(INTERVALS.get(key, ""), {}).get("held-out zoo members")
    if held:
        ax.axvspan(*held, color="grey", alpha=0.15, label="held-out members (novelty interval)")
    for name, stats in summary["accuracy"].items():
        nov = summary[key].get(name)
        if not nov:  # the zoo itself sits at 0, off a log axis
            continue
        kind, match = name.split(" (")[0], next((m for m in MATCH_MARKERS if name.endswith(m)), None)
        ci = 1.96 * scale * stats.get("std", 0.0) / max(stats.get("n", 100), 1) ** 0.5
        if match and kind in colours:
            ax.errorbar([nov], [scale * stats["mean"]], yerr=ci, fmt=MATCH_MARKERS[match], color=colours[kind],
                        ms=7, zorder=3, label=f"{kind} {match[1:-1]}")  # fmt: skip
        else:
            mine = name == "generated"
            ax.errorbar([nov], [scale * stats["mean"]], yerr=ci, fmt="*" if mine else "o", ms=14 if mine else 5,
                        color="black" if mine else next(others, "grey"), zorder=4, label=name)  # fmt: skip
    ax.set_xscale("log")
    what = "novelty ratio (permutation-invariant)" if key == "novelty_ratio" else "function novelty ratio"
    ax.set(xlabel=what + ", log scale", ylabel=f"mean {summary['split']} {summary['metric']}{suffix} (95 % CI)",
           title=f"{summary['metric'].capitalize()} vs. {what.split(' (')[0]}")  # fmt: skip


def _save(fig, path: Path) -> str:
    from ..io import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png", bbox_inches="tight")  # no label cut at the edge
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path.name


def _nearest_figure(plt, root: Path, sets: dict[str, Tensor], names: list[str], scorer) -> str:
    """ECDFs of each set's distance to its nearest zoo network (``_figures`` says in which distance)."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for k in names:
        if scorer is None:
            d = metrics.nearest_distances(sets[k], sets["zoo"], exclude_self=k == "zoo")
        elif k == "zoo":
            d = scorer.train_nn / scorer.scale  # each member to its nearest other member, computed already
        else:
            d = scorer.nearest(sets[k], scorer.train) / scorer.scale
        ax.ecdf(d.numpy(), label=f"{k} → zoo")
    what = ("distance to the nearest zoo network\n(permutation-invariant; 1 = the zoo's own median)" if scorer
            is not None else "L2 distance to the nearest zoo network\n(canonical space)")  # fmt: skip
    ax.set(xlabel=what, ylabel="share of networks at or below", title="Nearest-neighbour distances")
    ax.legend(fontsize=7)
    return _save(fig, root / "nn_distance_hist.png")
