"""What makes a new network accurate: its part inside the span of the training members, or the rest?

    python benchmarks/bench_residuals.py [--zoos digits_mlp,digits_smallcnn] [--split val]
                                         [--out bench_out/frontier] [--cnn-out bench_out/frontier_cnn]

The frontier benchmark's zoos (100 members, canonical, 80 fitted, 20 held out). A held-out member ``h`` splits
into its projection onto the affine span of the fitted members (``P h``: the most a PCA-latent generator can
reach) and a residual orthogonal to it. Each fitted member ``w_j`` has the same kind of residual against the
span of the other 79 (leave-one-out: ``r_j = w_j - P_{-j} w_j``). Rows, all scored by ``Frontier.score``
(accuracy, permutation-invariant novelty, function novelty): the held-out members; their projections (plain,
and with hidden units recalibrated to the members' mean statistics, as the flow's samples near the zoo's centre
are); projections plus a random member's residual (does a residual carry over?); the zoo mean plus a random
member's residual; projections plus isotropic noise of the residuals' norm (a control).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from bench_frontier import pm
from torch import Tensor

from dwf_hub.frontier import Frontier
from dwf_hub.matching import canonicalize
from dwf_hub.postprocess import recipe_calibration_data
from dwf_hub.unit_recalibration import recalibrate_units, unit_statistics
from dwf_hub.zoo import WeightZoo


def projector(w: Tensor):
    """``v -> P v``: projection onto the affine span of the rows of ``w [M, D]`` (float64)."""
    mu = w.mean(0)
    basis = torch.linalg.svd(w - mu, full_matrices=False).Vh[: len(w) - 1]
    return lambda v: mu + (v - mu) @ basis.T @ basis


def loo_residuals(w: Tensor) -> Tensor:
    """``[M, D]``: each row's residual against the affine span of the other rows."""
    return torch.stack([w[j] - projector(torch.cat([w[:j], w[j + 1 :]]))(w[j]) for j in range(len(w))])


def run_zoo(recipe: str, root: Path, split: str) -> None:
    zoo = WeightZoo.load(root / recipe / "zoo")
    seen, heldout = canonicalize(zoo, progress=False).zoo.split_holdout(20)
    arch, (x, y) = zoo.arch, zoo.recipe.task.split(split)
    frontier = Frontier(seen, x, y, heldout)
    w, h = seen.to_matrix().double(), heldout.to_matrix().double()
    projected, residuals = projector(w)(h), loo_residuals(w)
    data = recipe_calibration_data(arch, zoo.recipe)
    mean_stats = unit_statistics(arch, w.float(), data).mean(0, keepdim=True)
    g = torch.Generator().manual_seed(0)
    donors = residuals[torch.randint(0, len(w), (len(h),), generator=g)]
    noise = torch.randn(h.shape, generator=g, dtype=h.dtype)
    noise *= residuals.norm(dim=1).mean() / noise.norm(dim=1, keepdim=True)
    sets = {
        "held-out members": h,
        "held-out, projected onto the span": projected,
        "held-out, projected, recalibrated": recalibrate_units(arch, projected.float(), mean_stats.expand(len(h), -1), data),
        "held-out, projected + a member's residual": projected + donors,
        "zoo mean + a member's residual": w.mean(0) + donors,
        "held-out, projected + noise of a residual's norm": projected + noise,
    }  # fmt: skip
    outside = ((h - projected).norm(dim=1) / (h - w.mean(0)).norm(dim=1)).mean()
    print(f"\n## {recipe}: residual norm {residuals.norm(dim=1).mean():.2f} (members' distance to their mean "
          f"{(w - w.mean(0)).norm(dim=1).mean():.2f}); held-out deviation outside the span: {outside:.2f}\n")  # fmt: skip
    print(f"| set | {split} acc (%) | min | novelty | function novelty |\n|---|---|---|---|---|")
    for name, weights in sets.items():
        r = frontier.score(weights.float(), heldout=False, diversity=False)
        print(f"| {name} | {pm(r)} | {100 * r['min']:.1f} | {r['novelty_ratio']:.3f} | {r['function_novelty_ratio']:.3f} |")  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--zoos", default="digits_mlp,digits_smallcnn")
    p.add_argument("--split", default="val")
    p.add_argument("--out", default="bench_out/frontier")
    p.add_argument("--cnn-out", default="bench_out/frontier_cnn")
    a = p.parse_args()
    for name in a.zoos.split(","):
        run_zoo(name, Path(a.cnn_out if "cnn" in name else a.out), a.split)


if __name__ == "__main__":
    main()
