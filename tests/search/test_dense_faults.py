"""Fault injection in the middle of a shared dense training: real trials (tiny ResNet-20s) of a
sweep whose ladder shares each trained network; the driver's whole process group is SIGKILLed
while a network is being trained (seen from outside: its claim file exists in the store), then
the sweep is resumed. Every trial must end with exactly one row, each network trained to its end
by exactly one trial, and no claim may be left in the store.
"""

from __future__ import annotations

import time

import optuna
import pytest
from optuna.trial import TrialState

from hgsearch.results import load_results
from hgsearch.search.records import optuna_storage_url, trial_id_of
from tests.search.helpers import driver_env, fake_space, group_processes, kill_group, start_driver

NUM_SAMPLES = 4                  # two networks x a ladder of two


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sigkill_mid_shared_training_loses_and_repeats_nothing(tmp_path):
    space = fake_space(
        tmp_path / "d.yaml", num_samples=NUM_SAMPLES, max_concurrent=2,
        fixed={"dataset": "synthetic", "arch": "resnet20", "epochs": 3, "finetune_epochs": 1,
               "synthetic_train_size": 300, "synthetic_test_size": 50, "score_samples": 8,
               "latency_repeats": 1, "latency_batch": 2, "device": "cpu",
               "checkpoint_every": 0, "early_stop": False},
        search={"lam": {"loguniform": [1.0e-5, 1.0e-4]}, "prune_ratio": {"ladder": [0.3, 0.6]}})
    results, log = tmp_path / "r", tmp_path / "driver.log"
    folder = results / "d"
    env = driver_env(HGSEARCH_TEST_RUNNER="hgsearch.trial:run_trial")
    groups: list[int] = []

    # Round 1: killed as soon as a searched trial's network is being trained (the baseline's
    # claim does not count: any claim of a regularized network will do, so wait for two).
    proc = start_driver([str(space), "--results", str(results)], log=log, env=env)
    groups.append(proc.pid)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            claims = list((folder / "dense").glob("*/claim"))
            if len(claims) >= 2:
                break
            time.sleep(0.05)
        assert proc.poll() is None, log.read_text()[-3000:]
        assert len(list((folder / "dense").glob("*/claim"))) >= 2
    finally:
        kill_group(proc.pid)

    proc = start_driver(["--name", "d", "--resume", "--results", str(results)], log=log,
                        env=env)
    groups.append(proc.pid)
    try:
        assert proc.wait(timeout=600) == 0, log.read_text()[-3000:]
    finally:
        kill_group(proc.pid)

    rows = load_results(folder)
    assert len(rows) == NUM_SAMPLES + 1 and rows.trial_id.is_unique
    assert set(rows.trial_id) == {"baseline", *(trial_id_of(i) for i in range(NUM_SAMPLES))}
    assert (rows.status == "ok").all(), rows[["trial_id", "status", "error"]]
    searched = rows[rows.trial_id != "baseline"]
    # Two networks, each trained once to its end (by the trial that took the dead claim over,
    # or by the first); the other trial of each ladder reused it.
    per_key = searched.groupby("dense_key")["dense_reused"].agg(list)
    assert len(per_key) == 2, per_key
    assert all(sorted(v) == [False, True] for v in per_key), per_key
    store = folder / "dense"
    assert not list(store.glob("*/claim"))
    assert {p.name for p in store.iterdir()} == set(rows.dense_key)
    study = optuna.load_study(study_name="d", storage=optuna_storage_url(folder))
    assert len(study.trials) == NUM_SAMPLES
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    for pgid in groups:
        assert not group_processes(pgid), group_processes(pgid)
