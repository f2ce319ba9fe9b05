"""One trial run and recorded: its row (status, figures), curve and compact model.

``run_trial`` checks the keys and reads the data (a UserError before anything is written), runs
the phases (``hgsearch.phases``: train with HGSR -> score filters -> prune -> fine-tune ->
measure) and writes what they found, also for a trial that stopped early, diverged or failed.
Nothing here knows about Ray: a trial runs the same from the CLI, a test, a notebook or a worker.
"""

from __future__ import annotations

import platform
import secrets
import socket
import time
import traceback
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

import torch

from hgsearch.checkpoint import Checkpointer
from hgsearch.config import TrialConfig, make_config
from hgsearch.data import load_dataset
from hgsearch.dense_store import DenseStore
from hgsearch.early_stop import Stopped
from hgsearch.errors import UserError
from hgsearch.fileio import utc_now, versions_text
from hgsearch.models.weights import read_weights
from hgsearch.phases import run_phases
from hgsearch.results import empty_metrics, row_warnings, write_curve, write_row
from hgsearch.runtime import emulated_bf16_warning, resolve_runtime
from hgsearch.train import Diverged

Log = Callable[[str], None]


def new_trial_id() -> str:
    """A sortable, collision-resistant id: UTC time plus random hex."""
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)


def run_trial(config: TrialConfig | Mapping[str, Any], *, extra: Mapping[str, Any] | None = None,
              log: Log | None = print, checkpoint: Checkpointer | None = None,
              dense_store: DenseStore | None = None) -> dict[str, Any]:
    """Run one trial and write its row, curve and compact model under ``config.out_dir``.

    Returns the row. A NaN/inf loss gives status ``diverged`` (row written, no exception). Any
    other failure writes a row with status ``failed`` and re-raises, so a caller may retry; the
    retry's row replaces it. A UserError (bad key, missing dataset) is raised before anything is
    written. With a ``checkpoint``, the trial saves its state at phase boundaries and every
    ``checkpoint_every`` epochs, and a rerun resumes from the last state saved. A ``dense_store``
    shares dense networks between trials and enables early stopping (status ``stopped``).
    """
    cfg = config if isinstance(config, TrialConfig) else make_config(config)
    if not cfg.trial_id:
        cfg = cfg.replace(trial_id=new_trial_id())
    log = log or (lambda _msg: None)
    row: dict[str, Any] = {**cfg.to_dict(), **empty_metrics(), **dict(extra or {})}
    row.update(hostname=socket.gethostname(), started_at=utc_now("milliseconds"),
               versions=versions_text())
    curve: list[dict] = []
    start = time.perf_counter()
    runtime = resolve_runtime(cfg.device, cfg.precision, cfg.channels_last)
    row.update(device=str(runtime.device), device_name=_device_name(runtime.device),
               numerics=runtime.numerics)
    if warning := emulated_bf16_warning(runtime):
        log(warning)

    # A weights file that does not fit the arch: UserError before the data is read (and cached)
    weights = read_weights(cfg.init_weights, cfg.arch) if cfg.init_weights else None
    t0 = time.perf_counter()
    data = load_dataset(cfg)  # UserError for a bad folder: raised before anything is written
    row.update(seconds_data=time.perf_counter() - t0, num_classes=data.num_classes,
               val_images=len(data.val_y))
    try:
        run_phases(cfg, data, runtime, row, curve, log, checkpoint, dense_store,
                   weights=weights)
        row["status"] = "ok"
        if found := row_warnings(row):    # suspect figures: said in the log and the row
            row["warnings"] = "; ".join(found)
            log(f"trial {cfg.trial_id} warning: {row['warnings']}")
    except Stopped as err:
        row.update(status="stopped", stopped_epoch=err.epoch, error=err.reason)
        log(f"trial {cfg.trial_id} stopped: {err.reason}")
    except Diverged as err:
        row.update(status="diverged", error=str(err))
        log(f"trial {cfg.trial_id} diverged: {err}")
    except UserError:
        raise
    except Exception as err:
        row.update(status="failed", error=f"{err.__class__.__name__}: {err}"[:2000])
        _write(cfg, row, curve, start)
        log(f"trial {cfg.trial_id} failed:\n{traceback.format_exc()}")
        raise
    _write(cfg, row, curve, start)
    return row


def _write(cfg: TrialConfig, row: dict[str, Any], curve: list[dict], start: float) -> None:
    row.update(seconds_total=time.perf_counter() - start, finished_at=utc_now("milliseconds"))
    write_curve(cfg.out_dir, cfg.trial_id, curve)
    write_row(cfg.out_dir, row)  # last: a row on disk means the trial is fully recorded


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()
