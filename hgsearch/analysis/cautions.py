"""What makes an analysis suspect, said where its results are shown (front, select, report).

- Trials whose own figures are suspect (``results.row_warnings``: a proximal trial with no exact
  zeros, a trial at chance accuracy), recomputed from the rows so older results get them too.
- Latencies that do not differ from the dense network's by more than the timings' spread.
- A front taken from fewer than ``FRONT_MIN_TRIALS`` candidates: among n trials placed at random
  in two objectives, the expected number on the front is the harmonic number H_n (Bentley et
  al., "On the average number of maxima in a set of vectors", 1978): H_6 = 2.45 of 6 trials,
  H_10 = 2.93 of 10, so below 10 being on the front says little about a trial.
- Parameter importance from fewer than ``IMPORTANCE_MIN_TRIALS`` trials or
  ``IMPORTANCE_MIN_NETWORKS`` dense networks: PED-ANOVA compares the best 10% of trials with all
  of them, so under 20 trials that top group holds one trial; and trials pruned from one shared
  dense network (a ladder) repeat its training keys, so they are not independent evidence.
"""

from __future__ import annotations

import pandas as pd

from hgsearch.results import row_warnings

FRONT_MIN_TRIALS = 10
IMPORTANCE_MIN_TRIALS = 20
IMPORTANCE_MIN_NETWORKS = 10


def trial_cautions(rows: pd.DataFrame) -> list[str]:
    """'t03: acc_final 9.8% is at chance ...' for each trial with a row warning, and each
    latency of a pruned trial (params_ratio < 1) no clearer than its spread."""
    out = []
    for _, row in rows.iterrows():
        name = str(row.get("trial_id", row.name))
        out += [f"{name}: {w}" for w in row_warnings(row.to_dict())]
        ratio = pd.to_numeric(pd.Series([row.get("params_ratio")]), errors="coerce").iloc[0]
        if ratio >= 1:      # nothing removed (a baseline): no speed-up to show
            continue
        for tag in ("b1", "bN"):
            flag = row.get(f"latency_{tag}_significant")
            if flag is not None and not pd.isna(flag) and not bool(flag):
                out.append(f"{name}: latency_final_{tag}_ms differs from the dense network's by "
                           f"less than the timings' spread (IQR): no speed difference shown")
    return out


def front_caution(n_candidates: int, subject: str = "the front") -> str | None:
    """A sentence when ``subject`` rests on too few candidate trials, else None."""
    if n_candidates >= FRONT_MIN_TRIALS:
        return None
    return (f"{subject} rests on {n_candidates} candidate trial(s), under {FRONT_MIN_TRIALS}: "
            "with so few, a large share of any trials lies on a Pareto front by chance; read "
            "it as a list of trials, not a finding")


def networks(rows: pd.DataFrame) -> int:
    """Distinct dense networks among ``rows`` (``dense_key``; a row without one: its own)."""
    if "dense_key" not in rows.columns:
        return len(rows)
    keys = rows["dense_key"]
    return int(keys.dropna().nunique() + keys.isna().sum())


def importance_caution(rows: pd.DataFrame) -> str | None:
    """A sentence when parameter importance rests on too few trials or networks, else None."""
    n, nets = len(rows), networks(rows)
    if n >= IMPORTANCE_MIN_TRIALS and nets >= IMPORTANCE_MIN_NETWORKS:
        return None
    return (f"parameter importance rests on {n} trial(s) from {nets} dense network(s), under "
            f"{IMPORTANCE_MIN_TRIALS} trials and {IMPORTANCE_MIN_NETWORKS} networks: PED-ANOVA "
            "contrasts the best 10% of trials with all, and trials of one network share its "
            "training; the bars are close to noise")
