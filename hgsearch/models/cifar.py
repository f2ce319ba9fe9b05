"""ResNets for 32-64 px inputs: the CIFAR ResNets (He et al. 2016, section 4.2: 3 stages of
16/32/64 channels) and ``resnet18_small``, a ResNet-18 with a 3x3 stem and no max-pool (the
common CIFAR / TinyImageNet variant; torchvision's ``resnet18`` is in torchvision_resnet.py).
All BasicBlocks, one prunable width per block.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from hgsearch.models.base import PrunableNet
from hgsearch.models.blocks.basic import BasicBlock


@dataclass(frozen=True)
class ArchSpec:
    stem_width: int
    stage_widths: tuple[int, ...]   # residual-path channels of each stage
    blocks_per_stage: tuple[int, ...]


def _cifar(depth: int) -> ArchSpec:
    n = (depth - 2) // 6
    return ArchSpec(16, (16, 32, 64), (n, n, n))


ARCH_SPECS: dict[str, ArchSpec] = {
    "resnet20": _cifar(20),
    "resnet32": _cifar(32),
    "resnet44": _cifar(44),
    "resnet56": _cifar(56),
    "resnet110": _cifar(110),
    "resnet18_small": ArchSpec(64, (64, 128, 256, 512), (2, 2, 2, 2)),
}


def default_widths(arch: str) -> list[int]:
    """Each block's unpruned inner width (its stage's width)."""
    spec = ARCH_SPECS[arch]
    return [w for w, n in zip(spec.stage_widths, spec.blocks_per_stage) for _ in range(n)]


class ResNet(PrunableNet):
    """Stem, a flat list of BasicBlocks, global average pooling, a linear classifier."""

    def __init__(self, arch: str, num_classes: int, widths: list[int]) -> None:
        super().__init__()
        spec = ARCH_SPECS[arch]
        self.arch = arch
        self.num_classes = num_classes
        self.widths = list(widths)
        self.stem = nn.Sequential(
            nn.Conv2d(3, spec.stem_width, 3, 1, 1, bias=False),
            nn.BatchNorm2d(spec.stem_width), nn.ReLU(inplace=True))
        blocks, in_ch, i = [], spec.stem_width, 0
        for stage, (out_ch, n) in enumerate(zip(spec.stage_widths, spec.blocks_per_stage)):
            for b in range(n):
                stride = 2 if stage > 0 and b == 0 else 1
                blocks.append(BasicBlock(in_ch, widths[i], out_ch, stride))
                in_ch, i = out_ch, i + 1
        self.blocks = nn.ModuleList(blocks)
        self.fc = nn.Linear(in_ch, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

