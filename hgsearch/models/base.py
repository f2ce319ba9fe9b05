"""What every prunable network exposes: its blocks, their units, a stem and a head.

``widths`` is flat: one int per prunable unit, block after block (a BasicBlock has one unit, a
Bottleneck two). Scores, kept channels and the row's ``widths_dense`` / ``kept_channels`` use the
same order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from hgsearch.models.blocks import Block, Unit


class PrunableNet(nn.Module):
    """stem -> blocks -> head; subclasses build the modules under their own parameter names."""

    # Set by each subclass: a module attribute (the CIFAR ResNets' ``stem``, ``blocks``) or a
    # method / property (torchvision's names), never both, so none is defined here.
    arch: str
    num_classes: int
    widths: list[int]
    blocks: Sequence[Block]
    stem: Callable[[torch.Tensor], torch.Tensor]
    fc: nn.Linear

    def units(self) -> list[Unit]:
        """Every prunable unit, block after block: ``widths[i]`` is unit i's channel count."""
        return [u for block in self.blocks for u in block.units()]

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """Pool and classify the last block's output: (B, C, H, W) -> (B, classes)."""
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.head(x)
