"""Reconciliation of a sweep's three records: the Parquet rows, the Optuna study, Tune's state.

A driver can die at any instruction, and the three records are written at different moments,
so a resumed sweep finds them out of step. These rules keep them one: each is tested in
tests/search/test_reconcile.py, and the fault-injection test checks them all after kills.

R1  The rows are the truth, and a trial id has at most one row: ``trials/<id>.parquet``, its
    name the id, written atomically, so a rewrite replaces and never adds.
R2  Re-telling a finished Optuna trial is a no-op: no tell and no attribute write (Optuna
    raises UpdateFinishedTrialError for both), whatever a resume replays.
R3  No Optuna trial is RUNNING when a sweep ends: ``settle`` tells each from its row, and one
    without a row (it never ran) is told FAIL.
R4  An adopted orphan (RUNNING in the study, unknown to Tune's saved state) has the space's
    define-by-run function run on it again: its stored keys are kept, missing ones sampled.
R5  The budget counts the study, not Tune's memory of it: the searcher asks Optuna for a new
    trial only while the study holds fewer than ``num_samples`` trials, and Tune itself is
    given no count (``num_samples=-1``; the searcher says FINISHED). Restarts, a changed
    storage or Tune state that cannot be read therefore never add trials. A ladder's pending
    siblings (ladder.py, in the study's user attrs) count as asked.
R6  A diverged trial is told COMPLETE and infeasible (constraint ``diverged`` = 1), every
    other told trial feasible (0). FAIL is what TPE, NSGA-II and GP ignore: they would keep
    proposing the region that diverges. Infeasible trials rank below every feasible one (TPE's
    split, NSGA-II's constrained domination, GP's feasibility model) and are left out of
    ``study.best_trials``; their values are placeholders (``placeholder_values``), never a
    result: the row keeps NaN. A ``stopped`` trial (early stopping of its dense phase) is told
    PRUNED: it never counts as completed.
R7  Every trial that Tune ends gets exactly one row: the driver writes a ``failed`` row
    (config, error, attempts) when the worker could not (``failed_row``), and once Tune has
    ended every trial, for any trial of the study still without one (a driver killed as Tune
    recorded the trial's error, before its row was written: ``write_missing_rows``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from hgsearch.results import empty_metrics
from hgsearch.search import ladder
from hgsearch.search.records import ENDED, finite, now, read_row, trial_id_of

DIVERGED = "diverged"        # the constraint's name (Trial.set_constraint)
STOPPED = "stopped"          # the row status of a trial whose dense phase was stopped early


def is_finished(study: optuna.Study, trial: optuna.trial.Trial) -> bool:
    return study._storage.get_trial(trial._trial_id).state.is_finished()


def tell_outcome(study: optuna.Study, trial: optuna.trial.Trial, *, status: str,
                 values: Sequence[Any]) -> bool:
    """Tell Optuna how a trial ended (R2, R6); False when it had been told already."""
    if is_finished(study, trial):
        return False
    trial.set_user_attr("status", status)
    if status == "ok" and all(finite(v) for v in values):
        trial.set_constraint(DIVERGED, 0.0)
        study.tell(trial, [float(v) for v in values], state=TrialState.COMPLETE)
    elif status == DIVERGED:
        trial.set_constraint(DIVERGED, 1.0)
        trial.set_user_attr("placeholder_values", True)
        study.tell(trial, placeholder_values(study, values), state=TrialState.COMPLETE)
    elif status == STOPPED:
        study.tell(trial, state=TrialState.PRUNED)
    else:
        study.tell(trial, state=TrialState.FAIL)
    return True


def placeholder_values(study: optuna.Study, values: Sequence[Any]) -> list[float]:
    """Values a diverged trial is told with (R6): its own where finite, else the worst value of
    the objective among feasible trials so far, else 0. A sampler that reads values of
    infeasible trials at all (GP) thus sees them as no better than the worst real result.
    """
    feasible = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                if not t.user_attrs.get("placeholder_values")]
    out = []
    for i, (value, direction) in enumerate(zip(values, study.directions, strict=True)):
        if finite(value):
            out.append(float(value))
            continue
        seen = [t.values[i] for t in feasible]
        worst = min if direction == optuna.study.StudyDirection.MAXIMIZE else max
        out.append(float(worst(seen)) if seen else 0.0)
    return out


def settle(study: optuna.Study, folder: Path, metrics: Sequence[str],
           log: Callable[[str], None]) -> None:
    """R3: leave no Optuna trial RUNNING once the sweep has ended, telling each from its row."""
    for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        row = read_row(folder, trial_id_of(frozen.number))
        trial = optuna.trial.Trial(study, frozen._trial_id)
        status = row.get("status", "failed") if row else "failed"
        tell_outcome(study, trial, status=status,
                     values=[row.get(m) for m in metrics] if row else [])
        what = f"row status {status}" if row else "it never ran: FAIL"
        log(f"optuna trial {frozen.number} was left RUNNING by an earlier driver ({what})")


def orphans(study: optuna.Study, known: set[int]) -> list[optuna.trial.FrozenTrial]:
    """RUNNING trials of the study that Tune's saved state does not know (R4)."""
    return [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if t.number not in known]


def adopt(study: optuna.Study, frozen: optuna.trial.FrozenTrial,
          define_by_run: Callable[[Any], Any]) -> optuna.trial.Trial:
    """R4: the orphan as a live trial with every key of the space (stored ones kept)."""
    trial = optuna.trial.Trial(study, frozen._trial_id)
    define_by_run(trial)
    return trial


def remaining(study: optuna.Study, num_samples: int) -> int:
    """R5: searched trials still to ask of Optuna (the study counts, in every state, and so do
    pending ladder siblings)."""
    return num_samples - len(study.get_trials(deepcopy=False)) - ladder.pending_count(study)


def failed_row(config: Mapping[str, Any], *, error: str, attempts: int,
               extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """R7: the row the driver writes for a trial whose worker wrote none (or an unfinished
    one): its config, the error, how many attempts were made."""
    return {**config, **empty_metrics(), **dict(extra or {}), "status": "failed",
            "error": error, "attempts": int(attempts), "finished_at": now()}


def write_missing_rows(study: optuna.Study, folder: Path, *, fixed: Mapping[str, Any],
                       baseline: Mapping[str, Any] | None, sweep: str) -> list[str]:
    """R7 at a sweep's end: a failed row for every trial (baseline included) without one."""
    from hgsearch.results import write_row

    wanted = {trial_id_of(t.number): t.params for t in study.get_trials(deepcopy=False)}
    if baseline is not None:
        wanted["baseline"] = dict(baseline)
    written = []
    for trial_id, params in wanted.items():
        if needs_failed_row(folder, trial_id):
            config = {**fixed, **params, "trial_id": trial_id, "out_dir": str(folder)}
            write_row(folder, failed_row(config, error="ended without a row (its driver died "
                                         "as the trial ended)", attempts=1,
                                         extra={"sweep": sweep,
                                                "is_baseline": trial_id == "baseline"}))
            written.append(trial_id)
    return written


def needs_failed_row(folder: Path, trial_id: str) -> bool:
    """R7: whether a trial that Tune ended as an error lacks a row that says so."""
    row = read_row(folder, trial_id)
    return row is None or row.get("status") not in ENDED
