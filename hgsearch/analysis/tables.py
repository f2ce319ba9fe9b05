"""Which keys a set of trials searched, and the report's tables of every trial, of the controls
and of the confirmation seeds."""

from __future__ import annotations

from html import escape

import pandas as pd

from hgsearch.analysis.confirm import NOISE, confirmation_table
from hgsearch.analysis.controls import controls_table
from hgsearch.analysis.front import format_table
from hgsearch.config import FIELDS
from hgsearch.results import baseline_mask, confirm_mask, control_mask, row_warnings

# Keys that vary between trials without being hyperparameters of the method.
NOT_SEARCHED = ("trial_id", "out_dir", "cache_dir", "data_dir")


def searched_keys(df: pd.DataFrame) -> list[str]:
    """Trial keys taking two or more values among the trials that are neither a baseline, a
    control nor a confirmation seed."""
    rows = df[~baseline_mask(df) & ~control_mask(df) & ~confirm_mask(df)]
    return [k for k in FIELDS if k in rows.columns and k not in NOT_SEARCHED
            and rows[k].dropna().astype(str).nunique() > 1]


def trials_table(df: pd.DataFrame, objectives: list[tuple[str, str]], keys: list[str]) -> str:
    """Every trial as an HTML table: usable ones best first, then the others with their error.

    ``warnings`` is recomputed (``results.row_warnings``), so rows written before the column
    existed get theirs too."""
    df = df.assign(warnings=["; ".join(row_warnings(r)) or None for r in df.to_dict("records")])
    cols = ["trial_id", "status", *[n for n, _ in objectives], "acc_dense", "acc_pruned",
            "acc_final", "test_acc_final", *keys, "control", "control_of", "confirm_of",
            "confirm_seed", "seconds_total", "warnings", "error"]
    cols = list(dict.fromkeys(c for c in cols if c in df.columns))
    ok = df["status"].eq("ok").fillna(False).to_numpy(dtype=bool) if "status" in df else None
    first, direction = objectives[0]
    order = df.assign(_ok=~ok if ok is not None else False,
                      _key=pd.to_numeric(df[first], errors="coerce"))
    order = order.sort_values(["_ok", "_key"], ascending=[True, direction == "min"],
                              kind="stable", na_position="last")
    shown = pd.DataFrame(index=order.index)
    for col in cols:
        if col.startswith(("acc", "test_acc")):
            shown[f"{col} %"] = pd.to_numeric(order[col], errors="coerce") * 100.0
        else:
            shown[col] = order[col]
    text = format_table(shown.reset_index(drop=True))
    head = "".join(f"<th>{escape(c)}</th>" for c in text.columns)
    body = []
    for (_, cells), status in zip(text.iterrows(), order["status"].astype(str)):
        cls = "" if status == "ok" else ' class="bad"'
        tds = "".join(f'<td class="error">{escape(v)}</td>' if c in ("error", "warnings") else
                      f"<td>{escape(v)}</td>" for c, v in cells.items())
        body.append(f"<tr{cls}>{tds}</tr>")
    return (f'<table class="sortable trials"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table>")


def controls_html(df: pd.DataFrame, front_ids: list[str]) -> str:
    """The controls of the front's trials as a table under the front; nothing without any."""
    table = controls_table(df, front_ids)
    if table.empty:
        return ""
    return ("<h3>Controls of the front's trials</h3><p class=\"note\">Trained from scratch at "
            "the trial's size (scratch: its widths; uniform: every width scaled to its "
            "parameter count); +-: binomial standard error of acc_final.</p>"
            + format_table(table).to_html(index=False, border=0, escape=True,
                                          classes="sortable"))


def confirmation_html(df: pd.DataFrame, row: pd.Series) -> str:
    """The selection against its baseline and controls over seeds (``analysis.confirm``) as a
    small table; nothing where no confirmation seed ran."""
    table = confirmation_table(df, row)
    if table.empty:
        return ""
    return ("<p class=\"note\">Over seeds (hgsearch select --confirm K): acc_final of the "
            "selection minus the other's, paired by seed, mean and standard error sd/sqrt(n) "
            f"in points; within noise: |mean| &lt; {NOISE:g} standard errors.</p>"
            + format_table(table).to_html(index=False, border=0, escape=True))
