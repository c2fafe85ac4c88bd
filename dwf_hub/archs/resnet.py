"""Residual networks with BatchNorm: CIFAR ResNet-20 and torchvision's ResNet-18 with a CIFAR stem.

Both use torchvision's ``BasicBlock`` (keys ``conv1, bn1, conv2, bn2, downsample.0/1``), so one
permutation-spec builder serves both: every residual stage shares one permutation across its skip
connections, each block has one inner permutation, and projection shortcuts map the previous stage's
permutation to the new one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..errors import DWFError
from ..permutations import Axes, PermutationSpec, batchnorm, conv
from .base import ArchSpec
from .registry import register


def resnet_permutation_spec(keys: set[str], blocks_per_stage: Sequence[int]) -> PermutationSpec:
    """Spec for a ``conv1/bn1 -> layer{s}.{b} -> fc`` network of BasicBlocks with these state-dict ``keys``."""
    axes: dict[str, Axes] = {**conv("conv1", None, "P_res0"), **batchnorm("bn1", "P_res0")}
    stream = "P_res0"
    for s, n_blocks in enumerate(blocks_per_stage, start=1):
        projected = f"layer{s}.0.downsample.0.weight" in keys
        new_stream = f"P_res{s}" if projected else stream
        for b in range(n_blocks):
            name, inner = f"layer{s}.{b}", f"P_layer{s}.{b}"
            axes.update(conv(f"{name}.conv1", stream if b == 0 else new_stream, inner))
            axes.update(batchnorm(f"{name}.bn1", inner))
            axes.update(conv(f"{name}.conv2", inner, new_stream))
            axes.update(batchnorm(f"{name}.bn2", new_stream))
            if b == 0 and projected:
                axes.update(conv(f"{name}.downsample.0", stream, new_stream))
                axes.update(batchnorm(f"{name}.downsample.1", new_stream))
        stream = new_stream
    axes["fc.weight"] = (None, stream)
    axes["fc.bias"] = (None,)
    return PermutationSpec(axes)


class _ResNetSpec(ArchSpec):
    blocks: tuple[int, ...]

    @property
    def needs_calibration(self) -> bool:
        return True

    def permutation_spec(self) -> PermutationSpec:
        return resnet_permutation_spec({p.key for p in self.layout}, self.blocks)

    def example_input(self, batch_size: int, generator: torch.Generator | None = None) -> Tensor:
        return torch.randn(
            batch_size, self.in_channels, self.image_size, self.image_size, generator=generator
        )


@register
class ResNet20Spec(_ResNetSpec):
    """CIFAR ResNet-20 (3 stages x 3 blocks, widths 16/32/64 times ``width``; 272,474 parameters at width 1)."""

    name = "resnet20"
    blocks = (3, 3, 3)

    def __init__(
        self, width: int = 1, in_channels: int = 3, num_classes: int = 10, image_size: int = 32
    ) -> None:
        if min(width, in_channels, num_classes) < 1 or image_size < 4:
            raise DWFError("resnet20: width, in_channels, num_classes must be >= 1 and image_size >= 4")
        self.width, self.in_channels, self.num_classes, self.image_size = (
            width,
            in_channels,
            num_classes,
            image_size,
        )

    def build(self) -> nn.Module:
        from .resnet_modules import (
            CifarResNet,  # torchvision: imported by the commands that build ResNets only
        )

        widths = [16 * self.width, 32 * self.width, 64 * self.width]
        return CifarResNet(self.blocks, widths, self.in_channels, self.num_classes)

    @classmethod
    def tiny(cls) -> ResNet20Spec:
        return cls(width=1, in_channels=1, num_classes=3, image_size=8)


@register
class ResNet18Spec(_ResNetSpec):
    """torchvision ``resnet18`` with the CIFAR stem (3x3 conv1, stride 1, no max-pool): 11.17M parameters."""

    name = "resnet18"
    blocks = (2, 2, 2, 2)

    def __init__(self, num_classes: int = 10, in_channels: int = 3, image_size: int = 32) -> None:
        if min(num_classes, in_channels) < 1 or image_size < 8:
            raise DWFError("resnet18: num_classes and in_channels must be >= 1 and image_size >= 8")
        self.num_classes, self.in_channels, self.image_size = num_classes, in_channels, image_size

    def build(self) -> nn.Module:
        from .resnet_modules import CifarStemResNet18

        return CifarStemResNet18(self.num_classes, self.in_channels)

    @classmethod
    def tiny(cls) -> ResNet18Spec:
        return cls(num_classes=3, in_channels=1, image_size=8)
