"""Ray Tune + Optuna: one sweep of trials, its resume, its failures and its progress.

A sweep named NAME keeps everything under ``<results>/NAME/``::

    trials/<trial_id>.parquet   one row per trial: the source of truth (hgsearch.results)
    curves/ models/ logs/       per-trial curve, compact model and log
    sweep.json                  the space, versions, start and end of every run (atomic)
    optuna.db                   the Optuna study (SQLite; study name NAME): optuna.load_study
    tune/                       Ray Tune's experiment state, which ``--resume`` restores

Trial ids are ``t<Optuna trial number>`` (``baseline`` for the baseline), so a row, its Optuna
trial and its files share one name, stable across retries and resumes. How nothing is lost or
counted twice is explained in ``_restore_or_create`` and ``_Searcher``.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import optuna
import ray
from optuna.trial import TrialState
from ray import tune
from ray.tune.search.optuna import OptunaSearch

from hgsearch import __version__, config
from hgsearch.analysis.export import jsonable
from hgsearch.analysis.front import format_table, front_table, pareto_front
from hgsearch.checkpoint import read_state, write_state
from hgsearch.errors import UserError
from hgsearch.results import empty_metrics, load_results, write_row
from hgsearch.space import BASELINE_ID, Space, find_default_space, load_space, parse_space

Log = Callable[[str], None]

TUNE_DIR = "tune"
STORAGE_ENV = "HGSEARCH_STORAGE"   # run_sweep's storage when not given (cluster/ scripts set it)
SINK_NAMESPACE = "hgsearch"        # Ray namespace of the sweeps' file sinks (_FileSink)
OPTUNA_FILE = "optuna.db"
DONE = ("ok", "diverged")        # row statuses that end a trial for good (failed may be retried)
# Tune saves its experiment state (trials + searcher) at most this often, in seconds (its
# default: every 10 s or more). The less a killed driver's last save misses, the less a resume
# has to reconcile (see _restore_or_create); Tune logged its saves here at under 10 ms.
STATE_PERIOD_S = "1"


@dataclass
class SweepResult:
    folder: Path
    rows: Any                    # pandas DataFrame of every row in folder/trials
    complete: bool               # every trial of the sweep ended (ok, diverged or failed)


def run_sweep(space: str | Path | None = None, *, name: str | None = None,
              results: str | Path = "results", num_samples: int | None = None,
              max_concurrent: int | None = None, address: str | None = None,
              storage: str | None = None, resume: bool = False, num_cpus: int | None = None,
              log: Log = print, runner: str = "hgsearch.trial:run_trial") -> SweepResult:
    """Run (or with ``resume`` continue) the sweep ``results/name`` of a search-space file.

    Everything the user can get wrong is checked before Ray starts or anything is written.
    ``num_cpus`` caps a locally started Ray (default: all cores). ``runner`` names the
    ``module:function`` each trial calls (tests substitute a stand-in).

    ``storage`` (default: the environment variable HGSEARCH_STORAGE) is where Tune keeps trial
    checkpoints: a folder every node shares or a URI pyarrow accepts (``s3://bucket/path``).
    Without it they go under the results folder, which only works where all Ray nodes share
    this machine's disk; on a cluster that does not, trials run without checkpoints (a retried
    trial starts over). Rows and files reach the results folder either way (``send_files``).
    """
    for flag, value in (("--num-samples", num_samples), ("--max-concurrent", max_concurrent)):
        if value is not None and value < 1:
            raise UserError(f"{flag} {value}: expected an integer >= 1")
    if resume:
        if space is not None or num_samples is not None or max_concurrent is not None:
            raise UserError("--resume continues a sweep as recorded in its sweep.json; SPACE, "
                            "--num-samples and --max-concurrent cannot be given with it")
        if not name:
            raise UserError("--resume needs --name NAME of the sweep to continue")
    _check_name(name)
    storage = storage or os.environ.get(STORAGE_ENV) or None
    if resume:
        folder = Path(results).resolve() / name
        recorded = _read_sweep_json(folder, name)
        storage = storage or recorded.get("storage")   # the checkpoints are where they were
        sp = parse_space(recorded["space"], source=str(folder / "sweep.json"))
    else:
        path = Path(space) if space is not None else find_default_space()
        overrides = {k: v for k, v in (("num_samples", num_samples),
                                       ("max_concurrent", max_concurrent)) if v is not None}
        sp = load_space(path, overrides=overrides)
        name = name or path.stem
        _check_name(name)
        folder = Path(results).resolve() / name
        if folder.exists() and any(folder.iterdir()):
            raise UserError(f"{folder}: sweep {name!r} exists; continue it with --name {name} "
                            "--resume, or choose another --name")
        recorded = {}

    _check_folders(sp, local=address is None, log=log)
    started_ray = _start_ray(address, num_cpus=num_cpus)
    try:
        _check_resources(sp, local=started_ray, log=log)
        elsewhere = _other_hosts()
        checkpoints = _checkpoints_possible(storage, elsewhere=elsewhere, log=log)
        sink = _start_sink(folder) if elsewhere else None
        try:
            return _run(sp, name=name, folder=folder, recorded=recorded, address=address,
                        storage=storage, checkpoints=checkpoints, resume=resume, log=log,
                        runner=runner)
        finally:
            if sink is not None:
                ray.kill(sink)
    finally:
        if started_ray:
            ray.shutdown()


def _run(sp: Space, *, name: str, folder: Path, recorded: dict, address: str | None,
         storage: str | None, checkpoints: bool, resume: bool, log: Log,
         runner: str) -> SweepResult:
    for sub in ("trials", "curves", "models", "logs"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    info = recorded or _new_sweep_json(sp, name=name, folder=folder)
    info.setdefault("storage", storage)
    run = {"started_at": _now(), "finished_at": None, "resumed": resume,
           "address": address or "local"}
    info["runs"] = [*info.get("runs", []), run]
    _write_json(folder / "sweep.json", info)
    total = sp.num_samples + (sp.baseline is not None)
    log(f"sweep {name}: {sp.num_samples} trials"
        + (" + baseline" if sp.baseline is not None else "")
        + f", {sp.max_concurrent} at a time; objectives "
        + ", ".join(f"{m} {d}" for m, d in sp.objectives) + f"; results in {folder}")
    if resume:
        log(f"resuming: {_count_done(folder)} trial(s) already recorded")

    _LOGS[str(folder)] = log
    optuna.logging.set_verbosity(optuna.logging.WARNING)   # our progress lines say it better
    progress = _Progress(objectives=sp.metrics, total=total, concurrent=sp.max_concurrent,
                         folder=str(folder))
    trainable = tune.with_resources(_trainable, {"cpu": sp.cpu, "gpu": sp.gpu})
    # Keeping one trial checkpoint makes Tune snapshot its state on each (cheap, see
    # STATE_PERIOD_S); it warns about that every few seconds unless told not to.
    with _env(RAY_AIR_NEW_OUTPUT="0", TUNE_GLOBAL_CHECKPOINT_S=STATE_PERIOD_S,
              TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S="0"):
        tuner = _restore_or_create(sp, name=name, folder=folder, trainable=trainable,
                                   progress=progress, runner=runner, storage=storage,
                                   checkpoints=checkpoints)
        grid = tuner.fit()
    complete = grid.num_terminated + grid.num_errors == total and len(grid) == total
    if complete:    # else unfinished trials are legitimately RUNNING until --resume ends them
        _settle_optuna(sp, name=name, folder=folder, log=log)
    run["finished_at"] = _now()
    run["complete"] = complete
    _write_json(folder / "sweep.json", info)
    rows = load_results(folder)
    for line in summary(rows, sp, name=name, complete=complete):
        log(line)
    return SweepResult(folder=folder, rows=rows, complete=complete)


# --------------------------------------------------------------------------- Ray and Tune

def _start_ray(address: str | None, *, num_cpus: int | None) -> bool:
    """Join ``address``, or start a private local Ray; True if we started it."""
    quiet = {"include_dashboard": False, "logging_level": logging.WARNING}
    if address:
        try:
            ray.init(address=address, **quiet)
        except (ConnectionError, ValueError, RuntimeError) as err:
            raise UserError(f"--address {address}: cannot join a Ray cluster there "
                            f"({err.__class__.__name__}: {str(err).splitlines()[0]})") from None
        return False
    # address="local": never attach to a cluster found through RAY_ADDRESS or `ray start`.
    # No dashboard, and every Ray service bound to 127.0.0.1: Ray binds to the node's IP, and
    # with cluster mode off (the variable Ray reads on macOS/Windows) the node's IP is loopback.
    # Token authentication (on by default) guards the ports on top.
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    ray.init(address="local", num_cpus=num_cpus or os.cpu_count() or 1,
             dashboard_host="127.0.0.1", **quiet)
    return True


def _other_hosts() -> list[str]:
    """Addresses of the cluster's nodes on other machines than the driver's."""
    nodes = [n for n in ray.nodes() if n["Alive"]]
    driver = ray.get_runtime_context().get_node_id()
    here = {n["NodeManagerAddress"] for n in nodes if n["NodeID"] == driver}
    return sorted({n["NodeManagerAddress"] for n in nodes} - here)


def _checkpoints_possible(storage: str | None, *, elsewhere: list[str], log: Log) -> bool:
    """Whether trial checkpoints can reach the storage path from every node.

    Tune copies a checkpoint to the storage path from the node that made it and refuses a local
    path on another machine (its storage validation file is missing there). A named storage is
    the user's promise; without one, only nodes on this machine share the results folder.
    """
    if storage or not elsewhere:
        return True
    log(f"warning: nodes at {', '.join(elsewhere)} may not share this machine's disk and no "
        f"storage was named ({STORAGE_ENV}): trials run without checkpoints (a retried trial "
        "starts over)")
    return False


@ray.remote(num_cpus=0)
class _FileSink:
    """Writes into the sweep folder on the driver's machine the files that trials on other
    machines send it (model, curve, log): results from every node end up in one folder with
    no shared filesystem. The row itself travels with the trial's result (``report_of``).
    """

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder).resolve()

    def put(self, name: str, data: bytes) -> None:
        path = (self.folder / name).resolve()
        if not path.is_relative_to(self.folder):
            raise ValueError(f"{name}: not a path inside the sweep folder")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)


def _start_sink(folder: Path) -> Any:
    """The sweep's file sink, pinned to the driver's node; trials find it by its name."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
    return _FileSink.options(name=_sink_name(folder), namespace=SINK_NAMESPACE,
                             scheduling_strategy=here).remote(str(folder))


def _sink_name(folder: Path | str) -> str:
    return f"hgsearch-files:{Path(folder).resolve()}"


def send_files(folder: Path | str, trial_id: str) -> list[str]:
    """Send a trial's model, curve and log to the sweep's sink, if it has one (trial side).

    Returns the names sent. Whole files, once per trial: a compact model is megabytes at most.
    """
    try:
        sink = ray.get_actor(_sink_name(folder), namespace=SINK_NAMESPACE)
    except ValueError:
        return []       # every node shares the driver's disk
    sent = []
    for name in (f"models/{trial_id}.pt", f"curves/{trial_id}.parquet", f"logs/{trial_id}.log"):
        path = Path(folder) / name
        if path.is_file():
            ray.get(sink.put.remote(name, path.read_bytes()))
            sent.append(name)
    return sent


def _check_resources(sp: Space, *, local: bool, log: Log) -> None:
    have = ray.cluster_resources()
    for key, need in (("CPU", sp.cpu), ("GPU", sp.gpu)):
        if need > have.get(key, 0.0):
            message = (f"resources.{key.lower()}={need:g} per trial, but the Ray cluster has "
                       f"{have.get(key, 0.0):g} {key}s")
            if local:
                raise UserError(message)
            log(f"warning: {message} (waiting for an autoscaler to add them)")


def _check_folders(sp: Space, *, local: bool, log: Log) -> None:
    """A data_dir that does not exist fails every trial: say so before starting (this machine)."""
    data_dir = sp.fixed.get("data_dir")
    if not data_dir or Path(data_dir).expanduser().is_dir():
        return
    message = f"fixed.data_dir={data_dir}: no such folder here (dataset={sp.fixed['dataset']})"
    if local:
        raise UserError(message)
    log(f"warning: {message}; the cluster's nodes must have it")


def _restore_or_create(sp: Space, *, name: str, folder: Path, trainable: Any, progress: Any,
                       runner: str, storage: str | None, checkpoints: bool) -> Any:
    """Tuner.restore of the sweep's Tune state, else a new Tuner.

    What a killed driver leaves behind, and what resume makes of it (the rows are the truth):

    - trials Tune had saved as unfinished are resumed with the same config and trial_id;
      errored ones are not restarted (Optuna was told; a restart gets an id Optuna never issued);
    - a trial that wrote its row but whose end Tune had not saved runs again as "unfinished":
      ``_trainable`` finds the row and reports it instead of training;
    - a trial asked of Optuna after Tune's last save (its worker may even have outlived the
      driver and written a row) is adopted by ``_Searcher`` before any new proposal;
    - whatever Optuna still holds RUNNING once every trial has ended is settled from its row.
    """
    path = f"{storage.rstrip('/')}/{name}/{TUNE_DIR}" if storage else str(folder / TUNE_DIR)
    if tune.Tuner.can_restore(path):
        return tune.Tuner.restore(path, trainable, resume_unfinished=True,
                                  resume_errored=False, restart_errored=False)
    settings = {"sweep": name, "folder": str(folder), "objectives": sp.metrics,
                "threads": max(1, int(sp.cpu)), "gpu": sp.gpu, "runner": runner,
                "checkpoints": checkpoints}
    searcher = _make_searcher(sp, name=name, folder=folder)
    return tune.Tuner(
        trainable,
        param_space={**_absolute_paths(sp.fixed), "out_dir": str(folder), "_sweep": settings},
        tune_config=tune.TuneConfig(
            search_alg=searcher, num_samples=sp.num_samples + (sp.baseline is not None),
            max_concurrent_trials=sp.max_concurrent, reuse_actors=True,
            trial_name_creator=_trial_name, trial_dirname_creator=_trial_name),
        run_config=tune.RunConfig(
            name=TUNE_DIR, storage_path=path.rsplit("/", 1)[0], verbose=0,
            callbacks=[progress],
            # Only the newest state matters to a retry; older ones are storage for nothing.
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            failure_config=tune.FailureConfig(max_failures=sp.retries)))


def _trial_name(trial: Any) -> str:
    return f"{trial.config.get('trial_id', 'trial')}_{trial.trial_id}"


def _absolute_paths(fixed: Mapping[str, Any]) -> dict[str, Any]:
    # Tune runs each trial in its own working directory: relative folders would move.
    out = dict(fixed)
    for key in ("data_dir", "cache_dir"):
        if out.get(key):
            out[key] = str(Path(out[key]).expanduser().resolve())
    return out


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


# --------------------------------------------------------------------------- Optuna

def optuna_storage_url(folder: str | Path) -> str:
    return f"sqlite:///{Path(folder).resolve() / OPTUNA_FILE}"


def _make_searcher(sp: Space, *, name: str, folder: Path) -> Any:
    storage = optuna.storages.RDBStorage(optuna_storage_url(folder))
    return _Searcher(sp, storage=storage, study_name=name)


class _Searcher(OptunaSearch):
    """Ray's OptunaSearch, plus:

    - the first trial is the baseline (METHOD.md part 4) when the space asks for one; it is
      never asked of nor told to Optuna, so it cannot pollute the study;
    - each trial's config carries trial_id ``t<Optuna number>``;
    - after a resume, Optuna trials the killed driver asked for are adopted before new ones;
    - a checkpoint's intermediate report (hg_final False) is never told;
    - a result whose objectives are not all finite numbers (a diverged trial) is told as FAIL:
      OptunaSearch would let Optuna's tell raise on NaN and leave the trial RUNNING for ever;
    - telling an Optuna trial twice (a resume replaying a result) is a no-op.
    """

    def __init__(self, sp: Space, *, storage: Any, study_name: str) -> None:
        super().__init__(space=sp.suggest, metric=sp.metrics, mode=sp.modes,
                         sampler=sp.make_sampler(), storage=storage, study_name=study_name)
        self._baseline = sp.baseline
        self._baseline_trial: str | None = None

    def suggest(self, trial_id: str) -> dict | None:
        if self._baseline is not None and self._baseline_trial is None:
            self._baseline_trial = trial_id
            return {**self._baseline, "trial_id": BASELINE_ID}
        ot_trial = self._orphan()
        if ot_trial is not None:
            self._ot_trials[trial_id] = ot_trial
            params = ot_trial.params
        else:
            params = super().suggest(trial_id)
            ot_trial = self._ot_trials[trial_id]
        ours = trial_id_of(ot_trial.number)
        ot_trial.set_user_attr("trial_id", ours)
        return {**params, "trial_id": ours}

    def _orphan(self) -> Any:
        """An Optuna trial a killed driver asked for but its last saved Tune state lacks.

        Adopting it (same params, same trial_id) instead of asking a new one keeps Tune's
        trials and Optuna's in one-to-one correspondence: if its worker outlived the driver and
        wrote the row, ``_trainable`` reports that row; if not, the trial runs now.
        """
        known = {t.number for t in self._ot_trials.values()}
        for frozen in self._ot_study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if frozen.number not in known:
                return optuna.trial.Trial(self._ot_study, frozen._trial_id)
        return None

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        # A checkpoint's report is no result: its objectives are NaN placeholders.
        if trial_id != self._baseline_trial and result.get("hg_final", True):
            super().on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is None or trial_id in self._completed_trials:
            self._completed_trials.add(trial_id)       # the baseline, or a replayed result
            return
        values = [(result or {}).get(m) for m in self._metric]
        if not error and all(_finite(v) for v in values):
            self._ot_study.tell(ot_trial, [float(v) for v in values],
                                state=TrialState.COMPLETE, skip_if_finished=True)
        else:
            status = (result or {}).get("hg_status", "failed")
            ot_trial.set_user_attr("status", status)
            self._ot_study.tell(ot_trial, state=TrialState.FAIL, skip_if_finished=True)
        self._completed_trials.add(trial_id)


def trial_id_of(number: int) -> str:
    return f"t{number:04d}"


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value)


def _settle_optuna(sp: Space, *, name: str, folder: Path, log: Log) -> None:
    """Leave no Optuna trial RUNNING once the sweep has ended.

    A trial still RUNNING here was asked by a driver that died before Tune saved it: its row, if
    any, is told; without a row it never ran and is marked FAIL.
    """
    study = optuna.load_study(study_name=name, storage=optuna_storage_url(folder))
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        row = _read_row(folder, trial_id_of(trial.number))
        values = [row.get(m) for m in sp.metrics] if row else None
        if row and row.get("status") == "ok" and all(_finite(v) for v in values):
            study.tell(trial.number, values, state=TrialState.COMPLETE, skip_if_finished=True)
            what = "told its row's values"
        else:
            study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
            what = f"marked FAIL ({'row status ' + row['status'] if row else 'it never ran'})"
        log(f"optuna trial {trial.number} was left RUNNING by an earlier driver: {what}")


# --------------------------------------------------------------------------- one trial

def _trainable(config_: dict) -> None:
    """Runs in a Ray worker: one trial, then its row reported to Tune."""
    import torch  # the trial imports it anyway; the driver need not

    settings = config_["_sweep"]
    keys = {k: v for k, v in config_.items() if k != "_sweep"}
    folder = Path(settings["folder"])
    trial_id = keys["trial_id"]
    torch.set_num_threads(settings["threads"])   # concurrent CPU trials must not oversubscribe
    if settings["gpu"] == 0 and keys.get("device", "auto") == "auto":
        keys["device"] = "cpu"      # Ray gave this trial no GPU: do not take one behind its back
    elif 0 < settings["gpu"] < 1 and torch.cuda.is_available():
        # Ray's fractional GPUs are bookkeeping only; this caps the caching allocator to match.
        torch.cuda.set_per_process_memory_fraction(settings["gpu"])

    row = _read_row(folder, trial_id)
    if row is None or row.get("status") not in DONE:
        context = ray.get_runtime_context()
        extra = {"sweep": settings["sweep"], "is_baseline": trial_id == BASELINE_ID,
                 "optuna_number": -1 if trial_id == BASELINE_ID else int(trial_id[1:]),
                 "ray_trial_id": tune.get_context().get_trial_id(),
                 "node_id": context.get_node_id(), "node_ip": ray.util.get_node_ip_address(),
                 "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
                 "cpu_threads": torch.get_num_threads()}
        module, _, function = settings["runner"].partition(":")
        run_trial = getattr(importlib.import_module(module), function)
        options: dict[str, Any] = {}
        if settings.get("checkpoints") and "checkpoint" in inspect.signature(run_trial).parameters:
            options["checkpoint"] = checkpointer = TuneCheckpointer(settings["objectives"])
            extra["restarts"] = checkpointer.restarts
        (folder / "logs").mkdir(parents=True, exist_ok=True)   # another node: not there yet
        with open(folder / "logs" / f"{trial_id}.log", "a", buffering=1) as log_file:
            try:
                row = run_trial(keys, extra=extra, log=lambda line: print(line, file=log_file),
                                **options)
            except UserError as err:
                # A bad setting or missing data fails every attempt alike: record it instead of
                # letting Tune retry it; the sweep goes on and Optuna is told FAIL.
                print(f"trial {trial_id}: {err}", file=log_file)
                row = {**keys, **empty_metrics(), **extra, "status": "failed",
                       "error": f"UserError: {err}", "finished_at": _now()}
                write_row(folder, row)
        send_files(folder, trial_id)
    # else: finished before a driver died; report its row again instead of training again.
    tune.report(report_of(row, settings["objectives"]))


def report_of(row: Mapping[str, Any], objectives: list[str]) -> dict[str, Any]:
    """What a trial reports to Tune: its objectives (NaN if missing) and its whole row as JSON.

    The row travels as one JSON string because Tune overwrites result keys such as trial_id and
    hostname; a driver on another machine can write the row from it.
    """
    plain = jsonable(dict(row))
    out: dict[str, Any] = {m: plain[m] if _finite(plain.get(m)) else math.nan
                           for m in objectives}
    out.update(hg_trial_id=plain["trial_id"], hg_status=plain["status"], hg_final=True,
               row_json=json.dumps(plain, allow_nan=False))
    return out


class TuneCheckpointer:
    """A trial's state kept as Ray Tune checkpoints (the Checkpointer of hgsearch/checkpoint.py).

    Tune copies each checkpoint to the storage path and hands the newest to the trial when
    FailureConfig retries it, on whichever node: the trial resumes instead of starting over.
    ``restarts`` counts the resumes, kept in the checkpoint itself so it survives the node.
    """

    STATE, META = "state.pt", "meta.json"

    def __init__(self, objectives: list[str]) -> None:
        self.objectives = objectives
        self.restarts = 0
        self._state: dict[str, Any] | None = None
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            with checkpoint.as_directory() as where:
                self._state = read_state(Path(where) / self.STATE)
                meta = json.loads((Path(where) / self.META).read_text())
            self.restarts = int(meta["restarts"]) + 1

    def load(self) -> dict[str, Any] | None:
        return self._state

    def save(self, state: dict[str, Any]) -> None:
        with tempfile.TemporaryDirectory(prefix="hgsearch-ckpt-") as tmp:
            write_state(state, Path(tmp) / self.STATE)
            meta = {"restarts": self.restarts, "phase": state["phase"], "epoch": state["epoch"]}
            (Path(tmp) / self.META).write_text(json.dumps(meta))
            # Every report must carry every objective (Tune's strict metric check); NaN here
            # is a placeholder that hg_final=False keeps from the searcher (_Searcher).
            tune.report({**{m: math.nan for m in self.objectives}, "hg_final": False,
                         "hg_phase": state["phase"], "hg_epoch": state["epoch"]},
                        checkpoint=tune.Checkpoint.from_directory(tmp))


def _read_row(folder: Path, trial_id: str) -> dict | None:
    import pyarrow.parquet as pq

    path = folder / "trials" / f"{trial_id}.parquet"
    if not path.is_file():
        return None
    return pq.read_table(path).to_pylist()[0]


# --------------------------------------------------------------------------- progress

_LOGS: dict[str, Log] = {}      # sweep folder -> where its progress lines go


class _Progress(tune.Callback):
    """Prints one line per finished trial with its objectives, done/total, elapsed and ETA.

    Also writes a reported row on the driver when the trial's file is not there (a worker on
    another machine without a shared filesystem): same file name, so writing is idempotent.
    """

    def __init__(self, *, objectives: list[str], total: int, concurrent: int,
                 folder: str) -> None:
        # Tune pickles callbacks with the experiment (and restores them on --resume), so the
        # caller's log function is looked up per sweep folder instead of being held here.
        self.objectives, self.total, self.concurrent = objectives, total, concurrent
        self.folder = folder
        self.setup()

    def log(self, line: str) -> None:
        _LOGS.get(self.folder, print)(line)

    def setup(self, **_info: Any) -> None:
        self.start = time.monotonic()
        self.started: dict[str, float] = {}
        self.durations: list[float] = []

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **_: Any) -> None:
        self.started[trial.trial_id] = time.monotonic()

    def _line(self, trials: list, trial: Any, text: str) -> None:
        now = time.monotonic()
        done = 1 + sum(t.status in ("TERMINATED", "ERROR") for t in trials if t is not trial)
        self.durations.append(now - self.started.pop(trial.trial_id, self.start))
        # Trials run `concurrent` at a time, each taking about the mean so far.
        eta = sum(self.durations) / len(self.durations) * (self.total - done) / self.concurrent
        self.log(f"[{done}/{self.total}] {text} | {_duration(now - self.start)} elapsed, "
                 f"ETA {_duration(eta)}")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **_: Any) -> None:
        result = trial.last_result or {}
        if "row_json" not in result:
            return
        row = json.loads(result["row_json"])
        if _read_row(Path(self.folder), row["trial_id"]) is None:
            write_row(self.folder, row)
        figures = "  ".join(f"{m} {_fmt(row.get(m))}" for m in self.objectives)
        seconds = row.get("seconds_total")
        took = f" ({_duration(seconds)})" if _finite(seconds) else ""
        self._line(trials, trial, f"{row['trial_id']} {row['status']}  {figures}{took}")

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **_: Any) -> None:
        self.log(f"{_name(trial)} crashed ({self._error(trial)}); retrying")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **_: Any) -> None:
        self._line(trials, trial, f"{_name(trial)} failed: {self._error(trial)}")

    def _error(self, trial: Any) -> str:
        row = _read_row(Path(self.folder), _name(trial)) or {}
        text = row.get("error") or str(trial.get_error() or "")
        lines = [ln for ln in text.splitlines() if ln.strip()]
        return lines[-1].strip()[:300] if lines else "see its log"


def _name(trial: Any) -> str:
    return str(trial.config.get("trial_id", trial.trial_id))


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if _finite(value) else "-"


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m"


def summary(rows: Any, sp: Space, *, name: str, complete: bool) -> list[str]:
    """End-of-sweep lines: counts by status, the baseline, the Pareto front as a table."""
    counts = rows["status"].value_counts().to_dict() if len(rows) else {}
    lines = [f"sweep {name}: {len(rows)} rows (" + ", ".join(
        f"{n} {s}" for s, n in sorted(counts.items())) + ")"]
    if not complete:
        lines.append(f"not finished: continue with `hgsearch sweep --name {name} --resume`")
    is_base = rows["is_baseline"].eq(True).fillna(False) if "is_baseline" in rows else None
    searched = rows[~is_base] if is_base is not None else rows
    if is_base is not None and is_base.any():
        base = rows[is_base].iloc[0]
        lines.append("baseline: " + ", ".join(f"{m} {_fmt(base.get(m))}" for m in sp.metrics)
                     + f" ({base['status']})")
    try:
        front = pareto_front(searched, list(sp.objectives))
    except UserError as err:
        return [*lines, f"no Pareto front yet: {err}"]
    table = format_table(front_table(front, list(sp.objectives)))
    lines.append(f"Pareto front ({len(front)} of {front.attrs['usable']} usable trials; "
                 "MACs count one multiply-accumulate as one):")
    lines.extend(table.to_string(index=False).splitlines())
    return lines


# --------------------------------------------------------------------------- bookkeeping

def _check_name(name: str | None) -> None:
    if name is not None and not config.SAFE_NAME.match(name):
        raise UserError(f"--name {name!r}: use letters, digits, '.', '_' and '-' (at most 128, "
                        "not starting with '.' or '-')")


def _new_sweep_json(sp: Space, *, name: str, folder: Path) -> dict:
    return {
        "name": name, "space_file": str(Path(sp.source).resolve()), "space": sp.raw,
        "objectives": [{"name": m, "direction": d} for m, d in sp.objectives],
        "num_samples": sp.num_samples, "baseline": sp.baseline is not None,
        "optuna": {"storage": optuna_storage_url(folder), "study_name": name},
        "tune_path": str(folder / TUNE_DIR),
        "versions": {"hgsearch": __version__, "torch": _version_of("torch"),
                     "ray": ray.__version__, "optuna": optuna.__version__},
        "started_at": _now(), "runs": [],
    }


def _read_sweep_json(folder: Path, name: str) -> dict:
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


def _count_done(folder: Path) -> int:
    rows = load_results(folder)
    return int(rows["status"].isin(DONE).sum()) if len(rows) else 0


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def _version_of(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")
