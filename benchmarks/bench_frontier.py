"""The accuracy–novelty frontier: flow vs. zoo + noise vs. interpolation of zoo members, per zoo.

    python benchmarks/bench_frontier.py [--zoos iris_mlp,digits_mlp] [--num-models 100] [--holdout 20]
                                        [--seeds 0,1] [--out bench_out/frontier] [--device cpu]

Per zoo: train it (cached in ``--out``), canonicalize, keep the last ``--holdout`` members out of flow training.
Every generator makes 100 networks that are scored the same way (``dwf_hub.evaluation.frontier``): validation and test
accuracy, permutation-invariant novelty, diversity and held-out ratio against the networks the flow was fitted
on. Baselines sweep their knob (noise sigma; interpolation alpha and k), the flow sweeps its settings (PCA
components kept, iterations, sampling temperature = source std scale). Each flow row says whether it beats each
baseline at its own novelty (the baseline's test accuracy read off its sweep, linearly between settings).
Settings are chosen on the validation split; the test split is only reported. The recipe's default ``[flow]``
is rerun with every seed in ``--seeds`` (flow and generation seed), against fully scored matched baselines.
Prints markdown tables and saves ``frontier.png`` and ``frontier.json`` in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from _common import SWEEPS, TEMPERATURES, at_novelty, finish_panel, plot_sweeps, pm, sample

from dwf_hub.evaluation.frontier import Frontier, compare
from dwf_hub.flow.fitting import default_flow_config, fit_pipeline
from dwf_hub.matching import canonicalize
from dwf_hub.scoring import score_many
from dwf_hub.zoo.training import train_zoo


def run_zoo(recipe: str, a: argparse.Namespace, root: Path) -> dict:
    t0 = time.perf_counter()
    zoo = train_zoo(recipe, a.num_models, root / recipe / "zoo", seed=0, progress=False, device=a.device)
    canonical = canonicalize(zoo, progress=False).zoo
    seen, heldout = canonical.split_holdout(a.holdout)
    task = zoo.recipe.task
    (x_val, y_val), (x_te, y_te) = task.split("val"), task.split("test")
    test = Frontier(seen, x_te, y_te, heldout, num_networks=100)

    def val(w: torch.Tensor) -> float:
        return float(score_many(zoo.arch, w, x_val, y_val).mean())

    zoo_acc = score_many(zoo.arch, canonical.to_matrix(), x_te, y_te)
    print(f"\n## {recipe}: {len(zoo)} networks (fitted on {len(seen)}, {a.holdout} held out), D = {zoo.arch.num_params:,}, "
          f"zoo test accuracy {100 * zoo_acc.mean():.2f} ± {100 * zoo_acc.std(unbiased=False):.2f} "
          f"(min {100 * zoo_acc.min():.2f}); zoo trained in {time.perf_counter() - t0:.1f} s")  # fmt: skip
    rows: list[dict] = []
    held = {"generator": "held-out zoo members", "setting": "–", "val": val(test.scorer.heldout),
            **test.score(test.scorer.heldout, heldout=False)}  # fmt: skip
    rows.append(held)
    sweeps = {}
    copies_mean = float(score_many(zoo.arch, test.scorer.train, x_te, y_te).mean())
    for kind in ("noise", "interpolation"):
        sweeps[kind] = []
        for knob in test.sweep(kind):  # quick novelty for the curve; full scores below
            w = test.baseline_weights(kind, knob["knob"])
            r = {"generator": kind, "setting": ", ".join(f"{k}={v:.3g}" for k, v in knob["knob"].items()),
                 "val": val(w), **test.score(w), "knob": knob["knob"], "copies_mean": copies_mean}  # fmt: skip
            sweeps[kind].append(r)
            rows.append(r)
    for setting in SWEEPS[recipe]:
        cfg = default_flow_config(seen, seed=0, **setting)
        t1 = time.perf_counter()
        fit = fit_pipeline(seen, cfg, progress=False)
        fit_s = time.perf_counter() - t1
        for temp in TEMPERATURES:
            w = sample(fit.pipeline, 100, 0, temp)
            name = ", ".join(f"{k}={v}" for k, v in setting.items()) + f", T={temp}"
            rows.append({"generator": "flow", "setting": name, "val": val(w), **test.score(w), "fit_s": fit_s,
                         "config": {**setting, "temperature": temp}})  # fmt: skip
    for r in rows:
        if r["generator"] in ("flow", "held-out zoo members"):
            for kind in sweeps:
                acc, reached = at_novelty(sweeps[kind], r["novelty_ratio"])
                r[f"vs_{kind}"] = (r["mean"] - acc, reached)
    print_rows(rows)
    default = run_default(recipe, seen, test, sweeps, a, val)
    return {"recipe": recipe, "zoo_test": [float(v) for v in zoo_acc], "rows": rows, "default": default,
            "sweeps": sweeps}  # fmt: skip


def run_default(recipe, seen, test: Frontier, sweeps, a, val) -> list[dict]:
    """The recipe's default flow, once per seed, against fully scored matched baselines."""
    print(f"\n### {recipe}: the recipe's default [flow], seeds {a.seeds}")
    print("| seed | val acc (%) | test acc (%) | min | novelty | diversity | held-out | noise at that novelty "
          "| interpolation at that novelty | beats noise | beats interpolation |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    out = []
    for seed in a.seeds:
        cfg = default_flow_config(seen, seed=seed)
        w = sample(fit_pipeline(seen, cfg, progress=False).pipeline, 100, seed)
        r = {"seed": seed, "val": val(w), **test.score(w)}
        cells = []
        for kind in ("noise", "interpolation"):
            m = test.matched(kind, r["novelty_ratio"], sweeps[kind])
            c = compare(r, m)
            r[kind] = {"mean": m["mean"], "std": m["std"], "novelty_ratio": m["novelty_ratio"], "knob": m["knob"],
                       "reached": m["reached"], **c}  # fmt: skip
            knob = ", ".join(f"{k}={v:.3g}" for k, v in m["knob"].items())
            cells.append(f"{pm(m)} ({knob}, nov {m['novelty_ratio']:.3f}{'' if m['reached'] else ', max'})")
        print(f"| {seed} | {100 * r['val']:.2f} | {pm(r)} | {100 * r['min']:.1f} | {r['novelty_ratio']:.3f} "
              f"| {r['diversity_ratio']:.3f} | {r['heldout_ratio']:.2f} | {cells[0]} | {cells[1]} "
              f"| {'yes' if r['noise']['beats'] else 'no'} | {'yes' if r['interpolation']['beats'] else 'no'} |")  # fmt: skip
        out.append(r)
    return out


def print_rows(rows: list[dict]) -> None:
    print("| generator | setting | val acc (%) | test acc (%) | min | novelty | diversity | held-out "
          "| Δ vs noise (pp) | Δ vs interp. (pp) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        deltas = [
            "–"
            if f"vs_{k}" not in r
            else f"{100 * r[f'vs_{k}'][0]:+.2f}{'' if r[f'vs_{k}'][1] else ' (beyond)'}"
            for k in ("noise", "interpolation")
        ]
        print(f"| {r['generator']} | {r['setting']} | {100 * r['val']:.2f} | {pm(r)} | {100 * r['min']:.1f} "
              f"| {r['novelty_ratio']:.3f} | {r.get('diversity_ratio', float('nan')):.3f} "
              f"| {r.get('heldout_ratio', float('nan')):.2f} | {deltas[0]} | {deltas[1]} |")  # fmt: skip


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(6 * len(results), 4.5), squeeze=False)
    for ax, res in zip(axes[0], results):
        plot_sweeps(ax, res["sweeps"])
        flows = [r for r in res["rows"] if r["generator"] == "flow"]
        ax.scatter([r["novelty_ratio"] for r in flows], [100 * r["mean"] for r in flows], s=14, c="k",
                   alpha=0.6, label="flow (sweep)")  # fmt: skip
        d = res["default"]
        ax.scatter([r["novelty_ratio"] for r in d], [100 * r["mean"] for r in d], marker="*", s=150, c="r",
                   zorder=3, label="flow (default, per seed)")  # fmt: skip
        held = res["rows"][0]
        ax.scatter(
            [held["novelty_ratio"]], [100 * held["mean"]], marker="s", s=50, c="g", label="held-out zoo"
        )
        ax.axhline(
            100 * sum(res["zoo_test"]) / len(res["zoo_test"]), color="g", lw=0.8, ls=":", label="zoo mean"
        )
        finish_panel(ax, res["recipe"])
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--zoos", default="iris_mlp,digits_mlp")
    p.add_argument("--num-models", type=int, default=100)
    p.add_argument("--holdout", type=int, default=20)
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--out", default="bench_out/frontier")
    p.add_argument("--device", default=None)
    a = p.parse_args()
    a.seeds = [int(s) for s in a.seeds.split(",")]
    root = Path(a.out)
    root.mkdir(parents=True, exist_ok=True)
    results = [run_zoo(name, a, root) for name in a.zoos.split(",")]
    plot(results, root / "frontier.png")
    (root / "frontier.json").write_text(json.dumps(results, indent=1, default=str))
    print(f"\nfigure: {root / 'frontier.png'}")


if __name__ == "__main__":
    main()
