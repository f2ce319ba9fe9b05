"""A pruned trial against its controls (hgsearch/analysis/controls.py), on hand-made rows whose
standard errors are worked out here in closed form."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from hgsearch.analysis.controls import (
    compare,
    comparison_lines,
    controls_on_axes,
    controls_table,
    standard_error,
)
from hgsearch.analysis.front import pareto_front
from hgsearch.analysis.report import render_report
from hgsearch.analysis.select_trial import select_trial
from hgsearch.results import typed


def _rows() -> pd.DataFrame:
    base = {"status": "ok", "val_images": 1000, "arch": "resnet20", "sweep": "s"}
    return typed(pd.DataFrame([
        {**base, "trial_id": "t0000", "acc_final": 0.90, "params_ratio": 0.5,
         "params_dense": 1000, "params_final": 500, "macs_dense": 100, "macs_final": 40},
        {**base, "trial_id": "t0001", "acc_final": 0.80, "params_ratio": 0.3,
         "params_dense": 1000, "params_final": 300, "macs_dense": 100, "macs_final": 30},
        # controls better than anything: still never on the front, never chosen
        {**base, "trial_id": "t0000-scratch", "control": "scratch", "control_of": "t0000",
         "acc_final": 0.85, "params_ratio": 1.0, "params_final": 500, "macs_final": 40},
        {**base, "trial_id": "t0000-uniform", "control": "uniform", "control_of": "t0000",
         "acc_final": 0.91, "params_ratio": 1.0, "params_final": 495, "macs_final": 41},
        {**base, "trial_id": "t0001-uniform", "control": "uniform", "control_of": "t0001",
         "acc_final": 0.99, "params_ratio": 0.01, "params_final": 300, "macs_final": 30},
    ]))


@pytest.mark.parametrize("p,n,expected", [(0.9, 1000, math.sqrt(0.09 / 1000)), (0.5, 4, 0.25),
                                          (1.0, 50, 0.0), (0.3, 0, math.nan)])
def test_standard_error_is_the_binomial_one(p, n, expected):
    assert standard_error(p, n) == pytest.approx(expected, nan_ok=True)


def test_controls_are_neither_on_the_front_nor_chosen():
    rows = _rows()
    front = pareto_front(rows)
    assert set(front.trial_id) == {"t0000", "t0001"}
    assert front.attrs["excluded"] == {"controls": 3}
    assert select_trial(rows, rule="budget", budget=1.0).trial_id == "t0000"


def test_the_comparison_in_points_with_closed_form_errors():
    rows = _rows()
    chosen = rows.set_index("trial_id", drop=False).loc["t0000"]
    found = {c.kind: c for c in compare(rows, chosen)}
    se = {a: math.sqrt(a * (1 - a) / 1000) for a in (0.90, 0.85, 0.91)}
    assert found["scratch"].ahead == pytest.approx(0.05)
    assert found["scratch"].ahead_se == pytest.approx(math.sqrt(se[0.90] ** 2 + se[0.85] ** 2))
    assert found["scratch"].clear and not found["uniform"].clear
    text = "\n".join(comparison_lines(rows, chosen))
    assert "the selection 90.00% +- 0.95" in text
    assert "scratch (its widths from scratch, t0000-scratch): 85.00% +- 1.13; the selection " \
        "beats it by 5.00 +- 1.47 points\n" in text + "\n"
    assert "91.00% +- 0.90; the selection falls short of it by 1.00 +- 1.31 points, within 2 " \
        "standard errors: noise, not a result" in text
    assert "t0001" not in text


def test_controls_sit_on_the_axes_of_their_trial_and_in_the_report(tmp_path):
    rows = _rows()
    axes = controls_on_axes(rows).set_index("trial_id")
    assert axes.loc["t0000-uniform", "params_ratio"] == pytest.approx(0.495)
    assert axes.loc["t0000-uniform", "macs_ratio"] == pytest.approx(0.41)
    assert list(controls_table(rows, ["t0001"]).trial_id) == ["t0001-uniform"]
    chosen = select_trial(rows, rule="budget", budget=0.5)
    page = render_report(rows, results_dir=tmp_path, selection=chosen)
    assert "control: scratch" in page and "control: uniform" in page     # on the trade-offs
    assert "<h3>Controls of the front's trials</h3>" in page
    assert "the selection beats it by 5.00 +- 1.47 points" in page
