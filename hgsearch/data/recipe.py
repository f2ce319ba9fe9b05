"""torchvision's ImageNet training recipe on one image file: RandomResizedCrop + horizontal flip.

The same draws as torchvision's ``RandomResizedCrop(size)`` then ``RandomHorizontalFlip()``
(scale (0.08, 1), ratio (3/4, 4/3), bilinear), taken from a ``torch.Generator`` seeded per image
instead of the process's global generator: an image's crop depends on its seed alone, not on
which worker process decodes it or what that process decoded before.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from hgsearch.data.images import open_rgb

SCALE = (0.08, 1.0)          # share of the image's area a crop covers
RATIO = (3 / 4, 4 / 3)       # aspect ratios (width / height) of a crop


def crop_box(width: int, height: int, generator: torch.Generator) -> tuple[int, int, int, int]:
    """(top, left, h, w) of a random crop: torchvision's ``RandomResizedCrop.get_params``."""
    area = height * width
    log_ratio = torch.log(torch.tensor(RATIO))
    for _ in range(10):
        target = area * torch.empty(1).uniform_(SCALE[0], SCALE[1], generator=generator).item()
        aspect = torch.exp(torch.empty(1).uniform_(float(log_ratio[0]), float(log_ratio[1]),
                                                   generator=generator)).item()
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,), generator=generator).item())
            left = int(torch.randint(0, width - w + 1, (1,), generator=generator).item())
            return top, left, h, w
    # ten misses: the central crop of the extreme ratio nearest the image's own
    in_ratio = width / height
    if in_ratio < min(RATIO):
        w, h = width, int(round(width / min(RATIO)))
    elif in_ratio > max(RATIO):
        w, h = int(round(height * max(RATIO))), height
    else:
        w, h = width, height
    return (height - h) // 2, (width - w) // 2, h, w


def train_image(path: Path, *, size: int, seed: int) -> np.ndarray:
    """``path`` augmented for training, (size, size, 3) uint8: random resized crop, then a
    horizontal flip with probability 1/2, both drawn from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    img = open_rgb(path)
    top, left, h, w = crop_box(img.width, img.height, generator)
    img = img.crop((left, top, left + w, top + h))
    if img.size != (size, size):
        img = img.resize((size, size), Image.BILINEAR)
    if torch.rand(1, generator=generator).item() < 0.5:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    return np.asarray(img)

