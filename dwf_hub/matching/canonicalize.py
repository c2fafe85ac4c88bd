"""Canonicalize a zoo: align every member to one reference network (functionally identical members)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor
from tqdm.auto import tqdm

from ..archs import ArchSpec
from ..errors import DWFError
from ..permutations import apply_permutation
from ..zoo import WeightZoo
from .weight_matching import MatchResult, weight_matching

METHOD = "git_re_basin"


@dataclass
class CanonicalizationResult:
    zoo: WeightZoo
    """The aligned zoo; ``zoo.info["canonical"]`` records the method and the reference member."""
    perms: list[dict[str, Tensor]]
    """Per member, the permutation applied to it."""
    objectives: list[float]
    """Per member, ``<reference, aligned member>`` summed over permuted keys."""


def align_state_dict(
    arch: ArchSpec,
    reference: dict[str, Tensor],
    state_dict: dict[str, Tensor],
    max_iter: int = 100,
    seed: int = 0,
) -> tuple[dict[str, Tensor], MatchResult]:
    """Permute ``state_dict`` to match ``reference``; the result computes the same function."""
    arch.validate(state_dict)
    spec = arch.permutation_spec()
    result = weight_matching(spec, reference, state_dict, max_iter=max_iter, seed=seed)
    return apply_permutation(spec, result.perm, state_dict), result


def canonicalize(
    zoo: WeightZoo, reference: int = 0, max_iter: int = 100, seed: int = 0, progress: bool = True
) -> CanonicalizationResult:
    """Git Re-Basin weight matching of every member to member ``reference`` (which stays as is)."""
    if not 0 <= reference < len(zoo):
        raise DWFError(f"reference index {reference} is out of range for a zoo of {len(zoo)} networks")
    ref = zoo.state_dict(reference)
    members, perms, objectives = [], [], []
    for i in tqdm(range(len(zoo)), desc="canonicalizing", disable=not progress, leave=False):
        aligned, result = align_state_dict(zoo.arch, ref, zoo.state_dict(i), max_iter=max_iter, seed=seed + i)
        members.append(aligned)
        perms.append(result.perm)
        objectives.append(result.objective)
    info = {
        **zoo.info,
        "canonical": {"method": METHOD, "reference": reference, "max_iter": max_iter, "seed": seed},
    }
    records = [{**r, "matching_objective": o} for r, o in zip(zoo.records, objectives)]
    canonical = WeightZoo(zoo.arch, members, records, recipe=zoo.recipe, info=info)
    return CanonicalizationResult(canonical, perms, objectives)
