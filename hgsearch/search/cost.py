"""What a sweep costs in training epochs, before it runs: plain against economical.

One epoch is one pass over the training images, of the dense network (HGSR training) or of a
pruned one (fine-tuning, counted as a full epoch although a pruned network is cheaper). A plain
sweep trains every trial's network from scratch; an economical one (``share_dense``) trains
each dense network once for all the values of its prune ladder. Where the space leaves a count
to the sampler (searched ``epochs`` or ``finetune_epochs``, a ladder that some trials go
without), the cost is a range: the least and the most it can be, counting every network drawn
as new (two trials drawing equal dense keys train once, and cost less). A network that
diverges or is stopped early gives its ladder's trials to new networks, and early stopping
saves a hopeless network's remaining epochs: both move the economical figure either way.
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple

from hgsearch import config, inapplicable
from hgsearch.search.space import Param, Space

Span = tuple[int, int]          # (least, most)


class SweepCost(NamedTuple):
    trials: int                  # searched trials (rows), the baseline not counted
    dense_trainings: Span        # dense networks trained, the baseline's included
    plain_epochs: Span           # every trial trains and fine-tunes its own network
    economical_epochs: Span      # each dense network trained once, every trial fine-tuned

    @property
    def ratio(self) -> float | None:
        """economical / plain, when both are one figure."""
        exact = self.plain_epochs[0] == self.plain_epochs[1] \
            and self.economical_epochs[0] == self.economical_epochs[1]
        return self.economical_epochs[0] / self.plain_epochs[0] if exact else None


def _span(sp: Space, name: str) -> Span:
    """The least and the most a searched trial's integer key ``name`` can be."""
    param = next((p for p in sp.params if p.key == name), None)
    fixed = int(sp.fixed.get(name, config.FIELDS[name].default))
    if param is None:
        return fixed, fixed
    values = [int(v) for v in param.choices] if param.choices else [int(param.low),
                                                                     int(param.high)]
    if param.when:      # not searched in every trial: those take the fixed value
        values.append(fixed)
    return min(values), max(values)


def _ladder_sum(param: Param, trials: int) -> Span:
    """Fine-tuning epochs of ``trials`` trials laddered over finetune_epochs: each network takes
    every value once; the last, partial group its parent's value and the next ones in file
    order (ladder.record), which the parent's value decides."""
    values = [int(v) for v in param.choices]
    full, rest = divmod(trials, len(values))
    if not rest:
        return (full * sum(values),) * 2
    partial = [own + sum([v for v in values if v != own][:rest - 1]) for own in values]
    return full * sum(values) + min(partial), full * sum(values) + max(partial)


def _candidates(sp: Space, p: Param) -> list:
    """Values of ``p`` that decide which keys apply: its choices or bounds (and 0 inside
    them), and the fixed value where it is searched only under a condition."""
    values = list(p.choices) if p.choices else [p.low, p.high] + (
        [0] if p.low <= 0 <= p.high else [])
    return values + ([sp.fixed.get(p.key, config.FIELDS[p.key].default)] if p.when else [])


def ladder_may_be_off(sp: Space, limit: int = 4096) -> bool:
    """Whether a trial can go without the ladder key (its ``when`` fails, or the keys drawn
    before it make it inapplicable, ``inapplicable.inapplicable_keys``): its network then has no
    siblings. Decided over the deciding values of those keys; past ``limit`` combinations,
    assumed so."""
    ladder = sp.ladder
    if ladder is None or ladder.when:
        return ladder is not None
    before = list(itertools.takewhile(lambda p: p is not ladder, sp.params))
    options = [_candidates(sp, p) for p in before]
    if math.prod(len(o) for o in options) > limit:
        return True
    return any(ladder.key in inapplicable.inapplicable_keys(
        {**sp.fixed, **{p.key: v for p, v in zip(before, combo)}})
        for combo in itertools.product(*options))


def _times(n: int, span: Span) -> Span:
    return n * span[0], n * span[1]


def _add(*spans: Span) -> Span:
    return sum(s[0] for s in spans), sum(s[1] for s in spans)


def sweep_cost(sp: Space) -> SweepCost:
    """The epochs the sweep of ``sp`` costs, with and without sharing dense training."""
    n, ladder = sp.num_samples, sp.ladder
    epochs = _span(sp, "epochs")
    off = ladder_may_be_off(sp)
    if ladder is not None and ladder.key == "finetune_epochs" and not off:
        finetune = _ladder_sum(ladder, n)
    else:
        finetune = _times(n, _span(sp, "finetune_epochs"))
    base = (0, 0)
    if sp.baseline is not None:
        both = {k: int(sp.baseline.get(k, sp.fixed.get(k, config.FIELDS[k].default)))
                for k in ("epochs", "finetune_epochs")}
        base = (sum(both.values()),) * 2
    if not sp.share_dense:
        networks = (n, n)
    elif ladder is None:
        networks = (n, n)       # at most: equal dense keys drawn twice train once
    else:
        grouped = math.ceil(n / len(ladder.choices))
        networks = (grouped, n if off else grouped)
    plain = _add(_times(n, epochs), finetune, base)
    economical = _add((networks[0] * epochs[0], networks[1] * epochs[1]), finetune, base)
    extra = 1 if sp.baseline is not None else 0
    return SweepCost(trials=n, dense_trainings=(networks[0] + extra, networks[1] + extra),
                     plain_epochs=plain, economical_epochs=economical)


def _figure(span: Span) -> str:
    return f"{span[0]:,}" if span[0] == span[1] else f"{span[0]:,} to {span[1]:,}"


def describe_cost(sp: Space) -> str:
    """One line for ``hgsearch validate``."""
    cost = sweep_cost(sp)
    base = " + baseline" if sp.baseline is not None else ""
    ratio = f"x{cost.ratio:.2f}; " if cost.ratio is not None else ""
    return (f"  cost:       {_figure(cost.economical_epochs)} epochs "
            f"({_figure(cost.dense_trainings)} dense trainings for {cost.trials} trials{base}); "
            f"without sharing {_figure(cost.plain_epochs)} ({ratio}stopped or diverged "
            "networks change it)")
