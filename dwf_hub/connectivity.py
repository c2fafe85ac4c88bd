"""How linearly connected a canonical zoo is: what midpoints of aligned members score next to the members.

A flow in a PCA latent of N members draws near-copies of members or blends of several (benchmarks/RESULTS.md,
``bench_failed_samples.py``), and a blend is only as good as the path between the members it mixes. Where the
midpoint of two aligned members works (Iris MLPs: −1 pp) the flow's blends work too; where it fails (SmallCNN,
ResNet-20, ViT on digits: −30 to −70 pp) the flow's samples are near-copies or failed networks. Measured at fit
time, on the recipe's validation split, so a user learns this before generating or evaluating anything.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch

from .errors import PipelineFormatError
from .zoo import WeightZoo

CONNECTED_DROP = 0.05
"""A zoo counts as linearly connected when its midpoints lose at most this much of the task metric (accuracy:
5 pp) against the members: ``frontier.FAILED_MARGIN``, the drop below which a network counts as failed."""


@dataclass(frozen=True)
class Connectivity:
    """Mean task metric of the fitted ``members`` and of ``pairs`` midpoints of random pairs of them, on
    ``split``, the midpoints post-processed as generated networks are (BatchNorm recalibrated; hidden units reset
    to their parents' mean statistics when the flow recalibrates units)."""

    metric: str
    split: str
    pairs: int
    members: float
    midpoints: float

    @property
    def drop(self) -> float:
        """``members - midpoints``: what a blend of two members loses."""
        return self.members - self.midpoints

    @property
    def connected(self) -> bool:
        return self.drop <= CONNECTED_DROP

    def describe(self) -> str:
        """One line for logs, the CLI and the model card."""
        scale, unit = (100, " %") if self.metric == "accuracy" else (1, "")
        line = (
            f"midpoints of {self.pairs} pairs of aligned members score {scale * self.midpoints:.2f}{unit} "
            f"against {scale * self.members:.2f}{unit} for the members ({self.metric}, {self.split} split)"
        )
        if self.connected:
            return f"{line}: the zoo is linearly connected after alignment"
        return (
            f"{line}: the aligned members are not linearly connected, and blends of them (what a flow's samples "
            f"between members are) lose {self.metric}; expect near-copies of members and a failed tail "
            '(the failed share of dwf-hub evaluate). A zoo trained with [training] start = "spawned" (members '
            "continue one parent trained a few epochs) is connected: README, How members start"
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, source: str) -> Connectivity:
        """The record written by ``to_dict``; anything else is refused naming ``source``."""
        fields = {"metric": str, "split": str, "pairs": int, "members": float, "midpoints": float}
        if not isinstance(data, dict) or set(data) != set(fields):
            raise PipelineFormatError(f"{source}: 'connectivity' must be a table with keys {sorted(fields)}")
        for key, kind in fields.items():
            value = data[key]
            if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else kind):
                raise PipelineFormatError(f"{source}: connectivity {key}={value!r} is not a {kind.__name__}")
        return cls(**data)


def measure_connectivity(
    zoo: WeightZoo, pairs: int = 16, seed: int = 0, split: str = "val", recalibrate_units: bool = False
) -> Connectivity:
    """Score ``pairs`` midpoints of random pairs of ``zoo``'s members (canonical; its recipe gives the data) on
    the recipe's ``split``: the interpolation baseline at ``alpha = 0.5, k = 2``, post-processed alike."""
    from .baselines import ZooBaseline
    from .scoring import score_many

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
