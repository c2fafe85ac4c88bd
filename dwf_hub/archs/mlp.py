"""Multi-layer perceptron: any list of layer sizes with an elementwise activation."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import Tensor, nn

from ..errors import DWFError
from ..permutations import PermutationSpec, dense
from .base import HUB_MODEL_CARD, ArchSpec
from .registry import register

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}


class MLP(nn.Module, PyTorchModelHubMixin, **HUB_MODEL_CARD):
    """``x [B, ...] -> logits [B, layer_sizes[-1]]``; inputs are flattened."""

    def __init__(self, layer_sizes: Sequence[int], activation: str = "relu") -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(layer_sizes))
        self.act = ACTIVATIONS[activation]()

    def forward(self, x: Tensor) -> Tensor:
        x = x.flatten(1)
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = self.act(x)
        return x


@register
class MLPSpec(ArchSpec):
    name = "mlp"

    def __init__(self, layer_sizes: Sequence[int], activation: str = "relu") -> None:
        sizes = list(layer_sizes)
        if len(sizes) < 2 or not all(isinstance(s, int) and s > 0 for s in sizes):
            raise DWFError(f"mlp: layer_sizes must be two or more positive integers, got {layer_sizes!r}")
        if activation not in ACTIVATIONS:
            raise DWFError(f"mlp: unknown activation {activation!r}; known: {', '.join(ACTIVATIONS)}")
        self.layer_sizes, self.activation = sizes, activation

    def with_outputs(self, n: int) -> MLPSpec:
        return MLPSpec([*self.layer_sizes[:-1], n], self.activation)

    def build(self) -> nn.Module:
        return MLP(self.layer_sizes, self.activation)

    @property
    def unit_layers(self) -> tuple[str, ...]:
        return tuple(f"layers.{i}" for i in range(len(self.layer_sizes) - 2))

    def permutation_spec(self) -> PermutationSpec:
        n = len(self.layer_sizes) - 1
        axes = {}
        for i in range(n):
            p_in = f"P_{i - 1}" if i > 0 else None
            p_out = f"P_{i}" if i < n - 1 else None
            axes.update(dense(f"layers.{i}", p_in, p_out))
        return PermutationSpec(axes)

    @classmethod
    def tiny(cls) -> MLPSpec:
        return cls([4, 6, 5, 3])

    def example_input(self, batch_size: int, generator: torch.Generator | None = None) -> Tensor:
        return torch.randn(batch_size, self.layer_sizes[0], generator=generator)
