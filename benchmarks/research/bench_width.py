"""Does a wider zoo give a weight generator room to be new *and* accurate?

    python benchmarks/research/bench_width.py [--recipe digits_mlp] [--widths 32,128,512] [--split val] [--seed 0]
                                     [--out bench_out/width] [--no-flow]

A PCA-latent flow can only reach the affine span of its training members (``bench_residuals.py``): its new
networks are blends of aligned members. How accurate blends are is the zoo's linear mode connectivity after
alignment, which grows with width (Entezari et al. 2022; Ainsworth et al. 2023). Per width of the recipe's
hidden layers (every hidden layer set to it; zoo of 100 from the recipe's training, canonical, 80 fitted / 20
held out, cached in ``--out``): the held-out members (what genuinely new networks score), midpoints of two aligned
members, held-out members projected onto the fitted members' span (the most a span-confined generator can
reach) — plain and with hidden units recalibrated (REPAIR; the midpoints to their parents' statistics, the
projections to the members' mean ones, as the flow's samples near the zoo's centre are) — and the recipe's
default flow; then each baseline at the flow's weight and function novelty. Prints markdown tables, keeps each
width's rows in ``--out`` and saves ``width_SPLIT.png`` there with every width measured so far (a width run
without the flow keeps no flow row).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: _common
from _common import pm, sample
from bench_function_novelty import matched_rows
from bench_residuals import projector

from dwf_hub.evaluation.frontier import Frontier
from dwf_hub.evaluation.verdict import fmt_ratio
from dwf_hub.flow.fitting import fit_pipeline
from dwf_hub.generation.postprocess import recipe_calibration_data
from dwf_hub.generation.unit_recalibration import recalibrate_units, unit_statistics
from dwf_hub.io import write_json
from dwf_hub.matching import canonicalize
from dwf_hub.zoo.recipes import Recipe, load_recipe
from dwf_hub.zoo.training import train_zoo

MIDPOINT, MEAN = {"alpha": 0.5, "k": 2}, {"alpha": 79 / 80, "k": 80}


def widened(recipe: Recipe, width: int) -> Recipe:
    """``recipe`` with every hidden layer ``width`` units wide (an MLP recipe: ``layer_sizes``)."""
    sizes = recipe.arch["layer_sizes"]
    arch = {**recipe.arch, "layer_sizes": [sizes[0], *[width] * (len(sizes) - 2), sizes[-1]]}
    return dataclasses.replace(recipe, name=f"{recipe.name}_w{width}", arch=arch)


def run_width(recipe: Recipe, a: argparse.Namespace) -> list[dict]:
    zoo = train_zoo(recipe, 100, Path(a.out) / recipe.name / "zoo", seed=0, progress=False)
    seen, heldout = canonicalize(zoo, progress=False).zoo.split_holdout(20)
    x, y = recipe.split(a.split)
    frontiers = {units: Frontier(seen, x, y, heldout, recalibrate_units=units) for units in (False, True)}
    h, w = heldout.to_matrix(), seen.to_matrix()
    projected = projector(w.double())(h.double()).float()
    data = recipe_calibration_data(zoo.arch, recipe)
    mean_stats = unit_statistics(zoo.arch, w, data).mean(0, keepdim=True).expand(len(h), -1)
    sets = {
        "held-out members": h,
        "midpoints of two members": frontiers[False].baseline_weights("interpolation", MIDPOINT),
        "midpoints, recalibrated": frontiers[True].baseline_weights("interpolation", MIDPOINT),
        "mean of the fitted members, recalibrated": frontiers[True].baseline_weights("interpolation", MEAN),
        "held-out, projected onto the span": projected,
        "held-out, projected, recalibrated": recalibrate_units(zoo.arch, projected, mean_stats, data),
    }
    rows = [{"set": name, **frontiers[False].score(ws, heldout=False)} for name, ws in sets.items()]
    matched = []
    if a.flow:
        pipe = fit_pipeline(seen, recipe.flow_config(seed=a.seed), progress=False).pipeline
        units = pipe.codec.has_unit_targets
        rows.append({"set": "flow (recipe default)", **frontiers[units].score(sample(pipe, 100, a.seed))})
        matched = matched_rows(frontiers[units], rows[-1])
    print(f"\n## {recipe.name}: layers {recipe.arch['layer_sizes']}, D = {zoo.arch.num_params:,}\n")
    print(f"| set | {a.split} acc (%) | min | novelty | diversity | held-out | function novelty |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['set']} | {pm(r)} | {100 * r['min']:.1f} | {r['novelty_ratio']:.3f} "
              f"| {fmt_ratio(r.get('diversity_ratio'))} | {fmt_ratio(r.get('heldout_ratio'))} "
              f"| {r['function_novelty_ratio']:.3f} |")  # fmt: skip
    if matched:
        print(f"\n| flow | matched on | baseline | setting | novelty | function novelty | {a.split} acc (%) "
              "| flow − baseline |\n|---|---|---|---|---|---|---|---|")  # fmt: skip
        print(*matched, sep="\n")
    return rows


def plot(results: dict[int, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    widths = sorted(results)
    fig, (acc, nov) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name in dict.fromkeys(r["set"] for w in widths for r in results[w]):
        pts = [(w, r) for w in widths for r in results[w] if r["set"] == name]
        xs = [w for w, _ in pts]
        acc.plot(xs, [100 * r["mean"] for _, r in pts], "o-", label=name)
        nov.plot(xs, [r["novelty_ratio"] for _, r in pts], "o-", label=name)
    for ax, label in ((acc, "accuracy (%)"), (nov, "novelty ratio")):
        ax.set(xscale="log", xlabel="hidden width", ylabel=label, xticks=widths, xticklabels=widths)
        ax.minorticks_off()
        ax.grid(alpha=0.3)
    acc.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--recipe", default="digits_mlp")
    p.add_argument("--widths", default="32,128,512")
    p.add_argument("--split", default="val", help="test: only for a setting already chosen on val")
    p.add_argument("--seed", type=int, default=0, help="the flow's seed")
    p.add_argument("--out", default="bench_out/width")
    p.add_argument("--no-flow", dest="flow", action="store_false", help="only the zoo's own rows")
    a = p.parse_args()
    base = load_recipe(a.recipe)
    for width in map(int, a.widths.split(",")):
        rows = run_width(widened(base, width), a)
        write_json(Path(a.out) / f"{base.name}_w{width}" / f"rows_{a.split}.json", rows)
    results = {}  # every width measured so far (this run's and earlier ones'), for the figure
    for path in sorted(Path(a.out).glob(f"{base.name}_w*/rows_{a.split}.json")):
        results[int(path.parent.name.rsplit("_w", 1)[1])] = json.loads(path.read_text())
    figure = Path(a.out) / f"width_{a.split}.png"
    plot(results, figure)
    print(f"\nfigure: {figure}")


if __name__ == "__main__":
    main()
