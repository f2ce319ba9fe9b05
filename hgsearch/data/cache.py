"""Decoded images on disk, so that a folder of JPEGs is decoded once, not once per trial.

A cache entry is one uncompressed ``.npy`` (uint8 (N, 3, S, S)) named after a hash of everything
that determines its content: the source files' paths, sizes and mtimes, their labels, the decoded
size and the transform (the resize before the centre crop). Any changed, added or removed file
gives a new name, so a stale entry is never read. Entries are written under a temporary name and
renamed (atomic on POSIX), so two trials building the same entry at once each write a complete
file and one of them wins.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from hgsearch.fileio import atomic_path

# v2: torchvision's Resize + CenterCrop rounding, imagefolder resized to S / 0.875 (images.py).
FORMAT = "hgsearch-images-v2"  # bump when decoding changes, so old entries are not reused


def cache_root(cache_dir: str) -> Path:
    """``cache_dir``, else $HGSEARCH_CACHE, else ~/.cache/hgsearch."""
    chosen = cache_dir or os.environ.get("HGSEARCH_CACHE") or "~/.cache/hgsearch"
    return Path(chosen).expanduser()


def entry_stem(dataset: str, root: Path, split: str, size: int) -> str:
    """The family name of a dataset folder's cache entries for one split and size."""
    where = hashlib.sha256(str(root).encode()).hexdigest()[:12]
    return f"{dataset}-{where}-{split}-{size}px"


def source_key(files: Sequence[Path], labels: Sequence[int], *, size: int,
               transform: str = "") -> str:
    """Hash of the files' paths (absolute: callers resolve their root), sizes, mtimes and labels,
    the decoded size and the ``transform`` that decodes them (its name)."""
    h = hashlib.sha256(f"{FORMAT}\n{size}\n{transform}\n".encode())
    for path, label in zip(files, labels):
        st = path.stat()
        h.update(f"{path}\t{st.st_size}\t{st.st_mtime_ns}\t{label}\n".encode())
    return h.hexdigest()[:32]


def cached_images(cache_dir: Path, stem: str, files: Sequence[Path], labels: Sequence[int], *,
                  size: int, decode: Callable[[], np.ndarray], transform: str = "") -> np.ndarray:
    """The decoded images of ``files``: from the cache when an entry matches, else ``decode()``.

    ``stem`` names the entry's family (dataset, folder, split); when a new entry is written, older
    entries of the same family are removed, so edits to a dataset do not pile up copies.
    """
    path = cache_dir / f"{stem}-{source_key(files, labels, size=size, transform=transform)}.npy"
    x = _read(path, n=len(files), size=size)
    if x is None:
        x = decode()
        _write(path, x)
    return x


def _read(path: Path, *, n: int, size: int) -> np.ndarray | None:
    try:
        x = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError):  # none yet, or damaged: decode again, overwrite
        return None
    return x if x.shape == (n, 3, size, size) and x.dtype == np.uint8 else None


def _write(path: Path, x: np.ndarray) -> None:
    try:
        # through an open file: np.save given a path would append .npy to the temporary name
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.save(f, x, allow_pickle=False)
    except OSError as err:  # the data is fine, only the next trial will decode again
        warnings.warn(f"cache_dir={path.parent}: cannot write the image cache ({err}); "
                      "images will be decoded again next time", stacklevel=3)
        return
    family = path.name[:path.name.rindex("-") + 1]
    for old in path.parent.glob(f"{family}*.npy"):
        if old != path:
            try:
                old.unlink()  # a reader that has it open keeps its copy (POSIX)
            except OSError:
                pass
