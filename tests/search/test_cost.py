"""What a sweep costs in epochs (search/cost.py), against a count of the trials one by one;
where the sampler decides a count, against every way it can decide it."""

from __future__ import annotations

import copy
import itertools

import pytest

from hgsearch import inapplicable
from hgsearch.search.cost import sweep_cost
from hgsearch.search.space_file import parse_space
from tests.search.test_space_file import VALID


def _space(num_samples: int, ladder: list[float] | None, *, share: bool = True,
           baseline: bool = True):
    data = copy.deepcopy(VALID)
    data["fixed"].update(epochs=7, finetune_epochs=3)
    data["num_samples"] = num_samples
    data["baseline"] = baseline
    data["share_dense"] = share
    if ladder:
        data["search"]["prune_ratio"] = {"ladder": ladder}
    return parse_space(data, source="test.yaml")


def _counted(num_samples: int, rungs: int, share: bool, baseline: bool) -> tuple[int, int]:
    """(plain, economical) epochs, walking the trials in the order the searcher asks them."""
    plain = economical = 0
    for i in range(num_samples):
        plain += 7 + 3
        first_of_group = i % rungs == 0
        economical += (7 if first_of_group or not share else 0) + 3
    if baseline:
        plain += 10
        economical += 10
    return plain, economical


@pytest.mark.parametrize("num_samples", [1, 4, 6, 7, 64])
@pytest.mark.parametrize("ladder", [None, [0.3, 0.5], [0.3, 0.5, 0.7, 0.8]])
@pytest.mark.parametrize("share", [True, False])
@pytest.mark.parametrize("baseline", [True, False])
def test_cost_equals_a_count_of_trials(num_samples, ladder, share, baseline):
    cost = sweep_cost(_space(num_samples, ladder, share=share, baseline=baseline))
    plain, economical = _counted(num_samples, len(ladder or [0]), share, baseline)
    assert (cost.plain_epochs, cost.economical_epochs) == ((plain,) * 2, (economical,) * 2)
    assert cost.trials == num_samples and cost.ratio == economical / plain


def _groups(num_samples: int, size: int, gets_siblings) -> list[int]:
    """Ladder groups in asking order: a parent and as many siblings as the budget leaves."""
    sizes, left, i = [], num_samples, 0
    while left > 0:
        sizes.append(min(size, left) if gets_siblings(i) else 1)
        left, i = left - sizes[-1], i + 1
    return sizes


def _space_with(num_samples: int, **changes):
    data = copy.deepcopy(VALID)
    data["fixed"].update(epochs=7, finetune_epochs=3)
    for section, entries in changes.items():
        if isinstance(entries, dict) and isinstance(data.get(section), dict):
            data[section].update(entries)
        else:
            data[section] = entries
    for key in data["search"]:
        data["fixed"].pop(key, None)
    data["num_samples"] = num_samples
    return parse_space(data, source="test.yaml")


@pytest.mark.parametrize("num_samples", [1, 3, 5])
def test_searched_epochs_give_the_range_every_draw_can_reach(num_samples):
    sp = _space_with(num_samples, search={"epochs": {"choice": [4, 9]},
                                          "prune_ratio": {"ladder": [0.3, 0.5]}},
                     baseline={"epochs": 6})
    sizes = _groups(num_samples, 2, lambda i: True)
    plains, economicals = set(), set()
    for draw in itertools.product([4, 9], repeat=len(sizes)):   # each network's epochs
        base = 6 + 3
        plains.add(sum(n * (e + 3) for n, e in zip(sizes, draw)) + base)
        economicals.add(sum(draw) + 3 * num_samples + base)
    cost = sweep_cost(sp)
    assert cost.plain_epochs == (min(plains), max(plains))
    assert cost.economical_epochs == (min(economicals), max(economicals))
    assert cost.ratio is None


@pytest.mark.parametrize("num_samples", range(1, 8))
def test_a_finetune_ladder_counts_each_networks_values(num_samples):
    values = [0, 20, 40]
    sp = _space_with(num_samples, search={"finetune_epochs": {"ladder": values}},
                     fixed={"prune_ratio": 0.5}, baseline={"finetune_epochs": 20})
    sizes = _groups(num_samples, len(values), lambda i: True)
    finetunes = set()
    for owns in itertools.product(values, repeat=len(sizes)):   # each parent's own value
        finetunes.add(sum(own + sum([v for v in values if v != own][:n - 1])
                          for n, own in zip(sizes, owns)))
    cost = sweep_cost(sp)
    base = 7 + 20
    assert cost.economical_epochs == (7 * len(sizes) + min(finetunes) + base,
                                      7 * len(sizes) + max(finetunes) + base)
    assert cost.plain_epochs == (7 * num_samples + min(finetunes) + base,
                                 7 * num_samples + max(finetunes) + base)


CONDITIONAL = {
    # under when: only trials with reg=l1 have the ladder
    "when": {"reg": {"choice": ["l1", "group_l12"]},
             "prune_ratio": {"ladder": [0.3, 0.5, 0.7], "when": {"reg": "l1"}}},
    # inapplicable: prune_scope means nothing with prune_ratio=0 (inapplicable.inapplicable_keys)
    "inapplicable": {"prune_ratio": {"choice": [0.5, 0.0]},
                     "prune_scope": {"ladder": ["global", "layer"]}},
}


@pytest.mark.parametrize("num_samples", range(1, 7))
@pytest.mark.parametrize("how", list(CONDITIONAL))
def test_a_ladder_some_trials_lack_trains_between_one_network_per_group_and_one_per_trial(
        num_samples, how):
    sp = _space_with(num_samples, search=CONDITIONAL[how])
    assert "prune_scope" in inapplicable.inapplicable_keys({"prune_ratio": 0.0})
    size = len(sp.ladder.choices)
    networks = {len(_groups(num_samples, size, lambda i, d=draw: d[i]))
                for draw in itertools.product([True, False], repeat=num_samples)}
    cost = sweep_cost(sp)
    assert cost.dense_trainings == (min(networks) + 1, max(networks) + 1)
    assert cost.economical_epochs == (7 * min(networks) + 3 * num_samples + 10,
                                      7 * max(networks) + 3 * num_samples + 10)


def test_a_ladder_every_trial_has_is_one_figure():
    sp = _space_with(6, search={"prune_ratio": {"choice": [0.5, 0.7]},
                                "prune_scope": {"ladder": ["global", "layer"]}})
    assert sweep_cost(sp).dense_trainings == (4, 4)         # 3 networks + the baseline
