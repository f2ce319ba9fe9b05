"""The selection rules on constructed sweeps, against plain-loop and geometric references."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from hgsearch.analysis.select_trial import baseline_of, select_trial, versus_baseline
from hgsearch.errors import UserError


def sweep(rows: list[tuple], *, sweep_name: str = "s") -> pd.DataFrame:
    """(trial_id, acc_final, params_ratio[, status[, is_baseline]]) tuples -> trial rows."""
    full = [(*r, *("ok", False)[len(r) - 3:]) for r in rows]
    df = pd.DataFrame(full, columns=["trial_id", "acc_final", "params_ratio", "status",
                                     "is_baseline"])
    df["macs_ratio"] = df["params_ratio"] * 1.1
    df["test_acc_final"] = df["acc_final"] - 0.01
    df["sweep"] = sweep_name
    return df


BASE = ("base", 0.930, 1.0, "ok", True)


# --- knee ---------------------------------------------------------------------------------


def test_knee_picks_the_obvious_elbow_and_ignores_the_baseline():
    df = sweep([BASE, ("a", 0.925, 0.9), ("knee", 0.92, 0.35), ("c", 0.70, 0.30),
                ("d", 0.60, 0.1), ("dominated", 0.80, 0.5), ("x", 0.99, 0.2, "failed")])
    choice = select_trial(df, rule="knee")
    assert choice.trial_id == "knee"
    assert choice.row["acc_final"] == 0.92
    assert "knee" in choice.reason and "from a to d" in choice.reason


def geometric_knee(front: list[tuple[str, float, float]]) -> str:
    """Signed distance from the line through the two extremes, computed with a cross product."""
    accs = [a for _, a, _ in front]
    ratios = [r for _, _, r in front]
    # scale both to [0, 1] with 1 the best: high accuracy, low ratio
    pts = {t: ((a - min(accs)) / (max(accs) - min(accs)),
               (max(ratios) - r) / (max(ratios) - min(ratios))) for t, a, r in front}
    top = max(front, key=lambda f: f[1])[0]     # most accurate extreme
    small = min(front, key=lambda f: f[2])[0]   # smallest extreme
    (x1, y1), (x2, y2) = pts[top], pts[small]
    length = math.hypot(x2 - x1, y2 - y1)

    def signed(p):  # positive towards the ideal corner (1, 1)
        return ((x2 - x1) * (p[1] - y1) - (y2 - y1) * (p[0] - x1)) / length
    # orient so the ideal corner is on the positive side
    sign = 1.0 if signed((1.0, 1.0)) > 0 else -1.0
    return max(pts, key=lambda t: (round(sign * signed(pts[t]), 12), pts[t][0]))


@pytest.mark.parametrize("seed", range(30))
def test_knee_equals_the_farthest_point_beyond_the_extremes_line(seed):
    rng = np.random.default_rng(seed)
    n = 25
    ratio = rng.uniform(0.05, 1.0, n)
    acc = 0.95 - 0.4 * (1 - ratio) ** rng.uniform(1.5, 4) + rng.normal(0, 0.01, n)
    df = sweep([(f"t{i}", float(a), float(r)) for i, (a, r) in enumerate(zip(acc, ratio))])
    front = [(t, a, r) for t, a, r in zip(df.trial_id, df.acc_final, df.params_ratio)
             if not any(a2 >= a and r2 <= r and (a2 > a or r2 < r)
                        for a2, r2 in zip(df.acc_final, df.params_ratio))]
    if len(front) < 3:
        pytest.skip("front too small for a knee")
    assert select_trial(df, rule="knee").trial_id == geometric_knee(front)


@pytest.mark.parametrize("rows, expected, words", [
    ([("only", 0.9, 0.5), ("worse", 0.8, 0.6)], "only", "the only non-dominated trial"),
    ([("acc", 0.9, 0.5), ("small", 0.8, 0.2)], "acc", "no knee"),
    # concave front: everything below the line between the extremes
    ([("acc", 0.9, 0.9), ("mid", 0.6, 0.5), ("small", 0.5, 0.1)], "acc", "no knee"),
])
def test_knee_degenerate_fronts(rows, expected, words):
    choice = select_trial(sweep(rows), rule="knee")
    assert choice.trial_id == expected
    assert words in choice.reason


def test_knee_with_three_objectives_takes_the_largest_scaled_sum():
    df = sweep([("a", 0.9, 0.9), ("b", 0.85, 0.5), ("c", 0.5, 0.1)])
    df["macs_ratio"] = [0.9, 0.5, 0.95]
    # scaled: a (1, 0, .11) b (.875, .5, 1) c (0, 1, 0) -> b
    assert select_trial(df, rule="knee",
                  objectives="acc_final:max,params_ratio:min,macs_ratio:min").trial_id == "b"


def test_only_baselines_is_a_clear_error():
    with pytest.raises(UserError, match="baseline"):
        select_trial(sweep([BASE]), rule="knee")


# --- budget -------------------------------------------------------------------------------


def test_budget_picks_the_most_accurate_within_the_budget():
    df = sweep([BASE, ("big", 0.93, 0.8), ("fits", 0.91, 0.5), ("fits2", 0.90, 0.3),
                ("tiny", 0.7, 0.1), ("nan", 0.99, float("nan"))])
    choice = select_trial(df, rule="budget", budget=0.5, budget_column="params_ratio")
    assert choice.trial_id == "fits"  # exactly at the budget counts
    assert "params_ratio <= 0.5" in choice.reason and "next: fits2" in choice.reason
    choice = select_trial(df, rule="budget", budget=0.4, budget_column="macs_ratio")
    assert choice.trial_id == "fits2"


def test_budget_ties_go_to_the_smaller_model():
    df = sweep([("a", 0.9, 0.45), ("b", 0.9, 0.40), ("c", 0.9, 0.42)])
    assert select_trial(df, rule="budget", budget=0.5).trial_id == "b"


@pytest.mark.parametrize("seed", range(20))
def test_budget_equals_a_plain_loop(seed):
    rng = np.random.default_rng(seed)
    rows = [(f"t{i}", round(float(rng.uniform(0.5, 0.95)), 2), round(float(rng.uniform(0, 1)), 1))
            for i in range(30)]
    budget = float(rng.choice([0.2, 0.5, 0.8]))
    fits = [r for r in rows if r[2] <= budget]
    best = min(fits, key=lambda r: (-r[1], r[2], r[0]))
    assert select_trial(sweep(rows), rule="budget", budget=budget).trial_id == best[0]


def test_budget_errors_are_plain():
    df = sweep([BASE, ("a", 0.9, 0.6), ("b", 0.8, 0.55)])
    with pytest.raises(UserError, match=r"no trial has params_ratio <= 0.5.*smallest is 0.55"):
        select_trial(df, rule="budget", budget=0.5)
    with pytest.raises(UserError, match="positive number"):
        select_trial(df, rule="budget")
    with pytest.raises(UserError, match="'flops'"):
        select_trial(df, rule="budget", budget=0.5, budget_column="flops")
    df["latency_final_b1_ms"] = [1.0, float("nan"), 3.0]
    with pytest.raises(UserError, match=r"smallest is 3 \(1 have no value\)"):
        select_trial(df, rule="budget", budget=2.0, budget_column="latency_final_b1_ms")
    # a latency budget is not a ratio: any positive number of milliseconds
    assert select_trial(df, rule="budget", budget=30.0,
                  budget_column="latency_final_b1_ms").trial_id == "b"
    with pytest.raises(UserError, match=r"must be in \(0, 1\]"):
        select_trial(df, rule="budget", budget=50)


# --- max-drop -----------------------------------------------------------------------------


def test_max_drop_picks_the_smallest_within_the_allowed_drop():
    df = sweep([BASE, ("close", 0.927, 0.6), ("closer", 0.929, 0.7), ("far", 0.90, 0.2),
                ("edge", 0.925, 0.55)])
    # 0.930 - 0.927 = 0.0030000000000000027: exactly 0.3 points, allowed
    assert select_trial(df, rule="max-drop", max_drop=0.3).trial_id == "close"
    choice = select_trial(df, rule="max-drop", max_drop=0.5)
    assert choice.trial_id == "edge"
    assert "0.50 points below" in choice.reason and "93.00%" in choice.reason
    assert select_trial(df, rule="max-drop", max_drop=5).trial_id == "far"


def test_max_drop_allows_a_gain():
    df = sweep([BASE, ("better", 0.94, 0.5), ("small", 0.90, 0.3)])
    choice = select_trial(df, rule="max-drop", max_drop=0.0)
    assert choice.trial_id == "better"
    # 94.00% against the baseline's 93.00%: above it, said without a minus sign
    assert "1.00 points above the baseline" in choice.reason
    assert "below" not in choice.reason and "-1.00" not in choice.reason


@pytest.mark.parametrize("drop, words", [(1.33, "1.33 points below the baseline"),
                                         (-1.33, "1.33 points above the baseline"),
                                         (0.001, "level with the baseline")])
def test_versus_baseline_words_and_signs(drop, words):
    assert versus_baseline(drop) == words


def test_max_drop_error_says_how_far_below():
    df = sweep([BASE, ("down", 0.91, 0.5)])
    with pytest.raises(UserError, match="2.00 points below the baseline"):
        select_trial(df, rule="max-drop", max_drop=1.0)


def test_max_drop_compares_each_trial_with_its_own_sweeps_baseline():
    hard = sweep([("base", 0.70, 1.0, "ok", True), ("h", 0.69, 0.2)], sweep_name="hard")
    easy = sweep([("base_e", 0.95, 1.0, "ok", True), ("e", 0.948, 0.5)], sweep_name="easy")
    lone = sweep([("lone", 0.99, 0.01)], sweep_name=None)  # no baseline of its own
    both = pd.concat([hard, easy, lone])  # duplicate index labels, as concat leaves them
    assert select_trial(both, rule="max-drop", max_drop=1.0).trial_id == "h"
    assert baseline_of(both, both.iloc[3])["trial_id"] == "base_e"
    assert baseline_of(both, both.iloc[4]) is None


@pytest.mark.parametrize("seed", range(20))
def test_max_drop_equals_a_plain_loop(seed):
    rng = np.random.default_rng(seed)
    rows = [(f"t{i}", round(float(rng.uniform(0.85, 0.95)), 3),
             round(float(rng.uniform(0, 1)), 2)) for i in range(30)]
    # two ok baselines in one sweep: the more accurate one (listed first) is the reference
    bases = [("b2", 0.94, 1.0, "ok", True), ("b1", 0.93, 1.0, "ok", True),
             ("b3", 0.99, 1.0, "failed", True)]
    drop = float(rng.choice([0.5, 1.0, 3.0]))
    fits = [r for r in rows if (0.94 - r[1]) * 100 <= drop + 1e-9]
    df = sweep(rows + bases)
    if not fits:
        with pytest.raises(UserError, match="within"):
            select_trial(df, rule="max-drop", max_drop=drop)
        return
    best = min(fits, key=lambda r: (r[2], -r[1], r[0]))
    assert select_trial(df, rule="max-drop", max_drop=drop).trial_id == best[0]


@pytest.mark.parametrize("rows, drop, message", [
    ([("a", 0.9, 0.5)], 1.0, "needs a baseline trial"),
    ([("base", 0.93, 1.0, "failed", True), ("a", 0.9, 0.5)], 1.0, "needs a baseline trial"),
    ([BASE, ("a", 0.90, 0.5), ("b", 0.91, 0.6)], 1.0, r"closest.*b, is 2.00 points below"),
    ([BASE, ("a", 0.90, 0.5)], None, "percentage points"),
    ([BASE, ("a", 0.90, 0.5)], -1.0, "percentage points"),
])
def test_max_drop_errors_are_plain(rows, drop, message):
    with pytest.raises(UserError, match=message) as err:
        select_trial(sweep(rows), rule="max-drop", max_drop=drop)
    assert len(err.value.problems) == 1


def test_unknown_rule():
    with pytest.raises(UserError, match="knee, budget, max-drop"):
        select_trial(sweep([("a", 0.9, 0.5)]), rule="best")
    choice = select_trial(sweep([BASE, ("a", 0.929, 0.5)]), rule="max_drop", max_drop=1)
    assert choice.trial_id == "a"
