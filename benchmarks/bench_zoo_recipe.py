"""How the zoo is trained decides what a flow can draw: learning rate and a shared start, on the validation split.

    python benchmarks/bench_zoo_recipe.py [--recipe digits_mlp] [--lrs 0.001,0.003,0.01,0.02]
                                          [--starts independent,shared] [--flow] [--flow-seeds 0]

Per zoo of 100 members (the recipe's training with one change: its learning rate, or every member starting from
one shared initialisation — seed 10,000 — with its own seed's data order, after Frankle et al.'s finding that such
networks are linearly connected), after Git Re-Basin: validation accuracy and final training loss of the members,
mean member-to-member distance over the mean norm, how often two members disagree on the validation split, and the
validation accuracy of midpoints of 32 aligned pairs (the interpolation baseline at alpha 0.5, k 2). With
``--flow``: the recipe's default flow fitted on 80 members (20 held out) and 100 generated networks scored as
``bench_screen.py`` scores them, against noise and interpolation swept on the same zoo. Prints one markdown table;
saves ``zoo_recipe_<recipe>.png`` in ``--out`` (midpoint vs member accuracy, and the flow's accuracy vs novelty).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import torch
from _common import margins, panels, sample, swept

from dwf_hub.evaluation.connectivity import measure_connectivity
from dwf_hub.evaluation.frontier import Frontier
from dwf_hub.evaluation.verdict import fmt_ratio
from dwf_hub.flow.fitting import fit_pipeline
from dwf_hub.matching import canonicalize
from dwf_hub.scoring import outputs_many
from dwf_hub.zoo.recipes import load_recipe
from dwf_hub.zoo.training import spawn_start, train_members
from dwf_hub.zoo.weight_zoo import WeightZoo

SHARED_SEED = 10_000


def train(recipe_name: str, lr: float, start: str, members: int = 100) -> WeightZoo:
    """``members`` networks of the recipe trained at ``lr``: ``independent`` (each from its own seed's
    initialisation), ``shared`` (all from ``SHARED_SEED``'s) or ``spawnK`` (all continuing one parent trained K
    epochs from ``SHARED_SEED``: the recipe option ``start = "spawned"``); data order from each member's seed."""
    recipe = load_recipe(recipe_name)
    cfg = replace(recipe.training, lr=lr)
    if start != "independent":
        k = 0 if start == "shared" else int(start.removeprefix("spawn"))
        cfg = replace(cfg, start="spawned", spawn_epochs=k, spawn_seed=SHARED_SEED)
    arch, seeds = recipe.arch_spec, list(range(members))
    children, parent = spawn_start(arch, recipe.task, cfg)
    trained = train_members(
        arch, recipe.task, children, seeds, [cfg.init_for(i) for i in seeds], False,
        start=None if parent is None else [parent] * members,
    )  # fmt: skip
    return WeightZoo(arch, [sd for sd, _ in trained], [r for _, r in trained], recipe=recipe)


@torch.no_grad()
def spread(zoo: WeightZoo) -> dict[str, float]:
    """A canonical zoo's members on the validation split: accuracy, final training loss, distance between
    members over their norm, disagreement of two members, and the accuracy of 32 midpoints."""
    w, (x, _) = zoo.to_matrix(), zoo.recipe.task.split("val")
    off = ~torch.eye(len(w), dtype=torch.bool)
    preds = outputs_many(zoo.arch, w, x).argmax(-1)  # [N, B]
    connectivity = measure_connectivity(zoo, pairs=32, seed=0)
    return {
        "val": connectivity.members,
        "loss": sum(r["final_train_loss"] for r in zoo.records) / len(zoo),
        "distance": float(torch.cdist(w, w)[off].mean() / w.norm(dim=1).mean()),
        "disagreement": float((preds[:, None] != preds[None]).float().mean(-1)[off].mean()),
        "midpoints": connectivity.midpoints,
    }


def flow_rows(
    zoo: WeightZoo, recipe_name: str, seeds: list[int], sweep_networks: int | None = None
) -> Iterator[tuple[dict, list[str], float]]:
    """Per seed, the recipe's default flow on 80 of the canonical members: its scores on the validation split,
    its margins over noise / interpolation (weight / function novelty; both swept once per zoo), and its fit
    time (s)."""
    seen, held = zoo.split_holdout(20)
    frontier = Frontier(seen, *zoo.recipe.task.split("val"), held, sweep_networks=sweep_networks)
    sweeps = swept(frontier)
    for seed in seeds:
        t0 = time.perf_counter()
        pipe = fit_pipeline(seen, load_recipe(recipe_name).flow_config(seed=seed), progress=False).pipeline
        fit_s = time.perf_counter() - t0
        r = frontier.score(sample(pipe, 100, seed))
        yield r, margins(r, sweeps), fit_s


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", default="digits_mlp")
    p.add_argument("--lrs", default="0.001,0.003,0.01,0.02")
    p.add_argument("--starts", default="independent,shared", help="independent, shared, or spawnK (K epochs)")
    p.add_argument("--flow", action="store_true", help="fit and score the recipe's default flow on every zoo")
    p.add_argument("--flow-seeds", default="0")
    p.add_argument("--out", default="bench_out/zoo_recipe")
    p.add_argument("--sweep-networks", type=int, default=None, help="networks per baseline sweep setting")
    a = p.parse_args()
    rows = []
    head = "| lr | start | val acc (%) | train loss | distance / norm | disagreement (%) | midpoints (%) |"
    if a.flow:
        head += " flow seed | flow val acc (%) | min | novelty | diversity | held-out | fn novelty | Δ noise | Δ interp. | fit (s) |"
    print(
        f"## {a.recipe}: 100 members per zoo, validation split\n\n{head}\n|" + "---|" * (head.count("|") - 1)
    )
    for lr in map(float, a.lrs.split(",")):
        for start in a.starts.split(","):
            zoo = canonicalize(train(a.recipe, lr, start), progress=False).zoo
            s = spread(zoo)
            cells = (f"| {lr:g} | {start} | {100 * s['val']:.2f} | {s['loss']:.4f} | {s['distance']:.3f} | "
                     f"{100 * s['disagreement']:.2f} | {100 * s['midpoints']:.2f} |")  # fmt: skip
            if not a.flow:
                rows.append({"lr": lr, "start": start, **s})
                print(cells, flush=True)
                continue
            seeds = [int(seed) for seed in a.flow_seeds.split(",")]
            rows_of = flow_rows(zoo, a.recipe, seeds, a.sweep_networks)
            for seed, (r, (noise, interp), fit_s) in zip(seeds, rows_of):
                ratios = " | ".join(fmt_ratio(r[k]) for k in
                                        ("novelty_ratio", "diversity_ratio", "heldout_ratio", "function_novelty_ratio"))  # fmt: skip
                line = cells + (f" {seed} | {100 * r['mean']:.2f} ± {100 * r['std']:.2f} | {100 * r['min']:.1f} | {ratios} | "
                             f"{noise} | {interp} | {fit_s:.0f} |")  # fmt: skip
                rows.append({"lr": lr, "start": start, **s, "flow": r["mean"], "novelty": r["novelty_ratio"]})
                print(line, flush=True)
    plot(a, rows)


def plot(a: argparse.Namespace, rows: list[dict]) -> None:
    fig, axes = panels(2 if a.flow else 1, 5.5, 4)
    marker = {"independent": "o", "shared": "s"}
    for r in rows:
        label = f"lr {r['lr']:g}, {r['start']}"
        axes[0].scatter(100 * r["val"], 100 * r["midpoints"], marker=marker.get(r["start"], "x"), label=label)
        if a.flow:
            axes[1].scatter(r["novelty"], 100 * r["flow"], marker=marker.get(r["start"], "x"), label=label)
    axes[0].set(
        xlabel="members, val acc (%)", ylabel="midpoints of aligned pairs, val acc (%)", title=a.recipe
    )
    if a.flow:
        axes[1].set(
            xlabel="flow's novelty ratio", ylabel="flow, val acc (%)", title="the recipe's default flow"
        )
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    Path(a.out).mkdir(parents=True, exist_ok=True)
    fig.savefig(Path(a.out) / f"zoo_recipe_{a.recipe}.png", dpi=120)


if __name__ == "__main__":
    main()
