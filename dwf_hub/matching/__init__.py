"""Canonicalization: removing permutation symmetry by aligning networks to one reference."""

from .canonicalize import CanonicalizationResult, align_state_dict, canonicalize, matching_spec, method_of
from .weight_matching import MatchResult, weight_matching, weight_matching_many

__all__ = [
    "CanonicalizationResult",
    "MatchResult",
    "align_state_dict",
    "canonicalize",
    "matching_spec",
    "method_of",
    "weight_matching",
    "weight_matching_many",
]
