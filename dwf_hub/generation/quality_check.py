"""A quality check for generated networks, in the spirit of diffusers' safety checker: every network is scored
on a slice of the *training* split (never validation or test), and one below a threshold fixed at fit time —
the worst fitted member's score on that slice minus a margin — is drawn again, up to a budget. What was drawn
and rejected is reported, never hidden (``DeepWeightFlowOutput.num_drawn`` / ``rejected``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ..archs import ArchSpec
from ..errors import DWFError, PipelineFormatError
from ..zoo.recipes import Recipe

if TYPE_CHECKING:
    from ..zoo.weight_zoo import WeightZoo

MARGIN = 0.10  # below the worst fitted member by more than this (10 pp of accuracy; 0.1 of Spearman's rho)
NUM_SAMPLES = 512  # training-split inputs the networks are scored on
MAX_DRAWS = 10  # draws per requested network before the check gives up


@dataclass(frozen=True)
class QualityCheck:
    """``threshold``: the least ``metric`` a network may score on the first ``num_samples`` inputs of the
    recipe's training split; ``worst_member``: what the worst fitted member scored there."""

    metric: str
    threshold: float
    worst_member: float
    num_samples: int = NUM_SAMPLES
    margin: float = MARGIN

    @classmethod
    def fit(cls, zoo: WeightZoo, margin: float = MARGIN, batch_size: int = 16) -> QualityCheck:
        """From the fitted members (canonical, as the flow saw them) and their recipe's data; members are read
        ``batch_size`` at a time (a zoo larger than memory is fitted with streaming PCA)."""
        from ..scoring import score_many

        x, y = training_slice(zoo.recipe, NUM_SAMPLES)
        worst = min(float(score_many(zoo.arch, w, x, y).min()) for w in zoo.iter_matrix(batch_size))
        return cls(zoo.arch.metric, worst - margin, worst, len(x), margin)

    @classmethod
    def from_dict(cls, data: object, source: str) -> QualityCheck:
        try:
            check = cls(**data)  # type: ignore[arg-type]
            ok = isinstance(check.threshold, (int, float)) and isinstance(check.num_samples, int)
        except TypeError:
            ok = False
        if not ok:
            raise PipelineFormatError(f"{source}: 'quality_check' is not a quality-check record ({data!r})")
        return check

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def passes(self, arch: ArchSpec, weights: Tensor, recipe: Recipe) -> Tensor:
        """``[N]`` bool: which networks ``weights [N, D]`` reach the threshold."""
        from ..scoring import score_many

        x, y = training_slice(recipe, self.num_samples)
        return score_many(arch, weights, x, y) >= self.threshold

    def describe(self) -> str:
        return (f"{self.metric} >= {self.threshold:.4f} on {self.num_samples} training inputs (the worst fitted "
                f"member's {self.worst_member:.4f} minus {self.margin:g})")  # fmt: skip


def training_slice(recipe: Recipe, num_samples: int) -> tuple[Tensor, Tensor]:
    """The first ``num_samples`` inputs ``[B, ...]`` and targets ``[B]`` of ``recipe``'s training split."""
    x, y = recipe.split("train")
    return x[:num_samples], y[:num_samples]


def draw_checked(
    draw: Callable[[list[int]], Tensor],
    passes: Callable[[Tensor], Tensor],
    num_networks: int,
    max_draws: int = MAX_DRAWS,
) -> tuple[Tensor, int, int]:
    """``(weights [N, D] that pass, networks drawn, networks rejected)``. ``draw(slots)`` draws one network
    for each requested slot (network index; a slot drawn again continues its own random stream); slots whose
    network fails are drawn again until every slot holds a passing network or ``max_draws * N`` networks were
    drawn, which is refused."""
    pending = list(range(num_networks))
    out: Tensor | None = None
    drawn = 0
    while pending:
        if drawn + len(pending) > max_draws * num_networks:
            raise DWFError(
                f"quality check: only {num_networks - len(pending)} of {num_networks} networks passed after "
                f"{drawn} draws; the flow rarely gives working networks (pass quality_check=False for the raw ones)"
            )
        weights = draw(pending)
        drawn += len(pending)
        if out is None:
            out = torch.empty(num_networks, weights.shape[1], dtype=weights.dtype)
        ok = passes(weights)
        for row, slot in enumerate(pending):
            if ok[row]:
                out[slot] = weights[row]
        pending = [slot for row, slot in enumerate(pending) if not ok[row]]
    return out, drawn, drawn - num_networks
