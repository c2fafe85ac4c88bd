"""Unit recalibration (REPAIR) on the accuracy–novelty plane: each zoo's default flow with and without it, against
zoo + noise and interpolation with and without it (baselines take their parents' statistics), seed by seed.

    python benchmarks/bench_unit_recalibration.py [--zoos iris_mlp,digits_mlp] [--seeds 0,1] [--sweep]
                                                  [--out bench_out/frontier]

The zoos are the frontier benchmark's (100 members, trained and cached in ``--out``; 80 fitted, 20 held out);
the flows use the shipped recipe's ``[flow]`` (the default rows: every seed, with and without recalibration)
and, with ``--sweep``, the frontier benchmark's flow settings, recalibrated (first seed).
Every set is scored as in ``bench_frontier.py`` (test split; permutation-invariant novelty, diversity, held-out
ratio); a baseline's accuracy at a flow row's novelty is read off its sweep. Validation accuracy is printed for
choosing settings. Prints markdown tables and saves ``unit_recalibration.png`` in ``--out``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _common import SWEEPS, at_novelty, cached_zoo, finish_panel, pm, sample

from dwf_hub.evaluation.frontier import Frontier
from dwf_hub.flow.fitting import fit_pipeline
from dwf_hub.matching import canonicalize
from dwf_hub.scoring import score_many
from dwf_hub.zoo.recipes import load_recipe

KINDS = ("noise", "interpolation")


def sweeps(frontier: Frontier, copies_mean: float) -> dict[str, list[dict]]:
    return {k: [{**r, "copies_mean": copies_mean} for r in frontier.sweep(k)] for k in KINDS}


def run_zoo(recipe: str, a: argparse.Namespace, root: Path) -> dict:
    zoo = cached_zoo(recipe, root)
    seen, heldout = canonicalize(zoo, progress=False).zoo.split_holdout(20)
    x_val, y_val = zoo.recipe.task.split("val")
    x, y = zoo.recipe.task.split("test")
    copies = float(score_many(zoo.arch, seen.to_matrix(), x, y).mean())
    frontiers = {units: Frontier(seen, x, y, heldout, recalibrate_units=units) for units in (False, True)}
    curves = {units: sweeps(f, copies) for units, f in frontiers.items()}
    print(f"\n## {recipe}: zoo (fitted members) test accuracy {100 * copies:.2f} %\n")
    print(
        "| baseline | setting | test acc (%) plain | novelty plain | test acc (%) recalibrated | novelty recalibrated |"
    )
    print("|---|---|---|---|---|---|")
    for kind in KINDS:
        for p, r in zip(curves[False][kind], curves[True][kind], strict=True):
            knob = ", ".join(f"{k}={v:.3g}" for k, v in p["knob"].items())
            print(
                f"| {kind} | {knob} | {pm(p)} | {p['novelty_ratio']:.3f} | {pm(r)} | {r['novelty_ratio']:.3f} |"
            )
    print("\n| seed | flow | val acc (%) | test acc (%) | min | novelty | diversity | held-out | noise | interpolation "
          "| noise, recalibrated | interpolation, recalibrated |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    flows, shipped = [], load_recipe(recipe)
    runs = [(seed, mode, {}) for seed in a.seeds for mode in ("off", "auto")]
    runs += [(a.seeds[0], "auto", setting) for setting in (SWEEPS[recipe] if a.sweep else [])]
    for seed, mode, setting in runs:
        cfg = shipped.flow_config(seed=seed, unit_recalibration=mode, **setting)
        pipe = fit_pipeline(seen, cfg, progress=False).pipeline
        w = sample(pipe, 100, seed)
        units = pipe.codec.has_unit_targets
        r = {"seed": seed, "units": units, "setting": setting, **frontiers[units].score(w),
             "val": float(score_many(zoo.arch, w, x_val, y_val).mean())}  # fmt: skip
        cells = []
        for variant in (False, True):
            for kind in KINDS:
                acc, reached = at_novelty(curves[variant][kind], r["novelty_ratio"])
                r[f"{kind}_{variant}"] = acc
                cells.append(f"{100 * acc:.2f} ({100 * (r['mean'] - acc):+.2f}{'' if reached else ', max'})")
        name = ", ".join([*(f"{k}={v}" for k, v in setting.items()), "recalibrated" if units else "plain"])
        print(f"| {seed} | {name} | {100 * r['val']:.2f} | {pm(r)} | {100 * r['min']:.1f} | {r['novelty_ratio']:.3f} "
              f"| {r['diversity_ratio']:.3f} | {r['heldout_ratio']:.2f} | {' | '.join(cells)} |")  # fmt: skip
        flows.append(r)
    return {"recipe": recipe, "copies": copies, "curves": curves, "flows": flows}


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4.5), squeeze=False)
    for ax, res in zip(axes[0], results, strict=True):
        for units, style in ((False, "o--"), (True, "s-")):
            for kind in KINDS:
                pts = sorted((r["novelty_ratio"], 100 * r["mean"]) for r in res["curves"][units][kind])
                ax.plot(*zip(*pts), style, ms=4, label=f"{kind}{', recalibrated' if units else ''}")
        for units, marker in ((False, "x"), (True, "*")):
            f = [r for r in res["flows"] if r["units"] == units]
            ax.scatter([r["novelty_ratio"] for r in f], [100 * r["mean"] for r in f], marker=marker, s=120, c="k",
                       zorder=3, label=f"flow{', unit recalibration' if units else ''}")  # fmt: skip
        ax.axhline(100 * res["copies"], color="g", lw=0.8, ls=":", label="zoo mean")
        finish_panel(ax, res["recipe"])
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--zoos", default="iris_mlp,digits_mlp")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--out", default="bench_out/frontier")
    p.add_argument(
        "--sweep", action="store_true", help="also the frontier benchmark's flow settings, recalibrated"
    )
    a = p.parse_args()
    a.seeds = [int(s) for s in a.seeds.split(",")]
    root = Path(a.out)
    results = [run_zoo(name, a, root) for name in a.zoos.split(",")]
    plot(results, root / "unit_recalibration.png")
    print(f"\nfigure: {root / 'unit_recalibration.png'}")


if __name__ == "__main__":
    main()
