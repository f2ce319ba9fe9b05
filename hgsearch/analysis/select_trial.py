"""Pick one trial from a sweep: the knee of the front, the best under a budget, or the smallest
within an accuracy drop of the baseline. All rules judge validation accuracy (``acc_final``).

The candidates are the usable trials (status ok, objectives set) that are not the sweep's
baseline (``is_baseline``): the baseline is the unpruned reference, not a result of the search.
Ties go to the more accurate trial, then the smaller one (params_ratio), then the smaller
trial_id, so a choice is reproducible.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from hgsearch.analysis.front import (
    ObjectivesLike,
    goodness,
    nondominated_mask,
    parse_objectives,
    usable,
)
from hgsearch.errors import UserError
from hgsearch.results import baseline_mask

RULES = ("knee", "budget", "max-drop")
# A drop computed from two fractions carries rounding (0.930 - 0.927 = 0.0030000000000000027);
# it should not cost a trial that sits exactly at the allowed drop or budget.
_SLACK = 1e-9


@dataclass(frozen=True, eq=False)
class TrialChoice:
    """The chosen trial: its id, its full row, the rule and why it was chosen, in plain words."""

    trial_id: str
    row: pd.Series
    rule: str
    reason: str
    settings: dict[str, Any] = field(default_factory=dict)


def select_trial(df: pd.DataFrame, *, rule: str = "knee", objectives: ObjectivesLike = None,
                 budget: float | None = None, budget_column: str = "params_ratio",
                 max_drop: float | None = None) -> TrialChoice:
    """Choose one trial of ``df`` by ``rule``; raise UserError when none qualifies.

    - ``knee``: on the Pareto front of ``objectives`` (default acc_final max, params_ratio min),
      each objective scaled to [0, 1] over the front with 1 the best, the trial farthest beyond
      the line between the two extremes, towards the ideal corner. With 2 objectives that line
      is x + y = 1, so this is the largest sum of scaled objectives; with more objectives we
      take the same largest sum (the farthest beyond the plane through the ideal's unit
      corners), with one objective the best trial.
    - ``budget``: the most accurate trial with ``budget_column`` (params_ratio, macs_ratio or any
      numeric column, e.g. a latency) at most ``budget``.
    - ``max-drop``: the smallest trial (params_ratio) whose accuracy is at most ``max_drop``
      percentage points below its sweep's baseline trial (``is_baseline``; the most accurate
      one where a sweep has several). Trials of a sweep without a baseline are not candidates.
    """
    rule = rule.replace("_", "-")
    if rule not in RULES:
        raise UserError(f"rule={rule!r}: allowed rules are {', '.join(RULES)}")
    if rule == "knee":
        return _knee(df, parse_objectives(objectives))
    if rule == "budget":
        if budget is None or not np.isfinite(budget) or budget <= 0:
            raise UserError(f"budget={budget!r}: rule budget needs a positive number, "
                            "e.g. --budget 0.5 (at most half the dense parameters)")
        if budget_column.endswith("_ratio") and budget > 1:
            raise UserError(f"budget={budget:g}: {budget_column} is a fraction of the dense "
                            f"network, so the budget must be in (0, 1]; for {budget:g}% give "
                            f"--budget {budget / 100:g}")
        return _budget(df, float(budget), budget_column)
    if max_drop is None or not np.isfinite(max_drop) or max_drop < 0:
        raise UserError(f"max_drop={max_drop!r}: rule max-drop needs a number of percentage "
                        "points >= 0, e.g. --max-drop 0.5")
    return _max_drop(df, float(max_drop))


def _candidates(df: pd.DataFrame, objectives: ObjectivesLike) -> pd.DataFrame:
    """The usable trials less the baselines; ``attrs["whence"]`` says so in words that
    ``hgsearch front`` uses too (see ``candidates_text``)."""
    rows = usable(df, objectives)
    out = rows[~baseline_mask(rows)]
    if out.empty:
        raise UserError(f"no trial to choose from: the {len(rows)} usable trial(s) are all "
                        "baselines (is_baseline), which are references, not pruned models")
    out.attrs = {**rows.attrs, "whence": candidates_text(len(rows), len(rows) - len(out))}
    return out


def candidates_text(n_usable: int, n_baselines: int) -> str:
    """'8 candidate trials (the 9 usable trials less 1 baseline)'."""
    if not n_baselines:
        return f"{n_usable} candidate trials (all {n_usable} usable trials)"
    return (f"{n_usable - n_baselines} candidate trials (the {n_usable} usable trials less "
            f"{n_baselines} baseline)")


def _ranked(rows: pd.DataFrame, by: Sequence[tuple[str, bool]]) -> pd.DataFrame:
    """Rows sorted by (column, ascending) keys, then acc_final desc, params_ratio, trial_id."""
    keys = list(by) + [("acc_final", False), ("params_ratio", True), ("trial_id", True)]
    seen: set[str] = set()
    cols, asc = [], []
    for col, up in keys:
        if col in rows.columns and col not in seen:
            seen.add(col)
            cols.append(col)
            asc.append(up)
    return rows.sort_values(cols, ascending=asc, kind="stable", na_position="last")


def _pick(rows: pd.DataFrame, rule: str, reason: str, **settings: Any) -> TrialChoice:
    row = rows.iloc[0]
    trial_id = str(row["trial_id"]) if "trial_id" in row.index else str(rows.index[0])
    return TrialChoice(trial_id, row, rule, reason, settings)


def _pct(value: Any) -> str:
    return f"{float(value) * 100:.2f}%"


def _name(row: pd.Series) -> str:
    return str(row["trial_id"]) if "trial_id" in row.index else str(row.name)


def _describe(row: pd.Series) -> str:
    """'92.40% validation accuracy at 0.430 of the dense parameters' (what a row has)."""
    parts = []
    if "acc_final" in row.index and pd.notna(row["acc_final"]):
        parts.append(f"{_pct(row['acc_final'])} validation accuracy")
    if "params_ratio" in row.index and pd.notna(row["params_ratio"]):
        parts.append(f"{float(row['params_ratio']):.3f} of the dense parameters")
    return " at ".join(parts) or _name(row)


def _knee(df: pd.DataFrame, objs: list[tuple[str, str]]) -> TrialChoice:
    rows = _candidates(df, objs)
    front = rows[nondominated_mask(goodness(rows, objs))]
    good = goodness(front, objs)
    span = good.max(axis=0) - good.min(axis=0)
    scaled = (good - good.min(axis=0)) / np.where(span > 0, span, 1.0)
    front = front.assign(_score=scaled.sum(axis=1))
    names = ", ".join(f"{n} {d}" for n, d in objs)
    ranked = _ranked(front, [("_score", False), (objs[0][0], objs[0][1] == "min")])
    best = ranked.iloc[0]
    where = f"of {len(front)} non-dominated among {rows.attrs['whence']}, objectives {names}"
    if len(objs) == 1:
        reason = f"the best trial {where}: {_describe(best)}"
    elif len(front) == 1:
        reason = (f"the only non-dominated trial among {rows.attrs['whence']}, objectives "
                  f"{names}: {_describe(best)}")
    elif len(objs) == 2 and best["_score"] <= 1.0 + _SLACK:
        reason = (f"no trial of the front {where} lies beyond the line between its extremes "
                  f"(the front has no knee), so the better in {objs[0][0]} is taken: "
                  f"{_describe(best)}")
    else:
        ends = ""
        if len(objs) == 2:
            hi, lo = front.iloc[int(np.argmax(good[:, 0]))], front.iloc[int(np.argmin(good[:, 0]))]
            ends = f" (from {_name(hi)} to {_name(lo)})"
        reason = (f"the knee of the Pareto front {where}: with each objective scaled to [0, 1] "
                  f"over the front, the trial farthest beyond the line between the extremes"
                  f"{ends}: {_describe(best)}")
    return _pick(ranked.drop(columns="_score"), "knee", reason, objectives=objs)


def _budget(df: pd.DataFrame, budget: float, column: str) -> TrialChoice:
    rows = _candidates(df, [("acc_final", "max")])
    if column not in rows.columns:
        raise UserError(f"budget_column={column!r}: no such column in the results; use "
                        "params_ratio, macs_ratio or another numeric column")
    raw = rows[column]
    if not pd.api.types.is_numeric_dtype(raw) or pd.api.types.is_bool_dtype(raw):
        raise UserError(f"budget_column={column!r}: not numeric (it holds "
                        f"{'yes/no' if pd.api.types.is_bool_dtype(raw) else 'text'}); use "
                        "params_ratio, macs_ratio or a latency column such as "
                        "latency_final_b1_ms")
    value = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float)
    fits = rows[value <= budget + _SLACK].assign(**{column: value[value <= budget + _SLACK]})
    if fits.empty:
        known = value[np.isfinite(value)]
        least = f"the smallest is {known.min():.4g}" if known.size else "none has a value"
        if known.size and known.size < len(value):
            least += f" ({len(value) - known.size} have no value)"
        raise UserError(f"no trial has {column} <= {budget:g}: of the "
                        f"{rows.attrs['whence']} {least}")
    ranked = _ranked(fits, [("acc_final", False), (column, True)])
    best = ranked.iloc[0]
    reason = (f"the most accurate of {len(fits)} of the {rows.attrs['whence']} with "
              f"{column} <= {budget:g}: {_describe(best)}, {column} {float(best[column]):.4g}")
    if len(ranked) > 1:
        runner = ranked.iloc[1]
        reason += f" (next: {_name(runner)} at {_pct(runner['acc_final'])})"
    return _pick(ranked, "budget", reason, budget=budget, budget_column=column)


def _max_drop(df: pd.DataFrame, max_drop: float) -> TrialChoice:
    rows = usable(df, [("acc_final", "max")])
    acc = rows["acc_final"].to_numpy(dtype=float)
    is_base = baseline_mask(rows)
    sweeps = ([("" if pd.isna(v) else str(v)) for v in rows["sweep"]]
              if "sweep" in rows.columns else [""] * len(rows))
    best_base: dict[str, float] = {}
    for name, a, b in zip(sweeps, acc, is_base):
        if b:
            best_base[name] = max(best_base.get(name, -np.inf), a)
    if not best_base:
        raise UserError("rule max-drop needs a baseline trial (is_baseline true, status ok) "
                        "and the results have none; sweeps train one. Use --rule knee or "
                        "--rule budget instead")
    reference = np.array([best_base.get(name, np.nan) for name in sweeps])
    params = (pd.to_numeric(rows["params_ratio"], errors="coerce").to_numpy(dtype=float)
              if "params_ratio" in rows.columns else np.full(len(rows), np.nan))
    keep = ~is_base & np.isfinite(reference) & np.isfinite(params)
    if not keep.any():
        raise UserError("no pruned trial with a params_ratio shares a sweep with a baseline "
                        "trial; rule max-drop compares each trial with its own sweep's baseline")
    drop = (reference - acc) * 100.0  # percentage points
    cand = rows[keep].assign(params_ratio=params[keep], _drop=drop[keep], _ref=reference[keep])
    fits = cand[cand["_drop"].to_numpy() <= max_drop + _SLACK]
    if fits.empty:
        closest = cand.sort_values("_drop", kind="stable").iloc[0]
        raise UserError(f"no trial is within {max_drop:g} points of its baseline's validation "
                        f"accuracy: the closest of {len(cand)} candidate trials, "
                        f"{_name(closest)}, is {versus_baseline(closest['_drop'])}")
    ranked = _ranked(fits, [("params_ratio", True), ("acc_final", False)])
    best = ranked.iloc[0]
    reason = (f"the smallest (params_ratio) of {len(fits)} of {len(cand)} candidate trials "
              f"within {max_drop:g} points of the baseline ({_pct(best['_ref'])} validation): "
              f"{_describe(best)}, {versus_baseline(best['_drop'])}")
    return _pick(ranked.drop(columns=["_drop", "_ref"]), "max-drop", reason,
                 max_drop=max_drop, baseline_acc=float(best["_ref"]))


def versus_baseline(drop: float) -> str:
    """'1.33 points below the baseline' for a drop of 1.33 percentage points, '1.33 points
    above the baseline' for -1.33, 'level with the baseline' within 0.005 points."""
    if abs(drop) < 0.005:
        return "level with the baseline"
    return f"{abs(drop):.2f} points {'below' if drop > 0 else 'above'} the baseline"


def baseline_of(df: pd.DataFrame, row: pd.Series) -> pd.Series | None:
    """The baseline ``row`` is measured against: the most accurate ok baseline of its sweep."""
    if "acc_final" not in df.columns:
        return None
    status = df["status"] if "status" in df.columns else pd.Series("ok", index=df.index)
    acc = pd.to_numeric(df["acc_final"], errors="coerce").to_numpy(dtype=float)
    keep = baseline_mask(df) & status.eq("ok").fillna(False).to_numpy(dtype=bool)
    keep &= np.isfinite(acc)
    if "sweep" in df.columns:
        mine = row.get("sweep")
        same = df["sweep"].isna() if pd.isna(mine) else df["sweep"].eq(mine).fillna(False)
        keep &= same.to_numpy(dtype=bool)
    if not keep.any():
        return None
    return df.iloc[int(np.flatnonzero(keep)[np.argmax(acc[keep])])]


def baseline_count(df: pd.DataFrame, objectives: ObjectivesLike = None) -> int:
    """How many usable trials are baselines (references, never candidates)."""
    return int(baseline_mask(usable(df, objectives)).sum())
