"""Fast stand-ins for run_trial that Ray workers import (``runner="tests.search.fakes:..."``).

A fake trial writes a ``started-<id>`` marker, sleeps FAKE_TRIAL_SLEEP seconds (environment,
inherited by Ray's workers; default 0.2) and writes a row. Its ``lam`` says how it ends:
DIVERGE gives a diverged row, FAIL raises before any row, KILL SIGKILLs its own worker;
FAKE_OUTCOMES ("t0001:diverge,t0003:fail") says it by trial id instead.
"""

from __future__ import annotations

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
    lam = {"diverge": DIVERGE, "fail": FAIL, "kill": KILL}.get(by_id.get(config["trial_id"]),
                                                              lam)
    if lam == FAIL:
        raise RuntimeError("injected failure before any row")
    if lam == KILL:
        os.kill(os.getpid(), signal.SIGKILL)
    row = {**config, **empty_metrics(), **(extra or {}), "started_at": started,
           "finished_at": now()}
    if lam == DIVERGE:
        row.update(status="diverged", error="loss is nan")
    else:
        row.update(status="ok", acc_final=1.0 - lam * 10, params_ratio=0.5 + lam)
    write_row(out, row)
    return row
