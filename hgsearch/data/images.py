"""Finding and decoding image files (TinyImageNet, imagefolder) into uint8 (N, 3, S, S) arrays.

Resizing (torchvision's evaluation recipe, ``Resize(R)`` then ``CenterCrop(S)``): the shorter side
is scaled to R (bilinear, antialiased as Pillow always is; the longer side to
int(R x long / short)), then the centre S x S square is cropped (offset round((side - S) / 2)), so
the aspect ratio is kept and a non-square image loses its edges. An image already of the target
size is not resampled. imagefolder uses R = round(S / 0.875) (torchvision's reference: 256 for
224, ``EVAL_CROP_FRACTION``), the same transform as the streaming path's evaluation
(``streaming.py``); TinyImageNet uses R = S (its images are S x S already). Every image is
converted to RGB (grayscale replicated, alpha dropped) after applying its EXIF orientation; a JPEG
is decoded at the smallest DCT scale that keeps its shorter side >= R (Pillow's draft mode).
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


EVAL_CROP_FRACTION = 0.875   # the centre crop's share of the resized side (224 of 256)


def eval_resize(size: int, dataset: str) -> int:
    """R, the shorter side an image of ``dataset`` is scaled to before its centre ``size`` crop."""
    return round(size / EVAL_CROP_FRACTION) if dataset == "imagefolder" else size


def resize_rule(size: int, r: int) -> str:
    """Shorter side to ``r``, then the centre ``size`` crop, in words (a model's preprocessing)."""
    return (f"shorter side scaled to {r} (bilinear, antialiased; longer side int({r} x long / "
            f"short)), centre {size} x {size} square cropped; an image already that size is not "
            "resampled; EXIF orientation applied, converted to RGB")


def decode_images(files: Sequence[Path], *, size: int, resize: int | None = None) -> np.ndarray:
    """Decode ``files`` to (N, 3, size, size) uint8, shorter side to ``resize`` (default
    ``size``) then the centre crop; UserError naming the first unreadable file.

    Pillow releases the GIL while it decodes and resamples, so a thread pool uses every core.
    """
    out = np.empty((len(files), 3, size, size), np.uint8)

    def work(start: int) -> None:
        for i in range(start, min(start + _CHUNK, len(files))):
            out[i] = decode_image(files[i], size=size, resize=resize).transpose(2, 0, 1)

    pool = ThreadPoolExecutor(min(8, os.cpu_count() or 1))
    try:
        for _ in pool.map(work, range(0, len(files), _CHUNK)):  # re-raises the first error
            pass
    finally:
        pool.shutdown(cancel_futures=True)  # after an error, do not decode the rest
    return out


_CHUNK = 64  # files per thread-pool task: amortizes the task overhead


def open_rgb(path: Path, *, draft: int | None = None) -> Image.Image:
    """``path`` as an RGB image, EXIF orientation applied; UserError when it is unreadable.

    ``draft``: a JPEG is decoded at the smallest DCT scale keeping both sides >= draft.
    """
    try:
        with Image.open(path) as img:
            if draft:
                img.draft("RGB", (draft, draft))
            return ImageOps.exif_transpose(img).convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        reason = "unknown format" if isinstance(err, UnidentifiedImageError) else str(err)
        raise UserError(f"{path}: not a readable image ({reason})") from None


def decode_image(path: Path, *, size: int, resize: int | None = None) -> np.ndarray:
    """One image as (size, size, 3) uint8 RGB: shorter side to ``resize`` (default ``size``),
    then the centre ``size`` x ``size`` crop (torchvision's Resize + CenterCrop)."""
    resize = size if resize is None else resize
    return np.asarray(resize_centre_crop(open_rgb(path, draft=resize), size=size, resize=resize))


def resize_centre_crop(img: Image.Image, *, size: int, resize: int) -> Image.Image:
    """torchvision's ``Resize(resize)`` then ``CenterCrop(size)`` on a PIL image (bilinear)."""
    w, h = img.size
    short, long = min(w, h), max(w, h)
    new_long = int(resize * long / short)
    new = (resize, new_long) if w <= h else (new_long, resize)
    if new != (w, h):
        img = img.resize(new, Image.BILINEAR)
    w, h = img.size
    top, left = round((h - size) / 2), round((w - size) / 2)
    if (w, h) != (size, size):
        img = img.crop((left, top, left + size, top + size))
    return img


def decoded_split(files: Sequence[Path], labels: Sequence[int], *, size: int, cache_dir: Path,
                  stem: str, resize: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (from the cache, else decoded and cached) and labels of one split, as tensors."""
    resize = size if resize is None else resize
    x = cached_images(cache_dir, stem, files, labels, size=size, transform=f"resize{resize}",
                      decode=lambda: decode_images(files, size=size, resize=resize))
    return torch.from_numpy(x), torch.tensor(labels, dtype=torch.int64)
