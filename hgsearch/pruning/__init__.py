"""Filter pruning: score (scoring.py), choose (select_filters.py), rebuild smaller (surgery.py).

``prune`` runs the three in ``steps`` rounds (docs/method.md parts 2 and 3).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch

from hgsearch.metrics import count_macs, count_params, inner_channel_costs, shared_channel_costs
from hgsearch.models import PrunableNet
from hgsearch.pruning.criteria import CRITERIA, SCORE_METHODS, Criterion, exact_math, get_criterion
from hgsearch.pruning.scoring import score_filters, score_filters_reference
from hgsearch.pruning.select_filters import FilterSelection, select_filters, select_keep
from hgsearch.pruning.surgery import mask_model, prune_model

__all__ = ["CRITERIA", "SCORE_METHODS", "Criterion", "PruneResult", "exact_math",
           "get_criterion", "mask_model", "prune", "prune_model", "score_filters",
           "score_filters_reference", "select_filters", "select_keep",
           "FilterSelection"]


class PruneResult(NamedTuple):
    model: PrunableNet            # the compact network
    keep: list[list[int]]         # kept channels per unit, in the original network's numbering
    scores: list[torch.Tensor]    # the last round's deltas, original numbering (NaN: gone before)
    note: str                     # empty, or why the target was not reached


def prune(model: PrunableNet, x: torch.Tensor, y: torch.Tensor, *, ratio: float,
          target: str = "channels", scope: str = "global", steps: int = 1, min_channels: int = 1,
          round_to: int = 1, batch_size: int = 512,
          input_size: tuple[int, int] | None = None,
          criterion: str | Criterion = "loss_increase", generator: torch.Generator | None = None,
          after_round: Callable[[PrunableNet, int], PrunableNet] | None = None) -> PruneResult:
    """Score, select and remove filters in ``steps`` rounds.

    Round i (1-based) rescores the current network on (x, y) with ``criterion`` (a name in
    ``CRITERIA`` or a Criterion; ``generator`` feeds ``random``) and removes filters until
    ``ratio * i / steps`` of the original network's channels, parameters or MACs (``target``)
    are gone. ``after_round(compact, i)``, when given, runs after each round's surgery and
    returns the network the next round starts from (BatchNorm recalibration, fine-tuning in
    between). ``input_size`` (height, width; default: that of x) sizes the MAC count. ``model``
    itself is not changed.
    """
    if steps < 1:
        raise ValueError(f"steps={steps}: must be at least 1")
    size = tuple(input_size or x.shape[-2:])
    original = [unit.producer.out_channels for unit in model.units()]
    costs = inner_channel_costs(model, size)
    cost_per_channel = {"channels": [1] * len(original), "params": [c.params for c in costs],
                        "macs": [c.macs for c in costs]}.get(target)
    shared = [(s.first, s.second, s.params if target == "params" else s.macs)
              for s in shared_channel_costs(model, size)] if target != "channels" else []
    total = {"channels": sum(original), "params": count_params(model)}.get(target)
    if target == "macs":
        total = count_macs(model, size)
    score = get_criterion(criterion) if isinstance(criterion, str) else criterion
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    current, keep, note = model, [list(range(w)) for w in original], ""
    for i in range(1, steps + 1):
        with exact_math():
            scores = score(current, x, y, batch_size=batch_size, generator=gen)
        share = ratio if i == steps else ratio * i / steps
        chosen = select_filters(scores, ratio=share, target=target, scope=scope,
                                min_channels=min_channels, round_to=round_to,
                                cost_per_channel=cost_per_channel, total_cost=total,
                                original_widths=original, shared_cost=shared)
        last = _in_original(scores, keep, original)
        keep = [[k[j] for j in kept] for k, kept in zip(keep, chosen.keep)]
        current, note = prune_model(current, chosen.keep), chosen.note
        if after_round is not None:
            current = after_round(current, i)
    return PruneResult(current, keep, last, note)


def _in_original(scores: list[torch.Tensor], keep: list[list[int]],
                 original: list[int]) -> list[torch.Tensor]:
    out = []
    for s, k, w in zip(scores, keep, original):
        full = torch.full((w,), float("nan"), dtype=torch.float64)
        full[k] = s.double().cpu()
        out.append(full)
    return out
