"""Where and how a trial computes: device, autocast precision, memory format (trial keys
``device``, ``precision``, ``channels_last``)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from hgsearch.errors import UserError


@dataclass(frozen=True)
class Runtime:
    """Where and how tensors are computed: device, autocast dtype, memory format."""

    device: torch.device
    autocast_dtype: torch.dtype | None = None   # bf16 on CUDA, None (fp32) on CPU
    channels_last: bool = False

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def prepare(self, model: nn.Module) -> nn.Module:
        model = model.to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        return model


def resolve_runtime(device: str = "auto", precision: str = "auto",
                    channels_last: str = "auto") -> Runtime:
    """Turn the trial keys device / precision / channels_last into a Runtime."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("device=cuda: no CUDA device is visible (CUDA_VISIBLE_DEVICES, driver); "
                        "use device=auto or device=cpu")
    dev = torch.device(device)
    on_gpu = dev.type == "cuda"
    bf16 = precision == "bf16" or (precision == "auto" and on_gpu)
    last = channels_last == "on" or (channels_last == "auto" and on_gpu)
    return Runtime(dev, torch.bfloat16 if bf16 else None, last)
