"""``hgsearch sweep`` as a user sees it: a bad --storage refused before anything is written, and
the running trials' epochs shown between finished-trial lines, in a terminal and in a pipe.

The sweeps are real (Ray, Tune, Optuna) with trials that log three epochs a second apart
(tests/search/fakes.py: fake_epochs_run_trial); each takes a minute on two busy cores.
"""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from tests.search.helpers import REPO, driver_env, fake_space, kill_group

RUNNER = "tests.search.fakes:fake_epochs_run_trial"
RUNNING = re.compile(r"^  t000\d running: train epoch [123]/3, val \d+\.\d%")


def _space(tmp_path: Path) -> Path:
    return fake_space(tmp_path / "space.yaml", search={"lam": {"choice": [1.0e-4, 1.0e-3]}},
                      num_samples=2, baseline=False)


def _sweep_args(space: Path, results: Path, *more: str) -> list[str]:
    return [sys.executable, "-m", "tests.search.driver_main", "sweep", str(space), "--name",
            "st", "--results", str(results), *more]


@pytest.mark.parametrize("storage, fragment", [
    ("nosuchscheme://bucket/x", "Unrecognized filesystem type"),
    ("{file}/below", "is a file, not a folder"),
])
def test_a_bad_storage_is_refused_before_anything_is_written(tmp_path, storage, fragment):
    (tmp_path / "file").write_text("x")
    storage = storage.format(file=tmp_path / "file")
    results = tmp_path / "results"
    for env, flag in (({}, ["--storage", storage]), ({"HGSEARCH_STORAGE": storage}, [])):
        proc = subprocess.run(_sweep_args(_space(tmp_path), results, *flag), cwd=REPO,
                              env=driver_env(**env), capture_output=True, text=True,
                              timeout=120)
        err = proc.stderr.strip().splitlines()
        assert proc.returncode == 2, proc.stderr
        assert len(err) == 1 and fragment in err[0] and storage in err[0], err
        assert err[0].startswith(f"hgsearch: error: {'--storage' if flag else 'HGSEARCH_'}")
        assert not results.exists()               # no sweep folder, sweep.json, nor lock


def _run(args: list[str], *, env: dict[str, str], timeout: float = 240) -> tuple[int, str, str]:
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        kill_group(proc.pid)
    return proc.returncode, out, err


@pytest.mark.slow
def test_piped_the_console_is_plain_lines_with_the_running_epochs(tmp_path):
    """After a refused bad storage the name is free: the same sweep with a good one runs."""
    space, results = _space(tmp_path), tmp_path / "results"
    env = driver_env(HGSEARCH_TEST_RUNNER=RUNNER, FAKE_EPOCH_SLEEP="1")
    code, _, err = _run(_sweep_args(space, results, "--storage", "nosuchscheme://b/x"), env=env)
    assert code == 2 and not results.exists(), err
    code, out, err = _run(_sweep_args(space, results, "--storage", str(tmp_path / "ckpt"),
                                      "--progress-every", "1"), env=env)
    assert code == 0, out + err
    assert "\x1b" not in out and "\r" not in out          # no escape codes, no redraws
    lines = out.splitlines()
    assert f"{results / 'st' / 'logs'}/<trial_id>.log" in out
    running = [i for i, line in enumerate(lines) if RUNNING.match(line)]
    ended = [i for i, line in enumerate(lines) if re.match(r"^\[[12]/2\] t000\d ok ", line)]
    assert len(ended) == 2 and running, out
    assert running[0] < ended[0]                          # shown while the trials ran
    assert {lines[i].split()[0] for i in running} == {"t0000", "t0001"}
    assert "Traceback" not in err and "SystemExit" not in err, err   # a clean end is quiet
    assert not list((results / "st" / "logs").glob("*.status.json"))   # gone with the trials


@pytest.mark.slow
def test_in_a_terminal_the_running_trials_are_a_table_between_the_finished_lines(tmp_path):
    space, results = _space(tmp_path), tmp_path / "results"
    env = driver_env(HGSEARCH_TEST_RUNNER=RUNNER, FAKE_EPOCH_SLEEP="1", TERM="xterm")
    env.pop("COLUMNS", None)
    main, side = pty.openpty()
    fcntl.ioctl(side, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 140, 0, 0))
    proc = subprocess.Popen(_sweep_args(space, results, "--progress-every", "0.5"), cwd=REPO,
                            env=env, stdin=side, stdout=side, stderr=side,
                            start_new_session=True)
    os.close(side)
    screen = b""
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([main], [], [], 1.0)
            if ready:
                try:
                    chunk = os.read(main, 65536)
                except OSError:       # the terminal's other side closed: the sweep is over
                    break
                if not chunk:
                    break
                screen += chunk
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=30)
    finally:
        kill_group(proc.pid)
        os.close(main)
    text = screen.decode(errors="replace")
    assert code == 0, text
    assert "\x1b[" in text                               # drawn in place
    ends = [m.start() for m in re.finditer(r"\[[12]/2\] t000\d ok ", text)]
    assert len(ends) == 2, text
    # a frame of the table with a trial's epoch and accuracy before the first trial ended
    frame = re.compile(r"t000\d +train +[123]/3 +\d+\.\d%")
    epochs = [m.start() for m in frame.finditer(text)]
    assert epochs and epochs[0] < ends[0], text
    assert "val acc" in text and f"{results / 'st' / 'logs'}" in text
    assert "Traceback" not in text and "SystemExit" not in text, text   # a clean end is quiet
