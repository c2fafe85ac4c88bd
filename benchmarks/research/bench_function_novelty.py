"""Weight-space vs function-space novelty: which sets are new in what they compute, not just in their weights.

    python benchmarks/research/bench_function_novelty.py [--zoos iris_mlp,digits_mlp] [--seed 0] [--temperatures default]
                                                [--modes off,auto] [--split test] [--figure function_novelty.png]
                                                [--out bench_out/frontier] [--cnn-out bench_out/frontier_cnn]
                                                [--set KEY=VALUE ...]  # flow config overrides

The frontier benchmark's zoos (100 members, cached in ``--out``, SmallCNN in ``--cnn-out``; 80 fitted, 20 held
out). Every set is scored on the test split (``--split val`` for choosing settings) by ``Frontier.score``: task metric, permutation-invariant novelty and
function novelty (distance between class probabilities, over the zoo's own nearest-other scale). Rows: the
held-out members (what genuinely new networks of the zoo's kind score), zoo + noise and interpolation of
members at fixed settings (up to the plain mean of all fitted members), plain and with unit recalibration, a
reviewer's zoo mean + noise (``mean_noise``) and Gaussian (``gaussian``), and the recipe's default flow (``seed``) plain and recalibrated; then, for each
flow, every baseline at its weight novelty and at its function novelty (``max``: the baseline's most novel setting,
``min``: its least novel one, more novel than the flow). Prints one markdown table per zoo and saves ``function_novelty.png`` in ``--out``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: _common
from _common import add_overrides, cached_zoo, finish_panel, overrides, pm, sample

from dwf_hub.evaluation.baselines import BASELINES
from dwf_hub.evaluation.frontier import COPIES, Frontier
from dwf_hub.evaluation.verdict import fmt_ratio
from dwf_hub.flow.fitting import fit_pipeline
from dwf_hub.matching import canonicalize
from dwf_hub.zoo.recipes import load_recipe

SETTINGS = (
    ("noise", {"sigma": 0.05}),
    ("noise", {"sigma": 0.3}),
    ("interpolation", {"alpha": 0.5, "k": 2}),
    ("interpolation", {"alpha": 0.9, "k": 10}),  # average of 10 members
    ("interpolation", {"alpha": 0.6, "k": 80}),  # a member shrunk 60 % toward the mean of the others
    ("interpolation", {"alpha": 79 / 80, "k": 80}),  # the mean of all 80 fitted members: one network
    ("mean_noise", {"sigma": 0.1}),  # a reviewer's baseline: that mean plus noise
    ("mean_noise", {"sigma": 0.3}),
    ("gaussian", {"scale": 0.5}),  # a Gaussian fitted to the members' in-span parts, at half its std
    ("gaussian", {"scale": 1.0}),
)


def run_zoo(recipe: str, root: Path, a: argparse.Namespace) -> list[dict]:
    zoo = cached_zoo(recipe, root)
    seen, heldout = canonicalize(zoo, progress=False).zoo.split_holdout(20)
    x, y = zoo.recipe.task.split(a.split)
    frontiers = {units: Frontier(seen, x, y, heldout, recalibrate_units=units) for units in (False, True)}
    rows = [{"set": "held-out members", **frontiers[False].score(heldout.to_matrix(), heldout=False)}]
    for units, frontier in frontiers.items():
        for kind, knob in SETTINGS:
            name = f"{kind} {', '.join(f'{k}={v:g}' for k, v in knob.items())}"
            row = frontier.score(frontier.baseline_weights(kind, knob), heldout=False)
            rows.append({"set": name + (", recalibrated" if units else ""), **row})
    flows = []
    for mode in a.modes.split(","):
        cfg = load_recipe(recipe).flow_config(seed=a.seed, unit_recalibration=mode, **a.overrides)
        pipe = fit_pipeline(seen, cfg, progress=False).pipeline
        units = pipe.codec.has_unit_targets
        for t in a.temperatures:
            row = frontiers[units].score(sample(pipe, 100, a.seed, t))  # with the held-out ratio
            changed = [f"{k}={v}" for k, v in a.overrides.items()] + (
                [f"temperature {t:g}"] if t is not None else []
            )
            name = f"flow (recipe default{''.join(', ' + c for c in changed)})"
            rows.append({"set": name + (", recalibrated" if units else ""), **row})
            flows += matched_rows(frontiers[units], rows[-1])
    print(f"\n## {recipe}\n")
    print(f"| set | {a.split} acc (%) | min | novelty | diversity | held-out | function novelty |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['set']} | {pm(r)} | {100 * r['min']:.1f} | {r['novelty_ratio']:.3f} "
              f"| {r['diversity_ratio']:.3f} | {fmt_ratio(r.get('heldout_ratio'))} | {r['function_novelty_ratio']:.3f} |")  # fmt: skip
    print(
        f"\n| flow | matched on | baseline | setting | novelty | function novelty | diversity | {a.split} acc (%) "
        "| flow − baseline |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    print(*flows, sep="\n")
    return rows


def matched_rows(frontier: Frontier, flow: dict) -> list[str]:
    """Markdown rows: each baseline (treated as the flow's samples were) at the flow's weight novelty and at
    its function novelty (and those that cannot copy the zoo at its diversity), with the flow's accuracy margin (``max``: the baseline's most novel setting)."""
    lines = []
    for key in ("novelty_ratio", "function_novelty_ratio", "diversity_ratio"):
        for kind in BASELINES if key != "diversity_ratio" else [k for k in BASELINES if k not in COPIES]:
            sweep = frontier.sweep(kind, diversity=True) if key == "diversity_ratio" else None
            b = frontier.matched(kind, flow[key], sweep, diversity=key == "diversity_ratio", key=key)
            knob = ", ".join(f"{k}={v:.3g}" for k, v in b["knob"].items())
            lines.append(f"| {flow['set']} | {key.replace('_ratio', '').replace('_', ' ')} | {kind} | {knob} "
                         f"| {b['novelty_ratio']:.3f} | {b['function_novelty_ratio']:.3f} | {fmt_ratio(b.get('diversity_ratio'))} | {pm(b)} "
                         f"| {100 * (flow['mean'] - b['mean']):+.2f}{' (min)' if b['too_novel'] else '' if b['reached'] else ' (max)'} |")  # fmt: skip
    return lines


def plot(results: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4.5), squeeze=False)
    for ax, (recipe, rows) in zip(axes[0], results.items(), strict=True):
        for r in rows:
            ax.scatter(r["novelty_ratio"], r["function_novelty_ratio"], s=10 + r["mean"] * 90,
                       marker="*" if r["set"].startswith("flow") else "o", label=f"{r['set']} ({100 * r['mean']:.1f} %)")  # fmt: skip
        finish_panel(ax, recipe)
        ax.set(xlabel="novelty ratio (weights, permutation-invariant)", ylabel="function novelty ratio")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--zoos", default="iris_mlp,digits_mlp")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="bench_out/frontier")
    p.add_argument("--cnn-out", default="bench_out/frontier_cnn")
    p.add_argument(
        "--temperatures",
        default="default",
        help="sampling temperatures of the flows (source std scale; 'default': the recipe's)",
    )
    p.add_argument("--modes", default="off,auto", help="unit recalibration modes of the flows")
    p.add_argument("--split", default="test", help="val: for choosing settings")
    p.add_argument("--figure", default="function_novelty.png", help="file name in --out")
    add_overrides(p)
    a = p.parse_args()
    a.overrides = overrides(a)
    a.temperatures = tuple(None if t == "default" else float(t) for t in a.temperatures.split(","))
    results = {
        name: run_zoo(name, Path(a.cnn_out if "cnn" in name else a.out), a) for name in a.zoos.split(",")
    }
    plot(results, Path(a.out) / a.figure)
    print(f"\nfigure: {Path(a.out) / a.figure}")


if __name__ == "__main__":
    main()
