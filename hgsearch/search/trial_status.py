"""A running trial's status: its phase, epoch k/N and last validation accuracy, as a small file.

The worker wraps the trial's log function in a ``StatusLog``: every line still goes to the
trial's log (``logs/<trial_id>.log``), and the lines say where the trial is. A line that starts
with ``[phase]`` names the phase (``[train] epoch 3/8 ... val 61.2% ...``, as ``train.train``
logs each epoch; ``[score] ...``, ``[latency] ...``); in it ``epoch k/N`` and ``val X%`` are
the epoch and the validation accuracy. The status is kept in ``logs/<trial_id>.status.json``,
rewritten atomically at every line (a trial logs a line per epoch and a few per phase: a small
file written every few seconds at most); the sweep's console (``console.py``) reads the files of
the trials Tune says are running, and the driver deletes a trial's file once it has ended.

Why a file of its own and not the log itself: the driver reads one small, whole JSON object
per running trial instead of finding and parsing the end of a log that grows for hours (and
may end in a half-written line); and on a cluster whose nodes share no disk with the driver,
the status (unlike the log) is small enough to be sent to the driver's file sink as it changes.
Nothing here imports Ray: the same wrapper works for a trial run from a test.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hgsearch.fileio import write_bytes_atomic
from hgsearch.results_layout import ResultsFolder

STATUS_SUFFIX = ".status.json"
PHASE = re.compile(r"^\[(?P<phase>[A-Za-z][\w-]*)\]")
EPOCH = re.compile(r"\bepoch (?P<k>\d+)/(?P<n>\d+)\b")
VAL_ACC = re.compile(r"\bval (?P<pct>\d+(?:\.\d+)?)%")


def status_path(folder: str | Path, trial_id: str) -> Path:
    """``logs/<trial_id>.status.json`` of the results folder ``folder``."""
    return ResultsFolder(Path(folder)).logs / f"{trial_id}{STATUS_SUFFIX}"


@dataclass
class TrialStatus:
    """Where a running trial is; times are Unix seconds (the worker's clock)."""

    trial_id: str
    phase: str = "starting"
    epoch: int | None = None
    epochs: int | None = None
    val_acc: float | None = None          # the last epoch's validation accuracy, a fraction
    line: str = ""                        # the last line logged
    started: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)   # when the last line was logged

    def read_line(self, text: str, now: float) -> None:
        """Take in a logged line (or several: a traceback); its first line may name a phase."""
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        if not lines:
            return
        self.line, self.updated = lines[-1][:300], now
        match = PHASE.match(lines[0])
        if match is None:
            return
        if match["phase"] != self.phase:
            self.phase, self.epoch, self.epochs, self.val_acc = match["phase"], None, None, None
        epoch, val = EPOCH.search(lines[0]), VAL_ACC.search(lines[0])
        if epoch is not None:
            self.epoch, self.epochs = int(epoch["k"]), int(epoch["n"])
        if val is not None:
            self.val_acc = float(val["pct"]) / 100

    def describe(self) -> str:
        """``train epoch 3/8, val 61.2%``: the phase, and its epoch and accuracy when known."""
        text = self.phase
        if self.epoch is not None:
            text += f" epoch {self.epoch}/{self.epochs}"
        if self.val_acc is not None:
            text += f", val {100 * self.val_acc:.1f}%"
        return text


def read_status(folder: str | Path, trial_id: str) -> TrialStatus | None:
    """The trial's last written status; None when there is none (yet) or it cannot be read."""
    try:
        data: dict[str, Any] = json.loads(status_path(folder, trial_id).read_text())
        return TrialStatus(**data)
    except (OSError, ValueError, TypeError):
        return None


class StatusLog:
    """A trial's log function that also keeps its status file (module docstring).

    ``write_line`` receives every line unchanged. ``publish(name, data)``, when given, is
    called with each status written (its path relative to the results folder and its bytes):
    the worker sends it to the driver's file sink where the driver shares no disk with it.
    """

    def __init__(self, folder: str | Path, trial_id: str, write_line: Callable[[str], None],
                 *, publish: Callable[[str, bytes], None] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.folder, self.write_line = Path(folder), write_line
        self.publish, self.clock = publish, clock
        self.path = status_path(folder, trial_id)
        self.status = TrialStatus(trial_id, started=clock(), updated=clock())
        self._write()

    def __call__(self, line: str) -> None:
        self.write_line(line)
        self.status.read_line(str(line), self.clock())
        self._write()

    def _write(self) -> None:
        data = json.dumps(asdict(self.status)).encode()
        try:
            write_bytes_atomic(self.path, data)
            if self.publish is not None:
                self.publish(self.path.relative_to(self.folder).as_posix(), data)
        except OSError:
            pass    # a status that cannot be written costs the console a line, not the trial
