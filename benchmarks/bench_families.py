"""One table for every family: does the default flow hand users working, new networks, and does it beat the
trivial generators at its own novelty?

    python benchmarks/bench_families.py [--quick] [--families mlp,smallcnn,resnet20,vit,iris_mlp_mixed_init]
                                        [--sizes 20,40,100] [--select auto] [--split test] [--seed 0]
                                        [--out bench_out/families]

Per family (the digits recipes: ``digits_mlp``, ``digits_smallcnn``, ``digits_resnet20``, ``digits_vit``; any other
recipe name is a row of its own, for recipes nobody tuned) and zoo size N: the zoo (trained once, cached in
``--out``), canonicalized; the last fifth held out; the recipe's default flow fitted on the rest, its training
length chosen by the fit (``--select auto``, the default: which snapshot was kept) or the recipe's full length
(``off``); 100 raw networks drawn (``quality_check=False``) and 100 through the pipeline's quality check.
Columns: the zoo's mean and worst member, the aligned members' midpoints (linear connectivity, validation split),
the raw flow's mean ± std and min, its **failed share** (below the zoo's worst member − 10 pp), weight and function
novelty, diversity, the held-out members' function novelty, zoo + noise and interpolation at the flow's function
novelty (Δ = flow − baseline, * where |Δ| > 1.96 standard errors), the quality check's acceptance rate with the
checked set's mean, and each baseline given the same check (at the sweep setting nearest the flow's function
novelty: the mean of its networks that pass, Δ = checked flow − it, and the share that passes). ``--quick``: zoos
of 40 (MLP 100), baselines swept with 25 networks per setting. Saves ``families.png`` (accuracy vs function
novelty, one panel per family) in ``--out`` and prints the markdown table the README quotes.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
from _common import at_novelty, panels, plot_sweeps

from dwf_hub.evaluation.frontier import Frontier
from dwf_hub.flow.fitting import fit_pipeline
from dwf_hub.matching import canonicalize
from dwf_hub.scoring import score_many
from dwf_hub.zoo.recipes import load_recipe
from dwf_hub.zoo.training import train_zoo
from dwf_hub.zoo.weight_zoo import WeightZoo

FAMILIES = {
    "mlp": "digits_mlp",
    "smallcnn": "digits_smallcnn",
    "resnet20": "digits_resnet20",
    "vit": "digits_vit",
}
QUICK_SIZES = {"mlp": 100, "smallcnn": 40, "resnet20": 40, "vit": 40}
FAILED_BELOW = 0.10  # issue 34's floor: the zoo's worst member minus 10 pp
GENERATED = 100


def zoo_of(recipe: str, size: int, root: Path) -> WeightZoo:
    """``size`` members of ``recipe`` (seed 0), trained into ``root`` once and then loaded."""
    folder = root / f"{Path(recipe).stem}_{size}" / "zoo"  # a shipped recipe's name or a recipe file
    return (
        WeightZoo.load(folder) if folder.is_dir() else train_zoo(recipe, size, folder, seed=0, progress=False)
    )


def baseline_at(sweep: list[dict], r: dict, key: str, n: int) -> tuple[float, float, bool]:
    """``(accuracy, Δ = r − it, significant)`` of a baseline read off its ``sweep`` (``n`` networks a setting)
    at ``r``'s ``key`` novelty; significance from both sets' standard errors (the baseline's std interpolated
    like its mean)."""
    acc, _ = at_novelty(sweep, r[key], key)
    std, _ = at_novelty([{**s, "mean": s["std"], "copies_mean": 0.0} for s in sweep], r[key], key)
    delta = r["mean"] - acc
    se = math.sqrt(r["std"] ** 2 / GENERATED + std**2 / n)
    return acc, delta, abs(delta) > 1.96 * max(se, 1e-12)


def checked_baseline(
    frontier: Frontier, kind: str, sweep: list[dict], r: dict, check, recipe
) -> tuple[float, float]:
    """``(mean, acceptance)`` of baseline ``kind`` given the pipeline's quality check: ``GENERATED`` networks at the
    sweep setting nearest the flow's function novelty, the mean over those that pass (what redrawing the rejected
    ones until they pass gives on average) and the share that passes."""
    target = r["function_novelty_ratio"]
    near = min(
        (s for s in sweep if s["function_novelty_ratio"]),
        key=lambda s: abs(math.log(s["function_novelty_ratio"] / target)),
    )
    weights = frontier.baseline_weights(kind, near["knob"], GENERATED)
    ok = check.passes(frontier.seen.arch, weights, recipe)
    scores = score_many(frontier.seen.arch, weights, frontier.x, frontier.y)
    return (float(scores[ok].mean()) if ok.any() else float("nan")), float(ok.float().mean())


def run(family: str, size: int, a: argparse.Namespace) -> dict:
    recipe, t0 = FAMILIES.get(family, family), time.perf_counter()
    zoo = zoo_of(recipe, size, Path(a.out))
    t_zoo = time.perf_counter() - t0
    # the last fifth held out of the fit (the flow's selection sees them as held-out members), and scored here
    cfg = load_recipe(recipe).flow_config(seed=a.seed, holdout=size // 5, select=a.select, **a.flow)
    aligned = canonicalize(zoo, progress=False).zoo if cfg.canonicalization.canonicalize else zoo
    fit = fit_pipeline(aligned, cfg, progress=False)
    seen, heldout = fit.training_zoo, fit.heldout_zoo
    pipe, x, y = fit.pipeline, *zoo.recipe.task.split(a.split)
    frontier = Frontier(seen, x, y, heldout, GENERATED, a.seed, a.sweep_networks,
                        recalibrate_units=pipe.codec.has_unit_targets)  # fmt: skip
    gen = lambda: torch.Generator().manual_seed(a.seed)  # noqa: E731
    raw = pipe(num_networks=GENERATED, generator=gen(), output_type="state_dict", quality_check=False).weights
    checked = pipe(num_networks=GENERATED, generator=gen(), output_type="state_dict", quality_check=True)
    r, c = frontier.score(raw), frontier.score(checked.weights, quick=True, diversity=False)
    seen_scores = score_many(seen.arch, frontier.scorer.train, x, y)
    raw_scores = score_many(seen.arch, raw, x, y)
    held = frontier.score(heldout.to_matrix(), heldout=False)
    sweeps = {kind: frontier.sweep(kind) for kind in ("noise", "interpolation")}
    copies = float(seen_scores.mean())
    sweeps = {
        k: [{**s, "copies_mean": copies, "std": s.get("std", 0.0)} for s in v] for k, v in sweeps.items()
    }
    check = pipe.quality_check
    return {
        "family": family,
        "size": size,
        "kept": f"{fit.selection.iteration}/{fit.selection.scores[-1].iteration}" if fit.selection else "end",
        "checked_baselines": {
            k: checked_baseline(frontier, k, v, r, check, pipe.recipe) for k, v in sweeps.items()
        },
        "zoo_mean": copies,
        "zoo_min": float(seen_scores.min()),
        "midpoints": fit.connectivity.midpoints if fit.connectivity else None,
        "raw": r,
        "failed": float((raw_scores < seen_scores.min() - FAILED_BELOW).float().mean()),
        "heldout_fn_novelty": held["function_novelty_ratio"],
        "heldout_mean": held["mean"],
        "checked_mean": c["mean"],
        "acceptance": checked.acceptance_rate,
        "baselines": {
            k: baseline_at(v, r, "function_novelty_ratio", a.sweep_networks or GENERATED)
            for k, v in sweeps.items()
        },
        "sweeps": sweeps,
        "seconds": {"zoo": t_zoo, "total": time.perf_counter() - t0},
    }


def row(s: dict) -> str:
    r, pct = s["raw"], lambda v: f"{100 * v:.1f}"
    base = " | ".join(
        f"{pct(acc)} ({100 * d:+.1f}{'*' if sig else ''})" for acc, d, sig in s["baselines"].values()
    )
    mid = pct(s["midpoints"]) if s["midpoints"] is not None else "–"
    checked = " | ".join(
        f"{pct(m)} ({100 * (s['checked_mean'] - m):+.1f}), {pct(acc)}"
        for m, acc in s["checked_baselines"].values()
    )
    return (f"| {s['family']} | {s['size']} | {s['kept']} | {pct(s['zoo_mean'])} / {pct(s['zoo_min'])} | {mid} | "
            f"{pct(r['mean'])} ± {pct(r['std'])} / {pct(r['min'])} | **{pct(s['failed'])}** | "
            f"{r['novelty_ratio']:.2f} | {r['function_novelty_ratio']:.2f} | {r['diversity_ratio']:.2f} | "
            f"{s['heldout_fn_novelty']:.2f} | {base} | {pct(s['acceptance'])} / {pct(s['checked_mean'])} | {checked} | "
            f"{s['seconds']['total']:.0f} |")  # fmt: skip


HEAD = ("| family | N | flow kept after | zoo mean / worst (%) | midpoints (%) | raw flow mean ± std / min (%) | failed (%) | "
        "novelty | fn novelty | diversity | held-out fn novelty | noise at fn novelty (Δ) | interpolation at fn "
        "novelty (Δ) | quality check: accepted / mean (%) | noise checked: mean (Δ), accepted | interpolation "
        "checked: mean (Δ), accepted | s |")  # fmt: skip


def plot(results: list[dict], path: Path) -> None:
    from matplotlib.ticker import NullFormatter

    families = list(dict.fromkeys(s["family"] for s in results))
    fig, axes = panels(len(families), 5, 4)
    for ax, family in zip(axes, families):
        for s in (s for s in results if s["family"] == family):
            plot_sweeps(ax, s["sweeps"], "function_novelty_ratio")
            r = s["raw"]
            ax.errorbar(r["function_novelty_ratio"], 100 * r["mean"], yerr=196 * r["std"] / math.sqrt(GENERATED),
                        fmt="*", ms=14, label=f"flow, N={s['size']}")  # fmt: skip
            ax.axvline(s["heldout_fn_novelty"], color="grey", ls=":", label="held-out members")
        ax.set(title=family, xlabel="function novelty", ylabel="accuracy (%)", xscale="log")
        ax.xaxis.set_minor_formatter(NullFormatter())  # minor log ticks' labels overlap
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="zoos of 40 (MLP 100), 25 networks per sweep setting")
    p.add_argument("--families", default=",".join(FAMILIES), help="family names or any recipe (untuned ones)")
    p.add_argument("--select", default="auto", choices=["auto", "off"], help="the flow's training length")
    p.add_argument(
        "--flow", default="", help="flow settings over the recipe's, e.g. iterations=24000,hidden_dim=1024"
    )
    p.add_argument("--sizes", default=None, help="comma-separated zoo sizes (default: 100, or --quick's)")
    p.add_argument("--split", default="test", choices=["val", "test"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sweep-networks", type=int, default=None)
    p.add_argument("--out", default="bench_out/families")
    a = p.parse_args()
    a.sweep_networks = a.sweep_networks or (25 if a.quick else None)
    a.flow = {k: json.loads(v) for k, v in (kv.split("=", 1) for kv in a.flow.split(",") if kv)}
    Path(a.out).mkdir(parents=True, exist_ok=True)
    print(
        f"## Families on digits ({a.split} split, flow seed {a.seed})\n\n{HEAD}\n|"
        + "---|" * (HEAD.count("|") - 1)
    )
    results = []
    for family in a.families.split(","):
        sizes = (
            [int(v) for v in a.sizes.split(",")]
            if a.sizes
            else [QUICK_SIZES.get(family, 40) if a.quick else 100]
        )
        for size in sizes:
            results.append(run(family, size, a))
            print(row(results[-1]), flush=True)
    plot(results, Path(a.out) / "families.png")
    keep = [{k: v for k, v in s.items() if k != "sweeps"} for s in results]
    (Path(a.out) / "families.json").write_text(json.dumps(keep, indent=1, default=str))


if __name__ == "__main__":
    main()
