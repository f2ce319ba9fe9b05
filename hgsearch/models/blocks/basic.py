"""The BasicBlock (He et al. 2016): conv3x3 -> BN -> ReLU -> conv3x3 -> BN, plus the shortcut,
then ReLU. One prunable unit: conv1's output, read by conv2."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hgsearch.models.blocks import Unit, pair_of, projection


class BasicBlock(nn.Module):
    """``shortcut_name`` names the projection: ``shortcut`` in the CIFAR ResNets (their files'
    names), ``downsample`` in torchvision's."""

    n_units = 1

    def __init__(self, in_ch: int, width: int, out_ch: int, stride: int, *,
                 shortcut_name: str = "shortcut") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        # 1x1 projection ("option B"); the regularizer leaves it alone (docs/method.md part 1).
        self._shortcut_name = shortcut_name
        setattr(self, shortcut_name, projection(in_ch, out_ch, stride) or nn.Identity())

    @property
    def shortcut_module(self) -> nn.Module:
        return getattr(self, self._shortcut_name)

    def units(self) -> list[Unit]:
        return [Unit(self.conv1, self.bn1, self.conv2)]

    def path(self) -> list[tuple[nn.Conv2d, nn.BatchNorm2d]]:
        return [(self.conv1, self.bn1), (self.conv2, self.bn2)]

    def shortcut_pair(self) -> tuple[nn.Conv2d, nn.BatchNorm2d] | None:
        return pair_of(self.shortcut_module)

    def inner(self, x: torch.Tensor) -> torch.Tensor:
        """The prunable channels: post-activation output of the first conv, (B, width, H, W)."""
        return F.relu(self.bn1(self.conv1(x)))

    def finish(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """The rest of the block, given its input x and inner activation h."""
        return F.relu(self.bn2(self.conv2(h)) + self.shortcut_module(x))

    def activations(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        h = self.inner(x)
        return [h], self.finish(x, h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.finish(x, self.inner(x))
