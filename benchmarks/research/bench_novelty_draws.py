"""How much do a generator's figures move from one draw of 100 networks to the next, and do the reports'
bootstrap intervals say so?

    python benchmarks/research/bench_novelty_draws.py [--zoos iris_mlp,digits_mlp] [--draws 6] [--split test]
                                             [--out bench_out/frontier] [--cnn-out bench_out/frontier_cnn]

Per zoo (100 members cached in ``--out`` / ``--cnn-out``, 80 fitted, 20 held out) the recipe's default flow
(seed 0) is fitted once and sampled ``--draws`` times (generator seeds 0, 1, ...); every draw is scored by
``Frontier.score`` on ``--split``: accuracy, novelty, diversity, held-out and function novelty ratios, each with
its 95 % bootstrap interval over the draw's networks, and the margin over zoo + noise and interpolation at the draw's
weight / function novelty (their sweeps read linearly, as in ``bench_frontier.py``). The last rows: the spread of
each ratio over the draws, and how many of the other draws' values each draw's interval contains (its empirical
coverage).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: _common
from _common import default_flow, margins, pm, swept

RATIOS = ("novelty", "diversity", "heldout", "function_novelty")


def run_zoo(recipe: str, root: Path, a: argparse.Namespace) -> None:
    pipe, frontier = default_flow(recipe, root, a.split)
    sweeps = swept(frontier)
    print(f"\n## {recipe} ({a.split} split; default flow, seed 0; {a.draws} draws of 100)")
    print("| draw | acc (%) | " + " | ".join(f"{r.replace('_', ' ')} (95 % interval)" for r in RATIOS)
          + " | Δ vs noise (weight / fn) | Δ vs interp. (weight / fn) |")  # fmt: skip
    print("|---" * (4 + len(RATIOS)) + "|")
    rows = []
    for draw in range(a.draws):
        gen = torch.Generator().manual_seed(draw)
        r = frontier.score(
            pipe(num_networks=100, generator=gen, output_type="state_dict", quality_check=False).weights
        )
        cells = [
            f"{r[f'{k}_ratio']:.3f} ({r[f'{k}_interval'][0]:.2f}–{r[f'{k}_interval'][1]:.2f})" for k in RATIOS
        ]
        cells += margins(r, sweeps)
        print(f"| {draw} | {pm(r)} | " + " | ".join(cells) + " |")
        rows.append(r)
    spread = [
        f"{min(r[f'{k}_ratio'] for r in rows):.3f}–{max(r[f'{k}_ratio'] for r in rows):.3f}" for k in RATIOS
    ]
    accs = [100 * r["mean"] for r in rows]
    print(f"| spread | {min(accs):.2f}–{max(accs):.2f} | " + " | ".join(spread) + " |")
    coverage = []
    for k in RATIOS:
        hits = sum(
            lo <= o[f"{k}_ratio"] <= hi
            for r in rows
            for (lo, hi) in [r[f"{k}_interval"]]
            for o in rows
            if o is not r
        )
        coverage.append(f"{hits} of {len(rows) * (len(rows) - 1)}")
    print("| other draws inside the interval | | " + " | ".join(coverage) + " |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--zoos", default="iris_mlp,digits_mlp")
    p.add_argument("--draws", default=6, type=int)
    p.add_argument("--split", default="test", choices=("val", "test"))
    p.add_argument("--out", default="bench_out/frontier", type=Path)
    p.add_argument("--cnn-out", default="bench_out/frontier_cnn", type=Path)
    a = p.parse_args()
    for recipe in a.zoos.split(","):
        run_zoo(recipe, a.cnn_out if "cnn" in recipe else a.out, a)


if __name__ == "__main__":
    main()
