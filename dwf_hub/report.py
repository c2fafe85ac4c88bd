"""Evaluation report: are generated networks both good and new, and better than the trivial generators?

``build_report(generated, training_zoo, out)`` writes ``report.md``, ``summary.json`` and PNG figures. Every
set — generated networks, held-out zoo members, the baselines — is scored the same way (``frontier``): task
metric, permutation-invariant novelty, diversity and held-out ratio (``novelty``). The baselines (zoo +
noise, interpolation of zoo members) are set to the generated networks' novelty, and the verdict says whether
the generator beats each there. Table 17 of the paper (mIoU, nearest-neighbour L2, cosine, Wasserstein,
Jensen–Shannon) is computed in canonical weight space.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch import Tensor

from . import metrics
from .baselines import BASELINES
from .errors import DWFError
from .zoo import WeightZoo

MEMORIZED, PARTLY_NEW = 0.5, 0.8  # novelty-ratio thresholds of the verdict


def verdict(novelty: float, miou: float, baselines: dict[str, dict[str, Any]] | None = None) -> str:
    """Plain sentences: are the generated networks new, and do they beat each baseline at their novelty?"""
    if novelty < MEMORIZED:
        text = (f"**Generated networks look memorized**: a generated network sits {novelty:.2f}× as far from its "
                f"nearest zoo network as zoo networks sit from each other, and its errors overlap those of a "
                f"zoo network with IoU {miou:.2f} on average.")  # fmt: skip
    elif novelty < PARTLY_NEW:
        text = (f"Generated networks are partly new: closer to zoo networks than those are to each other "
                f"(novelty ratio {novelty:.2f}), error overlap with the zoo mIoU {miou:.2f}.")  # fmt: skip
    else:
        text = (f"Generated networks are new: as far from the zoo as its own networks are from each other "
                f"(novelty ratio {novelty:.2f}), error overlap with the zoo mIoU {miou:.2f}.")  # fmt: skip
    for kind, b in (baselines or {}).items():
        knob = ", ".join(f"{k} {v:.3g}" for k, v in b["knob"].items())
        where = (f"at the same novelty ({kind} {knob}: novelty {b['novelty_ratio']:.2f})" if b["reached"] else
                 f"(it reaches at most novelty {b['novelty_ratio']:.2f}, at {knob})")  # fmt: skip
        outcome = "**beats**" if b["beats"] else "**does not beat**"
        noise = "" if b.get("significant", True) else " (a difference within twice its standard error)"
        text += (f" The generator {outcome} the {kind} baseline {where}: {100 * b['mean']:.2f} vs "
                 f"{100 * b['baseline_mean']:.2f}{noise}.")  # fmt: skip
    return text


def build_report(
    generated: WeightZoo,
    reference: WeightZoo,
    out: str | os.PathLike,
    noise: tuple[float, ...] = (),
    split: str = "test",
    holdout: int | None = None,
    baselines: bool = True,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """Compare ``generated`` with the training zoo ``reference`` into folder ``out``.

    ``holdout``: the last members of ``reference`` were not fitted on (default: what ``generated``
    records); ``noise``: extra zoo + noise rows at these relative sigmas; ``baselines``: also find the
    noise and interpolation settings at the generated set's novelty and compare.
    """
    from .evaluation import aligned_matrices
    from .frontier import Frontier
    from .io import write_json, write_text
    from .matching import canonicalize
    from .scoring import predict_many, score_many

    if not reference.recipe:
        raise DWFError("the reference zoo has no recipe, so there is no task to evaluate on")
    if generated.arch != reference.arch:
        raise DWFError(f"architectures differ: {generated.arch!r} vs {reference.arch!r}")
    x, y = reference.recipe.task.split(split)
    if not reference.is_canonical:
        reference = canonicalize(reference, progress=progress).zoo
    holdout = generated.info.get("holdout", 0) if holdout is None else holdout
    seen, heldout = reference.split_holdout(holdout)
    gen_w, _ = aligned_matrices(generated, reference, progress)
    frontier = Frontier(seen, x, y, heldout, num_networks=len(generated), seed=seed)
    zoo_w = frontier.scorer.train
    sets: dict[str, Tensor] = {"zoo": zoo_w, "generated": gen_w}
    scores: dict[str, dict[str, Any]] = {"zoo": frontier.score(zoo_w, quick=True)}
    scores["generated"] = frontier.score(gen_w)
    if heldout is not None:
        sets["held-out zoo members"] = frontier.scorer.heldout
    for s in noise:
        sets[f"noise σ={s:g}"] = frontier.baseline_weights("noise", {"sigma": s})
    for name, w in sets.items():
        scores.setdefault(name, frontier.score(w, heldout=name != "held-out zoo members"))
    sweeps = {kind: frontier.sweep(kind) for kind in (BASELINES if baselines else ())}
    matched = _match_baselines(frontier, sweeps, sets, scores)
    preds = {k: predict_many(reference.arch, w, x) for k, w in sets.items()}

    def pair(a: str, b: str) -> dict[str, float]:
        return metrics.set_metrics(sets[a], preds[a], sets[b], preds[b], y, same=a == b)

    table = {"orig→orig": pair("zoo", "zoo"), "orig→gen": pair("zoo", "generated"),
             "gen→orig": pair("generated", "zoo"), "gen→gen": pair("generated", "generated")}  # fmt: skip
    for name in sets:
        if name not in ("zoo", "generated"):
            table[f"{name}→orig"] = pair(name, "zoo")
    novelty = scores["generated"]["novelty_ratio"]
    summary = {
        "split": split,
        "metric": frontier.metric,
        "num_zoo": len(seen),
        "num_generated": len(generated),
        "holdout": holdout,
        "accuracy": {k: {s: v[s] for s in ("mean", "std", "min", "max")} for k, v in scores.items()},
        "novelty_ratio": {k: v["novelty_ratio"] for k, v in scores.items() if k != "zoo"},
        "diversity_ratio": {k: v.get("diversity_ratio") for k, v in scores.items() if k != "zoo"},
        "heldout_ratio": {k: v.get("heldout_ratio") for k, v in scores.items() if k != "zoo"},
        "baselines": matched,
        "sweeps": sweeps,
        "table17": table,
        "verdict": verdict(novelty, table["gen→orig"]["miou_mean"], matched),
        "memorized": novelty < MEMORIZED,
    }
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    accuracy = {k: score_many(reference.arch, w, x, y) for k, w in sets.items()}
    figures = _figures(root, sets, accuracy, preds, y, summary)
    write_json(root / "summary.json", summary)
    write_text(root / "report.md", _markdown(summary, figures))
    return summary


def _match_baselines(
    frontier,
    sweeps: dict[str, list[dict[str, Any]]],
    sets: dict[str, Tensor],
    scores: dict[str, dict[str, Any]],
) -> dict[str, dict[str, Any]]:
    """Each swept baseline at the generated set's novelty, added to ``sets`` / ``scores`` as ``KIND (matched)``;
    returns the summary rows (the accuracy at a novelty is asked, so no diversity is computed)."""
    from .frontier import compare

    generated, matched = scores["generated"], {}
    for kind, sweep in sweeps.items():
        row = frontier.matched(kind, generated["novelty_ratio"], sweep, diversity=False)
        sets[f"{kind} (matched)"], scores[f"{kind} (matched)"] = (
            frontier.baseline_weights(kind, row["knob"]),
            row,
        )
        matched[kind] = {
            "accuracy_mean": row["mean"], "accuracy_std": row["std"], "novelty_ratio": row["novelty_ratio"],
            "knob": row["knob"], "reached": row["reached"], **compare(generated, row, frontier.num_networks),
            "mean": generated["mean"], "baseline_mean": row["mean"],
        }  # fmt: skip
    return matched


def _figures(
    root: Path,
    sets: dict[str, Tensor],
    acc: dict[str, Tensor],
    preds: dict[str, Tensor],
    y: Tensor,
    summary: dict[str, Any],
) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(sets)
    files = {}
    fig, ax = plt.subplots(figsize=(6, 4))
    for k in names:
        ax.hist(100 * acc[k].numpy(), bins=20, alpha=0.5, label=k)
    ax.set(xlabel=f"test {summary['metric']} (%)", ylabel="networks", title="Accuracy")
    ax.legend(fontsize=7)
    files["accuracy histogram"] = _save(fig, root / "accuracy_hist.png")

    fig, ax = plt.subplots(figsize=(6, 4))
    for k in names:
        iou = metrics.max_wrong_iou(preds[k], preds["zoo"], y, same=k == "zoo")
        ax.scatter(iou.numpy(), 100 * acc[k].numpy(), s=12, alpha=0.6, label=k)
    ax.set(xlabel="max IoU of wrong predictions with a zoo network", ylabel="test accuracy (%)",
           title="Accuracy vs. mIoU (paper Figure 2)")  # fmt: skip
    ax.legend(fontsize=7)
    files["accuracy vs mIoU"] = _save(fig, root / "accuracy_vs_miou.png")

    fig, ax = plt.subplots(figsize=(6, 4))
    for k in names:
        d = metrics.nearest_distances(sets[k], sets["zoo"], exclude_self=k == "zoo")
        ax.hist(d.numpy(), bins=20, alpha=0.5, label=f"{k} → zoo")
    ax.set(xlabel="L2 distance to the nearest zoo network (canonical space)", ylabel="networks",
           title="Nearest-neighbour distances")  # fmt: skip
    ax.legend(fontsize=7)
    files["nearest-neighbour distances"] = _save(fig, root / "nn_distance_hist.png")

    fig, ax = plt.subplots(figsize=(6, 4))
    plot_frontier(ax, summary)
    files["accuracy vs novelty"] = _save(fig, root / "accuracy_vs_novelty.png")
    return files


def plot_frontier(ax, summary: dict[str, Any]) -> None:
    """The accuracy–novelty plane: each baseline's sweep as a line, every scored set as a point."""
    for kind, rows in summary["sweeps"].items():
        ax.plot([r["novelty_ratio"] for r in rows], [100 * r["mean"] for r in rows], "o--", ms=3,
                alpha=0.6, label=f"{kind} (sweep)")  # fmt: skip
    for name, stats in summary["accuracy"].items():
        nov = 0.0 if name == "zoo" else summary["novelty_ratio"][name]
        ax.scatter([nov], [100 * stats["mean"]], s=60 if name == "generated" else 30,
                   marker="*" if name == "generated" else "o", zorder=3, label=name)  # fmt: skip
    ax.set(xlabel="novelty ratio (permutation-invariant)", ylabel=f"mean test {summary['metric']} (%)",
           title="Accuracy vs. novelty")  # fmt: skip
    ax.legend(fontsize=7)


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


def fmt_ratio(v: float | None) -> str:
    """A ratio with 3 decimals, or a dash when there is none."""
    return "–" if v is None else f"{v:.3f}"


def _markdown(summary: dict[str, Any], figures: dict[str, str]) -> str:
    lines = [
        "# Evaluation report",
        "",
        summary["verdict"],
        "",
        f"{summary['num_generated']} generated networks vs. the {summary['num_zoo']} zoo networks the generator "
        f"was fitted on ({summary['holdout']} more held out), on the {summary['split']} split. Novelty, "
        "diversity and held-out ratios are permutation-invariant (each network aligned to each zoo network); "
        "see the README's Novelty section.",
        "",
        f"| set | {summary['metric']} (%) | novelty | diversity | held-out ratio |",
        "|---|---|---|---|---|",
    ]
    for k, s in summary["accuracy"].items():
        nov, div, held = (summary[m].get(k) for m in ("novelty_ratio", "diversity_ratio", "heldout_ratio"))
        lines.append(f"| {k} | {_pct(s)} | {fmt_ratio(nov)} | {fmt_ratio(div)} | {fmt_ratio(held)} |")
    if summary["baselines"]:
        lines += ["", "Baselines at the generated networks' novelty:", "",
                  "| baseline | setting | novelty | mean (%) | generated − baseline (pp) | generator beats it "
                  "| beyond 2 standard errors |", "|---|---|---|---|---|---|---|"]  # fmt: skip
        for kind, b in summary["baselines"].items():
            knob = ", ".join(f"{k}={v:.3g}" for k, v in b["knob"].items())
            reach = "" if b["reached"] else " (most novel setting; cannot reach)"
            lines.append(f"| {kind} | {knob}{reach} | {b['novelty_ratio']:.3f} | {100 * b['accuracy_mean']:.2f} "
                         f"| {100 * b['difference']:+.2f} | {'yes' if b['beats'] else 'no'} "
                         f"| {'yes' if b['significant'] else 'no'} |")  # fmt: skip
    lines += [
        "",
        "Set-to-set metrics (paper Table 17, canonical weight space; per-network values averaged over the first "
        "set, self-pairs left out):",
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
