"""Loss-increase scores of the prunable filters (docs/method.md part 2).

    delta_k = CE(S; network with filter k removed) - CE(S; network)

CE is the mean cross-entropy over the sample S, in eval mode (BatchNorm running statistics).
Removing filter k of prunable unit u (models/blocks: a BasicBlock has one, a Bottleneck two)
forces channel k of the unit's post-ReLU activation to zero. Both functions return one float64
tensor per unit, of length the unit's width.

``score_filters_reference`` does exactly that: one forward of the whole network per filter.
``score_filters`` computes the same numbers without recomputing what a removed channel cannot
change:

- the forward up to block b is shared by all of block b's filters, so it runs once per sample
  chunk; each unit's activation h and the pre-activation that its consumer writes,
  ``pre = bn(consumer(h))`` (plus ``shortcut(x)`` for the block's last conv), are kept;
- the consumer and its eval-mode BatchNorm are linear in h, so removing channel c subtracts
  ``bn_scale * consumer(h[:, c], W[:, c])``, a 1-input-channel conv, from ``pre``: the consumer
  costs 1/width of itself per removal; the block's later convs (a Bottleneck's conv3 after a
  conv1 channel goes) run on the stacked removals;
- only the rest of the block, blocks b+1.. and the head run per removal, on a stacked batch of
  several removals (at most ``batch_size`` images per forward), with every BatchNorm folded into
  its conv;
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

from hgsearch.models import PrunableNet
from hgsearch.models.blocks import Block
from hgsearch.pruning.surgery import mask_model


def score_filters_reference(model: PrunableNet, x: torch.Tensor, y: torch.Tensor, *,
                            batch_size: int) -> list[torch.Tensor]:
    """delta_k for every prunable filter, one full masked forward per filter (slow, plain)."""
    with _eval_mode(model):
        base = mean_ce(model, x, y, batch_size=batch_size)
        return [torch.tensor([loss_increase(model, x, y, block=u, channel=c, base=base,
                                            batch_size=batch_size)
                              for c in range(unit.producer.out_channels)], dtype=torch.float64)
                for u, unit in enumerate(model.units())]


def loss_increase(model: PrunableNet, x: torch.Tensor, y: torch.Tensor, *, block: int,
                  channel: int, base: float, batch_size: int) -> float:
    """delta of one filter: mean CE with channel ``channel`` of prunable unit ``block`` forced to
    zero, minus ``base`` (the unpruned mean CE). ``model`` must be in eval mode."""
    keep = [list(range(u.producer.out_channels)) for u in model.units()]
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
def score_filters(model: PrunableNet, x: torch.Tensor, y: torch.Tensor, *,
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
        sums = [torch.zeros(w, dtype=torch.float64) for fb in blocks for w in fb.widths]
        for start in range(0, len(x), batch_size):
            xs = x[start:start + batch_size].to(device=param.device, dtype=param.dtype)
            ys = y[start:start + batch_size].to(param.device)
            _score_chunk(model, blocks, xs, ys, budget=batch_size, sums=sums)
    return [s / len(x) for s in sums]


def _score_chunk(model: PrunableNet, blocks: list[_FoldedBlock], xs: torch.Tensor,
                 ys: torch.Tensor, *, budget: int, sums: list[torch.Tensor]) -> None:
    """Add sum_{s in chunk} (CE_s(filter removed) - CE_s) to ``sums`` for every filter."""
    n = len(xs)
    per_forward = max(1, budget // n)
    feat = model.stem(xs).contiguous(memory_format=torch.channels_last)
    masked, dead = [], []   # per unit: sum of CE with each filter removed; filters all-zero
    for b, fb in enumerate(blocks):
        hs, pres = fb.trace(feat)       # unit u: hs[u] (n, width, H, W), its consumer's pres[u]
        for u, h in enumerate(hs):
            alive = h.ne(0).any(dim=(0, 2, 3))                 # NaN counts as alive
            live = alive.nonzero().flatten().tolist()
            ce_sums = torch.zeros(h.shape[1], dtype=torch.float64)
            for i in range(0, len(live), per_forward):
                cs = live[i:i + per_forward]
                z = fb.without_channels(feat, pres[u], h, u, cs)   # (n * k, C, H', W')
                for later in blocks[b + 1:]:
                    z = later(z)
                ce = F.cross_entropy(model.head(z), ys.repeat_interleave(len(cs)),
                                     reduction="none")
                ce_sums[cs] = ce.view(n, len(cs)).double().sum(0).cpu()
            masked.append(ce_sums)
            dead.append(~alive.cpu())
        feat = pres[-1].relu_()                               # the block's output, unpruned
    base = F.cross_entropy(model.head(feat), ys, reduction="none").double().sum().cpu()
    for total, ce_sums, off in zip(sums, masked, dead):
        # A filter that is zero on the whole chunk changes nothing on it: exactly 0 there.
        total += (ce_sums - base).masked_fill_(off, 0.0)


@dataclass
class _FoldedBlock:
    """A block in eval mode with each BatchNorm folded into the conv before it: its residual
    path's convs (ReLU between them) and its shortcut (None for the identity)."""

    convs: list[dict]       # weight, bias, stride, padding of each conv + its BN
    shortcut: dict | None

    @property
    def widths(self) -> list[int]:
        """The width of each prunable unit: every conv's output but the last."""
        return [c["weight"].shape[0] for c in self.convs[:-1]]

    def trace(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """(hs, pres): each unit's activation hs[u], and pres[u] the pre-activation of the conv
        that reads it (the last one with the shortcut added)."""
        hs, pres = [], []
        h = x
        for i, conv in enumerate(self.convs):
            pre = F.conv2d(h, **conv)
            if i == len(self.convs) - 1:
                pre = pre.add_(self._shortcut(x))
            else:
                # Out of place: pre is kept for the removals, h feeds the next conv.
                h = pre.relu()
                hs.append(h)
            if i > 0:
                pres.append(pre)
        return hs, pres

    def _shortcut(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.shortcut is None else F.conv2d(x, **self.shortcut)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for conv in self.convs[:-1]:
            h = F.conv2d(h, **conv).relu_()
        return F.conv2d(h, **self.convs[-1]).add_(self._shortcut(x)).relu_()

    def without_channels(self, x: torch.Tensor, pre: torch.Tensor, h: torch.Tensor, u: int,
                         cs: list[int]) -> torch.Tensor:
        """The block's output with channel c of unit u removed, for each c in cs, stacked
        sample-major: row s * len(cs) + j removes channel cs[j] from sample s.

        relu(pre - bn_scale * consumer(h[:, c], W[:, c])) is the consumer's activation without
        channel c; the block's later convs and the shortcut (repeated) follow."""
        n, out_ch, height, width = pre.shape
        k = len(cs)
        consumer = self.convs[u + 1]
        w = consumer["weight"]
        # One grouped conv without bias: group j reads channel cs[j] and writes out_ch maps.
        weight = w[:, cs].transpose(0, 1).reshape(k * out_ch, 1, *w.shape[2:])
        corr = F.conv2d(h[:, cs], weight, None, consumer["stride"], consumer["padding"],
                        groups=k)                                          # (n, k*C, H, W)
        z = pre.unsqueeze(1) - corr.view(n, k, out_ch, height, width)
        z = z.reshape(n * k, out_ch, height, width).relu_()
        rest = self.convs[u + 2:]
        if rest:
            for conv in rest[:-1]:
                z = F.conv2d(z, **conv).relu_()
            z = F.conv2d(z, **rest[-1])
            n_out = z.shape[1:]
            z = z.view(n, k, *n_out).add_(self._shortcut(x).unsqueeze(1))
            z = z.reshape(n * k, *n_out).relu_()
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


def _fold_block(block: Block) -> _FoldedBlock:
    pair = block.shortcut_pair()
    return _FoldedBlock([_fold(conv, bn) for conv, bn in block.path()],
                        None if pair is None else _fold(*pair))


@contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)
