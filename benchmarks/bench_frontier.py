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
from itertools import pairwise
from pathlib import Path

import torch

from dwf_hub.evaluation.frontier import Frontier, compare
from dwf_hub.flow.fitting import default_flow_config, fit_pipeline
from dwf_hub.matching import canonicalize
from dwf_hub.scoring import score_many
from dwf_hub.zoo.recipes import load_recipe
from dwf_hub.zoo.training import train_zoo
from dwf_hub.zoo.weight_zoo import WeightZoo

# Flow settings swept per zoo (one thing varied at a time around the recipe's default); every fit is also
# sampled at temperatures 0.8 and 1.2.
SWEEPS = {
    "iris_mlp": [
        {"n_components": None, "iterations": it} for it in (500, 1000, 2000, 4000)
    ] + [{"n_components": 0.95, "iterations": it} for it in (500, 1000, 2000)]
    + [{"n_components": 0.99, "iterations": it} for it in (1000, 2000, 4000)]
    + [{"normalization": "none", "source_std": "matched", "iterations": 2000}],
    "digits_mlp": [
        {"n_components": None, "iterations": it} for it in (2000, 8000)
    ] + [{"n_components": f, "iterations": it} for f in (0.95, 0.99) for it in (2000, 8000)],
    # Conv / ViT zoos: a GPU run (`--device cuda`); on 2 CPU cores only the first two settings are affordable.
    **{name: [{"n_components": f} for f in (None, 0.99, 0.95)] for name in ("digits_smallcnn", "digits_resnet20", "digits_vit")},
}  # fmt: skip
TEMPERATURES = (0.8, 1.0, 1.2)


def add_overrides(p: argparse.ArgumentParser) -> None:
    """``--set KEY=VALUE`` (repeatable): flow config overrides; ``overrides(args)`` reads them."""
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="flow config override, e.g. --set coupling=ot --set ema_decay=0.999")  # fmt: skip


def overrides(a: argparse.Namespace) -> dict:
    """The ``--set`` values, JSON where they parse (numbers, true, null), else plain strings."""

    def value(text: str):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text

    return {k: value(v) for k, v in (s.split("=", 1) for s in a.set)}


def margins(r: dict, sweeps: dict[str, list[dict]]) -> list[str]:
    """Per baseline, ``r``'s accuracy minus its sweep's at ``r``'s weight / function novelty, as ``"+a / +b"`` (``(max)``:
    the sweep never gets that novel)."""
    cells = []
    for sweep in sweeps.values():
        out = []
        for key in ("novelty_ratio", "function_novelty_ratio"):
            acc, reached = at_novelty(sweep, r[key], key)
            out.append(f"{100 * (r['mean'] - acc):+.2f}{'' if reached else ' (max)'}")
        cells.append(" / ".join(out))
    return cells


def cached_zoo(recipe: str, root: Path) -> WeightZoo:
    """The benchmark zoo of ``recipe`` (100 members, seed 0) from ``root / recipe / "zoo"``, trained there first
    if it is not cached yet."""
    folder = root / recipe / "zoo"
    return (
        WeightZoo.load(folder) if folder.is_dir() else train_zoo(recipe, 100, folder, seed=0, progress=False)
    )


def default_flow(recipe: str, root: Path, split: str, seed: int = 0):
    """``(pipeline, Frontier)``: the recipe's default flow (``seed``) fitted on the cached zoo's first 80
    canonical members, and the frontier scoring on ``split`` against them (20 held out), baselines recalibrated
    as the flow's samples are."""
    zoo = cached_zoo(recipe, root)
    x, y = zoo.recipe.task.split(split)
    seen, heldout = canonicalize(zoo, progress=False).zoo.split_holdout(20)
    pipe = fit_pipeline(seen, load_recipe(recipe).flow_config(seed=seed), progress=False).pipeline
    return pipe, Frontier(seen, x, y, heldout, recalibrate_units=pipe.codec.has_unit_targets)


def swept(frontier: Frontier, kinds: tuple[str, ...] = ("noise", "interpolation")) -> dict[str, list[dict]]:
    """Each baseline's quick sweep, its rows carrying the fitted members' mean accuracy (``copies_mean``: the
    zero-novelty end of the curve ``at_novelty`` reads)."""
    copies = float(score_many(frontier.seen.arch, frontier.scorer.train, frontier.x, frontier.y).mean())
    return {kind: [{**r, "copies_mean": copies} for r in frontier.sweep(kind)] for kind in kinds}


def panels(n: int, width: float = 6, height: float = 4):
    """``(figure, axes [n])``: one row of ``n`` panels on matplotlib's file-only backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, n, figsize=(width * n, height), squeeze=False)
    return fig, axes[0]


def plot_sweeps(ax, sweeps: dict[str, list[dict]], key: str = "novelty_ratio") -> None:
    """Each baseline's sweep as a dashed line of accuracy (%) against ``key`` (weight or function novelty)."""
    for kind, sweep in sweeps.items():
        ax.plot(*zip(*sorted((r[key], 100 * r["mean"]) for r in sweep)), "o--", ms=4, alpha=0.7, label=kind)


def pm(r: dict, key: str = "") -> str:
    return f"{100 * r[key + 'mean']:.2f} ± {100 * r[key + 'std']:.2f}"


def at_novelty(sweep: list[dict], novelty: float, key: str = "novelty_ratio") -> tuple[float, bool]:
    """A baseline's test accuracy at ``novelty`` (``key``: weight or function novelty) read off its sweep
    (sorted by novelty, linear between settings); ``False`` when the sweep never gets that novel (then its most
    novel setting's accuracy)."""
    pts = sorted(
        [(0.0, sweep[0]["copies_mean"])] + [(r[key], r["mean"]) for r in sweep if r[key] is not None]
    )
    if novelty >= pts[-1][0]:
        return pts[-1][1], False
    for (n0, a0), (n1, a1) in pairwise(pts):
        if n0 <= novelty <= n1:
            return a0 + (a1 - a0) * (novelty - n0) / max(n1 - n0, 1e-12), True
    return pts[0][1], True


def sample(pipe, n: int, seed: int, temperature: float | None = None) -> torch.Tensor:
    """``n`` generated networks (BN recalibrated), the source std scaled by ``temperature`` (None: the
    pipeline's own)."""
    gen = torch.Generator().manual_seed(seed)
    out = pipe(
        num_networks=n, generator=gen, output_type="state_dict", temperature=temperature, quality_check=False
    )
    return out.weights  # the raw flow


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


def finish_panel(ax, title: str) -> None:
    """Title, accuracy–novelty axis labels and legend of one figure panel."""
    ax.set(title=title, xlabel="novelty ratio (permutation-invariant)", ylabel="mean test accuracy (%)")
    ax.legend(fontsize=7)


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
