"""Tune's side of a sweep: the Tuner, restored from its saved state or made afresh.

What a killed driver leaves behind, and what a resume makes of it (the rows are the truth):

- trials Tune had saved as unfinished are resumed with the same config and trial_id; errored
  ones are not restarted (Optuna was told; a restart gets an id Optuna never issued);
- a trial that wrote its row but whose end Tune had not saved runs again as "unfinished": the
  worker finds the row and reports it instead of training;
- a trial asked of Optuna after Tune's last save is adopted by the searcher (reconcile R4);
- Tune state that cannot be read, or that is elsewhere (another storage), gives a fresh Tuner:
  the budget is the study's (R5), so no trial is added, and orphans are adopted.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ray import tune

from hgsearch.search.cluster import Log
from hgsearch.search.records import TUNE_DIR
from hgsearch.search.space import Space
from hgsearch.search.worker import WorkerSettings, trainable

# Tune deletes the older checkpoint when a newer one is registered, before the experiment
# state that names the newer one is saved: with one kept, a kill in that gap strands the
# trial. With two, the state always names one that still exists.
CHECKPOINTS_KEPT = 2


def restore_or_create(sp: Space, *, name: str, folder: Path, searcher: Any, progress: Any,
                      runner: str, storage: str | None, checkpoints: bool, log: Log) -> Any:
    settings = WorkerSettings(sweep=name, folder=str(folder), objectives=tuple(sp.metrics),
                              threads=max(1, int(sp.cpu)), gpu=sp.gpu, runner=runner,
                              checkpoints=checkpoints,
                              dense_store=dense_root(storage, name, folder, sp))
    fn = tune.with_resources(tune.with_parameters(trainable, settings=settings),
                             {"cpu": sp.cpu, "gpu": sp.gpu})
    path = f"{storage.rstrip('/')}/{name}/{TUNE_DIR}" if storage else str(folder / TUNE_DIR)
    if tune.Tuner.can_restore(path):
        try:
            # The searcher and callbacks come back from the saved state (the searcher with its
            # map of Tune trials to Optuna trials); log and trackers are this run's (SESSIONS).
            return tune.Tuner.restore(path, fn, resume_unfinished=True, resume_errored=False,
                                      restart_errored=False)
        except Exception as err:   # noqa: BLE001 - any unreadable state: the study decides
            log(f"warning: Tune's saved state at {path} cannot be restored "
                f"({err.__class__.__name__}: {(str(err).splitlines() or [''])[0][:200]}); "
                "continuing from the Optuna study and the rows")
    return tune.Tuner(
        fn,
        param_space={**_absolute_paths(sp.fixed), "out_dir": str(folder)},
        tune_config=tune.TuneConfig(
            # No count for Tune: the searcher says FINISHED once the study holds the budget.
            search_alg=searcher, num_samples=-1,
            max_concurrent_trials=sp.max_concurrent, reuse_actors=True,
            trial_name_creator=_trial_name, trial_dirname_creator=_trial_name),
        run_config=tune.RunConfig(
            name=TUNE_DIR, storage_path=path.rsplit("/", 1)[0], verbose=0,
            callbacks=[progress],
            checkpoint_config=tune.CheckpointConfig(num_to_keep=CHECKPOINTS_KEPT),
            failure_config=tune.FailureConfig(max_failures=sp.retries)))


def dense_root(storage: str | None, name: str, folder: Path, sp: Space) -> str | None:
    """Where the sweep's trained dense networks are shared: beside Tune's state in the storage
    (every node reaches it), else in the results folder; None when the space turns it off."""
    if not sp.share_dense:
        return None
    return f"{storage.rstrip('/')}/{name}/dense" if storage else str(folder / "dense")


def _trial_name(trial: Any) -> str:
    return f"{trial.config.get('trial_id', 'trial')}_{trial.trial_id}"


def _absolute_paths(fixed: Mapping[str, Any]) -> dict[str, Any]:
    # Tune runs each trial in its own working directory: relative folders would move.
    out = dict(fixed)
    for key in ("data_dir", "cache_dir"):
        if out.get(key):
            out[key] = str(Path(out[key]).expanduser().resolve())
    return out
