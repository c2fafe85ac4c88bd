"""One conditional flow vs one unconditional flow per zoo (paper Appendix K, Table 19), offline.

    python benchmarks/bench_conditional.py [--recipes digits_halves_mlp,digits_halves_mlp_smallcnn]
                                           [--num-models 100] [--holdout 20]
                                           [--seeds 0,1] [--dir bench_out/conditional]

For each conditional recipe: one zoo per condition (``--num-models`` members, seeds apart), the last
``--holdout`` of each kept unseen; the conditional flow (the recipe's ``[flow]``) and, per condition, the zoo
recipe's own unconditional flow, both fitted on the same members. 100 networks per condition and generator,
each scored on its condition's test split by the same permutation-invariant procedure as the frontier
benchmark (novelty: distance to the nearest seen member of that condition after aligning to it; diversity;
held-out ratio), with noise and interpolation of that condition's zoo at the conditional set's novelty (their
hidden units recalibrated to their parents' statistics when the flows' are: ``unit_recalibration``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from dwf_hub.evaluation.frontier import Frontier, compare
from dwf_hub.flow.conditional import load_conditional_recipe
from dwf_hub.flow.fitting import fit_conditional, fit_pipeline
from dwf_hub.scoring import score_many
from dwf_hub.zoo.training import train_zoo


def pm(r: dict) -> str:
    return f"{100 * r['mean']:.2f} ± {100 * r['std']:.2f}"


def run(name: str, a: argparse.Namespace, root: Path) -> list[dict]:
    cond = load_conditional_recipe(name)
    recipes = cond.recipes()
    labels = list(recipes)
    t0 = time.perf_counter()
    zoos = [train_zoo(r, a.num_models, root / name / label, seed=10_000 * i, progress=False)
            for i, (label, r) in enumerate(recipes.items())]  # fmt: skip
    print(f"\n## {name}: conditions {labels}, {a.num_models} networks each ({a.num_models - a.holdout} fitted, "
          f"{a.holdout} held out); zoos trained in {time.perf_counter() - t0:.0f} s\n")  # fmt: skip
    print("| condition | seed | generator | test acc (%) | min | novelty | diversity | held-out | noise at that "
          "novelty | interpolation at that novelty | fit (s) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for seed in a.seeds:
        flows = {}
        for iterations in a.iterations or [None]:
            t0 = time.perf_counter()
            over = {"iterations": iterations} if iterations else {}
            cfg = cond.flow_config(holdout=a.holdout, seed=seed, **over)
            name = f"conditional flow ({cfg.training.iterations} it.)"
            flows[name] = (fit_conditional(zoos, labels, cfg, progress=False), time.perf_counter() - t0)
        for label, zoo, recipe in zip(labels, zoos, recipes.values(), strict=True):
            x, y = recipe.split("test")
            both = next(iter(flows.values()))[0]
            seen, held = both.condition_zoos[label]
            units = both.pipeline.codec_of(label).has_unit_targets  # baselines recalibrated as the flows are
            frontier = Frontier(seen, x, y, held, num_networks=100, seed=seed, recalibrate_units=units)
            if seed == a.seeds[0]:
                z = score_many(zoo.arch, seen.to_matrix(), x, y)
                r = {"mean": float(z.mean()), "std": float(z.std(unbiased=False)), "min": float(z.min())}
                print(
                    f"| {label} | – | zoo (fitted members) | {pm(r)} | {100 * r['min']:.1f} | – | – | – | – | – | – |"
                )
            t0 = time.perf_counter()
            alone = fit_pipeline(zoo, recipe.flow_config(holdout=a.holdout, seed=seed), progress=False)
            alone_s = time.perf_counter() - t0
            gen = lambda s=seed: torch.Generator().manual_seed(s)  # noqa: E731
            sets = {name: (fit.pipeline(100, gen(), output_type="state_dict", condition=label).weights, fit_s)
                    for name, (fit, fit_s) in flows.items()}  # fmt: skip
            sets["unconditional flow"] = (
                alone.pipeline(100, gen(), output_type="state_dict").weights,
                alone_s,
            )
            for generator, (w, fit_s) in sets.items():
                r = {
                    "condition": label,
                    "seed": seed,
                    "generator": generator,
                    **frontier.score(w),
                    "fit_s": fit_s,
                }
                cells = []
                for kind in ("noise", "interpolation"):
                    m = frontier.matched(kind, r["novelty_ratio"], diversity=False)
                    r[kind] = {"mean": m["mean"], "std": m["std"], "knob": m["knob"], **compare(r, m)}
                    cells.append(f"{pm(m)}{'' if m['reached'] else ' (max)'}")
                print(f"| {label} | {seed} | {generator} | {pm(r)} | {100 * r['min']:.1f} | {r['novelty_ratio']:.3f} "
                      f"| {r['diversity_ratio']:.3f} | {r['heldout_ratio']:.2f} | {cells[0]} | {cells[1]} | {fit_s:.0f} |")  # fmt: skip
                rows.append(r)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", default="digits_halves_mlp")
    parser.add_argument("--num-models", type=int, default=100)
    parser.add_argument("--holdout", type=int, default=20)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument(
        "--iterations", default="", help="conditional flow iterations to compare (default: the recipe's)"
    )
    parser.add_argument("--dir", default="bench_out/conditional")
    a = parser.parse_args()
    a.seeds = [int(s) for s in a.seeds.split(",")]
    a.iterations = [int(s) for s in a.iterations.split(",") if s]
    root = Path(a.dir)
    results = {name: run(name, a, root) for name in a.recipes.split(",")}
    (root / "results.json").write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
