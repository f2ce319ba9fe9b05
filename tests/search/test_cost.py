"""What a sweep costs in epochs (search/cost.py), against a count of the trials one by one."""

from __future__ import annotations

import copy

import pytest

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
    assert (cost.plain_epochs, cost.economical_epochs) == (plain, economical)
    assert cost.trials == num_samples
