"""Pareto front and hypervolume of a sweep's trials, on plain pandas DataFrames.

A trial is usable when its ``status`` is ``"ok"``, every objective is a number and it is
neither a control (``results.control_mask``) nor a confirmation seed (``results.confirm_mask``);
the other rows are left out and counted. Every function takes a DataFrame (one row per trial,
as ``hgsearch.results.load_results`` returns), so several sweeps concatenated in pandas, or a
sweep still running, are analysed the same way. Objectives
are a list of ``(column, "max"|"min")`` pairs, a dict ``{column: direction}`` or the text
``"acc_final:max,params_ratio:min"``.

Hypervolume is computed exactly by moocore (López-Ibáñez et al.'s C library for multi-objective
performance assessment: the 2-D sweep, the 3-D algorithm of Beume et al. and WFG above), which is
small (numpy, cffi), maintained and faster than code of our own; Optuna's implementation is
private API. The tests check it against inclusion-exclusion and an exact grid count.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from hgsearch.errors import UserError
from hgsearch.objectives import DIRECTIONS
from hgsearch.results import confirm_mask, control_mask

Objectives = list[tuple[str, str]]
ObjectivesLike = Sequence[tuple[str, str]] | Mapping[str, str] | str | None

DEFAULT_OBJECTIVES: Objectives = [("acc_final", "max"), ("params_ratio", "min")]


def parse_objectives(objectives: ObjectivesLike) -> Objectives:
    """Normalize any accepted spelling of objectives to ``[(column, "max"|"min"), ...]``."""
    if objectives is None:
        return list(DEFAULT_OBJECTIVES)
    if isinstance(objectives, str):
        pairs = []
        for item in objectives.split(","):
            name, sep, direction = item.strip().rpartition(":")
            if not sep or not name:
                raise UserError(f"objectives {objectives!r}: expected COLUMN:max|min[,...], "
                                "e.g. acc_final:max,params_ratio:min")
            pairs.append((name.strip(), direction.strip()))
    elif isinstance(objectives, Mapping):
        pairs = list(objectives.items())
    else:
        pairs = [tuple(p) for p in objectives]
    out: Objectives = []
    for pair in pairs:
        if len(pair) != 2:
            raise UserError(f"objective {pair!r}: expected a (column, 'max'|'min') pair")
        name, direction = pair
        if str(direction).lower() not in DIRECTIONS:
            raise UserError(f"objective {name}: direction {direction!r} is not max or min")
        if name in (n for n, _ in out):
            raise UserError(f"objective {name}: given twice")
        out.append((str(name), DIRECTIONS[str(direction).lower()]))
    if not out:
        raise UserError("objectives: at least one COLUMN:max|min is needed")
    return out


def read_objectives(results_dir: str | Path) -> Objectives:
    """The objectives of RESULTS/sweep.json, or the defaults (acc_final max, params_ratio min)."""
    path = Path(results_dir) / "sweep.json"
    if not path.is_file():
        return list(DEFAULT_OBJECTIVES)
    try:
        data = json.loads(path.read_text())
        items = data.get("objectives") if isinstance(data, dict) else None
        if items is None:
            return list(DEFAULT_OBJECTIVES)
        return parse_objectives([(o["name"], o["direction"]) for o in items])
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
        raise UserError(f"{path}: expected JSON with \"objectives\": [{{\"name\": COLUMN, "
                        "\"direction\": \"max\"|\"min\"}, ...]") from None


def _usable_mask(df: pd.DataFrame, objs: Objectives) -> tuple[np.ndarray, dict[str, int]]:
    """Positional mask of usable rows and the counts of the others, by reason."""
    for name, _ in objs:
        if name not in df.columns:
            numeric = [c for c in df.columns if pd.api.types.is_numeric_dtype(df[c])]
            raise UserError(f"objective {name!r}: no such column in the results; numeric "
                            f"columns are {', '.join(map(str, numeric)) or 'none'}")
    status = df["status"] if "status" in df.columns else pd.Series("ok", index=df.index)
    control = control_mask(df)      # references trained from scratch, never on the front
    repeat = confirm_mask(df) & ~control     # confirmation seeds (search/confirm.py): neither
    ok = status.eq("ok").fillna(False).to_numpy(dtype=bool) & ~control & ~repeat
    finite = np.isfinite(_numbers(df, objs)).all(axis=1)
    excluded = {str(k): int(v) for k, v in
                status[~ok & ~control & ~repeat].fillna("unknown").value_counts().items()}
    if control.any():
        excluded["controls"] = int(control.sum())
    if repeat.any():
        excluded["confirmation seeds"] = int(repeat.sum())
    if (ok & ~finite).any():
        excluded["missing"] = int((ok & ~finite).sum())
    if not (ok & finite).any():
        found = ", ".join(f"{v} {k}" for k, v in excluded.items()) or "none"
        names = ", ".join(n for n, _ in objs)
        raise UserError(f"no usable trial among {len(df)} rows (left out: {found}); a trial "
                        f"needs status ok and a value for {names}")
    return ok & finite, excluded


def _numbers(df: pd.DataFrame, objs: Objectives) -> np.ndarray:
    """(n, d) float array of the objective columns; anything not a number becomes NaN."""
    cols = [pd.to_numeric(df[n], errors="coerce").to_numpy(dtype=float) for n, _ in objs]
    return np.stack(cols, axis=1)


def left_out(n_usable: int, excluded: Mapping[str, int]) -> str:
    """'8 usable trials (status ok, every objective set); left out: 1 failed, 1 diverged.'

    The one wording of these counts, shared by ``hgsearch front``, ``select`` and the report.
    """
    left = ", ".join(f"{v} {k}" for k, v in excluded.items()) or "none"
    return f"{n_usable} usable trials (status ok, every objective set); left out: {left}."


def usable(df: pd.DataFrame, objectives: ObjectivesLike = None) -> pd.DataFrame:
    """The rows with status "ok" and a number in every objective, objectives cast to float.

    A frame without a ``status`` column counts every row as ok. ``result.attrs["excluded"]``
    counts the rows left out by reason: each status other than "ok" by name, and "missing" for
    ok rows lacking an objective value. Raises UserError when no row is usable.
    """
    objs = parse_objectives(objectives)
    mask, excluded = _usable_mask(df, objs)
    out = df[mask].copy()
    values = _numbers(df, objs)[mask]
    for j, (name, _) in enumerate(objs):
        out[name] = values[:, j]
    out.attrs = {"excluded": excluded}
    return out


def goodness(df: pd.DataFrame, objectives: Objectives) -> np.ndarray:
    """(n, d) array in which larger is better in every column: min objectives are negated."""
    signs = np.array([1.0 if d == "max" else -1.0 for _, d in objectives])
    return _numbers(df, objectives) * signs


def nondominated_mask(points: np.ndarray) -> np.ndarray:
    """True for the rows of ``points`` (larger is better) that no other row dominates.

    A row dominates another when it is at least as good everywhere and better somewhere, so
    duplicates of a front point all stay on the front. Rows are visited best-first in
    lexicographic order; a dominator always comes earlier in that order, and by transitivity it
    suffices to compare against the front found so far (O(n * front size)).
    """
    n = len(points)
    order = np.lexsort(points.T[::-1] * -1.0) if n else np.empty(0, dtype=int)
    mask = np.zeros(n, dtype=bool)
    front = np.empty((0, points.shape[1]))
    for i in order:
        p = points[i]
        if front.size and ((front >= p).all(axis=1) & (front > p).any(axis=1)).any():
            continue
        mask[i] = True
        front = np.vstack([front, p])
    return mask


def pareto_front(df: pd.DataFrame, objectives: ObjectivesLike = None) -> pd.DataFrame:
    """The non-dominated usable trials, best first in the first objective.

    Rows keep their index labels and all columns. ``result.attrs["excluded"]`` counts the rows
    left out before the dominance test (see ``usable``), ``result.attrs["usable"]`` the rows
    the front was taken from and ``result.attrs["objectives"]`` the normalized objectives.
    """
    objs = parse_objectives(objectives)
    rows = usable(df, objs)
    front = rows[nondominated_mask(goodness(rows, objs))]
    key = goodness(front, objs)
    front = front.iloc[np.lexsort(key.T[::-1] * -1.0)] if len(front) else front
    front.attrs = {"excluded": rows.attrs["excluded"], "usable": len(rows), "objectives": objs}
    return front


def default_reference(df: pd.DataFrame, objectives: ObjectivesLike = None) -> list[float]:
    """A reference point every sensible trial beats, one value per objective.

    Accuracies to maximize (columns starting with ``acc`` or ``test_acc``): 0. Ratios to
    minimize (columns ending in ``_ratio``, a fraction of the dense network): 1.0. Any other
    objective: the worst value among the usable rows, so trials at that value add no volume.
    Fixed values make hypervolumes of different sweeps comparable.
    """
    objs = parse_objectives(objectives)
    ref = []
    for name, direction in objs:
        if direction == "max" and name.startswith(("acc", "test_acc")):
            ref.append(0.0)
        elif direction == "min" and name.endswith("_ratio"):
            ref.append(1.0)
        else:
            values = usable(df, objs)[name]
            ref.append(float(values.min() if direction == "max" else values.max()))
    return ref


def _reference_goodness(df: pd.DataFrame, objs: Objectives,
                        reference: Sequence[float] | Mapping[str, float] | None) -> np.ndarray:
    if reference is None:
        reference = default_reference(df, objs)
    if isinstance(reference, Mapping):
        missing = [n for n, _ in objs if n not in reference]
        if missing:
            raise UserError(f"reference: no value for objective {missing[0]}")
        reference = [reference[n] for n, _ in objs]
    ref = [float(v) for v in reference]
    if len(ref) != len(objs) or not all(math.isfinite(v) for v in ref):
        raise UserError(f"reference {list(reference)}: expected {len(objs)} finite numbers, "
                        f"one per objective ({', '.join(n for n, _ in objs)})")
    return np.array([v * (1.0 if d == "max" else -1.0) for v, (_, d) in zip(ref, objs)])


def _hv(points: np.ndarray, ref: np.ndarray) -> float:
    """Exact volume dominated by ``points`` and bounded by ``ref``, larger is better in each."""
    import moocore  # imported here: the CLI's parser must not pay for it

    if len(points) == 0:
        return 0.0
    return float(moocore.hypervolume(points, ref=ref, maximise=True))


def hypervolume(df: pd.DataFrame, objectives: ObjectivesLike = None,
                reference: Sequence[float] | Mapping[str, float] | None = None) -> float:
    """Volume of objective space dominated by the usable trials and bounded by ``reference``.

    ``reference`` is one value per objective in the objectives' own units and directions
    (None: ``default_reference``). Trials not strictly better than the reference in every
    objective add nothing. Exact for any number of objectives (moocore); instant for 2 and 3
    objectives and thousands of trials.
    """
    objs = parse_objectives(objectives)
    rows = usable(df, objs)
    ref = _reference_goodness(df, objs, reference)
    points = goodness(rows, objs)
    points = points[(points > ref).all(axis=1)]
    return _hv(points[nondominated_mask(points)], ref)


def completion_order(df: pd.DataFrame, order_by: str | None = "finished_at") -> np.ndarray:
    """Row positions of ``df`` sorted by ``order_by`` (ISO timestamps parsed; missing last)."""
    if order_by is None:
        return np.arange(len(df))
    if order_by not in df.columns:
        raise UserError(f"order_by={order_by!r}: no such column in the results")
    key = df[order_by]
    if not pd.api.types.is_numeric_dtype(key):
        key = pd.to_datetime(key, utc=True, format="ISO8601", errors="coerce")
    key = key.reset_index(drop=True)
    return key.sort_values(kind="stable", na_position="last").index.to_numpy()


def hypervolume_history(df: pd.DataFrame, objectives: ObjectivesLike = None,
                        reference: Sequence[float] | Mapping[str, float] | None = None, *,
                        order_by: str | None = "finished_at") -> pd.Series:
    """The hypervolume of the trials finished so far, after each trial in ``order_by`` order.

    One value per row of ``df``, failed rows included (they leave it unchanged), indexed by the
    rows' index labels in that order. The reference is fixed for the whole history (None: the
    default of the whole frame), so the series never decreases (up to float rounding).
    """
    objs = parse_objectives(objectives)
    mask, _ = _usable_mask(df, objs)
    ref = _reference_goodness(df, objs, reference)
    points = goodness(df, objs)
    front = np.empty((0, len(objs)))
    current, values = 0.0, []
    order = completion_order(df, order_by)
    for i in order:
        p = points[i]
        if mask[i] and (p > ref).all():
            dominated = ((front >= p).all(axis=1) & (front > p).any(axis=1)).any()
            if not dominated:
                keep = ~((p >= front).all(axis=1) & (p > front).any(axis=1))
                front = np.vstack([front[keep], p])
                current = _hv(front, ref)
        values.append(current)
    return pd.Series(values, index=df.index[order], name="hypervolume", dtype=float)


# Accuracy before pruning, right after it, and after fine-tuning: how much fine-tuning recovered.
RECOVERY = ("acc_dense", "acc_pruned", "acc_final")


def front_table(front: pd.DataFrame, objectives: ObjectivesLike = None,
                keys: Sequence[str] | None = None) -> pd.DataFrame:
    """A readable copy of a front: trial, objectives, the accuracies of ``RECOVERY``, test
    accuracy and the searched ``keys`` (None: the trial keys that vary among ``front``'s rows).

    Accuracy columns (``acc*``, ``test_acc*``) become percentages named ``<column> %``; the
    other values stay as stored. Columns the rows lack are left out.
    """
    from hgsearch.analysis.tables import searched_keys

    objs = parse_objectives(objectives)
    keys = searched_keys(front) if keys is None else list(keys)
    cols = ["trial_id", *[n for n, _ in objs], *RECOVERY, "test_acc_final", *keys]
    cols = list(dict.fromkeys(cols))
    table = pd.DataFrame(index=front.index)
    for col in cols:
        if col not in front.columns:
            continue
        if col.startswith(("acc", "test_acc")):
            table[f"{col} %"] = pd.to_numeric(front[col], errors="coerce") * 100.0
        else:
            table[col] = front[col]
    return table.reset_index(drop=True)


def format_table(table: pd.DataFrame) -> pd.DataFrame:
    """Text for printing ``front_table``: percentages to 2 decimals, ratios to 3, lam as 1e-4."""
    def cell(col: str, v: object) -> str:
        if v is None or v is pd.NA or (isinstance(v, float) and not math.isfinite(v)):
            return "-"
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (float, np.floating)):
            return str(v)
        if col.endswith(" %"):
            return f"{v:.2f}"
        if col.endswith("_ratio"):
            return f"{v:.3f}"
        return f"{v:.3g}"

    return pd.DataFrame({c: [cell(c, v) for v in table[c]] for c in table.columns})
