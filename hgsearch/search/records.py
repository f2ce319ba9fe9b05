"""The sweep folder's own files: sweep.json, the lock, rows read back, names and times.

A sweep named NAME keeps everything under ``<results>/NAME/``::

    trials/<trial_id>.parquet   one row per trial: the source of truth (hgsearch.results)
    curves/ models/ logs/       per-trial curve, compact model and log (hgsearch.results_layout)
    sweep.json                  the space, versions, start and end of every run (atomic)
    optuna.db                   the Optuna study (SQLite; study name NAME): optuna.load_study
    tune/                       Ray Tune's experiment state, which ``--resume`` restores
    sweep.lock                  held (flock) by the one driver running the sweep
    tracked/<trial_id>          a trial already handed to the trackers (run_sweep's trackers)
"""

from __future__ import annotations

import fcntl
import json
import math
from pathlib import Path
from typing import Any, BinaryIO

from hgsearch import config
from hgsearch.errors import UserError
from hgsearch.fileio import utc_now, versions, write_json_atomic
from hgsearch.results_layout import ResultsFolder

TUNE_DIR = "tune"
OPTUNA_FILE = "optuna.db"
LOCK_FILE = "sweep.lock"
TRACKED_DIR = "tracked"
# Row statuses of a trial that ran to its end (stopped: its dense phase was stopped early).
DONE = ("ok", "diverged", "stopped")
ENDED = (*DONE, "failed")        # row statuses that end a trial for good


def trial_id_of(number: int) -> str:
    """The row id of Optuna trial ``number``: a row, its trial and its files share it."""
    return f"t{number:04d}"


def optuna_storage_url(folder: str | Path) -> str:
    return f"sqlite:///{Path(folder).resolve() / OPTUNA_FILE}"


def finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value)


def check_name(name: str | None) -> None:
    if name is not None and not config.SAFE_NAME.match(name):
        raise UserError(f"--name {name!r}: use letters, digits, '.', '_' and '-' (at most 128, "
                        "not starting with '.' or '-')")


def read_row(folder: str | Path, trial_id: str) -> dict | None:
    import pyarrow.parquet as pq

    path = ResultsFolder(folder).row(trial_id)
    if not path.is_file():
        return None
    return pq.read_table(path).to_pylist()[0]


def row_ids(folder: str | Path) -> list[str]:
    return sorted(p.stem for p in ResultsFolder(folder).trials.glob("*.parquet"))


def lock(folder: Path) -> BinaryIO:
    """Hold the sweep's lock until the returned file is closed (or the process dies).

    A second driver on the same folder would adopt the first one's trials as orphans and
    write the same rows: it is refused. flock is released by the kernel with the process.
    """
    folder.mkdir(parents=True, exist_ok=True)
    handle = open(folder / LOCK_FILE, "ab")     # noqa: SIM115 - held for the whole sweep
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise UserError(f"{folder}: another hgsearch sweep is running on this folder (it holds "
                        f"{LOCK_FILE}); wait for it to end or stop it first") from None
    return handle


def read_sweep_json(folder: Path, name: str) -> dict:
    path = folder / "sweep.json"
    if not path.is_file():
        raise UserError(f"--resume: no sweep {name!r} (no {path}); start it without --resume")
    try:
        data = json.loads(path.read_text())
        if not isinstance(data.get("space"), dict):
            raise ValueError
    except (OSError, ValueError, AttributeError):
        raise UserError(f"{path}: not a sweep record (expected JSON with its \"space\")") from None
    return data


def new_sweep_json(sp: Any, *, name: str, folder: Path) -> dict:
    return {
        "name": name, "space_file": str(Path(sp.source).resolve()), "space": sp.raw,
        "objectives": [{"name": m, "direction": d} for m, d in sp.objectives],
        "num_samples": sp.num_samples, "baseline": sp.baseline is not None,
        "optuna": {"storage": optuna_storage_url(folder), "study_name": name},
        "tune_path": str(folder / TUNE_DIR),
        "versions": versions(),
        "started_at": now(), "runs": [],
    }


def write_json(path: Path, data: dict) -> None:
    """Write JSON under a temporary name in the same folder, then rename over ``path``."""
    write_json_atomic(path, data)


def now() -> str:
    return utc_now("milliseconds")
