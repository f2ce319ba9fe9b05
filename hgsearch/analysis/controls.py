"""A pruned trial read against its controls (hgsearch/search/controls.py): networks of its size
trained from scratch. Is the pruned network worth it?

Each validation accuracy p measured on n images carries the binomial standard error
sqrt(p (1 - p) / n); the difference of two accuracies measured on the same images is given with
sqrt(se1^2 + se2^2), which ignores their correlation over images and so overstates it (a paired
comparison would need each image's prediction). Within two of those a difference is noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from hgsearch.results import control_mask

# What each kind of control is, in words.
KIND_TEXT = {"scratch": "its widths from scratch",
             "uniform": "a uniformly thinner network of its size from scratch"}
NOISE = 2.0      # a difference within this many standard errors is not called a win


def standard_error(p: float, n: int) -> float:
    """The binomial standard error of an accuracy ``p`` measured on ``n`` images."""
    return math.sqrt(p * (1.0 - p) / n) if n > 0 else math.nan


@dataclass(frozen=True)
class Comparison:
    """The chosen trial against one control, validation accuracy in fractions."""

    kind: str
    control_id: str
    acc: float                   # the control's validation accuracy
    acc_se: float
    params_final: int
    ahead: float                 # the pruned trial's accuracy minus the control's
    ahead_se: float

    @property
    def clear(self) -> bool:
        """The difference exceeds NOISE standard errors."""
        return abs(self.ahead) > NOISE * self.ahead_se


def control_rows(df: pd.DataFrame, trial_id: str) -> pd.DataFrame:
    """The controls of ``trial_id`` that ended ok with a validation accuracy."""
    if "control_of" not in df.columns:
        return df.iloc[:0]
    mine = control_mask(df) & df["control_of"].astype("string").eq(trial_id).fillna(False) \
        .to_numpy(dtype=bool)
    rows = df[mine]
    ok = rows["status"].eq("ok").fillna(False) & pd.to_numeric(rows["acc_final"],
                                                                 errors="coerce").notna()
    return rows[ok.to_numpy(dtype=bool)].sort_values("control", kind="stable")


def compare(df: pd.DataFrame, row: pd.Series) -> list[Comparison]:
    """``row`` (a pruned trial) against each of its controls in ``df``."""
    acc, n = _number(row.get("acc_final")), _count(row.get("val_images"))
    out = []
    for _, c in control_rows(df, str(row["trial_id"])).iterrows():
        c_acc, c_n = float(c["acc_final"]), _count(c.get("val_images")) or n
        se, c_se = standard_error(acc, n), standard_error(c_acc, c_n)
        out.append(Comparison(str(c["control"]), str(c["trial_id"]), c_acc, c_se,
                              _count(c.get("params_final")), acc - c_acc,
                              math.hypot(se, c_se)))
    return out


def comparison_lines(df: pd.DataFrame, row: pd.Series) -> list[str]:
    """What ``hgsearch select`` prints of the chosen trial against its controls."""
    found = compare(df, row)
    if not found:
        return []
    acc, n = _number(row.get("acc_final")), _count(row.get("val_images"))
    lines = [f"  against its controls (validation accuracy +- binomial standard error "
             f"sqrt(p(1-p)/n), n = {n or '?'} images): the selection "
             f"{_pct(acc)} +- {_points(standard_error(acc, n))}"]
    for c in found:
        if abs(c.ahead) < 5e-5:
            verdict = "is level with it"
        else:
            word = "beats it by" if c.ahead > 0 else "falls short of it by"
            verdict = f"{word} {abs(100 * c.ahead):.2f} +- {_points(c.ahead_se)} points"
        noise = "" if c.clear else f", within {NOISE:g} standard errors: noise, not a result"
        lines.append(f"    {c.kind} ({KIND_TEXT.get(c.kind, c.kind)}, {c.control_id}): "
                     f"{_pct(c.acc)} +- {_points(c.acc_se)}; the selection {verdict}{noise}")
    return lines


def controls_table(df: pd.DataFrame, trial_ids: list[str]) -> pd.DataFrame:
    """The controls of ``trial_ids``, one row each: kind, id, of, accuracies (%), size."""
    rows = [r for t in trial_ids for _, r in control_rows(df, t).iterrows()]
    table = pd.DataFrame({
        "control": [r["control"] for r in rows], "trial_id": [r["trial_id"] for r in rows],
        "control_of": [r["control_of"] for r in rows],
        "acc_final %": [100 * float(r["acc_final"]) for r in rows],
        "+- %": [100 * standard_error(float(r["acc_final"]), _count(r.get("val_images")))
                 for r in rows],
        "test_acc_final %": [100 * _number(r.get("test_acc_final")) for r in rows],
        # a control's own ratios are 1 (nothing pruned): its size is given absolutely
        "params_final": [_count(r.get("params_final")) for r in rows],
        "macs_final": [_count(r.get("macs_final")) for r in rows]})
    return table


def controls_on_axes(df: pd.DataFrame) -> pd.DataFrame:
    """Every ok control of ``df`` with ``params_ratio`` and ``macs_ratio`` taken against the dense
    network of the trial it controls (its own are 1), and ``acc_se``: points on the report's
    trade-off axes beside the trials."""
    by_id = {str(r["trial_id"]): r for _, r in df.iterrows()}
    out = []
    for _, c in df[control_mask(df)].iterrows():
        target = by_id.get(str(c["control_of"]))
        if target is None or c.get("status") != "ok" or math.isnan(_number(c["acc_final"])):
            continue
        acc = float(c["acc_final"])
        out.append({"trial_id": c["trial_id"], "control": c["control"],
                    "control_of": c["control_of"], "acc_final": acc,
                    "acc_se": standard_error(acc, _count(c.get("val_images"))),
                    "params_ratio": _number(c.get("params_final"))
                    / _number(target.get("params_dense")),
                    "macs_ratio": _number(c.get("macs_final")) / _number(target.get("macs_dense")),
                    "test_acc_final": _number(c.get("test_acc_final"))})
    columns = ["trial_id", "control", "control_of", "acc_final", "acc_se", "params_ratio",
               "macs_ratio", "test_acc_final"]
    return pd.DataFrame(out, columns=columns)


def _number(value: object) -> float:
    v = pd.to_numeric(pd.Series([value]), errors="coerce").iloc[0]
    return math.nan if pd.isna(v) else float(v)


def _count(value: object) -> int:
    v = _number(value)
    return 0 if math.isnan(v) else int(v)


def _pct(value: float) -> str:
    return "-" if math.isnan(value) else f"{100 * value:.2f}%"


def _points(value: float) -> str:
    return "-" if math.isnan(value) else f"{100 * value:.2f}"
