"""Optuna behind Ray Tune: Ray's OptunaSearch with the sweep's bookkeeping (reconcile.py)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher as TuneSearcher
from ray.tune.search.optuna import OptunaSearch

from hgsearch.errors import UserError
from hgsearch.search import ladder, reconcile
from hgsearch.search.baseline import BASELINE_ID
from hgsearch.search.records import DONE, ENDED, optuna_storage_url, read_row, trial_id_of
from hgsearch.search.space import Space


def make_searcher(sp: Space, *, name: str, folder: Path) -> Searcher:
    storage = optuna.storages.RDBStorage(optuna_storage_url(folder))
    return Searcher(sp, storage=storage, study_name=name, folder=folder)


class Searcher(OptunaSearch):
    """Ray's OptunaSearch, plus:

    - the first trial is the baseline (docs/method.md part 4) when the space asks for one; it is
      never asked of nor told to Optuna, so it cannot pollute the study;
    - each trial's config carries trial_id ``t<Optuna number>``;
    - orphans of a killed driver are adopted before new trials (R4), and no trial is asked
      once the study holds ``num_samples`` (R5);
    - a ladder's siblings (ladder.py) are asked after orphans and before new samples, once
      their parent's dense phase is over (or it ended, or another driver ran it);
    - every end is told through ``reconcile.tell_outcome`` (R2, R6).
    """

    # Phases of a trial's reports (worker.py) during which its dense network is not trained.
    DENSE_PHASES = ("train",)

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
        self._ladder = sp.ladder
        self._phases: dict[str, str] = {}       # Tune trial id -> the phase it last reported
        ladder.tidy(self._ot_study)

    @property
    def study(self) -> optuna.Study:
        return self._ot_study

    def restore(self, checkpoint_path: str) -> None:
        super().restore(checkpoint_path)
        # The sampler comes back with its random state as of Tune's last save; the trials asked
        # after that save (orphans now, R4) drew from that state, so it would propose their
        # values again. Optuna reseeds a sampler copied for parallel jobs for the same reason.
        self._ot_study.sampler.reseed_rng()

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
        else:
            # A queued sibling (a driver killed after enqueueing it) goes first, then one to
            # release; Optuna's ask pops the queue before it samples.
            waiting = self._ot_study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
            ladder.drop_ended(self._ot_study, self._dense_ended)
            release = None if waiting else ladder.next_release(self._ot_study, self._released)
            if not waiting and release is None \
                    and reconcile.remaining(self._ot_study, self._num_samples) <= 0:
                # Siblings still pending wait for their parent's training: Tune asks again.
                return None if ladder.pending_count(self._ot_study) else TuneSearcher.FINISHED
            if release is not None:
                ladder.enqueue(self._ot_study, *release, key=self._ladder.key)
            params = super().suggest(trial_id)
            ot_trial = self._ot_trials[trial_id]
            if release is not None:
                ladder.asked(self._ot_study, *release)
        if self._ladder is not None and not ladder.is_sibling(ot_trial) \
                and not ladder.has_record(self._ot_study, ot_trial.number):
            ladder.record(self._ot_study, ot_trial, self._ladder,
                          reconcile.remaining(self._ot_study, self._num_samples))
        ours = trial_id_of(ot_trial.number)
        ot_trial.set_user_attr("trial_id", ours)
        return {**params, "trial_id": ours}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        # Only a trial's end is told: intermediate reports are checkpoints and phase ends (NaN
        # placeholders), so nothing here may write to Optuna; the phase releases siblings.
        if result.get("hg_phase"):
            self._phases[trial_id] = str(result["hg_phase"])

    def _released(self, number: int) -> bool:
        """Whether parent ``number``'s siblings may be asked: its dense phase is over, it
        ended, or this driver does not run it (it ran before a resume)."""
        ids = [tid for tid, t in self._ot_trials.items() if t.number == number]
        if not ids or ids[-1] in self._completed_trials:
            return True
        if self._phases.get(ids[-1], self.DENSE_PHASES[0]) not in self.DENSE_PHASES:
            return True
        row = read_row(self._folder, trial_id_of(number)) or {}
        return row.get("status") in ENDED or reconcile.is_finished(self._ot_study,
                                                                     self._ot_trials[ids[-1]])

    def _dense_ended(self, number: int) -> bool:
        """Whether parent ``number``'s row says its dense network can give no sibling a point:
        stopped early (the worker writes the row before Tune reports the end), or diverged in
        training (no ``acc_dense``; told COMPLETE and infeasible, never PRUNED)."""
        row = read_row(self._folder, trial_id_of(number)) or {}
        return row.get("status") == "stopped" or (row.get("status") == "diverged"
                                                  and row.get("acc_dense") is None)

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
