"""Which filters go: a ratio of channels, parameters or MACs, globally or per block.

docs/method.md part 2: filters go in order of increasing delta until ``prune_ratio`` of
``prune_target`` (of the whole network) is removed; every block keeps at least ``min_channels``
and a width that is a multiple of ``round_to``.

Removal happens in units. A unit takes a block from one allowed width to the next smaller one,
removing that block's lowest-delta channels still present. Allowed widths of a block of current
width w: w itself (a block that loses nothing keeps its width, even if w is not a multiple of
round_to) and every multiple of round_to in [lo, w), lo = min_channels rounded up to a multiple
of round_to. With round_to = 1 every unit is one channel.

Order of units:
- ``global``: by the largest delta the unit removes (a chunk of round_to channels goes when its
  last channel's turn comes in one ranking across all blocks);
- ``layer``: by the share of the block's original width removed after the unit, so every block
  loses the same fraction of its channels (as nearly as integer widths allow); blocks pinned by
  min_channels drop out and the others carry on until the target is reached.
Ties: the earlier block first; within a block, equal deltas go in channel-index order. A NaN
delta ranks last (never removed before a finite one).

Units are taken in order until the removed cost reaches the target, so the result overshoots it by
less than one unit. Removing one inner channel of block b saves a fixed ``cost_per_channel[b]``
(metrics.inner_channel_costs), less ``shared_cost`` per channel already removed from a block
coupled to b through one conv (a Bottleneck's two widths: metrics.shared_channel_costs), which
makes the parameter and MAC targets exact. ("Block" here is a prunable unit: one per BasicBlock,
two per Bottleneck.)
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import NamedTuple

import torch

from hgsearch.config import check
from hgsearch.errors import UserError

log = logging.getLogger(__name__)


class FilterSelection(NamedTuple):
    keep: list[list[int]]   # kept channel indices per block, sorted, in the scores' numbering
    removed: int            # cost removed from the original network, this and earlier rounds
    needed: int             # cost the ratio asks to remove: ceil(ratio * total_cost)
    note: str               # empty, or why the target was not reached


def select_filters(scores: Sequence[torch.Tensor], *, ratio: float, target: str = "channels",
                   scope: str = "global", min_channels: int = 1, round_to: int = 1,
                   cost_per_channel: Sequence[int] | None = None, total_cost: int | None = None,
                   original_widths: Sequence[int] | None = None,
                   shared_cost: Sequence[tuple[int, int, int]] = ()) -> FilterSelection:
    """Choose the channels to keep, given one delta per channel of each block.

    ``ratio`` is the fraction of ``total_cost`` (the original network's channels, parameters or
    MACs) that must be gone after this selection, counting channels already removed in earlier
    rounds: ``original_widths[b] - len(scores[b])`` of block b, each costing
    ``cost_per_channel[b]``. For ``target="channels"`` costs are 1 and the total is the sum of
    the original widths; otherwise ``cost_per_channel`` and ``total_cost`` are required.
    ``original_widths`` defaults to the current widths (a first round). ``shared_cost`` lists
    (block a, block b, q): removing one channel of a and one of b saves q less than their two
    costs (ignored for ``target="channels"``).
    """
    _check(ratio=ratio, target=target, scope=scope, min_channels=min_channels, round_to=round_to)
    widths = [len(s) for s in scores]
    original = list(original_widths) if original_widths is not None else widths
    if len(original) != len(widths) or any(w > o for w, o in zip(widths, original)):
        raise ValueError("original_widths: one entry per block, at least the current width")
    if target == "channels":
        costs, total = [1] * len(widths), sum(original)
    else:
        if cost_per_channel is None or total_cost is None:
            raise ValueError(f"target={target!r} needs cost_per_channel and total_cost")
        costs, total = [int(c) for c in cost_per_channel], int(total_cost)
    coupled: dict[int, list[tuple[int, int]]] = {}   # block -> (coupled block, q)
    if target != "channels":
        for a, b, q in shared_cost:
            coupled.setdefault(a, []).append((b, int(q)))
            coupled.setdefault(b, []).append((a, int(q)))
    # The 1e-12 absorbs float rounding of ratio * total: 0.1 * 10 must ask for 1, not 2.
    needed = math.ceil(ratio * total * (1 - 1e-12))
    removed = sum((o - w) * c for o, w, c in zip(original, widths, costs)) - sum(
        int(q) * (original[a] - widths[a]) * (original[b] - widths[b])
        for a, b, q in (shared_cost if target != "channels" else ()))

    orders = [_ascending(s) for s in scores]
    lo = -(-min_channels // round_to) * round_to
    units = []   # (sort key, block, width after the unit)
    for b, (w, o) in enumerate(zip(widths, original)):
        for after in _allowed_below(w, lo=lo, step=round_to):
            if scope == "global":
                worst = float(scores[b][orders[b][w - after - 1]])
                key = (math.inf if math.isnan(worst) else worst, b, -after)
            else:
                key = ((o - after) / o, b, -after)
            units.append((key, b, after))
    units.sort()

    new_widths = list(widths)
    for _key, b, after in units:
        if removed >= needed:
            break
        gone = new_widths[b] - after
        removed += gone * costs[b] - sum(q * gone * (original[v] - new_widths[v])
                                         for v, q in coupled.get(b, ()))
        new_widths[b] = after
    keep = [sorted(order[w - n:]) for order, w, n in zip(orders, widths, new_widths)]
    note = ""
    if removed < needed:
        note = (f"prune_ratio={ratio:g} of {target} not reached: min_channels={min_channels} and "
                f"round_to={round_to} allow removing {removed / total:.4f}")
        log.warning(note)
    return FilterSelection(keep, removed, needed, note)


def select_keep(scores: Sequence[torch.Tensor], *, ratio: float, target: str = "channels",
                scope: str = "global", min_channels: int = 1, round_to: int = 1,
                cost_per_channel: Sequence[int] | None = None, total_cost: int | None = None,
                original_widths: Sequence[int] | None = None,
                shared_cost: Sequence[tuple[int, int, int]] = ()) -> list[list[int]]:
    """Kept channel indices per block (sorted); see ``select_filters``. Logs a warning when the
    target cannot be reached."""
    return select_filters(scores, ratio=ratio, target=target, scope=scope,
                          min_channels=min_channels, round_to=round_to,
                          cost_per_channel=cost_per_channel, total_cost=total_cost,
                          original_widths=original_widths, shared_cost=shared_cost).keep


def _ascending(deltas: torch.Tensor) -> list[int]:
    """Channel indices by increasing delta, then index; NaN last."""
    values = [math.inf if math.isnan(v) else v for v in deltas.double().tolist()]
    return sorted(range(len(values)), key=lambda c: (values[c], c))


def _allowed_below(width: int, *, lo: int, step: int) -> list[int]:
    """Allowed widths smaller than ``width``, largest first: multiples of step in [lo, width)."""
    top = (width - 1) // step * step
    return list(range(top, lo - 1, -step)) if top >= lo else []


def _check(*, ratio: float, target: str, scope: str, min_channels: int, round_to: int) -> None:
    """UserError naming the first setting outside its trial key's range (config.check, the
    keys' one declaration)."""
    for key, value in (("prune_ratio", ratio), ("prune_target", target), ("prune_scope", scope),
                       ("min_channels", min_channels), ("round_to", round_to)):
        if problem := check(key, value):
            raise UserError(problem)
