"""torchvision's Bottleneck (ResNet v1.5, stride on the 3x3): conv1x1 -> BN -> ReLU -> conv3x3 ->
BN -> ReLU -> conv1x1 -> BN, plus the shortcut, then ReLU.

Two prunable units: conv1's output (read by conv2) and conv2's output (read by conv3). conv3's
output is the residual stream, shared with the shortcut: not prunable by filter pruning.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hgsearch.models.blocks import Unit, pair_of, projection


class Bottleneck(nn.Module):
    n_units = 2

    def __init__(self, in_ch: int, widths: tuple[int, int], out_ch: int, stride: int) -> None:
        super().__init__()
        w1, w2 = widths
        self.conv1 = nn.Conv2d(in_ch, w1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(w1)
        self.conv2 = nn.Conv2d(w1, w2, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(w2)
        self.conv3 = nn.Conv2d(w2, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)   # torchvision's module; holds no parameters
        self.downsample = projection(in_ch, out_ch, stride) or nn.Identity()

    def units(self) -> list[Unit]:
        return [Unit(self.conv1, self.bn1, self.conv2), Unit(self.conv2, self.bn2, self.conv3)]

    def path(self) -> list[tuple[nn.Conv2d, nn.BatchNorm2d]]:
        return [(self.conv1, self.bn1), (self.conv2, self.bn2), (self.conv3, self.bn3)]

    def shortcut_pair(self) -> tuple[nn.Conv2d, nn.BatchNorm2d] | None:
        return pair_of(self.downsample)

    def activations(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        # Out of place: autograd (the taylor criterion) needs each activation as it was.
        h1 = F.relu(self.bn1(self.conv1(x)))
        h2 = F.relu(self.bn2(self.conv2(h1)))
        return [h1, h2], F.relu(self.bn3(self.conv3(h2)) + self.downsample(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.activations(x)[1]
