"""SmallCNN: 3 convolutions + 2 fully connected layers (~12K parameters on 32x32x3 inputs)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from huggingface_hub import PyTorchModelHubMixin
from torch import Tensor, nn

from ..errors import DWFError
from ..permutations import PermutationSpec, conv, dense
from .base import HUB_MODEL_CARD, ArchSpec
from .registry import register


class SmallCNN(nn.Module, PyTorchModelHubMixin, **HUB_MODEL_CARD):
    """``x [B, C, H, W] -> logits [B, num_classes]``: (conv3x3-ReLU-maxpool) x 3, global average pool, 2 FC."""

    def __init__(self, in_channels: int, channels: Sequence[int], hidden: int, num_classes: int) -> None:
        super().__init__()
        c1, c2, c3 = channels
        self.conv1 = nn.Conv2d(in_channels, c1, 3, padding=1)
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1)
        self.conv3 = nn.Conv2d(c2, c3, 3, padding=1)
        self.fc1 = nn.Linear(c3, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x: Tensor) -> Tensor:
        for layer in (self.conv1, self.conv2, self.conv3):
            x = self.pool(torch.relu(layer(x)))
        x = x.mean(dim=(2, 3))
        return self.fc2(torch.relu(self.fc1(x)))


@register
class SmallCNNSpec(ArchSpec):
    name = "smallcnn"

    def __init__(
        self,
        in_channels: int = 3,
        channels: Sequence[int] = (16, 24, 32),
        hidden: int = 32,
        num_classes: int = 10,
        image_size: int = 32,
    ) -> None:
        if len(channels) != 3 or min(channels) < 1 or min(in_channels, hidden, num_classes) < 1:
            raise DWFError(
                f"smallcnn: need three positive channel counts and positive sizes, got {channels!r}"
            )
        if image_size < 8:
            raise DWFError(f"smallcnn: image_size must be >= 8 (three 2x poolings), got {image_size}")
        self.in_channels, self.channels, self.hidden = in_channels, list(channels), hidden
        self.num_classes, self.image_size = num_classes, image_size

    def build(self) -> nn.Module:
        return SmallCNN(self.in_channels, self.channels, self.hidden, self.num_classes)

    @property
    def unit_layers(self) -> tuple[str, ...]:
        return ("conv1", "conv2", "conv3", "fc1")

    def permutation_spec(self) -> PermutationSpec:
        return PermutationSpec(
            {
                **conv("conv1", None, "P_conv1", bias=True),
                **conv("conv2", "P_conv1", "P_conv2", bias=True),
                **conv("conv3", "P_conv2", "P_conv3", bias=True),
                **dense("fc1", "P_conv3", "P_fc1"),
                **dense("fc2", "P_fc1", None),
            }
        )

    @classmethod
    def tiny(cls) -> SmallCNNSpec:
        return cls(in_channels=1, channels=(3, 4, 5), hidden=6, num_classes=3, image_size=8)

    def example_input(self, batch_size: int, generator: torch.Generator | None = None) -> Tensor:
        return torch.randn(
            batch_size, self.in_channels, self.image_size, self.image_size, generator=generator
        )
