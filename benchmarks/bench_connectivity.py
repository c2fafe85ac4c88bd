"""Does the fit-time connectivity check tell a user what the flow will give? The check (16 midpoints of aligned
fitted members, validation split, as ``fit_pipeline`` runs it) next to the same figure from 100 pairs and to the
recipe's default flow's failed share and accuracy.

    python benchmarks/bench_connectivity.py [--zoos iris_mlp,digits_mlp,digits_smallcnn] [--seeds 0,1,2]
                                            [--out bench_out/frontier] [--cnn-out bench_out/frontier_cnn]
                                            [--big-out bench_out/frontier_big] [--no-flow]

Per zoo (the benchmark zoos: 100 members, seed 0, trained first when missing; 80 fitted, 20 held out): the check
with ``--seeds`` (which pairs are drawn) and its wall time, the 100-pair figure, and (unless ``--no-flow``) the
recipe's default flow (seed 0), 100 networks scored on the validation split by ``Frontier.score``: mean, min and
the failed share (networks more than ``frontier.FAILED_MARGIN`` below the worst fitted member). Prints a markdown
table.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from _common import cached_zoo

from dwf_hub.evaluation.connectivity import measure_connectivity
from dwf_hub.evaluation.frontier import Frontier
from dwf_hub.flow.fitting import default_flow_config, fit_pipeline
from dwf_hub.matching import canonicalize

HOLDOUT = 20


def root_of(recipe: str, a: argparse.Namespace) -> Path:
    """Where the other benchmarks cache ``recipe``'s zoo."""
    if recipe in ("digits_resnet20", "digits_vit"):
        return a.big_out
    return a.cnn_out if "cnn" in recipe else a.out


def run_zoo(recipe: str, a: argparse.Namespace) -> str:
    zoo = cached_zoo(recipe, root_of(recipe, a))
    seen, heldout = canonicalize(zoo, progress=False).zoo.split_holdout(HOLDOUT)
    units = bool(zoo.arch.unit_layers)  # the recipes' flows recalibrate units wherever the arch allows it
    checks, seconds = [], []
    for seed in a.seeds:
        t0 = time.perf_counter()
        checks.append(measure_connectivity(seen, 16, seed, recalibrate_units=units))
        seconds.append(time.perf_counter() - t0)
    wide = measure_connectivity(seen, 100, 0, recalibrate_units=units)
    cells = [
        recipe,
        f"{100 * wide.members:.2f}",
        " / ".join(f"{100 * c.midpoints:.1f}" for c in checks),
        f"{100 * wide.midpoints:.2f}",
        " / ".join("yes" if c.connected else "no" for c in checks),
        f"{sum(seconds) / len(seconds):.2f}",
    ]
    if a.flow:
        fit = fit_pipeline(seen, default_flow_config(zoo, seed=0, connectivity_pairs=0), progress=False)
        w = fit.pipeline(
            num_networks=100, generator=torch.Generator().manual_seed(0), output_type="state_dict"
        )
        x, y = zoo.recipe.task.split("val")
        r = Frontier(seen, x, y, heldout).score(w.weights, quick=True, diversity=False)
        cells += [
            f"{100 * r['mean']:.2f} ± {100 * r['std']:.2f}",
            f"{100 * r['min']:.1f}",
            f"{100 * r['failed_share']:.0f} %",
        ]
    else:
        cells += ["–"] * 3
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--zoos", default="iris_mlp,digits_mlp,digits_smallcnn")
    p.add_argument("--seeds", default="0,1,2", type=lambda s: [int(v) for v in s.split(",")])
    p.add_argument("--out", default="bench_out/frontier", type=Path)
    p.add_argument("--cnn-out", default="bench_out/frontier_cnn", type=Path)
    p.add_argument("--big-out", default="bench_out/frontier_big", type=Path)
    p.add_argument("--no-flow", dest="flow", action="store_false")
    a = p.parse_args()
    print("| zoo | fitted members, val acc (%) | check: 16 midpoints, per seed (%) | 100 midpoints (%) "
          "| connected (per seed) | check time (s) | default flow: val acc (%) | min | failed |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for recipe in a.zoos.split(","):
        print(run_zoo(recipe, a), flush=True)


if __name__ == "__main__":
    main()
