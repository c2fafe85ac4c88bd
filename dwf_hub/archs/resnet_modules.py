"""The ResNet modules ``resnet.py``'s specs build, on torchvision's ``BasicBlock`` (kept apart so that importing
the architecture registry does not import torchvision: ~0.7 s on 2 cores, for commands that never build a ResNet)."""

from __future__ import annotations

from collections.abc import Sequence

from huggingface_hub import PyTorchModelHubMixin
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, ResNet

from .base import HUB_MODEL_CARD


class CifarStemResNet18(ResNet, PyTorchModelHubMixin, **HUB_MODEL_CARD):
    """torchvision's ``resnet18`` with the CIFAR stem: 3x3 ``conv1`` with stride 1, no max-pool."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__(BasicBlock, [2, 2, 2, 2], num_classes=num_classes)
        self.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        self.maxpool = nn.Identity()


class CifarResNet(nn.Module, PyTorchModelHubMixin, **HUB_MODEL_CARD):
    """He et al.'s CIFAR ResNet (3x3 stem, stages of BasicBlocks, projection shortcuts, no max-pool)."""

    def __init__(
        self, blocks_per_stage: Sequence[int], widths: Sequence[int], in_channels: int, num_classes: int
    ):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        planes = widths[0]
        for s, (n, width) in enumerate(zip(blocks_per_stage, widths), start=1):
            stride = 1 if s == 1 else 2
            downsample = None
            if stride != 1 or planes != width:
                downsample = nn.Sequential(
                    nn.Conv2d(planes, width, 1, stride, bias=False), nn.BatchNorm2d(width)
                )
            layers = [BasicBlock(planes, width, stride, downsample)]
            layers += [BasicBlock(width, width) for _ in range(n - 1)]
            setattr(self, f"layer{s}", nn.Sequential(*layers))
            planes = width
        self.num_stages = len(blocks_per_stage)
        self.fc = nn.Linear(planes, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        for s in range(1, self.num_stages + 1):
            x = getattr(self, f"layer{s}")(x)
        return self.fc(x.mean(dim=(2, 3)))
