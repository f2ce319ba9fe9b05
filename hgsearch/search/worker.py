"""The worker side of a sweep: one trial inside a Ray worker, its report and checkpoints.

Nothing here is told to Optuna: the worker trains, writes its row (``hgsearch.trial``),
sends its files where the driver's disk is not shared, and reports a few keys to Tune. The
row never travels in the report: Tune keeps every trial's last report in its experiment
state, which it saves over and over.
"""

from __future__ import annotations

import importlib
import inspect
import json
import logging
import math
import os
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray import tune

from hgsearch.errors import UserError
from hgsearch.results import empty_metrics, write_row
from hgsearch.results_layout import ResultsFolder
from hgsearch.search.baseline import BASELINE_ID
from hgsearch.search.records import DONE, finite, now, read_row
from hgsearch.search.sink import send_files, status_sender
from hgsearch.search.trial_status import StatusLog


@dataclass(frozen=True)
class WorkerSettings:
    """What every trial of a sweep needs besides its keys (``tune.with_parameters``)."""

    sweep: str
    folder: str
    objectives: tuple[str, ...]
    threads: int                 # torch threads: the CPUs Ray gave the trial
    gpu: float
    runner: str                  # "module:function" called as run_trial
    checkpoints: bool
    dense_store: str | None = None   # root of the sweep's DenseStore; None: no sharing


def quiet_exit_on_sigterm() -> None:
    """Exit at once, without a traceback, where Ray's SIGTERM handler raises SystemExit inside
    a garbage-collector callback (Python prints such an exception as "Exception ignored" and
    goes on). Ray ends a sweep's idle workers with SIGTERM; without this, one in a few clean
    sweep ends printed that traceback on the driver's console. The process was told to exit,
    and the trial's row and files are written atomically before it: nothing is lost."""
    previous = sys.unraisablehook
    if getattr(previous, "hgsearch_quiet_exit", False):
        return

    def hook(unraisable: Any) -> None:
        if isinstance(unraisable.exc_value, SystemExit):
            code = unraisable.exc_value.code
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code if isinstance(code, int) else 1)
        previous(unraisable)

    hook.hgsearch_quiet_exit = True      # type: ignore[attr-defined]  (installed once)
    sys.unraisablehook = hook


def trainable(keys: dict, settings: WorkerSettings) -> None:
    """Runs in a Ray worker: one trial, then its end reported to Tune."""
    import ray

    # Tune logs every checkpoint it persists at INFO, into the sweep's output: one line per
    # epoch saved says nothing the progress lines do not.
    logging.getLogger("ray.train._internal.storage").setLevel(logging.WARNING)
    quiet_exit_on_sigterm()
    keys = dict(keys)
    folder = Path(settings.folder)
    trial_id = keys["trial_id"]
    module, _, function = settings.runner.partition(":")
    run_trial = getattr(importlib.import_module(module), function)
    # torch is set up if the runner uses it (hgsearch.trial does; a test's stand-in need not
    # pay for importing it in every worker).
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(settings.threads)   # concurrent CPU trials must not oversubscribe
    if settings.gpu == 0 and keys.get("device", "auto") == "auto":
        keys["device"] = "cpu"      # Ray gave this trial no GPU: do not take one behind its back
    elif torch is not None and 0 < settings.gpu < 1 and torch.cuda.is_available():
        # Ray's fractional GPUs are bookkeeping only; this caps the caching allocator to match.
        torch.cuda.set_per_process_memory_fraction(settings.gpu)

    row = read_row(folder, trial_id)
    if row is None or row.get("status") not in DONE:
        context = ray.get_runtime_context()
        extra: dict[str, Any] = {
            "sweep": settings.sweep, "is_baseline": trial_id == BASELINE_ID,
            "optuna_number": -1 if trial_id == BASELINE_ID else int(trial_id[1:]),
            "ray_trial_id": tune.get_context().get_trial_id(),
            "node_id": context.get_node_id(), "node_ip": ray.util.get_node_ip_address(),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES", ""),
            "cpu_threads": torch.get_num_threads() if torch is not None else settings.threads}
        options: dict[str, Any] = {}
        accepts = inspect.signature(run_trial).parameters
        if settings.checkpoints and "checkpoint" in accepts:
            options["checkpoint"] = checkpointer = TuneCheckpointer(settings.objectives)
            extra.update(restarts=checkpointer.restarts, checkpoint_note=checkpointer.note)
        elif "checkpoint" in accepts:
            options["checkpoint"] = PhaseReporter(settings.objectives)
        if settings.dense_store and "dense_store" in accepts:
            # imported here: it imports torch, which a stand-in runner need not pay for
            from hgsearch.dense_store import DenseStore

            options["dense_store"] = DenseStore(settings.dense_store)
        log_path = ResultsFolder(folder).log(trial_id)
        log_path.parent.mkdir(parents=True, exist_ok=True)   # another node: not there yet
        with open(log_path, "a", buffering=1) as log_file:
            # Each line goes to the log, and where the trial is to its status file, which the
            # sweep's console shows while the trial runs (trial_status.py).
            log = StatusLog(folder, trial_id, lambda line: print(line, file=log_file),
                            publish=status_sender(folder))
            try:
                row = run_trial(keys, extra=extra, log=log, **options)
            except UserError as err:
                # A bad setting or missing data fails every attempt alike: record it instead of
                # letting Tune retry it; the sweep goes on and Optuna is told FAIL.
                print(f"trial {trial_id}: {err}", file=log_file)
                row = {**keys, **empty_metrics(), **extra, "status": "failed",
                       "error": f"UserError: {err}", "finished_at": now()}
                write_row(folder, row)
        send_files(folder, trial_id, row=True)
    # else: finished before a driver died; report its end again instead of training again.
    tune.report(report_of(row, settings.objectives))


def report_of(row: Mapping[str, Any], objectives: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """What a trial reports to Tune: its objectives (NaN if missing), id and status; no row."""
    out: dict[str, Any] = {m: float(row[m]) if finite(row.get(m)) else math.nan
                           for m in objectives}
    out.update(hg_trial_id=row["trial_id"], hg_status=row["status"], hg_final=True)
    return out


def phase_report(objectives: tuple[str, ...], state: Mapping[str, Any]) -> dict[str, Any]:
    """An intermediate report: the phase a trial completed (the searcher reads ``hg_phase``).

    Every report must carry every objective (Tune's strict metric check); NaN here is a
    placeholder that hg_final=False keeps from the searcher.
    """
    return {**{m: math.nan for m in objectives}, "hg_final": False,
            "hg_phase": state["phase"], "hg_epoch": state["epoch"]}


class PhaseReporter:
    """The Checkpointer of a sweep without checkpoints: keeps nothing, but reports the end of
    the dense phase (phase "trained") to Tune, as TuneCheckpointer does with its checkpoint."""

    def __init__(self, objectives: tuple[str, ...]) -> None:
        self.objectives = objectives

    def load(self) -> dict[str, Any] | None:
        return None

    def save(self, state: dict[str, Any]) -> None:
        if state["phase"] == "trained":
            tune.report(phase_report(self.objectives, state))


class TuneCheckpointer:
    """A trial's state kept as Ray Tune checkpoints (the Checkpointer of hgsearch/checkpoint.py).

    Tune copies each checkpoint to the storage path and hands the newest to the trial when
    FailureConfig retries it, on whichever node: the trial resumes instead of starting over.
    ``restarts`` counts the resumes, kept in the checkpoint itself so it survives the node. A
    checkpoint that cannot be read (torn, deleted, from another version) is no reason to lose
    the trial: it starts over, and ``note`` says so in its row.
    """

    STATE, META = "state.pt", "meta.json"

    def __init__(self, objectives: tuple[str, ...]) -> None:
        self.objectives = objectives
        self.restarts = 0
        self.note: str | None = None
        self._state: dict[str, Any] | None = None
        checkpoint = tune.get_checkpoint()
        if checkpoint is None:
            return
        from hgsearch.checkpoint import read_state

        try:
            with checkpoint.as_directory() as where:
                state = read_state(Path(where) / self.STATE)
                meta = json.loads((Path(where) / self.META).read_text())
            if state is None:
                raise FileNotFoundError(self.STATE)
            self._state, self.restarts = state, int(meta["restarts"]) + 1
        except Exception as err:   # noqa: BLE001 - any unreadable checkpoint: start over
            first = (str(err).splitlines() or [""])[0][:200]
            self.note = (f"checkpoint unreadable ({err.__class__.__name__}: {first}); "
                         "the trial started over")

    def load(self) -> dict[str, Any] | None:
        return self._state

    def save(self, state: dict[str, Any]) -> None:
        from hgsearch.checkpoint import write_state

        with tempfile.TemporaryDirectory(prefix="hgsearch-ckpt-") as tmp:
            write_state(state, Path(tmp) / self.STATE)
            meta = {"restarts": self.restarts, "phase": state["phase"], "epoch": state["epoch"]}
            (Path(tmp) / self.META).write_text(json.dumps(meta))
            tune.report(phase_report(self.objectives, state),
                        checkpoint=tune.Checkpoint.from_directory(tmp))
