"""Evaluation report: are generated networks both good and new, and better than the trivial generators?

``build_report(generated, training_zoo, out)`` writes ``report.md``, ``summary.json`` and PNG figures. Every
set — generated networks, held-out zoo members, the baselines — is scored the same way (``frontier``): task
metric, permutation-invariant novelty, diversity and held-out ratio (``novelty``). The baselines
(``baselines.BASELINES``) are set to the generated networks' novelty and function novelty, and the verdict says
whether the generator beats each there; the two that cannot copy the zoo (mean + noise, Gaussian) are also set
to its diversity. Table 17 of the paper (mIoU, nearest-neighbour L2, cosine, Wasserstein,
Jensen–Shannon) is computed in canonical weight space.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch import Tensor

from ..errors import DWFError
from ..zoo.weight_zoo import WeightZoo
from . import metrics
from .baselines import BASELINES

MEMORIZED, PARTLY_NEW = 0.5, 0.8  # novelty-ratio thresholds of the verdict
RATIOS = ("novelty_ratio", "diversity_ratio", "heldout_ratio", "function_novelty_ratio")  # per scored set
INTERVALS = {m: m.replace("_ratio", "_interval") for m in RATIOS}  # each ratio's 95 % bootstrap interval
FAILURES = ("failed_share", "working_function_novelty_ratio")  # per scored set (``frontier.FAILED_MARGIN``)
FAILED_NOTE = 0.05  # the verdict speaks of failed generated networks from this share on


def unit(metric: str) -> tuple[float, str]:
    """How a metric is shown: accuracy in percent, Spearman's rho as it is."""
    return (100.0, " (%)") if metric == "accuracy" else (1.0, "")


def verdict(
    novelty: float,
    miou: float | None,
    baselines: dict[str, dict[str, Any]] | None = None,
    metric: str = "accuracy",
    function_baselines: dict[str, dict[str, Any]] | None = None,
    diversity_baselines: dict[str, dict[str, Any]] | None = None,
    novelty_interval: list[float] | None = None,
) -> str:
    """Plain sentences: are the generated networks new, and do they beat each baseline at their novelty —
    in function space (``function_baselines``, first: what the networks compute) and in weight space
    (``baselines``), then overall (both)? Baselines that cannot copy the zoo are also set to the generated
    set's diversity (``diversity_baselines``). (``miou``: error overlap with the zoo, classification only;
    ``novelty_interval``: the novelty ratio's bootstrap interval.)"""
    overlap = "" if miou is None else f", error overlap with the zoo mIoU {miou:.2f}"
    spread = (
        ""
        if novelty_interval is None
        else f", 95 % interval {novelty_interval[0]:.2f}–{novelty_interval[1]:.2f}"
    )
    if novelty < MEMORIZED:
        bracket = f" ({spread[2:]})" if spread else ""
        text = (f"**Generated networks look memorized**: a generated network sits {novelty:.2f}×{bracket} as far from "
                f"its nearest zoo network as zoo networks sit from each other{overlap}.")  # fmt: skip
    elif novelty < PARTLY_NEW:
        text = (f"Generated networks are partly new: closer to zoo networks than those are to each other "
                f"(novelty ratio {novelty:.2f}{spread}){overlap}.")  # fmt: skip
    else:
        text = (f"Generated networks are new: as far from the zoo as its own networks are from each other "
                f"(novelty ratio {novelty:.2f}{spread}){overlap}.")  # fmt: skip
    spaces = (("function", function_baselines or {}, "function_novelty_ratio", "the same function novelty"),
              ("weight", baselines or {}, "novelty_ratio", "the same novelty"))  # fmt: skip
    for space, rows, key, same in spaces:
        if rows:
            text += f" In {space} space" + _comparisons(rows, metric, key, same).replace(
                " The generator", ", the generator", 1
            )
    text += _at_diversity(diversity_baselines or {}, metric)
    overall = beats_overall(baselines or {}, function_baselines or {})
    if overall:
        won = [k for k, v in overall.items() if v]
        text += (f" Overall (both spaces): significantly ahead of {', '.join(won) or 'none'} ({len(won)} of the "
                 f"{len(overall)} baselines it can be compared with).")  # fmt: skip
    return text


def failures(scores: dict[str, dict[str, Any]]) -> str:
    """A sentence when generated networks fail (``frontier.FAILED_MARGIN``): their function novelty is that of
    broken networks, so the working ones' is given beside it."""
    from .frontier import FAILED_MARGIN

    gen, held = scores["generated"], scores.get("held-out zoo members", {})
    if gen["failed_share"] < FAILED_NOTE:
        return ""
    margin = f"{100 * FAILED_MARGIN:g} pp" if gen["metric"] == "accuracy" else f"{FAILED_MARGIN:g}"
    text = f" {100 * gen['failed_share']:.0f} % of the generated networks fail (more than {margin} below the worst fitted zoo network"
    if "failed_share" in held:
        text += f"; held-out members: {100 * held['failed_share']:.0f} %"
    text += "); a failed network computes a function far from every zoo network, so function novelty counts it as new"
    working = gen.get("working_function_novelty_ratio")
    if working is not None and gen.get("function_novelty_ratio") is not None:
        text += f": the working ones' function novelty is {working:.2f} (all: {gen['function_novelty_ratio']:.2f})"
    return text + "."


def beats_overall(
    baselines: dict[str, dict[str, Any]], function_baselines: dict[str, dict[str, Any]]
) -> dict[str, bool]:
    """``{kind: bool}``: the generator is significantly ahead of the baseline (``frontier.compare``'s ``beats``) in
    every space (weight novelty, function novelty where measured) where the two can be compared; a baseline
    comparable in neither is left out."""
    out = {}
    for kind, b in baselines.items():
        rows = [r for r in (b, function_baselines.get(kind)) if r is not None and r.get("comparable", True)]
        if rows:
            out[kind] = all(bool(r["beats"]) for r in rows)
    return out


def _comparisons(baselines: dict[str, dict[str, Any]], metric: str, key: str, same: str) -> str:
    """One sentence per baseline: does the generator beat it at the generated set's ``key``?"""
    scale, text = unit(metric)[0], ""
    for kind, b in baselines.items():
        knob = ", ".join(f"{k} {v:.3g}" for k, v in b["knob"].items())
        label = key.replace("_ratio", "").replace("_", " ")
        where = (f"at {same} ({kind} {knob}: {label} {b[key]:.2f})" if b["reached"] else
                 f"(it reaches at most {label} {b[key]:.2f}, at {knob})")  # fmt: skip
        if b.get("too_novel"):
            where = f"(more novel at every setting; its least novel, {knob}, has {label} {b[key]:.2f})"
        words = {"ahead": "**is ahead of**", "behind": "**is behind**", "tie": "**ties with**"}
        outcome = words[b.get("verdict", "ahead" if b["beats"] else "tie")]
        if not b.get("comparable", True):
            outcome = "**cannot be compared with**"
        noise = " (within twice the standard error)" if b.get("verdict") == "tie" else ""
        text += (f" The generator {outcome} the {kind} baseline {where}: {scale * b['mean']:.2f} vs "
                 f"{scale * b['baseline_mean']:.2f}{noise}{_narrower(b)}.")  # fmt: skip
    return text


def _at_diversity(baselines: dict[str, dict[str, Any]], metric: str) -> str:
    """One sentence per baseline set to the generated set's diversity: which of the two is more accurate and
    which more novel (a baseline that cannot copy the zoo is more novel at every setting, so matching it on
    novelty says only whether it dominates; at equal diversity the accuracy a generator's variety costs shows)."""
    scale, text = unit(metric)[0], ""
    for kind, b in baselines.items():
        knob = ", ".join(f"{k} {v:.3g}" for k, v in b["knob"].items())
        ours, theirs = f"{scale * b['mean']:.2f}", f"{scale * b['baseline_mean']:.2f}"
        novelty = f"novelty {b['novelty_ratio']:.2f} vs {b['generated_novelty_ratio']:.2f}"
        where = "At the generated networks' diversity" if b["reached"] else "At its most diverse setting"
        outcome = {
            "generator dominates": f"the generator is more accurate ({ours} vs {theirs}) and at least as novel ({novelty}): it dominates",
            "baseline dominates": f"the baseline is as accurate ({theirs} vs {ours}) and at least as novel ({novelty}): it dominates",
            "generator more accurate": f"the generator is more accurate ({ours} vs {theirs}), the baseline more novel ({novelty})",
            "baseline more accurate": f"the baseline is more accurate ({theirs} vs {ours}), the generator more novel ({novelty})",
        }[diversity_outcome(b)]  # fmt: skip
        noise = "" if b["significant"] else " (an accuracy difference within twice its standard error)"
        text += (f" {where} (the {kind} baseline at {knob}: diversity {b['diversity_ratio']:.2f}), "
                 f"{outcome}{noise}.")  # fmt: skip
    return text


def diversity_outcome(b: dict[str, Any]) -> str:
    """A diversity-matched baseline row against the generated set: who dominates (more accurate and at least as
    novel), or which of the two is more accurate when each wins on one axis."""
    more_accurate, more_novel = b["difference"] > 0, b["novelty_ratio"] > b["generated_novelty_ratio"]
    if more_accurate != more_novel:
        return "generator dominates" if more_accurate else "baseline dominates"
    return "generator more accurate" if more_accurate else "baseline more accurate"


def _narrower(b: dict[str, Any]) -> str:
    """A clause for a comparable baseline not beaten on the metric whose networks are less diverse than the
    generated ones (a lone network plus small noise can be accurate at a novelty without being a varied set)."""
    ours, theirs = b.get("generated_diversity_ratio"), b.get("diversity_ratio")
    if b["beats"] or not b.get("comparable", True) or ours is None or theirs is None or theirs >= ours:
        return ""
    return f", but the baseline's networks are less diverse than the generated ones (diversity {theirs:.2f} vs {ours:.2f})"


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
    sweep_networks: int | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Compare ``generated`` with the training zoo ``reference`` into folder ``out`` (a report artifact, written
    whole: ``artifacts.write_folder``; another folder is refused unless ``overwrite``), every set scored with the
    architecture's task metric. ``holdout``: the last members of ``reference`` were not fitted on (default: what
    ``generated`` records); ``noise``: extra zoo + noise rows at these relative sigmas; ``baselines``: also find
    each baseline's setting at the generated set's novelty (``sweep_networks`` per sweep setting) and compare."""
    from ..artifacts import check_output, write_folder
    from ..io import write_json, write_text
    from ..matching import canonicalize
    from .frontier import Frontier
    from .zoo_evaluation import aligned_matrices

    check_output(out, "report", overwrite)  # before the work, not only at its end
    if not reference.recipe:
        raise DWFError("the reference zoo has no recipe, so there is no task to evaluate on")
    if generated.arch != reference.arch:
        raise DWFError(f"architectures differ: {generated.arch!r} vs {reference.arch!r}")
    x, y = reference.recipe.split(split)
    if not reference.is_canonical:
        reference = canonicalize(reference, progress=progress).zoo
    holdout = generated.info.get("holdout", 0) if holdout is None else holdout
    seen, heldout = reference.split_holdout(holdout)
    gen_w, _ = aligned_matrices(generated, reference, progress)
    units = bool(generated.info.get("unit_recalibration"))  # baselines recalibrated as the generated set was
    frontier = Frontier(seen, x, y, heldout, len(generated), seed, sweep_networks, recalibrate_units=units)
    with _scoring_bar(len(noise) + 2 + (heldout is not None), baselines, progress) as frontier.bar:
        sets, scores = _score_sets(frontier, gen_w, noise)
        sweeps, (matched, by_function, by_diversity) = _baselines(frontier, sets, scores, baselines)
    per_network, preds = _per_network(reference.arch, sets, x, y)
    table = _table17(sets, preds, y)
    novelty = scores["generated"]["novelty_ratio"]
    summary = {
        "split": split, "metric": frontier.metric, "num_zoo": len(seen), "num_generated": len(generated),
        "holdout": holdout, "sweep_networks": min(sweep_networks or len(generated), len(generated)),
        "accuracy": {k: {s: v[s] for s in ("mean", "std", "min", "max")} for k, v in scores.items()},
        **{m: {k: v.get(m) for k, v in scores.items() if k != "zoo"} for m in (*RATIOS, *INTERVALS.values(), *FAILURES)},
        "baselines": matched, "baselines_function": by_function, "baselines_diversity": by_diversity,
        "beats": beats_overall(matched, by_function), "sweeps": sweeps, "table17": table,
        "verdict": verdict(novelty, table["gen→orig"]["miou_mean"], matched, frontier.metric, by_function,
                           by_diversity, scores["generated"].get("novelty_interval")) + failures(scores),
        "memorized": novelty < MEMORIZED,
        "baselines_checked": _checked_baselines(frontier, generated, {"novelty": matched, "function novelty": by_function}),
    }  # fmt: skip
    with write_folder(out, "report", overwrite) as root:
        figures = _figures(root, sets, per_network, preds, y, summary)
        write_json(root / "summary.json", summary)
        write_text(root / "report.md", _markdown(summary, figures))
    return summary


def _scoring_bar(sets: int, baselines: bool, progress: bool):
    """A progress bar over the sets a report scores: ``sets`` fixed ones, then each baseline's sweep and its
    matched settings (at most: a setting is not matched when the generated set has no such ratio)."""
    from huggingface_hub.utils import tqdm  # honours HF_HUB_DISABLE_PROGRESS_BARS

    from .frontier import COPIES, GRIDS

    if baselines:
        matched = len(BASELINES) * (len(MATCHED_NAME) - 1) + sum(k not in COPIES for k in BASELINES)
        sets += sum(len(GRIDS[k]) for k in BASELINES) + matched
    return tqdm(total=sets, desc="scoring sets", unit="set", disable=not progress, leave=False)


def _score_sets(
    frontier, gen_w: Tensor, noise: tuple[float, ...]
) -> tuple[dict[str, Tensor], dict[str, dict[str, Any]]]:
    """The compared sets (zoo, generated, held-out members, noise rows) in canonical space, and their
    scores (task metric, novelty, diversity, held-out ratio)."""
    zoo_w = frontier.scorer.train
    sets: dict[str, Tensor] = {"zoo": zoo_w, "generated": gen_w}
    scores: dict[str, dict[str, Any]] = {
        "zoo": frontier.score(zoo_w, quick=True, diversity=False),
        "generated": frontier.score(gen_w),
    }
    if frontier.scorer.heldout is not None:
        sets["held-out zoo members"] = frontier.scorer.heldout
    for s in noise:
        sets[f"noise σ={s:g}"] = frontier.baseline_weights("noise", {"sigma": s})
    for name, w in sets.items():
        if name not in scores:  # (not setdefault: its argument, a full score, would be computed anyway)
            scores[name] = frontier.score(w, heldout=name != "held-out zoo members")
    return sets, scores


def _baselines(
    frontier, sets: dict[str, Tensor], scores: dict[str, dict[str, Any]], enabled: bool
) -> tuple[dict[str, list[dict[str, Any]]], list[dict[str, dict[str, Any]]]]:
    """Each baseline's sweep (with diversity for those that cannot copy the zoo), and the summary rows at the
    generated set's novelty, function novelty and diversity (``_match_baselines``)."""
    from .frontier import COPIES

    sweeps = {
        kind: frontier.sweep(kind, diversity=kind not in COPIES) for kind in (BASELINES if enabled else ())
    }
    return sweeps, [_match_baselines(frontier, sweeps, sets, scores, key) for key in MATCHED_NAME]


def _per_network(
    arch, sets: dict[str, Tensor], x: Tensor, y: Tensor
) -> tuple[dict[str, Tensor], dict[str, Tensor] | None]:
    """Per set, each network's task metric ``[N]`` and predicted labels ``[N, B]`` (classification only: errors
    are what mIoU compares), from one pass over the split (a report on ResNets spends minutes here)."""
    from ..scoring import metric_of_outputs, outputs_many

    outputs = {k: outputs_many(arch, w, x) for k, w in sets.items()}
    metric = {k: metric_of_outputs(arch, o, y) for k, o in outputs.items()}
    return metric, {k: o.argmax(-1) for k, o in outputs.items()} if arch.task == "classification" else None


def _table17(
    sets: dict[str, Tensor], preds: dict[str, Tensor] | None, y: Tensor
) -> dict[str, dict[str, Any]]:
    """The paper's Table 17 between the zoo, the generated set and every other set (mIoU: classification)."""

    def pair(a: str, b: str) -> dict[str, Any]:
        if preds is None:
            return {
                "miou_mean": None,
                "miou_std": None,
                **metrics.weight_metrics(sets[a], sets[b], same=a == b),
            }
        return metrics.set_metrics(sets[a], preds[a], sets[b], preds[b], y, same=a == b)

    table = {"orig→orig": pair("zoo", "zoo"), "orig→gen": pair("zoo", "generated"),
             "gen→orig": pair("generated", "zoo"), "gen→gen": pair("generated", "generated")}  # fmt: skip
    table.update({f"{name}→orig": pair(name, "zoo") for name in sets if name not in ("zoo", "generated")})
    return table


MATCHED_NAME = {
    "novelty_ratio": "matched",
    "function_novelty_ratio": "function-matched",
    "diversity_ratio": "diversity-matched",  # the baselines that cannot copy the zoo (no COPIES setting)
}


def _match_baselines(
    frontier,
    sweeps: dict[str, list[dict[str, Any]]],
    sets: dict[str, Tensor],
    scores: dict[str, dict[str, Any]],
    key: str = "novelty_ratio",
) -> dict[str, dict[str, Any]]:
    """Each swept baseline at the generated set's novelty (``key``: weight or function novelty; or diversity,
    for the baselines whose sweep has it), added to ``sets`` / ``scores`` as ``KIND (matched)`` /
    ``KIND (function-matched)`` / ``KIND (diversity-matched)``; returns the summary rows (the diversity is
    scored too: a baseline that wins on accuracy with a narrower set is said to)."""
    from .frontier import compare

    generated, matched = scores["generated"], {}
    if generated.get(key) is None:
        return matched
    for kind, sweep in sweeps.items():
        if key not in sweep[0]:
            continue
        row = frontier.matched(kind, generated[key], sweep, key=key)
        name = f"{kind} ({MATCHED_NAME[key]})"
        sets[name], scores[name] = frontier.baseline_weights(kind, row["knob"]), row
        matched[kind] = {
            "accuracy_mean": row["mean"], "accuracy_std": row["std"], "novelty_ratio": row["novelty_ratio"],
            "function_novelty_ratio": row["function_novelty_ratio"], "diversity_ratio": row["diversity_ratio"],
            "generated_diversity_ratio": generated["diversity_ratio"], "generated_novelty_ratio": generated["novelty_ratio"],
            "knob": row["knob"], "reached": row["reached"], "too_novel": row["too_novel"],
            **compare(generated, row, frontier.num_networks),
            "mean": generated["mean"], "baseline_mean": row["mean"],
        }  # fmt: skip
        if key == "diversity_ratio":
            matched[kind]["outcome"] = diversity_outcome(matched[kind])
    return matched


MIOU_MIN_SAMPLES = 100  # below this many test samples the accuracy-vs-mIoU scatter stacks on a few values


def _figures(
    root: Path,
    sets: dict[str, Tensor],
    acc: dict[str, Tensor],
    preds: dict[str, Tensor] | None,
    y: Tensor,
    summary: dict[str, Any],
) -> dict[str, str]:
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

    fig, ax = plt.subplots(figsize=(6, 4))
    for k in names:
        d = metrics.nearest_distances(sets[k], sets["zoo"], exclude_self=k == "zoo")
        ax.ecdf(d.numpy(), label=f"{k} → zoo")
    ax.set(xlabel="L2 distance to the nearest zoo network (canonical space; the novelty ratios use the "
           "permutation-invariant one)", ylabel="share of networks at or below", title="Nearest-neighbour distances")  # fmt: skip
    ax.legend(fontsize=7)
    files["nearest-neighbour distances"] = _save(fig, root / "nn_distance_hist.png")

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
        fig.savefig(tmp, dpi=100, format="png")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path.name


def _fmt_summary(s: dict[str, float], metric: str) -> str:
    """``mean ± std (min, max)`` in the metric's unit."""
    c, d = unit(metric)[0], 2 if metric == "accuracy" else 4
    return (
        f"{c * s['mean']:.{d}f} ± {c * s['std']:.{d}f} (min {c * s['min']:.{d}f}, max {c * s['max']:.{d}f})"
    )


def fmt_ratio(v: float | None, interval: list[float] | None = None) -> str:
    """A ratio with 3 decimals (and its interval, if given), or a dash when there is none."""
    if v is None:
        return "–"
    return f"{v:.3f}" if interval is None else f"{v:.3f} ({interval[0]:.2f}–{interval[1]:.2f})"


def _baseline_table(baselines: dict[str, dict[str, Any]], where: str, scale: float, suffix: str) -> list[str]:
    """Markdown lines: each baseline at the generated networks' ``where`` (novelty or function novelty)."""
    if not baselines:
        return []
    lines = ["", f"Baselines at the generated networks' {where}:", "",
             f"| baseline | setting | novelty | function novelty | diversity | mean{suffix} | generated − baseline "
             f"| {'outcome' if where == 'diversity' else 'verdict'} | beyond 2 standard errors |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for kind, b in baselines.items():
        knob = ", ".join(f"{k}={v:.3g}" for k, v in b["knob"].items())
        reach = "" if b["reached"] else " (most novel setting; cannot reach)"
        if b.get("too_novel"):
            reach = " (least novel setting; always more novel)"
        lines.append(f"| {kind} | {knob}{reach} | {b['novelty_ratio']:.3f} | {fmt_ratio(b['function_novelty_ratio'])} "
                     f"| {fmt_ratio(b.get('diversity_ratio'))} "
                     f"| {scale * b['accuracy_mean']:.2f} | {scale * b['difference']:+.2f} "
                     f"| {b['outcome'] if where == 'diversity' else _beats_cell(b)} "
                     f"| {'yes' if b['significant'] else 'no'} |")  # fmt: skip
    return lines


def _checked_baselines(
    frontier, generated: WeightZoo, matched: dict[str, dict[str, dict[str, Any]]]
) -> dict[str, Any] | None:
    """When ``generated`` was drawn through the pipeline's quality check (its info records the check and the
    counts), each matched baseline given the same check: of its networks at the matched setting (``matched``: by
    novelty or function novelty), the share that passes and their mean (what redrawing the rejected ones until
    they pass gives on average; ``None`` when none pass), next to the generated set's acceptance rate — a checked
    generator is compared with checked baselines, never with raw ones only. ``None``: no check was applied."""
    from ..generation.quality_check import QualityCheck
    from ..scoring import score_many

    record = generated.info.get("quality_check")
    if not isinstance(record, dict) or frontier.seen.recipe is None:
        return None
    check = QualityCheck.from_dict({k: v for k, v in record.items() if k != "counts"}, "generated zoo info")
    arch, counts = frontier.seen.arch, record.get("counts") or {}
    out: dict[str, Any] = {"threshold": check.threshold, "generated_drawn": counts.get("drawn"),
                           "generated_rejected": counts.get("rejected"), "rows": {}}  # fmt: skip
    for where, rows in matched.items():
        for kind, row in (rows or {}).items():
            weights = frontier.baseline_weights(kind, row["knob"])
            ok = check.passes(arch, weights, frontier.seen.recipe)
            values = score_many(arch, weights[ok], frontier.x, frontier.y) if ok.any() else None
            out["rows"][f"{kind} at {where}"] = {"knob": row["knob"], "acceptance": float(ok.float().mean()),
                                                 "mean": None if values is None else float(values.mean())}  # fmt: skip
    return out


def _checked_lines(
    checked: dict[str, Any] | None, generated_mean: float, scale: float, suffix: str
) -> list[str]:
    """Markdown lines for ``_checked_baselines``."""
    if not checked:
        return []
    drawn, rejected = checked["generated_drawn"], checked["generated_rejected"]
    rate = f"{100 * (drawn - rejected) / drawn:.0f} %" if drawn else "–"
    lines = ["", f"The generated networks were drawn through the pipeline's quality check (threshold "
             f"{checked['threshold']:.4f} on the training split; {drawn} drawn, {rejected} rejected: acceptance {rate}). "
             "The baselines at their matched settings, given the same check:", "",
             f"| baseline | setting | passes the check | mean of those that pass{suffix} | generated − baseline |",
             "|---|---|---|---|---|"]  # fmt: skip
    for name, r in checked["rows"].items():
        knob = ", ".join(f"{k}={v:.3g}" for k, v in r["knob"].items())
        mean, diff = (
            ("–", "–")
            if r["mean"] is None
            else (f"{scale * r['mean']:.2f}", f"{scale * (generated_mean - r['mean']):+.2f}")
        )
        lines.append(f"| {name} | {knob} | {100 * r['acceptance']:.0f} % | {mean} | {diff} |")
    return lines


def _sweep_note(summary: dict[str, Any]) -> str:
    n = summary.get("sweep_networks", summary["num_generated"])
    if n >= summary["num_generated"]:
        return ""
    return (f" The baselines' sweeps drew {n} networks per setting to locate each matched setting; every "
            f"matched set has {summary['num_generated']} networks.")  # fmt: skip


def _beats_cell(b: dict[str, Any]) -> str:
    """The verdict against one baseline: ahead, behind, tie (within the noise) or not comparable."""
    return (
        "not comparable"
        if not b.get("comparable", True)
        else b.get("verdict", "ahead" if b["beats"] else "tie")
    )


def headline(summary: dict[str, Any]) -> list[str]:
    """Three lines a reader can trust in ten seconds: the generated set next to what genuinely new networks (the
    held-out members) score, the best baseline at the same function novelty, and the significant verdicts."""
    scale, suffix = unit(summary["metric"])[0], " %" if summary["metric"] == "accuracy" else ""
    acc, gen, held = summary["accuracy"], "generated", "held-out zoo members"

    def point(k: str) -> str:
        nov, fn = (summary[m].get(k) for m in ("novelty_ratio", "function_novelty_ratio"))
        return (f"{scale * acc[k]['mean']:.2f}{suffix} at novelty {fmt_ratio(nov)}"
                f"{'' if fn is None else f', function novelty {fn:.2f}'}")  # fmt: skip

    failed = summary.get("failed_share", {}).get(gen)
    first = f"- **Generated**: {point(gen)}" + ("" if failed is None else f", {100 * failed:.0f} % failed")
    first += f"; **held-out members** (what new networks score): {point(held)}." if held in acc else "."
    rows = {k: b for k, b in (summary.get("baselines_function") or summary.get("baselines") or {}).items()
            if b.get("comparable", True)}  # fmt: skip
    lines = [first]
    if rows:
        kind, b = max(rows.items(), key=lambda kv: kv[1]["baseline_mean"])
        lines.append(f"- **Best baseline** at the same {'function ' if summary.get('baselines_function') else ''}"
                     f"novelty: {kind}, {scale * b['baseline_mean']:.2f}{suffix}; the generator is "
                     f"**{b.get('verdict', 'ahead' if b['beats'] else 'tie')}** ({scale * b['difference']:+.2f}).")  # fmt: skip
    verdicts = {
        v: [k for k, won in summary["beats"].items() if won == (v == "ahead")] for v in ("ahead", "not ahead")
    }
    lines.append(f"- **Significantly ahead of** (both spaces): {', '.join(verdicts['ahead']) or 'none'}; "
                 f"not: {', '.join(verdicts['not ahead']) or 'none'}.")  # fmt: skip
    return lines


def _markdown(summary: dict[str, Any], figures: dict[str, str]) -> str:
    metric = summary["metric"]
    scale, suffix = unit(metric)
    lines = [
        "# Evaluation report",
        "",
        *headline(summary),
        "",
        "## Details",
        "",
        summary["verdict"],
        "",
        f"{summary['num_generated']} generated networks vs. the {summary['num_zoo']} zoo networks the generator "
        f"was fitted on ({summary['holdout']} more held out), on the {summary['split']} split. Novelty, "
        "diversity and held-out ratios are permutation-invariant (each network aligned to each zoo network); "
        "function novelty compares what networks compute on the split's inputs instead of their weights (held-out "
        "members show the value of genuinely new networks); see docs/evaluation.md, Novelty. In brackets: 95 % "
        "bootstrap intervals over the scored networks (another draw of the same generator can land anywhere in them)."
        + _sweep_note(summary),
        "",
        f"| set | {metric}{suffix} | novelty | diversity | held-out ratio | function novelty | function novelty, "
        "working networks | failed networks |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for k, s in summary["accuracy"].items():
        failed = summary.get("failed_share", {}).get(k)
        lines.append(
            f"| {k} | {_fmt_summary(s, metric)} | "
            + " | ".join(fmt_ratio(summary[m].get(k), summary.get(INTERVALS[m], {}).get(k)) for m in RATIOS)
            + f" | {fmt_ratio(summary.get('working_function_novelty_ratio', {}).get(k))} | "
            + ("–" if failed is None else f"{100 * failed:.0f} %")
            + " |"
        )
    for key, where in (("baselines", "novelty"), ("baselines_function", "function novelty"),
                       ("baselines_diversity", "diversity")):  # fmt: skip
        lines += _baseline_table(summary.get(key) or {}, where, scale, suffix)
    lines += _checked_lines(
        summary.get("baselines_checked"), summary["accuracy"]["generated"]["mean"], scale, suffix
    )
    lines += [
        "",
        "Set-to-set metrics (paper Table 17, canonical weight space; per-network values averaged over the first "
        "set, self-pairs left out):",
        "",
        "| from → to | mIoU | NN L2 (mean) | NN L2 (median) | max cosine | Wasserstein | Jensen–Shannon |",
        "|---|---|---|---|---|---|---|",
    ]
    for k, m in summary["table17"].items():
        miou = "–" if m["miou_mean"] is None else f"{m['miou_mean']:.3f} ± {m['miou_std']:.3f}"
        lines.append(f"| {k} | {miou} | {m['nn_l2_mean']:.4f} | "
                     f"{m['nn_l2_median']:.4f} | {m['max_cosine_mean']:.4f} | {m['wasserstein']:.5f} | "
                     f"{m['jensen_shannon']:.4f} |")  # fmt: skip
    lines += ["", *[f"![{name}]({file})" for name, file in figures.items()], ""]
    return "\n".join(lines)
