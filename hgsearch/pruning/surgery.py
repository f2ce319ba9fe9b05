"""The physically smaller network (METHOD.md part 3), and its masked stand-in.

``prune_model`` builds a new dense ResNet whose block i has ``len(keep[i])`` inner channels and
copies the kept weights in: conv1's output rows, bn1's entries, conv2's input columns; every
other tensor is copied unchanged. Its outputs equal those of the original network with the removed
channels forced to zero (``mask_model``) up to float rounding: a removed channel contributes
nothing to conv2 in the masked network, and does not exist in the compact one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch

from hgsearch.models import ResNet, build_model


def check_keep(model: ResNet, keep: Sequence[Sequence[int]]) -> list[list[int]]:
    """``keep`` as sorted lists of ints, or ValueError: one non-empty list of distinct, in-range
    channel indices per block."""
    widths = [block.conv1.out_channels for block in model.blocks]
    if len(keep) != len(widths):
        raise ValueError(f"keep: {len(keep)} lists for {len(widths)} blocks")
    out = []
    for i, (idx, width) in enumerate(zip(keep, widths)):
        idx = sorted(int(c) for c in idx)
        if not idx:
            raise ValueError(f"keep[{i}]: every block keeps at least one channel")
        if len(set(idx)) != len(idx) or idx[0] < 0 or idx[-1] >= width:
            raise ValueError(f"keep[{i}]: indices must be distinct and in [0, {width})")
        out.append(idx)
    return out


def prune_model(model: ResNet, keep: Sequence[Sequence[int]]) -> ResNet:
    """A new dense ResNet keeping channels ``keep[i]`` of block i's inner layer.

    The copy lives on the original's device with its dtype and training mode; the original is
    left untouched.
    """
    keep = check_keep(model, keep)
    param = next(model.parameters())
    compact = build_model(model.arch, model.num_classes, [len(k) for k in keep])
    # Convert before loading: load_state_dict casts into the destination's dtype (float64 stays).
    compact = compact.to(device=param.device, dtype=param.dtype)
    source = model.state_dict()
    index = {f"blocks.{i}.": torch.tensor(k, device=param.device) for i, k in enumerate(keep)}
    state = {}
    for name, tensor in source.items():
        prefix, _, leaf = name.rpartition(".")
        rows = index.get(prefix.rpartition(".")[0] + ".")
        if rows is not None and prefix.endswith(".conv1"):
            tensor = tensor.index_select(0, rows)       # output filters of conv1
        elif rows is not None and prefix.endswith(".bn1") and leaf != "num_batches_tracked":
            tensor = tensor.index_select(0, rows)       # per-channel affine and running stats
        elif rows is not None and prefix.endswith(".conv2"):
            tensor = tensor.index_select(1, rows)       # conv2 reads only the kept channels
        state[name] = tensor
    compact.load_state_dict(state)
    compact.train(model.training)
    return compact


@contextmanager
def mask_model(model: ResNet, keep: Sequence[Sequence[int]]) -> Iterator[ResNet]:
    """Within the block, ``model`` behaves as if the channels not in ``keep`` were removed.

    Removing a filter forces its channel of ``block.inner``'s (post-ReLU) output to zero
    (METHOD.md part 2). Blocks that keep every channel are left alone. The patch is an instance
    attribute that shadows ``BasicBlock.inner`` and is deleted on exit, even on error.
    """
    keep = check_keep(model, keep)
    patched = []
    try:
        for block, idx in zip(model.blocks, keep):
            width = block.conv1.out_channels
            if len(idx) == width:
                continue
            w = block.conv1.weight
            mask = torch.zeros(1, width, 1, 1, device=w.device, dtype=w.dtype)
            mask[0, idx] = 1
            block.inner = _masked(type(block).inner.__get__(block), mask)
            patched.append(block)
        yield model
    finally:
        for block in patched:
            del block.inner


def _masked(inner, mask: torch.Tensor):
    def masked_inner(x: torch.Tensor) -> torch.Tensor:
        # A post-ReLU activation is finite and >= 0, so multiplying by 0 gives exactly 0.
        return inner(x) * mask

    return masked_inner
