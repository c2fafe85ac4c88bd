"""Evaluation report: are generated networks both good and new? (paper Table 17 and Figure 2)

``build_report(generated, training_zoo, out)`` writes ``report.md``, ``summary.json`` and PNG figures:
accuracy histograms, accuracy vs. mIoU (Figure 2), nearest-neighbour distance histograms. Every set is
compared in canonical weight space (generated networks re-aligned to the zoo's reference), and the zoo's
networks with Gaussian noise added are the baselines of "near-copies".
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from . import metrics
from .errors import DWFError
from .zoo import WeightZoo

MEMORIZED, PARTLY_NEW = 0.5, 0.8  # novelty-ratio thresholds of the verdict


def verdict(novelty: float, miou: float) -> str:
    """One plain sentence on whether the generated networks are new."""
    if novelty < MEMORIZED:
        return (f"**Generated networks look memorized**: a generated network sits {novelty:.2f}× as far from its "
                f"nearest zoo network as zoo networks sit from each other, and its errors overlap those of a "
                f"zoo network with IoU {miou:.2f} on average.")  # fmt: skip
    if novelty < PARTLY_NEW:
        return (f"Generated networks are partly new: closer to zoo networks than those are to each other "
                f"(novelty ratio {novelty:.2f}), error overlap with the zoo mIoU {miou:.2f}.")  # fmt: skip
    return (f"Generated networks are new: as far from the zoo as its own networks are from each other "
            f"(novelty ratio {novelty:.2f}), error overlap with the zoo mIoU {miou:.2f}.")  # fmt: skip


def build_report(
    generated: WeightZoo,
    reference: WeightZoo,
    out: str | os.PathLike,
    noise: tuple[float, ...] = (),
    split: str = "test",
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """Compare ``generated`` with the training zoo ``reference`` (and noise baselines) into folder ``out``."""
    from .data import load_task
    from .evaluation import aligned_matrices, predict_many
    from .io import write_json, write_text

    if not reference.recipe:
        raise DWFError("the reference zoo has no recipe, so there is no task to evaluate on")
    if generated.arch != reference.arch:
        raise DWFError(f"architectures differ: {generated.arch!r} vs {reference.arch!r}")
    x, y = load_task(reference.recipe["data"]).split(split)
    gen_w, zoo_w = aligned_matrices(generated, reference, progress)
    gen = torch.Generator().manual_seed(seed)
    sets: dict[str, Tensor] = {"zoo": zoo_w, "generated": gen_w}
    for s in noise:
        sets[f"zoo + N(0, {s:g}²)"] = zoo_w + s * torch.randn(zoo_w.shape, generator=gen)
    preds = {k: predict_many(reference.arch, w, x) for k, w in sets.items()}
    acc = {k: (p == y).float().mean(1) for k, p in preds.items()}

    def pair(a: str, b: str) -> dict[str, float]:
        return metrics.set_metrics(sets[a], preds[a], sets[b], preds[b], y, same=a == b)

    table = {"orig→orig": pair("zoo", "zoo"), "orig→gen": pair("zoo", "generated"),
             "gen→orig": pair("generated", "zoo"), "gen→gen": pair("generated", "generated")}  # fmt: skip
    for name in sets:
        if name.startswith("zoo + "):
            table[f"{name}→orig"] = pair(name, "zoo")
    novelty = {k: metrics.novelty_ratio(w, zoo_w) for k, w in sets.items() if k != "zoo"}
    summary = {
        "split": split,
        "num_zoo": len(reference),
        "num_generated": len(generated),
        "accuracy": {k: _stats(v) for k, v in acc.items()},
        "novelty_ratio": novelty,
        "table17": table,
        "verdict": verdict(novelty["generated"], table["gen→orig"]["miou_mean"]),
        "memorized": novelty["generated"] < MEMORIZED,
    }
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    figures = _figures(root, sets, acc, preds, y)
    write_json(root / "summary.json", summary)
    write_text(root / "report.md", _markdown(summary, figures))
    return summary


def _stats(v: Tensor) -> dict[str, float]:
    return {
        "mean": float(v.mean()),
        "std": float(v.std(unbiased=False)),
        "min": float(v.min()),
        "max": float(v.max()),
    }


def _figures(
    root: Path, sets: dict[str, Tensor], acc: dict[str, Tensor], preds: dict[str, Tensor], y: Tensor
):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(sets)
    files = {}
    fig, ax = plt.subplots(figsize=(6, 4))
    for k in names:
        ax.hist(100 * acc[k].numpy(), bins=20, alpha=0.5, label=k)
    ax.set(xlabel="test accuracy (%)", ylabel="networks", title="Accuracy")
    ax.legend()
    files["accuracy histogram"] = _save(fig, root / "accuracy_hist.png")

    fig, ax = plt.subplots(figsize=(6, 4))
    for k in names:
        iou = metrics.max_wrong_iou(preds[k], preds["zoo"], y, same=k == "zoo")
        ax.scatter(iou.numpy(), 100 * acc[k].numpy(), s=12, alpha=0.6, label=k)
    ax.set(xlabel="max IoU of wrong predictions with a zoo network", ylabel="test accuracy (%)",
           title="Accuracy vs. mIoU (paper Figure 2)")  # fmt: skip
    ax.legend()
    files["accuracy vs mIoU"] = _save(fig, root / "accuracy_vs_miou.png")

    fig, ax = plt.subplots(figsize=(6, 4))
    for k in names:
        d = metrics.nearest_distances(sets[k], sets["zoo"], exclude_self=k == "zoo")
        ax.hist(d.numpy(), bins=20, alpha=0.5, label=f"{k} → zoo")
    ax.set(xlabel="L2 distance to the nearest zoo network (canonical space)", ylabel="networks",
           title="Nearest-neighbour distances")  # fmt: skip
    ax.legend()
    files["nearest-neighbour distances"] = _save(fig, root / "nn_distance_hist.png")
    return files


def _save(fig, path: Path) -> str:
    from .io import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, bbox_inches="tight", format="png")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path.name


def _pct(s: dict[str, float]) -> str:
    return (
        f"{100 * s['mean']:.2f} ± {100 * s['std']:.2f} (min {100 * s['min']:.2f}, max {100 * s['max']:.2f})"
    )


def _markdown(summary: dict[str, Any], figures: dict[str, str]) -> str:
    lines = [
        "# Evaluation report",
        "",
        summary["verdict"],
        "",
        f"{summary['num_generated']} generated networks vs. a zoo of {summary['num_zoo']}, on the {summary['split']} split.",
        "",
        "| set | accuracy (%) | novelty ratio |",
        "|---|---|---|",
    ]
    for k, s in summary["accuracy"].items():
        nov = summary["novelty_ratio"].get(k)
        lines.append(f"| {k} | {_pct(s)} | {'–' if nov is None else f'{nov:.3f}'} |")
    lines += [
        "",
        "Set-to-set metrics (paper Table 17; per-network values averaged over the first set, self-pairs left out):",
        "",
        "| from → to | mIoU | NN L2 (mean) | NN L2 (median) | max cosine | Wasserstein | Jensen–Shannon |",
        "|---|---|---|---|---|---|---|",
    ]
    for k, m in summary["table17"].items():
        lines.append(f"| {k} | {m['miou_mean']:.3f} ± {m['miou_std']:.3f} | {m['nn_l2_mean']:.4f} | "
                     f"{m['nn_l2_median']:.4f} | {m['max_cosine_mean']:.4f} | {m['wasserstein']:.5f} | "
                     f"{m['jensen_shannon']:.4f} |")  # fmt: skip
    lines += ["", *[f"![{name}]({file})" for name, file in figures.items()], ""]
    return "\n".join(lines)
