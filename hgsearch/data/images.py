"""Finding and decoding image files (TinyImageNet, imagefolder) into uint8 (N, 3, S, S) arrays.

Resizing: the shorter side is scaled to S (bilinear with antialiasing), then the centre S x S
square is cropped, so the aspect ratio is kept and a non-square image loses its edges. Images
already S x S are not resampled. Every image is converted to RGB (grayscale replicated, alpha
dropped) after applying its EXIF orientation.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from hgsearch.data.cache import cached_images
from hgsearch.errors import UserError


def image_extensions() -> set[str]:
    """Lower-case file extensions Pillow can open (".jpeg", ".png", ...)."""
    Image.init()
    return {ext.lower() for ext in Image.registered_extensions()}


def list_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder`` (by extension, case-insensitive), sorted by name.

    Hidden files and files of other extensions (notes, thumbnails databases) are skipped.
    """
    exts = image_extensions()
    return sorted(p for p in folder.iterdir()
                  if p.suffix.lower() in exts and not p.name.startswith(".") and p.is_file())


def decode_images(files: Sequence[Path], *, size: int) -> np.ndarray:
    """Decode ``files`` to (N, 3, size, size) uint8; UserError naming the first unreadable file.

    Pillow releases the GIL while it decodes and resamples, so a thread pool uses every core.
    """
    out = np.empty((len(files), 3, size, size), np.uint8)

    def work(start: int) -> None:
        for i in range(start, min(start + _CHUNK, len(files))):
            out[i] = decode_image(files[i], size=size).transpose(2, 0, 1)

    pool = ThreadPoolExecutor(min(8, os.cpu_count() or 1))
    try:
        for _ in pool.map(work, range(0, len(files), _CHUNK)):  # re-raises the first error
            pass
    finally:
        pool.shutdown(cancel_futures=True)  # after an error, do not decode the rest
    return out


_CHUNK = 64  # files per thread-pool task: amortizes the task overhead


def decode_image(path: Path, *, size: int) -> np.ndarray:
    """One image as (size, size, 3) uint8 RGB (shorter side to size, centre crop)."""
    try:
        with Image.open(path) as img:
            img.draft("RGB", (size, size))  # JPEG: decode at a reduced scale still >= size
            img = ImageOps.exif_transpose(img).convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        reason = "unknown format" if isinstance(err, UnidentifiedImageError) else str(err)
        raise UserError(f"{path}: not a readable image ({reason})") from None
    w, h = img.size
    if (w, h) != (size, size):
        scale = size / min(w, h)
        new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
        img = img.resize((new_w, new_h), Image.BILINEAR)
        left, top = (new_w - size) // 2, (new_h - size) // 2
        img = img.crop((left, top, left + size, top + size))
    return np.asarray(img)


def decoded_split(files: Sequence[Path], labels: Sequence[int], *, size: int, cache_dir: Path,
                  stem: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (from the cache, else decoded and cached) and labels of one split, as tensors."""
    x = cached_images(cache_dir, stem, files, labels, size=size,
                      decode=lambda: decode_images(files, size=size))
    return torch.from_numpy(x), torch.tensor(labels, dtype=torch.int64)
