"""Residual networks whose every prunable inner width is a number you choose.

``build_model(arch, num_classes, widths)`` builds the CIFAR ResNets and ``resnet18_small``
(cifar.py, 32-64 px inputs) or torchvision's ResNets under torchvision's parameter names
(torchvision_resnet.py). ``widths[i]`` is the width of prunable unit i (blocks/): one per
BasicBlock, two per Bottleneck. A pruned network is rebuilt from that list.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from hgsearch.errors import UserError
from hgsearch.fileio import atomic_path
from hgsearch.models import cifar, torchvision_resnet
from hgsearch.models.base import PrunableNet
from hgsearch.models.blocks import Unit
from hgsearch.models.cifar import ARCH_SPECS, ResNet
from hgsearch.models.torchvision_resnet import TORCHVISION_SPECS

__all__ = ["ARCHS", "ARCH_SPECS", "MODEL_FORMAT", "PrunableNet", "ResNet", "Unit",
           "build_model", "default_widths", "load_model", "save_model"]

MODEL_FORMAT = "hgsearch-model-v2"
# v1 files predate torchvision's ResNets: their "resnet18" is today's "resnet18_small".
_V1_RENAMED = {"resnet18": "resnet18_small"}
ARCHS = (*ARCH_SPECS, *TORCHVISION_SPECS)


def default_widths(arch: str) -> list[int]:
    """Each prunable unit's unpruned width."""
    _check_arch(arch)
    if arch in TORCHVISION_SPECS:
        return torchvision_resnet.default_widths(arch)
    return cifar.default_widths(arch)


def build_model(arch: str, num_classes: int, widths: list[int] | None = None) -> PrunableNet:
    """A network ``arch`` for ``num_classes`` classes; ``widths`` gives each unit's width."""
    full = default_widths(arch)
    if widths is None:
        widths = full
    widths = [int(w) for w in widths]
    if len(widths) != len(full):
        per_block = "" if arch not in TORCHVISION_SPECS or not TORCHVISION_SPECS[arch].bottleneck \
            else " (2 per Bottleneck)"
        raise UserError(f"widths: {arch} has {len(full)} blocks{per_block}, got {len(widths)} "
                        "widths")
    if any(w < 1 for w in widths):
        raise UserError(f"widths: every block needs at least 1 channel, got {widths}")
    if num_classes < 1:
        raise UserError(f"num_classes={num_classes}: must be at least 1")
    if arch in TORCHVISION_SPECS:
        return torchvision_resnet.TorchvisionResNet(arch, num_classes, widths)
    return ResNet(arch, num_classes, widths)


def _check_arch(arch: str) -> None:
    if arch not in ARCHS:
        raise UserError(f"arch={arch!r}: allowed values are {', '.join(ARCHS)}")


def save_model(model: PrunableNet, path: str | Path, *,
               extra: dict[str, Any] | None = None) -> None:
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


def read_model_file(path: str | Path, *, map_location: str | torch.device = "cpu"
                    ) -> dict[str, Any]:
    """The payload of a ``save_model`` file (v1 or v2), its arch in today's names."""
    path = Path(path)
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise UserError(f"{path}: no such model file") from None
    except Exception as err:  # a truncated or foreign file: say which file, not a traceback
        kind = err.__class__.__name__
        raise UserError(f"{path}: not a readable hgsearch model ({kind})") from None
    return model_payload(payload, path)


def is_model_payload(payload: Any) -> bool:
    return isinstance(payload, dict) and str(payload.get("format", "")).startswith(
        "hgsearch-model-")


def model_payload(payload: Any, path: str | Path) -> dict[str, Any]:
    """``payload`` checked as a model file's, v1 arch names mapped to today's."""
    if not is_model_payload(payload) or payload["format"] not in ("hgsearch-model-v1",
                                                                  MODEL_FORMAT):
        raise UserError(f"{path}: not an hgsearch model file (format {MODEL_FORMAT!r} expected)")
    arch = payload.get("arch")
    if payload["format"] == "hgsearch-model-v1":
        arch = _V1_RENAMED.get(arch, arch)
    if arch not in ARCHS:
        raise UserError(f"{path}: its arch {arch!r} is unknown to this hgsearch (it knows "
                        f"{', '.join(ARCHS)}); load it with the hgsearch that wrote it")
    return {**payload, "arch": arch}


def load_model(path: str | Path, *, map_location: str | torch.device = "cpu") -> PrunableNet:
    """Rebuild a model written by ``save_model`` without its trial's config (weights_only load)."""
    payload = read_model_file(path, map_location=map_location)
    model = build_model(payload["arch"], payload["num_classes"], payload["widths"])
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model
