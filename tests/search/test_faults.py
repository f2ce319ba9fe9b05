"""Fault injection: the driver's whole process group SIGKILLed at five moments of one sweep
of fast fake trials, resumed after each; then every record must agree.

Moments: mid-trial; within a second of a trial finishing (its row just written); right after
the searcher asked Optuna for a trial, before Tune launched it; right after a diverged trial
was recorded; right after a failed one. The first round also checks Ray's sockets and token
(test_cluster_sockets.py). A round with real trials is in tests/search/test_sweep.py
(test_killed_driver_resumes_without_losing_or_repeating_trials).
"""

from __future__ import annotations

import time

import optuna
import pytest
from optuna.trial import TrialState

from hgsearch.results import load_results
from hgsearch.search.records import optuna_storage_url, trial_id_of
from tests.search.helpers import (
    FAKE,
    driver_env,
    fake_space,
    group_processes,
    kill_group,
    start_driver,
    wait_for,
)
from tests.search.test_cluster_sockets import check_loopback_and_token

OUTCOMES = {"t0001": "diverge", "t0003": "fail", "t0005": "diverge", "t0006": "fail"}
NUM_SAMPLES = 8


def _rows(folder):
    trials = folder / "trials"
    return {p.stem for p in trials.glob("*.parquet")} if trials.is_dir() else set()


@pytest.mark.slow
@pytest.mark.timeout(1200)     # six Ray starts: about a minute on 2 idle cores, far more when busy
def test_sigkill_at_five_moments_loses_and_repeats_nothing(tmp_path):
    space = fake_space(tmp_path / "f.yaml", search={"lam": {"choice": [1e-4, 1e-3, 1e-2]}},
                       num_samples=NUM_SAMPLES, max_concurrent=2, retries=0)
    results, log = tmp_path / "r", tmp_path / "driver.log"
    folder = results / "f"
    env = driver_env(FAKE_TRIAL_SLEEP="1.0", HGSEARCH_TEST_RUNNER=FAKE,
                     FAKE_OUTCOMES=",".join(f"{k}:{v}" for k, v in OUTCOMES.items()))
    groups: list[int] = []
    first = [str(space), "--results", str(results)]
    again = ["--name", "f", "--resume", "--results", str(results)]

    def round_(args, *, kill_at="", when=None, check=None):
        proc = start_driver(args, log=log, env={**env, "HGSEARCH_TEST_KILL_AT": kill_at})
        groups.append(proc.pid)
        try:
            if when is not None:              # a moment seen from outside
                wait_for(when, timeout=300, proc=proc, log=log, step=0.02)
                if check is not None:         # takes seconds: then wait for the moment again
                    check(proc.pid)
                    wait_for(when, timeout=300, proc=proc, log=log, step=0.02)
                kill_group(proc.pid)
            code = proc.wait(timeout=300)
        finally:
            kill_group(proc.pid)
        return code

    def mid_trial():
        running = {p.name[len("started-"):] for p in folder.glob("started-*")} - _rows(folder)
        return bool(running)

    # 1. mid-trial (a trial started, no row yet); Ray's sockets and token checked meanwhile
    assert round_(first, when=mid_trial,
                  check=lambda pgid: check_loopback_and_token(pgid, env)) == -9
    # 2. between Optuna's ask and the trial's launch (the driver kills its group itself)
    assert round_(again, kill_at="ask") == -9
    # 3. right after a diverged trial, 4. right after a failed one
    assert round_(again, kill_at="diverged") == -9
    assert round_(again, kill_at="failed") == -9
    # 5. within a second of a trial finishing: its row has just been written
    before = len(_rows(folder))
    assert round_(again, when=lambda: len(_rows(folder)) > before) == -9
    time.sleep(0.2)
    assert round_(again) == 0, log.read_text()[-3000:]

    rows = load_results(folder)
    assert len(rows) == NUM_SAMPLES + 1 and rows.trial_id.is_unique
    assert set(rows.trial_id) == {"baseline", *(trial_id_of(i) for i in range(NUM_SAMPLES))}
    by_id = rows.set_index("trial_id")
    want = {"diverge": "diverged", "fail": "failed"}
    for trial_id, row in by_id.iterrows():
        assert row.status == want.get(OUTCOMES.get(trial_id), "ok"), (trial_id, row.status)
    study = optuna.load_study(study_name="f", storage=optuna_storage_url(folder))
    assert len(study.trials) == NUM_SAMPLES
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]
    for trial in study.trials:
        row = by_id.loc[trial_id_of(trial.number)]
        assert trial.params == {"lam": row.lam}
        assert trial.state == (TrialState.FAIL if row.status == "failed"
                               else TrialState.COMPLETE)
    for pgid in groups:                       # no Ray process of ours left running
        assert not group_processes(pgid), group_processes(pgid)
