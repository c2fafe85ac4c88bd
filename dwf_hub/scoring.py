"""Scoring many networks of one architecture at once: vectorized forward passes (``torch.func``) and the
task metric (``ArchSpec.metric``). Used by zoo training, evaluation, reports and the Space."""

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


def score_many(
    arch: ArchSpec, weights: Tensor | dict[str, Tensor], x: Tensor, y: Tensor, chunk: int = 4096
) -> Tensor:
    """``[N]``: every network's ``arch.metric`` on ``(x [B, ...], y [B])`` — accuracy of the argmax for
    classification, Spearman's rho of the single output for regression; ``weights`` is ``[N, D]`` or stacked."""
    return metric_of_outputs(arch, outputs_many(arch, weights, x, chunk), y)


def metric_of_outputs(arch: ArchSpec, outputs: Tensor, y: Tensor) -> Tensor:
    """``[N]``: ``arch.metric`` of outputs ``[N, B, C]`` against ``y [B]``."""
    if arch.task == "classification":
        return (outputs.argmax(-1) == y.cpu()).float().mean(1)
    return spearman(outputs[..., 0], y).float()


def function_values(arch: ArchSpec, outputs: Tensor) -> Tensor:
    """What a network computes, as compared by function-space novelty: ``outputs [N, B, C]`` -> class
    probabilities (classification; logits have a free offset) or the outputs themselves (regression)."""
    return outputs.float().softmax(-1) if arch.task == "classification" else outputs.float()


def spearman(pred: Tensor, target: Tensor) -> Tensor:
    """``[N]`` Spearman correlation of each network's predictions ``[N, B]`` with targets ``[B]``; a constant
    prediction (a broken network: scipy says NaN) ranks nothing, so it scores 0 and every table stays finite."""
    from scipy.stats import spearmanr

    rho = torch.tensor([spearmanr(p.double().numpy(), target.double().numpy())[0] for p in pred])
    return rho.nan_to_num(0.0)
