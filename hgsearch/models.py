"""ResNets whose every residual block's inner width is a number you choose.

``build_model(arch, num_classes, widths)`` builds CIFAR ResNets (He et al. 2016, section 4.2:
3 stages of 16/32/64 channels, BasicBlocks) and a ResNet-18 with a stem for 32-64 px inputs.
``widths[i]`` is the inner width of block i (the output channels of its first conv, read by its
second conv): the channels that filter pruning removes. A pruned network is rebuilt from that list.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from hgsearch.errors import UserError
from hgsearch.fileio import atomic_path

MODEL_FORMAT = "hgsearch-model-v1"


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
    "resnet18": ArchSpec(64, (64, 128, 256, 512), (2, 2, 2, 2)),
}


class BasicBlock(nn.Module):
    """conv3x3 -> BN -> ReLU -> conv3x3 -> BN, plus the shortcut, then ReLU."""

    def __init__(self, in_ch: int, width: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, width, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            # 1x1 projection ("option B"); the regularizer leaves it alone (METHOD.md part 1).
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch))

    def inner(self, x: torch.Tensor) -> torch.Tensor:
        """The prunable channels: post-activation output of the first conv, (B, width, H, W)."""
        return F.relu(self.bn1(self.conv1(x)))

    def finish(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """The rest of the block, given its input x and inner activation h."""
        return F.relu(self.bn2(self.conv2(h)) + self.shortcut(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.finish(x, self.inner(x))


class ResNet(nn.Module):
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

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """Pool and classify the last block's output: (B, C, H, W) -> (B, classes)."""
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.head(x)


def default_widths(arch: str) -> list[int]:
    """Each block's unpruned inner width (its stage's width)."""
    spec = _spec(arch)
    return [w for w, n in zip(spec.stage_widths, spec.blocks_per_stage) for _ in range(n)]


def build_model(arch: str, num_classes: int, widths: list[int] | None = None) -> ResNet:
    """A ResNet ``arch`` for ``num_classes`` classes; ``widths`` gives each block's inner width."""
    full = default_widths(arch)
    if widths is None:
        widths = full
    widths = [int(w) for w in widths]
    if len(widths) != len(full):
        raise UserError(f"widths: {arch} has {len(full)} blocks, got {len(widths)} widths")
    if any(w < 1 for w in widths):
        raise UserError(f"widths: every block needs at least 1 channel, got {widths}")
    if num_classes < 1:
        raise UserError(f"num_classes={num_classes}: must be at least 1")
    return ResNet(arch, num_classes, widths)


def _spec(arch: str) -> ArchSpec:
    if arch not in ARCH_SPECS:
        raise UserError(f"arch={arch!r}: allowed values are {', '.join(ARCH_SPECS)}")
    return ARCH_SPECS[arch]


def save_model(model: ResNet, path: str | Path, *, extra: dict[str, Any] | None = None) -> None:
    """Write a state_dict plus its architecture (arch, widths, classes), atomically.

    The file holds only tensors, strings, numbers and lists, so ``torch.load(weights_only=True)``
    reads it back without executing code.
    """
    payload = {
        "format": MODEL_FORMAT,
        "arch": model.arch,
        "num_classes": model.num_classes,
        "widths": list(model.widths),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "extra": dict(extra or {}),
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def load_model(path: str | Path, *, map_location: str | torch.device = "cpu") -> ResNet:
    """Rebuild a model written by ``save_model`` without its trial's config (weights_only load)."""
    path = Path(path)
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise UserError(f"{path}: no such model file") from None
    except Exception as err:  # a truncated or foreign file: say which file, not a traceback
        kind = err.__class__.__name__
        raise UserError(f"{path}: not a readable hgsearch model ({kind})") from None
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FORMAT:
        raise UserError(f"{path}: not an hgsearch model file (format {MODEL_FORMAT!r} expected)")
    model = build_model(payload["arch"], payload["num_classes"], payload["widths"])
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model
