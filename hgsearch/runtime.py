"""Where and how a trial computes: device, autocast precision, memory format (trial keys
``device``, ``precision``, ``channels_last``).

bf16 autocast on a CPU is fast only where the CPU computes bf16 itself (AVX512-BF16 or AMX):
elsewhere it is emulated, some 11x slower than fp32 on an AVX2 CPU (a ResNet-20 step of 128
images on one core of a 2-core AMD EPYC Zen 3 VM: 12.6 s against 1.08 s), where a Zen 4 core
with AVX512-BF16 trains it at twice the fp32 speed. ``precision=bf16_if_native`` takes bf16
only where it is native; plain ``bf16`` on a CPU without it still runs in bf16, with a warning.
"""

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

    @property
    def numerics(self) -> str:
        """"fp32" or "bf16" (autocast), with "+nhwc" for channels_last: a row's ``numerics``."""
        dtype = "bf16" if self.autocast_dtype == torch.bfloat16 else "fp32"   # the only two
        return dtype + ("+nhwc" if self.channels_last else "")

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def prepare(self, model: nn.Module) -> nn.Module:
        model = model.to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        return model


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX tiles), as PyTorch reads
    its CPUID."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def emulated_bf16_warning(runtime: Runtime) -> str | None:
    """A line for the trial's log when ``runtime`` asks bf16 of a CPU without it, else None."""
    if runtime.device.type != "cpu" or runtime.autocast_dtype != torch.bfloat16:
        return None
    if cpu_has_native_bf16():
        return None
    return ("warning: precision=bf16 on a CPU without AVX512-BF16 or AMX: bf16 is emulated, "
            "many times slower than fp32 here; precision=bf16_if_native would use fp32")


def resolve_runtime(device: str = "auto", precision: str = "auto",
                    channels_last: str = "auto") -> Runtime:
    """Turn the trial keys device / precision / channels_last into a Runtime: ``auto`` precision
    is bf16 on CUDA and fp32 on a CPU, ``bf16_if_native`` bf16 on CUDA and on a CPU with native
    bf16; ``auto`` channels_last is on wherever bf16 autocast runs or the device is CUDA."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UserError("device=cuda: no CUDA device is visible (CUDA_VISIBLE_DEVICES, driver); "
                        "use device=auto or device=cpu")
    dev = torch.device(device)
    on_gpu = dev.type == "cuda"
    bf16 = (precision == "bf16" or (precision == "auto" and on_gpu)
            or (precision == "bf16_if_native" and (on_gpu or cpu_has_native_bf16())))
    # NHWC is what oneDNN's bf16 kernels want: with bf16 on a Zen 4 core 2.5x the fp32 images/s
    # where bf16 alone gives 2.0x.
    last = channels_last == "on" or (channels_last == "auto" and (on_gpu or bf16))
    return Runtime(dev, torch.bfloat16 if bf16 else None, last)
