"""Images larger than memory: decoded per batch from their files by worker processes.

The streaming path of imagefolder (``budget.py`` says when it is taken). Training batches follow
torchvision's ImageNet reference recipe (``recipe.py``: RandomResizedCrop + flip); evaluation
batches are the in-memory path's decoding (``images.decode_image``: shorter side to
round(S / 0.875), centre crop), so both paths evaluate on the same tensors. A split offers what
``DeviceData`` offers (``len``, ``train_batches``, ``eval_batches``, ``sample``), so the trial
does not know which path runs.

One ``torch.utils.data.DataLoader`` per trial decodes every split: ``data_workers`` persistent
worker processes, pinned memory on CUDA, ``PREFETCH`` batches per worker in flight. The main
process plans each pass (which files, in which order, with which seeds) and the workers only
decode, so a seed gives the same batches whatever the number of workers: each training epoch
draws one seed from the trial's generator, which orders the epoch and gives every image its own
seed for its crop and flip.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from hgsearch.data.cache import source_key
from hgsearch.data.device import affine, normalize
from hgsearch.data.images import decode_image
from hgsearch.data.recipe import train_image
from hgsearch.data.splits import channel_histogram, stats_of_histogram
from hgsearch.errors import UserError

PREFETCH = 4           # batches each worker decodes ahead
MAX_AUTO_WORKERS = 16
STATS_IMAGES = 2000    # training images the channel statistics are computed from, at most
EVAL = -1              # the seed that asks for the evaluation transform

Key = tuple[int, int]  # (image index, seed); seed EVAL: no augmentation


def auto_workers(requested: int) -> int:
    """``data_workers``, or for 0 the CPU cores this process may run on, at most 16."""
    if requested:
        return requested
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:   # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_AUTO_WORKERS))


class ImageFiles(Dataset):
    """Files and labels; item (i, seed) is image i (3, S, S) uint8 and its label, augmented with
    ``seed`` (``EVAL``: the evaluation transform). An unreadable file gives its error line in
    place of the image, raised as a UserError by the main process (``Loader``)."""

    def __init__(self, files: Sequence[Path], labels: Sequence[int], *, size: int,
                 resize: int) -> None:
        self.files, self.labels = list(files), list(labels)
        self.size, self.resize = size, resize

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key: Key) -> tuple[Tensor | str, int]:
        i, seed = key
        try:
            if seed == EVAL:
                img = decode_image(self.files[i], size=self.size, resize=self.resize)
            else:
                img = train_image(self.files[i], size=self.size, seed=seed)
        except UserError as err:
            return str(err), self.labels[i]
        return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))), self.labels[i]


def collate(items: list[tuple[Tensor | str, int]]) -> tuple[Tensor, Tensor] | str:
    """A batch (B, 3, S, S) uint8 and (B,) int64; or the first error line among the items."""
    for x, _ in items:
        if isinstance(x, str):
            return x
    return torch.stack([x for x, _ in items]), torch.tensor([y for _, y in items])


class _Plan:
    """The DataLoader's batch sampler: the batches of the pass the main process set last."""

    def __init__(self) -> None:
        self.batches: list[list[Key]] = []

    def __iter__(self) -> Iterator[list[Key]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class Loader:
    """One DataLoader over ``ImageFiles``; ``run(batches)`` decodes a planned pass, in order."""

    def __init__(self, dataset: ImageFiles, *, workers: int, pin_memory: bool,
                 persistent: bool = True) -> None:
        self.plan = _Plan()
        self.workers = workers
        self.loader = DataLoader(
            dataset, batch_sampler=self.plan, num_workers=workers, collate_fn=collate,
            pin_memory=pin_memory, persistent_workers=persistent and workers > 0,
            prefetch_factor=PREFETCH if workers > 0 else None)
        self.running = False

    def run(self, batches: list[list[Key]]) -> Iterator[tuple[Tensor, Tensor]]:
        """The decoded batches (on the CPU), one pass at a time (passes may not overlap)."""
        if self.running:
            raise RuntimeError("a streaming pass was started before the previous one ended")
        self.running = True
        self.plan.batches = batches
        try:
            for item in self.loader:
                if isinstance(item, str):
                    raise UserError(item)
                yield item
        finally:
            self.running = False


class StreamSplit:
    """One split streamed from its files, with ``DeviceData``'s interface: batches normalized
    on ``device`` as ``DeviceData`` normalizes them."""

    def __init__(self, loader: Loader, indices: Sequence[int], labels: Tensor, *,
                 mean: tuple[float, float, float], std: tuple[float, float, float],
                 device: str | torch.device, channels_last: bool = False,
                 dtype: torch.dtype = torch.float32) -> None:
        self.loader, self.indices = loader, list(indices)
        self.device = torch.device(device)
        self.y = labels.to(self.device, torch.int64)
        self.channels_last, self.dtype = channels_last, dtype
        self.scale, self.shift = affine(mean, std, self.device)

    def __len__(self) -> int:
        return len(self.indices)

    def train_batches(self, batch_size: int, *, generator: torch.Generator,
                      drop_last: bool = True) -> Iterator[tuple[Tensor, Tensor]]:
        """One epoch in a fresh random order, each image randomly resized-cropped and flipped.

        Draws one number from ``generator``: the epoch's seed, from which the order and every
        image's seed follow.
        """
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
        epoch = torch.Generator().manual_seed(seed)
        n = len(self)
        order = torch.randperm(n, generator=epoch).tolist()
        seeds = torch.randint(0, 2**62, (n,), generator=epoch).tolist()
        stop = n - n % batch_size if drop_last else n
        keys = [(self.indices[i], s) for i, s in zip(order, seeds)][:stop]
        yield from self._pass(_chunks(keys, batch_size))

    def eval_batches(self, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        """The whole split in order, no augmentation; the last batch may be short."""
        keys = [(i, EVAL) for i in self.indices]
        yield from self._pass(_chunks(keys, batch_size))

    def sample(self, n: int, *, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """``n`` distinct random images, no augmentation: the images ``DeviceData.sample`` draws
        with the same generator state."""
        idx = torch.randperm(len(self), generator=generator, device=generator.device)[:n]
        keys = [(self.indices[i], EVAL) for i in idx.tolist()]
        per_batch = max(1, min(64, math.ceil(len(keys) / max(self.loader.workers, 1))))
        xs, ys = zip(*self._pass(_chunks(keys, per_batch)))
        return torch.cat(xs), torch.cat(ys)

    def _pass(self, batches: list[list[Key]]) -> Iterator[tuple[Tensor, Tensor]]:
        for x, y in self.loader.run(batches):
            x = x.to(self.device, non_blocking=True)
            y = y.to(self.device, non_blocking=True)
            yield normalize(x, self.scale, self.shift, dtype=self.dtype,
                            channels_last=self.channels_last), y


def _chunks(keys: list[Key], size: int) -> list[list[Key]]:
    return [keys[start:start + size] for start in range(0, len(keys), size)]


@dataclass(frozen=True, eq=False)
class StreamingData:
    """Train / validation / test as files and int64 labels (the trial's ``data`` object on the
    streaming path; ``DataSplits`` on the in-memory one). ``files`` holds train, val, test in
    this order; ``image_size`` is S, ``resize`` the evaluation's shorter side."""

    name: str
    num_classes: int
    image_size: int
    resize: int
    classes: list[str]
    files: list[Path] = field(repr=False)
    train_y: Tensor = field(repr=False)
    val_y: Tensor = field(repr=False)
    test_y: Tensor = field(repr=False)
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    workers: int = 1

    def labels(self) -> list[int]:
        return torch.cat([self.train_y, self.val_y, self.test_y]).tolist()

    def device_splits(self, runtime: Any) -> dict[str, StreamSplit]:
        """The three splits, decoded by one worker pool, batches on ``runtime.device``."""
        dataset = ImageFiles(self.files, self.labels(), size=self.image_size, resize=self.resize)
        loader = Loader(dataset, workers=self.workers,
                        pin_memory=runtime.device.type == "cuda")
        out, start = {}, 0
        for name, y in (("train", self.train_y), ("val", self.val_y), ("test", self.test_y)):
            out[name] = StreamSplit(loader, range(start, start + len(y)), y, mean=self.mean,
                                    std=self.std, device=runtime.device,
                                    channels_last=runtime.channels_last)
            start += len(y)
        return out

    def fingerprint(self) -> str:
        """sha256 of what the batches depend on: the files (paths, sizes, mtimes) and labels of
        each split, the recipe and its sizes, the class names and the normalization (hex)."""
        h = hashlib.sha256(b"stream|" + type(self).__module__.encode())
        h.update(source_key(self.files, self.labels(), size=self.image_size,
                            transform=f"resize{self.resize}").encode())
        h.update(json.dumps([len(self.train_y), len(self.val_y), len(self.test_y),
                             list(self.classes), list(self.mean), list(self.std)]).encode())
        return h.hexdigest()


def stream_stats(files: Sequence[Path], *, size: int, resize: int, workers: int,
                 seed: int) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """Channel mean and std of up to ``STATS_IMAGES`` of ``files`` (a seeded choice; all of them
    when there are no more), decoded with the evaluation transform: for a split that small, the
    statistics the in-memory path computes."""
    n = len(files)
    if n > STATS_IMAGES:
        rng = np.random.default_rng(np.random.SeedSequence([seed, 3]))
        chosen = np.sort(rng.choice(n, STATS_IMAGES, replace=False)).tolist()
    else:
        chosen = list(range(n))
    dataset = ImageFiles([files[i] for i in chosen], [0] * len(chosen), size=size, resize=resize)
    loader = Loader(dataset, workers=min(workers, max(1, len(chosen) // 64)),
                    pin_memory=False, persistent=False)
    hist = torch.zeros(3, 256, dtype=torch.float64)
    for x, _ in loader.run(_chunks([(i, EVAL) for i in range(len(chosen))], 64)):
        hist += channel_histogram(x)
    return stats_of_histogram(hist)
