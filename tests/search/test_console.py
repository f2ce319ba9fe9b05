"""The running trials' status files and the sweep console's two boards, without Ray."""

from __future__ import annotations

import io
import json

import torch

from hgsearch.search.console import LiveBoard, PlainBoard
from hgsearch.search.trial_status import StatusLog, TrialStatus, read_status, status_path


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _epoch_lines(epochs: int) -> list[str]:
    """What ``train.train`` logs for a tiny network: the lines the status is read from."""
    from hgsearch.data.device import DeviceData
    from hgsearch.runtime import Runtime
    from hgsearch.train import SGDSettings, train

    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 255, (16, 3, 4, 4), dtype=torch.uint8, generator=gen)
    data = DeviceData(x, torch.arange(16) % 2, device="cpu", mean=(0.5,) * 3, std=(0.25,) * 3)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(48, 2))
    lines: list[str] = []
    train(model, data, settings=SGDSettings(epochs=epochs, lr=0.1, batch_size=8),
          runtime=Runtime(torch.device("cpu")), generator=gen,
          evaluate_each_epoch=lambda: (0.7, 0.625), log=lines.append)
    return lines


def test_the_status_follows_the_trials_own_epoch_lines(tmp_path):
    logged, sent = [], []
    clock = Clock()
    log = StatusLog(tmp_path, "t0003", logged.append, clock=clock,
                    publish=lambda name, data: sent.append((name, json.loads(data))))
    assert read_status(tmp_path, "t0003").phase == "starting"
    lines = _epoch_lines(3)
    for line in lines:
        clock.now += 5
        log(line)
    status = read_status(tmp_path, "t0003")
    assert (status.phase, status.epoch, status.epochs, status.val_acc) == ("train", 3, 3, 0.625)
    assert status.line == lines[-1] and status.updated == clock.now
    assert logged == lines                                     # the log gets every line as is
    assert sent[-1] == ("logs/t0003.status.json", json.loads(status_path(
        tmp_path, "t0003").read_text()))

    log("pruned: params 100 -> 50 (0.500)")       # no [phase]: the phase stays, the line moves
    status = read_status(tmp_path, "t0003")
    assert (status.phase, status.epoch, status.line[:7]) == ("train", 3, "pruned:")
    log("[score] block 2/9 scored")               # a new phase: no epoch, no accuracy of its own
    status = read_status(tmp_path, "t0003")
    assert (status.phase, status.epoch, status.val_acc) == ("score", None, None)
    assert status.describe() == "score"
    log("[finetune] epoch 1/2  loss 1.0  train 60.0%  val 55.5%  9 img/s  1.0s")
    assert read_status(tmp_path, "t0003").describe() == "finetune epoch 1/2, val 55.5%"


def test_a_status_file_that_cannot_be_read_is_no_status(tmp_path):
    path = status_path(tmp_path, "t0001")
    path.parent.mkdir(parents=True)
    assert read_status(tmp_path, "t0001") is None
    path.write_text('{"trial_id": "t0001", "pha')
    assert read_status(tmp_path, "t0001") is None


def test_plain_lines_at_phase_changes_and_at_most_every_interval(tmp_path):
    clock, out = Clock(), []
    board = PlainBoard(tmp_path, log=out.append, every=30, clock=clock)
    log = StatusLog(tmp_path, "t0001", lambda line: None)
    started = clock.now
    board.refresh({"t0001": started})
    assert out == ["  t0001 running: starting | 0s"]
    epochs = _epoch_lines(3)
    clock.now += 10
    log(epochs[0])
    board.refresh({"t0001": started})        # a phase change: at once
    clock.now += 10
    log(epochs[1])
    board.refresh({"t0001": started})        # an epoch 10 s later: held back
    board.refresh({"t0001": started})
    clock.now += 20
    board.refresh({"t0001": started})        # 30 s after the last line: the held-back epoch
    board.refresh({"t0001": started})        # nothing new: nothing
    log("[score] scoring filters")
    clock.now += 1
    board.refresh({"t0001": started})        # a phase change: at once again
    assert out[1:] == ["  t0001 running: train epoch 1/3, val 62.5% | 10s",
                       "  t0001 running: train epoch 2/3, val 62.5% | 40s",
                       "  t0001 running: score | 41s"]
    clock.now += 1
    board.refresh({})                        # ended: forgotten, then a new run starts afresh
    StatusLog(tmp_path, "t0001", lambda line: None)
    clock.now += 1
    board.refresh({"t0001": clock.now})
    assert out[-1] == "  t0001 running: starting | 0s"
    assert not any("\x1b" in line or "\r" in line for line in out)


def test_the_live_table_shows_each_running_trial(tmp_path):
    from rich.console import Console

    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=120, color_system="standard")
    clock = Clock()
    board = LiveBoard(tmp_path, every=2, console=console, clock=clock)
    one = StatusLog(tmp_path, "t0001", lambda line: None)
    StatusLog(tmp_path, "t0002", lambda line: None)
    board.start()
    one(_epoch_lines(2)[-1])
    board.refresh({"t0001": clock.now - 75, "t0002": clock.now - 3})
    clock.now += 1
    one("[latency] measuring the dense network")
    board.refresh({"t0001": clock.now - 75})          # within 2 s of the last frame: not drawn
    shown = screen.getvalue()
    board.stop()
    assert "\x1b[" in shown                                  # a terminal's table, redrawn
    assert "[train] epoch 2/2" in shown                      # the log line as logged, no markup
    rows = [line for line in shown.splitlines() if "t0001" in line]
    assert rows and all(cell in rows[-1] for cell in ("train", "2/2", "62.5%", "1m15s"))
    assert any("t0002" in line and "starting" in line for line in shown.splitlines())
    assert "latency" not in shown
    assert f"{tmp_path / 'logs'}/<trial_id>.log" in " ".join(shown.split())
    assert TrialStatus("x").describe() == "starting"


def test_a_real_trial_names_each_long_phase_in_its_log(tiny):
    # The trial's own lines, read the way the console reads them: scoring and latency (minutes
    # on real data) each open a phase of their own instead of leaving the last epoch showing.
    from hgsearch.trial import run_trial

    lines: list[str] = []
    run_trial({**tiny, "trial_id": "t1", "prune_ratio": 0.5}, log=lines.append)
    status, phases = TrialStatus("t1"), []
    for line in lines:
        status.read_line(line, now=0.0)
        if not phases or phases[-1] != status.phase:
            phases.append(status.phase)
    assert [p for p in phases if p in ("train", "score", "finetune", "latency")] == [
        "train", "score", "finetune", "latency"]
