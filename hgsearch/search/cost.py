"""What a sweep costs in training epochs, before it runs: plain against economical.

One epoch is one pass over the training images, of the dense network (HGSR training) or of a
pruned one (fine-tuning, counted as a full epoch although a pruned network is cheaper). A plain
sweep trains every trial's network from scratch; an economical one (``share_dense``) trains
each dense network once for all the values of its prune ladder. Early stopping saves more, but
how much depends on the data: the economical figure is the most it can cost.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from hgsearch import config
from hgsearch.search.space import Space


class SweepCost(NamedTuple):
    trials: int                  # searched trials (rows), the baseline not counted
    dense_trainings: int         # dense networks trained, the baseline's included
    plain_epochs: int            # every trial trains and fine-tunes its own network
    economical_epochs: int       # each dense network trained once, every trial fine-tuned

    @property
    def ratio(self) -> float:
        return self.economical_epochs / self.plain_epochs


def ladder_length(sp: Space) -> int:
    """Values of the space's prune ladder (1 when it has none)."""
    return max([len(p.choices) for p in sp.params if p.kind == "ladder"] or [1])


def sweep_cost(sp: Space) -> SweepCost:
    """The epochs the sweep of ``sp`` costs, with and without sharing dense training."""
    def key(name: str) -> int:
        return int(sp.fixed.get(name, config.FIELDS[name].default))

    epochs, finetune = key("epochs"), key("finetune_epochs")
    base = 1 if sp.baseline is not None else 0
    plain = (sp.num_samples + base) * (epochs + finetune)
    networks = math.ceil(sp.num_samples / ladder_length(sp)) if sp.share_dense \
        else sp.num_samples
    economical = (networks + base) * epochs + (sp.num_samples + base) * finetune
    return SweepCost(trials=sp.num_samples, dense_trainings=networks + base,
                     plain_epochs=plain, economical_epochs=economical)


def describe_cost(sp: Space) -> str:
    """One line for ``hgsearch validate``."""
    cost = sweep_cost(sp)
    base = " + baseline" if sp.baseline is not None else ""
    return (f"  cost:       {cost.economical_epochs:,} epochs ({cost.dense_trainings} dense "
            f"trainings for {cost.trials} trials{base}); without sharing "
            f"{cost.plain_epochs:,} (x{cost.ratio:.2f}; early stopping saves more)")
