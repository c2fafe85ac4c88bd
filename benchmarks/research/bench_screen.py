"""Screen flow settings on one cached zoo against noise and interpolation, on the validation split.

    python benchmarks/research/bench_screen.py [--zoo digits_vit] [--template digits_smallcnn] [--out bench_out/frontier_big]
                                      [--settings '{"whiten all": {}, "whiten 0.99": {"n_components": 0.99}}']
                                      [--sweep-networks N]

The cached 100-member zoo of ``--zoo`` (80 fitted, 20 held out), both baselines swept once (quick novelty), then
per setting: a flow from ``--template``'s ``[flow]`` (a recipe whose flow settings are the starting point) with
the setting's overrides (``temperature``: the sampling temperature), 100 networks scored in full and each
baseline's accuracy at their weight / function novelty read off its sweep. Prints the sweeps and one markdown
table; saves ``screen_<zoo>.png`` in ``--out`` (both novelty axes).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: _common
from _common import cached_zoo, margins, panels, plot_sweeps, pm, sample, swept

from dwf_hub.evaluation.frontier import Frontier
from dwf_hub.evaluation.verdict import fmt_ratio
from dwf_hub.flow.fitting import fit_pipeline
from dwf_hub.matching import canonicalize
from dwf_hub.zoo.recipes import load_recipe

SETTINGS = {
    "whiten all": {},
    "whiten 0.99": {"n_components": 0.99},
    "whiten all, T 0.7": {"temperature": 0.7},
}
KEYS = ("novelty_ratio", "function_novelty_ratio")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--zoo", default="digits_vit")
    p.add_argument(
        "--template", default="digits_smallcnn", help="the recipe whose [flow] settings start each flow"
    )
    p.add_argument("--out", default="bench_out/frontier_big")
    p.add_argument("--settings", type=json.loads, default=SETTINGS, help="JSON: name -> flow overrides")
    p.add_argument(
        "--sweep-networks", type=int, default=None, help="networks per sweep setting (default 100)"
    )
    a = p.parse_args()
    zoo = cached_zoo(a.zoo, Path(a.out))
    seen, held = canonicalize(zoo, progress=False).zoo.split_holdout(20)
    frontier = Frontier(seen, *zoo.recipe.task.split("val"), held, sweep_networks=a.sweep_networks)
    sweeps = swept(frontier)
    for kind, rows in sweeps.items():
        print(kind, ", ".join(f"{r['knob']}: {100 * r['mean']:.2f} % at {r['novelty_ratio']:.3f} / "
                              f"{r['function_novelty_ratio']:.3f}" for r in rows))  # fmt: skip
    print(f"\n## {a.zoo}: flows from {a.template}'s [flow], validation split")
    print("| setting | val acc (%) | min | novelty | diversity | held-out | fn novelty | Δ noise (weight / fn) | "
          "Δ interp. (weight / fn) | fit (s) |\n|---|---|---|---|---|---|---|---|---|---|")  # fmt: skip
    rows = {}
    for name, over in a.settings.items():
        over = dict(over)
        temperature = over.pop("temperature", None)
        t0 = time.perf_counter()
        pipe = fit_pipeline(
            seen, load_recipe(a.template).flow_config(seed=0, **over), progress=False
        ).pipeline
        fit_s = time.perf_counter() - t0
        r = rows[name] = frontier.score(sample(pipe, 100, 0, temperature))
        ratios = " | ".join(
            fmt_ratio(r[k]) for k in ("novelty_ratio", "diversity_ratio", "heldout_ratio", KEYS[1])
        )
        print(
            f"| {name} | {pm(r)} | {100 * r['min']:.1f} | {ratios} | {' | '.join(margins(r, sweeps))} | {fit_s:.0f} |"
        )
    plot(a, sweeps, rows)


def plot(a: argparse.Namespace, sweeps: dict, rows: dict) -> None:
    fig, axes = panels(2, 5.5, 4)
    for ax, key in zip(axes, KEYS):
        plot_sweeps(ax, sweeps, key)
        for name, r in rows.items():
            ax.scatter([r[key]], [100 * r["mean"]], marker="*", s=120, zorder=3, label=name)
        ax.set(title=a.zoo, xlabel=key.replace("_", " "), ylabel="mean validation accuracy (%)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(Path(a.out) / f"screen_{a.zoo}.png", dpi=110)


if __name__ == "__main__":
    main()
