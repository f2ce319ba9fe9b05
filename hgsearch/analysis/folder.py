"""One results folder analysed end to end: what ``hgsearch front``, ``select`` and ``report`` do.

Each function takes the folder (``trials/`` of a sweep or of ``hgsearch trial --out``) and the
user's settings, reads the rows and the objectives itself, and returns what the command prints;
the command line only parses and prints. pandas is imported when a function runs.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hgsearch.errors import UserError

if TYPE_CHECKING:
    import pandas as pd

    from hgsearch.analysis.front import Objectives
    from hgsearch.analysis.select_trial import TrialChoice

# Called with (file, reason) for each row file that is not readable Parquet and was left out.
OnSkipped = Callable[[str, str], None]


def read_rows(results: str | Path, *, on_skipped: OnSkipped | None = None) -> pd.DataFrame:
    """The trial rows of a results folder; UserError when there is no folder or no row.

    An unreadable row file is left out, listed in ``df.attrs["skipped"]`` as (path, reason)
    and passed to ``on_skipped`` before anything else happens (no Python warning is emitted).
    """
    from hgsearch.results import load_results

    path = Path(results)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # the same news as attrs["skipped"], said below
        df = load_results(path)
    for file, reason in df.attrs.get("skipped", []):
        if on_skipped is not None:
            on_skipped(file, reason)
    if len(df) == 0:
        raise UserError(f"{path}: no trial rows (expected {path / 'trials'}/*.parquet)")
    return df


def objectives_of(results: str | Path, objectives: str | None = None) -> Objectives:
    """``objectives`` (COLUMN:max|min,...) when given, else RESULTS/sweep.json's, else the
    defaults (acc_final max, params_ratio min)."""
    from hgsearch.analysis.front import parse_objectives, read_objectives

    return parse_objectives(objectives) if objectives else read_objectives(results)


def searched_keys_of(results: str | Path, df: pd.DataFrame) -> list[str]:
    """The keys RESULTS/sweep.json's space searched (its ``search`` mapping, in file order);
    without a readable one (a folder of ``hgsearch trial`` runs), the trial keys that vary
    among the rows that are not a baseline (``tables.searched_keys``)."""
    import json

    from hgsearch.analysis.tables import searched_keys

    path = Path(results) / "sweep.json"
    try:
        search = json.loads(path.read_text())["space"]["search"]
        keys = [str(k) for k in search]
    except (OSError, ValueError, KeyError, TypeError):
        return searched_keys(df)
    return [k for k in keys if k in df.columns]


def cautions_of(df: pd.DataFrame, shown: pd.DataFrame, n_candidates: int,
                subject: str = "the front") -> list[str]:
    """The cautions (``analysis.cautions``) of ``shown``'s trials and of a front taken from
    ``n_candidates`` trials, then those of the other usable trials of ``df`` (up to
    ``MAX_LISTED``; beyond, the trials that carry some)."""
    from hgsearch.analysis.cautions import front_caution, trial_cautions

    out = [c for c in [front_caution(n_candidates, subject)] if c]
    out += trial_cautions(shown)
    ok = df["status"].eq("ok").fillna(False).to_numpy(dtype=bool) if "status" in df else None
    others = df[ok] if ok is not None else df
    ids = set(shown["trial_id"].astype(str)) if "trial_id" in shown else set()
    others = others[~others["trial_id"].astype(str).isin(ids)] if "trial_id" in others else \
        others.iloc[0:0]
    rest = trial_cautions(others)
    if len(rest) <= MAX_LISTED:
        return out + rest
    flagged = sorted({c.split(":", 1)[0] for c in rest})
    return out + [f"{len(flagged)} other usable trial(s) carry warnings too: "
                  f"{', '.join(flagged)} (the report lists them)"]


MAX_LISTED = 5   # cautions of trials not shown, listed in full up to this many


@dataclass(frozen=True)
class Front:
    """The Pareto front of a folder's rows and the counts that say what it was taken from."""

    objectives: Objectives
    table: pd.DataFrame          # the front, one formatted row per trial, best first
    usable: int                  # rows the front was taken from (see analysis.front.usable)
    excluded: dict[str, int]     # rows left out before the dominance test, by reason
    baselines: int               # usable rows that are baselines: references, not candidates
    keys: list[str]              # the searched keys the table shows
    cautions: list[str]          # what makes the front or its trials suspect (analysis.cautions)
    controls: pd.DataFrame | None = None   # controls of the front's trials (analysis.controls)


def front_of(results: str | Path, *, objectives: str | None = None,
             on_skipped: OnSkipped | None = None) -> Front:
    """The Pareto front of RESULTS under ``objectives`` (default: see ``objectives_of``)."""
    from hgsearch.analysis.controls import controls_table
    from hgsearch.analysis.front import format_table, front_table, pareto_front
    from hgsearch.analysis.select_trial import baseline_count

    df = read_rows(results, on_skipped=on_skipped)
    objs = objectives_of(results, objectives)
    front = pareto_front(df, objs)
    keys = searched_keys_of(results, df)
    baselines = baseline_count(df, objs)
    controls = controls_table(df, [str(t) for t in front["trial_id"]])
    return Front(objectives=objs, table=format_table(front_table(front, objs, keys)),
                 usable=front.attrs["usable"], excluded=dict(front.attrs["excluded"]),
                 baselines=baselines, keys=keys,
                 cautions=cautions_of(df, front, front.attrs["usable"] - baselines),
                 controls=format_table(controls) if len(controls) else None)


@dataclass(frozen=True)
class Exported:
    """A selection written to RESULTS/selected/, and the report rewritten to show it."""

    selection: TrialChoice
    folder: Path                 # RESULTS/selected/
    report: Path | None          # RESULTS/report/index.html when one existed and was rewritten
    cautions: list[str]          # what makes the choice suspect (analysis.cautions)
    controls: list[str] = ()     # the choice against its controls (analysis.controls)
    confirmation: list[str] = ()  # ... over the confirmation seeds (analysis.confirm)


def choose(results: str | Path, *, rule: str, objectives: str | None = None,
           budget: float | None = None, budget_column: str = "params_ratio",
           max_drop: float | None = None, on_skipped: OnSkipped | None = None) -> TrialChoice:
    """The trial of RESULTS that ``rule`` chooses (``analysis.select_trial``)."""
    from hgsearch.analysis.select_trial import select_trial

    df = read_rows(results, on_skipped=on_skipped)
    return select_trial(df, rule=rule, objectives=objectives_of(results, objectives),
                        budget=budget, budget_column=budget_column, max_drop=max_drop)


def select_and_export(results: str | Path, *, rule: str, objectives: str | None = None,
                      budget: float | None = None, budget_column: str = "params_ratio",
                      max_drop: float | None = None, onnx: bool = True,
                      on_skipped: OnSkipped | None = None) -> Exported:
    """Choose one trial of RESULTS by ``rule`` (``analysis.select_trial``), export it, and
    rewrite an existing report, which must show the current selection, not the one it was made
    with. Confirmation seeds of the choice (``analysis.confirm``) go into the card and the
    lines."""
    from hgsearch.analysis.confirm import confirmation_card, confirmation_lines
    from hgsearch.analysis.controls import compare
    from hgsearch.analysis.export import export_selection
    from hgsearch.analysis.select_trial import baseline_of, select_trial
    from hgsearch.results import baseline_mask

    df = read_rows(results, on_skipped=on_skipped)
    objs = objectives_of(results, objectives)
    selection = select_trial(df, rule=rule, objectives=objs, budget=budget,
                       budget_column=budget_column, max_drop=max_drop)
    against = [{**dataclasses.asdict(c), "clear": c.clear} for c in compare(df, selection.row)]
    folder = export_selection(results, selection, onnx=onnx,
                              baseline=baseline_of(df, selection.row), controls=against,
                              confirmation=confirmation_card(df, selection.row))
    report = Path(results) / "report" / "index.html"
    rewrite = report.is_file()
    if rewrite:
        from hgsearch.analysis.report import write_report

        write_report(results, df, objectives=objs, keys=searched_keys_of(results, df))
    from hgsearch.analysis.front import usable

    candidates = int((~baseline_mask(usable(df, objs))).sum())
    cautions = cautions_of(df, df[df["trial_id"].astype(str).eq(selection.trial_id)],
                           candidates, subject="the choice")
    from hgsearch.analysis.controls import comparison_lines

    return Exported(selection=selection, folder=folder, report=report if rewrite else None,
                    cautions=cautions, controls=comparison_lines(df, selection.row),
                    confirmation=confirmation_lines(df, selection.row))


def report_of(results: str | Path, *, objectives: str | None = None,
              on_skipped: OnSkipped | None = None) -> Path:
    """Write RESULTS/report/index.html and return its path."""
    from hgsearch.analysis.report import write_report

    df = read_rows(results, on_skipped=on_skipped)
    return write_report(results, df, objectives=objectives_of(results, objectives),
                        keys=searched_keys_of(results, df))
