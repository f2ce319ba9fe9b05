"""torchvision's ResNets (resnet18 ... resnet152, wide_resnet50_2) with per-unit widths.

Module and parameter names are torchvision's (conv1, bn1, layer1.0.conv1, layer1.0.downsample.0,
fc, ...), so ``model.load_state_dict(torchvision_model.state_dict(), strict=True)`` works for the
full widths. The stem is torchvision's: 7x7 stride-2 conv, BN, ReLU, 3x3 stride-2 max-pool; the
network downsamples by 32, so it takes images of at least 32 px
(``config.image_size_problem`` refuses smaller ones).

resnext50_32x4d is left out: its 3x3 convs are grouped (32 groups), which the fast scorer and the
per-channel surgery here do not handle (see docs/guides/own-network.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from hgsearch.models.base import PrunableNet
from hgsearch.models.blocks import Block
from hgsearch.models.blocks.basic import BasicBlock
from hgsearch.models.blocks.bottleneck import Bottleneck


# Stride 32 end to end: at 32 px the last stage sees 1 x 1 maps. Smaller images would reach the
# last stages as maps made of zero padding only.
@dataclass(frozen=True)
class TorchvisionSpec:
    bottleneck: bool
    layers: tuple[int, int, int, int]
    width_per_group: int = 64   # a Bottleneck's inner width per 64 planes (128: wide_resnet)


TORCHVISION_SPECS: dict[str, TorchvisionSpec] = {
    "resnet18": TorchvisionSpec(False, (2, 2, 2, 2)),
    "resnet34": TorchvisionSpec(False, (3, 4, 6, 3)),
    "resnet50": TorchvisionSpec(True, (3, 4, 6, 3)),
    "resnet101": TorchvisionSpec(True, (3, 4, 23, 3)),
    "resnet152": TorchvisionSpec(True, (3, 8, 36, 3)),
    "wide_resnet50_2": TorchvisionSpec(True, (3, 4, 6, 3), width_per_group=128),
}
_PLANES = (64, 128, 256, 512)


def default_widths(arch: str) -> list[int]:
    """The unpruned width of every unit: a BasicBlock's planes, a Bottleneck's two inner widths."""
    spec = TORCHVISION_SPECS[arch]
    out: list[int] = []
    for planes, n in zip(_PLANES, spec.layers):
        inner = planes * spec.width_per_group // 64
        out += [inner, inner] * n if spec.bottleneck else [planes] * n
    return out


class TorchvisionResNet(PrunableNet):
    """torchvision.models.ResNet's structure and names; block i's units take the next widths."""

    def __init__(self, arch: str, num_classes: int, widths: list[int]) -> None:
        super().__init__()
        spec = TORCHVISION_SPECS[arch]
        self.arch, self.num_classes, self.widths = arch, num_classes, list(widths)
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        expansion = 4 if spec.bottleneck else 1
        in_ch, i = 64, 0
        for stage, (planes, n) in enumerate(zip(_PLANES, spec.layers), start=1):
            blocks: list[nn.Module] = []
            for b in range(n):
                stride = 2 if stage > 1 and b == 0 else 1
                out_ch = planes * expansion
                if spec.bottleneck:
                    blocks.append(Bottleneck(in_ch, (widths[i], widths[i + 1]), out_ch, stride))
                    i += 2
                else:
                    blocks.append(BasicBlock(in_ch, widths[i], out_ch, stride,
                                             shortcut_name="downsample"))
                    i += 1
                in_ch = out_ch
            self.add_module(f"layer{stage}", nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(in_ch, num_classes)
        # torchvision's initialization (zero_init_residual=False).
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    @property
    def blocks(self) -> list[Block]:
        return [block for stage in (self.layer1, self.layer2, self.layer3, self.layer4)
                for block in stage]

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))
