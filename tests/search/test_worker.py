"""The worker side without Ray running: checkpoints read back, or started over when they
cannot be; the report a trial sends; checkpoints dropped once a row is written."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pyarrow.fs
import pytest
from ray import tune

from hgsearch.checkpoint import write_state
from hgsearch.search import progress, worker
from hgsearch.search.progress import Progress, Session, delete_checkpoints
from hgsearch.search.tuner import CHECKPOINTS_KEPT


def _checkpoint(folder: Path, *, state: bytes | dict | None, restarts: int = 0):
    folder.mkdir(parents=True)
    if isinstance(state, dict):
        write_state(state, folder / worker.TuneCheckpointer.STATE)
    elif state is not None:
        (folder / worker.TuneCheckpointer.STATE).write_bytes(state)
    (folder / worker.TuneCheckpointer.META).write_text(json.dumps({"restarts": restarts}))
    return tune.Checkpoint.from_directory(str(folder))


def test_a_readable_checkpoint_resumes_and_counts_the_restart(tmp_path, monkeypatch):
    ckpt = _checkpoint(tmp_path / "c", state={"phase": "train", "epoch": 2}, restarts=1)
    monkeypatch.setattr(worker.tune, "get_checkpoint", lambda: ckpt)
    checkpointer = worker.TuneCheckpointer(("acc_final",))
    assert checkpointer.load() == {"phase": "train", "epoch": 2}
    assert checkpointer.restarts == 2 and checkpointer.note is None


@pytest.mark.parametrize("state", [b"torn half of a torch file", None])
def test_an_unreadable_checkpoint_starts_over_and_says_so(tmp_path, monkeypatch, state):
    ckpt = _checkpoint(tmp_path / "c", state=state)
    monkeypatch.setattr(worker.tune, "get_checkpoint", lambda: ckpt)
    checkpointer = worker.TuneCheckpointer(("acc_final",))
    assert checkpointer.load() is None and checkpointer.restarts == 0
    assert "checkpoint unreadable" in checkpointer.note and "started over" in checkpointer.note


def test_report_is_small_and_nan_for_missing_objectives():
    out = worker.report_of({"trial_id": "t0001", "status": "ok", "acc_final": 0.5,
                            "kept_channels": [1] * 1000}, ("acc_final", "macs_ratio"))
    assert out["acc_final"] == 0.5 and math.isnan(out["macs_ratio"])
    assert set(out) == {"acc_final", "macs_ratio", "hg_trial_id", "hg_status", "hg_final"}


def test_two_checkpoints_are_kept_while_a_trial_runs():
    # With one, Tune deletes the previous checkpoint before the state naming the new one is
    # saved (RAY_OPTUNA_NOTES.md): a kill in that gap strands the trial.
    assert CHECKPOINTS_KEPT == 2


def _trial(root: Path, trial_id: str = "t0000"):
    for name in ("checkpoint_000000", "checkpoint_000001", "other"):
        (root / name).mkdir(parents=True)
    (root / "checkpoint_000001" / "state.pt").write_bytes(b"x")
    storage = SimpleNamespace(storage_filesystem=pyarrow.fs.LocalFileSystem(),
                              trial_fs_path=str(root))
    return SimpleNamespace(storage=storage, config={"trial_id": trial_id}, trial_id="abc",
                           status="TERMINATED", num_failures=0)


def test_checkpoints_go_once_the_row_is_written(tmp_path):
    trial = _trial(tmp_path / "trial")
    delete_checkpoints(trial)
    assert sorted(p.name for p in (tmp_path / "trial").iterdir()) == ["other"]


@pytest.mark.parametrize("keep", [False, True])
def test_a_space_key_keeps_checkpoints(tmp_path, keep, monkeypatch):
    folder = tmp_path / "sweep"
    trial = _trial(tmp_path / "trial")
    monkeypatch.setitem(progress.SESSIONS, str(folder),
                        Session(log=lambda _l: None, keep_checkpoints=keep))
    Progress(objectives=["acc_final"], total=1, concurrent=1, folder=str(folder))._ended(trial)
    left = sorted(p.name for p in (tmp_path / "trial").iterdir())
    assert left == (["checkpoint_000000", "checkpoint_000001", "other"] if keep else ["other"])
