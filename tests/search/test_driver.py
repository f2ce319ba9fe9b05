"""One sweep of fake trials in this process, ending every way a trial can (ok, diverged, an
exception before any row, a worker SIGKILLed on each attempt), then a resume of it: rows,
Optuna study, trackers and atomic writes, checked from outside the code that makes them."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import optuna
import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from optuna.trial import TrialState

from hgsearch.cli import main
from hgsearch.errors import UserError
from hgsearch.results import load_results
from hgsearch.search.driver import run_sweep
from hgsearch.search.records import lock, optuna_storage_url
from tests.search.fakes import DIVERGE, FAIL, KILL
from tests.search.helpers import FAKE, REPO, fake_space

LAMS = [1.0e-4, DIVERGE, FAIL, KILL]


class FakeTracker:
    def __init__(self) -> None:
        self.calls: list[tuple[str, bool, bool]] = []
        self.closed = 0

    def log_trial(self, row, curves, model_path) -> None:
        assert Path(row["out_dir"], "trials", f"{row['trial_id']}.parquet").is_file()
        self.calls.append((row["trial_id"], curves is not None, model_path is not None))

    def close(self) -> None:
        self.closed += 1


def _seed_for_every_lam() -> int:
    """A RandomSampler seed whose first four proposals are the four lams (found, not assumed)."""
    for seed in range(200):
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
        if {study.ask().suggest_categorical("lam", LAMS) for _ in LAMS} == set(LAMS):
            return seed
    raise AssertionError("no seed in 0..199 proposes every lam")


class WriteLog:
    """Every file this process opens for writing, and every rename (audit hook + pyarrow)."""

    def __init__(self, root: Path) -> None:
        self.root, self.on = str(root), False
        self.written: list[str] = []
        self.renamed: list[tuple[str, str]] = []

    def hook(self, event: str, args: tuple) -> None:
        if not self.on:
            return
        if event == "open" and isinstance(args[0], (str, Path)) and args[1] \
                and any(c in str(args[1]) for c in "wax+"):
            self._add(self.written, str(args[0]))
        elif event in ("os.rename", "os.replace"):
            self.renamed.append((str(args[0]), str(args[1])))

    def _add(self, where: list, path: str) -> None:
        if path.startswith(self.root):
            where.append(path)


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("driver")
    space = fake_space(tmp / "s.yaml", search={"lam": {"choice": LAMS}},
                       sampler={"name": "random", "seed": _seed_for_every_lam()},
                       num_samples=4, retries=1)
    writes = WriteLog(tmp / "r")
    sys.addaudithook(writes.hook)      # audit hooks stay for the process: off after the sweep
    original = pq.write_table

    def write_table(table, where, *args, **kwargs):
        if writes.on:
            writes._add(writes.written, str(where))
        return original(table, where, *args, **kwargs)

    tracker, lines = FakeTracker(), []
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", str(REPO))
        mp.setattr(pq, "write_table", write_table)
        writes.on = True
        try:
            result = run_sweep(space, results=tmp / "r", num_cpus=2, log=lines.append,
                               runner=FAKE, trackers=[tracker])
        finally:
            writes.on = False
    return result, tracker, writes, lines, space


def _by_id(result):
    return load_results(result.folder).set_index("trial_id")


def test_every_trial_has_exactly_one_row_whatever_ended_it(swept):
    result, *_ = swept
    rows = _by_id(result)
    assert result.complete and sorted(rows.index) == ["baseline", "t0000", "t0001", "t0002",
                                                      "t0003"]
    status = {float(r.lam): r.status for _, r in rows.drop("baseline").iterrows()}
    assert status == {1.0e-4: "ok", DIVERGE: "diverged", FAIL: "failed", KILL: "failed"}
    for lam in (FAIL, KILL):     # written by the driver: the worker could not
        row = rows[(rows.lam == lam) & (rows.index != "baseline")].iloc[0]
        assert row.attempts == 2 and row.error and row.sweep == "s"
    killed = rows[rows.lam == KILL].iloc[0]
    assert "died" in killed.error.lower() or "exit" in killed.error.lower(), killed.error


def test_study_matches_rows_directions_and_names(swept):
    result, *_ = swept
    rows = _by_id(result)
    study = optuna.load_study(study_name="s", storage=optuna_storage_url(result.folder))
    spec = yaml.safe_load((result.folder / "sweep.json").read_text())["space"]["objectives"]
    want = [optuna.study.StudyDirection.MAXIMIZE if d == "max" else
            optuna.study.StudyDirection.MINIMIZE for d in spec.values()]
    assert study.directions == want and study.metric_names == list(spec)
    assert len(study.trials) == 4
    for trial in study.trials:
        row = rows.loc[trial.user_attrs["trial_id"]]
        assert trial.params == {"lam": row.lam}
        state = {"ok": TrialState.COMPLETE, "diverged": TrialState.COMPLETE,
                 "failed": TrialState.FAIL}[row.status]
        assert trial.state == state
        if row.status == "ok":
            assert trial.values == [row.acc_final, row.params_ratio]
    feasible = {t.user_attrs["trial_id"] for t in study.best_trials}
    assert feasible and all(rows.loc[t].status == "ok" for t in feasible)


def test_tracker_sees_each_row_once_after_it_is_written(swept):
    result, tracker, *_ = swept
    ids = [call[0] for call in tracker.calls]
    assert sorted(ids) == sorted(_by_id(result).index) and tracker.closed == 1


def test_driver_writes_rows_and_sweep_json_atomically(swept):
    result, _, writes, *_ = swept
    finals = {str(result.folder / "sweep.json")} | {
        str(p) for p in (result.folder / "trials").glob("*.parquet")}
    assert writes.written, "nothing seen: the interception is broken"
    assert not finals & set(writes.written), "written under its final name"
    # The driver wrote the failed rows and sweep.json: each arrived by a rename.
    arrived = {dst for _, dst in writes.renamed}
    driver_rows = [str(result.folder / "trials" / f"{t}.parquet")
                   for t, r in _by_id(result).iterrows() if pd.notna(r.get("attempts"))
                   and r.get("attempts") == 2]
    assert len(driver_rows) == 2 and set(driver_rows) <= arrived
    assert str(result.folder / "sweep.json") in arrived


def test_tune_state_holds_no_rows(swept):
    """Tune saves every trial's last report in its experiment state, over and over."""
    result, *_ = swept
    states = list((result.folder / "tune").glob("experiment_state*.json"))
    text = "".join(p.read_text() for p in states)
    assert states and "hg_trial_id" in text       # the reports are there, readable
    assert "row_json" not in text and "cpu_threads" not in text    # a row's column is not


def test_no_checkpoints_or_tune_loggers_left(swept):
    result, *_ = swept
    tune = result.folder / "tune"
    assert not list(tune.rglob("checkpoint_*"))
    assert not [p for p in tune.rglob("*") if p.name in ("progress.csv", "result.json")
                or p.name.startswith("events.out.tfevents")]


def test_resume_with_its_space_tracks_only_what_was_never_tracked(swept):
    result, tracker, _, _, space = swept
    (result.folder / "tracked" / "t0001").unlink()     # as if killed before tracking it
    again = FakeTracker()
    out = run_sweep(space, name="s", results=result.folder.parent, resume=True, num_cpus=2,
                    log=lambda _line: None, runner=FAKE, trackers=[again])
    assert out.complete and len(out.rows) == 5
    assert again.calls == [("t0001", False, False)] and again.closed == 1


def test_resume_with_another_space_is_refused_in_one_line(swept, tmp_path, capsys):
    result, *_ = swept
    other = fake_space(tmp_path / "s.yaml", num_samples=9)
    code = main(["sweep", str(other), "--name", "s", "--resume", "--results",
                 str(result.folder.parent)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "num_samples" in err[0] and "differs" in err[0]


def test_second_driver_on_the_same_folder_is_refused(swept, capsys):
    result, *_ = swept
    held = lock(result.folder)
    try:
        code = main(["sweep", "--name", "s", "--resume", "--results", str(result.folder.parent)])
    finally:
        held.close()
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "another hgsearch sweep" in err[0]
    with pytest.raises(UserError):     # and the lock is really the file's
        with lock(result.folder):
            lock(result.folder)


def test_copy_of_a_finished_sweep_elsewhere_adds_no_trial(swept, tmp_path):
    """Tune state that cannot be restored (here: deleted) must not buy num_samples again."""
    result, *_ = swept
    copy = tmp_path / "r" / "s"
    shutil.copytree(result.folder, copy, ignore=shutil.ignore_patterns("tune", "sweep.lock"))
    out = run_sweep(name="s", results=tmp_path / "r", resume=True, num_cpus=2,
                    log=lambda _line: None, runner=FAKE)
    assert out.complete and sorted(out.rows.trial_id) == sorted(result.rows.trial_id)
    study = optuna.load_study(study_name="s", storage=optuna_storage_url(copy))
    assert len(study.trials) == 4


def test_a_storage_folder_that_cannot_be_looked_into_is_one_line_not_a_traceback(
        tmp_path, monkeypatch):
    # As a user without the right to list a parent folder sees it (root sees everything, so the
    # refusal is made here): Path.exists raises PermissionError on Python 3.11.
    from pathlib import Path

    from hgsearch.search.driver import check_storage

    real = Path.exists

    def exists(self):
        if self == tmp_path / "locked":
            raise PermissionError(13, "Permission denied")
        return real(self)

    monkeypatch.setattr(Path, "exists", exists)
    with pytest.raises(UserError, match=r"--storage .*locked/ckpt: cannot be checked"):
        check_storage(str(tmp_path / "locked" / "ckpt"))
