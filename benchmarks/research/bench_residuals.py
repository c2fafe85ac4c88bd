"""What makes a new network accurate: its part inside the span of the training members, or the rest?

    python benchmarks/research/bench_residuals.py [--zoos digits_mlp,digits_smallcnn] [--split val]
                                         [--out bench_out/frontier] [--cnn-out bench_out/frontier_cnn]

The frontier benchmark's zoos (100 members, canonical, 80 fitted, 20 held out). A held-out member ``h`` splits
into its projection onto the affine span of the fitted members (``P h``: the most a PCA-latent generator can
reach) and a residual orthogonal to it. Each fitted member ``w_j`` has the same kind of residual against the
span of the other 79 (leave-one-out: ``r_j = w_j - P_{-j} w_j``). Rows, all scored by ``Frontier.score``
(accuracy, permutation-invariant novelty, function novelty): the held-out members; their projections (plain,
and with hidden units recalibrated to the members' mean statistics, as the flow's samples near the zoo's centre
are); projections plus a random member's residual (does a residual carry over?); the zoo mean plus a random
member's residual; projections plus isotropic noise of the residuals' norm (a control).

Then: can a *new* private part be drawn? The zoo mean plus noise of a residual's norm shaped three ways —
isotropic, like the residuals' per-weight spread, and along the loss's flat directions (diagonal empirical
Fisher information at the recalibrated mean, ``(F + lambda)^-1/2`` with ``lambda`` 1 % of its mean) — and unit
crossover (every unit's incoming weights and bias from one of two random members), all recalibrated to the
members' mean statistics; and two Gaussians in canonical weight space (scale 1, recalibrated): fitted to the
members, and to their in-span parts (the ``gaussian`` baseline).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: _common
from _common import pm
from torch import Tensor

from dwf_hub.evaluation.baselines import ZooBaseline
from dwf_hub.evaluation.frontier import Frontier
from dwf_hub.generation.postprocess import recipe_calibration_data
from dwf_hub.generation.unit_recalibration import recalibrate_units, unit_statistics
from dwf_hub.matching import canonicalize
from dwf_hub.zoo.weight_zoo import WeightZoo


def projector(w: Tensor):
    """``v -> P v``: projection onto the affine span of the rows of ``w [M, D]`` (float64)."""
    mu = w.mean(0)
    basis = torch.linalg.svd(w - mu, full_matrices=False).Vh[: len(w) - 1]
    return lambda v: mu + (v - mu) @ basis.T @ basis


def loo_residuals(w: Tensor) -> Tensor:
    """``[M, D]``: each row's residual against the affine span of the other rows."""
    return torch.stack([w[j] - projector(torch.cat([w[:j], w[j + 1 :]]))(w[j]) for j in range(len(w))])


def flat_directions(arch, centre: Tensor, x: Tensor, y: Tensor) -> Tensor:
    """``[D]``: ``(F + lambda)^-1/2`` for the diagonal empirical Fisher information ``F`` of the network
    ``centre [D]`` on ``(x, y)`` (mean squared per-example gradient of the loss), ``lambda = 0.01 * mean(F)``."""
    from torch.func import functional_call, grad, vmap

    params = {k: v.detach() for k, v in arch.unflatten(centre).items()}
    model = arch.functional_model(False)

    def loss(p: dict[str, Tensor], xb: Tensor, yb: Tensor) -> Tensor:
        return torch.nn.functional.cross_entropy(functional_call(model, p, (xb[None],)), yb[None])

    g = vmap(grad(loss), in_dims=(None, 0, 0))(params, x, y)
    fisher = torch.cat([g[k].reshape(len(x), -1) for k in params], 1).pow(2).mean(0).double()
    return (fisher + 0.01 * fisher.mean()).rsqrt()


def unit_crossover(arch, w: Tensor, n: int, g: torch.Generator) -> tuple[Tensor, Tensor]:
    """``n`` children ``[n, D]`` of two random members each, every unit's incoming weights and bias (the rows
    of a module's tensors) from one parent, and the parents ``[n, 2]``."""
    units, first, count = [], {}, 0
    for p in arch.layout:  # each coordinate's unit: (module, output row), numbered across modules
        module = p.key.rsplit(".", 1)[0]
        if module not in first:
            first[module], count = count, count + p.shape[0]
        units.append((first[module] + torch.arange(p.shape[0])).repeat_interleave(p.numel // p.shape[0]))
    unit = torch.cat(units)
    parents = torch.stack([torch.randperm(len(w), generator=g)[:2] for _ in range(n)])
    pick = parents.gather(1, torch.randint(0, 2, (n, count), generator=g))
    return w[pick[:, unit], torch.arange(w.shape[1])], parents


def run_zoo(recipe: str, root: Path, split: str) -> None:
    zoo = WeightZoo.load(root / recipe / "zoo")
    seen, heldout = canonicalize(zoo, progress=False).zoo.split_holdout(20)
    arch, (x, y) = zoo.arch, zoo.recipe.task.split(split)
    frontier = Frontier(seen, x, y, heldout)
    w, h = seen.to_matrix().double(), heldout.to_matrix().double()
    projected, residuals = projector(w)(h), loo_residuals(w)
    data = recipe_calibration_data(arch, zoo.recipe)
    stats = unit_statistics(arch, w.float(), data)
    mean_stats = stats.mean(0, keepdim=True)
    g = torch.Generator().manual_seed(0)
    donors = residuals[torch.randint(0, len(w), (len(h),), generator=g)]
    noise = torch.randn(h.shape, generator=g, dtype=h.dtype)
    noise *= residuals.norm(dim=1).mean() / noise.norm(dim=1, keepdim=True)
    recal = lambda v: recalibrate_units(arch, v.float(), mean_stats.expand(len(v), -1), data)  # noqa: E731

    def shaped(scale: Tensor) -> Tensor:  # mean + noise of a residual's norm, per-weight std ~ scale
        z = torch.randn(len(h), w.shape[1], generator=g, dtype=w.dtype) * scale
        return recal(w.mean(0) + z * (residuals.norm(dim=1).mean() / z.norm(dim=1, keepdim=True)))

    train_x, train_y = zoo.recipe.task.split("train")
    flat = flat_directions(arch, recal(w.mean(0, keepdim=True))[0], train_x, train_y)
    children, parents = unit_crossover(arch, w, len(h), g)
    z = torch.randn(len(h), len(w), generator=g, dtype=w.dtype) / (len(w) - 1) ** 0.5
    sets = {
        "held-out members": h,
        "held-out, projected onto the span": projected,
        "held-out, projected, recalibrated": recal(projected),
        "held-out, projected + a member's residual": projected + donors,
        "zoo mean + a member's residual": w.mean(0) + donors,
        "held-out, projected + noise of a residual's norm": projected + noise,
        "zoo mean + isotropic noise of a residual's norm, recalibrated": shaped(torch.ones(w.shape[1], dtype=w.dtype)),
        "zoo mean + noise shaped like the residuals (per-weight std), recalibrated": shaped(residuals.std(0)),
        "zoo mean + noise along flat directions (diagonal Fisher), recalibrated": shaped(flat),
        "unit crossover of two members, recalibrated": recalibrate_units(arch, children.float(), stats[parents].mean(1), data),
        "Gaussian fitted to the members, recalibrated": recal(w.mean(0) + z @ (w - w.mean(0))),
        "Gaussian fitted to the in-span parts (`gaussian`), recalibrated": ZooBaseline(seen, "gaussian", recalibrate_units=True)(len(h), g, "state_dict").weights,
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
