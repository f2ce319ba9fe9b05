"""Stand-in trial runners for tests/cluster/test_multinode.py, and its sweep driver for the head.

They run on the cluster's hosts (imported there as ``tests.cluster.netns_trials``) and talk to
the test only through files on their own host's disk, which the test reads from outside:
``at-<trial_id>`` (a first attempt holds here after its first checkpoint), ``go`` (written by
the test: hold no longer), ``attempt-<trial_id>-<restarts>.json`` (the state each attempt
started from).

    python -m tests.cluster.netns_trials SPACE NAME RUNNER STORAGE   # a sweep, from the head
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from hgsearch.trial import run_trial

GO = "go"
HOLD_S = 180        # a held trial goes on by itself after this long (a test that died)
FAILS = "t0002"     # the trial that node_loss_run_trial fails


def _record_attempt(config: dict, extra: dict, checkpoint: Any) -> tuple[Path, str, int]:
    out = Path(config["out_dir"])
    out.mkdir(parents=True, exist_ok=True)
    trial_id, restarts = config["trial_id"], extra.get("restarts", 0)
    state = checkpoint.load() if checkpoint else None
    (out / f"attempt-{trial_id}-{restarts}.json").write_text(json.dumps(
        {"node": os.environ.get("HGSEARCH_NODE"), "node_id": extra["node_id"],
         "phase": state and state["phase"], "epoch": state and state["epoch"]}))
    return out, trial_id, restarts


def held_run_trial(config: dict, *, extra: dict | None = None, log: Any = print,
                   checkpoint: Any = None) -> dict:
    """run_trial; a first attempt says where it runs and waits for ``go`` after its first
    checkpoint, so that the test can kill its host while it is known to be mid-trial."""
    out, trial_id, restarts = _record_attempt(config, extra or {}, checkpoint)

    class Held:
        saves = 0

        def load(self) -> Any:
            return checkpoint.load()

        def save(self, state: dict) -> None:
            checkpoint.save(state)
            Held.saves += 1
            if restarts == 0 and Held.saves == 1:
                (out / f"at-{trial_id}").write_text(os.environ.get("HGSEARCH_NODE", "?"))
                deadline = time.monotonic() + HOLD_S
                while not (out / GO).exists() and time.monotonic() < deadline:
                    time.sleep(0.2)

    return run_trial(config, extra=extra, log=log, checkpoint=Held() if checkpoint else None)


class PlantedFailure(RuntimeError):
    pass


def failing_run_trial(config: dict, *, extra: dict | None = None, log: Any = print,
                      checkpoint: Any = None) -> dict:
    """run_trial that fails after its first checkpoint: an error mid-trial, on its host."""
    _record_attempt(config, extra or {}, checkpoint)

    class Failing:
        def load(self) -> Any:
            return checkpoint.load() if checkpoint else None

        def save(self, state: dict) -> None:
            if checkpoint:
                checkpoint.save(state)
            raise PlantedFailure(f"planted failure on {os.environ.get('HGSEARCH_NODE')}")

    return run_trial(config, extra=extra, log=log, checkpoint=Failing())


def node_loss_run_trial(config: dict, *, extra: dict | None = None, log: Any = print,
                        checkpoint: Any = None) -> dict:
    """held_run_trial, except that trial FAILS fails (failing_run_trial)."""
    runner = failing_run_trial if config["trial_id"] == FAILS else held_run_trial
    return runner(config, extra=extra, log=log, checkpoint=checkpoint)


def main(argv: list[str]) -> int:
    from hgsearch.search.driver import run_sweep

    space, name, runner, storage = argv
    result = run_sweep(space, name=name, results="/tmp/results", address=os.environ["GCS"],
                       storage=storage, runner=runner)
    return 0 if result.complete else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
