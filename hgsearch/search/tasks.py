"""Trials outside Optuna and Tune, after the search: each one Ray task with a trial's resources.

The controls (``controls.py``) and the confirmation seeds (``confirm.py``) are ordinary trials
of their own keys whose rows carry a few columns more; both run them here, ``max_concurrent``
at a time, and a row once written is not written again (the caller leaves out the ids that
have an ended row).
"""

from __future__ import annotations

import importlib
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hgsearch import config
from hgsearch.errors import UserError
from hgsearch.search.console import Board
from hgsearch.search.records import read_row
from hgsearch.search.trial_status import StatusLog, status_path

Log = Callable[[str], None]
POLL_S = 1.0     # how often the running tasks' progress is looked at


@dataclass(frozen=True)
class TaskRun:
    """What one such trial needs besides its keys."""

    sweep: str
    folder: str
    runner: str
    gpu: float
    threads: int


def trial_keys(row: Mapping[str, Any], *, leave_out: Sequence[str]) -> dict[str, Any]:
    """The trial keys a row holds (null ones left to their defaults), but ``leave_out``."""
    return {k: _scalar(row[k]) for k in config.FIELDS
            if k not in leave_out and k in row and _present(row[k])}


def _scalar(value: Any) -> Any:
    """A numpy scalar of a DataFrame row as the Python value config.coerce takes."""
    return value.item() if hasattr(value, "item") and not isinstance(value, str) else value


def _present(value: Any) -> bool:
    import pandas as pd

    return value is not None and not (isinstance(value, float) and pd.isna(value)) \
        and value is not pd.NA


def run_tasks(wanted: Sequence[tuple[dict[str, Any], dict[str, Any]]], *, run: TaskRun,
              cpu: float, max_concurrent: int, what: str, log: Log,
              board: Board | None = None) -> list[str]:
    """Run each (keys, extra columns) of ``wanted`` as a Ray task, ``max_concurrent`` at a
    time; say how each ended as it ends (``what``: "control", "confirmation"); the ids run.
    ``board`` shows the running ones' phase and epoch meanwhile, as during the search."""
    import ray

    task = ray.remote(_run_task).options(num_cpus=cpu, num_gpus=run.gpu, max_retries=0)
    folder, queue = Path(run.folder), list(wanted)
    pending: dict[Any, tuple[str, float]] = {}     # task -> (trial id, when it was started)
    if board is not None:
        board.start()
    try:
        while queue or pending:
            while queue and len(pending) < max_concurrent:
                keys, extra = queue.pop(0)
                pending[task.remote(keys, extra, run, what)] = (keys["trial_id"],
                                                                time.monotonic())
            done, _ = ray.wait(list(pending), num_returns=1, timeout=POLL_S)
            for ref in done:
                trial_id, _ = pending.pop(ref)
                try:
                    ray.get(ref)
                except Exception as err:   # noqa: BLE001 - a lost worker: said, run again later
                    log(f"{what}: {trial_id}'s worker ended abnormally "
                        f"({err.__class__.__name__}); without a row it runs again when asked")
                status_path(folder, trial_id).unlink(missing_ok=True)   # ended: off the board
                row = read_row(folder, trial_id) or {}
                log(f"{what} {trial_id}: {row.get('status', 'no row')}, val "
                    f"{_pct(row.get('acc_final'))}")
            if board is not None:
                board.refresh(dict(pending.values()))
    finally:
        if board is not None:
            board.stop()
    return [k["trial_id"] for k, _ in wanted]


def _pct(value: Any) -> str:
    return "-" if value is None else f"{100 * float(value):.2f}%"


def _run_task(keys: dict[str, Any], extra: dict[str, Any], run: TaskRun, what: str) -> str:
    """Inside a Ray worker: one trial, its row written (a failure too), files sent."""
    from hgsearch.fileio import utc_now
    from hgsearch.results import empty_metrics, write_row
    from hgsearch.results_layout import ResultsFolder
    from hgsearch.search.sink import send_files, status_sender

    module, _, function = run.runner.partition(":")
    run_trial = getattr(importlib.import_module(module), function)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(run.threads)
    if run.gpu == 0 and keys.get("device", "auto") == "auto":
        keys = {**keys, "device": "cpu"}
    extra = {**extra, "sweep": run.sweep, "is_baseline": False}
    folder, trial_id = Path(run.folder), keys["trial_id"]
    log_path = ResultsFolder(folder).log(trial_id)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "a", buffering=1) as log_file:
        # each line to the log and, where the trial is, to its status file (the console's)
        log = StatusLog(folder, trial_id, lambda line: print(line, file=log_file),
                        publish=status_sender(folder))
        try:
            row = run_trial(keys, extra=extra, log=log)
        except UserError as err:
            print(f"{what} {trial_id}: {err}", file=log_file)
            row = {**keys, **empty_metrics(), **extra, "status": "failed",
                   "error": f"UserError: {err}", "finished_at": utc_now("milliseconds")}
            write_row(folder, row)
        except Exception:      # noqa: BLE001 - run_trial wrote its failed row; the sweep goes on
            row = {"status": "failed"}
    send_files(folder, trial_id, row=True)
    return str(row.get("status"))
