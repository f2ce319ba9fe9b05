"""The three splits a trial sees: train, validation (carved from train), test (the official one).

The search optimizes validation accuracy; the test split is only reported beside it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import torch

from hgsearch.data.device import DeviceData
from hgsearch.errors import UserError


class Loaded(NamedTuple):
    """What a dataset reader returns: the official train and test splits, uint8 (N, 3, H, W)."""

    classes: list[str]
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor


@dataclass(frozen=True, eq=False)  # eq would compare tensors elementwise: identity instead
class DataSplits:
    """Train / validation / test images as uint8 (N, 3, H, W) and int64 (N,) labels, on the CPU."""

    name: str
    num_classes: int
    image_size: int
    classes: list[str]
    train_x: torch.Tensor = field(repr=False)
    train_y: torch.Tensor = field(repr=False)
    val_x: torch.Tensor = field(repr=False)
    val_y: torch.Tensor = field(repr=False)
    test_x: torch.Tensor = field(repr=False)
    test_y: torch.Tensor = field(repr=False)
    mean: tuple[float, float, float]  # per channel, of train_x / 255
    std: tuple[float, float, float]

    def device_splits(self, runtime: Any) -> dict[str, DeviceData]:
        """The three splits on ``runtime.device`` as ``DeviceData`` (the in-memory path)."""
        return {name: DeviceData(getattr(self, f"{name}_x"), getattr(self, f"{name}_y"),
                                 mean=self.mean, std=self.std, device=runtime.device,
                                 channels_last=runtime.channels_last)
                for name in ("train", "val", "test")}


def make_splits(name: str, loaded: Loaded, *, val_fraction: float, seed: int) -> DataSplits:
    """Carve the validation split out of ``loaded``'s training data; statistics of what is left."""
    train_idx, val_idx = carve_val(name, loaded.train_y, val_fraction=val_fraction, seed=seed)
    train_x = loaded.train_x[train_idx]
    mean, std = channel_stats(train_x)
    return DataSplits(
        name=name, num_classes=len(loaded.classes), image_size=int(train_x.shape[-1]),
        classes=list(loaded.classes),
        train_x=train_x, train_y=loaded.train_y[train_idx],
        val_x=loaded.train_x[val_idx], val_y=loaded.train_y[val_idx],
        test_x=loaded.test_x, test_y=loaded.test_y, mean=mean, std=std)


def carve_val(name: str, labels: torch.Tensor, *, val_fraction: float,
              seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``stratified_split``, or UserError when either side would be empty (both data paths)."""
    train_idx, val_idx = stratified_split(labels, val_fraction=val_fraction, seed=seed)
    if len(train_idx) == 0 or len(val_idx) == 0:
        raise UserError(f"val_fraction={val_fraction:g}: {name} has {len(labels)} training "
                        "images, too few to hold out a validation split; use more data")
    return train_idx, val_idx


def stratified_split(labels: torch.Tensor, *, val_fraction: float,
                     seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (train, val), each ascending; val holds round(val_fraction * N) images.

    Every class gives floor(val_fraction * n_c) images, and the images still missing from the
    total go to the classes with the largest remainders (largest-remainder apportionment), so
    each class is within one image of its share. Which images is a seeded permutation per class.
    """
    y = labels.numpy()
    counts = np.bincount(y)
    quota = val_fraction * counts
    take = np.floor(quota).astype(np.int64)
    missing = int(round(val_fraction * len(y))) - int(take.sum())
    by_remainder = np.argsort(-(quota - take), kind="stable")  # ties: lower class first
    take[by_remainder[:missing]] += 1

    rng = np.random.default_rng(np.random.SeedSequence([seed, 2]))
    is_val = np.zeros(len(y), dtype=bool)
    for c in np.flatnonzero(take):
        members = np.flatnonzero(y == c)
        is_val[rng.permutation(members)[:take[c]]] = True
    return torch.from_numpy(np.flatnonzero(~is_val)), torch.from_numpy(np.flatnonzero(is_val))


Stats = tuple[tuple[float, float, float], tuple[float, float, float]]


def channel_stats(x: torch.Tensor) -> Stats:
    """Exact per-channel mean and (population) std of x / 255 for uint8 (N, 3, H, W).

    Counts the 256 values per channel in chunks, so a large split needs no float copy.
    """
    return stats_of_histogram(channel_histogram(x))


def channel_histogram(x: torch.Tensor) -> torch.Tensor:
    """(3, 256) float64 counts of each value per channel of uint8 (N, 3, H, W); sums of these
    over batches are exact, so the statistics do not depend on how the images are batched."""
    hist = torch.zeros(3, 256, dtype=torch.float64)
    for start in range(0, len(x), 4096):
        chunk = x[start:start + 4096]
        for ch in range(3):
            hist[ch] += torch.bincount(chunk[:, ch].flatten(), minlength=256).double()
    return hist


def stats_of_histogram(hist: torch.Tensor) -> Stats:
    """Per-channel mean and (population) std of x / 255 from ``channel_histogram`` counts."""
    values = torch.arange(256, dtype=torch.float64) / 255
    n = hist.sum(1)
    mean = (hist * values).sum(1) / n
    var = (hist * values**2).sum(1) / n - mean**2
    return (tuple(mean.tolist()), tuple(var.clamp_min(0).sqrt().tolist()))
