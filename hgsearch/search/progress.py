"""The driver's view of trials running and ending: progress lines, failed rows, trackers.

``Progress`` is a Tune callback. When a trial ends it makes sure the trial has exactly one
row (a ``failed`` row when the worker wrote none: reconcile R7), hands the row to the sweep's
trackers once, deletes the trial's checkpoints (unless the space keeps them) and prints one
line with the objectives, done/total, elapsed time and an ETA. A ``stopped`` trial (its dense
phase stopped early) has ended like any other: it counts as done, with its epoch in the line.
Meanwhile, at every step of Tune's loop, the session's board (``console.py``) shows the running
trials' phase, epoch and validation accuracy.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ray import tune

from hgsearch.results import write_row
from hgsearch.results_layout import ResultsFolder
from hgsearch.search import reconcile
from hgsearch.search.console import Board, duration
from hgsearch.search.records import DONE, TRACKED_DIR, finite, read_row, row_ids
from hgsearch.search.trial_status import status_path

Log = Callable[[str], None]


class Tracker(Protocol):
    """An experiment tracker (MLflow, TensorBoard, ...) fed one call per trial."""

    def log_trial(self, row: Mapping[str, Any], curves: Any, model_path: Path | None) -> None:
        """One trial's row, curve (pandas DataFrame or None) and compact model (or None)."""

    def close(self) -> None:
        """The sweep's run has ended."""


@dataclass
class Session:
    """What the driver's callbacks use that cannot be pickled with Tune's experiment state."""

    log: Log
    trackers: Sequence[Tracker] = ()
    keep_checkpoints: bool = False
    errors: list[str] = field(default_factory=list)
    board: Board | None = None      # the running trials' display; None: none


# Tune pickles callbacks with the experiment (and restores them on --resume), so the caller's
# log function and trackers are looked up per sweep folder instead of being held in them.
SESSIONS: dict[str, Session] = {}


def session(folder: str | Path) -> Session:
    return SESSIONS.get(str(folder)) or Session(log=print)


def track(folder: str | Path, trial_id: str) -> bool:
    """Hand a trial's row to the trackers unless they had it already; True if handed now.

    ``tracked/<trial_id>`` is created once every tracker returned: through a kill, a trial is
    handed over at most once more (a kill between the call and the file), never lost.
    """
    import pandas as pd

    folder = Path(folder)
    marker = folder / TRACKED_DIR / trial_id
    trackers = session(folder).trackers
    row = read_row(folder, trial_id)
    if not trackers or row is None or marker.exists():
        return False
    layout = ResultsFolder(folder)
    curves_path, model = layout.curve(trial_id), layout.model(trial_id)
    curves = pd.read_parquet(curves_path) if curves_path.is_file() else None
    for tracker in trackers:
        tracker.log_trial(row, curves, model if model.is_file() else None)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    return True


def track_all(folder: str | Path) -> None:
    """Every row not yet handed over (rows a killed driver wrote and never handed on)."""
    for trial_id in row_ids(folder):
        track(folder, trial_id)


class Progress(tune.Callback):
    def __init__(self, *, objectives: list[str], total: int, concurrent: int,
                 folder: str) -> None:
        self.objectives, self.total, self.concurrent = objectives, total, concurrent
        self.folder = folder
        self.setup()

    def log(self, line: str) -> None:
        session(self.folder).log(line)

    def setup(self, **_info: Any) -> None:
        self.start = time.monotonic()
        self.started: dict[str, float] = {}
        self.durations: list[float] = []

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **_: Any) -> None:
        self.started[trial.trial_id] = time.monotonic()

    def on_step_end(self, iteration: int, trials: list, **_: Any) -> None:
        self._show_running(trials)

    def _show_running(self, trials: list, *, force: bool = False) -> None:
        board = session(self.folder).board
        if board is not None:
            board.refresh({_name(t): self.started.get(t.trial_id, self.start)
                           for t in trials if t.status == "RUNNING"}, force=force)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **_: Any) -> None:
        trial_id = _name(trial)
        row = read_row(self.folder, trial_id)
        if row is None:     # a report without a row: the row never reached this disk
            row = self._write_failed(trial, "the trial ended but its row never reached the "
                                     "results folder")
        self._ended(trial)
        figures = "  ".join(f"{m} {_fmt(row.get(m))}" for m in self.objectives)
        seconds = row.get("seconds_total")
        took = f" ({duration(seconds)})" if finite(seconds) else ""
        status = row["status"]
        if status == "stopped":     # early stopping: objectives null, the epoch says more
            status += f" at epoch {_fmt(row.get('stopped_epoch'))}"
        self._line(trials, trial, f"{trial_id} {status}  {figures}{took}")

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **_: Any) -> None:
        self.log(f"{_name(trial)} crashed ({self._error(trial)}); retrying")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **_: Any) -> None:
        row = read_row(self.folder, _name(trial)) or {}
        if row.get("status") in DONE:
            # Its row was written before a driver died, its checkpoints deleted with it, and
            # Tune, restoring it as unfinished, cannot find them: the trial had ended anyway.
            self._ended(trial)
            self._line(trials, trial, f"{_name(trial)} {row['status']} (recorded before the "
                       "driver restarted)")
            return
        if reconcile.needs_failed_row(Path(self.folder), _name(trial)):
            self._write_failed(trial, self._error(trial))
        self._ended(trial)
        self._line(trials, trial, f"{_name(trial)} failed: {self._error(trial)}")

    def _write_failed(self, trial: Any, error: str) -> dict:
        config = {k: v for k, v in trial.config.items()}
        row = reconcile.failed_row(config, error=error, attempts=trial.num_failures or 1,
                                   extra={"sweep": Path(self.folder).name,
                                          "is_baseline": config.get("trial_id") == "baseline",
                                          "ray_trial_id": trial.trial_id})
        write_row(self.folder, row)
        return row

    def _ended(self, trial: Any) -> None:
        """The row is written: hand it to the trackers, then drop the trial's checkpoints (and
        its status file: the row says how it ended)."""
        status_path(self.folder, _name(trial)).unlink(missing_ok=True)
        track(self.folder, _name(trial))
        if not session(self.folder).keep_checkpoints:
            delete_checkpoints(trial)

    def _line(self, trials: list, trial: Any, text: str) -> None:
        now = time.monotonic()
        done = 1 + sum(t.status in ("TERMINATED", "ERROR") for t in trials if t is not trial)
        self.durations.append(now - self.started.pop(trial.trial_id, self.start))
        # Trials run `concurrent` at a time, each taking about the mean so far.
        eta = sum(self.durations) / len(self.durations) * (self.total - done) / self.concurrent
        self.log(f"[{done}/{self.total}] {text} | {duration(now - self.start)} elapsed, "
                 f"ETA {duration(eta)}")
        # Tune still lists the trial as running during this callback: left out by hand.
        self._show_running([t for t in trials if t is not trial], force=True)

    def _error(self, trial: Any) -> str:
        row = read_row(self.folder, _name(trial)) or {}
        text = row.get("error") or _error_text(trial)
        lines = [ln for ln in text.splitlines() if ln.strip()]
        return lines[-1].strip()[:300] if lines else "see its log"


def delete_checkpoints(trial: Any) -> None:
    """A finished trial's checkpoints are storage for nothing once its row is written."""
    import pyarrow.fs

    storage = trial.storage
    fs, root = storage.storage_filesystem, storage.trial_fs_path
    try:
        entries = fs.get_file_info(pyarrow.fs.FileSelector(root, allow_not_found=True))
    except OSError:
        return
    for entry in entries:
        if entry.type == pyarrow.fs.FileType.Directory \
                and Path(entry.path).name.startswith("checkpoint_"):
            fs.delete_dir(entry.path)


def _error_text(trial: Any) -> str:
    """Tune's record of a trial's last error: its local copy first (the storage copy is
    synced later), else the storage's."""
    path = trial.error_file
    if path and Path(path).is_file():
        return Path(path).read_text(errors="replace")
    return str(trial.get_error() or "")


def _name(trial: Any) -> str:
    return str(trial.config.get("trial_id", trial.trial_id))


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if finite(value) else "-"
