"""row_warnings: the trial-level warnings a row carries (results.py), with their thresholds."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from hgsearch.results import CHANCE_FACTOR, row_warnings

PROXIMAL = {"reg": "group_l12", "lam": 1e-3, "reg_solver": "proximal", "num_classes": 10,
            "acc_final": 0.9, "zero_filter_fraction": 0.0}


def test_proximal_without_exact_zeros_is_flagged_and_only_then():
    assert len(row_warnings(PROXIMAL)) == 1 and "no exactly-zero filter" in row_warnings(
        PROXIMAL)[0]
    assert row_warnings({**PROXIMAL, "zero_filter_fraction": 0.05}) == []
    assert row_warnings({**PROXIMAL, "reg_solver": "subgradient"}) == []
    assert row_warnings({**PROXIMAL, "reg": "none"}) == []
    assert row_warnings({**PROXIMAL, "lam": 0.0}) == []
    assert row_warnings({**PROXIMAL, "zero_filter_fraction": None}) == []
    # nulls as a typed frame holds them (pd.NA) say nothing and raise nothing
    assert row_warnings({**PROXIMAL, "reg": pd.NA, "reg_solver": pd.NA, "lam": pd.NA}) == []


@pytest.mark.parametrize("classes", [10, 100, 200])
def test_chance_accuracy_is_flagged_at_the_stated_threshold(classes):
    limit = CHANCE_FACTOR / classes
    row = {"reg": "none", "num_classes": classes}
    assert any("at chance" in w for w in row_warnings({**row, "acc_final": limit}))
    assert any("at chance" in w for w in row_warnings({**row, "acc_final": 1 / classes}))
    assert row_warnings({**row, "acc_final": limit * 1.01}) == []
    assert row_warnings({**row, "acc_final": math.nan}) == []
    assert row_warnings({"acc_final": 0.01}) == []       # no num_classes: nothing to say
