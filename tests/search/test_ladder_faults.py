"""Fault injection in the middle of a prune ladder: the driver's whole process group SIGKILLed
right after a sibling was enqueued (before its ask), then right after a sibling's ask (before
its value left the pending list), resumed after each; then every record must agree. Fake trials
(tests/search/fakes.py) report their dense phase over, as the worker does, so siblings are
released while their parent still runs.
"""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from hgsearch.results import load_results
from hgsearch.search import ladder
from hgsearch.search.records import optuna_storage_url, trial_id_of
from tests.search.helpers import driver_env, fake_space, group_processes, kill_group, start_driver

LADDER = [0.3, 0.5, 0.7]
LAMS = [1.0e-4, 1.0e-3, 1.0e-2]
NUM_SAMPLES = 7                 # three parents: 3 + 3 + 1
STOPPED = "t0002"


@pytest.mark.slow
@pytest.mark.timeout(900)       # three Ray starts
def test_sigkill_mid_ladder_loses_and_repeats_nothing(tmp_path):
    space = fake_space(tmp_path / "l.yaml", num_samples=NUM_SAMPLES, max_concurrent=2,
                       search={"lam": {"choice": LAMS}, "prune_ratio": {"ladder": LADDER}})
    results, log = tmp_path / "r", tmp_path / "driver.log"
    folder = results / "l"
    env = driver_env(FAKE_TRIAL_SLEEP="1.0", FAKE_OUTCOMES=f"{STOPPED}:stop",
                     HGSEARCH_TEST_RUNNER="tests.search.fakes:fake_ladder_run_trial")
    groups: list[int] = []

    def round_(args, kill_at=""):
        proc = start_driver(args, log=log, env={**env, "HGSEARCH_TEST_KILL_AT": kill_at})
        groups.append(proc.pid)
        try:
            return proc.wait(timeout=300)
        finally:
            kill_group(proc.pid)

    again = ["--name", "l", "--resume", "--results", str(results)]
    assert round_([str(space), "--results", str(results)], "ladder_enqueue") == -9
    study = optuna.load_study(study_name="l", storage=optuna_storage_url(folder))
    assert [t.state for t in study.trials].count(TrialState.WAITING) == 1   # killed there
    assert round_(again, "ladder_asked") == -9
    assert round_(again) == 0, log.read_text()[-3000:]

    rows = load_results(folder)
    assert len(rows) == NUM_SAMPLES + 1 and rows.trial_id.is_unique
    assert set(rows.trial_id) == {"baseline", *(trial_id_of(i) for i in range(NUM_SAMPLES))}
    by_id = rows.set_index("trial_id")
    for trial_id, row in by_id.iterrows():
        assert row.status == ("stopped" if trial_id == STOPPED else "ok"), (trial_id, row.status)
    study = optuna.load_study(study_name="l", storage=optuna_storage_url(folder))
    assert len(study.trials) == NUM_SAMPLES
    assert all(not values for values in ladder.recorded(study).values())
    ladders: dict[int, list] = {}
    for trial in study.trials:
        row = by_id.loc[trial_id_of(trial.number)]
        assert trial.params == {"lam": row.lam, "prune_ratio": row.prune_ratio}
        assert trial.state == (TrialState.PRUNED if row.status == "stopped"
                               else TrialState.COMPLETE)
        ladders.setdefault(trial.user_attrs.get(ladder.PARENT, trial.number), []).append(trial)
    assert [len(g) for g in ladders.values()] == [3, 3, 1]
    for parent, *siblings in ladders.values():
        values = [t.params["prune_ratio"] for t in (parent, *siblings)]
        assert len(set(values)) == len(values)                  # each value once per parent
        assert len(values) == 1 or sorted(values) == LADDER     # only the last is cut short
        assert all(t.params["lam"] == parent.params["lam"] for t in siblings)
    for pgid in groups:                       # no Ray process of ours left running
        assert not group_processes(pgid), group_processes(pgid)
