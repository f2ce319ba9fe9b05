"""``hgsearch`` as a test driver: the sweep's trials by HGSEARCH_TEST_RUNNER, and a kill point.

HGSEARCH_TEST_KILL_AT=``ask`` | ``diverged`` | ``failed`` SIGKILLs the driver's whole process
group right after the searcher has asked Optuna for a trial (before Tune launches it), or right
after the driver has recorded a diverged or a failed trial; ``ladder_enqueue`` right after a
ladder sibling was enqueued (before its ask), ``ladder_asked`` after its ask, before its value
left the pending list (hgsearch/search/ladder.py). Nothing of this is in the product:
the wrappers are put around its methods here, in the test's own driver process.
"""

from __future__ import annotations

import functools
import os
import signal
import sys

import hgsearch.search.driver as driver
import hgsearch.search.ladder as ladder
from hgsearch.cli import main
from hgsearch.search.progress import Progress
from hgsearch.search.searcher import Searcher


def _die() -> None:
    os.killpg(os.getpgid(0), signal.SIGKILL)


def _install(kill_at: str) -> None:
    if kill_at == "ask":
        suggest = Searcher.suggest

        def suggest_then_die(self, trial_id):
            before = len(self.study.get_trials(deepcopy=False))
            out = suggest(self, trial_id)
            if len(self.study.get_trials(deepcopy=False)) > before:    # a new ask, no adoption
                _die()
            return out
        Searcher.suggest = suggest_then_die
    elif kill_at == "diverged":
        _die_after_row(Progress, "on_trial_complete", "diverged")
    elif kill_at == "failed":
        _die_after_row(Progress, "on_trial_error", "failed")
    elif kill_at == "ladder_enqueue":
        enqueue = ladder.enqueue

        def enqueue_then_die(*args, **kwargs):
            enqueue(*args, **kwargs)
            _die()
        ladder.enqueue = enqueue_then_die
    elif kill_at == "ladder_asked":
        ladder.asked = lambda *args, **kwargs: _die()


def _die_after_row(cls: type, method: str, status: str) -> None:
    """Wrap ``cls.method`` (a Tune callback) to die once it has recorded a ``status`` row."""
    original = getattr(cls, method)

    def then_die(self, iteration, trials, trial, **info):
        original(self, iteration, trials, trial, **info)
        from hgsearch.search.records import read_row
        row = read_row(self.folder, trial.config["trial_id"]) or {}
        if row.get("status") == status:
            _die()
    setattr(cls, method, then_die)


if __name__ == "__main__":
    runner = os.environ.get("HGSEARCH_TEST_RUNNER")
    if runner:
        # where `hgsearch sweep` looks it up when it runs (hgsearch/cli/search.py)
        driver.run_sweep = functools.partial(driver.run_sweep, runner=runner)
    _install(os.environ.get("HGSEARCH_TEST_KILL_AT", ""))
    sys.exit(main())
