"""Provenance records: how a zoo was canonicalized (stored in ``zoo.json`` and in a pipeline's config), how
connected its aligned members were, and which snapshot of the flow a fit kept (a pipeline's config and card)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import PipelineFormatError, ZooFormatError


@dataclass(frozen=True)
class CanonicalizationRecord:
    """How a zoo was canonicalized (``zoo.info["canonical"]``, a pipeline's provenance): every member
    aligned to member ``reference`` by ``method`` with ``max_iter`` sweeps."""

    method: str
    reference: int
    max_iter: int
    seed: int = 0
    permute_residual: bool = True

    @classmethod
    def from_info(
        cls, info: dict[str, Any] | None, source: str = "zoo info"
    ) -> CanonicalizationRecord | None:
        """The record in a zoo's ``info`` (``None`` when the zoo is not canonical)."""
        return cls.from_dict((info or {}).get("canonical"), source)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, source: str) -> CanonicalizationRecord | None:
        if data is None:
            return None
        known = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(data, dict) or not {"method", "reference", "max_iter"} <= data.keys() <= known:
            raise ZooFormatError(
                f"{source}: 'canonical' must be a table with keys {sorted(known)}, got {data!r}"
            )
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def aligned_to(self, reference: int, permute_residual: bool) -> bool:
        """Whether this zoo sits in the canonical space of member ``reference`` with that residual choice: the
        one rule for "already aligned" (method, sweeps and seed only change how well, not to what)."""
        return (self.reference, self.permute_residual) == (reference, permute_residual)

    def same_alignment(self, other: CanonicalizationRecord | None) -> bool:
        """Whether ``other`` is aligned to the same reference network the same way (``aligned_to``)."""
        return other is not None and self.aligned_to(other.reference, other.permute_residual)


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
            "continue one parent trained a few epochs) is connected: docs/usage.md, How members start"
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


NETWORKS = 32  # networks drawn from each snapshot
TOLERANCE = 0.02  # below the fitted members' mean metric (2 pp of accuracy)


@dataclass
class SnapshotScore:
    """What ``NETWORKS`` networks drawn from the flow after ``iteration`` steps score (for a conditional flow:
    drawn for ``condition``, scored against that zoo)."""

    iteration: int
    mean: float
    std: float
    failed_share: float
    novelty: float
    function_novelty: float | None
    condition: str = ""


@dataclass
class Floors:
    """What one zoo's networks are held to: the fitted members' mean metric, the least mean that counts as
    working, and the least weight and function novelty that count as new."""

    members: float
    floor: float
    min_novelty: float
    min_function_novelty: float

    def slack(self, s: SnapshotScore) -> float:
        """How far ``s``'s mean is above the floor (< 0: not working)."""
        return s.mean - self.floor

    def newness(self, s: SnapshotScore) -> float:
        """``s``'s novelty over the least that counts as new, the lower of weight and function (< 1: not new)."""
        fn = (
            math.inf
            if s.function_novelty is None
            else s.function_novelty / max(self.min_function_novelty, 1e-12)
        )
        return min(s.novelty / max(self.min_novelty, 1e-12), fn)


@dataclass
class Selection:
    """The kept snapshot (``iteration``), why (``rule``: ``new and working``, ``memorizes`` or ``falls short``),
    the floors each zoo was held to (by condition; ``""``: an unconditional flow) and every snapshot's scores."""

    iteration: int
    rule: str
    floors: dict[str, Floors]
    scores: list[SnapshotScore] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, source: str) -> Selection:
        """The record written by ``to_dict``; anything else is refused naming ``source``."""
        try:
            floors = {str(k): Floors(**v) for k, v in data["floors"].items()}
            record = cls(**{**data, "floors": floors, "scores": [SnapshotScore(**s) for s in data["scores"]]})
            ok = isinstance(record.iteration, int) and bool(record.kept) and all(
                s.condition in floors and isinstance(s.mean, (int, float)) for s in record.scores
            )  # fmt: skip
        except (TypeError, KeyError, AttributeError):
            ok = False
        if not ok:
            raise PipelineFormatError(f"{source}: 'selection' is not a flow-selection record")
        return record

    @property
    def kept(self) -> list[SnapshotScore]:
        """The kept snapshot's scores, one per condition."""
        return [s for s in self.scores if s.iteration == self.iteration]

    def describe(self) -> str:
        def one(k: SnapshotScore) -> str:
            fn = "–" if k.function_novelty is None else f"{k.function_novelty:.2f}"
            name = f"{k.condition}: " if k.condition else ""
            return (f"{name}{k.mean:.4f} (members {self.floors[k.condition].members:.4f}) at novelty "
                    f"{k.novelty:.2f}, function novelty {fn}")  # fmt: skip

        line = (f"kept the flow after {self.iteration} of {self.scores[-1].iteration} iterations ({self.rule}): "
                f"{NETWORKS} networks score {'; '.join(one(k) for k in self.kept)} on the validation split")  # fmt: skip
        if self.rule == "memorizes":
            line += ("; no snapshot's networks were new (half the held-out members' novelty) and working: expect "
                     "near-copies of members (more members, or fewer iterations / a narrower flow)")  # fmt: skip
        elif self.rule == "falls short":
            line += f"; no snapshot came within {TOLERANCE:g} of the members: expect networks below the zoo"
        return line
