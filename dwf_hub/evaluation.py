"""Vectorized forward passes over many networks of one architecture (``torch.func``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.func import functional_call, vmap

from .archs import ArchSpec


def stack_state_dicts(arch: ArchSpec, state_dicts: Sequence[dict[str, Tensor]]) -> dict[str, Tensor]:
    """``N`` state dicts -> ``key -> [N, *shape]``."""
    return {p.key: torch.stack([sd[p.key] for sd in state_dicts]) for p in arch.layout}


def stack_matrix(arch: ArchSpec, matrix: Tensor) -> dict[str, Tensor]:
    """Flat weights ``[N, D]`` -> ``key -> [N, *shape]`` views."""
    n = matrix.shape[0]
    return {p.key: matrix[:, p.offset : p.offset + p.numel].view(n, *p.shape) for p in arch.layout}


class BatchedForward:
    """``(stacked state, x) -> outputs [N, B, ...]`` for one architecture.

    ``x`` is ``[B, ...]`` (shared by all networks) or ``[N, B, ...]`` (one batch per network). In train
    mode, stacked BatchNorm buffers in ``state`` are updated in place, one set per network.
    """

    def __init__(self, arch: ArchSpec, train: bool = False) -> None:
        with torch.device("meta"):
            self.module = arch.build().train(train)

    def __call__(self, stacked: dict[str, Tensor], x: Tensor, shared_input: bool = True) -> Tensor:
        def f(params: dict[str, Tensor], xb: Tensor) -> Tensor:
            return functional_call(self.module, params, (xb,))

        return vmap(f, in_dims=(0, None if shared_input else 0))(stacked, x)


@torch.no_grad()
def predict_many(arch: ArchSpec, weights: Tensor | dict[str, Tensor], x: Tensor, chunk: int = 4096) -> Tensor:
    """Predicted labels ``[N, B]`` of every network on ``x [B, ...]``, in one vectorized pass per chunk;
    ``weights`` is ``[N, D]`` or stacked."""
    stacked = stack_matrix(arch, weights) if isinstance(weights, Tensor) else weights
    forward = BatchedForward(arch)
    device = next(iter(stacked.values())).device
    return torch.cat(
        [forward(stacked, x[s : s + chunk].to(device)).argmax(-1) for s in range(0, len(x), chunk)], 1
    ).cpu()


def accuracy_many(
    arch: ArchSpec, weights: Tensor | dict[str, Tensor], x: Tensor, y: Tensor, chunk: int = 4096
) -> Tensor:
    """Accuracy ``[N]`` of every network on ``(x [B, ...], y [B])``; ``weights`` is ``[N, D]`` or stacked."""
    return (predict_many(arch, weights, x, chunk) == y.cpu()).float().mean(1)


def _stats(values: Tensor, prefix: str) -> dict[str, float]:
    """Mean, population std, min, max (the paper's convention)."""
    return {
        f"{prefix}_mean": float(values.mean()),
        f"{prefix}_std": float(values.std(unbiased=False)) if len(values) > 1 else 0.0,
        f"{prefix}_min": float(values.min()),
        f"{prefix}_max": float(values.max()),
    }


def evaluate_zoo(zoo, reference=None, split: str = "test", progress: bool = False) -> dict:
    """Task accuracy of every network of ``zoo`` on the recipe's ``split``; with a ``reference`` zoo
    (e.g. the training zoo of a generator), also its accuracy and the novelty ratio of ``zoo``.

    For the novelty ratio both sets are aligned to the same reference network (the reference zoo's
    canonical reference, or its member 0), so permuted copies count as copies.
    """
    from .data import load_task
    from .errors import DWFError
    from .metrics import novelty_ratio

    if not zoo.recipe:
        raise DWFError("zoo has no recipe, so there is no task to evaluate it on")
    x, y = load_task(zoo.recipe["data"]).split(split)
    acc = accuracy_many(zoo.arch, zoo.to_matrix(), x, y)
    summary: dict = {
        "num_networks": len(zoo),
        "split": split,
        **_stats(acc, "accuracy"),
        "accuracies": acc.tolist(),
    }
    if reference is None:
        return summary
    if reference.arch != zoo.arch:
        raise DWFError(f"reference zoo architecture {reference.arch!r} differs from {zoo.arch!r}")
    ref_acc = accuracy_many(reference.arch, reference.to_matrix(), x, y)
    aligned, ref_matrix = aligned_matrices(zoo, reference, progress)
    summary.update(_stats(ref_acc, "reference_accuracy"))
    summary["reference_num_networks"] = len(reference)
    summary["novelty_ratio"] = novelty_ratio(aligned, ref_matrix)
    return summary


def aligned_matrices(zoo, reference, progress: bool = False) -> tuple[Tensor, Tensor]:
    """``(zoo [N, D], reference [M, D])`` in the reference's canonical space: the reference zoo
    canonicalized (unless it already is), every network of ``zoo`` aligned to its reference member."""
    from .matching import canonicalize, weight_matching_many

    if not reference.is_canonical:
        reference = canonicalize(reference, progress=progress).zoo
    anchor = reference.state_dict(reference.info["canonical"]["reference"])
    spec = zoo.arch.permutation_spec()
    members = [zoo.state_dict(i) for i in range(len(zoo))]
    results = weight_matching_many(spec, anchor, members)
    aligned = torch.stack([zoo.arch.flatten({**sd, **r.aligned}) for r, sd in zip(results, members)])
    return aligned, reference.to_matrix()
