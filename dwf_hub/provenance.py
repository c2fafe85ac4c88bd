"""Provenance records: how a zoo was canonicalized (stored in ``zoo.json`` and in a pipeline's config)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .errors import ZooFormatError


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
