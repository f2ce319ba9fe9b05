"""Trials outside Optuna and Tune, after the search: each one Ray task with a trial's resources.

The controls (``controls.py``) and the confirmation seeds (``confirm.py``) are ordinary trials
of their own keys whose rows carry a few columns more; both run them here, ``max_concurrent``
at a time, and a row once written is not written again (the caller leaves out the ids that
have an ended row).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hgsearch import config
from hgsearch.errors import UserError
from hgsearch.search.records import read_row

Log = Callable[[str], None]


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
              cpu: float, max_concurrent: int, what: str, log: Log) -> list[str]:
    """Run each (keys, extra columns) of ``wanted`` as a Ray task, ``max_concurrent`` at a
    time; say how each ended (``what``: "control", "confirmation"); the ids run."""
    import ray

    task = ray.remote(_run_task).options(num_cpus=cpu, num_gpus=run.gpu, max_retries=0)
    pending: list[Any] = []
    for keys, extra in wanted:
        if len(pending) >= max_concurrent:
            _done, pending = ray.wait(pending, num_returns=1)
        pending.append(task.remote(keys, extra, run, what))
    for ref in pending:
        try:
            ray.get(ref)
        except Exception as err:     # noqa: BLE001 - a lost worker: said below, run again later
            log(f"{what}: a worker ended abnormally ({err.__class__.__name__}); a trial "
                "without a row runs again when asked again")
    folder = Path(run.folder)
    for keys, _ in wanted:
        row = read_row(folder, keys["trial_id"]) or {}
        log(f"{what} {keys['trial_id']}: {row.get('status', 'no row')}, val "
            f"{_pct(row.get('acc_final'))}")
    return [k["trial_id"] for k, _ in wanted]


def _pct(value: Any) -> str:
    return "-" if value is None else f"{100 * float(value):.2f}%"


def _run_task(keys: dict[str, Any], extra: dict[str, Any], run: TaskRun, what: str) -> str:
    """Inside a Ray worker: one trial, its row written (a failure too), files sent."""
    from hgsearch.fileio import utc_now
    from hgsearch.results import empty_metrics, write_row
    from hgsearch.results_layout import ResultsFolder
    from hgsearch.search.sink import send_files

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
        try:
            row = run_trial(keys, extra=extra, log=lambda line: print(line, file=log_file))
        except UserError as err:
            print(f"{what} {trial_id}: {err}", file=log_file)
            row = {**keys, **empty_metrics(), **extra, "status": "failed",
                   "error": f"UserError: {err}", "finished_at": utc_now("milliseconds")}
            write_row(folder, row)
        except Exception:      # noqa: BLE001 - run_trial wrote its failed row; the sweep goes on
            row = {"status": "failed"}
    send_files(folder, trial_id, row=True)
    return str(row.get("status"))
