"""Status ``stopped`` (early stopping of the dense phase) on the search side: told to Optuna as
PRUNED, an ended trial for the rows, counted apart at the sweep's end; no Ray."""

from __future__ import annotations

import types

import optuna
import pytest
from optuna.trial import TrialState

from hgsearch.results import empty_metrics, load_results, write_row
from hgsearch.search import reconcile
from hgsearch.search.progress import SESSIONS, Progress, Session
from hgsearch.search.records import DONE, ENDED, optuna_storage_url
from hgsearch.search.searcher import make_searcher
from hgsearch.search.space_file import parse_space
from hgsearch.search.summary import summary

SPACE = {"fixed": {"dataset": "synthetic", "arch": "resnet20", "epochs": 1},
         "search": {"lam": {"loguniform": [1.0e-6, 1.0e-2]}},
         "objectives": {"acc_final": "max", "params_ratio": "min"},
         "sampler": {"name": "random", "seed": 0}, "num_samples": 3, "baseline": False}
METRICS = ["acc_final", "params_ratio"]


@pytest.fixture
def space():
    return parse_space(SPACE, source="s")


def _row(folder, trial_id, status, **values):
    write_row(folder, {**SPACE["fixed"], "trial_id": trial_id, "out_dir": str(folder),
                       **empty_metrics(), "status": status, "is_baseline": trial_id == "baseline",
                       **values})


def _stopped(folder, trial_id):
    _row(folder, trial_id, "stopped", stopped_epoch=3, error="early stop at epoch 3")


def test_stopped_is_an_ended_trial_that_ran_to_its_end():
    assert "stopped" in DONE and "stopped" in ENDED and "failed" not in DONE


def test_a_stopped_trial_is_pruned_in_the_study_with_its_status(tmp_path):
    study = optuna.create_study(study_name="s", storage=optuna_storage_url(tmp_path),
                                directions=["maximize", "minimize"])
    trial = study.ask()
    assert reconcile.tell_outcome(study, trial, status="stopped", values=[None, None])
    told = optuna.load_study(study_name="s", storage=optuna_storage_url(tmp_path)).trials[0]
    assert told.state == TrialState.PRUNED and told.values is None
    assert told.user_attrs["status"] == "stopped" and not study.best_trials


def test_a_stopped_row_needs_no_failed_row_and_settles_as_pruned(tmp_path):
    study = optuna.create_study(study_name="s", storage=optuna_storage_url(tmp_path),
                                directions=["maximize", "minimize"])
    study.ask()
    _stopped(tmp_path, "t0000")
    assert not reconcile.needs_failed_row(tmp_path, "t0000")
    reconcile.settle(study, tmp_path, METRICS, lambda line: None)
    assert study.trials[0].state == TrialState.PRUNED


@pytest.mark.parametrize("reported", [True, False], ids=["report", "row-after-error"])
def test_the_searcher_tells_a_stopped_trial_pruned(tmp_path, space, reported):
    s = make_searcher(space, name="s", folder=tmp_path)
    config = s.suggest("a0")
    _stopped(tmp_path, config["trial_id"])
    if reported:     # the worker's report (worker.report_of) of the stopped row
        s.on_trial_complete("a0", {"acc_final": float("nan"), "params_ratio": float("nan"),
                                   "hg_final": True, "hg_status": "stopped"})
    else:            # Tune saw an error; the row says what happened
        s.on_trial_complete("a0", None, error=True)
    trial = optuna.load_study(study_name="s", storage=optuna_storage_url(tmp_path)).trials[0]
    assert trial.state == TrialState.PRUNED and trial.user_attrs["status"] == "stopped"


def test_the_summary_counts_stopped_trials_apart_and_leaves_them_off_the_front(tmp_path, space):
    _row(tmp_path, "baseline", "ok", acc_final=0.9, params_ratio=1.0)
    _row(tmp_path, "t0000", "ok", acc_final=0.8, params_ratio=0.5)
    _stopped(tmp_path, "t0001")
    _stopped(tmp_path, "t0002")
    lines = summary(load_results(tmp_path), space, name="s", complete=True)
    assert lines[0] == "sweep s: 4 rows (2 ok, 2 stopped)"
    assert any(line.startswith("2 stopped early") and "PRUNED" in line for line in lines)
    assert any("Pareto front (1 of 1 usable" in line for line in lines)


def test_the_progress_line_of_a_stopped_trial_gives_its_epoch(tmp_path):
    lines: list[str] = []
    SESSIONS[str(tmp_path)] = Session(log=lines.append, keep_checkpoints=True)
    try:
        _stopped(tmp_path, "t0000")
        progress = Progress(objectives=METRICS, total=2, concurrent=1, folder=str(tmp_path))
        trial = types.SimpleNamespace(trial_id="x", config={"trial_id": "t0000"},
                                      status="TERMINATED")
        progress.on_trial_complete(0, [trial], trial)
    finally:
        SESSIONS.pop(str(tmp_path), None)
    assert len(lines) == 1 and lines[0].startswith("[1/2] t0000 stopped at epoch 3  acc_final -")
