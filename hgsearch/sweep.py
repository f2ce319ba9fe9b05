"""The sweep's names under their older home: the sweep now lives in ``hgsearch.search``
(driver, cluster, searcher, reconcile, worker, progress). Kept so that existing imports and
the README's examples go on working."""

from __future__ import annotations

from hgsearch.search.cluster import STORAGE_ENV
from hgsearch.search.cluster import checkpoints_possible as _checkpoints_possible
from hgsearch.search.driver import SweepResult, run_sweep
from hgsearch.search.records import DONE, OPTUNA_FILE, TUNE_DIR, optuna_storage_url, trial_id_of
from hgsearch.search.searcher import make_searcher as _make_searcher
from hgsearch.search.sink import SINK_NAMESPACE, send_files
from hgsearch.search.sink import FileSink as _FileSink
from hgsearch.search.sink import sink_name as _sink_name
from hgsearch.search.summary import summary
from hgsearch.search.worker import TuneCheckpointer, report_of

__all__ = ["DONE", "OPTUNA_FILE", "SINK_NAMESPACE", "STORAGE_ENV", "TUNE_DIR", "SweepResult",
           "TuneCheckpointer", "_FileSink", "_checkpoints_possible", "_make_searcher",
           "_sink_name", "optuna_storage_url", "report_of", "run_sweep", "send_files",
           "summary", "trial_id_of"]
