"""The sweep console's view of the trials still running: their phase, epoch and accuracy.

Between two trials' ends (minutes, at paper scale hours) the console says what each running
trial is doing, from its status file (``trial_status.py``). Two boards, one interface:

- ``LiveBoard`` (a terminal): a table redrawn in place under the finished-trial lines (rich's
  ``Live``: the lines printed meanwhile scroll above it), refreshed every ``every`` seconds.
- ``PlainBoard`` (a pipe, a file, a batch job's log; or a caller's own ``log``): plain lines, no
  escape codes, no carriage returns: a trial's line when its phase changes, and otherwise at
  most one per trial every ``every`` seconds while its epoch or accuracy changes.

The driver's ``Progress`` callback calls ``refresh`` at each step of Tune's loop.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from hgsearch.search.trial_status import TrialStatus, read_status

Log = Callable[[str], None]

LIVE_EVERY_S = 2.0       # a terminal's table: redrawn this often
PLAIN_EVERY_S = 30.0     # plain lines: one per trial at most this often, phase changes aside
READ_EVERY_S = 1.0       # plain lines: the status files are read at most this often


class Board(Protocol):
    def start(self) -> None: ...

    def refresh(self, running: Mapping[str, float], *, force: bool = False) -> None:
        """``running``: trial id -> when Tune started it (``time.monotonic()``)."""

    def stop(self) -> None: ...


def make_board(folder: str | Path, *, log: Log, live: bool | None = None,
               every: float | None = None) -> Board:
    """A ``LiveBoard`` when ``live`` (default: ``log`` is ``print`` and stdout a terminal),
    else a ``PlainBoard`` writing through ``log``."""
    if live is None:
        live = log is print and sys.stdout.isatty()
    if live:
        return LiveBoard(folder, every=LIVE_EVERY_S if every is None else every)
    return PlainBoard(folder, log=log, every=PLAIN_EVERY_S if every is None else every)


def logs_note(folder: str | Path) -> str:
    return f"per-trial logs (written as the trials run): {Path(folder) / 'logs'}/<trial_id>.log"


class PlainBoard:
    def __init__(self, folder: str | Path, *, log: Log, every: float = PLAIN_EVERY_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.folder, self.log, self.every, self.clock = Path(folder), log, every, clock
        self.shown: dict[str, tuple[str, float]] = {}   # trial -> (what it said, when)
        self.read_at = -float("inf")

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def refresh(self, running: Mapping[str, float], *, force: bool = False) -> None:
        now = self.clock()
        if not force and now - self.read_at < READ_EVERY_S:
            return          # Tune's loop steps many times a second: the files are read once
        self.read_at = now
        for trial_id in list(self.shown):
            if trial_id not in running:
                del self.shown[trial_id]
        for trial_id, since in sorted(running.items()):
            status = read_status(self.folder, trial_id)
            if status is None:
                continue
            said, at = self.shown.get(trial_id, ("", -float("inf")))
            text = status.describe()
            phase_changed = text.split(" ", 1)[0] != said.split(" ", 1)[0]
            if text != said and (phase_changed or force or now - at >= self.every):
                self.log(f"  {trial_id} running: {text} | {duration(now - since)}")
                self.shown[trial_id] = (text, now)


class LiveBoard:
    """A rich ``Live`` table; rich is imported only when a terminal shows one."""

    def __init__(self, folder: str | Path, *, every: float = LIVE_EVERY_S,
                 console: Any = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.folder, self.every, self.clock = Path(folder), every, clock
        self.console, self.live, self.drawn_at = console, None, -float("inf")

    def start(self) -> None:
        from rich.live import Live

        # transient: the table goes when the sweep's trials have; the lines printed meanwhile
        # (finished trials, Ray's warnings: redirect_stdout/stderr) scroll above it and stay.
        self.live = Live(self._table({}), console=self.console, auto_refresh=False,
                         transient=True, redirect_stdout=True, redirect_stderr=True)
        self.live.start()

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None

    def refresh(self, running: Mapping[str, float], *, force: bool = False) -> None:
        now = self.clock()
        if self.live is None or (not force and now - self.drawn_at < self.every):
            return
        self.drawn_at = now
        self.live.update(self._table(running), refresh=True)

    def _table(self, running: Mapping[str, float]) -> Any:
        from rich.table import Table
        from rich.text import Text

        now, wall = self.clock(), time.time()
        rows = []
        for trial_id, since in sorted(running.items()):
            status = read_status(self.folder, trial_id) or TrialStatus(trial_id)
            epoch = f"{status.epoch}/{status.epochs}" if status.epoch is not None else ""
            val = f"{100 * status.val_acc:.1f}%" if status.val_acc is not None else ""
            quiet = f"({duration(max(0.0, wall - status.updated))} ago) " if status.line else ""
            rows.append((trial_id, status.phase, epoch, val, duration(now - since),
                         quiet + status.line))
        if not rows:
            rows.append(("-", "no trial running", "", "", "", ""))
        # expand, and ratio on the last column: without them rich drops the first column
        # (rather than cutting the last) when the rows are wider than the terminal.
        table = Table(box=None, pad_edge=False, show_edge=False, expand=True,
                      caption=Text(logs_note(self.folder)), caption_justify="left")
        headers = ("trial", "phase", "epoch", "val acc", "running", "last line")
        for k, name in enumerate(headers):
            if name == "last line":     # the one column cut short when the terminal is narrow
                table.add_column(name, no_wrap=True, overflow="ellipsis", ratio=1)
            else:
                table.add_column(name, justify="left" if k < 2 else "right", no_wrap=True,
                                 min_width=max(len(name), *(len(r[k]) for r in rows)))
        for row in rows:
            table.add_row(*(Text(cell) for cell in row))    # Text: a log's "[train]" is no markup
        return table


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m"
