"""The DataLoader reference of the data benchmark augments as DeviceData does."""

from __future__ import annotations

import torch

from hgsearch.bench.data import PilDataset
from hgsearch.bench.workload import random_data
from hgsearch.data.device import _crop_flip
from hgsearch.runtime import resolve_runtime


def test_loader_reference_augments_like_device_data():
    """Every loader sample equals DeviceData's crop + flip of its image for some offset and
    flip, normalized alike: the two pipelines do the same work."""
    runtime = resolve_runtime("cpu")
    data = random_data(4, runtime, seed=3)
    dataset = PilDataset(data)
    options = [(dy, dx, flip) for dy in range(9) for dx in range(9) for flip in (False, True)]
    offsets = torch.tensor([o[:2] for o in options])
    flips = torch.tensor([o[2] for o in options])
    torch.manual_seed(0)
    for i in range(len(dataset)):
        got, label = dataset[i]
        assert label == int(data.y[i])
        images = data.x[i:i + 1].expand(len(options), -1, -1, -1)
        candidates = data.normalize(_crop_flip(images, offsets, flips, pad=4))
        assert float((candidates - got).abs().amax((1, 2, 3)).min()) < 1e-5
