"""How linearly connected a canonical zoo is: what midpoints of aligned members score next to the members.

A flow in a PCA latent of N members draws near-copies of members or blends of several (benchmarks/HISTORY.md,
``bench_failed_samples.py``), and a blend is only as good as the path between the members it mixes. Where the
midpoint of two aligned members works (Iris MLPs: −1 pp) the flow's blends work too; where it fails (SmallCNN,
ResNet-20, ViT on digits: −30 to −70 pp) the flow's samples are near-copies or failed networks. Measured at fit
time, on the recipe's validation split, so a user learns this before generating or evaluating anything.
"""

from __future__ import annotations

import torch

from ..provenance import Connectivity
from ..zoo.weight_zoo import WeightZoo


def measure_connectivity(
    zoo: WeightZoo, pairs: int = 16, seed: int = 0, split: str = "val", recalibrate_units: bool = False
) -> Connectivity:
    """Score ``pairs`` midpoints of random pairs of ``zoo``'s members (canonical; its recipe gives the data) on
    the recipe's ``split``: the interpolation baseline at ``alpha = 0.5, k = 2``, post-processed alike."""
    from ..scoring import score_many
    from .baselines import ZooBaseline

    pairs = min(pairs, len(zoo) * (len(zoo) - 1) // 2)  # a 3-member zoo has 3 pairs, not 16
    task = zoo.recipe.task
    x, y = task.split(split)
    baseline = ZooBaseline(zoo, "interpolation", alpha=0.5, k=2, recalibrate_units=recalibrate_units)
    generator = torch.Generator().manual_seed(seed)
    mid = baseline(num_networks=pairs, generator=generator, output_type="state_dict").weights
    members = score_many(zoo.arch, zoo.to_matrix(), x, y)
    return Connectivity(
        metric=zoo.arch.metric,
        split=split,
        pairs=pairs,
        members=float(members.mean()),
        midpoints=float(score_many(zoo.arch, mid, x, y).mean()),
    )
