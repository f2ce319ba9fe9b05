"""The selected trial against its baseline and controls over several seeds, paired by seed.

``hgsearch select --confirm K`` (hgsearch/search/confirm.py) re-runs the selection, the baseline
and each of the selection's controls with ``seed + k`` for k = 1..K; k = 0 is the original row.
For each pair (the selection against one of them) and each seed k at which both ended ok, d_k is
the selection's acc_final minus the other's. Reported: the mean of the d_k and its standard error
sd(d) / sqrt(n), sd with n - 1 (the paired comparison of Student's t; the seed's effect on both
networks - data order, initialization - cancels in each d_k). A mean within ``NOISE`` standard
errors of zero is noise; with one seed the standard error is unknown.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from hgsearch.analysis.controls import control_rows
from hgsearch.analysis.select_trial import baseline_of
from hgsearch.results import confirm_mask

NOISE = 2.0      # a mean difference within this many standard errors is not called a result


@dataclass(frozen=True)
class Paired:
    """The selection against one other trial, acc_final (fractions) paired by seed."""

    kind: str                        # baseline, scratch or uniform
    other_id: str                    # the other trial's original id
    seeds: tuple[int, ...]           # k of each pair (0: the original seed)
    differences: tuple[float, ...]   # the selection's acc_final minus the other's, per seed

    @property
    def n(self) -> int:
        return len(self.differences)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.differences)

    @property
    def se(self) -> float:
        """sd(d) / sqrt(n); NaN with fewer than two seeds."""
        if self.n < 2:
            return math.nan
        return statistics.stdev(self.differences) / math.sqrt(self.n)

    @property
    def within_noise(self) -> bool | None:
        """|mean| < NOISE standard errors; None when the standard error is unknown."""
        return None if math.isnan(self.se) else abs(self.mean) < NOISE * self.se


def seed_accuracies(df: pd.DataFrame, trial_id: str) -> dict[int, float]:
    """{k: acc_final} of ``trial_id`` (k = 0) and its confirmation seeds that ended ok."""
    ids = df["trial_id"].astype(str)
    mine = ids.eq(trial_id).to_numpy(dtype=bool) & ~confirm_mask(df)
    seeds = pd.Series(0, index=df.index, dtype="Int64")
    if "confirm_of" in df.columns:
        repeat = df["confirm_of"].astype("string").eq(trial_id).fillna(False).to_numpy(dtype=bool)
        mine |= repeat
        seeds = seeds.where(~repeat, pd.to_numeric(df["confirm_seed"], errors="coerce"))
    acc = pd.to_numeric(df["acc_final"], errors="coerce").to_numpy(dtype=float)
    ok = df["status"].eq("ok").fillna(False).to_numpy(dtype=bool) & np.isfinite(acc)
    k = seeds.astype("Float64").to_numpy(dtype=float, na_value=np.nan)
    return {int(k[i]): float(acc[i]) for i in np.flatnonzero(mine & ok) if np.isfinite(k[i])}


def has_confirmation(df: pd.DataFrame, trial_id: str) -> bool:
    """Whether any confirmation seed of ``trial_id`` has a row."""
    return "confirm_of" in df.columns and \
        bool(df["confirm_of"].astype("string").eq(trial_id).fillna(False).any())


def others_of(df: pd.DataFrame, row: pd.Series) -> list[tuple[str, str]]:
    """(kind, trial_id) of what the selection ``row`` is confirmed against: its sweep's
    baseline and its controls that ended ok."""
    out = []
    base = baseline_of(df, row)
    if base is not None:
        out.append(("baseline", str(base["trial_id"])))
    out += [(str(c["control"]), str(c["trial_id"]))
            for _, c in control_rows(df, str(row["trial_id"])).iterrows()]
    return out


def paired(df: pd.DataFrame, row: pd.Series) -> list[Paired]:
    """The selection ``row`` against each of ``others_of`` over the seeds both have; nothing
    when the selection has no confirmation seed."""
    trial_id = str(row["trial_id"])
    if not has_confirmation(df, trial_id):
        return []
    mine = seed_accuracies(df, trial_id)
    out = []
    for kind, other in others_of(df, row):
        theirs = seed_accuracies(df, other)
        seeds = tuple(sorted(set(mine) & set(theirs)))
        if seeds:
            out.append(Paired(kind, other, seeds, tuple(mine[k] - theirs[k] for k in seeds)))
    return out


def confirmation_card(df: pd.DataFrame, row: pd.Series) -> dict | None:
    """What model_card.json's ``confirmation`` holds: the selection's acc_final by seed k and
    each pair with its mean and standard error (fractions; null when unknown) and whether it is
    within noise; None where the selection has no confirmation seed."""
    trial_id = str(row["trial_id"])
    if not has_confirmation(df, trial_id):
        return None
    return {"acc_final_by_seed": seed_accuracies(df, trial_id),
            "pairs": [{**asdict(p), "n": p.n, "mean": p.mean,
                       "se": None if math.isnan(p.se) else p.se,
                       "within_noise": p.within_noise} for p in paired(df, row)]}


def confirmation_lines(df: pd.DataFrame, row: pd.Series) -> list[str]:
    """What ``hgsearch select`` prints of the confirmation seeds; nothing without any."""
    if not has_confirmation(df, str(row["trial_id"])):
        return []
    pairs = paired(df, row)
    mine = seed_accuracies(df, str(row["trial_id"]))
    spread = (f", sd {_points(statistics.stdev(mine.values()))} points" if len(mine) > 1
              else "")
    lines = [f"  over seeds (the selection's seed + k, k = 0 the original; acc_final of the "
             f"selection minus the other's, paired by seed: mean +- sd/sqrt(n)): the selection "
             f"{_pct(statistics.fmean(mine.values()))} over {len(mine)} seed(s){spread}"]
    if not pairs:
        lines.append("    nothing to compare it with: no baseline and no control ended ok")
    for p in pairs:
        if math.isnan(p.se):
            verdict = "standard error unknown with one seed (select --confirm K runs more)"
        elif p.within_noise:
            verdict = f"within noise (|mean| < {NOISE:g} standard errors)"
        else:
            word = "ahead" if p.mean > 0 else "behind"
            verdict = f"the selection is {word} beyond {NOISE:g} standard errors"
        se = "" if math.isnan(p.se) else f" +- {_points(p.se)}"
        lines.append(f"    against {p.kind} ({p.other_id}): {100 * p.mean:+.2f}{se} points over "
                     f"{p.n} seed(s); {verdict}")
    return lines


def confirmation_table(df: pd.DataFrame, row: pd.Series) -> pd.DataFrame:
    """One row per pair: kind, id, seeds, mean and standard error of the difference (points)."""
    pairs = paired(df, row)
    return pd.DataFrame({
        "against": [p.kind for p in pairs], "trial_id": [p.other_id for p in pairs],
        "seeds": [p.n for p in pairs],
        "mean difference (points)": [100 * p.mean for p in pairs],
        "+- standard error": [100 * p.se for p in pairs],
        "within noise": ["unknown" if p.within_noise is None else
                         "yes" if p.within_noise else "no" for p in pairs]})


def _pct(value: float) -> str:
    return f"{100 * value:.2f}%"


def _points(value: float) -> str:
    return f"{100 * value:.2f}"
