"""``run_sweep``: a sweep of trials, run by Ray Tune, proposed by Optuna, recorded as rows.

Everything the user can get wrong is checked before Ray starts or anything is written; then
the sweep's lock is taken, Ray started (or joined), and Tune's experiment restored or created.
How the rows, the Optuna study and Tune's state are kept one is in ``reconcile``.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hgsearch.errors import UserError
from hgsearch.results_layout import TRIAL_FOLDERS
from hgsearch.search import reconcile
from hgsearch.search.baseline import BASELINE_ID
from hgsearch.search.cluster import (
    STORAGE_ENV,
    Log,
    check_resources,
    checkpoints_possible,
    other_hosts,
    ray_session,
)
from hgsearch.search.console import Board, logs_note, make_board
from hgsearch.search.controls import run_controls
from hgsearch.search.progress import SESSIONS, Progress, Session, Tracker, track_all
from hgsearch.search.records import (
    ENDED,
    LOCK_FILE,
    check_name,
    lock,
    new_sweep_json,
    now,
    read_row,
    read_sweep_json,
    trial_id_of,
    write_json,
)
from hgsearch.search.space import Space
from hgsearch.search.space_file import find_default_space, load_space, parse_space
from hgsearch.search.tasks import TaskRun


@dataclass
class SweepResult:
    folder: Path
    rows: Any                    # pandas DataFrame of every row in folder/trials
    complete: bool               # every trial of the sweep ended (ok, diverged or failed)


def run_sweep(space: str | Path | None = None, *, name: str | None = None,
              results: str | Path = "results", num_samples: int | None = None,
              max_concurrent: int | None = None, address: str | None = None,
              storage: str | None = None, resume: bool = False, num_cpus: int | None = None,
              log: Log = print, runner: str = "hgsearch.trial:run_trial",
              trackers: Sequence[Tracker] = (), live: bool | None = None,
              progress_every: float | None = None) -> SweepResult:
    """Run (or with ``resume`` continue) the sweep ``results/name`` of a search-space file.

    ``num_cpus`` caps a locally started Ray (default: all cores). ``runner`` names the
    ``module:function`` each trial calls (tests substitute a stand-in). ``trackers`` get
    ``log_trial`` once per trial after its row is written, and ``close`` at the end.

    While trials run, their phase, epoch and validation accuracy are shown (``console.py``):
    with ``live`` (default: ``log`` is ``print`` and stdout a terminal) as a table redrawn every
    ``progress_every`` seconds (default 2), else as lines through ``log``, one per running trial
    at each phase change and at most every ``progress_every`` seconds (default 30) besides.

    ``storage`` (default: the environment variable HGSEARCH_STORAGE) is where Tune keeps trial
    checkpoints: a folder every node shares or a URI pyarrow accepts (``s3://bucket/path``).
    Without it they go under the results folder, which only works where all Ray nodes share
    this machine's disk; on a cluster that does not, trials run without checkpoints (a retried
    trial starts over). Rows and files reach the results folder either way (the file sink).
    """
    for flag, value in (("--num-samples", num_samples), ("--max-concurrent", max_concurrent)):
        if value is not None and value < 1:
            raise UserError(f"{flag} {value}: expected an integer >= 1")
    if progress_every is not None and not progress_every > 0:   # NaN too
        raise UserError(f"--progress-every {progress_every:g}: expected seconds > 0")
    check_name(name)
    given_storage = storage
    storage = storage or os.environ.get(STORAGE_ENV) or None
    if resume:
        if num_samples is not None or max_concurrent is not None:
            raise UserError("--resume continues a sweep as recorded in its sweep.json; "
                            "--num-samples and --max-concurrent cannot be given with it")
        if not name:
            raise UserError("--resume needs --name NAME of the sweep to continue")
        folder = Path(results).resolve() / name
        recorded = read_sweep_json(folder, name)
        storage = storage or recorded.get("storage")   # the checkpoints are where they were
        sp = parse_space(recorded["space"], source=str(folder / "sweep.json"))
        if space is not None:
            _check_same_space(Path(space), recorded["space"], folder)
    else:
        path = Path(space) if space is not None else find_default_space()
        overrides = {k: v for k, v in (("num_samples", num_samples),
                                       ("max_concurrent", max_concurrent)) if v is not None}
        sp = load_space(path, overrides=overrides)
        name = name or path.stem
        check_name(name)
        folder = Path(results).resolve() / name
        if folder.exists() and any(folder.iterdir()):
            raise UserError(f"{folder}: sweep {name!r} exists; continue it with --name {name} "
                            "--resume, or choose another --name")
        recorded = {}
    source = ("--storage" if given_storage else STORAGE_ENV if os.environ.get(STORAGE_ENV)
              else f"{folder / 'sweep.json'}: storage")
    storage = check_storage(storage, source=source)
    _check_folders(sp, local=address is None, log=log)

    created = not folder.exists()
    held = lock(folder)
    try:
        with ray_session(address, num_cpus=num_cpus) as started:
            check_resources(sp.cpu, sp.gpu, local=started, log=log)
            elsewhere = other_hosts()
            checkpoints = checkpoints_possible(storage, elsewhere=elsewhere, log=log)
            with _sink(folder, on=bool(elsewhere)):
                return _run(sp, name=name, folder=folder, recorded=recorded, address=address,
                            storage=storage, checkpoints=checkpoints, resume=resume, log=log,
                            runner=runner, trackers=trackers,
                            board=make_board(folder, log=log, live=live, every=progress_every))
    finally:
        held.close()
        if not (folder / "sweep.json").exists():     # refused before anything was recorded
            (folder / LOCK_FILE).unlink(missing_ok=True)
            if created and not any(folder.iterdir()):
                folder.rmdir()


def _run(sp: Space, *, name: str, folder: Path, recorded: dict, address: str | None,
         storage: str | None, checkpoints: bool, resume: bool, log: Log, runner: str,
         trackers: Sequence[Tracker], board: Board) -> SweepResult:
    import optuna

    from hgsearch.results import load_results
    from hgsearch.search.searcher import make_searcher
    from hgsearch.search.summary import summary
    from hgsearch.search.tuner import restore_or_create

    for sub in TRIAL_FOLDERS:
        (folder / sub).mkdir(parents=True, exist_ok=True)
    info = recorded or new_sweep_json(sp, name=name, folder=folder)
    info.setdefault("storage", storage)
    run = {"started_at": now(), "finished_at": None, "resumed": resume,
           "address": address or "local"}
    info["runs"] = [*info.get("runs", []), run]
    write_json(folder / "sweep.json", info)
    total = sp.num_samples + (sp.baseline is not None)
    log(f"sweep {name}: {sp.num_samples} trials"
        + (" + baseline" if sp.baseline is not None else "")
        + f", {sp.max_concurrent} at a time; objectives "
        + ", ".join(f"{m} {d}" for m, d in sp.objectives) + f"; results in {folder}")
    log(logs_note(folder))
    if resume:
        rows = load_results(folder)
        done = int(rows["status"].isin(ENDED).sum()) if len(rows) else 0
        log(f"resuming: {done} trial(s) already recorded")

    SESSIONS[str(folder)] = Session(log=log, trackers=tuple(trackers),
                                    keep_checkpoints=sp.keep_checkpoints, board=board)
    optuna.logging.set_verbosity(optuna.logging.WARNING)   # our progress lines say it better
    try:
        progress = Progress(objectives=sp.metrics, total=total, concurrent=sp.max_concurrent,
                            folder=str(folder))
        searcher = make_searcher(sp, name=name, folder=folder)
        # Tune warns when it saves its experiment state often; phase reports make it save at
        # every trained network, which is the point: 0 turns the warning off.
        with _env(RAY_AIR_NEW_OUTPUT="0", TUNE_DISABLE_AUTO_CALLBACK_LOGGERS="1",
                  TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S="0"):
            # Tune's own CSV/JSON/TensorBoard logs would hold the NaN placeholders of
            # checkpoint reports; the rows and curves are the record.
            # With those loggers off, Tune's ResultGrid warns that each trial lacks their
            # files; nothing reads them here.
            logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
            tuner = restore_or_create(sp, name=name, folder=folder, searcher=searcher,
                                      progress=progress, runner=runner, storage=storage,
                                      checkpoints=checkpoints, log=log)
            board.start()
            try:
                grid = tuner.fit()
            finally:
                board.stop()
        study = searcher.study
        if grid.num_terminated + grid.num_errors == len(grid) \
                and reconcile.remaining(study, sp.num_samples) <= 0:
            # Tune has ended every trial: none runs any more, each must have its row (R7).
            for trial_id in reconcile.write_missing_rows(
                    study, folder, fixed=sp.fixed, baseline=sp.baseline, sweep=name):
                log(f"{trial_id} ended without a row: recorded as failed")
        complete = _all_ended(sp, folder, study)
        if complete:    # else unfinished trials are legitimately RUNNING until --resume ends them
            reconcile.settle(study, folder, sp.metrics, log)
            # After the search, outside Optuna and Tune: rows of their own, written once.
            run_controls(sp.controls, rows=load_results(folder), objectives=list(sp.objectives),
                         run=TaskRun(sweep=name, folder=str(folder), runner=runner,
                                        gpu=sp.gpu, threads=max(1, int(sp.cpu))),
                         cpu=sp.cpu, max_concurrent=sp.max_concurrent, log=log, board=board)
        track_all(folder)
    finally:
        for tracker in trackers:
            tracker.close()
        SESSIONS.pop(str(folder), None)
    run["finished_at"] = now()
    run["complete"] = complete
    write_json(folder / "sweep.json", info)
    rows = load_results(folder)
    for line in summary(rows, sp, name=name, complete=complete):
        log(line)
    return SweepResult(folder=folder, rows=rows, complete=complete)


def _all_ended(sp: Space, folder: Path, study: Any) -> bool:
    """Every trial of the budget asked and ended with a row (the baseline included)."""
    if reconcile.remaining(study, sp.num_samples) > 0:
        return False
    ids = [trial_id_of(t.number) for t in study.get_trials(deepcopy=False)]
    ids += [BASELINE_ID] if sp.baseline is not None else []
    return all((read_row(folder, i) or {}).get("status") in ENDED for i in ids)


def check_storage(storage: str | None, *, source: str = "--storage") -> str | None:
    """``storage`` as Tune will be given it (a local folder made absolute), or a UserError.

    A URI is parsed by the very call Ray makes with it (``pyarrow.fs.FileSystem.from_uri``),
    which creates nothing: a scheme pyarrow does not know, or a bucket it cannot resolve, is
    refused here instead of failing inside Tune after the sweep folder is written. A local folder
    may not exist yet (Tune creates it), but it may not be a file, nor lie under one.
    """
    if not storage:
        return None
    if "://" not in storage:
        path = Path(storage).expanduser().resolve()
        try:
            existing = next(p for p in (path, *path.parents) if p.exists())
        except OSError as err:      # a parent this user may not look into
            raise UserError(f"{source} {storage}: cannot be checked ({err.strerror}); expected "
                            "a folder this user can write, or a URI such as s3://bucket/path") \
                from None
        if not existing.is_dir():
            raise UserError(f"{source} {storage}: {existing} is a file, not a folder; expected "
                            "a folder (created if missing) or a URI such as s3://bucket/path")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise UserError(f"{source} {storage}: the folder {existing} is not writable")
        return str(path)
    import pyarrow.fs

    try:
        pyarrow.fs.FileSystem.from_uri(storage)
    except (ValueError, OSError) as err:      # ArrowInvalid is a ValueError
        reason = " ".join((str(err).splitlines() or [err.__class__.__name__])[0].split())
        raise UserError(f"{source} {storage}: not a storage Ray can use ({reason[:200]}); "
                        "expected a folder or a URI pyarrow reads, such as s3://bucket/path or "
                        "gs://bucket/path") from None
    return storage


def _check_same_space(path: Path, recorded: Mapping[str, Any], folder: Path) -> None:
    """``--resume`` with SPACE: fine when it is the recorded space, refused when it differs."""
    given = load_space(path).raw
    if given == recorded:
        return
    keys = sorted(set(given) | set(recorded))
    first = next(k for k in keys if given.get(k) != recorded.get(k))
    raise UserError(f"{path}: differs from the space sweep {folder.name!r} was started with "
                    f"(section {first}); resume without SPACE, or start a new --name")


def _check_folders(sp: Space, *, local: bool, log: Log) -> None:
    """A data_dir that does not exist fails every trial: say so before starting (this machine)."""
    data_dir = sp.fixed.get("data_dir")
    if not data_dir or Path(data_dir).expanduser().is_dir():
        return
    message = f"fixed.data_dir={data_dir}: no such folder here (dataset={sp.fixed['dataset']})"
    if local:
        raise UserError(message)
    log(f"warning: {message}; the cluster's nodes must have it")


@contextlib.contextmanager
def _sink(folder: Path, *, on: bool) -> Iterator[None]:
    if not on:
        yield
        return
    import ray

    from hgsearch.search.sink import start_sink

    sink = start_sink(folder)
    try:
        yield
    finally:
        ray.kill(sink)


@contextlib.contextmanager
def _env(**values: str) -> Iterator[None]:
    """Set environment variables for the block (Tune reads these when a run starts)."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value

