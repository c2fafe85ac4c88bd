"""Where do a flow's failed samples sit? Each sample's place in the codec's latent space against its accuracy.

    python benchmarks/research/bench_failed_samples.py [--zoos digits_smallcnn,digits_mlp] [--num 200] [--seed 0]
                                              [--split val] [--out bench_out/frontier] [--cnn-out bench_out/frontier_cnn]
                                              [--set KEY=VALUE ...]  # flow config overrides

The frontier benchmark's zoos (100 members cached in ``--out`` / ``--cnn-out``, 80 fitted, 20 held out) and the
recipe's default flow. Every sample is decoded and post-processed as the pipeline does (unit recalibration
where the recipe has it), scored on the ``--split`` split, and placed in the latent space (whitened PCA
coordinates, where the fitted members have norm about sqrt(K)): its norm, its distance to the nearest fitted
member over the members' median nearest-other distance, and the ratio of its second-nearest to nearest
distance (1: equally far from two members, a blend; large: next to one member, a copy). One table per zoo,
grouped by accuracy, with the fitted and held-out members as reference rows, and the held-out members projected
onto the codec's span (decode(encode(w)), post-processed like samples: the part of a genuinely new network a
latent generator can reach); ``failed_samples.png`` in ``--out``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: _common
from _common import add_overrides, cached_zoo, overrides, panels
from torch import Tensor

from dwf_hub.flow.fitting import fit_pipeline
from dwf_hub.matching import canonicalize
from dwf_hub.scoring import score_many
from dwf_hub.zoo.recipes import load_recipe

GROUPS = (("failed (< 50 %)", 0.0, 0.5), ("middle (50–90 %)", 0.5, 0.9), ("good (≥ 90 %)", 0.9, 1.01))


def geometry(z: Tensor, members: Tensor, exclude_self: bool = False) -> dict[str, Tensor]:
    """Per row of ``z [N, K]``: latent norm, nearest-member distance over the members' median nearest-other
    distance (``members [M, K]``), second-nearest over nearest distance."""
    own = torch.cdist(members, members).fill_diagonal_(float("inf")).min(1).values.median()
    d = torch.cdist(z, members)
    if exclude_self:  # ``z`` is ``members``: each one's nearest *other* member
        d = d.fill_diagonal_(float("inf"))
    two = d.topk(2, largest=False).values
    return {"norm": z.norm(dim=1), "nearest": two[:, 0] / own, "second_over_nearest": two[:, 1] / two[:, 0]}


def run_zoo(recipe: str, root: Path, a: argparse.Namespace) -> dict:
    zoo = cached_zoo(recipe, root)
    seen, heldout = canonicalize(zoo, progress=False).zoo.split_holdout(20)
    x, y = zoo.recipe.task.split(a.split)
    cfg = load_recipe(recipe).flow_config(seed=a.seed, **overrides(a))
    pipe = fit_pipeline(seen, cfg, progress=False).pipeline
    z = pipe.sample_latents(a.num, torch.Generator().manual_seed(a.seed))
    raw = pipe.codec.decode(z).float()
    ready = pipe.postprocessor.postprocess(raw, "state_dict", None, True, pipe.codec.unit_targets(z)).weights
    members = pipe.codec.encode(seen.to_matrix())
    sets = {
        "fitted members": (members, score_many(zoo.arch, seen.to_matrix(), x, y)),
        "held-out members": (pipe.codec.encode(heldout.to_matrix()), score_many(zoo.arch, heldout.to_matrix(), x, y)),
        "samples": (z, score_many(zoo.arch, ready, x, y)),
    }  # fmt: skip
    raw_acc = score_many(zoo.arch, raw, x, y)
    # a held-out member's part inside the codec's span (what a latent generator can reach), as the pipeline
    # would hand it back
    zh = sets["held-out members"][0]
    projected = pipe.postprocessor.postprocess(pipe.codec.decode(zh).float(), "state_dict", None, True,
                                               pipe.codec.unit_targets(zh)).weights  # fmt: skip
    sets["held-out members, projected"] = (zh, score_many(zoo.arch, projected, x, y))
    print(f"\n## {recipe}: latent dimension {pipe.codec.latent_dim}, {a.num} samples, {a.split} split\n")
    print(f"| set | networks | {a.split} acc (%) | before recalibration (%) | latent norm | nearest member (× median) "
          "| second / nearest |\n|---|---|---|---|---|---|---|")  # fmt: skip
    rows = {}
    for name, (lat, acc) in sets.items():
        g = geometry(lat, members, exclude_self=name == "fitted members")
        rows[name] = {"acc": acc, **g}
        groups = [(name, acc > -1)] if name != "samples" else [(f"samples: {label}", (acc >= lo) & (acc < hi)) for label, lo, hi in GROUPS]  # fmt: skip
        for label, m in groups:
            if m.any():
                before = f"{100 * raw_acc[m].mean():.1f}" if name == "samples" else "–"
                print(f"| {label} | {int(m.sum())} | {100 * acc[m].mean():.1f} | {before} | {g['norm'][m].mean():.2f} "
                      f"| {g['nearest'][m].mean():.3f} | {g['second_over_nearest'][m].mean():.2f} |")  # fmt: skip
    return rows


def plot(results: dict[str, dict], path: Path) -> None:
    fig, axes = panels(len(results), 6, 4.5)
    for ax, (recipe, rows) in zip(axes, results.items(), strict=True):
        for name, r in rows.items():
            ax.scatter(r["nearest"], 100 * r["acc"], s=12, alpha=0.7, label=name)
        ax.set(title=recipe, xlabel="distance to the nearest fitted member (× members' median)",
               ylabel="accuracy (%)")  # fmt: skip
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--zoos", default="digits_smallcnn,digits_mlp")
    p.add_argument("--num", type=int, default=200, help="samples per flow")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split", default="val")
    p.add_argument("--out", default="bench_out/frontier")
    p.add_argument("--cnn-out", default="bench_out/frontier_cnn")
    add_overrides(p)
    a = p.parse_args()
    results = {
        name: run_zoo(name, Path(a.cnn_out if "cnn" in name else a.out), a) for name in a.zoos.split(",")
    }
    path = Path(a.out) / "failed_samples.png"
    plot(results, path)
    print(f"\nfigure: {path}")


if __name__ == "__main__":
    main()
