"""Pareto front and hypervolume against brute force, closed forms and an exact grid count."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from hgsearch.analysis.front import (
    default_reference,
    front_table,
    hypervolume,
    hypervolume_history,
    pareto_front,
    parse_objectives,
    read_objectives,
    usable,
)
from hgsearch.errors import UserError

DIRECTION_MIXES = [("max", "min"), ("min", "min"), ("max", "max", "min"), ("min", "max", "min")]


def random_frame(seed: int, directions: tuple[str, ...], *, n: int | None = None,
                 levels: int = 4, bad: bool = True) -> pd.DataFrame:
    """Integer-valued objectives (many ties and duplicates), some failed and NaN rows."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 40)) if n is None else n
    values = rng.integers(0, levels, size=(n, len(directions))).astype(float)
    if len(values) > 2:
        values[1] = values[0]  # an exact duplicate
    df = pd.DataFrame(values, columns=[f"o{j}" for j in range(len(directions))])
    df["trial_id"] = [f"t{i}" for i in range(n)]
    df["status"] = "ok"
    if bad:
        df.loc[rng.random(n) < 0.15, "status"] = "failed"
        df.loc[rng.random(n) < 0.1, "status"] = "diverged"
        df.loc[rng.random(n) < 0.1, "o0"] = np.nan
    return df


def brute_front(df: pd.DataFrame, objs: list[tuple[str, str]]) -> set:
    """O(n^2) textbook check: a usable row is on the front unless another row dominates it."""
    rows = [(label, [r[n] if d == "max" else -r[n] for n, d in objs])
            for label, r in df.iterrows()
            if r["status"] == "ok" and all(np.isfinite(r[n]) for n, _ in objs)]
    front = set()
    for label, p in rows:
        dominated = any(all(q[j] >= p[j] for j in range(len(p))) and
                        any(q[j] > p[j] for j in range(len(p))) for _, q in rows)
        if not dominated:
            front.add(label)
    return front


@pytest.mark.parametrize("seed", range(30))
@pytest.mark.parametrize("directions", DIRECTION_MIXES)
def test_front_equals_brute_force(seed, directions):
    df = random_frame(seed, directions)
    objs = [(f"o{j}", d) for j, d in enumerate(directions)]
    expected = brute_front(df, objs)
    if not expected:
        with pytest.raises(UserError):
            pareto_front(df, objs)
        return
    front = pareto_front(df, objs)
    assert set(front.index) == expected
    ok = df["status"].eq("ok")
    assert front.attrs["excluded"].get("failed", 0) == int(df["status"].eq("failed").sum())
    assert front.attrs["excluded"].get("diverged", 0) == int(df["status"].eq("diverged").sum())
    assert front.attrs["excluded"].get("missing", 0) == int((ok & df["o0"].isna()).sum())
    assert front.attrs["usable"] + sum(front.attrs["excluded"].values()) == len(df)
    # best first in the first objective
    first = front["o0"].to_numpy() * (1 if directions[0] == "max" else -1)
    assert (np.diff(first) <= 0).all()


def test_front_with_duplicate_index_labels_from_concatenated_sweeps():
    a = random_frame(1, ("max", "min"), n=15, bad=False)
    b = random_frame(2, ("max", "min"), n=15, bad=False)
    both = pd.concat([a, b])  # index labels 0..14 twice
    objs = [("o0", "max"), ("o1", "min")]
    expected = brute_front(both.reset_index(drop=True), objs)
    got = pareto_front(both.reset_index(drop=True), objs)
    assert set(got.index) == expected
    assert len(pareto_front(both, objs)) == len(expected)


def test_objective_spellings_agree_and_bad_ones_name_the_problem():
    as_text = parse_objectives("acc_final:max, params_ratio:minimize")
    assert as_text == parse_objectives({"acc_final": "max", "params_ratio": "min"})
    assert as_text == parse_objectives([("acc_final", "maximize"), ("params_ratio", "min")])
    assert parse_objectives(None) == [("acc_final", "max"), ("params_ratio", "min")]
    with pytest.raises(UserError, match="sideways"):
        parse_objectives("acc_final:sideways")
    with pytest.raises(UserError, match="COLUMN:max"):
        parse_objectives("acc_final")
    with pytest.raises(UserError, match="given twice"):
        parse_objectives("a:max,a:min")
    df = random_frame(0, ("max", "min"))
    with pytest.raises(UserError, match="'nope'"):
        pareto_front(df, "nope:max")


def test_read_objectives_from_sweep_json(tmp_path):
    assert read_objectives(tmp_path) == [("acc_final", "max"), ("params_ratio", "min")]
    (tmp_path / "sweep.json").write_text(
        '{"objectives": [{"name": "acc_final", "direction": "max"},'
        ' {"name": "macs_ratio", "direction": "min"}], "name": "s"}')
    assert read_objectives(tmp_path) == [("acc_final", "max"), ("macs_ratio", "min")]
    (tmp_path / "sweep.json").write_text("{not json")
    with pytest.raises(UserError, match="sweep.json"):
        read_objectives(tmp_path)


@pytest.mark.parametrize("statuses", [[], ["failed", "diverged", "failed"]])
def test_nothing_usable_is_one_clear_line(statuses):
    df = pd.DataFrame({"acc_final": [0.5] * len(statuses), "params_ratio": [0.5] * len(statuses),
                       "status": pd.Series(statuses, dtype="string")})
    with pytest.raises(UserError) as err:
        pareto_front(df)
    assert len(err.value.problems) == 1 and "no usable trial" in str(err.value)
    if statuses:
        assert "2 failed" in str(err.value) and "1 diverged" in str(err.value)


def test_nullable_dtypes_as_load_results_gives_them():
    df = pd.DataFrame({
        "trial_id": pd.Series(["a", "b", "c"], dtype="string"),
        "status": pd.Series(["ok", None, "ok"], dtype="string"),
        "acc_final": [0.9, 0.95, None],
        "params_ratio": [0.5, 0.4, 0.3],
        "reg_levels": pd.Series([2, None, 1], dtype="Int64"),
    })
    front = pareto_front(df)
    assert list(front["trial_id"]) == ["a"]
    assert front.attrs["excluded"] == {"unknown": 1, "missing": 1}
    table = front_table(front)
    assert list(table.columns[:3]) == ["trial_id", "acc_final %", "params_ratio"]
    assert table["acc_final %"].iloc[0] == pytest.approx(90.0)


# --- hypervolume --------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 5, 10, 50])
def test_hypervolume_2d_staircase_closed_form(n):
    # minimize both: points (i, n-1-i), reference (n, n): n*n - n*(n-1)/2
    df = pd.DataFrame({"x": np.arange(n, dtype=float), "y": np.arange(n - 1, -1, -1.0)})
    hv = hypervolume(df, [("x", "min"), ("y", "min")], [n, n])
    assert hv == n * n - n * (n - 1) / 2
    # the same set mirrored into maximization gives the same volume
    mirrored = pd.DataFrame({"x": -df["x"], "y": -df["y"]})
    assert hypervolume(mirrored, {"x": "max", "y": "max"}, {"x": -n, "y": -n}) == hv


@pytest.mark.parametrize("k", [0, 1, 2, 4, 7])
def test_hypervolume_3d_simplex_closed_form(k):
    # minimize: all integer points with x+y+z = k, reference (k+1)^3. A unit cell with lower
    # corner c is covered iff sum(c) >= k, so the volume is (k+1)^3 - C(k+2, 3).
    pts = [p for p in itertools.product(range(k + 1), repeat=3) if sum(p) == k]
    df = pd.DataFrame(pts, columns=["a", "b", "c"], dtype=float)
    hv = hypervolume(df, "a:min,b:min,c:min", [k + 1] * 3)
    assert hv == (k + 1) ** 3 - k * (k + 1) * (k + 2) / 6


def inclusion_exclusion(points: np.ndarray, ref: np.ndarray) -> float:
    """Volume of the union of boxes [p, ref] (minimization), by inclusion-exclusion."""
    total = 0.0
    for size in range(1, len(points) + 1):
        for subset in itertools.combinations(points, size):
            corner = np.max(subset, axis=0)
            total += (-1) ** (size + 1) * np.prod(np.clip(ref - corner, 0, None))
    return total


def grid_volume(points: np.ndarray, ref: np.ndarray) -> float:
    """Exact volume by coordinate compression: sum the grid cells some point dominates."""
    axes = [np.unique(np.append(points[:, j], ref[j])) for j in range(points.shape[1])]
    axes = [a[a <= ref[j]] for j, a in enumerate(axes)]
    total = 0.0
    for cell in itertools.product(*[range(len(a) - 1) for a in axes]):
        low = np.array([axes[j][c] for j, c in enumerate(cell)])
        if ((points <= low).all(axis=1)).any():
            total += np.prod([axes[j][c + 1] - axes[j][c] for j, c in enumerate(cell)])
    return total


def as_min(df: pd.DataFrame, objs: list[tuple[str, str]], ref: list[float]):
    sign = np.array([-1.0 if d == "max" else 1.0 for _, d in objs])
    return df[[n for n, _ in objs]].to_numpy(dtype=float) * sign, np.array(ref) * sign


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("directions", DIRECTION_MIXES + [("max", "min", "max", "min")])
def test_hypervolume_equals_inclusion_exclusion(seed, directions):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 8))
    objs = [(f"o{j}", d) for j, d in enumerate(directions)]
    df = pd.DataFrame(rng.random((n, len(objs))), columns=[n for n, _ in objs])
    ref = [0.0 if d == "max" else 1.0 for d in directions]
    ref[0] = 0.3 if directions[0] == "max" else 0.7  # some points fall outside the box
    points, r = as_min(df, objs, ref)
    assert hypervolume(df, objs, ref) == pytest.approx(inclusion_exclusion(points, r), abs=1e-12)


@pytest.mark.parametrize("seed", range(15))
@pytest.mark.parametrize("directions", [("max", "min"), ("min", "max", "min")])
def test_hypervolume_equals_grid_count_with_ties(seed, directions):
    df = random_frame(seed, directions, n=25, levels=5, bad=False)
    objs = [(f"o{j}", d) for j, d in enumerate(directions)]
    ref = [-1.0 if d == "max" else 5.0 for d in directions]
    points, r = as_min(df, objs, ref)
    assert hypervolume(df, objs, ref) == pytest.approx(grid_volume(points, r), abs=1e-9)


def test_default_reference_and_points_outside_it():
    df = pd.DataFrame({"acc_final": [0.9, 0.5], "params_ratio": [0.4, 1.2],
                       "latency_final_b1_ms": [3.0, 5.0], "status": ["ok", "ok"]})
    objs = [("acc_final", "max"), ("params_ratio", "min"), ("latency_final_b1_ms", "min")]
    assert default_reference(df, objs) == [0.0, 1.0, 5.0]
    # the second trial is beyond the reference ratio: it adds nothing
    assert hypervolume(df, objs[:2]) == pytest.approx(0.9 * 0.6)
    assert hypervolume(df, objs) == pytest.approx(0.9 * 0.6 * 2.0)
    with pytest.raises(UserError, match="reference"):
        hypervolume(df, objs[:2], [0.0])


# --- hypervolume history ------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("directions", [("max", "min"), ("max", "min", "min")])
def test_history_is_the_hypervolume_of_each_prefix(seed, directions):
    df = random_frame(seed, directions, n=30)
    if not brute_front(df, [(f"o{j}", d) for j, d in enumerate(directions)]):
        return
    objs = [(f"o{j}", d) for j, d in enumerate(directions)]
    rng = np.random.default_rng(seed)
    minutes = rng.permutation(len(df))
    # mixed offsets: lexicographic order of these strings is not their time order
    df["finished_at"] = [f"2026-01-01T{1 + m // 60:02d}:{m % 60:02d}:00+01:00" if m % 2 else
                         f"2026-01-01T00:{m % 60:02d}:30+00:00" for m in minutes]
    ref = [-1.0 if d == "max" else 4.0 for d in directions]
    history = hypervolume_history(df, objs, ref)
    assert len(history) == len(df)
    assert (np.diff(history.to_numpy()) >= -1e-12).all()
    seconds = [int(m) * 60 + (0 if m % 2 else 30) for m in minutes]
    order = np.argsort(seconds, kind="stable")
    assert list(history.index) == list(df.index[order])
    for k in range(1, len(df) + 1):
        prefix = df.iloc[order[:k]]
        ok = prefix["status"].eq("ok") & prefix["o0"].notna()
        expected = hypervolume(prefix, objs, ref) if ok.any() else 0.0
        assert history.iloc[k - 1] == pytest.approx(expected, abs=1e-12)
    assert history.iloc[-1] == pytest.approx(hypervolume(df, objs, ref))


def test_history_order_column_must_exist():
    df = random_frame(3, ("max", "min"), bad=False)
    with pytest.raises(UserError, match="order_by"):
        hypervolume_history(df, "o0:max,o1:min", order_by="finished_at")
    assert len(hypervolume_history(df, "o0:max,o1:min", [-1, 9], order_by=None)) == len(df)


def test_usable_counts_and_casts():
    df = pd.DataFrame({"acc_final": ["0.5", None, 0.7], "params_ratio": [0.1, 0.2, 0.3],
                       "status": ["ok", "ok", "failed"]})
    rows = usable(df)
    assert len(rows) == 1 and rows["acc_final"].dtype == float
    assert rows.attrs["excluded"] == {"failed": 1, "missing": 1}
