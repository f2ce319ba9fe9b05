"""Optuna behind Ray Tune: Ray's OptunaSearch with the sweep's bookkeeping (reconcile.py)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import optuna
from ray.tune.search import Searcher as TuneSearcher
from ray.tune.search.optuna import OptunaSearch

from hgsearch.errors import UserError
from hgsearch.search import reconcile
from hgsearch.search.baseline import BASELINE_ID
from hgsearch.search.records import DONE, optuna_storage_url, read_row, trial_id_of
from hgsearch.search.space import Space


def make_searcher(sp: Space, *, name: str, folder: Path) -> Searcher:
    storage = optuna.storages.RDBStorage(optuna_storage_url(folder))
    return Searcher(sp, storage=storage, study_name=name, folder=folder)


class Searcher(OptunaSearch):
    """Ray's OptunaSearch, plus:

    - the first trial is the baseline (METHOD.md part 4) when the space asks for one; it is
      never asked of nor told to Optuna, so it cannot pollute the study;
    - each trial's config carries trial_id ``t<Optuna number>``;
    - orphans of a killed driver are adopted before new trials (R4), and no trial is asked
      once the study holds ``num_samples`` (R5);
    - every end is told through ``reconcile.tell_outcome`` (R2, R6).
    """

    def __init__(self, sp: Space, *, storage: Any, study_name: str, folder: Path) -> None:
        super().__init__(space=sp.suggest, metric=sp.metrics, mode=sp.modes,
                         sampler=sp.make_sampler(), storage=storage, study_name=study_name)
        found = [d.name.lower() for d in self._ot_study.directions]
        if found != sp.directions:
            raise UserError(f"{optuna_storage_url(folder)}: study {study_name!r} optimizes "
                            f"{found}, the space {sp.directions}; use another --name")
        with warnings.catch_warnings():   # experimental since Optuna 3.2; the names help
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            self._ot_study.set_metric_names(sp.metrics)
        self._num_samples = sp.num_samples
        self._baseline = sp.baseline
        self._baseline_trial: str | None = None
        self._folder = str(folder)

    @property
    def study(self) -> optuna.Study:
        return self._ot_study

    def suggest(self, trial_id: str) -> dict | str | None:
        if self._baseline is not None and self._baseline_trial is None:
            self._baseline_trial = trial_id
            return {**self._baseline, "trial_id": BASELINE_ID}
        known = {t.number for t in self._ot_trials.values()}
        lost = reconcile.orphans(self._ot_study, known)
        if lost:
            ot_trial = reconcile.adopt(self._ot_study, lost[0], self._space)
            self._ot_trials[trial_id] = ot_trial
            params = dict(ot_trial.params)
        elif reconcile.remaining(self._ot_study, self._num_samples) <= 0:
            return TuneSearcher.FINISHED
        else:
            params = super().suggest(trial_id)
            ot_trial = self._ot_trials[trial_id]
        ours = trial_id_of(ot_trial.number)
        ot_trial.set_user_attr("trial_id", ours)
        return {**params, "trial_id": ours}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        # Only a trial's end is told: intermediate reports are checkpoints (NaN placeholders)
        # and the sweep prunes nothing, so nothing here may write to Optuna.
        return

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        ot_trial = self._ot_trials.get(trial_id)
        self._completed_trials.add(trial_id)
        if ot_trial is None:
            return                   # the baseline
        result = result or {}
        status = result.get("hg_status", "failed") if result.get("hg_final") else "failed"
        values = [result.get(m) for m in self._metric]
        if error or not result.get("hg_final"):
            row = read_row(self._folder, trial_id_of(ot_trial.number)) or {}
            status = row.get("status") if row.get("status") in DONE else "failed"
            values = [row.get(m) for m in self._metric]
        reconcile.tell_outcome(self._ot_study, ot_trial, status=status, values=values)
