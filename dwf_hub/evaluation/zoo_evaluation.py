"""Zoo evaluation: the task metric of every network and, against a training zoo, how new they are."""

from __future__ import annotations

import torch
from torch import Tensor

from ..errors import DWFError
from ..matching import canonicalize, matching_spec, weight_matching_many
from ..scoring import score_many
from .metrics import summarize
from .novelty import NoveltyScorer


def evaluate_zoo(
    zoo, reference=None, split: str = "test", holdout: int | None = None, progress: bool = False
) -> dict:
    """Task metric (``metric``: accuracy, or Spearman for regression) of every network of ``zoo`` on the
    recipe's ``split``; with a ``reference`` zoo (the training zoo of a generator), also its metric and
    the permutation-invariant ``novelty_ratio``, ``diversity_ratio`` and, when the last ``holdout``
    members of ``reference`` were kept out of fitting, ``heldout_ratio``, each with its 95 % bootstrap
    interval (``novelty_interval``, ...; see ``dwf_hub.evaluation.novelty``).

    ``holdout`` defaults to what a generated zoo records (``info["holdout"]``), else 0.
    """
    if not zoo.recipe:
        raise DWFError("zoo has no recipe, so there is no task to evaluate it on")
    x, y = zoo.recipe.split(split)
    metric = zoo.arch.metric
    acc = score_many(zoo.arch, zoo.to_matrix(), x, y)
    summary: dict = {
        "num_networks": len(zoo),
        "split": split,
        "metric": metric,
        **summarize(acc, f"{metric}_"),
        "scores": acc.tolist(),
    }
    if reference is None:
        return summary
    if reference.arch != zoo.arch:
        raise DWFError(f"reference zoo architecture {reference.arch!r} differs from {zoo.arch!r}")
    holdout = zoo.info.get("holdout", 0) if holdout is None else holdout
    reference.split_holdout(holdout)  # refused, naming the sizes, unless it leaves 2 members to compare with
    weights, ref_matrix = aligned_matrices(zoo, reference, progress)
    seen = ref_matrix[: len(ref_matrix) - holdout]
    ref_acc = score_many(reference.arch, seen, x, y)
    summary.update(summarize(ref_acc, f"reference_{metric}_"))
    summary["reference_num_networks"] = len(seen)
    summary["holdout"] = holdout
    scorer = NoveltyScorer(zoo.arch, seen, ref_matrix[len(seen) :] if holdout else None)
    summary.update({k: v for k, v in scorer.score(weights).items() if k.endswith(("_ratio", "_interval"))})
    return summary


def aligned_matrices(zoo, reference, progress: bool = False) -> tuple[Tensor, Tensor]:
    """``(zoo [N, D], reference [M, D])`` in the reference's canonical space: the reference zoo
    canonicalized (unless it already is); ``zoo`` as it is when it is canonical to the same reference
    network (generated networks are), else every network aligned to that reference."""
    if not reference.is_canonical:
        reference = canonicalize(reference, progress=progress).zoo
    canonical = reference.canonical
    if canonical.same_alignment(zoo.canonical):
        return zoo.to_matrix(), reference.to_matrix()
    anchor = reference.state_dict(canonical.reference)
    spec = matching_spec(zoo.arch, canonical.permute_residual)
    members = [zoo.state_dict(i) for i in range(len(zoo))]
    results = weight_matching_many(spec, anchor, members, max_iter=canonical.max_iter)
    aligned = torch.stack([zoo.arch.flatten({**sd, **r.aligned}) for r, sd in zip(results, members)])
    return aligned, reference.to_matrix()
