"""Datasets for a trial: read from ``data_dir`` (never downloaded), or generated (synthetic).

``load_dataset(cfg)`` returns the train / validation / test splits as uint8 tensors on the CPU;
``DeviceData`` puts one split on the training device and serves augmented, normalized batches.

Layouts read (``dataset`` key):

- ``synthetic``: generated from ``data_seed`` (see ``synthetic.py``), nothing read.
- ``cifar10`` / ``cifar100``: the official python pickles, ``data_dir/cifar-10-batches-py/`` or
  ``data_dir/cifar-100-python/``, or ``data_dir`` being that folder itself.
- ``tinyimagenet``: ``tiny-imagenet-200/`` (wnids.txt, train/<wnid>/images/, val/images/ with
  val/val_annotations.txt), ``data_dir`` being that folder or its parent.
- ``imagefolder``: ``data_dir/train/<class>/*`` and ``data_dir/val/<class>/*``, resized to
  ``image_size`` (see ``images.py``).

The official test (or val) split is the "test" split; the validation split is carved from the
training images (``val_fraction``, stratified by class, seeded by ``data_seed``).
"""

from __future__ import annotations

from pathlib import Path

import torch

from hgsearch.config import DATASETS, TrialConfig, data_dir_problem
from hgsearch.data.cache import cache_root
from hgsearch.data.device import DeviceData
from hgsearch.data.imagefolder import load_imagefolder
from hgsearch.data.splits import DataSplits, Loaded, channel_stats, make_splits, stratified_split
from hgsearch.data.synthetic import CLASSES as SYNTHETIC_CLASSES
from hgsearch.data.synthetic import make_synthetic
from hgsearch.data.tinyimagenet import load_tinyimagenet
from hgsearch.errors import UserError

__all__ = ["DataSplits", "DeviceData", "channel_stats", "load_dataset", "stratified_split"]


def load_dataset(cfg: TrialConfig) -> DataSplits:
    """The splits of ``cfg.dataset``; raises UserError naming the folder or file at fault."""
    loaded = _read(cfg)
    return make_splits(cfg.dataset, loaded, val_fraction=cfg.val_fraction, seed=cfg.data_seed)


def _read(cfg: TrialConfig) -> Loaded:
    if cfg.dataset == "synthetic":
        train = make_synthetic(cfg.synthetic_train_size, seed=cfg.data_seed, split="train")
        test = make_synthetic(cfg.synthetic_test_size, seed=cfg.data_seed, split="test")
        return Loaded(list(SYNTHETIC_CLASSES), *map(torch.from_numpy, (*train, *test)))
    if problem := data_dir_problem(cfg.dataset, cfg.data_dir):
        raise UserError(problem)
    root = Path(cfg.data_dir).expanduser()
    if not root.is_dir():
        raise UserError(f"data_dir={cfg.data_dir}: no such folder (dataset={cfg.dataset})")
    if cfg.dataset in ("cifar10", "cifar100"):
        from hgsearch.data.cifar import load_cifar  # torchvision takes seconds to import

        return load_cifar(root, variant=cfg.dataset)
    cache = cache_root(cfg.cache_dir)
    if cfg.dataset == "tinyimagenet":
        return load_tinyimagenet(root, cache_dir=cache)
    if cfg.dataset == "imagefolder":
        return load_imagefolder(root, image_size=cfg.image_size, cache_dir=cache)
    raise UserError(f"dataset={cfg.dataset!r}: allowed values are {', '.join(DATASETS)}")
