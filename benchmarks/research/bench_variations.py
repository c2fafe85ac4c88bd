"""Variations of zoo members: start the flow's ODE part-way, from a noised member (SDEdit; diffusers'
image-to-image ``strength``), instead of from pure noise. Does that trace a better accuracy–novelty curve than the
flow's own samples and the noise / interpolation baselines?

    python benchmarks/research/bench_variations.py [--zoos iris_mlp,digits_mlp,digits_smallcnn] [--seed 0]
                                          [--strengths 0.1,0.3,0.5,0.7,0.85,1] [--split val]
                                          [--out bench_out/frontier] [--cnn-out bench_out/frontier_cnn]

Per zoo (100 members cached in ``--out`` / ``--cnn-out``, 80 fitted, 20 held out) the recipe's default flow is
fitted once. A variation at strength ``s`` takes a random fitted member's latent ``z``, moves it back along the
training path to time ``t0 = 1 - s`` (``x = s * sigma * eps + t0 * z``), and integrates the flow from ``t0`` to 1;
it is decoded and post-processed (unit recalibration) like a sample. Strength 1 is plain sampling; strength 0
returns the member. Every set is scored on ``--split`` by ``Frontier.score`` (quick novelty); ``Δ`` columns: the
set minus each baseline's sweep at the set's weight / function novelty (``max``: the sweep never gets that novel). Prints a
markdown table per zoo and saves ``variations.png`` in ``--out``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: _common
from _common import default_flow, margins, panels, plot_sweeps, pm, swept
from torch import Tensor

from dwf_hub.flow.scheduler import FlowODEScheduler


@torch.no_grad()
def variations(pipe, members: Tensor, strength: float, n: int, generator: torch.Generator) -> Tensor:
    """``n`` networks ``[n, D]``: random rows of ``members [M, D]`` noised to time ``1 - strength`` of the
    flow's path and carried back to time 1 by the flow, post-processed like the pipeline's samples."""
    z = pipe.codec.encode(members).float()
    t0 = 1.0 - strength
    pick = torch.randint(0, len(z), (n,), generator=generator)
    eps = torch.randn(n, z.shape[1], generator=generator) * pipe.scheduler.start_sigma()
    x = strength * eps + t0 * z[pick]
    scheduler = FlowODEScheduler(**{**pipe.scheduler.config, "t_start": t0})
    for t in scheduler.timesteps:
        x = scheduler.step(pipe.velocity(x, t), t, x).prev_sample
    raw = pipe.codec.decode(x).float()
    return pipe.postprocessor.postprocess(raw, "state_dict", None, True, pipe.codec.unit_targets(x)).weights


def run_zoo(recipe: str, root: Path, a: argparse.Namespace) -> dict:
    pipe, frontier = default_flow(recipe, root, a.split, a.seed)
    sweeps, members = swept(frontier), frontier.scorer.train
    print(f"\n## {recipe} ({a.split} split, flow seed {a.seed})")
    print(
        "| set | acc (%) | min | novelty | fn novelty | Δ vs noise (weight / fn) | Δ vs interp. (weight / fn) |"
    )
    print("|---|---|---|---|---|---|---|")
    rows = []
    for strength in a.strengths:
        w = variations(pipe, members, strength, 100, torch.Generator().manual_seed(a.seed))
        r = {"strength": strength, **frontier.score(w, quick=True, diversity=False)}
        cells = margins(r, sweeps)
        print(f"| strength {strength:g} | {pm(r)} | {100 * r['min']:.1f} | {r['novelty_ratio']:.3f} "
              f"| {r['function_novelty_ratio']:.2f} | {cells[0]} | {cells[1]} |")  # fmt: skip
        rows.append(r)
    return {"variations": rows, "sweeps": sweeps}


def plot(results: dict[str, dict], path: Path) -> None:
    fig, axes = panels(len(results), 5, 4)
    for ax, (recipe, res) in zip(axes, results.items(), strict=True):
        plot_sweeps(ax, res["sweeps"])
        pts = [(r["novelty_ratio"], 100 * r["mean"]) for r in res["variations"]]
        ax.plot(*zip(*pts), "*-", ms=9, color="black", label="flow variations (strength; 1 = sampling)")
        ax.set(title=recipe, xlabel="novelty ratio (permutation-invariant)", ylabel="accuracy (%)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--zoos", default="iris_mlp,digits_mlp,digits_smallcnn")
    p.add_argument("--seed", default=0, type=int)
    p.add_argument("--strengths", default="0.1,0.3,0.5,0.7,0.85,1",
                   type=lambda s: [float(v) for v in s.split(",")])  # fmt: skip
    p.add_argument("--split", default="val", choices=("val", "test"))
    p.add_argument("--out", default="bench_out/frontier", type=Path)
    p.add_argument("--cnn-out", default="bench_out/frontier_cnn", type=Path)
    a = p.parse_args()
    results = {z: run_zoo(z, a.cnn_out if "cnn" in z else a.out, a) for z in a.zoos.split(",")}
    plot(results, a.out / "variations.png")
    print(f"\nsaved {a.out / 'variations.png'}")


if __name__ == "__main__":
    main()
