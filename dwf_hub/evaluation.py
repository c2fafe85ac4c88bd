"""Vectorized forward passes over many networks of one architecture (``torch.func``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from .archs import ArchSpec


def stack_state_dicts(arch: ArchSpec, state_dicts: Sequence[dict[str, Tensor]]) -> dict[str, Tensor]:
    """``N`` state dicts -> ``key -> [N, *shape]``."""
    return {p.key: torch.stack([sd[p.key] for sd in state_dicts]) for p in arch.layout}


def stack_matrix(arch: ArchSpec, matrix: Tensor) -> dict[str, Tensor]:
    """Flat weights ``[N, D]`` -> ``key -> [N, *shape]`` views."""
    n = matrix.shape[0]
    return {p.key: matrix[:, p.offset : p.offset + p.numel].view(n, *p.shape) for p in arch.layout}


class _Caller(nn.Module):
    """``arch.call(model, x)`` as a module, so ``functional_call`` can swap the model's weights."""

    def __init__(self, arch: ArchSpec, model: nn.Module) -> None:
        super().__init__()
        self.arch, self.model = arch, model

    def forward(self, x: Tensor) -> Tensor:
        return self.arch.call(self.model, x)


class BatchedForward:
    """``(stacked state, x) -> outputs [N, B, ...]`` for one architecture.

    ``x`` is ``[B, ...]`` (shared by all networks) or ``[N, B, ...]`` (one batch per network). In train
    mode, stacked BatchNorm buffers in ``state`` are updated in place, one set per network.
    """

    def __init__(self, arch: ArchSpec, train: bool = False) -> None:
        self.caller, self.train = _Caller(arch, arch.functional_model(train)), train

    def __call__(self, stacked: dict[str, Tensor], x: Tensor, shared_input: bool = True) -> Tensor:
        def f(params: dict[str, Tensor], xb: Tensor) -> Tensor:
            return functional_call(self.caller, {f"model.{k}": v for k, v in params.items()}, (xb,))

        # Dropout in train mode draws different masks per network (from torch's global generator).
        randomness = "different" if self.train else "error"
        return vmap(f, in_dims=(0, None if shared_input else 0), randomness=randomness)(stacked, x)


@torch.no_grad()
def outputs_many(arch: ArchSpec, weights: Tensor | dict[str, Tensor], x: Tensor, chunk: int = 4096) -> Tensor:
    """Outputs ``[N, B, C]`` of every network on ``x [B, ...]``, in one vectorized pass per chunk;
    ``weights`` is ``[N, D]`` or stacked."""
    stacked = stack_matrix(arch, weights) if isinstance(weights, Tensor) else weights
    forward = BatchedForward(arch)
    device = next(iter(stacked.values())).device
    return torch.cat(
        [forward(stacked, x[s : s + chunk].to(device)).cpu() for s in range(0, len(x), chunk)], 1
    )


def predict_many(arch: ArchSpec, weights: Tensor | dict[str, Tensor], x: Tensor, chunk: int = 4096) -> Tensor:
    """Predicted labels ``[N, B]`` of every network on ``x [B, ...]``."""
    return outputs_many(arch, weights, x, chunk).argmax(-1)


def metric_name(arch: ArchSpec) -> str:
    """The task metric: ``accuracy`` (classification) or ``spearman`` (regression, as in the paper's BERT)."""
    return "accuracy" if arch.task == "classification" else "spearman"


def score_many(
    arch: ArchSpec, weights: Tensor | dict[str, Tensor], x: Tensor, y: Tensor, chunk: int = 4096
) -> Tensor:
    """``[N]``: every network's ``metric_name(arch)`` on ``(x [B, ...], y [B])``."""
    if arch.task == "classification":
        return accuracy_many(arch, weights, x, y, chunk)
    from .metrics import spearman

    return spearman(outputs_many(arch, weights, x, chunk)[..., 0], y).float()


def accuracy_many(
    arch: ArchSpec, weights: Tensor | dict[str, Tensor], x: Tensor, y: Tensor, chunk: int = 4096
) -> Tensor:
    """Accuracy ``[N]`` of every network on ``(x [B, ...], y [B])``; ``weights`` is ``[N, D]`` or stacked."""
    return (predict_many(arch, weights, x, chunk) == y.cpu()).float().mean(1)


def summarize(values: Tensor, prefix: str = "") -> dict[str, float]:
    """Mean, population std, min, max (the paper's convention), keys prefixed with ``prefix``."""
    return {
        f"{prefix}mean": float(values.mean()),
        f"{prefix}std": float(values.std(unbiased=False)) if len(values) > 1 else 0.0,
        f"{prefix}min": float(values.min()),
        f"{prefix}max": float(values.max()),
    }


def evaluate_zoo(
    zoo, reference=None, split: str = "test", holdout: int | None = None, progress: bool = False
) -> dict:
    """Task metric (``metric``: accuracy, or Spearman for regression) of every network of ``zoo`` on the
    recipe's ``split``; with a ``reference`` zoo (the training zoo of a generator), also its metric and
    the permutation-invariant ``novelty_ratio``, ``diversity_ratio`` and, when the last ``holdout``
    members of ``reference`` were kept out of fitting, ``heldout_ratio`` (see ``dwf_hub.novelty``).

    ``holdout`` defaults to what a generated zoo records (``info["holdout"]``), else 0.
    """
    from .data import load_task
    from .errors import DWFError
    from .novelty import NoveltyScorer

    if not zoo.recipe:
        raise DWFError("zoo has no recipe, so there is no task to evaluate it on")
    x, y = load_task(zoo.recipe["data"]).split(split)
    metric = metric_name(zoo.arch)
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
    weights, ref_matrix = aligned_matrices(zoo, reference, progress)
    holdout = zoo.info.get("holdout", 0) if holdout is None else holdout
    seen = ref_matrix[: len(ref_matrix) - holdout]
    ref_acc = score_many(reference.arch, seen, x, y)
    summary.update(summarize(ref_acc, f"reference_{metric}_"))
    summary["reference_num_networks"] = len(seen)
    summary["holdout"] = holdout
    scorer = NoveltyScorer(zoo.arch, seen, ref_matrix[len(seen) :] if holdout else None)
    summary.update({k: v for k, v in scorer.score(weights).items() if k.endswith("_ratio")})
    return summary


def aligned_matrices(zoo, reference, progress: bool = False) -> tuple[Tensor, Tensor]:
    """``(zoo [N, D], reference [M, D])`` in the reference's canonical space: the reference zoo
    canonicalized (unless it already is); ``zoo`` as it is when it is canonical to the same reference
    network (generated networks are), else every network aligned to that reference."""
    from .matching import canonicalize, matching_spec, weight_matching_many

    if not reference.is_canonical:
        reference = canonicalize(reference, progress=progress).zoo
    canonical = reference.info["canonical"]
    if zoo.info.get("canonical") == canonical:
        return zoo.to_matrix(), reference.to_matrix()
    anchor = reference.state_dict(canonical["reference"])
    spec = matching_spec(zoo.arch, canonical.get("permute_residual", True))
    members = [zoo.state_dict(i) for i in range(len(zoo))]
    results = weight_matching_many(spec, anchor, members, max_iter=canonical.get("max_iter", 100))
    aligned = torch.stack([zoo.arch.flatten({**sd, **r.aligned}) for r, sd in zip(results, members)])
    return aligned, reference.to_matrix()
