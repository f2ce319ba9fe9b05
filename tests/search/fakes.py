"""Fast stand-ins for run_trial that Ray workers import (``runner="tests.search.fakes:..."``).

A fake trial writes a ``started-<id>`` marker, sleeps FAKE_TRIAL_SLEEP seconds (environment,
inherited by Ray's workers; default 0.2) and writes a row. Its ``lam`` says how it ends:
DIVERGE gives a diverged row, FAIL raises before any row, KILL SIGKILLs its own worker;
FAKE_OUTCOMES ("t0001:diverge,t0003:fail,t0004:stop") says it by trial id instead (stop: a
``stopped`` row, as early stopping writes). ``fake_ladder_run_trial`` first reports its dense
phase over, as the worker does, so that a ladder's siblings are released while it runs.
"""

from __future__ import annotations

import math
import os
import signal
import time
from pathlib import Path

from hgsearch.results import empty_metrics, write_row
from hgsearch.search.records import now

DIVERGE, FAIL, KILL = 0.5, 0.25, 0.125
LAMS = [1.0e-4, 1.0e-3, 1.0e-2, DIVERGE, FAIL]   # a space's choice (KILL only when asked)


def fake_run_trial(config: dict, *, extra: dict | None = None, log=print,
                   checkpoint=None) -> dict:
    out = Path(config["out_dir"])
    (out / f"started-{config['trial_id']}").touch()
    started = now()
    seconds = float(os.environ.get("FAKE_TRIAL_SLEEP", "0.2"))
    if checkpoint is not None and checkpoint.load() is None:
        for epoch in (1, 2, 3):       # three saves: Tune keeps the last two
            checkpoint.save({"phase": "train", "epoch": epoch})
    time.sleep(seconds)
    lam = config.get("lam", 1.0e-4)
    by_id = dict(p.split(":") for p in os.environ.get("FAKE_OUTCOMES", "").split(",") if p)
    outcome = by_id.get(config["trial_id"])
    lam = {"diverge": DIVERGE, "fail": FAIL, "kill": KILL}.get(outcome, lam)
    if lam == FAIL:
        raise RuntimeError("injected failure before any row")
    if lam == KILL:
        os.kill(os.getpid(), signal.SIGKILL)
    row = {**config, **empty_metrics(), **(extra or {}), "started_at": started,
           "finished_at": now()}
    if lam == DIVERGE:
        row.update(status="diverged", error="loss is nan")
    elif outcome == "stop":
        row.update(status="stopped", stopped_epoch=1, error="early stop: injected")
    else:
        row.update(status="ok", acc_final=1.0 - lam * 10, params_ratio=0.5 + lam)
    write_row(out, row)
    return row


def fake_ladder_run_trial(config: dict, *, extra: dict | None = None, log=print) -> dict:
    """fake_run_trial after a report of phase "trained" (NaN objectives, as the worker's)."""
    from ray import tune

    tune.report({"acc_final": math.nan, "params_ratio": math.nan, "hg_final": False,
                 "hg_phase": "trained", "hg_epoch": 1})
    return fake_run_trial(config, extra=extra, log=log)


def fake_epochs_run_trial(config: dict, *, extra: dict | None = None, log=print,
                          checkpoint=None) -> dict:
    """fake_run_trial after logging its epochs as ``train.train`` does: ``[train] epoch k/3
    ... val X% ...`` each FAKE_EPOCH_SLEEP seconds (default 1), then a silent ``[score]``
    phase of the same length, as filter scoring is."""
    seconds = float(os.environ.get("FAKE_EPOCH_SLEEP", "1"))
    for epoch in (1, 2, 3):
        time.sleep(seconds)
        log(f"[train] epoch {epoch}/3  loss 2.0000  train 50.0%  val {10 * epoch + 0.5:.1f}%  "
            f"100 img/s  {seconds:.1f}s")
    log(f"[score] scoring filters on {config.get('score_samples', 64)} training images")
    time.sleep(seconds)
    return fake_run_trial(config, extra=extra, log=log, checkpoint=None)
