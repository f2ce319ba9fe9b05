"""One split living on the device as uint8, augmented and normalized there in whole batches.

Like airbench: no per-sample DataLoader. A training batch is one gather from the split (random
crop with zero padding and random horizontal flip folded into the gather's indices), one cast
and one multiply-add for the normalization.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor


class DeviceData:
    """A split's images (N, 3, H, W) uint8 and labels (N,) int64 on ``device``, with mean/std.

    Random numbers are drawn from the caller's ``generator`` on that generator's device (a CPU
    generator works for a CUDA split: indices are drawn on the CPU, then moved), so a seed gives
    the same batches on any device.
    """

    def __init__(self, x_uint8: Tensor, y: Tensor, *, mean: tuple[float, float, float],
                 std: tuple[float, float, float], device: str | torch.device,
                 channels_last: bool = False, dtype: torch.dtype = torch.float32) -> None:
        if x_uint8.dtype != torch.uint8 or x_uint8.dim() != 4 or x_uint8.shape[1] != 3:
            raise ValueError(f"x_uint8: expected (N, 3, H, W) uint8, got {tuple(x_uint8.shape)} "
                             f"{x_uint8.dtype}")
        if y.shape != (len(x_uint8),):
            raise ValueError(f"y: expected ({len(x_uint8)},) labels, got {tuple(y.shape)}")
        self.device = torch.device(device)
        self.x = x_uint8.to(self.device).contiguous()
        self.y = y.to(self.device, torch.int64)
        self.channels_last = channels_last
        self.dtype = dtype
        self.scale, self.shift = affine(mean, std, self.device)

    def __len__(self) -> int:
        return len(self.y)

    def normalize(self, x_uint8: Tensor) -> Tensor:
        """uint8 (B, 3, H, W) on the device -> normalized ``dtype`` in the chosen memory format."""
        return normalize(x_uint8, self.scale, self.shift, dtype=self.dtype,
                         channels_last=self.channels_last)

    def train_batches(self, batch_size: int, *, generator: torch.Generator, pad: int = 4,
                      flip: bool = True, drop_last: bool = True) -> Iterator[tuple[Tensor, Tensor]]:
        """One epoch in a fresh random order: random crop (zero padding ``pad`` px), random flip.

        With ``drop_last`` the final partial batch is skipped (a split smaller than
        ``batch_size`` then yields nothing).
        """
        n = len(self)
        # All of the epoch's random numbers up front, in a fixed order, on the generator's device.
        order = torch.randperm(n, generator=generator, device=generator.device).to(self.device)
        offsets = torch.randint(0, 2 * pad + 1, (n, 2), generator=generator,
                                device=generator.device).to(self.device)
        flips = torch.zeros(n, dtype=torch.bool, device=self.device)
        if flip:
            flips = (torch.rand(n, generator=generator, device=generator.device) < 0.5
                     ).to(self.device)
        stop = n - n % batch_size if drop_last else n
        for start in range(0, stop, batch_size):
            idx = order[start:start + batch_size]
            crop = _crop_flip(self.x[idx], offsets[start:start + batch_size],
                              flips[start:start + batch_size], pad=pad)
            yield self.normalize(crop), self.y[idx]

    def eval_batches(self, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        """The whole split in order, normalized, no augmentation; the last batch may be short."""
        for start in range(0, len(self), batch_size):
            yield (self.normalize(self.x[start:start + batch_size]),
                   self.y[start:start + batch_size])

    def sample(self, n: int, *, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """``n`` distinct random images, normalized, no augmentation (all of them if n >= N)."""
        idx = torch.randperm(len(self), generator=generator, device=generator.device)[:n]
        idx = idx.to(self.device)
        return self.normalize(self.x[idx]), self.y[idx]


def affine(mean: tuple[float, float, float], std: tuple[float, float, float],
           device: torch.device) -> tuple[Tensor, Tensor]:
    """(scale, shift), each (1, 3, 1, 1) float32: (x / 255 - mean) / std == x * scale + shift."""
    std_t = torch.tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    mean_t = torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    return 1 / (255 * std_t), -mean_t / std_t


def normalize(x_uint8: Tensor, scale: Tensor, shift: Tensor, *, dtype: torch.dtype,
              channels_last: bool) -> Tensor:
    """uint8 (B, 3, H, W) -> x * scale + shift as ``dtype`` (both data paths: the same values)."""
    x = torch.addcmul(shift, x_uint8.float(), scale).to(dtype)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def _crop_flip(x: Tensor, offsets: Tensor, flips: Tensor, *, pad: int) -> Tensor:
    """Per-image crop of the zero-padded batch at (dy, dx) = offsets, mirrored where flips.

    One gather for the whole batch: image i's output pixel (r, c) reads padded pixel
    (dy_i + r, dx_i + c), or (dy_i + r, dx_i + W - 1 - c) when flipped.
    """
    b, ch, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad)) if pad else x  # (B, C, H + 2p, W + 2p), zeros
    r = torch.arange(h, device=x.device)
    c = torch.arange(w, device=x.device)
    rows = offsets[:, 0:1] + r                                         # (B, H)
    cols = offsets[:, 1:2] + torch.where(flips[:, None], w - 1 - c, c)  # (B, W)
    wp = w + 2 * pad
    flat = (rows[:, :, None] * wp + cols[:, None, :]).view(b, 1, h * w).expand(b, ch, h * w)
    return padded.flatten(2).gather(2, flat).view(b, ch, h, w)
