"""The physically smaller network (docs/method.md part 3), and its masked stand-in.

``prune_model`` builds a new dense network whose prunable unit i has ``len(keep[i])`` channels
and copies the kept weights in: the unit's producer conv's output rows, its BatchNorm's entries,
its consumer conv's input columns (models/blocks: a BasicBlock's conv1 -> conv2, a Bottleneck's
conv1 -> conv2 and conv2 -> conv3); every other tensor is copied unchanged. Its outputs equal
those of the original network with the removed channels forced to zero (``mask_model``) up to
float rounding: a removed channel contributes nothing to its consumer in the masked network, and
does not exist in the compact one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from hgsearch.models import PrunableNet, build_model


def check_keep(model: PrunableNet, keep: Sequence[Sequence[int]]) -> list[list[int]]:
    """``keep`` as sorted lists of ints, or ValueError: one non-empty list of distinct, in-range
    channel indices per prunable unit."""
    widths = [u.producer.out_channels for u in model.units()]
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


def prune_model(model: PrunableNet, keep: Sequence[Sequence[int]]) -> PrunableNet:
    """A new dense network keeping channels ``keep[i]`` of prunable unit i.

    The copy lives on the original's device with its dtype and training mode; the original is
    left untouched.
    """
    keep = check_keep(model, keep)
    param = next(model.parameters())
    compact = build_model(model.arch, model.num_classes, [len(k) for k in keep])
    # Convert before loading: load_state_dict casts into the destination's dtype (float64 stays).
    compact = compact.to(device=param.device, dtype=param.dtype)
    names = {module: name for name, module in model.named_modules()}
    # Per module name: (dim, kept indices) for each of its tensors that loses channels.
    cuts: dict[str, tuple[int, torch.Tensor]] = {}
    for unit, k in zip(model.units(), keep):
        rows = torch.tensor(k, device=param.device)
        cuts[names[unit.producer]] = (0, rows)    # output filters of the producer
        cuts[names[unit.bn]] = (0, rows)          # per-channel affine and running stats
        consumer = names[unit.consumer]
        # A Bottleneck's conv2 is one unit's consumer and the next one's producer: both cuts.
        cuts[consumer + "/in"] = (1, rows)        # the consumer reads only the kept channels
    state = {}
    for name, tensor in model.state_dict().items():
        prefix, _, leaf = name.rpartition(".")
        if prefix in cuts and leaf != "num_batches_tracked":
            dim, rows = cuts[prefix]
            tensor = tensor.index_select(dim, rows)
        if prefix + "/in" in cuts and leaf == "weight":
            dim, rows = cuts[prefix + "/in"]
            tensor = tensor.index_select(dim, rows)
        state[name] = tensor
    compact.load_state_dict(state)
    compact.train(model.training)
    return compact


@contextmanager
def mask_model(model: PrunableNet, keep: Sequence[Sequence[int]]) -> Iterator[PrunableNet]:
    """Within the block, ``model`` behaves as if the channels not in ``keep`` were removed.

    Removing a filter forces its channel of the unit's post-ReLU activation to zero (docs/method.md
    part 2): a forward hook multiplies the unit's BatchNorm output by a 0/1 mask, and
    relu(0) = 0. Units that keep every channel are left alone; the hooks are removed on exit,
    even on error.
    """
    keep = check_keep(model, keep)
    handles = []
    try:
        for unit, idx in zip(model.units(), keep):
            width = unit.producer.out_channels
            if len(idx) == width:
                continue
            w = unit.producer.weight
            mask = torch.zeros(1, width, 1, 1, device=w.device, dtype=w.dtype)
            mask[0, idx] = 1
            handles.append(unit.bn.register_forward_hook(_masking(mask)))
        yield model
    finally:
        for handle in handles:
            handle.remove()


def _masking(mask: torch.Tensor):
    def hook(_module: nn.Module, _inputs: tuple, out: torch.Tensor) -> torch.Tensor:
        # relu(v * 0) = 0 exactly for finite v: the channel's post-ReLU output is exactly zero.
        return out * mask

    return hook
