"""The sweep end to end with real (tiny) trials: rows, baseline, divergence, crash and retry,
concurrency, the Optuna storage, refusals, and a driver killed with SIGKILL then resumed.

Ray starts with 2 CPUs and no dashboard and is shut down by the sweep; processes a test starts
are ended by their own process group id only.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml
from optuna.trial import TrialState

from hgsearch.cli import main
from hgsearch.errors import UserError
from hgsearch.fileio import VERSIONED
from hgsearch.results import empty_metrics, load_curves, load_results, write_row
from hgsearch.search.driver import run_sweep
from hgsearch.search.reconcile import settle
from hgsearch.search.records import optuna_storage_url
from hgsearch.search.searcher import make_searcher
from hgsearch.search.space_file import parse_space
from hgsearch.search.worker import report_of
from hgsearch.trackers import make_trackers
from hgsearch.trial import run_trial

REPO = Path(__file__).resolve().parents[2]

# A trial of a few seconds on one core. exclusive / 2 levels / square with lam 10 makes the loss
# infinite within the first epoch (a diverged trial); lam 1e-4 trains normally.
TINY = {"dataset": "synthetic", "synthetic_train_size": 200, "synthetic_test_size": 50,
        "arch": "resnet20", "epochs": 1, "batch_size": 64, "eval_batch_size": 200,
        "score_samples": 8, "finetune_epochs": 0, "latency_repeats": 1, "latency_batch": 4,
        "prune_ratio": 0.3, "reg": "exclusive", "reg_levels": 2, "reg_outer": "square"}
DIVERGING_LAM = 10.0


def _space(path: Path, **changes) -> Path:
    data = {"fixed": TINY, "search": {"lam": {"choice": [1.0e-4, DIVERGING_LAM]}},
            "objectives": {"acc_final": "max", "params_ratio": "min"},
            "sampler": {"name": "random", "seed": 0}, "num_samples": 2, "max_concurrent": 2,
            "resources": {"cpu": 1}, "retries": 1, "baseline": True, **changes}
    path.write_text(yaml.safe_dump(data))
    return path


def _seed_giving_both_lams() -> int:
    """A RandomSampler seed whose first two proposals are the two lam choices.

    Found with Optuna itself, so the test does not hard-code its random stream.
    """
    for seed in range(100):
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
        lams = [study.ask().suggest_categorical("lam", [1.0e-4, DIVERGING_LAM]) for _ in "ab"]
        if set(lams) == {1.0e-4, DIVERGING_LAM}:
            return seed
    raise AssertionError("no seed in 0..99 proposes both values")


def flaky_run_trial(config, *, extra=None, log=print):
    """run_trial, but the first attempt at t0001 crashes like a lost GPU (row 'failed', raise)."""
    marker = Path(config["out_dir"]) / f"crashed-{config['trial_id']}"
    if config["trial_id"] == "t0001" and not marker.exists():
        marker.touch()
        write_row(config["out_dir"], {**config, **empty_metrics(), **(extra or {}),
                                      "status": "failed", "error": "RuntimeError: injected"})
        raise RuntimeError("injected crash")
    return run_trial(config, extra=extra, log=log)


def _overlap(a: pd.Series, b: pd.Series) -> bool:
    return a.started_at < b.finished_at and b.started_at < a.finished_at


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """One sweep of 2 searched trials + the baseline, two at a time: ~30 s on 2 cores."""
    tmp = tmp_path_factory.mktemp("sweep")
    path = _space(tmp / "tiny.yaml", sampler={"name": "random", "seed": _seed_giving_both_lams()})
    lines: list[str] = []
    # Ray's workers inherit the environment: let them import this module for flaky_run_trial.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO),
                                                             os.environ.get("PYTHONPATH")])))
        result = run_sweep(path, results=tmp / "results", num_cpus=2, log=lines.append,
                           runner="tests.search.test_sweep:flaky_run_trial",
                           trackers=make_trackers(mlflow=str(tmp / "mlflow")))
    return result, lines


def test_mlflow_holds_one_run_per_trial_with_its_curve(sweep):
    from mlflow.tracking import MlflowClient

    result, _ = sweep
    rows = load_results(result.folder)
    curves = load_curves(result.folder)
    store = result.folder.parents[1] / "mlflow" / "mlflow.db"
    client = MlflowClient(tracking_uri=f"sqlite:///{store}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    by_trial = {r.data.tags["hgsearch_trial_id"]: r for r in runs}
    assert len(runs) == len(by_trial) == len(rows)          # one run per trial, no duplicate
    assert set(by_trial) == set(rows.trial_id)
    for trial_id, run in by_trial.items():
        for phase, curve in curves[curves.trial_id == trial_id].groupby("phase"):
            history = client.get_metric_history(run.info.run_id, f"{phase}/val_acc")
            assert sorted(m.step for m in history) == sorted(curve.epoch)
            assert sorted(m.value for m in history) == pytest.approx(sorted(curve.val_acc))


def test_sweep_records_every_trial_once_with_baseline(sweep):
    result, lines = sweep
    rows = load_results(result.folder)
    assert result.complete and len(rows) == 3
    assert sorted(rows.trial_id) == ["baseline", "t0000", "t0001"]
    base = rows[rows.trial_id == "baseline"].iloc[0]
    assert base.is_baseline and base.reg == "none" and pd.isna(base.lam) and base.prune_ratio == 0
    assert base.status == "ok" and base.params_ratio == 1.0
    assert not rows[rows.trial_id != "baseline"].is_baseline.any()
    for _, row in rows.iterrows():
        assert row.sweep == "tiny" and row.node_id and row.node_ip and row.cpu_threads == 1
        assert isinstance(row.cuda_visible_devices, str) and row.device == "cpu"
        assert (result.folder / "logs" / f"{row.trial_id}.log").is_file()
    ok = rows[rows.status == "ok"]
    assert all((result.folder / "models" / f"{t}.pt").is_file() for t in ok.trial_id)
    assert any(line.startswith("[3/3] ") for line in lines)
    assert any(line.startswith("Pareto front") for line in lines)


def test_diverged_trial_is_recorded_and_told_to_optuna_as_infeasible(sweep):
    result, _ = sweep
    rows = load_results(result.folder).set_index("trial_id")
    searched = rows.loc[["t0000", "t0001"]]
    assert sorted(searched.status) == ["diverged", "ok"]
    assert (searched.status == "diverged").eq(searched.lam == DIVERGING_LAM).all()
    info = json.loads((result.folder / "sweep.json").read_text())
    study = optuna.load_study(**{k: info["optuna"][k] for k in ("storage", "study_name")})
    assert len(study.trials) == 2                    # the baseline never entered the study
    for trial in study.trials:
        row = rows.loc[trial.user_attrs["trial_id"]]
        assert trial.params["lam"] == row.lam
        if row.status == "ok":
            assert trial.state == TrialState.COMPLETE
            assert trial.values == [row.acc_final, row.params_ratio]
            assert trial.constraints == {"diverged": 0.0}
        else:   # told COMPLETE and infeasible, so that the sampler moves away (reconcile R6)
            assert trial.state == TrialState.COMPLETE and trial.user_attrs["status"] == "diverged"
            assert trial.constraints == {"diverged": 1.0}
    assert study.directions == [optuna.study.StudyDirection.MAXIMIZE,
                                optuna.study.StudyDirection.MINIMIZE]
    assert study.metric_names == ["acc_final", "params_ratio"]


def test_crashed_trial_is_retried_and_its_row_replaced(sweep):
    result, lines = sweep
    assert (result.folder / "crashed-t0001").exists()
    row = load_results(result.folder).set_index("trial_id").loc["t0001"]
    assert row.status in ("ok", "diverged")
    assert pd.isna(row.error) or "injected" not in row.error
    assert any("t0001 crashed" in line and "retrying" in line for line in lines)


def test_trials_run_two_at_a_time(sweep):
    result, _ = sweep
    rows = load_results(result.folder)
    assert rows.started_at.notna().all()
    pairs = [(a, b) for i, a in rows.iterrows() for j, b in rows.iterrows() if i < j]
    assert any(_overlap(a, b) for a, b in pairs)


def test_sweep_json_records_space_versions_and_runs(sweep):
    result, _ = sweep
    info = json.loads((result.folder / "sweep.json").read_text())
    assert info["name"] == "tiny" and info["space"]["fixed"]["arch"] == "resnet20"
    assert info["objectives"] == [{"name": "acc_final", "direction": "max"},
                                  {"name": "params_ratio", "direction": "min"}]
    assert set(info["versions"]) == {"python", *VERSIONED}   # fileio.versions()
    assert len(info["runs"]) == 1 and info["runs"][0]["complete"] is True
    assert info["runs"][0]["finished_at"] > info["runs"][0]["started_at"]


def test_report_carries_objectives_id_and_status_only():
    row = {"trial_id": "t0003", "status": "diverged", "acc_final": math.nan,
           "params_ratio": 0.5, "kept_channels": [1, 2], "lam": 1e-3}
    out = report_of(row, ["acc_final", "params_ratio"])
    assert math.isnan(out["acc_final"]) and out["params_ratio"] == 0.5
    # The row stays out of the report: Tune keeps every trial's last report in its state.
    assert out == {"acc_final": out["acc_final"], "params_ratio": 0.5, "hg_trial_id": "t0003",
                   "hg_status": "diverged", "hg_final": True}


# --------------------------------------------------------------------------- Optuna bookkeeping

def _study(tmp_path: Path, name: str = "s") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=optuna_storage_url(tmp_path))


def test_searcher_keeps_baseline_out_of_optuna_and_fails_nan(tmp_path):
    space = parse_space(yaml.safe_load(_space(tmp_path / "s.yaml").read_text()), source="s")
    searcher = make_searcher(space, name="s", folder=tmp_path)
    assert searcher.suggest("ray-a") == {**space.baseline, "trial_id": "baseline"}
    first, second = searcher.suggest("ray-b"), searcher.suggest("ray-c")
    assert (first["trial_id"], second["trial_id"]) == ("t0000", "t0001")
    end = {"hg_final": True, "hg_status": "ok"}
    searcher.on_trial_complete("ray-a", {"acc_final": 0.5, "params_ratio": 1.0, **end})
    searcher.on_trial_complete("ray-c", {"acc_final": 0.4, "params_ratio": 0.6, **end})
    searcher.on_trial_complete("ray-b", {"acc_final": math.nan, "params_ratio": math.nan,
                                         "hg_final": True, "hg_status": "diverged"})
    searcher.on_trial_complete("ray-c", {"acc_final": 0.1, "params_ratio": 0.9, **end})
    trials = _study(tmp_path).trials
    assert len(trials) == 2                                   # no baseline in the study
    assert trials[0].state == TrialState.COMPLETE and trials[0].user_attrs["status"] == "diverged"
    assert trials[0].constraints == {"diverged": 1.0}
    assert trials[0].values == [0.4, 0.6]     # placeholders: the worst feasible values so far
    assert trials[1].state == TrialState.COMPLETE and trials[1].values == [0.4, 0.6]
    assert [t.params["lam"] for t in trials] == [first["lam"], second["lam"]]


def test_restored_searcher_adopts_what_the_dead_driver_asked_after_its_last_save(tmp_path):
    """Tune pickles the searcher with the experiment; a driver killed after asking Optuna for
    t0001 but before saving leaves t0001 RUNNING: the restored searcher hands it out again."""
    space = parse_space(yaml.safe_load(_space(tmp_path / "s.yaml").read_text()), source="s")
    searcher = make_searcher(space, name="s", folder=tmp_path)
    searcher.suggest("ray-a")
    searcher.suggest("ray-b")
    searcher.save(str(tmp_path / "searcher.pkl"))       # Tune's last save
    lost = searcher.suggest("ray-c")                    # then the driver dies
    restored = make_searcher(space, name="s", folder=tmp_path)
    restored.restore(str(tmp_path / "searcher.pkl"))
    assert restored.suggest("ray-d") == lost            # adopted: same trial_id and params
    assert restored.suggest("ray-e") == "FINISHED"      # num_samples 2: the study holds them
    end = {"hg_final": True, "hg_status": "ok"}
    restored.on_trial_complete("ray-b", {"acc_final": 0.3, "params_ratio": 0.5, **end})
    restored.on_trial_complete("ray-d", {"acc_final": 0.2, "params_ratio": 0.4, **end})
    states = [t.state for t in _study(tmp_path).trials]
    assert states == [TrialState.COMPLETE, TrialState.COMPLETE]


def test_optuna_trials_left_running_are_settled_from_rows(tmp_path):
    space = parse_space(yaml.safe_load(_space(tmp_path / "s.yaml").read_text()), source="s")
    study = optuna.create_study(study_name="s", storage=optuna_storage_url(tmp_path),
                                directions=["maximize", "minimize"])
    for _ in range(3):
        study.ask({"lam": optuna.distributions.CategoricalDistribution([1e-4, 10.0])})
    base = {**TINY, "out_dir": str(tmp_path), **empty_metrics()}
    write_row(tmp_path, {**base, "trial_id": "t0000", "status": "ok", "acc_final": 0.25,
                         "params_ratio": 0.5})
    write_row(tmp_path, {**base, "trial_id": "t0001", "status": "diverged"})
    lines: list[str] = []
    settle(_study(tmp_path), tmp_path, space.metrics, lines.append)
    states = [(t.state, t.values, t.constraints) for t in _study(tmp_path).trials]
    assert states == [(TrialState.COMPLETE, [0.25, 0.5], {"diverged": 0.0}),
                      (TrialState.COMPLETE, [0.25, 0.5], {"diverged": 1.0}),
                      (TrialState.FAIL, None, {})]            # t0002 has no row: it never ran
    assert len(lines) == 3


# --------------------------------------------------------------------------- refusals

def _cli(*args: str) -> int:
    return main(["sweep", *args])


def test_bad_space_is_refused_before_anything_is_written(tmp_path, capsys):
    path = _space(tmp_path / "bad.yaml", num_samples=0, retries=-1)
    assert _cli(str(path), "--results", str(tmp_path / "r")) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 2
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("args,message", [
    (["--name", "../up"], "--name"),
    (["--name", "up\n"], "--name"),
    (["--num-samples", "0"], "--num-samples"),
    (["--progress-every", "0"], "--progress-every"),
    (["--progress-every", "nan"], "--progress-every"),
    (["--resume"], "--name"),
    (["--resume", "--name", "nope"], "no sweep 'nope'"),
])
def test_bad_arguments_are_refused(tmp_path, capsys, args, message):
    path = _space(tmp_path / "s.yaml")
    space = [] if "--resume" in args else [str(path)]
    assert _cli(*space, *args, "--results", str(tmp_path / "r")) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_reusing_a_name_without_resume_is_refused(tmp_path, capsys):
    path = _space(tmp_path / "s.yaml")
    folder = tmp_path / "r" / "s"
    folder.mkdir(parents=True)
    (folder / "sweep.json").write_text("{}")
    assert _cli(str(path), "--results", str(tmp_path / "r")) == 2
    assert "--resume" in capsys.readouterr().err
    assert [p.name for p in folder.iterdir()] == ["sweep.json"]


def test_the_library_call_checks_progress_every_too(tmp_path):
    with pytest.raises(UserError, match="--progress-every -1: expected seconds > 0"):
        run_sweep(_space(tmp_path / "s.yaml"), results=tmp_path / "r", progress_every=-1)
    assert not (tmp_path / "r").exists()


def test_missing_data_folder_is_refused_before_ray_starts(tmp_path):
    path = _space(tmp_path / "c.yaml", fixed={**TINY, "dataset": "cifar10",
                                              "data_dir": str(tmp_path / "none")})
    with pytest.raises(UserError, match="data_dir"):
        run_sweep(path, results=tmp_path / "r")
    assert not (tmp_path / "r").exists()


# --------------------------------------------------------------------------- kill and resume

def _driver(*args: str, log: Path) -> subprocess.Popen:
    # Its own session: the driver and the Ray processes it starts form one process group.
    return subprocess.Popen([sys.executable, "-m", "hgsearch.cli", "sweep", *args],
                            cwd=REPO, stdout=log.open("a"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def _end_group(proc: subprocess.Popen, seconds: float) -> None:
    """Give what the driver started a moment to exit; then end the rest of its group."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.5)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.mark.slow
def test_killed_driver_resumes_without_losing_or_repeating_trials(tmp_path):
    # No pruning: these trials skip scoring and take about a second of training each.
    path = _space(tmp_path / "k.yaml", fixed={**TINY, "prune_ratio": 0.0}, num_samples=3,
                  search={"lam": {"loguniform": [1.0e-5, 1.0e-3]}})
    results, log = tmp_path / "r", tmp_path / "driver.log"
    trials = results / "k" / "trials"
    proc = _driver(str(path), "--results", str(results), log=log)
    try:
        deadline = time.monotonic() + 240
        while not list(trials.glob("*.parquet")):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        _end_group(proc, seconds=2)     # a worker may still finish its trial meanwhile
    before = load_results(results / "k")
    before = before[before.status == "ok"].set_index("trial_id").started_at
    assert len(before) >= 1

    resumed = _driver("--name", "k", "--resume", "--results", str(results), log=log)
    try:
        assert resumed.wait(timeout=300) == 0, log.read_text()
    finally:
        _end_group(resumed, seconds=5)
    rows = load_results(results / "k")
    assert len(rows) == 4 and rows.trial_id.is_unique, rows[["trial_id", "status"]]
    assert "baseline" in set(rows.trial_id) and (rows.status == "ok").all()
    # Finished trials were not run again: same start time as before the kill.
    after = rows.set_index("trial_id").started_at
    assert (after[before.index] == before).all()
    study = optuna.load_study(study_name="k", storage=f"sqlite:///{results / 'k' / 'optuna.db'}")
    states = [t.state for t in study.trials]
    assert TrialState.RUNNING not in states and len(study.trials) == 3
    by_id = rows.set_index("trial_id")
    for trial in study.trials:           # each row's searched key is its Optuna trial's
        assert trial.params == {"lam": by_id.loc[trial.user_attrs["trial_id"]].lam}
    from tests.search.helpers import group_processes
    assert not group_processes(proc.pid) and not group_processes(resumed.pid)
    complete = {t.user_attrs["trial_id"] for t in study.trials if t.state == TrialState.COMPLETE}
    assert complete == set(rows.trial_id) - {"baseline"}
    info = json.loads((results / "k" / "sweep.json").read_text())
    assert [r["resumed"] for r in info["runs"]] == [False, True]
    assert info["runs"][1]["complete"] is True
