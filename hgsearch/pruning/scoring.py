"""Loss-increase scores of the prunable filters (METHOD.md part 2).

    delta_k = CE(S; network with filter k removed) - CE(S; network)

CE is the mean cross-entropy over the sample S, in eval mode (BatchNorm running statistics).
Removing filter k of block b forces channel k of ``block.inner``'s post-ReLU output to zero.
Both functions return one float64 tensor per block, of length the block's inner width.

``score_filters_reference`` does exactly that: one forward of the whole network per filter.
``score_filters`` computes the same numbers without recomputing what a removed channel cannot
change:

- the forward up to block b is shared by all of block b's filters, so it runs once per sample
  chunk; the block's inner activation h and its pre-activation output
  ``pre = bn2(conv2(h)) + shortcut(x)`` are kept;
- conv2 and eval-mode bn2 are linear in h, so removing channel c subtracts
  ``bn2_scale * conv2(h[:, c], W2[:, c])``, a 1-input-channel conv, from ``pre``: the block
  itself costs 1/width of its conv2 per removal;
- only blocks b+1.. and the head run per removal, on a stacked batch of several removals
  (at most ``batch_size`` images per forward), with every BatchNorm folded into its conv;
- a channel that is zero on a whole chunk (a dead filter, common after HGSR) cannot change the
  network's output on it: its delta there is exactly 0, without a forward.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from hgsearch.models import ResNet
from hgsearch.pruning.surgery import mask_model


def score_filters_reference(model: ResNet, x: torch.Tensor, y: torch.Tensor, *,
                            batch_size: int) -> list[torch.Tensor]:
    """delta_k for every prunable filter, one full masked forward per filter (slow, plain)."""
    with _eval_mode(model):
        base = mean_ce(model, x, y, batch_size=batch_size)
        return [torch.tensor([loss_increase(model, x, y, block=b, channel=c, base=base,
                                            batch_size=batch_size)
                              for c in range(block.conv1.out_channels)], dtype=torch.float64)
                for b, block in enumerate(model.blocks)]


def loss_increase(model: ResNet, x: torch.Tensor, y: torch.Tensor, *, block: int, channel: int,
                  base: float, batch_size: int) -> float:
    """delta of one filter: mean CE with channel ``channel`` of block ``block`` forced to zero,
    minus ``base`` (the unpruned mean CE). ``model`` must be in eval mode."""
    keep = [list(range(b.conv1.out_channels)) for b in model.blocks]
    del keep[block][channel]
    with mask_model(model, keep):
        return mean_ce(model, x, y, batch_size=batch_size) - base


@torch.no_grad()
def mean_ce(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, batch_size: int) -> float:
    """Mean cross-entropy of ``model`` on (x, y), ``batch_size`` images per forward, summed in
    float64."""
    param = next(model.parameters())
    total = 0.0
    for start in range(0, len(x), batch_size):
        xb = x[start:start + batch_size].to(device=param.device, dtype=param.dtype)
        yb = y[start:start + batch_size].to(param.device)
        total += F.cross_entropy(model(xb), yb, reduction="sum").double().item()
    return total / len(x)


@torch.no_grad()
def score_filters(model: ResNet, x: torch.Tensor, y: torch.Tensor, *,
                  batch_size: int) -> list[torch.Tensor]:
    """delta_k for every prunable filter; the same numbers as ``score_filters_reference``.

    ``batch_size`` bounds the images per forward: samples are processed in chunks of at most
    ``batch_size``, and ``batch_size // chunk`` removals are stacked into one forward.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}: must be at least 1")
    param = next(model.parameters())
    with _eval_mode(model):
        blocks = [_fold_block(block) for block in model.blocks]
        sums = [torch.zeros(fb.width, dtype=torch.float64) for fb in blocks]
        for start in range(0, len(x), batch_size):
            xs = x[start:start + batch_size].to(device=param.device, dtype=param.dtype)
            ys = y[start:start + batch_size].to(param.device)
            _score_chunk(model, blocks, xs, ys, budget=batch_size, sums=sums)
    return [s / len(x) for s in sums]


def _score_chunk(model: ResNet, blocks: list[_FoldedBlock], xs: torch.Tensor, ys: torch.Tensor,
                 *, budget: int, sums: list[torch.Tensor]) -> None:
    """Add sum_{s in chunk} (CE_s(filter removed) - CE_s) to ``sums`` for every filter."""
    n = len(xs)
    per_forward = max(1, budget // n)
    feat = model.stem(xs).contiguous(memory_format=torch.channels_last)
    masked, dead = [], []   # per block: sum of CE with each filter removed; filters all-zero
    for b, fb in enumerate(blocks):
        h = fb.inner(feat)                                    # (n, width, H, W)
        pre = fb.pre_activation(feat, h)                      # (n, C, H', W')
        alive = h.ne(0).any(dim=(0, 2, 3))                    # NaN counts as alive
        live = alive.nonzero().flatten().tolist()
        ce_sums = torch.zeros(fb.width, dtype=torch.float64)
        for i in range(0, len(live), per_forward):
            cs = live[i:i + per_forward]
            z = fb.without_channels(pre, h, cs)                # (n * k, C, H', W'), sample-major
            for later in blocks[b + 1:]:
                z = later(z)
            ce = F.cross_entropy(model.head(z), ys.repeat_interleave(len(cs)), reduction="none")
            ce_sums[cs] = ce.view(n, len(cs)).double().sum(0).cpu()
        masked.append(ce_sums)
        dead.append(~alive.cpu())
        feat = pre.relu_()                                    # the block's output, unpruned
    base = F.cross_entropy(model.head(feat), ys, reduction="none").double().sum().cpu()
    for total, ce_sums, off in zip(sums, masked, dead):
        # A filter that is zero on the whole chunk changes nothing on it: exactly 0 there.
        total += (ce_sums - base).masked_fill_(off, 0.0)


@dataclass
class _FoldedBlock:
    """A BasicBlock in eval mode with each BatchNorm folded into the conv before it."""

    conv1: dict       # weight, bias, stride, padding of conv1 + bn1
    conv2: dict
    shortcut: dict | None   # the projection + its BN, None for the identity

    @property
    def width(self) -> int:
        return self.conv1["weight"].shape[0]

    def inner(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, **self.conv1).relu_()

    def pre_activation(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        out = F.conv2d(h, **self.conv2)
        return out.add_(x if self.shortcut is None else F.conv2d(x, **self.shortcut))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.pre_activation(x, self.inner(x)).relu_()

    def without_channels(self, pre: torch.Tensor, h: torch.Tensor, cs: list[int]) -> torch.Tensor:
        """relu(pre - bn2_scale * conv2(h[:, c], W2[:, c])) for each c in cs, stacked
        sample-major: row s * len(cs) + j removes channel cs[j] from sample s."""
        n, out_ch, height, width = pre.shape
        k = len(cs)
        w2 = self.conv2["weight"]
        # One grouped conv without bias: group j reads channel cs[j] and writes out_ch maps.
        weight = w2[:, cs].transpose(0, 1).reshape(k * out_ch, 1, *w2.shape[2:])
        corr = F.conv2d(h[:, cs], weight, None, self.conv2["stride"], self.conv2["padding"],
                        groups=k)                                          # (n, k*C, H, W)
        z = pre.unsqueeze(1) - corr.view(n, k, out_ch, height, width)
        z = z.reshape(n * k, out_ch, height, width).relu_()
        return z.contiguous(memory_format=torch.channels_last)


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> dict:
    """F.conv2d arguments of conv followed by eval-mode bn (bn(v) = scale * v + shift)."""
    if bn.running_var is None or conv.groups != 1:
        raise ValueError("score_filters needs plain convs and BatchNorm running statistics")
    scale = torch.rsqrt(bn.running_var + bn.eps)
    if bn.weight is not None:
        scale = scale * bn.weight
    shift = -bn.running_mean * scale
    if bn.bias is not None:
        shift = shift + bn.bias
    if conv.bias is not None:
        shift = shift + conv.bias * scale
    weight = conv.weight * scale.view(-1, 1, 1, 1)
    return {"weight": weight.contiguous(memory_format=torch.channels_last), "bias": shift,
            "stride": conv.stride, "padding": conv.padding}


def _fold_block(block: nn.Module) -> _FoldedBlock:
    shortcut = None
    if not isinstance(block.shortcut, nn.Identity):
        shortcut = _fold(block.shortcut[0], block.shortcut[1])
    return _FoldedBlock(_fold(block.conv1, block.bn1), _fold(block.conv2, block.bn2), shortcut)


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)
