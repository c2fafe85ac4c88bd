"""Where are the new networks? Held-out zoo members against the span of the canonical training members.

    python benchmarks/research/bench_span.py [--recipe digits_mlp] [--num-models 1200] [--sizes 80,200,500,1100]
                                    [--out bench_out/span]

Trains (or reuses, in ``--out``) one zoo, canonicalizes it, keeps its last 100 members as unseen networks, and for
training sets of each size reports: the fraction of a held-out member's deviation from the training mean that lies
outside the training members' affine span (1: orthogonal to it; every PCA-latent generator lives in that span),
the validation accuracy of the held-out members projected onto the span, and the training mean network's
accuracy and plain-distance novelty (distance to its nearest training member over the held-out members'), plain
and with its hidden units recalibrated to the members' mean statistics (``dwf_hub.generation.unit_recalibration``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # benchmarks/: _common
from bench_residuals import projector

from dwf_hub.generation.postprocess import recipe_calibration_data
from dwf_hub.generation.unit_recalibration import recalibrate_units, unit_statistics
from dwf_hub.matching import canonicalize
from dwf_hub.scoring import score_many
from dwf_hub.zoo.training import train_zoo
from dwf_hub.zoo.weight_zoo import WeightZoo

UNSEEN = 100


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--recipe", default="digits_mlp")
    p.add_argument("--num-models", type=int, default=1200)
    p.add_argument("--sizes", default="80,200,500,1100")
    p.add_argument("--out", default="bench_out/span")
    a = p.parse_args()
    folder = Path(a.out) / a.recipe
    zoo = (
        WeightZoo.load(folder)
        if folder.is_dir()
        else train_zoo(a.recipe, a.num_models, folder, progress=False)
    )
    x, y = zoo.recipe.task.split("val")
    w = canonicalize(zoo, progress=False).zoo.to_matrix()
    unseen = w[-UNSEEN:]
    acc = lambda m: 100 * score_many(zoo.arch, m, x, y)  # noqa: E731
    calibration = recipe_calibration_data(zoo.arch, zoo.recipe)
    print(f"## {a.recipe}: {len(zoo)} canonical members, D = {zoo.arch.num_params:,}, the last {UNSEEN} unseen "
          f"(validation accuracy {acc(unseen).mean():.2f} %)\n")  # fmt: skip
    print("| training members | outside the span (norm fraction) | projected unseen members: val acc (%) "
          "| mean network: val acc (%) | recalibrated | mean network: novelty (plain distance) |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for n in [int(s) for s in a.sizes.split(",")]:
        train = w[:n]
        mean = train.mean(0)
        projected = projector(train)(unseen)
        outside = ((projected - unseen).norm(dim=1) / (unseen - mean).norm(dim=1)).mean()
        scale = torch.cdist(unseen, train).min(1).values.median()
        novelty = torch.cdist(mean[None], train).min() / scale
        pa, ma = acc(projected), acc(mean[None])
        target = unit_statistics(zoo.arch, train, calibration).mean(0, keepdim=True)
        ra = acc(recalibrate_units(zoo.arch, mean[None], target, calibration))
        print(f"| {n} | {outside:.2f} | {pa.mean():.2f} ± {pa.std():.2f} | {ma.item():.2f} | {ra.item():.2f} "
              f"| {novelty:.2f} |")  # fmt: skip


if __name__ == "__main__":
    main()
