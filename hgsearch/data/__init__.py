"""Datasets for a trial: read from ``data_dir`` (never downloaded), or generated (synthetic).

``load_dataset(cfg)`` returns the train / validation / test splits: as uint8 tensors on the CPU
(``DataSplits``; ``DeviceData`` puts one split on the training device and serves augmented,
normalized batches), or for an imagefolder too large for memory as files (``StreamingData``).

Layouts read (``dataset`` key):

- ``synthetic``: generated from ``data_seed`` (see ``synthetic.py``), nothing read.
- ``cifar10`` / ``cifar100``: the official python pickles, ``data_dir/cifar-10-batches-py/`` or
  ``data_dir/cifar-100-python/``, or ``data_dir`` being that folder itself.
- ``tinyimagenet``: ``tiny-imagenet-200/`` (wnids.txt, train/<wnid>/images/, val/images/ with
  val/val_annotations.txt), ``data_dir`` being that folder or its parent.
- ``imagefolder``: ``data_dir/train/<class>/*`` and ``data_dir/val/<class>/*``, resized to
  ``image_size`` (see ``images.py``); held in memory, or streamed from the files when the decoded
  images would not fit the memory budget (``budget.py``, ``streaming.py``).

The official test (or val) split is the "test" split; the validation split is carved from the
training images (``val_fraction``, stratified by class, seeded by ``data_seed``), the same on
both paths. The loaded data's ``device_splits(runtime)`` gives the trial its three splits
(``DeviceData`` or ``StreamSplit``, one interface).
"""

from __future__ import annotations

from pathlib import Path

import torch

from hgsearch.config import DATASETS, TrialConfig, data_dir_problem
from hgsearch.data.budget import choose_path
from hgsearch.data.cache import cache_root
from hgsearch.data.device import DeviceData
from hgsearch.data.imagefolder import FolderIndex, index_imagefolder, load_imagefolder
from hgsearch.data.images import eval_resize
from hgsearch.data.splits import (
    DataSplits,
    Loaded,
    carve_val,
    channel_stats,
    make_splits,
    stratified_split,
)
from hgsearch.data.streaming import StreamingData, auto_workers, stream_stats
from hgsearch.data.synthetic import CLASSES as SYNTHETIC_CLASSES
from hgsearch.data.synthetic import make_synthetic
from hgsearch.data.tinyimagenet import load_tinyimagenet
from hgsearch.errors import UserError

__all__ = ["DataSplits", "DeviceData", "StreamingData", "channel_stats", "load_dataset",
           "stratified_split"]


def load_dataset(cfg: TrialConfig) -> DataSplits | StreamingData:
    """The splits of ``cfg.dataset``; raises UserError naming the key, folder or file at fault."""
    if cfg.dataset != "imagefolder":
        choose_path(cfg, 0)   # UserError for data_path=stream
        loaded = _read(cfg)
    else:
        index = index_imagefolder(_root(cfg))
        n = len(index.train_files) + len(index.test_files)
        if choose_path(cfg, n) == "stream":
            return _stream(cfg, index)
        loaded = load_imagefolder(index, image_size=cfg.image_size,
                                  cache_dir=cache_root(cfg.cache_dir))
    return make_splits(cfg.dataset, loaded, val_fraction=cfg.val_fraction, seed=cfg.data_seed)


def _stream(cfg: TrialConfig, index: FolderIndex) -> StreamingData:
    """The streaming path's splits: the validation files carved as ``make_splits`` carves them,
    the normalization from (a bounded sample of) the training files."""
    labels = torch.tensor(index.train_labels, dtype=torch.int64)
    train_idx, val_idx = carve_val(cfg.dataset, labels, val_fraction=cfg.val_fraction,
                                   seed=cfg.data_seed)
    train_files = [index.train_files[i] for i in train_idx.tolist()]
    val_files = [index.train_files[i] for i in val_idx.tolist()]
    resize, workers = eval_resize(cfg.image_size, cfg.dataset), auto_workers(cfg.data_workers)
    mean, std = stream_stats(train_files, size=cfg.image_size, resize=resize, workers=workers,
                             seed=cfg.data_seed)
    return StreamingData(
        name=cfg.dataset, num_classes=len(index.classes), image_size=cfg.image_size,
        resize=resize, classes=list(index.classes),
        files=train_files + val_files + list(index.test_files),
        train_y=labels[train_idx], val_y=labels[val_idx],
        test_y=torch.tensor(index.test_labels, dtype=torch.int64),
        mean=mean, std=std, workers=workers)


def _root(cfg: TrialConfig) -> Path:
    """``data_dir`` as a folder that exists; UserError otherwise."""
    if problem := data_dir_problem(cfg.dataset, cfg.data_dir):
        raise UserError(problem)
    root = Path(cfg.data_dir).expanduser()
    if not root.is_dir():
        raise UserError(f"data_dir={cfg.data_dir}: no such folder (dataset={cfg.dataset})")
    return root


def _read(cfg: TrialConfig) -> Loaded:
    if cfg.dataset == "synthetic":
        train = make_synthetic(cfg.synthetic_train_size, seed=cfg.data_seed, split="train")
        test = make_synthetic(cfg.synthetic_test_size, seed=cfg.data_seed, split="test")
        return Loaded(list(SYNTHETIC_CLASSES), *map(torch.from_numpy, (*train, *test)))
    root = _root(cfg)
    if cfg.dataset in ("cifar10", "cifar100"):
        from hgsearch.data.cifar import load_cifar  # torchvision takes seconds to import

        return load_cifar(root, variant=cfg.dataset)
    cache = cache_root(cfg.cache_dir)
    if cfg.dataset == "tinyimagenet":
        return load_tinyimagenet(root, cache_dir=cache)
    raise UserError(f"dataset={cfg.dataset!r}: allowed values are {', '.join(DATASETS)}")
